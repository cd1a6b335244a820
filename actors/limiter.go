package actors

import (
	"math"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// limiter grants permits: one request from the request bucket plus the
// request's API tokens from the token bucket. Asks are served strictly in
// arrival order, so a large request is never starved by small ones behind
// it. Only the head ask holds reservations; when it is not yet due, a single
// timer wakes the actor at its due time.
type limiter struct {
	budget *Budget
	queue  *actor.PID // where permits go
	self   *actor.PID
	system *actor.ActorSystem

	pending []pendingAsk // FIFO; pending[0] is the head
	timer   *time.Timer
	timerAt time.Time
	paused  time.Time

	// With a broker, permits come from leases of a shared budget.
	broker  *actor.PID
	pool    leasePool
	wanted  bool // a LeaseWanted is out
	closing bool // leases are given back as they come: the executor is stopping
}

type pendingAsk struct {
	ask      permitAsk
	reserved bool
	due      time.Time
	resv     []*rate.Reservation // what to give back if cancelled while reserved
	credit   float64             // refund credit used, given back if cancelled
}

// newLimiter returns a limiter granting permits to queue from b's buckets,
// or, if broker is not nil, from leases the broker obtains.
func newLimiter(b *Budget, queue, broker *actor.PID) *limiter {
	return &limiter{budget: b, queue: queue, broker: broker}
}

// Receive implements actor.Actor.
func (l *limiter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		l.self, l.system = ctx.Self(), ctx.ActorSystem()
	case *permitAsk:
		l.pending = append(l.pending, pendingAsk{ask: *m})
		l.pump(ctx, time.Now())
	case *permitCancel:
		l.cancel(m.ticket, time.Now())
		l.pump(ctx, time.Now())
	case *limiterTick:
		l.pump(ctx, time.Now())
	case *LeaseGranted:
		l.granted(ctx, m)
	case *ReturnLeases:
		l.returnLeases(ctx, m)
	case *SharedPause:
		l.pause(ctx, m.Until)
	case *PauseUntil:
		l.forward(ctx, m)
		l.pause(ctx, m.Until)
	case *SetLimits:
		now := time.Now()
		l.budget.Apply(now, m.Limits)
		l.forward(ctx, m)
		l.unreserveHead(now) // its due time was computed at the old rates
		l.pump(ctx, now)
	case *AdjustTokens:
		if l.broker != nil {
			l.forward(ctx, m) // the shared budget is reconciled, not the local one
			return
		}
		now := time.Now()
		l.reconcile(m.Delta, now)
		l.pump(ctx, now)
	case *actor.Stopping:
		if l.timer != nil {
			l.timer.Stop()
		}
	}
}

// forward tells the broker, if any, of a change seen here.
func (l *limiter) forward(ctx actor.Context, m any) {
	if l.broker != nil {
		ctx.Send(l.broker, m)
	}
}

func (l *limiter) pause(ctx actor.Context, until time.Time) {
	now := time.Now()
	if until.After(l.paused) {
		l.paused = until
		l.budget.pausedUntil.Store(until.UnixNano())
		// A head reserved before the pause would take its permit from
		// the bucket as it was then, and at the pause's end go out
		// together with a refilled bucket: one over the burst. It
		// reserves again when the pause ends.
		l.unreserveHead(now)
	}
	l.pump(ctx, now)
}

// pump grants every ask that is due at now, in order, and arms the timer for
// the first one that is not.
func (l *limiter) pump(ctx actor.Context, now time.Time) {
	if l.broker != nil {
		l.pumpLeased(ctx, now)
		return
	}
	for len(l.pending) > 0 {
		head := &l.pending[0]
		if !head.reserved {
			if now.Before(l.paused) {
				l.arm(l.paused, now)
				return
			}
			if err := l.reserve(head, now); err != nil {
				ctx.Send(l.queue, &permitDenied{ticket: head.ask.ticket, err: err})
				l.pop()
				continue
			}
		}
		due := head.due
		if due.Before(l.paused) {
			due = l.paused
		}
		if due.After(now) {
			l.arm(due, now)
			return
		}
		ctx.Send(l.queue, &permitGranted{ticket: head.ask.ticket})
		l.pop()
	}
	l.clearPause(now)
}

func (l *limiter) pop() {
	l.pending[0] = pendingAsk{}
	l.pending = l.pending[1:]
	if len(l.pending) == 0 {
		l.pending = l.pending[:0:0] // let the backing array go
	}
}

func (l *limiter) clearPause(now time.Time) {
	if !l.paused.IsZero() && !now.Before(l.paused) {
		l.paused = time.Time{}
		l.budget.pausedUntil.Store(0)
	}
}

// reserve takes the head's request and tokens from the buckets at now,
// recording when the permit is due.
func (l *limiter) reserve(p *pendingAsk, now time.Time) error {
	if l.takeNow(p.ask.tokens, now) {
		// Granted at once: nothing is held that a cancel could give back.
		p.reserved, p.due, p.resv = true, now, p.resv[:0]
		return nil
	}
	b := l.budget
	r := b.requests.ReserveN(now, 1)
	due := now.Add(r.DelayFrom(now))
	p.resv = append(p.resv[:0], r)
	if n := p.ask.tokens; n > 0 && b.TokensEnabled() {
		if burst := b.TokenBurst(); n > burst {
			r.CancelAt(now)
			return &messages.TokenLimitError{Tokens: n, Burst: burst}
		}
		b.setCredit(b.creditAt(now))
		use := math.Min(b.Credit(), float64(n))
		b.setCredit(b.Credit() - use)
		p.credit = use
		if need := n - int(use); need > 0 {
			t := b.tokens.ReserveN(now, need)
			p.resv = append(p.resv, t)
			if d := now.Add(t.DelayFrom(now)); d.After(due) {
				due = d
			}
		}
	}
	p.reserved, p.due = true, due
	return nil
}

// takeNow takes one request and n tokens if both buckets hold them at now.
// It is the common case of a limit not yet reached, and unlike ReserveN it
// allocates nothing. The check and the take cannot be split by another
// permit (the limiter is the only taker); a concurrent change of rates can
// at worst make the take fail after the check, charging the request's slot
// once more on the slow path, which errs on the safe side.
func (l *limiter) takeNow(n int, now time.Time) bool {
	b := l.budget
	useTokens := n > 0 && b.TokensEnabled()
	if b.requests.Limit() != rate.Inf && b.requests.TokensAt(now) < 1 {
		return false
	}
	var credit float64
	if useTokens {
		if n > b.TokenBurst() {
			return false // the slow path reports it
		}
		credit = b.creditAt(now)
		if b.tokens.TokensAt(now)+credit < float64(n) {
			return false
		}
	}
	if !b.requests.AllowN(now, 1) {
		return false
	}
	if useTokens {
		use := math.Min(credit, float64(n))
		b.setCredit(credit - use)
		if need := n - int(use); need > 0 {
			// ReserveN, not AllowN: with a fractional credit need may
			// exceed the bucket by a fraction, and AllowN would then take
			// nothing at all.
			b.tokens.ReserveN(now, need)
		}
	}
	return true
}

func (l *limiter) cancel(ticket uint64, now time.Time) {
	for i := range l.pending {
		if l.pending[i].ask.ticket == ticket {
			l.unreserve(&l.pending[i], now)
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			return
		}
	}
}

// unreserve gives back what an ask took from the buckets.
func (l *limiter) unreserve(p *pendingAsk, now time.Time) {
	if !p.reserved {
		return
	}
	for _, r := range p.resv {
		r.CancelAt(now)
	}
	l.budget.setCredit(l.budget.Credit() + p.credit)
	p.reserved, p.resv, p.credit = false, p.resv[:0], 0
}

// replanHead gives back the head's reservation, to plan it again, unless
// it is due at now: a reservation whose time has come cannot be given back
// (rate.Reservation.CancelAt restores nothing then), so planning it again
// would charge the bucket twice and lose a permit's slot. A due head is
// granted by the next pump anyway.
func (l *limiter) replanHead(now time.Time) {
	if len(l.pending) > 0 && l.pending[0].due.After(now) {
		l.unreserve(&l.pending[0], now)
	}
}

func (l *limiter) unreserveHead(now time.Time) {
	if len(l.pending) > 0 {
		l.unreserve(&l.pending[0], now)
	}
}

// reconcile corrects the token bucket by delta tokens at now; a refund may
// let the head go sooner.
func (l *limiter) reconcile(delta int, now time.Time) {
	l.adjust(delta, now)
	if delta < 0 {
		l.replanHead(now)
	}
}

// adjust reconciles the token bucket with a call's real usage.
func (l *limiter) adjust(delta int, now time.Time) {
	b := l.budget
	if delta == 0 || !b.TokensEnabled() {
		return
	}
	if delta < 0 {
		// A refund cannot make the budget exceed the bucket's capacity: the
		// provider's own bucket holds no more than that either.
		room := float64(b.TokenBurst()) - b.tokens.TokensAt(now)
		b.setCredit(math.Max(0, math.Min(b.Credit()+float64(-delta), room)))
		return
	}
	// Spend credit first, then charge the bucket, in pieces no larger than
	// its burst (ReserveN refuses larger ones). The reservations push later
	// permits back, which is the point.
	b.setCredit(b.creditAt(now))
	use := math.Min(b.Credit(), float64(delta))
	b.setCredit(b.Credit() - use)
	rest := delta - int(use)
	for burst := b.TokenBurst(); rest > 0 && burst > 0; {
		n := min(rest, burst)
		b.tokens.ReserveN(now, n)
		rest -= n
	}
}

// arm makes sure a tick arrives at at, keeping one timer.
func (l *limiter) arm(at, now time.Time) {
	if l.timer != nil && !l.timerAt.IsZero() && !l.timerAt.After(at) && l.timerAt.After(now) {
		return // an earlier (or equal) wake-up is already set
	}
	l.timerAt = at
	d := at.Sub(now)
	if l.timer == nil {
		self, root := l.self, l.system.Root
		l.timer = time.AfterFunc(d, func() { root.Send(self, &limiterTick{}) })
		return
	}
	l.timer.Reset(d)
}
