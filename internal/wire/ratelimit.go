package wire

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimit is the state of an account's rate limits as a response's
// headers report it. The provider sends it on every response, so a client
// can adjust its pacing to the server's own count instead of its estimate.
type RateLimit struct {
	// Requests is the limit on requests.
	Requests LimitState

	// Tokens is the limit on tokens. For Anthropic, which may report
	// input and output tokens apart, it is the tightest of the token limits
	// reported: see ParseAnthropicRateLimit.
	Tokens LimitState

	// InputTokens and OutputTokens are Anthropic's separate limits; they
	// are absent for OpenAI.
	InputTokens  LimitState
	OutputTokens LimitState
}

// LimitState is the state of one rate limit: how much the window allows, how
// much of it is left, and when the window is full again. Each value has a
// flag telling whether its header was present, because a missing
// "remaining" must not be read as zero remaining.
type LimitState struct {
	Limit     int
	Remaining int

	// Reset is when the window is back to Limit.
	Reset time.Time

	HasLimit     bool
	HasRemaining bool
	HasReset     bool
}

// Present reports whether any header of the limit was sent.
func (b LimitState) Present() bool { return b.HasLimit || b.HasRemaining || b.HasReset }

// ResetIn returns how long after now the limit resets; it is zero when
// the reset is unknown or past.
func (b LimitState) ResetIn(now time.Time) time.Duration {
	if !b.HasReset {
		return 0
	}
	return max(b.Reset.Sub(now), 0)
}

// ErrMalformedHeader is matched by errors.Is for every *HeaderError.
var ErrMalformedHeader = errors.New("wire: malformed header")

// HeaderError reports a header whose value could not be parsed.
type HeaderError struct {
	Header string // canonical header name
	Value  string
	Err    error // the cause, such as a *strconv.NumError
}

// Error returns a message naming the header and its value.
func (e *HeaderError) Error() string {
	return "wire: header " + e.Header + ": malformed value " + strconv.Quote(e.Value) + ": " + e.Err.Error()
}

// Unwrap returns the cause, so that errors.Is and errors.As see it.
func (e *HeaderError) Unwrap() error { return e.Err }

// Is reports whether target is ErrMalformedHeader.
func (e *HeaderError) Is(target error) bool { return target == ErrMalformedHeader }

// errNegative is the cause of a HeaderError for a negative count.
var errNegative = errors.New("negative count")

// ParseOpenAIRateLimit reads OpenAI's x-ratelimit-{limit,remaining,reset}-
// {requests,tokens} headers. A reset is a duration from now, written as
// Go's time.Duration prints it ("1s", "6m0s", "12ms", "1m30.5s"); a bare
// number is taken as seconds. A negative reset means now.
//
// Absent headers are not errors: their Has flags are false. Malformed
// values are reported as *HeaderError values, joined with errors.Join,
// while the returned RateLimit still holds every value that parsed.
func ParseOpenAIRateLimit(h http.Header, now time.Time) (RateLimit, error) {
	p := headerParser{h: h, now: now}
	var rl RateLimit
	rl.Requests = p.state("X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests",
		"X-Ratelimit-Reset-Requests", p.durationReset)
	rl.Tokens = p.state("X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens",
		"X-Ratelimit-Reset-Tokens", p.durationReset)
	return rl, errors.Join(p.errs...)
}

// ParseAnthropicRateLimit reads Anthropic's anthropic-ratelimit-
// {requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}
// headers, whose resets are RFC 3339 times.
//
// RateLimit.Tokens is the tightest of the token limits present: the one
// with the fewest tokens remaining, or when none reports what remains,
// the smallest limit; it is taken whole, so its values are consistent.
// A request spends from the input and the output limit at once, so the
// one closest to exhaustion is what holds it back.
//
// Absent headers and malformed values are handled as by
// ParseOpenAIRateLimit.
func ParseAnthropicRateLimit(h http.Header, now time.Time) (RateLimit, error) {
	p := headerParser{h: h, now: now}
	const pre = "Anthropic-Ratelimit-"
	b := func(kind string) LimitState {
		return p.state(pre+kind+"-Limit", pre+kind+"-Remaining", pre+kind+"-Reset", p.timeReset)
	}
	rl := RateLimit{
		Requests:     b("Requests"),
		Tokens:       b("Tokens"),
		InputTokens:  b("Input-Tokens"),
		OutputTokens: b("Output-Tokens"),
	}
	rl.Tokens = tightest(rl.Tokens, rl.InputTokens, rl.OutputTokens)
	return rl, errors.Join(p.errs...)
}

// tightest returns the limit of bs closest to exhaustion, as
// ParseAnthropicRateLimit defines it; bs[0] wins ties.
func tightest(bs ...LimitState) LimitState {
	var best LimitState
	for _, b := range bs {
		switch {
		case !b.Present():
		case !best.Present():
			best = b
		case b.HasRemaining && (!best.HasRemaining || b.Remaining < best.Remaining):
			best = b
		case !b.HasRemaining && !best.HasRemaining && b.HasLimit &&
			(!best.HasLimit || b.Limit < best.Limit):
			best = b
		}
	}
	return best
}

// headerParser collects the values and errors of one set of headers.
type headerParser struct {
	h    http.Header
	now  time.Time
	errs []error
}

// state reads one limit's state from its three headers.
func (p *headerParser) state(limit, remaining, reset string, parseReset func(string) (time.Time, error)) LimitState {
	var b LimitState
	b.Limit, b.HasLimit = p.count(limit)
	b.Remaining, b.HasRemaining = p.count(remaining)
	if v, ok := p.value(reset); ok {
		t, err := parseReset(v)
		if err != nil {
			p.fail(reset, v, err)
		} else {
			b.Reset, b.HasReset = t, true
		}
	}
	return b
}

// value returns the trimmed value of header name and whether it is set.
func (p *headerParser) value(name string) (string, bool) {
	vs := p.h[name]
	if len(vs) == 0 {
		return "", false
	}
	return strings.TrimSpace(vs[0]), true
}

// count reads a non-negative integer header.
func (p *headerParser) count(name string) (int, bool) {
	v, ok := p.value(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err == nil && n < 0 {
		err = errNegative
	}
	if err != nil {
		p.fail(name, v, err)
		return 0, false
	}
	return n, true
}

// fail records a malformed header.
func (p *headerParser) fail(name, value string, err error) {
	p.errs = append(p.errs, &HeaderError{Header: name, Value: value, Err: err})
}

// durationReset reads OpenAI's reset: a Go duration or bare seconds.
func (p *headerParser) durationReset(v string) (time.Time, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		var serr error
		if d, serr = parseSeconds(v); serr != nil {
			return time.Time{}, err // the duration syntax is the documented one
		}
	}
	return p.now.Add(max(d, 0)), nil
}

// timeReset reads Anthropic's reset: an RFC 3339 time.
func (p *headerParser) timeReset(v string) (time.Time, error) {
	return time.Parse(time.RFC3339, v)
}

// errRange is the cause of an error for a number of seconds that no
// time.Duration holds.
var errRange = errors.New("out of range")

// parseSeconds reads a decimal number of seconds, such as "20" or "0.5".
func parseSeconds(v string) (time.Duration, error) {
	return parseScaled(v, float64(time.Second))
}

// parseScaled reads a decimal number of units of unit nanoseconds. It
// rejects what strconv.ParseFloat accepts beyond plain decimals (hex,
// "inf", "nan", underscores) and values that overflow a time.Duration.
func parseScaled(v string, unit float64) (time.Duration, error) {
	if v == "" || strings.IndexFunc(v, notDecimal) >= 0 {
		return 0, strconv.ErrSyntax
	}
	f, err := strconv.ParseFloat(v, 64)
	if errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0) {
		return 0, errRange
	}
	if err != nil {
		return 0, err
	}
	ns := f * unit
	if math.Abs(ns) >= math.MaxInt64 {
		return 0, errRange
	}
	return time.Duration(ns), nil
}

// notDecimal reports whether r cannot occur in a plain decimal number.
func notDecimal(r rune) bool {
	return !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+' || r == 'e' || r == 'E')
}
