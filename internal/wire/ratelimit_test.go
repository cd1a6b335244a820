package wire

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2025, 8, 21, 12, 40, 58, 0, time.UTC)

// header builds an http.Header from name, value pairs, canonicalising the
// names as a received response's would be.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseOpenAIRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h        http.Header
		requests LimitState
		tokens   LimitState
	}{
		{
			name: "all present",
			h: header(
				"x-ratelimit-limit-requests", "60",
				"x-ratelimit-limit-tokens", "150000",
				"x-ratelimit-remaining-requests", "59",
				"x-ratelimit-remaining-tokens", "149984",
				"x-ratelimit-reset-requests", "1s",
				"x-ratelimit-reset-tokens", "6m0s",
			),
			requests: LimitState{Limit: 60, Remaining: 59, Reset: now.Add(time.Second), HasLimit: true, HasRemaining: true, HasReset: true},
			tokens:   LimitState{Limit: 150000, Remaining: 149984, Reset: now.Add(6 * time.Minute), HasLimit: true, HasRemaining: true, HasReset: true},
		},
		{
			name:     "fractional and compound durations",
			h:        header("X-Ratelimit-Reset-Requests", "12ms", "X-Ratelimit-Reset-Tokens", "1m30.5s"),
			requests: LimitState{Reset: now.Add(12 * time.Millisecond), HasReset: true},
			tokens:   LimitState{Reset: now.Add(90*time.Second + 500*time.Millisecond), HasReset: true},
		},
		{
			name:     "bare seconds",
			h:        header("x-ratelimit-reset-requests", "20", "x-ratelimit-reset-tokens", " 0.25 "),
			requests: LimitState{Reset: now.Add(20 * time.Second), HasReset: true},
			tokens:   LimitState{Reset: now.Add(250 * time.Millisecond), HasReset: true},
		},
		{
			name:     "negative reset means now",
			h:        header("x-ratelimit-reset-requests", "-3s", "x-ratelimit-reset-tokens", "-1"),
			requests: LimitState{Reset: now, HasReset: true},
			tokens:   LimitState{Reset: now, HasReset: true},
		},
		{
			name:     "remaining zero is present",
			h:        header("x-ratelimit-remaining-requests", "0"),
			requests: LimitState{Remaining: 0, HasRemaining: true},
		},
		{name: "none", h: http.Header{}},
		{name: "nil", h: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl, err := ParseOpenAIRateLimit(tc.h, now)
			if err != nil {
				t.Fatal(err)
			}
			if rl.Requests != tc.requests || rl.Tokens != tc.tokens {
				t.Errorf("requests %+v\n   want %+v\ntokens %+v\n   want %+v", rl.Requests, tc.requests, rl.Tokens, tc.tokens)
			}
			if rl.InputTokens.Present() || rl.OutputTokens.Present() {
				t.Errorf("OpenAI reported input/output budgets: %+v", rl)
			}
		})
	}
}

func TestParseOpenAIRateLimitMalformed(t *testing.T) {
	h := header(
		"x-ratelimit-limit-requests", "sixty",
		"x-ratelimit-remaining-requests", "-1",
		"x-ratelimit-reset-requests", "soon",
		"x-ratelimit-limit-tokens", "1000",
		"x-ratelimit-remaining-tokens", "99999999999999999999",
		"x-ratelimit-reset-tokens", "1e400",
	)
	rl, err := ParseOpenAIRateLimit(h, now)
	if err == nil {
		t.Fatal("no error")
	}
	// The well-formed value is still reported.
	want := LimitState{Limit: 1000, HasLimit: true}
	if rl.Tokens != want || rl.Requests.Present() {
		t.Errorf("got %+v", rl)
	}
	if !errors.Is(err, ErrMalformedHeader) || !errors.Is(err, strconv.ErrSyntax) || !errors.Is(err, strconv.ErrRange) {
		t.Errorf("errors.Is fails on %v", err)
	}
	var he *HeaderError
	if !errors.As(err, &he) || he.Header != "X-Ratelimit-Limit-Requests" || he.Value != "sixty" {
		t.Errorf("first HeaderError = %+v", he)
	}
	msg := err.Error()
	for _, s := range []string{
		`header X-Ratelimit-Limit-Requests: malformed value "sixty"`,
		`header X-Ratelimit-Remaining-Requests: malformed value "-1": negative count`,
		`header X-Ratelimit-Reset-Requests: malformed value "soon": time: invalid duration "soon"`,
		`header X-Ratelimit-Remaining-Tokens: malformed value "99999999999999999999"`,
		`header X-Ratelimit-Reset-Tokens: malformed value "1e400"`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q lacks %q", msg, s)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 5 {
		t.Errorf("%d errors joined, want 5", n)
	}
}

func TestParseAnthropicRateLimit(t *testing.T) {
	// The headers of a real Messages response (see testdata/golden/SOURCES.md).
	h := header(
		"anthropic-ratelimit-input-tokens-limit", "80000",
		"anthropic-ratelimit-input-tokens-remaining", "80000",
		"anthropic-ratelimit-input-tokens-reset", "2025-08-21T12:40:59Z",
		"anthropic-ratelimit-output-tokens-limit", "16000",
		"anthropic-ratelimit-output-tokens-remaining", "16000",
		"anthropic-ratelimit-output-tokens-reset", "2025-08-21T12:41:00Z",
		"anthropic-ratelimit-requests-limit", "1000",
		"anthropic-ratelimit-requests-remaining", "999",
		"anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z",
		"anthropic-ratelimit-tokens-limit", "96000",
		"anthropic-ratelimit-tokens-remaining", "96000",
		"anthropic-ratelimit-tokens-reset", "2025-08-21T12:40:59Z",
	)
	rl, err := ParseAnthropicRateLimit(h, now)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	full := func(limit, remaining int, reset string) LimitState {
		return LimitState{Limit: limit, Remaining: remaining, Reset: at(reset), HasLimit: true, HasRemaining: true, HasReset: true}
	}
	want := RateLimit{
		Requests:     full(1000, 999, "2025-08-21T12:40:59Z"),
		Tokens:       full(16000, 16000, "2025-08-21T12:41:00Z"), // output is the tightest
		InputTokens:  full(80000, 80000, "2025-08-21T12:40:59Z"),
		OutputTokens: full(16000, 16000, "2025-08-21T12:41:00Z"),
	}
	if rl != want {
		t.Errorf("got  %+v\nwant %+v", rl, want)
	}
	if d := rl.Tokens.ResetIn(now); d != 2*time.Second {
		t.Errorf("ResetIn = %v, want 2s", d)
	}
}

func TestParseAnthropicRateLimitFractionalAndOffset(t *testing.T) {
	h := header("anthropic-ratelimit-requests-reset", "2025-08-21T14:41:00.5+02:00")
	rl, err := ParseAnthropicRateLimit(h, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := rl.Requests.ResetIn(now); d != 2*time.Second+500*time.Millisecond {
		t.Errorf("ResetIn = %v", d)
	}
	if _, err := ParseAnthropicRateLimit(header("anthropic-ratelimit-tokens-reset", "in 5s"), now); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("malformed reset: %v", err)
	}
}

func TestTightest(t *testing.T) {
	rem := func(n int) LimitState { return LimitState{Remaining: n, HasRemaining: true} }
	lim := func(n int) LimitState { return LimitState{Limit: n, HasLimit: true} }
	for _, tc := range []struct {
		name string
		in   []LimitState
		want LimitState
	}{
		{"none", []LimitState{{}, {}, {}}, LimitState{}},
		{"only tokens", []LimitState{rem(5), {}, {}}, rem(5)},
		{"only output", []LimitState{{}, {}, rem(7)}, rem(7)},
		{"fewest remaining", []LimitState{rem(9), rem(3), rem(4)}, rem(3)},
		{"tie keeps first", []LimitState{rem(3), rem(3), {}}, rem(3)},
		{"remaining beats limit only", []LimitState{lim(1), rem(100), {}}, rem(100)},
		{"limit only keeps remaining", []LimitState{rem(100), lim(1), {}}, rem(100)},
		{"smallest limit", []LimitState{lim(10), lim(2), lim(5)}, lim(2)},
		{"reset only then limit", []LimitState{{HasReset: true}, lim(2), {}}, lim(2)},
	} {
		if got := tightest(tc.in...); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestBudgetResetIn(t *testing.T) {
	for _, tc := range []struct {
		b    LimitState
		want time.Duration
	}{
		{LimitState{}, 0},
		{LimitState{Reset: now.Add(time.Minute)}, 0}, // HasReset false
		{LimitState{Reset: now.Add(time.Minute), HasReset: true}, time.Minute},
		{LimitState{Reset: now.Add(-time.Minute), HasReset: true}, 0},
	} {
		if got := tc.b.ResetIn(now); got != tc.want {
			t.Errorf("%+v: ResetIn = %v, want %v", tc.b, got, tc.want)
		}
	}
}
