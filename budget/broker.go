package budget

import (
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/internal/selftimer"
)

// A backend is how a broker reaches the budget it shares: the budget
// service over protoactor's remote layer (serviceBackend) or Redis
// (redisBackend). The broker owns the policy — what to ask for, when to
// keep to its local share, when to rejoin — and the backend the mechanism.
//
// The broker calls a backend on its own goroutine only, and a backend never
// blocks there: a round trip runs elsewhere (a message to the service, a
// goroutine for Redis) and its outcome comes back to the broker as one of
// the messages below (*leaseAnswer, *budgetUp, *budgetDown, *pauseShared,
// *flushed). Messages addressed to the backend itself (the service's
// answers, its timers) reach the broker's mailbox, which hands every
// message it does not know to receive.
type backend interface {
	// start begins the backend's work, from the broker's Started.
	start(ctx actor.Context)
	// lease asks for want at limits, naming the ask ask: the answer is a
	// *leaseAnswer for it, or a *budgetDown.
	lease(ctx actor.Context, ask uint64, want actors.LeaseWanted, limits actors.Limits)
	// giveBack returns the unused part of lease id.
	giveBack(ctx actor.Context, id uint64, requests, tokens int64)
	// adjust reconciles the token bucket with real usage.
	adjust(ctx actor.Context, delta int64)
	// pause shares a pause until until with the other members.
	pause(ctx actor.Context, until time.Time)
	// probe asks, on the local share, whether the budget answers again: a
	// *budgetUp if it does.
	probe(ctx actor.Context)
	// leave says that this member leaves (a graceful stop), after the
	// leases given back just before. With wait, the backend answers
	// *flushed once the budget has them.
	leave(ctx actor.Context, wait bool)
	// receive handles a message for the backend.
	receive(ctx actor.Context, m any)
	// stop ends what the backend started, from the broker's Stopping.
	stop()
	// name says what the budget is in log lines ("budget service"), and
	// where it is the attribute that tells where.
	name() string
	where() slog.Attr
}

// What a backend tells its broker.
type (
	// leaseAnswer answers lease ask: lease, or with nothing granted
	// (lease.Requests == 0), how long to wait before asking again.
	leaseAnswer struct {
		ask   uint64
		lease actors.LeaseGranted
		wait  time.Duration
	}
	// budgetUp says the budget answered a probe.
	budgetUp struct{}
	// budgetDown says the budget cannot be used: it did not answer in
	// time, failed, or refused this member (refused), for reason.
	budgetDown struct {
		reason  string
		refused bool
	}
	// pauseShared is a pause another member reported.
	pauseShared struct{ until time.Time }
	// flushed says the budget has the leases given back before leave.
	flushed struct{}
)

// The broker's own timers.
type (
	retryTick    struct{} // the wanted lease may be there now
	probeTick    struct{} // time to ask whether the budget is back
	flushTimeout struct{} // a graceful stop waited long enough
)

var (
	theRetry        = &retryTick{}
	theProbe        = &probeTick{}
	theFlushTimeout = &flushTimeout{}
)

// minSharedPause is the shortest pause a member shares: a shorter one ends
// before it could reach the other members, and a server that reports a
// small remainder on every response would otherwise have every response
// relayed to every member.
const minSharedPause = 10 * time.Millisecond

// localLease marks the IDs of leases a member granted itself from its local
// share while the budget was away.
const localLease = uint64(1) << 63

// localLeaseTTL is how long a lease of the local share lasts: what it has
// not used by then goes back to the local bucket.
const localLeaseTTL = DefaultLeaseTTL

// The broker's log lines when a budget service is away or refuses it; a
// budget on Redis says "budget on Redis" instead of "budget service" (see
// downMsg).
const (
	unreachableMsg = "lionactor: " + serviceName + " unreachable; using the local share"
	refusedMsg     = "lionactor: " + serviceName + " refused this member; using the local share"
)

// brokerProps returns the props of a broker that reaches its budget
// through the backend newBackend makes (one per broker, so that a broker
// restarted by its supervisor starts afresh); cfg has its defaults applied.
func brokerProps(cfg MemberConfig, limits actors.Limits, logger *slog.Logger, newBackend func() backend) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		b := &broker{cfg: cfg, limits: limits, logger: logger, backend: newBackend()}
		b.behavior.Become(b.joined)
		return b
	})
}

// broker is a member's side of the shared budget, an actor beside the
// limiter. It has two behaviours: joined, it turns the limiter's
// LeaseWanted into asks of the budget and the budget's grants into
// LeaseGranted; on the local share (the budget stayed silent, failed or
// refused it), it grants leases from a local bucket holding the member's
// share of the limits, and probes every RejoinInterval until the budget
// answers again.
type broker struct {
	cfg      MemberConfig
	limits   actors.Limits
	logger   *slog.Logger
	backend  backend
	behavior actor.Behavior

	limiter *actor.PID
	want    *actors.LeaseWanted // what the limiter waits for; nil when nothing
	ask     uint64              // names the latest ask of the budget
	// retry fires when the wanted lease may be there: joined, when the
	// budget said to wait; on the local share, when the local bucket
	// will hold it.
	retry selftimer.Timer
	probe selftimer.Timer

	// The local share, while the broker keeps to it.
	local   *bucket
	localID uint64

	// Standing, for the executor's Stats.
	since              time.Time // of the current behaviour
	reason             string    // why it fell back
	fallbacks, rejoins int64

	// A graceful stop's return of leases: done once the budget has them,
	// or after ReplyTimeout.
	flush      chan struct{}
	flushTimer selftimer.Timer
}

// Receive implements actor.Actor.
func (b *broker) Receive(ctx actor.Context) { b.behavior.Receive(ctx) }

// joined is the behaviour while the budget answers.
func (b *broker) joined(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actors.LeaseWanted:
		b.wanted(ctx, m)
		b.askBudget(ctx)
	case *leaseAnswer:
		b.answered(ctx, m)
	case *retryTick:
		b.askBudget(ctx)
	case *budgetDown:
		b.fallBack(ctx, m)
	case *budgetUp:
		// Joined already.
	case *pauseShared:
		b.pausedByOther(ctx, m)
	case *actors.LeaseUnused:
		if m.ID&localLease == 0 { // the local share's leases went with it
			b.backend.giveBack(ctx, m.ID, m.Requests, m.Tokens)
		}
	case *actors.AdjustTokens:
		b.backend.adjust(ctx, int64(m.Delta))
	case *actors.PauseUntil:
		if m.Until.Sub(time.Now()) >= minSharedPause {
			b.backend.pause(ctx, m.Until)
		}
	case *actors.SetLimits:
		b.limits = m.Limits
	case *actors.ReturnLeases:
		b.returnLeases(ctx, m)
	default:
		b.either(ctx)
	}
}

// onLocalShare is the behaviour while the budget is away or refuses this
// member.
func (b *broker) onLocalShare(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actors.LeaseWanted:
		b.wanted(ctx, m)
		b.serveLocal(ctx)
	case *retryTick:
		b.serveLocal(ctx)
	case *probeTick:
		b.backend.probe(ctx)
		b.probe.Arm(ctx, time.Now(), b.cfg.RejoinInterval, theProbe)
	case *budgetUp:
		b.rejoin(ctx)
	case *budgetDown:
		b.stillDown(ctx, m)
	case *leaseAnswer:
		b.late(ctx, m)
	case *pauseShared:
		b.pausedByOther(ctx, m)
	case *actors.LeaseUnused:
		if m.ID&localLease != 0 {
			b.local.refund(time.Now(), m.Requests, m.Tokens)
		}
	case *actors.AdjustTokens:
		b.local.adjust(time.Now(), int64(m.Delta))
	case *actors.PauseUntil:
		b.local.pause(m.Until)
	case *actors.SetLimits:
		b.limits = m.Limits
		b.local.setLimits(share(b.limits, b.cfg.ExpectedMembers), time.Now())
	case *actors.ReturnLeases:
		// Nothing is held from the budget; a word that this member leaves
		// may still reach it.
		b.want = nil
		b.backend.leave(ctx, false)
		close(m.Done)
	default:
		b.either(ctx)
	}
}

// either handles what both behaviours handle alike, and hands the rest to
// the backend.
func (b *broker) either(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		b.since = time.Now() // joined until the budget proves otherwise
		b.report(ctx)
		b.backend.start(ctx)
	case *flushed, *flushTimeout:
		b.endFlush()
	case *actor.Stopping, *actor.Restarting:
		// A restarted broker is a new one, with a new backend: nothing of
		// this one's may reach it.
		b.retry.Stop()
		b.probe.Stop()
		b.backend.stop()
		b.endFlush()
	case *actor.Stopped, *actor.DeadLetterResponse:
		// A DeadLetterResponse: the service's address answers but has no
		// service; as good as silent, which the backend sees for itself.
	default:
		b.backend.receive(ctx, ctx.Message())
	}
}

// wanted notes what the limiter waits for.
func (b *broker) wanted(ctx actor.Context, m *actors.LeaseWanted) {
	b.limiter, b.want = ctx.Sender(), m
}

// askBudget asks the budget for the wanted lease.
func (b *broker) askBudget(ctx actor.Context) {
	b.retry.Stop()
	if b.want == nil {
		return
	}
	b.ask++
	b.backend.lease(ctx, b.ask, *b.want, b.limits)
}

// answered handles the budget's answer to an ask while joined.
func (b *broker) answered(ctx actor.Context, a *leaseAnswer) {
	switch {
	case b.want == nil || a.ask != b.ask:
		b.late(ctx, a)
	case a.lease.Requests == 0:
		// Nothing yet. Members of a budget on Redis are not served in
		// order: each asks again when the budget says, a little later or
		// sooner than the others, so that they do not ask in lockstep.
		b.retry.Arm(ctx, time.Now(), jitter(a.wait), theRetry)
	default:
		b.give(ctx, a.lease)
	}
}

// jitter is d plus up to a quarter of it, at most 2 ms more.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(min(d/4, 2*time.Millisecond)+1)
}

// late gives back a lease granted for an ask the broker no longer waits
// for (answered by another, given up on, or from before a fallback).
func (b *broker) late(ctx actor.Context, a *leaseAnswer) {
	if l := a.lease; l.Requests > 0 || l.Tokens > 0 {
		b.backend.giveBack(ctx, l.ID, l.Requests, l.Tokens)
	}
}

func (b *broker) give(ctx actor.Context, g actors.LeaseGranted) {
	b.want = nil
	ctx.Send(b.limiter, &g)
}

// pausedByOther applies a pause another member reported.
func (b *broker) pausedByOther(ctx actor.Context, m *pauseShared) {
	if b.local != nil {
		b.local.pause(m.until)
	}
	if b.limiter != nil {
		ctx.Send(b.limiter, &actors.SharedPause{Until: m.until})
	}
}

// returnLeases sees the leases the limiter gave back (just before m, in
// order) to the budget: it closes m.Done once the budget has them, or after
// ReplyTimeout. Grants that arrive from now on are given back at once.
func (b *broker) returnLeases(ctx actor.Context, m *actors.ReturnLeases) {
	b.want = nil
	if b.flush != nil { // a flush is under way
		close(m.Done)
		return
	}
	b.flush = m.Done
	b.flushTimer.Arm(ctx, time.Now(), b.cfg.ReplyTimeout, theFlushTimeout)
	b.backend.leave(ctx, true)
}

func (b *broker) endFlush() {
	if b.flush == nil {
		return
	}
	close(b.flush)
	b.flush = nil
	b.flushTimer.Stop()
}

// fallBack keeps to the local share: the limits divided by the members
// expected, in a bucket that starts empty, so that the members together
// stay within the limits while none reaches the budget.
func (b *broker) fallBack(ctx actor.Context, down *budgetDown) {
	now := time.Now()
	b.behavior.Become(b.onLocalShare)
	b.since, b.reason = now, down.reason
	b.fallbacks++
	part := share(b.limits, b.cfg.ExpectedMembers)
	b.local = newBucket(part, now)
	b.logger.Warn(b.downMsg(down), b.backend.where(),
		slog.String("reason", down.reason),
		slog.Float64("requests_per_second", float64(part.RequestsPerSecond)),
		slog.Float64("tokens_per_second", float64(part.TokensPerSecond)),
		slog.Int("expected_members", b.cfg.ExpectedMembers))
	b.report(ctx)
	b.retry.Stop()
	b.probe.Arm(ctx, now, b.cfg.RejoinInterval, theProbe)
	b.serveLocal(ctx)
}

// downMsg is the log line of a fallback. The CLI shows the lines that
// start with "lionactor: budget".
func (b *broker) downMsg(down *budgetDown) string {
	if down.refused {
		return "lionactor: " + b.backend.name() + " refused this member; using the local share"
	}
	return "lionactor: " + b.backend.name() + " unreachable; using the local share"
}

// stillDown notes a new reason for keeping to the local share: a refusal
// that says something new is logged; the rest the next probe will tell.
func (b *broker) stillDown(ctx actor.Context, down *budgetDown) {
	if !down.refused || down.reason == b.reason {
		return
	}
	b.reason = down.reason
	b.logger.Warn(b.downMsg(down), b.backend.where(), slog.String("reason", down.reason))
	b.report(ctx)
}

// serveLocal grants the wanted lease from the local share, or arms the
// retry for when it can.
func (b *broker) serveLocal(ctx actor.Context) {
	if b.want == nil {
		return
	}
	now := time.Now()
	w := b.want
	requests, tokens, wait := b.local.grant(now, w.Requests, w.Tokens, w.MinTokens)
	if requests == 0 {
		b.retry.Arm(ctx, now, wait, theRetry)
		return
	}
	b.localID++
	b.give(ctx, actors.LeaseGranted{ID: localLease | b.localID, Requests: requests, Tokens: tokens, Expires: now.Add(localLeaseTTL)})
}

// rejoin goes back to the budget once it answers again.
func (b *broker) rejoin(ctx actor.Context) {
	b.behavior.Become(b.joined)
	b.since, b.reason = time.Now(), ""
	b.rejoins++
	b.local = nil
	b.probe.Stop()
	b.report(ctx)
	b.logger.Info("lionactor: "+b.backend.name()+" reachable again; rejoined", b.backend.where())
	b.askBudget(ctx)
}

// report tells the executor (the broker's parent) its standing.
func (b *broker) report(ctx actor.Context) {
	if ctx.Parent() == nil {
		return
	}
	ctx.Send(ctx.Parent(), &actors.BrokerState{
		Joined: b.local == nil, Since: b.since, Reason: b.reason, Fallbacks: b.fallbacks, Rejoins: b.rejoins,
	})
}
