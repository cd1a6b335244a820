package wire

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestMessagesRequestFull(t *testing.T) {
	in := `{"model":"claude-sonnet-4-5","messages":[` +
		`{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":"Be brief."}]},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"look","input":{"q":"x"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"done","is_error":true}]}],` +
		`"system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}}],` +
		`"max_tokens":256,"stop_sequences":["\n\nHuman:"],"stream":true,"temperature":0.2,"top_p":0.9,"top_k":40,` +
		`"metadata":{"user_id":"u-1"},"tools":[{"name":"look"}],"thinking":{"type":"enabled","budget_tokens":1024}}`
	var r MessagesRequest
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.MaxTokens != 256 || !r.Stream || deref(r.Temperature) != 0.2 || deref(r.TopP) != 0.9 ||
		deref(r.TopK) != 40 || r.Metadata == nil || r.Metadata.UserID != "u-1" ||
		!reflect.DeepEqual(r.StopSequences, []string{"\n\nHuman:"}) {
		t.Errorf("scalars = %+v", r)
	}
	if len(r.Extra) != 2 || string(r.Extra["tools"]) != `[{"name":"look"}]` {
		t.Errorf("extra = %v", r.Extra)
	}
	if r.System.String() != "You are terse." || r.System.IsZero() || string(r.System.Blocks[0].CacheControl) != `{"type":"ephemeral"}` {
		t.Errorf("system = %+v", r.System)
	}
	c := r.Messages[0].Content
	if c.String() != "What is this?\nBe brief." || c.ImageCount() != 1 ||
		*c.Blocks[1].Source != (ImageSource{Type: "base64", MediaType: "image/png", Data: "iVBORw0KGgo="}) {
		t.Errorf("user content = %+v", c)
	}
	tu := r.Messages[1].Content.Blocks[0]
	if tu.Type != BlockToolUse || tu.ID != "toolu_1" || tu.Name != "look" || string(tu.Input) != `{"q":"x"}` {
		t.Errorf("tool_use = %+v", tu)
	}
	tr := r.Messages[2].Content.Blocks[0]
	if tr.Type != BlockToolResult || tr.ToolUseID != "toolu_1" || string(tr.Content) != `"done"` || !tr.IsError {
		t.Errorf("tool_result = %+v", tr)
	}
	roundTrip(t, r)

	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var generic, orig map[string]any
	_ = json.Unmarshal(out, &generic)
	_ = json.Unmarshal([]byte(in), &orig)
	if !reflect.DeepEqual(generic, orig) {
		t.Errorf("re-encoded request differs:\n got %s\nwant %s", out, in)
	}
}

func TestMessagesRequestErrors(t *testing.T) {
	for _, bad := range []string{`[]`, `{"max_tokens":"1"}`, `{"system":1}`, `{"messages":[{"content":{}}]}`} {
		var r MessagesRequest
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s accepted: %+v", bad, r)
		}
	}
}

func TestAnthropicContent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AnthropicContent
		out  string
	}{
		{`"hi"`, AnthropicText("hi"), `"hi"`},
		{`null`, AnthropicContent{}, `""`},
		{`[]`, AnthropicContent{Blocks: []ContentBlock{}}, `[]`},
		{`[{"type":"text","text":""}]`, AnthropicContent{Blocks: []ContentBlock{{Type: BlockText}}}, `[{"type":"text","text":""}]`},
	} {
		var c AnthropicContent
		if err := json.Unmarshal([]byte(tc.in), &c); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !reflect.DeepEqual(c, tc.want) {
			t.Errorf("%s: decoded %#v, want %#v", tc.in, c, tc.want)
		}
		out, err := json.Marshal(c)
		if err != nil || string(out) != tc.out {
			t.Errorf("%s: encoded %s, %v; want %s", tc.in, out, err, tc.out)
		}
	}
	var c AnthropicContent
	if err := c.UnmarshalJSON([]byte(`"x`)); err == nil {
		t.Error("truncated string accepted")
	}
	if !(AnthropicContent{}).IsZero() || AnthropicText("a").IsZero() || (AnthropicContent{Blocks: []ContentBlock{}}).IsZero() {
		t.Error("IsZero")
	}
}

func TestContentBlockEncoding(t *testing.T) {
	for _, tc := range []struct {
		b    ContentBlock
		want string
	}{
		{ContentBlock{Type: BlockText}, `{"type":"text","text":""}`},
		{ContentBlock{Type: BlockText, Text: "a"}, `{"type":"text","text":"a"}`},
		{ContentBlock{Type: BlockToolUse, ID: "t", Name: "n", Input: json.RawMessage(`{}`)}, `{"type":"tool_use","id":"t","name":"n","input":{}}`},
		{ContentBlock{Type: BlockImage, Source: &ImageSource{Type: "url", URL: "https://x/y.png"}}, `{"type":"image","source":{"type":"url","url":"https://x/y.png"}}`},
	} {
		out, err := json.Marshal(tc.b)
		if err != nil || string(out) != tc.want {
			t.Errorf("%+v encoded %s, %v; want %s", tc.b, out, err, tc.want)
		}
	}
}

func TestAnthropicStreamEventEncoding(t *testing.T) {
	for _, tc := range []struct {
		ev   AnthropicStreamEvent
		want string
	}{
		{AnthropicStreamEvent{Type: EventMessageStop}, `{"type":"message_stop"}`},
		{AnthropicStreamEvent{Type: EventPing}, `{"type":"ping"}`},
		{AnthropicStreamEvent{Type: EventContentBlockStop, Index: 0}, `{"type":"content_block_stop","index":0}`},
		{
			AnthropicStreamEvent{Type: EventContentBlockStart, Index: 1, ContentBlock: &ContentBlock{Type: BlockText}},
			`{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`,
		},
		{
			AnthropicStreamEvent{Type: EventContentBlockDelta, Index: 1, Delta: &AnthropicDelta{Type: DeltaInputJSON, PartialJSON: `{"a":`}},
			`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`,
		},
		{
			AnthropicStreamEvent{Type: EventMessageDelta, Delta: &AnthropicDelta{StopReason: ptr("max_tokens")}, Usage: &DeltaUsage{OutputTokens: 7}},
			`{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}`,
		},
		{
			AnthropicStreamEvent{Type: EventMessageDelta, Delta: &AnthropicDelta{StopReason: ptr("end_turn")}, Usage: &DeltaUsage{InputTokens: ptr(0), OutputTokens: 9, CacheReadInputTokens: ptr(12)}},
			`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":0,"output_tokens":9,"cache_read_input_tokens":12}}`,
		},
		{
			AnthropicStreamEvent{Type: EventError, Error: &AnthropicError{Type: AnthropicOverloadedError, Message: "Overloaded"}},
			`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
		},
	} {
		out, err := json.Marshal(tc.ev)
		if err != nil || string(out) != tc.want {
			t.Errorf("%+v encoded\n %s, %v\nwant\n %s", tc.ev, out, err, tc.want)
		}
		roundTrip(t, tc.ev)
	}
}

func TestAnthropicUsageCache(t *testing.T) {
	in := `{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":null,"cache_read_input_tokens":100}`
	var u AnthropicUsage
	if err := json.Unmarshal([]byte(in), &u); err != nil {
		t.Fatal(err)
	}
	want := AnthropicUsage{InputTokens: 3, OutputTokens: 4, CacheReadInputTokens: ptr(100)}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("decoded %+v, want %+v", u, want)
	}
	roundTrip(t, u)
}

func TestAnthropicErrorHelpers(t *testing.T) {
	for _, tc := range []struct {
		body AnthropicErrorBody
		typ  string
		err  string
	}{
		{NewAnthropicOverloadedBody(), AnthropicOverloadedError, "anthropic: overloaded_error: Overloaded"},
		{
			NewAnthropicRateLimitBody("50,000 input tokens per minute"), AnthropicRateLimitError,
			"anthropic: rate_limit_error: This request would exceed the rate limit for your organization of 50,000 input tokens per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.",
		},
		{NewAnthropicErrorBody(AnthropicAPIError, "boom"), AnthropicAPIError, "anthropic: api_error: boom"},
	} {
		if tc.body.Type != "error" || tc.body.Error.Type != tc.typ || tc.body.Error.Error() != tc.err {
			t.Errorf("%+v: Error() = %q, want type %q, %q", tc.body, tc.body.Error.Error(), tc.typ, tc.err)
		}
		roundTrip(t, tc.body)
	}
	if got := (AnthropicError{Message: "m"}).Error(); got != "anthropic: m" {
		t.Errorf("Error() = %q", got)
	}
	out, _ := json.Marshal(NewAnthropicOverloadedBody())
	if string(out) != `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` {
		t.Errorf("encoded %s", out)
	}
}
