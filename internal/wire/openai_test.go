package wire

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestChatRequestExtraRoundTrip(t *testing.T) {
	in := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":2,"seed":42,` +
		`"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}`
	var r ChatRequest
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if deref(r.N) != 2 || len(r.Extra) != 3 || string(r.Extra["seed"]) != "42" ||
		string(r.Extra["response_format"]) != `{"type":"json_object"}` {
		t.Fatalf("decoded %+v", r)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	// Known members first in field order, then the extra ones sorted.
	want := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":2,` +
		`"response_format":{"type":"json_object"},"seed":42,"tools":[{"type":"function","function":{"name":"f"}}]}`
	if string(out) != want {
		t.Errorf("encoded\n %s\nwant\n %s", out, want)
	}
	roundTrip(t, r)
}

func TestChatRequestExtraCannotShadowFields(t *testing.T) {
	r := ChatRequest{
		Model: "m",
		Extra: map[string]json.RawMessage{
			"model":      json.RawMessage(`"other"`),
			"Stream":     json.RawMessage(`true`), // encoding/json matches names case-insensitively
			"logit_bias": json.RawMessage(`{ "50256" : -100 }`),
		},
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":null,"logit_bias":{"50256":-100}}`
	if string(out) != want {
		t.Errorf("encoded %s, want %s", out, want)
	}

	var back ChatRequest
	if err := json.Unmarshal([]byte(`{"MODEL":"x","Stream":true,"other":1}`), &back); err != nil {
		t.Fatal(err)
	}
	if back.Model != "x" || !back.Stream || len(back.Extra) != 1 {
		t.Errorf("decoded %+v", back)
	}
}

func TestChatRequestExtraErrors(t *testing.T) {
	r := ChatRequest{Extra: map[string]json.RawMessage{"bad": json.RawMessage(`{`)}}
	if _, err := json.Marshal(r); err == nil {
		t.Error("invalid Extra value encoded without error")
	}
	for _, in := range []string{`[]`, `{"model":1}`, `{"stop":{}}`, `{"messages":[{"content":1}]}`} {
		var r ChatRequest
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("%s decoded without error: %+v", in, r)
		}
	}
}

func TestChatRequestEmptyExtraObject(t *testing.T) {
	// With every modelled field omitted the known part is "{}", and the
	// extra members must not be preceded by a comma.
	out, err := marshalWithExtra(struct {
		A int `json:"a,omitempty"`
	}{}, map[string]json.RawMessage{"b": json.RawMessage("1"), "c": json.RawMessage("2")})
	if err != nil || string(out) != `{"b":1,"c":2}` {
		t.Errorf("got %s, %v", out, err)
	}
}

func TestStopSequences(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want StopSequences
	}{
		{`{"stop":"\n"}`, StopSequences{"\n"}},
		{`{"stop":["a","b"]}`, StopSequences{"a", "b"}},
		{`{"stop":null}`, nil},
		{`{}`, nil},
	} {
		var r ChatRequest
		if err := json.Unmarshal([]byte(tc.in), &r); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !reflect.DeepEqual(r.Stop, tc.want) {
			t.Errorf("%s: stop = %q, want %q", tc.in, r.Stop, tc.want)
		}
	}
	var s StopSequences
	if err := s.UnmarshalJSON([]byte(`"bad`)); err == nil {
		t.Error("truncated string accepted")
	}
}

func TestContent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		want   Content
		str    string
		images int
		out    string
	}{
		{"string", `"hello"`, Content{Text: "hello"}, "hello", 0, `"hello"`},
		{"null", `null`, Content{}, "", 0, `""`},
		{"empty array", `[]`, Content{Parts: []ContentPart{}}, "", 0, `[]`},
		{
			"parts", `[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u","detail":"low"}},{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"v"}}]`,
			Content{Parts: []ContentPart{
				{Type: PartText, Text: "a"},
				{Type: PartImageURL, ImageURL: &ImageURL{URL: "u", Detail: "low"}},
				{Type: PartText, Text: "b"},
				{Type: PartImageURL, ImageURL: &ImageURL{URL: "v"}},
			}},
			"a\nb", 2,
			`[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u","detail":"low"}},{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"v"}}]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Content
			if err := json.Unmarshal([]byte(tc.in), &c); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("decoded %#v, want %#v", c, tc.want)
			}
			if c.String() != tc.str || c.ImageCount() != tc.images {
				t.Errorf("String() = %q, ImageCount() = %d; want %q, %d", c.String(), c.ImageCount(), tc.str, tc.images)
			}
			out, err := json.Marshal(c)
			if err != nil || string(out) != tc.out {
				t.Errorf("encoded %s, %v; want %s", out, err, tc.out)
			}
		})
	}
	var c Content
	for _, bad := range []string{`1`, `{"type":"text"}`, `"unterminated`} {
		if err := c.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if !reflect.DeepEqual(TextContent("x"), Content{Text: "x"}) {
		t.Error("TextContent")
	}
}

func TestEmbeddingInput(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want EmbeddingInput
		n    int
		out  string
	}{
		{`"one"`, EmbeddingInput{Texts: []string{"one"}, Single: true}, 1, `"one"`},
		{`["a","b"]`, EmbeddingInput{Texts: []string{"a", "b"}}, 2, `["a","b"]`},
		{`["a"]`, EmbeddingInput{Texts: []string{"a"}}, 1, `["a"]`},
		{`[]`, EmbeddingInput{Texts: []string{}}, 0, `[]`},
		{`null`, EmbeddingInput{}, 0, `[]`},
		{`[1,2,3]`, EmbeddingInput{Tokens: [][]int{{1, 2, 3}}, Single: true}, 1, `[1,2,3]`},
		{`[[1],[2,3]]`, EmbeddingInput{Tokens: [][]int{{1}, {2, 3}}}, 2, `[[1],[2,3]]`},
		{`[[5]]`, EmbeddingInput{Tokens: [][]int{{5}}}, 1, `[[5]]`},
	} {
		var in EmbeddingInput
		if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !reflect.DeepEqual(in, tc.want) || in.Len() != tc.n {
			t.Errorf("%s: decoded %#v (len %d), want %#v (len %d)", tc.in, in, in.Len(), tc.want, tc.n)
		}
		out, err := json.Marshal(in)
		if err != nil || string(out) != tc.out {
			t.Errorf("%s: encoded %s, %v; want %s", tc.in, out, err, tc.out)
		}
	}
	for _, bad := range []string{`1`, `{}`, `["a",1]`, `[1,"a"]`, `[[1],"a"]`, `[true]`, `"x`} {
		var in EmbeddingInput
		if err := json.Unmarshal([]byte(bad), &in); err == nil {
			t.Errorf("%s accepted: %#v", bad, in)
		}
	}
	if got := TextInput("t"); !got.Single || !reflect.DeepEqual(got.Texts, []string{"t"}) {
		t.Errorf("TextInput = %#v", got)
	}
}

func TestEmbeddingBase64(t *testing.T) {
	vals := []float32{0.5, -1.25, 3}
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	in := `{"object":"embedding","index":2,"embedding":"` + base64.StdEncoding.EncodeToString(b) + `"}`
	var e Embedding
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	want := Embedding{Object: ObjectEmbedding, Index: 2, Embedding: []float64{0.5, -1.25, 3}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("decoded %+v, want %+v", e, want)
	}
	out, _ := json.Marshal(e)
	if string(out) != `{"object":"embedding","index":2,"embedding":[0.5,-1.25,3]}` {
		t.Errorf("encoded %s", out)
	}

	for _, bad := range []string{
		`{"embedding":"!!!"}`, // not base64
		`{"embedding":"AAAA AA=="}`,
		`{"embedding":"AAA="}`, // 2 bytes: not whole float32 values
		`{"embedding":{}}`,
		`{"embedding":"\x"}`,
		`[]`,
	} {
		var e Embedding
		if err := json.Unmarshal([]byte(bad), &e); err == nil {
			t.Errorf("%s accepted: %+v", bad, e)
		}
	}
	var empty Embedding
	if err := json.Unmarshal([]byte(`{"index":1,"embedding":null}`), &empty); err != nil || empty.Embedding != nil || empty.Index != 1 {
		t.Errorf("null embedding: %+v, %v", empty, err)
	}
}

func TestOpenAIErrorCode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code *string
	}{
		{`{"error":{"message":"m","type":"t","param":null,"code":"rate_limit_exceeded"}}`, ptr("rate_limit_exceeded")},
		{`{"error":{"message":"m","type":"t","param":null,"code":429}}`, ptr("429")},
		{`{"error":{"message":"m","type":"t","param":null,"code":1.5e3}}`, ptr("1.5e3")},
		{`{"error":{"message":"m","type":"t","param":"x","code":null}}`, nil},
		{`{"error":{"message":"m","type":"t"}}`, nil},
	} {
		var b OpenAIErrorBody
		if err := json.Unmarshal([]byte(tc.in), &b); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !reflect.DeepEqual(b.Error.Code, tc.code) || b.Error.Message != "m" || b.Error.Type != "t" {
			t.Errorf("%s: decoded %+v, code %v", tc.in, b.Error, deref(b.Error.Code))
		}
		roundTrip(t, b)
	}
	for _, bad := range []string{
		`{"error":{"code":true}}`,
		`{"error":{"code":{}}}`,
		`{"error":{"code":"\x"}}`,
		`{"error":[]}`,
	} {
		var b OpenAIErrorBody
		if err := json.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("%s accepted: %+v", bad, b)
		}
	}
}

func TestOpenAIErrorHelpers(t *testing.T) {
	b := NewOpenAIErrorBody(TypeInvalidRequest, "", "bad")
	out, _ := json.Marshal(b)
	if string(out) != `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}` {
		t.Errorf("encoded %s", out)
	}
	if b.Error.Error() != "openai: invalid_request_error: bad" || b.Error.CodeString() != "" || b.Error.QuotaExhausted() {
		t.Errorf("helpers of %+v", b.Error)
	}
	if got := (OpenAIError{Message: "x"}).Error(); got != "openai: x" {
		t.Errorf("Error() = %q", got)
	}

	rl := NewOpenAIRateLimitBody("gpt-4o", TypeTokens, 30000, 29937, 385, "644ms")
	wantMsg := "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms."
	if rl.Error.Type != TypeTokens || rl.Error.CodeString() != CodeRateLimitExceeded || rl.Error.Message != wantMsg {
		t.Errorf("rate limit body = %+v", rl.Error)
	}
	if rl.Error.Error() != "openai: rate_limit_exceeded: "+wantMsg {
		t.Errorf("Error() = %q", rl.Error.Error())
	}
	rq := NewOpenAIRateLimitBody("gpt-4o", TypeRequests, 500, 500, 1, "120ms")
	if !strings.Contains(rq.Error.Message, "on requests per min (RPM): Limit 500") || rq.Error.Type != TypeRequests {
		t.Errorf("request rate limit body = %+v", rq.Error)
	}

	q := NewOpenAIQuotaBody()
	if !q.Error.QuotaExhausted() || q.Error.CodeString() != CodeInsufficientQuota || q.Error.Type != CodeInsufficientQuota {
		t.Errorf("quota body = %+v", q.Error)
	}
	// Older responses carry the reason only in the type.
	if !(OpenAIError{Type: CodeInsufficientQuota}).QuotaExhausted() {
		t.Error("type-only insufficient_quota not recognised")
	}
}

func TestChatChunkUsageNull(t *testing.T) {
	in := `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}],"usage":null}`
	var c ChatChunk
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.Usage != nil || c.Choices[0].FinishReason != nil || c.Choices[0].Delta.Content != "x" {
		t.Errorf("decoded %+v", c)
	}
	roundTrip(t, c)
}
