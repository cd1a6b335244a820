package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
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

// take spends one request and n tokens, oldest lease first, if the pool
// holds them.
func (p *leasePool) take(n int64) bool {
	requests, tokens := p.totals()
	if requests < 1 || tokens < n {
		return false
	}
	for i := range p.leases {
		if p.leases[i].requests > 0 {
			p.leases[i].requests--
			break
		}
	}
	for i := 0; n > 0 && i < len(p.leases); i++ {
		use := min(n, p.leases[i].tokens)
		p.leases[i].tokens -= use
		n -= use
	}
	// Drop spent leases from the front; a lease with tokens but no requests
	// left still serves requests paid for by a later lease.
	for len(p.leases) > 0 && p.leases[0].requests == 0 && p.leases[0].tokens == 0 {
		p.leases = p.leases[1:]
	}
	return true
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
// executor is stopping.
func (l *limiter) granted(ctx actor.Context, g *LeaseGranted) {
	l.wanted = false
	l.budget.shared.received(g)
	if l.closing {
		l.giveBack(ctx, heldLease{id: g.ID, requests: g.Requests, tokens: g.Tokens})
		return
	}
	l.pool.add(g)
	l.pump(ctx, time.Now())
}

// giveBack hands what is left of a lease to the broker.
func (l *limiter) giveBack(ctx actor.Context, h heldLease) {
	if h.requests == 0 && h.tokens == 0 {
		return
	}
	l.budget.shared.gaveBack(h.requests, h.tokens)
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
	for _, h := range l.pool.leases {
		l.giveBack(ctx, h)
	}
	l.pool = leasePool{}
	l.budget.shared.held(0, 0)
	ctx.Send(l.broker, m)
}

// pumpLeased is pump for a limiter with a broker: permits come from the
// lease pool, and when it runs short the limiter asks the broker for more.
func (l *limiter) pumpLeased(ctx actor.Context, now time.Time) {
	defer func() { l.budget.shared.held(l.pool.totals()) }()
	for _, gone := range l.pool.expire(now) {
		l.giveBack(ctx, gone)
	}
	for len(l.pending) > 0 {
		if now.Before(l.paused) {
			l.arm(l.paused, now)
			break
		}
		head := &l.pending[0]
		n := l.leaseTokens(head.ask.tokens)
		if burst := l.budget.TokenBurst(); l.budget.TokensEnabled() && n > int64(burst) {
			ctx.Send(l.queue, &permitDenied{ticket: head.ask.ticket, err: &messages.TokenLimitError{Tokens: int(n), Burst: burst}})
			l.pop()
			continue
		}
		if !l.pool.take(n) {
			l.want(ctx)
			break
		}
		ctx.Send(l.queue, &permitGranted{ticket: head.ask.ticket})
		l.pop()
	}
	if at := l.pool.earliest(); !at.IsZero() {
		l.arm(at, now) // to give back what expires unspent
	}
	l.clearPause(now)
}

// leaseTokens is what an ask costs from a lease: nothing without a token
// limit.
func (l *limiter) leaseTokens(tokens int) int64 {
	if !l.budget.TokensEnabled() {
		return 0
	}
	return int64(tokens)
}

// want asks the broker for a lease covering every pending ask the pool
// cannot, unless an ask is already out.
func (l *limiter) want(ctx actor.Context) {
	if l.wanted {
		return
	}
	var need int64
	for _, p := range l.pending {
		need += l.leaseTokens(p.ask.tokens)
	}
	haveReq, haveTok := l.pool.totals()
	w := &LeaseWanted{
		Requests:  max(int64(len(l.pending))-haveReq, 1),
		Tokens:    max(need-haveTok, 0),
		MinTokens: max(l.leaseTokens(l.pending[0].ask.tokens)-haveTok, 0),
	}
	l.wanted = true
	ctx.Request(l.broker, w)
}
