package wire

import (
	"net/http"
	"strings"
	"time"
)

// MaxRetryAfter caps the delay that ParseRetryAfter returns.
//
// Providers ask for waits of seconds, at most a minute or two, because
// their limits are per minute. A client waits at least the asked delay
// and, after a 429, pauses the whole shared budget, so a wrong value from
// a broken proxy or a clock far off would stall every request; ten
// minutes bounds that stall, while a real longer limit costs only one
// more rejected request per ten minutes, whose answer asks again.
const MaxRetryAfter = 10 * time.Minute

// ParseRetryAfter returns the delay that the response headers h ask for
// before a retry, and whether they ask for one.
//
// OpenAI's retry-after-ms, in milliseconds and possibly fractional, wins
// because it is the more precise; otherwise retry-after is read as a
// number of seconds, integer or decimal, or as an HTTP date, which is
// taken relative to now. A negative delay or a date in the past gives
// zero; a delay above MaxRetryAfter gives MaxRetryAfter. A malformed
// header counts as absent, since the caller's own backoff still applies.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if d, ok := parseDelay(h.Get("Retry-After-Ms"), float64(time.Millisecond)); ok {
		return d, true
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if d, ok := parseDelay(v, float64(time.Second)); ok {
		return d, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampRetry(t.Sub(now)), true
	}
	return 0, false
}

// parseDelay reads v as a decimal number of units of unit nanoseconds,
// clamped as ParseRetryAfter documents, and reports whether it is one. A
// number too large for a time.Duration is still a number: it clamps.
func parseDelay(v string, unit float64) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	d, err := parseScaled(v, unit)
	switch {
	case err == nil:
		return clampRetry(d), true
	case err == errRange && strings.HasPrefix(v, "-"):
		return 0, true
	case err == errRange:
		return MaxRetryAfter, true
	}
	return 0, false
}

// clampRetry bounds d to [0, MaxRetryAfter].
func clampRetry(d time.Duration) time.Duration {
	return min(max(d, 0), MaxRetryAfter)
}
