package simulator

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

func TestRequestLimit(t *testing.T) {
	// 2 requests per minute: the bucket holds 2 and refills one every 30s,
	// far longer than the test, so the third request is refused.
	ts := start(t, Config{RequestsPerMinute: 2})
	body := chatBody("gpt-4o", "hello world", nil)
	for i := range 2 {
		if r := ts.do(request{path: "/v1/chat/completions", body: body}); r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
	r := ts.do(request{path: "/v1/chat/completions", body: body})
	e := openAIError(t, r, http.StatusTooManyRequests)
	if e.Type != wire.TypeRequests || e.CodeString() != wire.CodeRateLimitExceeded ||
		!strings.Contains(e.Message, "on requests per min (RPM): Limit 2, Used 2, Requested 1") {
		t.Errorf("body %+v", e)
	}
	ms, err := strconv.Atoi(r.header.Get("retry-after-ms"))
	if err != nil || ms < 29000 || ms > 30000 {
		t.Errorf("retry-after-ms %q, want about 30000", r.header.Get("retry-after-ms"))
	}
	if got := r.header.Get("retry-after"); got != "30" {
		t.Errorf("retry-after %q, want 30", got)
	}
	if got := r.header.Get("x-ratelimit-remaining-requests"); got != "0" {
		t.Errorf("remaining %q, want 0", got)
	}
	rl, err := wire.ParseOpenAIRateLimit(r.header, time.Now())
	if err != nil || rl.Requests.Limit != 2 || rl.Tokens.Present() {
		t.Errorf("parsed %+v, %v: want a request budget of 2 and no token budget", rl, err)
	}

	// Another key has its own buckets.
	if r := ts.do(request{path: "/v1/chat/completions", key: "sk-other", body: body}); r.status != 200 {
		t.Errorf("other key: status %d", r.status)
	}
	st := ts.Stats()
	if st.RateLimited != 1 || st.Admitted != 3 || st.ByStatus[429] != 1 || st.ByKey["sk-test"].RateLimited != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTokenLimit(t *testing.T) {
	// A request of "hello world" with max_tokens 100 costs 9 + 100 tokens;
	// 250 tokens per minute admit two. The clock stands still, so that the
	// counts are exact however slowly the test runs.
	s, err := New(Config{TokensPerMinute: 250})
	if err != nil {
		t.Fatal(err)
	}
	s.now = (&fakeClock{t: time.Unix(1e9, 0)}).now
	ts := startServer(t, s)
	body := chatBody("gpt-4o", "hello world", map[string]any{"max_tokens": 100})
	for i := range 2 {
		r := ts.do(request{path: "/v1/chat/completions", body: body})
		if r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		if got, want := r.header.Get("x-ratelimit-remaining-tokens"), strconv.Itoa(250-109*(i+1)); got != want {
			t.Errorf("request %d: remaining tokens %q, want %q", i, got, want)
		}
	}
	r := ts.do(request{path: "/v1/chat/completions", body: body})
	e := openAIError(t, r, http.StatusTooManyRequests)
	if e.Type != wire.TypeTokens || !strings.Contains(e.Message, "on tokens per min (TPM): Limit 250, Used 218, Requested 109") {
		t.Errorf("body %+v", e)
	}
	// 109 - 32 = 77 tokens short at 250/60 per second: 18.48 s.
	if r.header.Get("retry-after-ms") != "18480" || r.header.Get("retry-after") != "19" {
		t.Errorf("retry-after-ms %q, retry-after %q; want 18480 and 19", r.header.Get("retry-after-ms"), r.header.Get("retry-after"))
	}
	if r.header.Get("x-ratelimit-limit-requests") != "" {
		t.Error("headers for the unlimited request budget")
	}
	// An embeddings request of 2 tokens still fits.
	if r := ts.do(request{path: "/v1/embeddings", body: map[string]any{"model": "text-embedding-3-small", "input": "hello world"}}); r.status != 200 {
		t.Errorf("small request: status %d", r.status)
	}
}

func TestRequestLargerThanTokenLimit(t *testing.T) {
	ts := start(t, Config{TokensPerMinute: 100, RequestsPerMinute: 10})
	r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hello world", nil)})
	e := openAIError(t, r, http.StatusTooManyRequests)
	want := "Request too large for gpt-4o on tokens per min (TPM): Limit 100, Requested " + strconv.Itoa(9+tokens.DefaultMaxTokens)
	if e.Type != wire.TypeTokens || !strings.HasPrefix(e.Message, want) {
		t.Errorf("body %+v, want a message starting %q", e, want)
	}
	if r.header.Get("retry-after") != "" {
		t.Error("retry-after on a request that waiting cannot admit")
	}
	ae := anthropicError(t, ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 200, nil)}), 429)
	if ae.Type != wire.AnthropicRateLimitError || !strings.Contains(ae.Message, "100 tokens per minute") {
		t.Errorf("Anthropic body %+v", ae)
	}
	if got := ts.Stats().ByKey["sk-test"]; got.RateLimited != 2 || got.Admitted != 0 {
		t.Errorf("key stats %+v", got)
	}
}

func TestAnthropicRateLimit(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 1, TokensPerMinute: 1000})
	body := messagesBody("claude-sonnet-4-5", "hello world", 10, nil)
	if r := ts.do(request{path: "/v1/messages", body: body}); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	r := ts.do(request{path: "/v1/messages", body: body})
	e := anthropicError(t, r, http.StatusTooManyRequests)
	if e.Type != wire.AnthropicRateLimitError || !strings.Contains(e.Message, "of 1 requests per minute") {
		t.Errorf("body %+v", e)
	}
	if got := r.header.Get("retry-after"); got != "60" {
		t.Errorf("retry-after %q, want 60", got)
	}
	if r.header.Get("retry-after-ms") != "" {
		t.Error("retry-after-ms is OpenAI's header, not Anthropic's")
	}
	if got := r.header.Get("anthropic-ratelimit-requests-remaining"); got != "0" {
		t.Errorf("remaining %q", got)
	}
}

func TestBucketRefill(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := New(Config{RequestsPerMinute: 60, TokensPerMinute: 600})
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	ts := startServer(t, s)
	body := chatBody("gpt-4o", "hello world", map[string]any{"max_tokens": 291}) // 300 tokens
	check := func(r response, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
	}
	r := ts.do(request{path: "/v1/chat/completions", body: body})
	check(r, map[string]string{
		"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
		"x-ratelimit-remaining-tokens": "300", "x-ratelimit-reset-tokens": "30s",
	})
	r = ts.do(request{path: "/v1/chat/completions", body: body})
	check(r, map[string]string{
		"x-ratelimit-remaining-requests": "58", "x-ratelimit-reset-requests": "2s",
		"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s",
	})
	r = ts.do(request{path: "/v1/chat/completions", body: body})
	if r.status != 429 || r.header.Get("retry-after-ms") != "30000" || r.header.Get("retry-after") != "30" {
		t.Errorf("empty bucket: status %d, retry-after-ms %q, retry-after %q", r.status, r.header.Get("retry-after-ms"), r.header.Get("retry-after"))
	}

	clock.advance(12500 * time.Millisecond) // 125 tokens and 12.5 requests back
	r = ts.do(request{path: "/v1/chat/completions", body: body})
	if r.status != 429 || r.header.Get("retry-after-ms") != "17500" || r.header.Get("retry-after") != "18" {
		t.Errorf("part refilled: status %d, retry-after-ms %q, retry-after %q", r.status, r.header.Get("retry-after-ms"), r.header.Get("retry-after"))
	}
	check(r, map[string]string{
		"x-ratelimit-remaining-requests": "60", "x-ratelimit-reset-requests": "0s",
		"x-ratelimit-remaining-tokens": "125", "x-ratelimit-reset-tokens": "47.5s",
	})

	clock.advance(time.Hour) // full again, never beyond
	r = ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 291, nil)})
	// Now is 04:04:17.5; the resets, 1 s and 30 s on, are rounded up to
	// whole seconds, so that the budget is full by the time given.
	check(r, map[string]string{
		"anthropic-ratelimit-requests-remaining": "59",
		"anthropic-ratelimit-requests-reset":     "2025-01-02T04:04:19Z",
		"anthropic-ratelimit-tokens-remaining":   "300",
		"anthropic-ratelimit-tokens-reset":       "2025-01-02T04:04:48Z",
	})
}

func TestRateHeadersOnErrors(t *testing.T) {
	// An accepted key learns its budget even from a response that failed.
	ts := start(t, Config{RequestsPerMinute: 5})
	r := ts.do(request{path: "/v1/chat/completions", body: "{", key: "sk-a"})
	if r.status != 400 || r.header.Get("x-ratelimit-remaining-requests") != "5" {
		t.Errorf("status %d, remaining %q: want 400 with 5 remaining", r.status, r.header.Get("x-ratelimit-remaining-requests"))
	}
	r = ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil), key: "sk-a", headers: map[string]string{HeaderFault: "500"}})
	if r.status != 500 || r.header.Get("x-ratelimit-remaining-requests") != "4" {
		t.Errorf("status %d, remaining %q: want 500 charged, with 4 remaining", r.status, r.header.Get("x-ratelimit-remaining-requests"))
	}
}
