package actors

import (
	"time"

	"github.com/lionactor/lionactor/internal/bucket"
	"github.com/lionactor/lionactor/messages"
)

// permits is the limiter's decision logic, apart from the actor: which asks
// may go, at instants it is given, as rate.Limiter's ...At methods take
// theirs. Asks are decided strictly in arrival order, so that a large
// request is never starved by small ones behind it. Only the head ask holds
// a reservation of the buckets; the actor wakes when it is due.
//
// With a shared budget (leased), permits come from a pool of leases instead
// of the buckets, and the decision includes what to give back and what to
// ask the broker for.
type permits struct {
	buckets *buckets
	pending []pendingAsk // FIFO; pending[0] is the head
	paused  time.Time

	leased bool
	pool   leasePool
	wanted bool // a LeaseWanted is out
}

type pendingAsk struct {
	ask      permitAsk
	reserved bool
	due      time.Time
	resv     [2]bucket.Reservation // request and tokens, given back if cancelled
}

// verdict is the decision on one ask: granted when err is nil.
type verdict struct {
	ticket uint64
	err    error
}

// decision is what a call to decide found at now.
type decision struct {
	verdicts []verdict
	// back are expired leases with something left, to give back.
	back []heldLease
	// want, if set, is a lease to ask the broker for.
	want *LeaseWanted
	// wake is when to decide again; zero when no time will change anything.
	wake time.Time
}

// wakeBy makes d wake no later than at.
func (d *decision) wakeBy(at time.Time) {
	if d.wake.IsZero() || at.Before(d.wake) {
		d.wake = at
	}
}

func (p *permits) add(a permitAsk) { p.pending = append(p.pending, pendingAsk{ask: a}) }

// cancel withdraws the ask of ticket at now, giving back what it holds.
func (p *permits) cancel(ticket uint64, now time.Time) {
	for i := range p.pending {
		if p.pending[i].ask.ticket == ticket {
			p.unreserve(&p.pending[i], now)
			p.pending = append(p.pending[:i], p.pending[i+1:]...)
			return
		}
	}
}

// pause grants nothing before until; an earlier end than the current one is
// ignored. It reports whether the pause was extended.
func (p *permits) pause(until, now time.Time) bool {
	if !until.After(p.paused) {
		return false
	}
	p.paused = until
	p.buckets.pausedUntil.Store(until.UnixNano())
	// A head reserved before the pause would take its permit from the
	// bucket as it was then, and at the pause's end go out together with
	// a refilled bucket: one over the burst. It reserves again when the
	// pause ends.
	p.unreserveHead(now)
	return true
}

// apply sets new limits at now; the head is planned again at the new rates.
func (p *permits) apply(l Limits, now time.Time) {
	p.buckets.Apply(now, l)
	p.unreserveHead(now)
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
	p.replanHead(now)
}

// decide grants and denies, in order, every ask it can at now.
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

func (p *permits) decideLocal(now time.Time, d *decision) {
	for len(p.pending) > 0 {
		head := &p.pending[0]
		if !head.reserved {
			if now.Before(p.paused) {
				d.wakeBy(p.paused)
				return
			}
			if err := p.reserve(head, now); err != nil {
				d.verdicts = append(d.verdicts, verdict{ticket: head.ask.ticket, err: err})
				p.pop()
				continue
			}
		}
		due := head.due
		if due.Before(p.paused) {
			due = p.paused
		}
		if due.After(now) {
			d.wakeBy(due)
			return
		}
		d.verdicts = append(d.verdicts, verdict{ticket: head.ask.ticket})
		p.pop()
	}
}

func (p *permits) pop() {
	p.pending[0] = pendingAsk{}
	p.pending = p.pending[1:]
	if len(p.pending) == 0 {
		p.pending = p.pending[:0:0] // let the backing array go
	}
}

// reserve takes the head's request and tokens from the buckets at now,
// recording when the permit is due.
func (p *permits) reserve(a *pendingAsk, now time.Time) error {
	b := p.buckets
	n := a.ask.tokens
	useTokens := n > 0 && b.TokensEnabled()
	if useTokens && n > b.TokenBurst() {
		return &messages.TokenLimitError{Tokens: n, Burst: b.TokenBurst()}
	}
	if b.requests.Available(now) >= 1 && (!useTokens || b.tokens.Available(now) >= float64(n)) {
		// Both buckets hold the permit (the common case of a limit not
		// yet reached): take it; nothing is held that a cancel could
		// give back.
		b.requests.Take(now, 1)
		if useTokens {
			b.tokens.Take(now, n)
		}
		a.reserved, a.due, a.resv = true, now, [2]bucket.Reservation{}
		return nil
	}
	a.resv[0] = b.requests.Reserve(now, 1)
	a.due = a.resv[0].Due()
	if useTokens {
		a.resv[1] = b.tokens.Reserve(now, n)
		if t := a.resv[1].Due(); t.After(a.due) {
			a.due = t
		}
	}
	a.reserved = true
	return nil
}

// unreserve gives back what an ask took from the buckets.
func (p *permits) unreserve(a *pendingAsk, now time.Time) {
	if !a.reserved {
		return
	}
	p.buckets.requests.Cancel(now, a.resv[0])
	p.buckets.tokens.Cancel(now, a.resv[1])
	a.reserved, a.resv = false, [2]bucket.Reservation{}
}

func (p *permits) unreserveHead(now time.Time) {
	if len(p.pending) > 0 {
		p.unreserve(&p.pending[0], now)
	}
}

// replanHead gives back the head's reservation, to plan it again, unless
// it is due at now: a reservation whose time has come cannot be given back
// (rate.Reservation.CancelAt restores nothing then), so planning it again
// would charge the bucket twice and lose a permit's slot. A due head is
// granted by the next decision anyway.
func (p *permits) replanHead(now time.Time) {
	if len(p.pending) > 0 && p.pending[0].due.After(now) {
		p.unreserve(&p.pending[0], now)
	}
}

// decideLeased is decide for a limiter with a broker: permits come from the
// lease pool, and when it runs short the limiter asks the broker for more.
func (p *permits) decideLeased(now time.Time, d *decision) {
	d.back = p.pool.expire(now)
	for len(p.pending) > 0 {
		if now.Before(p.paused) {
			d.wakeBy(p.paused)
			break
		}
		head := &p.pending[0]
		n := p.leaseTokens(head.ask.tokens)
		if burst := p.buckets.TokenBurst(); p.buckets.TokensEnabled() && n > int64(burst) {
			d.verdicts = append(d.verdicts, verdict{ticket: head.ask.ticket, err: &messages.TokenLimitError{Tokens: int(n), Burst: burst}})
			p.pop()
			continue
		}
		if !p.pool.take(n) {
			d.want = p.want()
			break
		}
		d.verdicts = append(d.verdicts, verdict{ticket: head.ask.ticket})
		p.pop()
	}
	if at := p.pool.earliest(); !at.IsZero() {
		d.wakeBy(at) // to give back what expires unspent
	}
}

// leaseTokens is what an ask costs from a lease: nothing without a token
// limit.
func (p *permits) leaseTokens(tokens int) int64 {
	if !p.buckets.TokensEnabled() {
		return 0
	}
	return int64(tokens)
}

// want returns a lease covering every pending ask the pool cannot, unless
// an ask is already out.
func (p *permits) want() *LeaseWanted {
	if p.wanted {
		return nil
	}
	var need int64
	for _, a := range p.pending {
		need += p.leaseTokens(a.ask.tokens)
	}
	haveReq, haveTok := p.pool.totals()
	p.wanted = true
	return &LeaseWanted{
		Requests:  max(int64(len(p.pending))-haveReq, 1),
		Tokens:    max(need-haveTok, 0),
		MinTokens: max(p.leaseTokens(p.pending[0].ask.tokens)-haveTok, 0),
	}
}
