package simulator

import (
	"net/http"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/internal/wire"
)

// openAIError decodes an OpenAI error body and checks its status.
func openAIError(t *testing.T, r response, status int) wire.OpenAIError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return decode[wire.OpenAIErrorBody](t, r).Error
}

// anthropicError decodes an Anthropic error body and checks its status.
func anthropicError(t *testing.T, r response, status int) wire.AnthropicError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	b := decode[wire.AnthropicErrorBody](t, r)
	if b.Type != "error" {
		t.Errorf("body type %q, want error", b.Type)
	}
	return b.Error
}

func TestAuthentication(t *testing.T) {
	ts := start(t, Config{Keys: []string{"sk-good"}, QuotaExhaustedKeys: []string{"sk-broke"}, RequestsPerMinute: 10})
	chat := chatBody("gpt-4o", "hi", nil)
	msg := messagesBody("claude-sonnet-4-5", "hi", 10, nil)

	e := openAIError(t, ts.do(request{path: "/v1/chat/completions", noKey: true, body: chat}), 401)
	if e.Type != wire.TypeInvalidRequest || !strings.Contains(e.Message, "didn't provide an API key") {
		t.Errorf("missing key: %+v", e)
	}
	r := ts.do(request{path: "/v1/embeddings", key: "sk-bad", body: chat})
	if e := openAIError(t, r, 401); e.CodeString() != "invalid_api_key" || strings.Contains(e.Message, "sk-bad") {
		t.Errorf("wrong key: %+v", e)
	}
	if r.header.Get("x-ratelimit-limit-requests") != "" {
		t.Error("rate-limit headers sent for a key that was refused")
	}
	if r := ts.do(request{path: "/v1/chat/completions", key: "sk-good", body: chat}); r.status != 200 {
		t.Errorf("accepted key: status %d", r.status)
	}

	if e := anthropicError(t, ts.do(request{path: "/v1/messages", noKey: true, body: msg}), 401); e.Type != wire.AnthropicAuthenticationError {
		t.Errorf("missing key: %+v", e)
	}
	if e := anthropicError(t, ts.do(request{path: "/v1/messages", key: "sk-bad", body: msg}), 401); e.Type != wire.AnthropicAuthenticationError || e.Message != "invalid x-api-key" {
		t.Errorf("wrong key: %+v", e)
	}
	if r := ts.do(request{path: "/v1/messages", key: "sk-good", body: msg}); r.status != 200 {
		t.Errorf("accepted key: status %d: %s", r.status, r.body)
	}
	// Anthropic takes the key as a bearer token too, as its SDKs send it.
	bearer := func(key string) request {
		return request{path: "/v1/messages", noKey: true, body: msg, headers: map[string]string{"Authorization": "Bearer " + key}}
	}
	if r := ts.do(bearer("sk-good")); r.status != 200 {
		t.Errorf("accepted key as a bearer token: status %d: %s", r.status, r.body)
	}
	if e := anthropicError(t, ts.do(bearer("sk-bad")), 401); e.Type != wire.AnthropicAuthenticationError {
		t.Errorf("wrong key as a bearer token: %+v", e)
	}

	st := ts.Stats()
	if len(st.ByKey) != 1 || st.ByKey["sk-good"].Requests != 3 || st.ByStatus[401] != 5 {
		t.Errorf("stats: by key %+v, by status %v", st.ByKey, st.ByStatus)
	}
}

func TestQuotaExhausted(t *testing.T) {
	ts := start(t, Config{Keys: []string{"sk-good"}, QuotaExhaustedKeys: []string{"sk-broke"}})
	for _, req := range []request{
		{path: "/v1/chat/completions", key: "sk-broke", body: chatBody("gpt-4o", "hi", nil)},
		{path: "/v1/chat/completions", key: "sk-good", body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderFault: "quota"}},
	} {
		r := ts.do(req)
		e := openAIError(t, r, http.StatusTooManyRequests)
		if !e.QuotaExhausted() || e.CodeString() != wire.CodeInsufficientQuota {
			t.Errorf("body %+v is not insufficient_quota", e)
		}
		if r.header.Get("retry-after") != "" || r.header.Get("retry-after-ms") != "" {
			t.Error("a quota refusal must not invite a retry")
		}
	}
	e := anthropicError(t, ts.do(request{path: "/v1/messages", key: "sk-broke", body: messagesBody("claude-sonnet-4-5", "hi", 10, nil)}), 400)
	if e.Type != wire.AnthropicInvalidRequestError || !strings.Contains(e.Message, "credit balance is too low") {
		t.Errorf("Anthropic quota: %+v", e)
	}
	if st := ts.Stats(); st.Admitted != 0 || st.RateLimited != 0 {
		t.Errorf("quota refusals were admitted or counted as rate limits: %+v", st)
	}
}

func TestInvalidRequests(t *testing.T) {
	ts := start(t, Config{MaxBodyBytes: 512})
	const chat, emb, msgs = "/v1/chat/completions", "/v1/embeddings", "/v1/messages"
	openAICases := []struct {
		name   string
		req    request
		status int
		param  string
		msg    string
	}{
		{"bad JSON", request{path: chat, body: "{not json"}, 400, "", "could not parse the JSON body"},
		{"no model", request{path: chat, body: chatBody("", "hi", nil)}, 400, "model", "must provide a model"},
		{"no messages", request{path: chat, body: map[string]any{"model": "gpt-4o", "messages": []any{}}}, 400, "messages", "too short"},
		{"n zero", request{path: chat, body: chatBody("gpt-4o", "hi", map[string]any{"n": 0})}, 400, "n", "range"},
		{"max_tokens zero", request{path: chat, body: chatBody("gpt-4o", "hi", map[string]any{"max_tokens": 0})}, 400, "max_tokens", "below minimum"},
		{"too large", request{path: chat, body: chatBody("gpt-4o", strings.Repeat("x", 600), nil)}, 413, "", "maximum size of 512 bytes"},
		{"embeddings bad JSON", request{path: emb, body: "[1,"}, 400, "", "could not parse"},
		{"embeddings no model", request{path: emb, body: map[string]any{"input": "hi"}}, 400, "model", "model"},
		{"embeddings no input", request{path: emb, body: map[string]any{"model": "text-embedding-3-small", "input": []string{}}}, 400, "input", "'$.input' is invalid"},
		{"embeddings empty text", request{path: emb, body: map[string]any{"model": "text-embedding-3-small", "input": []string{"a", ""}}}, 400, "input", "invalid"},
		{"embeddings empty ids", request{path: emb, body: map[string]any{"model": "text-embedding-3-small", "input": [][]int{{}}}}, 400, "input", "invalid"},
		{"embeddings zero dims", request{path: emb, body: map[string]any{"model": "text-embedding-3-small", "input": "a", "dimensions": 0}}, 400, "dimensions", "below minimum"},
		{"bad fault hook", request{path: chat, body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderFault: "502"}}, 400, "", "unknown X-Sim-Fault"},
		{"bad times hook", request{path: chat, body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderFault: "500", HeaderFaultTimes: "0"}}, 400, "", "positive integer"},
		{"bad latency hook", request{path: chat, body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderLatency: "soon"}}, 400, "", "Go duration"},
		{"bad should-retry hook", request{path: chat, body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderShouldRetry: "yes"}}, 400, "", "true or false"},
	}
	for _, tc := range openAICases {
		t.Run(tc.name, func(t *testing.T) {
			e := openAIError(t, ts.do(tc.req), tc.status)
			param := ""
			if e.Param != nil {
				param = *e.Param
			}
			if e.Type != wire.TypeInvalidRequest || param != tc.param || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("error %+v (param %q), want param %q and a message with %q", e, param, tc.param, tc.msg)
			}
		})
	}
	anthropicCases := []struct {
		name   string
		req    request
		status int
		typ    string
		msg    string
	}{
		{"bad JSON", request{path: msgs, body: "{"}, 400, wire.AnthropicInvalidRequestError, "not valid JSON"},
		{"no model", request{path: msgs, body: messagesBody("", "hi", 10, nil)}, 400, wire.AnthropicInvalidRequestError, "model"},
		{"no messages", request{path: msgs, body: map[string]any{"model": "claude-sonnet-4-5", "max_tokens": 10}}, 400, wire.AnthropicInvalidRequestError, "messages"},
		{"no max_tokens", request{path: msgs, body: messagesBody("claude-sonnet-4-5", "hi", 0, nil)}, 400, wire.AnthropicInvalidRequestError, "max_tokens"},
		{"no version", request{path: msgs, body: messagesBody("claude-sonnet-4-5", "hi", 10, nil), headers: map[string]string{"anthropic-version": ""}}, 400, wire.AnthropicInvalidRequestError, "anthropic-version"},
		{"too large", request{path: msgs, body: messagesBody("claude-sonnet-4-5", strings.Repeat("x", 600), 10, nil)}, 413, wire.AnthropicRequestTooLarge, "maximum size"},
	}
	for _, tc := range anthropicCases {
		t.Run("anthropic "+tc.name, func(t *testing.T) {
			e := anthropicError(t, ts.do(tc.req), tc.status)
			if e.Type != tc.typ || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("error %+v, want type %q and a message with %q", e, tc.typ, tc.msg)
			}
		})
	}
	if st := ts.Stats(); st.Admitted != 0 {
		t.Errorf("%d invalid requests admitted", st.Admitted)
	}
}

func TestWrongMethodAndPath(t *testing.T) {
	ts := start(t, Config{})
	resp, err := ts.client.Get(ts.url + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	e := openAIError(t, ts.do(request{path: "/v1/completions", body: "{}"}), 404)
	if e.Message != "Invalid URL (POST /v1/completions)" {
		t.Errorf("unknown path: %+v", e)
	}
}
