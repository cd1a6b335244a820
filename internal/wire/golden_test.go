package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// readGolden returns the contents of a fixture under testdata/golden.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeGolden decodes a fixture into a new T and checks that encoding it
// and decoding the result gives an equal value.
func decodeGolden[T any](t *testing.T, name string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(readGolden(t, name), &v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	roundTrip(t, v)
	return v
}

// roundTrip checks that v encodes and decodes back to an equal value.
func roundTrip[T any](t *testing.T, v T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	var back T
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if !reflect.DeepEqual(v, back) {
		t.Fatalf("round trip of %T changed it:\n got %#v\nwant %#v\njson %s", v, back, v, b)
	}
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func TestGoldenOpenAIChatRequest(t *testing.T) {
	r := decodeGolden[ChatRequest](t, "openai_chat_request.json")
	if r.Model != "gpt-4.1" || len(r.Messages) != 2 {
		t.Fatalf("got model %q, %d messages", r.Model, len(r.Messages))
	}
	if m := r.Messages[0]; m.Role != "developer" || m.Content.String() != "You are a helpful assistant." || m.Content.Parts != nil {
		t.Errorf("message 0 = %+v", m)
	}
	if m := r.Messages[1]; m.Role != "user" || m.Content.Text != "Hello!" {
		t.Errorf("message 1 = %+v", m)
	}
	if r.MaxTokens != nil || r.N != nil || r.Stream || r.Extra != nil {
		t.Errorf("unset members decoded: %+v", r)
	}
}

func TestGoldenOpenAIChatRequestImage(t *testing.T) {
	r := decodeGolden[ChatRequest](t, "openai_chat_request_image.json")
	if got := deref(r.MaxTokens); got != 300 {
		t.Errorf("max_tokens = %d, want 300", got)
	}
	c := r.Messages[0].Content
	if len(c.Parts) != 2 || c.ImageCount() != 1 || c.String() != "What's in this image?" {
		t.Fatalf("content = %+v", c)
	}
	if u := c.Parts[1].ImageURL; u == nil || !strings.HasSuffix(u.URL, "2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg") || u.Detail != "" {
		t.Errorf("image_url = %+v", u)
	}
}

func TestGoldenOpenAIChatResponse(t *testing.T) {
	r := decodeGolden[ChatResponse](t, "openai_chat_response.json")
	if r.ID != "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT" || r.Object != ObjectChatCompletion ||
		r.Created != 1741569952 || r.Model != "gpt-4.1-2025-04-14" || r.ServiceTier != "default" {
		t.Errorf("header fields = %+v", r)
	}
	if len(r.Choices) != 1 {
		t.Fatalf("%d choices", len(r.Choices))
	}
	c := r.Choices[0]
	if c.Index != 0 || c.FinishReason != "stop" || string(c.Logprobs) != "null" ||
		c.Message.Role != "assistant" || c.Message.Content.String() != "Hello! How can I assist you today?" ||
		c.Message.Refusal != nil {
		t.Errorf("choice = %+v", c)
	}
	want := Usage{
		PromptTokens: 19, CompletionTokens: 10, TotalTokens: 29,
		PromptTokensDetails:     &PromptTokensDetails{},
		CompletionTokensDetails: &CompletionTokensDetails{},
	}
	if r.Usage == nil || !reflect.DeepEqual(*r.Usage, want) {
		t.Errorf("usage = %+v, want %+v", r.Usage, want)
	}
}

func TestGoldenOpenAIChatStream(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "golden", "openai_chat_stream.sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		text   strings.Builder
		finish string
		usage  *Usage
		done   bool
		chunks int
	)
	for ev, err := range Events(f) {
		if err != nil {
			t.Fatal(err)
		}
		if done {
			t.Fatalf("event after [DONE]: %+v", ev)
		}
		if ev.Data == StreamDone {
			done = true
			continue
		}
		var c ChatChunk
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			t.Fatalf("chunk %q: %v", ev.Data, err)
		}
		roundTrip(t, c)
		chunks++
		if c.Object != ObjectChatCompletionChunk || c.ID != "chatcmpl-123" || c.SystemFingerprint != "fp_44709d6fcb" {
			t.Errorf("chunk header = %+v", c)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 {
				t.Errorf("usage chunk has choices: %+v", c.Choices)
			}
			usage = c.Usage
		}
	}
	if !done || chunks != 7 {
		t.Errorf("done = %v after %d chunks, want true after 7", done, chunks)
	}
	if text.String() != "Hello! today?" || finish != "stop" {
		t.Errorf("text %q, finish %q", text.String(), finish)
	}
	if usage == nil || usage.PromptTokens != 9 || usage.CompletionTokens != 12 || usage.TotalTokens != 21 {
		t.Errorf("usage = %+v", usage)
	}
}

func TestGoldenOpenAIEmbeddings(t *testing.T) {
	req := decodeGolden[EmbeddingRequest](t, "openai_embedding_request.json")
	if req.Model != "text-embedding-ada-002" || req.EncodingFormat != "float" ||
		!req.Input.Single || !reflect.DeepEqual(req.Input.Texts, []string{"The food was delicious and the waiter..."}) {
		t.Errorf("request = %+v", req)
	}
	b, _ := json.Marshal(req.Input)
	if string(b) != `"The food was delicious and the waiter..."` {
		t.Errorf("input encodes as %s, want the string", b)
	}

	resp := decodeGolden[EmbeddingResponse](t, "openai_embedding_response.json")
	if resp.Object != ObjectList || resp.Model != "text-embedding-ada-002" ||
		resp.Usage != (EmbeddingUsage{PromptTokens: 8, TotalTokens: 8}) || len(resp.Data) != 1 {
		t.Fatalf("response = %+v", resp)
	}
	want := Embedding{Object: ObjectEmbedding, Index: 0, Embedding: []float64{0.0023064255, -0.009327292, -0.0028842222}}
	if !reflect.DeepEqual(resp.Data[0], want) {
		t.Errorf("data[0] = %+v, want %+v", resp.Data[0], want)
	}
}

func TestGoldenOpenAIErrors(t *testing.T) {
	rl := decodeGolden[OpenAIErrorBody](t, "openai_error_rate_limit.json")
	if rl.Error.Type != TypeTokens || rl.Error.CodeString() != CodeRateLimitExceeded ||
		rl.Error.Param != nil || rl.Error.QuotaExhausted() ||
		!strings.HasPrefix(rl.Error.Message, "Request too large for gpt-4o") {
		t.Errorf("rate limit = %+v", rl.Error)
	}
	q := decodeGolden[OpenAIErrorBody](t, "openai_error_insufficient_quota.json")
	if !q.Error.QuotaExhausted() || q.Error.Type != CodeInsufficientQuota {
		t.Errorf("quota = %+v", q.Error)
	}
	if got, want := q.Error.Error(), "openai: insufficient_quota: You exceeded your current quota, please check your plan and billing details."; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestGoldenAnthropicMessages(t *testing.T) {
	req := decodeGolden[MessagesRequest](t, "anthropic_messages_request.json")
	if req.Model != "claude-sonnet-4-20250514" || req.MaxTokens != 1024 || len(req.Messages) != 1 ||
		req.Messages[0].Role != "user" || req.Messages[0].Content.String() != "Hello, world" ||
		!req.System.IsZero() || req.Extra != nil {
		t.Errorf("request = %+v", req)
	}
	b, _ := json.Marshal(req)
	if strings.Contains(string(b), "system") {
		t.Errorf("empty system encoded: %s", b)
	}

	resp := decodeGolden[MessagesResponse](t, "anthropic_messages_response.json")
	want := MessagesResponse{
		ID: "msg_013Zva2CMHLNnXjNJJKqJ2EF", Type: TypeMessage, Role: "assistant",
		Model:      "claude-3-7-sonnet-20250219",
		Content:    []ContentBlock{{Type: BlockText, Text: "Hi! My name is Claude."}},
		StopReason: ptr("end_turn"),
		Usage:      AnthropicUsage{InputTokens: 2095, OutputTokens: 503},
	}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("response = %+v, want %+v", resp, want)
	}
}

func TestGoldenAnthropicStream(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "golden", "anthropic_stream.sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		types []string
		text  strings.Builder
		start *MessagesResponse
		stop  string
		out   int
	)
	for ev, err := range Events(f) {
		if err != nil {
			t.Fatal(err)
		}
		var se AnthropicStreamEvent
		if err := json.Unmarshal([]byte(ev.Data), &se); err != nil {
			t.Fatalf("event %q: %v", ev.Data, err)
		}
		roundTrip(t, se)
		if se.Type != ev.Event {
			t.Errorf("SSE event %q carries type %q", ev.Event, se.Type)
		}
		types = append(types, se.Type)
		switch se.Type {
		case EventMessageStart:
			start = se.Message
		case EventContentBlockStart:
			if se.ContentBlock == nil || se.ContentBlock.Type != BlockText || se.Index != 0 {
				t.Errorf("block start = %+v", se)
			}
		case EventContentBlockDelta:
			if se.Delta.Type != DeltaText {
				t.Errorf("delta type %q", se.Delta.Type)
			}
			text.WriteString(se.Delta.Text)
		case EventMessageDelta:
			stop = deref(se.Delta.StopReason)
			out = se.Usage.OutputTokens
		}
	}
	wantTypes := []string{EventMessageStart, EventContentBlockStart, EventPing, EventContentBlockDelta,
		EventContentBlockDelta, EventContentBlockStop, EventMessageDelta, EventMessageStop}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Errorf("types = %v, want %v", types, wantTypes)
	}
	if start == nil || start.ID != "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY" || start.StopReason != nil ||
		start.Usage.InputTokens != 25 || len(start.Content) != 0 {
		t.Errorf("message_start = %+v", start)
	}
	if text.String() != "Hello!" || stop != "end_turn" || out != 15 {
		t.Errorf("text %q, stop %q, output tokens %d", text.String(), stop, out)
	}
}

func TestGoldenAnthropicErrors(t *testing.T) {
	nf := decodeGolden[AnthropicErrorBody](t, "anthropic_error_not_found.json")
	want := AnthropicErrorBody{
		Type:      "error",
		Error:     AnthropicError{Type: AnthropicNotFoundError, Message: "The requested resource could not be found."},
		RequestID: "req_011CSHoEeqs5C35K2UUqR7Fy",
	}
	if nf != want {
		t.Errorf("not found = %+v, want %+v", nf, want)
	}
	ov := decodeGolden[AnthropicErrorBody](t, "anthropic_error_overloaded.json")
	if ov != NewAnthropicOverloadedBody() {
		t.Errorf("overloaded = %+v, want %+v", ov, NewAnthropicOverloadedBody())
	}

	f, err := os.Open(filepath.Join("testdata", "golden", "anthropic_stream_error.sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for ev, err := range Events(f) {
		if err != nil {
			t.Fatal(err)
		}
		var se AnthropicStreamEvent
		if err := json.Unmarshal([]byte(ev.Data), &se); err != nil {
			t.Fatal(err)
		}
		n++
		if ev.Event != EventError || se.Error == nil || *se.Error != ov.Error {
			t.Errorf("error event = %+v", se)
		}
	}
	if n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}
