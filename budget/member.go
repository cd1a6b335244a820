package budget

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/messages"
)

// Defaults of MemberConfig.
const (
	DefaultReplyTimeout   = time.Second
	DefaultRejoinInterval = time.Second
	DefaultListenAddr     = "127.0.0.1:0"
)

// MemberConfig makes an executor a member of a shared budget: set it as
// runtime.Config.SharedBudget. Its executor then takes every rate permit
// from leases that the service at Address grants.
type MemberConfig struct {
	// Address is the budget service's host:port.
	Address string
	// Key names the budget; use [KeyFor].
	Key string
	// ExpectedMembers is how many processes share the budget. While the
	// service cannot be reached, this member keeps to its executor's
	// limits divided by ExpectedMembers. At least 1.
	ExpectedMembers int
	// ReplyTimeout is how long the member waits for any word from the
	// service before falling back to its local share. 0 means
	// DefaultReplyTimeout.
	ReplyTimeout time.Duration
	// RejoinInterval is how often a member that fell back asks whether the
	// service is back. 0 means DefaultRejoinInterval.
	RejoinInterval time.Duration
	// ListenAddr is where this process's remote layer listens, for the
	// service's answers, if the executor's actor system has none started
	// (an executor from runtime.Start never has). "" means
	// DefaultListenAddr.
	ListenAddr string
}

// Validate reports an invalid field as a *messages.ConfigError.
func (c MemberConfig) Validate() error {
	bad := func(field, reason string) error {
		return &messages.ConfigError{Field: "SharedBudget." + field, Reason: reason}
	}
	if _, _, err := splitAddr("SharedBudget.Address", c.Address, false); err != nil {
		return err
	}
	if c.ListenAddr != "" {
		if _, _, err := splitAddr("SharedBudget.ListenAddr", c.ListenAddr, true); err != nil {
			return err
		}
	}
	switch {
	case c.Key == "":
		return bad("Key", "must not be empty (use budget.KeyFor)")
	case c.ExpectedMembers < 1:
		return bad("ExpectedMembers", "must be at least 1")
	case c.ReplyTimeout < 0:
		return bad("ReplyTimeout", "must not be negative")
	case c.RejoinInterval < 0:
		return bad("RejoinInterval", "must not be negative")
	}
	return nil
}

func (c MemberConfig) withDefaults() MemberConfig {
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	return c
}

// Attach implements runtime.SharedBudget: it starts the remote layer on
// system if it has none (release shuts that down again) and returns the
// props of the executor's lease broker.
func (c MemberConfig) Attach(system *actor.ActorSystem, limits actors.Limits, logger *slog.Logger) (*actor.Props, func(), error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	c = c.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	release := func() {}
	if remoteOf(system) == nil {
		host, port, _ := splitAddr("ListenAddr", c.ListenAddr, true)
		r, err := startRemote(system, host, port)
		if err != nil {
			return nil, nil, err
		}
		release = func() { shutdownRemote(r) }
	}
	return brokerProps(c, limits, logger, actor.NewPID(c.Address, ServiceName)), release, nil
}

// brokerProps returns the props of a broker that asks service for leases;
// cfg has its defaults applied.
func brokerProps(cfg MemberConfig, limits actors.Limits, logger *slog.Logger, service *actor.PID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &broker{cfg: cfg, limits: limits, logger: logger, service: service, ttl: DefaultLeaseTTL}
	})
}

// minSharedPause is the shortest pause a member shares: a shorter one ends
// before it could reach the other members, and a server that reports a
// small remainder on every response would otherwise have every response
// relayed to every member.
const minSharedPause = 10 * time.Millisecond

// localLease marks the IDs of leases a member granted itself from its local
// share while the service was away.
const localLease = uint64(1) << 63

// broker is a member's side of the shared budget, an actor beside the
// limiter. It turns the limiter's LeaseWanted into LeaseRequests to the
// service and the service's grants into LeaseGranted. If the service stays
// silent for ReplyTimeout, it grants leases from a local bucket holding the
// member's share, and asks every RejoinInterval whether the service is back.
type broker struct {
	cfg     MemberConfig
	limits  actors.Limits
	logger  *slog.Logger
	service *actor.PID
	self    *actor.PID
	root    *actor.RootContext

	limiter *actor.PID
	want    *actors.LeaseWanted // what the limiter waits for; nil when nothing
	ttl     time.Duration       // lease lifetime, as the service last said

	// Connected mode: the request out at the service.
	joined  bool
	reqID   uint64
	sentAt  time.Time
	heard   time.Time // when the service last said anything
	waitFor *time.Timer

	// Fallback mode.
	local   *bucket
	localID uint64
	retry   *time.Timer // next try of the local bucket
	probe   *time.Timer
}

type replyCheck struct{ id uint64 }
type localRetry struct{}
type probeTick struct{}

// Receive implements actor.Actor.
func (b *broker) Receive(ctx actor.Context) {
	now := time.Now()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		b.self, b.root = ctx.Self(), ctx.ActorSystem().Root
		b.joined = true // until the service proves otherwise
	case *actors.LeaseWanted:
		b.limiter, b.want = ctx.Sender(), m
		if b.joined {
			b.ask(ctx, now)
		} else {
			b.serveLocal(ctx, now)
		}
	case *budgetpb.LeaseGrant:
		b.heard = now
		b.granted(ctx, m, now)
	case *budgetpb.Pong:
		b.heard = now
		b.ttl = time.Duration(m.GetLeaseTtlNanos())
		if !b.joined {
			b.rejoin(ctx, now)
		}
	case *budgetpb.Pause:
		b.heard = now
		until := now.Add(time.Duration(m.GetDurationNanos()))
		if b.local != nil {
			b.local.pause(until)
		}
		if b.limiter != nil {
			ctx.Send(b.limiter, &actors.SharedPause{Until: until})
		}
	case *replyCheck:
		b.checkReply(ctx, m.id, now)
	case *localRetry:
		b.serveLocal(ctx, now)
	case *probeTick:
		ctx.Request(b.service, &budgetpb.Ping{})
		b.probe.Reset(b.cfg.RejoinInterval)
	case *actor.DeadLetterResponse:
		// The service's address answers but has no service: as good as
		// silent. The reply check decides.
	case *actors.LeaseUnused:
		b.unused(ctx, m, now)
	case *actors.AdjustTokens:
		if b.joined {
			ctx.Request(b.service, &budgetpb.TokenAdjust{Key: b.cfg.Key, Delta: int64(m.Delta)})
		} else if b.local != nil {
			b.local.adjust(now, int64(m.Delta))
		}
	case *actors.PauseUntil:
		if b.local != nil {
			b.local.pause(m.Until)
		}
		if d := m.Until.Sub(now); d >= minSharedPause && b.joined {
			ctx.Request(b.service, &budgetpb.Pause{Key: b.cfg.Key, DurationNanos: int64(d)})
		}
	case *actors.SetLimits:
		b.limits = m.Limits
		if b.local != nil {
			b.local.setLimits(share(b.limits, b.cfg.ExpectedMembers), now)
		}
	case *actor.Stopping:
		for _, t := range []*time.Timer{b.waitFor, b.retry, b.probe} {
			if t != nil {
				t.Stop()
			}
		}
	}
}

// ask sends the wanted lease to the service and arms the reply check.
func (b *broker) ask(ctx actor.Context, now time.Time) {
	b.reqID++
	b.sentAt = now
	b.send(ctx)
	b.armCheck(b.reqID)
}

func (b *broker) send(ctx actor.Context) {
	ctx.Request(b.service, &budgetpb.LeaseRequest{
		Key: b.cfg.Key, RequestId: b.reqID,
		Requests: b.want.Requests, Tokens: b.want.Tokens, MinTokens: b.want.MinTokens,
		Limits: toWire(b.limits),
	})
}

func (b *broker) armCheck(id uint64) {
	self, root := b.self, b.root
	if b.waitFor != nil {
		b.waitFor.Stop()
	}
	b.waitFor = time.AfterFunc(b.cfg.ReplyTimeout, func() { root.Send(self, &replyCheck{id: id}) })
}

// checkReply runs ReplyTimeout after a request was sent: if the service
// said anything since, it is alive but the budget is short, so ask again
// (the service answers a repeated request with a Pong while it waits);
// otherwise fall back.
func (b *broker) checkReply(ctx actor.Context, id uint64, now time.Time) {
	if !b.joined || b.want == nil || id != b.reqID {
		return // answered, or overtaken
	}
	if b.heard.After(now.Add(-b.cfg.ReplyTimeout)) {
		b.send(ctx)
		b.armCheck(id)
		return
	}
	b.fallBack(ctx, now)
}

func (b *broker) granted(ctx actor.Context, g *budgetpb.LeaseGrant, now time.Time) {
	if ttl := time.Duration(g.GetTtlNanos()); ttl > 0 {
		b.ttl = ttl
	}
	if !b.joined || b.want == nil || g.GetRequestId() != b.reqID {
		// A grant for a request given up on: give it back untouched.
		ctx.Request(b.service, &budgetpb.LeaseReturn{Key: b.cfg.Key, LeaseId: g.GetLeaseId(), Requests: g.GetRequests(), Tokens: g.GetTokens()})
		return
	}
	b.waitFor.Stop()
	b.give(ctx, &actors.LeaseGranted{
		ID: g.GetLeaseId(), Requests: g.GetRequests(), Tokens: g.GetTokens(),
		// From when it was asked for: the member's clock stays on the
		// safe side of the service's whatever the delay.
		Expires: b.sentAt.Add(b.ttl),
	})
}

func (b *broker) give(ctx actor.Context, g *actors.LeaseGranted) {
	b.want = nil
	ctx.Send(b.limiter, g)
}

// fallBack starts budgeting alone on the local share.
func (b *broker) fallBack(ctx actor.Context, now time.Time) {
	b.joined = false
	part := share(b.limits, b.cfg.ExpectedMembers)
	b.local = newBucket(part, now)
	b.logger.Warn("lionactor: budget service unreachable; using the local share",
		slog.String("service", b.cfg.Address),
		slog.Float64("requests_per_second", float64(part.RequestsPerSecond)),
		slog.Float64("tokens_per_second", float64(part.TokensPerSecond)),
		slog.Int("expected_members", b.cfg.ExpectedMembers))
	self, root := b.self, b.root
	if b.probe == nil {
		b.probe = time.AfterFunc(b.cfg.RejoinInterval, func() { root.Send(self, &probeTick{}) })
	} else {
		b.probe.Reset(b.cfg.RejoinInterval)
	}
	b.serveLocal(ctx, now)
}

// serveLocal grants the wanted lease from the local share, or retries when
// it can.
func (b *broker) serveLocal(ctx actor.Context, now time.Time) {
	if b.want == nil || b.joined {
		return
	}
	w := b.want
	requests, tokens, wait := b.local.grant(now, w.Requests, w.Tokens, w.MinTokens)
	if requests == 0 {
		self, root := b.self, b.root
		if b.retry == nil {
			b.retry = time.AfterFunc(wait, func() { root.Send(self, &localRetry{}) })
		} else {
			b.retry.Reset(wait)
		}
		return
	}
	b.localID++
	b.give(ctx, &actors.LeaseGranted{ID: localLease | b.localID, Requests: requests, Tokens: tokens, Expires: now.Add(b.ttl)})
}

// rejoin goes back to the service once it answers again.
func (b *broker) rejoin(ctx actor.Context, now time.Time) {
	b.joined = true
	b.probe.Stop()
	if b.retry != nil {
		b.retry.Stop()
	}
	b.logger.Info("lionactor: budget service reachable again; rejoined", slog.String("service", b.cfg.Address))
	if b.want != nil {
		b.ask(ctx, now)
	}
}

func (b *broker) unused(ctx actor.Context, m *actors.LeaseUnused, now time.Time) {
	switch {
	case m.ID&localLease != 0:
		if b.local != nil {
			b.local.refund(now, m.Requests, m.Tokens)
		}
	case b.joined:
		ctx.Request(b.service, &budgetpb.LeaseReturn{Key: b.cfg.Key, LeaseId: m.ID, Requests: m.Requests, Tokens: m.Tokens})
	}
}
