package budget

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	ratebucket "github.com/lionactor/lionactor/internal/bucket"
)

// bucket is one key's budget: a request bucket and a token bucket, with the
// unused parts of returned leases held as credit. The service keeps one per
// key; a member that cannot reach the service keeps one for its local share.
// It is not safe for concurrent use: an actor owns it.
type bucket struct {
	limits      actors.Limits
	requests    *ratebucket.Bucket
	tokens      *ratebucket.Bucket
	pausedUntil time.Time
}

// newBucket returns empty buckets for l. They start empty, not full: a
// budget that comes up while members are already spending (a service that
// restarted, a member falling back) must not hand out a burst on top of
// what was spent just before.
func newBucket(l actors.Limits, now time.Time) *bucket {
	return &bucket{
		limits:   l,
		requests: ratebucket.NewEmpty(now, l.RequestsPerSecond, l.RequestBurst),
		tokens:   ratebucket.NewEmpty(now, tokenRate(l), l.TokenBurst),
	}
}

// tokenRate is the token bucket's rate: rate.Inf (off) without a token
// limit.
func tokenRate(l actors.Limits) rate.Limit {
	if !l.TokensEnabled() {
		return rate.Inf
	}
	return l.TokensPerSecond
}

func (b *bucket) setLimits(l actors.Limits, now time.Time) {
	b.requests.Set(now, l.RequestsPerSecond, l.RequestBurst)
	b.tokens.Set(now, tokenRate(l), l.TokenBurst)
	b.limits = l
}

// available is what the buckets (with credit) hold at now; +Inf for a bucket
// that is off.
func (b *bucket) available(now time.Time) (requests, tokens float64) {
	return b.requests.Available(now), b.tokens.Available(now)
}

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
	b.requests.Take(now, int(requests))
	b.tokens.Take(now, int(tokens))
}

// refund gives back what a lease did not use.
func (b *bucket) refund(now time.Time, requests, tokens int64) {
	b.requests.Refund(now, float64(requests))
	b.tokens.Refund(now, float64(tokens))
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
	b.tokens.Take(now, int(min(delta, maxAdjustBursts*int64(b.limits.TokenBurst))))
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
