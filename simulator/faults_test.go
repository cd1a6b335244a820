package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// faulty returns a chat or messages request that forces fault.
func faulty(path, fault string, stream bool) request {
	body := chatBody("gpt-4o", "hello world", map[string]any{"stream": stream})
	if path == "/v1/messages" {
		body = messagesBody("claude-sonnet-4-5", "hello world", 100, map[string]any{"stream": stream})
	}
	return request{path: path, body: body, headers: map[string]string{HeaderFault: fault}}
}

func TestStatusFaults(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 100})
	cases := []struct {
		fault          string
		status         int
		openAI, anthro string // error types
	}{
		{"500", 500, wire.TypeServerError, wire.AnthropicAPIError},
		{"503", 503, wire.TypeServerError, wire.AnthropicAPIError},
		{"529", 529, wire.AnthropicOverloadedError, wire.AnthropicOverloadedError},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			e := openAIError(t, ts.do(faulty("/v1/chat/completions", tc.fault, stream)), tc.status)
			if e.Type != tc.openAI {
				t.Errorf("%s: OpenAI type %q, want %q", tc.fault, e.Type, tc.openAI)
			}
			a := anthropicError(t, ts.do(faulty("/v1/messages", tc.fault, stream)), tc.status)
			if a.Type != tc.anthro {
				t.Errorf("%s: Anthropic type %q, want %q", tc.fault, a.Type, tc.anthro)
			}
		}
	}
	// Server errors happen after admission, so they are charged.
	if st := ts.Stats(); st.Admitted != 12 || st.ByStatus[500] != 4 || st.ByStatus[503] != 4 || st.ByStatus[529] != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestInjectedRateLimit(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 100, FaultRetryAfter: 250 * time.Millisecond})
	r := ts.do(faulty("/v1/chat/completions", "429", false))
	e := openAIError(t, r, 429)
	if e.CodeString() != wire.CodeRateLimitExceeded || e.QuotaExhausted() || e.Message != "Rate limit reached for gpt-4o. Please try again in 250ms." {
		t.Errorf("body %+v", e)
	}
	if r.header.Get("retry-after-ms") != "250" || r.header.Get("retry-after") != "1" {
		t.Errorf("retry-after-ms %q, retry-after %q; want 250 and 1", r.header.Get("retry-after-ms"), r.header.Get("retry-after"))
	}
	if r.header.Get("x-ratelimit-remaining-requests") != "100" {
		t.Errorf("remaining %q: an injected 429 must not be charged", r.header.Get("x-ratelimit-remaining-requests"))
	}
	r = ts.do(faulty("/v1/messages", "429", true))
	if a := anthropicError(t, r, 429); a.Type != wire.AnthropicRateLimitError || r.header.Get("retry-after") != "1" {
		t.Errorf("Anthropic: %+v, retry-after %q", a, r.header.Get("retry-after"))
	}
	if st := ts.Stats(); st.RateLimited != 0 || st.ByStatus[429] != 2 || st.Admitted != 0 {
		t.Errorf("stats %+v: injected 429s are not limiter refusals", st)
	}
}

func TestResetFault(t *testing.T) {
	ts := start(t, Config{})
	for _, path := range []string{"/v1/chat/completions", "/v1/embeddings", "/v1/messages"} {
		req := faulty(path, "reset", false)
		if path == "/v1/embeddings" {
			req.body = map[string]any{"model": "text-embedding-3-small", "input": "hi"}
		}
		if r := ts.do(req); r.err == nil {
			t.Errorf("%s: got status %d, want a connection error", path, r.status)
		}
	}
	st := ts.Stats()
	if st.Resets != 3 || len(st.ByStatus) != 0 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMalformedFault(t *testing.T) {
	ts := start(t, Config{})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		r := ts.do(faulty(path, "malformed", false))
		if r.status != 200 || r.err != nil || json.Valid(r.body) || !strings.HasSuffix(string(r.body), ",}") {
			t.Errorf("%s: status %d, err %v, body %s: want 200 with invalid JSON", path, r.status, r.err, r.body)
		}

		r = ts.do(faulty(path, "malformed", true))
		evs, err := streamEvents(t, r.body)
		if r.status != 200 || err != nil || len(evs) < 3 {
			t.Fatalf("%s stream: status %d, %d events, %v", path, r.status, len(evs), err)
		}
		if json.Valid([]byte(evs[0].Data)) || !json.Valid([]byte(evs[1].Data)) {
			t.Errorf("%s stream: want only the first event invalid: %q, %q", path, evs[0].Data, evs[1].Data)
		}
	}
}

func TestTruncateFault(t *testing.T) {
	ts := start(t, Config{})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		r := ts.do(faulty(path, "truncate", false))
		if r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF) || len(r.body) == 0 || json.Valid(r.body) {
			t.Errorf("%s: status %d, err %v, body %q: want a 200 body cut short", path, r.status, r.err, r.body)
		}

		r = ts.do(faulty(path, "truncate", true))
		if r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("%s stream: status %d, err %v: want a stream cut short", path, r.status, r.err)
		}
		evs, _ := streamEvents(t, r.body)
		if len(evs) == 0 {
			t.Fatalf("%s stream: no event before the cut", path)
		}
		for _, ev := range evs {
			if ev.Data == wire.StreamDone || ev.Event == wire.EventMessageStop {
				t.Errorf("%s stream: end marker %q sent before the cut", path, ev.Data)
			}
		}
	}
	if st := ts.Stats(); st.ByStatus[200] != 4 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSlowFault(t *testing.T) {
	ts := start(t, Config{SlowDelay: 40 * time.Millisecond})
	begin := time.Now()
	r := ts.do(faulty("/v1/chat/completions", "slow", false))
	if elapsed := time.Since(begin); r.status != 200 || elapsed < 40*time.Millisecond {
		t.Errorf("status %d after %v; want 200 after the 40ms slow delay", r.status, elapsed)
	}
}

func TestSlowFaultExceedsClientTimeout(t *testing.T) {
	s, err := New(Config{}) // the default SlowDelay, a minute
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req := faulty("/v1/chat/completions", "slow", false)
	req.ctx = ctx
	if r := ts.do(req); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("status %d, err %v; want the client's deadline to pass", r.status, r.err)
	}
	// Close waits for the handler, which sees the client gone.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Abandoned != 1 || st.Admitted != 1 || len(st.ByStatus) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultTimes(t *testing.T) {
	ts := start(t, Config{})
	attempt := func(id string) int {
		req := faulty("/v1/chat/completions", "503", false)
		req.headers[HeaderFaultTimes] = "2"
		req.headers[HeaderRequestID] = id
		return ts.do(req).status
	}
	var got []int
	for range 4 {
		got = append(got, attempt("r1"))
	}
	got = append(got, attempt("r2"))
	if want := []int{503, 503, 200, 200, 503}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	// Without a request ID every request meets the fault.
	req := faulty("/v1/chat/completions", "503", false)
	req.headers[HeaderFaultTimes] = "1"
	for range 2 {
		if r := ts.do(req); r.status != 503 {
			t.Errorf("status %d without a request ID, want 503", r.status)
		}
	}
}

// statuses sends n sequential requests to a new server for cfg and returns
// the statuses, with 0 for a reset.
func statuses(t *testing.T, cfg Config, n int) []int {
	ts := start(t, cfg)
	var out []int
	for range n {
		r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil)})
		out = append(out, r.status)
	}
	return out
}

func TestRandomFaultsAreSeeded(t *testing.T) {
	cfg := Config{Seed: 42, Faults: Faults{ServerError: 0.25, Unavailable: 0.25, Reset: 0.1, RateLimit: 0.1}}
	a, b := statuses(t, cfg, 40), statuses(t, cfg, 40)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	seen := map[int]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range []int{0, 200, 429, 500, 503} {
		if seen[s] == 0 {
			t.Errorf("no status %d in %v", s, a)
		}
	}
	cfg.Seed = 43
	if c := statuses(t, cfg, 40); slices.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same faults")
	}
	if none := statuses(t, Config{Seed: 42}, 10); slices.ContainsFunc(none, func(s int) bool { return s != 200 }) {
		t.Errorf("faults without fault rates: %v", none)
	}
}

func TestRepliesAreSeeded(t *testing.T) {
	reply := func(seed int64, prompt string) string {
		ts := start(t, Config{Seed: seed})
		resp := decode[wire.ChatResponse](t, ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", prompt, nil)}))
		return resp.Choices[0].Message.Content.String()
	}
	a := reply(1, "hello")
	if b := reply(1, "hello"); a != b {
		t.Errorf("same seed and prompt, replies %q and %q", a, b)
	}
	if b := reply(2, "hello"); a == b {
		t.Errorf("seeds 1 and 2 gave the same reply %q", a)
	}
	if b := reply(1, "goodbye"); a == b {
		t.Errorf("prompts hello and goodbye gave the same reply %q", a)
	}
}

func TestLatency(t *testing.T) {
	ts := start(t, Config{Latency: time.Hour, LatencyJitter: time.Minute})
	begin := time.Now()
	r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil),
		headers: map[string]string{HeaderLatency: "30ms"}})
	if elapsed := time.Since(begin); r.status != 200 || elapsed < 30*time.Millisecond {
		t.Errorf("status %d after %v; want 200 after the 30ms of %s", r.status, elapsed, HeaderLatency)
	}
}

func TestShouldRetryHook(t *testing.T) {
	ts := start(t, Config{})
	hook := func(v string, extra map[string]string) map[string]string {
		h := map[string]string{HeaderShouldRetry: v}
		maps.Copy(h, extra)
		return h
	}
	for _, tc := range []struct {
		name   string
		req    request
		status int
		want   string
	}{
		{"error, true", request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", map[string]any{"max_tokens": 0}), headers: hook("true", nil)}, 400, "true"},
		{"error, false", request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hi", 10, nil), headers: hook("false", map[string]string{HeaderFault: "529"})}, 529, "false"},
		{"success", request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil), headers: hook("false", nil)}, 200, ""},
		{"no hook", request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil), headers: map[string]string{HeaderFault: "503"}}, 503, ""},
	} {
		r := ts.do(tc.req)
		if r.status != tc.status || r.header.Get("x-should-retry") != tc.want {
			t.Errorf("%s: status %d, x-should-retry %q; want %d, %q", tc.name, r.status, r.header.Get("x-should-retry"), tc.status, tc.want)
		}
	}
}

func TestLatencyJitter(t *testing.T) {
	draw := func(seed int64) []time.Duration {
		s, err := New(Config{Latency: 100 * time.Millisecond, LatencyJitter: 20 * time.Millisecond, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var ds []time.Duration
		for range 200 {
			ds = append(ds, s.latency(hooks{}))
		}
		return ds
	}
	a := draw(5)
	if !slices.Equal(a, draw(5)) {
		t.Error("same seed, different latencies")
	}
	lo, hi := slices.Min(a), slices.Max(a)
	if lo < 80*time.Millisecond || hi > 120*time.Millisecond || lo > 85*time.Millisecond || hi < 115*time.Millisecond {
		t.Errorf("latencies in [%v, %v]; want them spread over [80ms, 120ms]", lo, hi)
	}
	s, _ := New(Config{Latency: 7 * time.Millisecond})
	if d := s.latency(hooks{}); d != 7*time.Millisecond {
		t.Errorf("latency without jitter %v, want 7ms", d)
	}
}
