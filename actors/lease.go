package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// A limiter with a lease broker (Config.LeaseBroker) takes its permits from
// leases, blocks of requests and tokens that a budget shared with other
// processes grants for a short time, instead of from its own buckets. The
// broker is an actor, a child of the supervisor; package budget provides
// one. The limiter and the broker talk by the messages below.

// LeaseWanted asks the broker for a lease of up to Requests requests and
// Tokens API tokens, of which the head request needs MinTokens. The limiter
// sends it with itself as sender, one at a time: it sends the next only
// after the LeaseGranted for this one.
type LeaseWanted struct {
	Requests, Tokens, MinTokens int64
}

// LeaseGranted answers LeaseWanted: the limiter may use Requests requests
// and Tokens tokens until Expires. A broker answers only once it has
// something to give (at least one request).
type LeaseGranted struct {
	ID               uint64
	Requests, Tokens int64
	Expires          time.Time
}

// LeaseUnused gives back the rest of lease ID when it expires unspent.
type LeaseUnused struct {
	ID               uint64
	Requests, Tokens int64
}

// SharedPause is a pause that another member of the shared budget reported:
// the limiter applies it like PauseUntil but does not report it back.
type SharedPause struct {
	Until time.Time
}

// A broker also receives, forwarded by the limiter, every *PauseUntil (a
// 429 seen here, to share), *AdjustTokens (usage reconciled here) and
// *SetLimits (limits changed here).

// heldLease is what is left of one lease in the limiter's pool.
type heldLease struct {
	id               uint64
	requests, tokens int64
	expires          time.Time
}

// leasePool holds a limiter's unexpired leases, oldest first.
type leasePool struct {
	leases []heldLease
}

func (p *leasePool) add(g *LeaseGranted) {
	p.leases = append(p.leases, heldLease{id: g.ID, requests: g.Requests, tokens: g.Tokens, expires: g.Expires})
}

// expire removes the leases expired at now and returns them, with what was
// left of each.
func (p *leasePool) expire(now time.Time) []heldLease {
	var gone []heldLease
	kept := p.leases[:0]
	for _, l := range p.leases {
		if now.Before(l.expires) {
			kept = append(kept, l)
		} else if l.requests > 0 || l.tokens > 0 {
			gone = append(gone, l)
		}
	}
	clear(p.leases[len(kept):])
	p.leases = kept
	return gone
}

// totals is what the pool holds.
func (p *leasePool) totals() (requests, tokens int64) {
	for _, l := range p.leases {
		requests += l.requests
		tokens += l.tokens
	}
	return requests, tokens
}

// takeN spends requests and tokens, oldest lease first; the pool must hold
// them.
func (p *leasePool) takeN(requests, tokens int64) {
	for i := 0; requests > 0 && i < len(p.leases); i++ {
		use := min(requests, p.leases[i].requests)
		p.leases[i].requests -= use
		requests -= use
	}
	for i := 0; tokens > 0 && i < len(p.leases); i++ {
		use := min(tokens, p.leases[i].tokens)
		p.leases[i].tokens -= use
		tokens -= use
	}
	// Drop spent leases from the front; a lease with tokens but no requests
	// left still serves requests paid for by a later lease.
	for len(p.leases) > 0 && p.leases[0].requests == 0 && p.leases[0].tokens == 0 {
		p.leases = p.leases[1:]
	}
}

// putBack returns permits taken from the pool and not spent, to the lease
// with the most time left. With no lease left they are dropped: counting
// them spent errs on the safe side of the shared budget.
func (p *leasePool) putBack(requests, tokens int64) {
	if len(p.leases) == 0 {
		return
	}
	last := &p.leases[0]
	for i := range p.leases {
		if p.leases[i].expires.After(last.expires) {
			last = &p.leases[i]
		}
	}
	last.requests += requests
	last.tokens += tokens
}

// earliest is the first expiry in the pool, or the zero time.
func (p *leasePool) earliest() time.Time {
	var first time.Time
	for _, l := range p.leases {
		if first.IsZero() || l.expires.Before(first) {
			first = l.expires
		}
	}
	return first
}

// granted adds a lease to the pool, or gives it back at once if the
// executor is stopping; it reports whether the lease was kept.
func (l *limiter) granted(ctx actor.Context, g *LeaseGranted) bool {
	l.p.wanted = false
	l.p.buckets.shared.received(g)
	if l.closing {
		l.giveBack(ctx, heldLease{id: g.ID, requests: g.Requests, tokens: g.Tokens})
		return false
	}
	l.p.pool.add(g)
	return true
}

// giveBack hands what is left of a lease to the broker.
func (l *limiter) giveBack(ctx actor.Context, h heldLease) {
	if h.requests == 0 && h.tokens == 0 {
		return
	}
	l.p.buckets.shared.gaveBack(h.requests, h.tokens)
	ctx.Send(l.broker, &LeaseUnused{ID: h.id, Requests: h.requests, Tokens: h.tokens})
}

// returnLeases gives back every lease at once, and from now on every lease
// as it arrives, then passes m on to the broker, which sees the leases
// back to the service before it closes m.Done.
func (l *limiter) returnLeases(ctx actor.Context, m *ReturnLeases) {
	if l.broker == nil {
		close(m.Done)
		return
	}
	l.closing = true
	for _, h := range l.p.pool.leases {
		l.giveBack(ctx, h)
	}
	l.p.pool = leasePool{}
	l.p.buckets.shared.held(0, 0)
	ctx.Send(l.broker, m)
}
