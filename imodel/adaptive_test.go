package imodel

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func TestPauseFor(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	state := func(limit, remaining int, resetIn time.Duration) wire.LimitState {
		return wire.LimitState{Limit: limit, Remaining: remaining, Reset: now.Add(resetIn), HasLimit: true, HasRemaining: true, HasReset: true}
	}
	cases := []struct {
		name string
		rl   wire.RateLimit
		want time.Duration // 0: no pause
	}{
		{"plenty left", wire.RateLimit{Requests: state(100, 50, 30*time.Second)}, 0},
		{"exactly the watermark left", wire.RateLimit{Requests: state(100, 5, 30*time.Second)}, 0},
		// 98 requests refill in 49 s, 2 a second: the 3 missing up to the
		// watermark of 5 take 1.5 s.
		{"low", wire.RateLimit{Requests: state(100, 2, 49*time.Second)}, 1500 * time.Millisecond},
		// Half the refill rate, twice the pause.
		{"low, slower refill", wire.RateLimit{Requests: state(100, 2, 98*time.Second)}, 3 * time.Second},
		// Fewer missing, a shorter pause: 1 of 96 over 48 s.
		{"nearly at the watermark", wire.RateLimit{Requests: state(100, 4, 48*time.Second)}, 500 * time.Millisecond},
		// A budget of one: the pause lasts until the reset, never beyond.
		{"capped at the reset", wire.RateLimit{Requests: state(1, 0, 2*time.Second)}, 2 * time.Second},
		{"empty, small budget", wire.RateLimit{Requests: state(10, 0, 2*time.Second)}, 200 * time.Millisecond},
		// Tokens: watermark 500 of 10000; 9900 refill in 60 s, 165 a
		// second; 400 missing take 2.424 s, later than the requests' 1.5 s.
		{"the later of two budgets", wire.RateLimit{
			Requests: state(100, 2, 49*time.Second),
			Tokens:   state(10000, 100, 60*time.Second),
		}, 2424 * time.Millisecond},
		{"reset passed", wire.RateLimit{Requests: state(100, 0, -time.Second)}, 0},
		{"no reset", wire.RateLimit{Requests: wire.LimitState{Limit: 100, Remaining: 0, HasLimit: true, HasRemaining: true}}, 0},
		{"no remaining", wire.RateLimit{Requests: wire.LimitState{Limit: 100, Reset: now.Add(time.Minute), HasLimit: true, HasReset: true}}, 0},
		{"no limit", wire.RateLimit{Requests: wire.LimitState{Remaining: 0, Reset: now.Add(time.Minute), HasRemaining: true, HasReset: true}}, 0},
		{"zero limit", wire.RateLimit{Requests: state(0, 0, time.Minute)}, 0},
		{"nothing", wire.RateLimit{}, 0},
	}
	for _, tc := range cases {
		got := pauseFor(tc.rl, now)
		if tc.want == 0 {
			if !got.IsZero() {
				t.Errorf("%s: paused until %v, want no pause", tc.name, got)
			}
			continue
		}
		if d := got.Sub(now); d < tc.want-time.Millisecond || d > tc.want+time.Millisecond {
			t.Errorf("%s: paused for %v, want %v", tc.name, d, tc.want)
		}
	}
}

func TestParseRateLimit(t *testing.T) {
	now := time.Now()
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	if _, ok := parseRateLimit(OpenAI, header(), now); ok {
		t.Error("no headers parsed as a rate limit")
	}
	if _, ok := parseRateLimit(OpenAI, header("x-ratelimit-remaining-requests", "many"), now); ok {
		t.Error("a malformed header parsed as a rate limit")
	}
	rl, ok := parseRateLimit(Anthropic, header("anthropic-ratelimit-tokens-remaining", "7"), now)
	if !ok || rl.Tokens.Remaining != 7 || !rl.Tokens.HasRemaining {
		t.Errorf("Anthropic tokens: %+v %v", rl, ok)
	}
	rl, ok = parseRateLimit(Generic, header("x-ratelimit-limit-requests", "9"), now)
	if !ok || rl.Requests.Limit != 9 {
		t.Errorf("OpenAI-style headers of another provider: %+v %v", rl, ok)
	}
	// Azure's are OpenAI's: usually only what remains, sometimes all.
	rl, ok = parseRateLimit(Azure, header("x-ratelimit-remaining-requests", "79", "x-ratelimit-remaining-tokens", "61353"), now)
	if !ok || rl.Requests.Remaining != 79 || rl.Tokens.Remaining != 61353 || rl.Requests.HasLimit {
		t.Errorf("Azure's remaining counts: %+v %v", rl, ok)
	}
	rl, ok = parseRateLimit(Azure, header("x-ratelimit-limit-tokens", "1000", "x-ratelimit-remaining-tokens", "10", "x-ratelimit-reset-tokens", "6s"), now)
	if !ok || rl.Tokens.Limit != 1000 || !rl.Tokens.Reset.Equal(now.Add(6*time.Second)) || pauseFor(rl, now).IsZero() {
		t.Errorf("Azure's full headers: %+v %v", rl, ok)
	}
}

func debugLogger(w *runtimetest.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestAdaptivePause(t *testing.T) {
	// 10000 tokens a minute, refilling 166.7 a second; the watermark is 500.
	// A request costing 9533 leaves 467: 33 short, about 0.2 s of refill.
	e := startSim(t, simulator.Config{TokensPerMinute: 10000})
	prompt := tokens.ForModel(openAIModel).ChatPrompt([]tokens.Message{{Role: "user", Text: "adaptive"}})
	big := hello("adaptive", 9533-prompt)

	logs := &runtimetest.Buffer{}
	ex := startExecutor(t, nil)
	m := newModel(t, ex, openAIConfig(e), WithLogger(debugLogger(logs)))
	resp, err := m.Chat(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	if r, _ := resp.Event.Response(); r.Header.Get("x-ratelimit-remaining-tokens") != "467" {
		t.Fatalf("rate-limit headers %v, want 467 tokens remaining", r.Header)
	}
	until := waitPaused(t, ex)
	// The pause ends about 0.2 s after the response, which came between
	// the call's start and Chat's return.
	started := resp.Event.Timings().CallStarted
	if until.Before(started.Add(150*time.Millisecond)) || until.After(returned.Add(250*time.Millisecond)) {
		t.Errorf("paused until %v after the call started, %v after it returned; want about 0.2 s after the response",
			until.Sub(started), until.Sub(returned))
	}
	// The next request waits for the pause to end.
	next, err := m.Chat(ctx, hello("next", 1))
	if err != nil {
		t.Fatal(err)
	}
	if next.Event.Timings().CallStarted.Before(until.Add(-clockSlack)) {
		t.Errorf("the next call started at %v, before the pause ended at %v", next.Event.Timings().CallStarted, until)
	}
	if !strings.Contains(logs.String(), "provider budget low; pausing") {
		t.Errorf("no pause logged:\n%s", logs)
	}
	if e.Stats().RateLimited != 0 {
		t.Errorf("the simulator refused %d requests", e.Stats().RateLimited)
	}

	// Without adaptive limits the same headers do not pause (another key,
	// another budget).
	quiet := &runtimetest.Buffer{}
	ex2 := startExecutor(t, nil)
	cfg := openAIConfig(e)
	cfg.APIKey = "sk-test-second-key-19ab"
	m2 := newModel(t, ex2, cfg, WithoutAdaptiveLimits(), WithLogger(debugLogger(quiet)))
	resp, err = m2.Chat(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	barrier(t, ex2)
	if strings.Contains(quiet.String(), "pausing") || !strings.Contains(quiet.String(), "imodel: attempt") {
		t.Errorf("logs without adaptive limits:\n%s", quiet)
	}
	if resp.Event.Status != messages.StatusCompleted {
		t.Errorf("status %v", resp.Event.Status)
	}
}
