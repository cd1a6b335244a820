package simulator

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkHeaders reports every header of r that differs from want.
func checkHeaders(t *testing.T, r response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

func TestBurstConfig(t *testing.T) {
	for _, cfg := range []Config{
		{RequestsPerMinute: 10, RequestBurst: 10, TokensPerMinute: 100, TokenBurst: 100}, // a burst equal to its limit
		{RequestsPerMinute: 10, RequestBurst: 1, TokensPerMinute: 100, TokenBurst: 1},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestRequestBurst(t *testing.T) {
	// 60 requests per minute refill one a second; a burst of 2 lets only
	// two go at once. The headers keep reporting the per-minute limit.
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := New(Config{RequestsPerMinute: 60, RequestBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	ts := startServer(t, s)
	body := chatBody("gpt-4o", "hello world", map[string]any{"max_tokens": 5})
	chat := func() response { return ts.do(request{path: "/v1/chat/completions", body: body}) }

	r := chat()
	checkHeaders(t, r, map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "1s",
	})
	r = chat()
	checkHeaders(t, r, map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s",
	})
	if r.status != http.StatusOK {
		t.Fatalf("second request: status %d", r.status)
	}
	r = chat()
	e := openAIError(t, r, http.StatusTooManyRequests)
	// Used counts what the burst has spent, not the per-minute limit.
	if !strings.Contains(e.Message, "on requests per min (RPM): Limit 60, Used 2, Requested 1") {
		t.Errorf("message %q", e.Message)
	}
	checkHeaders(t, r, map[string]string{"retry-after-ms": "1000", "retry-after": "1", "x-ratelimit-remaining-requests": "0"})

	clock.advance(time.Second) // one request back
	if r := chat(); r.status != http.StatusOK || r.header.Get("x-ratelimit-reset-requests") != "2s" {
		t.Errorf("after 1s: status %d, reset %q; want 200 and 2s", r.status, r.header.Get("x-ratelimit-reset-requests"))
	}
	if r := chat(); r.status != http.StatusTooManyRequests {
		t.Errorf("burst spent again: status %d, want 429", r.status)
	}

	clock.advance(time.Hour) // refilled to the burst, never beyond
	r = ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 5, nil)})
	checkHeaders(t, r, map[string]string{
		"anthropic-ratelimit-requests-limit":     "60",
		"anthropic-ratelimit-requests-remaining": "1",
		"anthropic-ratelimit-requests-reset":     "2025-01-02T04:04:07Z", // now 04:04:06, full in 1 s
	})
	for range 2 {
		r = ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 5, nil)})
	}
	if e := anthropicError(t, r, http.StatusTooManyRequests); !strings.Contains(e.Message, "60 requests per minute") {
		t.Errorf("Anthropic message %q", e.Message)
	}
	if st := ts.Stats(); st.Admitted != 5 || st.RateLimited != 3 {
		t.Errorf("stats: %d admitted, %d rate limited; want 5 and 3", st.Admitted, st.RateLimited)
	}
}

func TestTokenBurst(t *testing.T) {
	// 6000 tokens per minute refill 100 a second; the bucket holds 300.
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s, err := New(Config{TokensPerMinute: 6000, TokenBurst: 300})
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	ts := startServer(t, s)
	fits := chatBody("gpt-4o", "hello world", map[string]any{"max_tokens": 291}) // 300 tokens
	r := ts.do(request{path: "/v1/chat/completions", body: fits})
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	checkHeaders(t, r, map[string]string{
		"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "3s",
	})
	r = ts.do(request{path: "/v1/chat/completions", body: fits})
	if e := openAIError(t, r, http.StatusTooManyRequests); !strings.Contains(e.Message, "Limit 6000, Used 300, Requested 300") {
		t.Errorf("message %q", e.Message)
	}
	checkHeaders(t, r, map[string]string{"retry-after-ms": "3000", "retry-after": "3"})

	clock.advance(1500 * time.Millisecond) // half the burst back
	checkHeaders(t, ts.do(request{path: "/v1/embeddings", body: map[string]any{"model": "text-embedding-3-small", "input": "hello world"}}),
		map[string]string{"x-ratelimit-remaining-tokens": "148", "x-ratelimit-reset-tokens": "1.52s"})

	// A request larger than the burst, though within the per-minute limit,
	// can never be admitted: 429 without retry headers.
	clock.advance(time.Hour)
	big := chatBody("gpt-4o", "hello world", map[string]any{"max_tokens": 400}) // 409 tokens
	r = ts.do(request{path: "/v1/chat/completions", body: big})
	e := openAIError(t, r, http.StatusTooManyRequests)
	if !strings.HasPrefix(e.Message, "Request too large for gpt-4o on tokens per min (TPM): Limit 6000 (burst 300), Requested 409.") {
		t.Errorf("message %q", e.Message)
	}
	if r.header.Get("retry-after") != "" || r.header.Get("x-ratelimit-remaining-tokens") != "300" {
		t.Errorf("retry-after %q, remaining %q; want none and 300", r.header.Get("retry-after"), r.header.Get("x-ratelimit-remaining-tokens"))
	}
	ae := anthropicError(t, ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 400, nil)}), http.StatusTooManyRequests)
	if !strings.Contains(ae.Message, "rate limit of 6000 tokens per minute (burst 300): requested 409") {
		t.Errorf("Anthropic message %q", ae.Message)
	}
}
