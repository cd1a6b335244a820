package budget

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
)

// bucket is one key's budget: a request bucket and a token bucket, with the
// unused parts of returned leases held as credit. The service keeps one per
// key; a member that cannot reach the service keeps one for its local share.
// It is not safe for concurrent use: an actor owns it.
type bucket struct {
	limits      actors.Limits
	requests    *rate.Limiter
	tokens      *rate.Limiter
	reqCredit   float64
	tokCredit   float64
	pausedUntil time.Time
}

// newBucket returns empty buckets for l. They start empty, not full: a
// budget that comes up while members are already spending (a service that
// restarted, a member falling back) must not hand out a burst on top of
// what was spent just before.
func newBucket(l actors.Limits, now time.Time) *bucket {
	b := &bucket{
		requests: rate.NewLimiter(l.RequestsPerSecond, l.RequestBurst),
		tokens:   rate.NewLimiter(rate.Inf, 0),
	}
	b.setLimits(l, now)
	b.requests.AllowN(now, l.RequestBurst)
	if l.TokensEnabled() {
		b.tokens.AllowN(now, l.TokenBurst)
	}
	return b
}

func (b *bucket) setLimits(l actors.Limits, now time.Time) {
	b.requests.SetLimitAt(now, l.RequestsPerSecond)
	b.requests.SetBurstAt(now, l.RequestBurst)
	if l.TokensEnabled() {
		b.tokens.SetLimitAt(now, l.TokensPerSecond)
		b.tokens.SetBurstAt(now, l.TokenBurst)
	} else {
		b.tokens.SetLimitAt(now, rate.Inf)
	}
	b.limits = l
}

func (b *bucket) requestsOn() bool { return b.limits.RequestsPerSecond != rate.Inf }

// available is what the buckets (with credit) hold at now; +Inf for a bucket
// that is off.
func (b *bucket) available(now time.Time) (requests, tokens float64) {
	requests, tokens = math.Inf(1), math.Inf(1)
	if b.requestsOn() {
		have := b.requests.TokensAt(now)
		b.reqCredit = capCredit(b.reqCredit, float64(b.limits.RequestBurst)-have)
		requests = have + b.reqCredit
	}
	if b.limits.TokensEnabled() {
		have := b.tokens.TokensAt(now)
		b.tokCredit = capCredit(b.tokCredit, float64(b.limits.TokenBurst)-have)
		tokens = have + b.tokCredit
	}
	return requests, tokens
}

// capCredit keeps a refund within the bucket's free room: a bucket holds no
// more than its burst, refunds included.
func capCredit(credit, room float64) float64 { return math.Max(0, math.Min(credit, room)) }

// grant takes a lease of up to want requests and wantTokens tokens if at
// least one request and minTokens tokens are available at now. Otherwise it
// returns how long to wait before they are.
func (b *bucket) grant(now time.Time, want, wantTokens, minTokens int64) (requests, tokens int64, wait time.Duration) {
	if now.Before(b.pausedUntil) {
		return 0, 0, b.pausedUntil.Sub(now)
	}
	want = max(want, 1)
	if b.limits.TokensEnabled() {
		// A request dearer than the bucket is refused at submit; a member
		// with a larger burst than the key's lowest gets a full bucket.
		minTokens = min(max(minTokens, 0), int64(b.limits.TokenBurst))
		wantTokens = max(wantTokens, minTokens)
	} else {
		minTokens, wantTokens = 0, 0
	}
	haveReq, haveTok := b.available(now)
	if haveReq < 1 || haveTok < float64(minTokens) {
		return 0, 0, b.waitFor(haveReq, haveTok, minTokens)
	}
	requests = want
	if !math.IsInf(haveReq, 1) {
		requests = min(want, int64(haveReq))
	}
	tokens = wantTokens
	if !math.IsInf(haveTok, 1) {
		tokens = min(wantTokens, int64(haveTok))
	}
	if requests < want {
		// Tokens in proportion to the requests granted, so that a partial
		// lease does not hold tokens it has no requests to spend.
		share := int64(math.Ceil(float64(wantTokens) * float64(requests) / float64(want)))
		tokens = min(tokens, max(share, minTokens))
	}
	b.take(now, requests, tokens)
	return requests, tokens, 0
}

// waitFor is how long until one request and minTokens tokens are available.
func (b *bucket) waitFor(haveReq, haveTok float64, minTokens int64) time.Duration {
	var wait float64 // seconds
	if haveReq < 1 {
		wait = (1 - haveReq) / float64(b.limits.RequestsPerSecond)
	}
	if short := float64(minTokens) - haveTok; short > 0 {
		wait = math.Max(wait, short/float64(b.limits.TokensPerSecond))
	}
	// Round up so the wake-up finds the permit there, not a hair short.
	return time.Duration(wait*float64(time.Second)) + time.Millisecond
}

func (b *bucket) take(now time.Time, requests, tokens int64) {
	if b.requestsOn() {
		use := math.Min(b.reqCredit, float64(requests))
		b.reqCredit -= use
		if rest := requests - int64(use); rest > 0 {
			// ReserveN, not AllowN: with a fractional credit the rest may
			// exceed the bucket by a fraction, and AllowN would then take
			// nothing at all.
			b.requests.ReserveN(now, int(rest))
		}
	}
	if b.limits.TokensEnabled() && tokens > 0 {
		use := math.Min(b.tokCredit, float64(tokens))
		b.tokCredit -= use
		if rest := tokens - int64(use); rest > 0 {
			b.tokens.ReserveN(now, int(rest))
		}
	}
}

// refund gives back what a lease did not use.
func (b *bucket) refund(now time.Time, requests, tokens int64) {
	b.available(now) // cap the credit as of now before adding
	if b.requestsOn() && requests > 0 {
		b.reqCredit = capCredit(b.reqCredit+float64(requests), float64(b.limits.RequestBurst)-b.requests.TokensAt(now))
	}
	if b.limits.TokensEnabled() && tokens > 0 {
		b.tokCredit = capCredit(b.tokCredit+float64(tokens), float64(b.limits.TokenBurst)-b.tokens.TokensAt(now))
	}
}

// maxAdjustBursts caps one positive adjustment, in token bursts.
const maxAdjustBursts = 16

// adjust reconciles the token bucket with real usage: delta > 0 charges
// tokens used beyond an estimate (pushing later grants back), delta < 0
// refunds.
func (b *bucket) adjust(now time.Time, delta int64) {
	if !b.limits.TokensEnabled() || delta == 0 {
		return
	}
	if delta < 0 {
		b.refund(now, 0, -delta)
		return
	}
	// A member reports one call's usage beyond its estimate; more than a
	// few buckets of it is nonsense (or hostile), and charging it piece by
	// piece would hold the service for as long as it is large.
	delta = min(delta, maxAdjustBursts*int64(b.limits.TokenBurst))
	b.available(now)
	use := math.Min(b.tokCredit, float64(delta))
	b.tokCredit -= use
	// ReserveN refuses more than the burst at once: charge in pieces.
	for rest := delta - int64(use); rest > 0; {
		n := min(rest, int64(b.limits.TokenBurst))
		b.tokens.ReserveN(now, int(n))
		rest -= n
	}
}

// pause grants nothing before until; an earlier end than the current one is
// ignored. It reports whether the pause was extended.
func (b *bucket) pause(until time.Time) bool {
	if !until.After(b.pausedUntil) {
		return false
	}
	b.pausedUntil = until
	return true
}
