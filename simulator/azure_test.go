package simulator

import (
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

const (
	azureKey     = "azure-test-key-5d1e"
	azureVersion = "2024-10-21"
)

// azureReq is a request to a deployment's endpoint op ("chat/completions"
// or "embeddings"), with the key in api-key and the api-version given.
func azureReq(deployment, op, version string, body any, headers map[string]string) request {
	path := "/openai/deployments/" + deployment + "/" + op
	if version != "" {
		path += "?api-version=" + version
	}
	h := map[string]string{"api-key": azureKey}
	maps.Copy(h, headers)
	return request{path: path, body: body, noKey: true, headers: h}
}

// azureError decodes Azure's own error body, checking the status.
func azureErrorOf(t *testing.T, r response, status int) azureErrorBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return decode[azureErrorBody](t, r)
}

func TestAzureChatAndEmbeddings(t *testing.T) {
	ts := start(t, Config{Keys: []string{azureKey}, RequestsPerMinute: 600, TokensPerMinute: 100000})

	// The deployment names the model when the body does not.
	r := ts.do(azureReq("gpt-4o-prod", "chat/completions", azureVersion, map[string]any{
		"messages": []map[string]any{{"role": "user", "content": "hi"}}, "max_tokens": 5}, nil))
	chat := decode[wire.ChatResponse](t, r)
	if r.status != 200 || chat.Model != "gpt-4o-prod" || chat.Usage == nil || chat.Usage.CompletionTokens != 5 {
		t.Errorf("chat: %d %s", r.status, r.body)
	}
	// Azure reports what remains of the deployment's budgets, and no more.
	if r.header.Get("x-ratelimit-remaining-requests") != "599" || r.header.Get("x-ratelimit-remaining-tokens") == "" ||
		r.header.Get("x-ratelimit-limit-requests") != "" || r.header.Get("x-ratelimit-reset-requests") != "" {
		t.Errorf("rate-limit headers %v", r.header)
	}
	// A model in the body is reported as the model.
	r = ts.do(azureReq("dep", "chat/completions", "2025-04-01-preview", chatBody("gpt-4o-mini", "hi", nil), nil))
	if chat := decode[wire.ChatResponse](t, r); r.status != 200 || chat.Model != "gpt-4o-mini" {
		t.Errorf("chat with a model: %d %s", r.status, r.body)
	}
	r = ts.do(azureReq("emb-small", "embeddings", azureVersion, map[string]any{"input": []string{"a", "b"}}, nil))
	if emb := decode[wire.EmbeddingResponse](t, r); r.status != 200 || len(emb.Data) != 2 || emb.Model != "emb-small" {
		t.Errorf("embeddings: %d %s", r.status, r.body)
	}
	// Streamed, with the usage chunk asked for.
	r = ts.do(azureReq("dep", "chat/completions", azureVersion, chatBody("", "hi", map[string]any{
		"stream": true, "stream_options": map[string]any{"include_usage": true}, "max_tokens": 3}), nil))
	if r.status != 200 || !strings.Contains(string(r.body), `"completion_tokens":3`) || !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") {
		t.Errorf("stream: %d %s", r.status, r.body)
	}
	if st := ts.Stats(); st.ByStatus[200] != 4 || st.ByKey[azureKey].Requests != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestAzureRefusals(t *testing.T) {
	ts := start(t, Config{Keys: []string{azureKey}})
	body := chatBody("", "hi", nil)
	for _, tc := range []struct {
		name   string
		req    request
		status int
		msg    string
	}{
		{"no api-version", azureReq("dep", "chat/completions", "", body, nil), 404, "Resource not found"},
		{"bad api-version", azureReq("dep", "chat/completions", "latest", body, nil), 400, "API version not supported"},
		{"no key", azureReq("dep", "chat/completions", azureVersion, body, map[string]string{"api-key": ""}), 401, "missing subscription key"},
		{"OpenAI's bearer", azureReq("dep", "embeddings", azureVersion, body, map[string]string{"api-key": "", "Authorization": "Bearer " + azureKey}), 401, "missing subscription key"},
		{"wrong key", azureReq("dep", "chat/completions", azureVersion, body, map[string]string{"api-key": "azure-wrong-key"}), 401, "invalid subscription key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := azureErrorOf(t, ts.do(tc.req), tc.status)
			if e.Error.Code != strconv.Itoa(tc.status) || !strings.Contains(e.Error.Message, tc.msg) {
				t.Errorf("error %+v, want code %d and a message with %q", e.Error, tc.status, tc.msg)
			}
		})
	}
	// A request's own errors are OpenAI's, as Azure relays them.
	r := ts.do(azureReq("dep", "chat/completions", azureVersion, map[string]any{"messages": []any{}}, nil))
	if e := openAIError(t, r, 400); e.Param == nil || *e.Param != "messages" {
		t.Errorf("invalid request: %s", r.body)
	}
	if st := ts.Stats(); st.Admitted != 0 {
		t.Errorf("%d refused requests admitted", st.Admitted)
	}
}

// TestAzureRateLimitPerDeployment checks that Azure limits each deployment
// apart, and answers an exhausted one with its own 429 and retry headers.
func TestAzureRateLimitPerDeployment(t *testing.T) {
	s, err := New(Config{RequestsPerMinute: 60, RequestBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s.now = clock.now
	ts := startServer(t, s)
	body := chatBody("", "hi", map[string]any{"max_tokens": 2})
	if r := ts.do(azureReq("a", "chat/completions", azureVersion, body, nil)); r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	r := ts.do(azureReq("a", "chat/completions", azureVersion, body, nil))
	e := azureErrorOf(t, r, 429)
	if e.Error.Code != "429" || !strings.Contains(e.Error.Message, "ChatCompletions_Create Operation under Azure OpenAI API version "+azureVersion) ||
		!strings.Contains(e.Error.Message, "Please retry after 1 seconds") {
		t.Errorf("429 body %s", r.body)
	}
	if r.header.Get("retry-after") != "1" || r.header.Get("retry-after-ms") != "1000" || r.header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("429 headers %v", r.header)
	}
	r = ts.do(azureReq("a", "embeddings", azureVersion, map[string]any{"input": "x"}, nil))
	if e := azureErrorOf(t, r, 429); !strings.Contains(e.Error.Message, "Embeddings_Create") {
		t.Errorf("embeddings 429 body %s", r.body)
	}
	// Another deployment has a budget of its own.
	if r := ts.do(azureReq("b", "chat/completions", azureVersion, body, nil)); r.status != 200 {
		t.Errorf("another deployment: %d %s", r.status, r.body)
	}
	clock.advance(time.Second)
	if r := ts.do(azureReq("a", "chat/completions", azureVersion, body, nil)); r.status != 200 {
		t.Errorf("after the refill: %d %s", r.status, r.body)
	}
	if r := ts.do(azureReq("a", "chat/completions", azureVersion, body, map[string]string{HeaderFault: "429"})); r.status != 429 ||
		!strings.Contains(string(r.body), "call rate limit") {
		t.Errorf("injected 429: %d %s", r.status, r.body)
	}
}
