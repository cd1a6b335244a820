package actors

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/internal/bucket"
)

// Limits configures the limiter's two token buckets.
type Limits struct {
	// RequestsPerSecond is the request bucket's refill rate; rate.Inf turns the
	// request limit off.
	RequestsPerSecond rate.Limit
	// RequestBurst is how many requests may start at once after a quiet spell.
	RequestBurst int
	// TokensPerSecond is the API-token bucket's refill rate; zero turns the
	// token limit off.
	TokensPerSecond rate.Limit
	// TokenBurst is the token bucket's capacity: no request may cost more.
	TokenBurst int
}

// TokensEnabled reports whether the token bucket is on.
func (l Limits) TokensEnabled() bool { return l.TokensPerSecond > 0 }

// tokenRate is the token bucket's rate for l: rate.Inf when it is off.
func (l Limits) tokenRate() rate.Limit {
	if !l.TokensEnabled() {
		return rate.Inf
	}
	return l.TokensPerSecond
}

// buckets are an executor's own rate limits: a request bucket and an
// API-token bucket, the token bucket taking refunds when a call used fewer
// tokens than estimated. The limiter actor is their only writer; their read
// methods are safe from any goroutine, for statistics and for the checks
// Submit makes before a request is accepted.
type buckets struct {
	requests *bucket.Bucket
	tokens   *bucket.Bucket
	// pausedUntil is written by the limiter and read by Stats: unix
	// nanoseconds, 0 when not paused.
	pausedUntil atomic.Int64
	// shared holds the figures of a shared budget, when the limiter takes
	// its permits from leases instead of from these buckets.
	shared sharedFigures
}

// newBuckets returns full buckets for limits.
func newBuckets(l Limits) *buckets {
	return &buckets{
		requests: bucket.New(l.RequestsPerSecond, l.RequestBurst),
		tokens:   bucket.New(l.tokenRate(), l.TokenBurst),
	}
}

// Apply sets new rates and bursts at now. The runtime applies them at once,
// so that a submit right after sees the new burst; the limiter applies them
// again (harmlessly) when told by message, and re-plans its head permit.
// A bucket that was off starts empty when turned on.
func (b *buckets) Apply(now time.Time, l Limits) {
	b.requests.Set(now, l.RequestsPerSecond, l.RequestBurst)
	b.tokens.Set(now, l.tokenRate(), l.TokenBurst)
}

// TokensEnabled reports whether the token bucket is on.
func (b *buckets) TokensEnabled() bool { return !b.tokens.Off() }

// TokenBurst is the token bucket's capacity (0 when the token limit is off).
func (b *buckets) TokenBurst() int {
	if !b.TokensEnabled() {
		return 0
	}
	return b.tokens.Burst()
}

// RequestsAvailable is how many requests the bucket would admit at t; +Inf
// without a request limit.
func (b *buckets) RequestsAvailable(t time.Time) float64 { return b.requests.Available(t) }

// TokensAvailable is how many API tokens the bucket (plus refunds) would
// admit at t; -1 without a token limit.
func (b *buckets) TokensAvailable(t time.Time) float64 {
	if !b.TokensEnabled() {
		return -1
	}
	return b.tokens.Available(t)
}

// due is when the buckets will hold a permit for one request of tokens API
// tokens, counted from now, and not before the end of a pause.
func (b *buckets) due(tokens int, now time.Time) time.Time {
	due := now
	if p := b.PausedUntil(); p.After(due) {
		due = p
	}
	if t := b.requests.Due(now, 1); t.After(due) {
		due = t
	}
	if tokens > 0 && b.TokensEnabled() {
		if t := b.tokens.Due(now, tokens); t.After(due) {
			due = t
		}
	}
	return due
}

// PausedUntil is the end of the current pause, or the zero time.
func (b *buckets) PausedUntil() time.Time {
	n := b.pausedUntil.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
