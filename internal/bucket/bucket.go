// Package bucket is a token bucket that takes refunds: a
// golang.org/x/time/rate Limiter plus credit, the units given back after
// they were taken (the tokens a call did not use of its estimate, the part
// of a lease nobody spent).
//
// Credit is spent before the limiter, and it never lets the bucket hold more
// than its burst: the provider's own bucket holds no more than that either,
// so once the bucket's own refill has made up for a refund, that credit is
// void. The executor's limiter keeps two Buckets (requests and API tokens),
// and so does the shared budget's service for each key.
package bucket

import (
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is a rate.Limiter with credit. One goroutine (an actor) changes
// it; Available, Credit, Limit and Burst are safe from any goroutine, for
// statistics. Every method takes the time it acts at, as rate.Limiter's
// ...At methods do, so that tests can run it on made-up instants.
type Bucket struct {
	lim    *rate.Limiter
	credit atomic.Uint64 // float64 bits: refunded units not yet spent
}

// New returns a full bucket refilling at limit up to burst; limit rate.Inf
// turns it off (it then admits everything).
func New(limit rate.Limit, burst int) *Bucket {
	return &Bucket{lim: rate.NewLimiter(limit, burst)}
}

// NewEmpty returns a bucket that is empty at now. A budget that comes up
// while its users are already spending (a service that restarted, a member
// falling back to its share) must not hand out a burst on top of what was
// spent just before.
func NewEmpty(now time.Time, limit rate.Limit, burst int) *Bucket {
	b := New(limit, burst)
	if limit != rate.Inf {
		b.lim.AllowN(now, burst)
	}
	return b
}

// Set changes the rate and the burst at now; what the bucket holds is kept,
// up to the new burst.
func (b *Bucket) Set(now time.Time, limit rate.Limit, burst int) {
	b.lim.SetLimitAt(now, limit)
	b.lim.SetBurstAt(now, burst)
}

// Off reports whether the bucket admits everything (its limit is rate.Inf).
func (b *Bucket) Off() bool { return b.lim.Limit() == rate.Inf }

// Limit is the refill rate.
func (b *Bucket) Limit() rate.Limit { return b.lim.Limit() }

// Burst is the capacity.
func (b *Bucket) Burst() int { return b.lim.Burst() }

// Available is what the bucket would admit at now, credit included: +Inf
// when it is off, negative when permits are reserved ahead of now.
func (b *Bucket) Available(now time.Time) float64 {
	if b.Off() {
		return math.Inf(1)
	}
	return b.lim.TokensAt(now) + b.Credit(now)
}

// Credit is the part of the refunds that is usable at now: no more than the
// bucket's free room (none when the bucket is off).
func (b *Bucket) Credit(now time.Time) float64 {
	if b.Off() {
		return 0
	}
	room := float64(b.lim.Burst()) - b.lim.TokensAt(now)
	return math.Max(0, math.Min(b.stored(), room))
}

// Due is when the bucket will hold n units, counted from now at its rate:
// now if it holds them already (or is off). It takes nothing; n beyond the
// burst is never held, and Due then says when the bucket is full.
func (b *Bucket) Due(now time.Time, n int) time.Time {
	if b.Off() {
		return now
	}
	want := math.Min(float64(n), float64(b.lim.Burst()))
	lack := want - b.Available(now)
	if lack <= 0 {
		return now
	}
	if b.lim.Limit() <= 0 {
		return now.Add(math.MaxInt64) // a rate of zero never refills
	}
	return now.Add(time.Duration(lack / float64(b.lim.Limit()) * float64(time.Second)))
}

func (b *Bucket) stored() float64      { return math.Float64frombits(b.credit.Load()) }
func (b *Bucket) store(credit float64) { b.credit.Store(math.Float64bits(credit)) }

// Refund gives n units back at now, as credit capped at the free room.
func (b *Bucket) Refund(now time.Time, n float64) {
	if n <= 0 || b.Off() {
		return
	}
	room := float64(b.lim.Burst()) - b.lim.TokensAt(now)
	b.store(math.Max(0, math.Min(b.Credit(now)+n, room)))
}

// Take spends n units at now, credit first, whether or not the bucket holds
// them: what it lacks pushes later permits back, which is the point of
// charging usage beyond an estimate. It charges the limiter in pieces no
// larger than its burst (rate.Limiter refuses larger ones). It returns the
// credit it spent.
func (b *Bucket) Take(now time.Time, n int) (credit float64) {
	if n <= 0 || b.Off() {
		return 0
	}
	credit = b.spendCredit(now, n)
	rest := n - int(credit)
	// AllowN when the limiter holds the rest, as it allocates nothing; with
	// a fractional credit the rest may exceed it by a fraction, and AllowN
	// would then take nothing at all: ReserveN always takes.
	if rest > 0 && b.lim.AllowN(now, rest) {
		return credit
	}
	for burst := b.lim.Burst(); rest > 0 && burst > 0; {
		piece := min(rest, burst)
		b.lim.ReserveN(now, piece)
		rest -= piece
	}
	return credit
}

func (b *Bucket) spendCredit(now time.Time, n int) float64 {
	have := b.Credit(now)
	use := math.Min(have, float64(n))
	b.store(have - use)
	return use
}

// Reservation is a permit of n units reserved ahead: due once the bucket
// has refilled for it. Cancel gives it back while it is not yet due.
type Reservation struct {
	r      *rate.Reservation // nil when credit paid for all of it
	credit float64
	due    time.Time
}

// Due is when the reserved units are there.
func (r Reservation) Due() time.Time { return r.due }

// Reserve reserves n units at now, credit first, and says when they are
// due. n must not exceed the burst. Reservations are served in the order
// they are made, which is what keeps a large request from being starved by
// small ones behind it.
func (b *Bucket) Reserve(now time.Time, n int) Reservation {
	if n <= 0 || b.Off() {
		return Reservation{due: now}
	}
	credit := b.spendCredit(now, n)
	res := Reservation{credit: credit, due: now}
	if rest := n - int(credit); rest > 0 {
		res.r = b.lim.ReserveN(now, rest)
		res.due = now.Add(res.r.DelayFrom(now))
	}
	return res
}

// Cancel gives back at now what r took: its reserved units, as far as
// rate.Limiter can restore them, and its credit.
func (b *Bucket) Cancel(now time.Time, r Reservation) {
	if r.r != nil {
		r.r.CancelAt(now)
	}
	if r.credit > 0 {
		b.store(b.stored() + r.credit)
	}
}
