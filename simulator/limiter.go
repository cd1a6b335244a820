package simulator

import (
	"math"
	"time"
)

// bucket is a token bucket of the given capacity that refills continuously
// at limit per minute, starting full. A nil *bucket is unlimited.
type bucket struct {
	limit    float64 // per minute
	capacity float64 // the burst: at most limit
	level    float64
	last     time.Time
}

// newBucket returns a full bucket of perMinute whose capacity is burst, or
// perMinute when burst is 0; nil when perMinute is 0.
func newBucket(perMinute, burst int, now time.Time) *bucket {
	if perMinute <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = perMinute
	}
	return &bucket{limit: float64(perMinute), capacity: float64(burst), level: float64(burst), last: now}
}

// perSecond is the refill rate.
func (b *bucket) perSecond() float64 { return b.limit / 60 }

// refill brings the level up to date with now.
func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.level = min(b.capacity, b.level+dt.Seconds()*b.perSecond())
		b.last = now
	}
}

// wait returns how long until the bucket holds n; it is 0 when it already
// does and negative when it never will, as n exceeds the capacity.
func (b *bucket) wait(n float64) time.Duration {
	switch {
	case n > b.capacity:
		return -1
	case b.level >= n:
		return 0
	}
	return secondsCeil((n - b.level) / b.perSecond())
}

// untilFull returns how long until the bucket is full again, which is what
// the providers' reset headers report.
func (b *bucket) untilFull() time.Duration {
	return secondsCeil((b.capacity - b.level) / b.perSecond())
}

// secondsCeil converts seconds to a duration rounded up to a millisecond,
// the precision of the providers' headers, so that a client waiting that
// long finds the capacity there.
func secondsCeil(s float64) time.Duration {
	ms := math.Ceil(s*1000 - 1e-6)
	return time.Duration(max(ms, 0)) * time.Millisecond
}

// budgetState is one bucket's state as reported in response headers.
type budgetState struct {
	limit     int // per minute
	capacity  int // the burst
	remaining int
	reset     time.Duration // until full
}

func (b *bucket) state() budgetState {
	return budgetState{limit: int(b.limit), capacity: int(b.capacity),
		remaining: int(math.Floor(b.level + 1e-9)), reset: b.untilFull()}
}

// keyLimits are the buckets of one API key.
type keyLimits struct {
	requests, tokens *bucket
}

// limitState is the state of a key's limits after a request.
type limitState struct {
	requests, tokens *budgetState // nil when unlimited
	at               time.Time
}

// admission is the outcome of asking a key's buckets for a request.
type admission struct {
	ok     bool
	budget string        // the exhausted budget: "requests" or "tokens"
	wait   time.Duration // until the request would fit; < 0: never
	state  limitState
}

// admit takes 1 request and cost tokens from k if both buckets hold them,
// and nothing otherwise, so that a refused request costs nothing.
func (k *keyLimits) admit(cost int, now time.Time) admission {
	var a admission
	if k.requests != nil {
		k.requests.refill(now)
		if w := k.requests.wait(1); w != 0 {
			a.budget, a.wait = "requests", w
		}
	}
	if k.tokens != nil && a.budget == "" {
		k.tokens.refill(now)
		if w := k.tokens.wait(float64(cost)); w != 0 {
			a.budget, a.wait = "tokens", w
		}
	}
	if a.budget == "" {
		a.ok = true
		if k.requests != nil {
			k.requests.level--
		}
		if k.tokens != nil {
			k.tokens.level -= float64(cost)
		}
	}
	a.state = k.peek(now)
	return a
}

// peek returns the state of k at now without taking anything.
func (k *keyLimits) peek(now time.Time) limitState {
	st := limitState{at: now}
	if k.requests != nil {
		k.requests.refill(now)
		s := k.requests.state()
		st.requests = &s
	}
	if k.tokens != nil {
		k.tokens.refill(now)
		s := k.tokens.state()
		st.tokens = &s
	}
	return st
}
