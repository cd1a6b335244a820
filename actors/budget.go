package actors

import (
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
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

// Budget holds the limiter's buckets. The limiter actor is its only writer;
// its read methods are safe from any goroutine, for statistics.
type Budget struct {
	requests *rate.Limiter
	tokens   *rate.Limiter
	// tokensOn, credit and pausedUntil are written by the limiter actor and
	// read by Stats from other goroutines.
	tokensOn    atomic.Bool
	tokenBurst  atomic.Int64
	credit      atomic.Uint64 // float64 bits: refunded tokens not yet reused
	pausedUntil atomic.Int64  // unix nanoseconds, 0 when not paused
	// shared holds the figures of a shared budget, when the limiter takes
	// its permits from leases instead of from these buckets.
	shared sharedFigures
}

// NewBudget returns full buckets for limits.
func NewBudget(l Limits) *Budget {
	b := &Budget{
		requests: rate.NewLimiter(l.RequestsPerSecond, l.RequestBurst),
		tokens:   rate.NewLimiter(rate.Inf, 0),
	}
	if l.TokensEnabled() {
		b.tokens = rate.NewLimiter(l.TokensPerSecond, l.TokenBurst) // starts full
	}
	b.tokenBurst.Store(int64(l.TokenBurst))
	b.tokensOn.Store(l.TokensEnabled())
	return b
}

// Apply sets new rates and bursts at now. The runtime applies them at once,
// so that a submit right after sees the new burst; the limiter applies them
// again (harmlessly) when told by message, and re-plans its head permit.
// A bucket that was off starts empty when turned on.
func (b *Budget) Apply(now time.Time, l Limits) {
	b.requests.SetLimitAt(now, l.RequestsPerSecond)
	b.requests.SetBurstAt(now, l.RequestBurst)
	b.setTokenLimits(now, l)
}

func (b *Budget) setTokenLimits(now time.Time, l Limits) {
	if l.TokensEnabled() {
		b.tokens.SetLimitAt(now, l.TokensPerSecond)
		b.tokens.SetBurstAt(now, l.TokenBurst)
	} else {
		b.tokens.SetLimitAt(now, rate.Inf)
	}
	b.tokenBurst.Store(int64(l.TokenBurst))
	b.tokensOn.Store(l.TokensEnabled())
}

// TokensEnabled reports whether the token bucket is on.
func (b *Budget) TokensEnabled() bool { return b.tokensOn.Load() }

// TokenBurst is the token bucket's capacity (0 when the token limit is off).
func (b *Budget) TokenBurst() int {
	if !b.TokensEnabled() {
		return 0
	}
	return int(b.tokenBurst.Load())
}

// RequestsAvailable is how many requests the bucket would admit at t; +Inf
// without a request limit.
func (b *Budget) RequestsAvailable(t time.Time) float64 {
	if b.requests.Limit() == rate.Inf {
		return math.Inf(1)
	}
	return b.requests.TokensAt(t)
}

// TokensAvailable is how many API tokens the bucket (plus refunds) would
// admit at t; -1 without a token limit.
func (b *Budget) TokensAvailable(t time.Time) float64 {
	if !b.TokensEnabled() {
		return -1
	}
	return b.tokens.TokensAt(t) + b.creditAt(t)
}

// creditAt is the part of the credit usable at t. A refund refills the
// bucket, which holds no more than its burst: once the bucket's own refill
// has made up for a refund, that credit is void.
func (b *Budget) creditAt(t time.Time) float64 {
	room := float64(b.TokenBurst()) - b.tokens.TokensAt(t)
	return math.Max(0, math.Min(b.Credit(), room))
}

// Credit is the API tokens refunded by reconciliation and not yet reused.
func (b *Budget) Credit() float64 { return math.Float64frombits(b.credit.Load()) }

func (b *Budget) setCredit(c float64) { b.credit.Store(math.Float64bits(c)) }

// PausedUntil is the end of the current pause, or the zero time.
func (b *Budget) PausedUntil() time.Time {
	n := b.pausedUntil.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
