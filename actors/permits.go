package actors

import (
	"math"
	"time"

	"github.com/lionactor/lionactor/internal/bucket"
	"github.com/lionactor/lionactor/messages"
)

// permits is the limiter's decision logic, apart from the actor: what the
// queue may spend, at instants it is given, as rate.Limiter's ...At methods
// take theirs.
//
// The queue asks for the permits of every request it has a caller for, at
// most one ask at a time (permitsWanted), and spends what it is granted on
// its requests in their order; so the order of the requests is the queue's,
// and the limiter serves one asker. An ask is granted as soon as the head
// request's permit (one request and its tokens) is there: with what the
// buckets hold then, up to what was asked. When the head's permit is not
// there yet it is reserved, so that nothing else takes it, and the actor
// wakes when it is due: a large request is never starved by small ones.
// Without any limit the queue is granted unlimited permits once, until a
// pause or a change of limits revokes them.
//
// With a shared budget (leased), permits come from a pool of leases instead
// of the buckets, and the decision includes what to give back and what to
// ask the broker for.
type permits struct {
	buckets *buckets
	want    *permitsWanted // the queue's ask; nil when none is out
	paused  time.Time

	// The head's permit, reserved ahead while the ask waits for it.
	reserved bool
	due      time.Time
	resv     [2]bucket.Reservation // request and tokens

	leased bool
	pool   leasePool
	wanted bool // a LeaseWanted is out
}

// decision is what a call to decide found at now.
type decision struct {
	grant *permitsGranted // permits for the queue, if any
	deny  error           // the ask can never be granted (its head costs more than the token burst)
	// back are expired leases with something left, to give back.
	back []heldLease
	// lease, if set, is a lease to ask the broker for.
	lease *LeaseWanted
	// wake is when to decide again; zero when no time will change anything.
	wake time.Time
}

// wakeBy makes d wake no later than at.
func (d *decision) wakeBy(at time.Time) {
	if d.wake.IsZero() || at.Before(d.wake) {
		d.wake = at
	}
}

// ask takes the queue's ask, in place of the one it had out (the queue
// asks again only after an answer, or after it withdrew its ask).
func (p *permits) ask(w permitsWanted, now time.Time) {
	p.withdraw(now)
	p.want = &w
}

// withdraw drops the queue's ask and gives back what was reserved for it.
func (p *permits) withdraw(now time.Time) {
	p.unreserve(now)
	p.want = nil
}

// giveBack takes back permits the queue did not spend.
func (p *permits) giveBack(r *permitsReturned, now time.Time) {
	if p.leased {
		p.pool.putBack(r.requests, r.tokens)
		return
	}
	p.buckets.requests.Refund(now, float64(r.requests))
	p.buckets.tokens.Refund(now, float64(r.tokens))
}

// pause grants nothing before until; an earlier end than the current one is
// ignored. It reports whether the pause was extended.
func (p *permits) pause(until, now time.Time) bool {
	if !until.After(p.paused) {
		return false
	}
	p.paused = until
	p.buckets.pausedUntil.Store(until.UnixNano())
	// A permit reserved before the pause would be taken from the bucket
	// as it was then, and at the pause's end go out together with a
	// refilled bucket: one over the burst. It is reserved again when the
	// pause ends.
	p.unreserve(now)
	return true
}

// apply sets new limits at now; the head's permit is planned again at the
// new rates.
func (p *permits) apply(l Limits, now time.Time) {
	p.buckets.Apply(now, l)
	p.unreserve(now)
}

// unlimited reports whether no limit applies: the queue may then have
// every permit it wants, without asking.
func (p *permits) unlimited() bool {
	return !p.leased && p.buckets.requests.Off() && p.buckets.tokens.Off()
}

// reconcile corrects the token bucket by delta tokens at now, a call's real
// usage against its estimate: delta > 0 charges, delta < 0 refunds (a
// refund may let the head go sooner).
func (p *permits) reconcile(delta int, now time.Time) {
	b := p.buckets
	if delta == 0 || !b.TokensEnabled() {
		return
	}
	if delta > 0 {
		b.tokens.Take(now, delta)
		return
	}
	b.tokens.Refund(now, float64(-delta))
	if p.reserved && p.due.After(now) {
		// A reservation whose time has come cannot be given back
		// (rate.Reservation.CancelAt restores nothing then), so planning
		// it again would charge the bucket twice; one not yet due is
		// planned again, so that the tokens freed can let it go sooner.
		p.unreserve(now)
	}
}

// decide answers the queue's ask, if it can at now.
func (p *permits) decide(now time.Time) decision {
	var d decision
	if p.leased {
		p.decideLeased(now, &d)
	} else {
		p.decideLocal(now, &d)
	}
	if !p.paused.IsZero() && !now.Before(p.paused) {
		p.paused = time.Time{}
		p.buckets.pausedUntil.Store(0)
	}
	return d
}

// tokenCost is what n tokens cost from a bucket: nothing without a token
// limit.
func (p *permits) tokenCost(n int64) int64 {
	if !p.buckets.TokensEnabled() {
		return 0
	}
	return n
}

// tooLarge is the error for an ask whose head can never fit, or nil.
func (p *permits) tooLarge(w *permitsWanted) error {
	b := p.buckets
	if n := p.tokenCost(w.headTokens); n > int64(b.TokenBurst()) {
		return &messages.TokenLimitError{Tokens: int(n), Burst: b.TokenBurst()}
	}
	return nil
}

func (p *permits) decideLocal(now time.Time, d *decision) {
	w := p.want
	if w == nil {
		return
	}
	if now.Before(p.paused) {
		d.wakeBy(p.paused)
		return
	}
	if p.unlimited() {
		d.grant, p.want = &permitsGranted{unlimited: true}, nil
		return
	}
	if err := p.tooLarge(w); err != nil {
		d.deny, p.want = err, nil
		return
	}
	b := p.buckets
	minTokens := p.tokenCost(w.minTokens)
	if p.reserved {
		if p.due.After(now) {
			d.wakeBy(p.due)
			return
		}
		// The head's permit is there: it was taken when reserved.
		p.reserved, p.resv = false, [2]bucket.Reservation{}
		d.grant, p.want = &permitsGranted{requests: w.minRequests, tokens: minTokens}, nil
		return
	}
	haveReq, haveTok := b.requests.Available(now), b.tokens.Available(now)
	if haveReq < float64(w.minRequests) || (minTokens > 0 && haveTok < float64(minTokens)) {
		// Reserve the head's permit, so that nothing else takes it, and
		// wake when it is due.
		p.resv[0] = b.requests.Reserve(now, int(w.minRequests))
		p.resv[1] = b.tokens.Reserve(now, int(minTokens))
		p.reserved, p.due = true, later(p.resv[0].Due(), p.resv[1].Due())
		d.wakeBy(p.due)
		return
	}
	g := &permitsGranted{
		requests: max(grantable(w.requests, haveReq), w.minRequests),
		tokens:   max(grantable(p.tokenCost(w.tokens), haveTok), minTokens),
	}
	b.requests.Take(now, int(g.requests))
	b.tokens.Take(now, int(g.tokens))
	d.grant, p.want = g, nil
}

// grantable is up to want of what a bucket holding have can give: all of
// it when the bucket is off.
func grantable(want int64, have float64) int64 {
	if math.IsInf(have, 1) {
		return want
	}
	return min(want, int64(have))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unreserve gives back the head's reserved permit.
func (p *permits) unreserve(now time.Time) {
	if !p.reserved {
		return
	}
	p.buckets.requests.Cancel(now, p.resv[0])
	p.buckets.tokens.Cancel(now, p.resv[1])
	p.reserved, p.resv = false, [2]bucket.Reservation{}
}

// decideLeased is decide for a limiter with a broker: permits come from the
// lease pool, and when it runs short the limiter asks the broker for more.
func (p *permits) decideLeased(now time.Time, d *decision) {
	d.back = p.pool.expire(now)
	if at := p.pool.earliest(); !at.IsZero() {
		d.wakeBy(at) // to give back what expires unspent
	}
	w := p.want
	if w == nil {
		return
	}
	if now.Before(p.paused) {
		d.wakeBy(p.paused)
		return
	}
	if err := p.tooLarge(w); err != nil {
		d.deny, p.want = err, nil
		return
	}
	minTokens, tokens := p.tokenCost(w.minTokens), p.tokenCost(w.tokens)
	haveReq, haveTok := p.pool.totals()
	if haveReq < w.minRequests || haveTok < minTokens {
		d.lease = p.leaseFor(w, haveReq, haveTok)
		return
	}
	g := &permitsGranted{requests: max(min(w.requests, haveReq), w.minRequests), tokens: max(min(tokens, haveTok), minTokens)}
	p.pool.takeN(g.requests, g.tokens)
	d.grant, p.want = g, nil
}

// leaseFor is the lease covering what the ask wants beyond what the pool
// holds, unless a lease is already asked for.
func (p *permits) leaseFor(w *permitsWanted, haveReq, haveTok int64) *LeaseWanted {
	if p.wanted {
		return nil
	}
	p.wanted = true
	return &LeaseWanted{
		Requests:  max(w.requests-haveReq, w.minRequests, 1),
		Tokens:    max(p.tokenCost(w.tokens)-haveTok, 0),
		MinTokens: max(p.tokenCost(w.minTokens)-haveTok, 0),
	}
}
