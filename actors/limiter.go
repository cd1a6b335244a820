package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/internal/selftimer"
)

// limiter grants the queue its permits: requests from the request bucket
// and API tokens from the token bucket, or, with a shared budget, from the
// leases its broker obtains. What may go when is decided by permits, at the
// instant each message arrives; the actor sends the answers and keeps one
// timer for the next instant that matters.
type limiter struct {
	queue  *actor.PID // where permits go
	broker *actor.PID // nil without a shared budget
	p      permits
	timer  selftimer.Timer
	// closing: leases are given back as they come, as the executor stops.
	closing bool
}

// tick wakes the limiter when a permit or a lease's expiry is due. It is
// one value, so that re-arming the timer reuses it.
var tick = &limiterTick{}

// newLimiter returns a limiter granting permits to queue from b's buckets,
// or, if broker is not nil, from leases the broker obtains.
func newLimiter(b *buckets, queue, broker *actor.PID) *limiter {
	return &limiter{queue: queue, broker: broker, p: permits{buckets: b, leased: broker != nil}}
}

// Receive implements actor.Actor.
func (l *limiter) Receive(ctx actor.Context) {
	now := time.Now()
	switch m := ctx.Message().(type) {
	case *permitsWanted:
		l.p.ask(*m, now)
	case *permitsWithdrawn:
		l.p.withdraw(now)
	case *permitsReturned:
		l.p.giveBack(m, now)
	case *limiterTick:
	case *LeaseGranted:
		if !l.granted(ctx, m) {
			return
		}
	case *ReturnLeases:
		l.returnLeases(ctx, m)
		return
	case *SharedPause:
		l.pause(ctx, m.Until, now)
	case *PauseUntil:
		l.forward(ctx, m)
		l.pause(ctx, m.Until, now)
	case *SetLimits:
		l.forward(ctx, m)
		l.p.apply(m.Limits, now)
		ctx.Send(l.queue, &permitsRevoked{}) // spent at the old limits otherwise
	case *AdjustTokens:
		if l.broker != nil {
			l.forward(ctx, m) // the shared budget is reconciled, not the local one
			return
		}
		l.p.reconcile(m.Delta, now)
	case *actor.Stopping:
		l.timer.Stop()
		return
	default:
		return
	}
	l.act(ctx, now)
}

// pause grants nothing before until, and takes back what the queue holds.
func (l *limiter) pause(ctx actor.Context, until, now time.Time) {
	if l.p.pause(until, now) {
		ctx.Send(l.queue, &permitsRevoked{})
	}
}

// act carries out what permits decide at now.
func (l *limiter) act(ctx actor.Context, now time.Time) {
	d := l.p.decide(now)
	for _, gone := range d.back {
		l.giveBack(ctx, gone)
	}
	if l.p.leased {
		// Before the grant: whoever sees a permit sees the pool's figures
		// with it taken.
		l.p.buckets.shared.held(l.p.pool.totals())
	}
	switch {
	case d.grant != nil:
		ctx.Send(l.queue, d.grant)
	case d.deny != nil:
		ctx.Send(l.queue, &permitsDenied{err: d.deny})
	}
	if d.lease != nil {
		ctx.Request(l.broker, d.lease)
	}
	if !d.wake.IsZero() {
		l.timer.ArmBy(ctx, now, d.wake, tick)
	}
}

// forward tells the broker, if any, of a change seen here.
func (l *limiter) forward(ctx actor.Context, m any) {
	if l.broker != nil {
		ctx.Send(l.broker, m)
	}
}
