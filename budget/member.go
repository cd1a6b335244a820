package budget

import (
	"crypto/subtle"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"

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
	// service before falling back to its local share. A joined member
	// also speaks to the service at least every third of it, and the
	// service holds back its share once it has been silent for three
	// quarters of it. 0 means DefaultReplyTimeout.
	ReplyTimeout time.Duration
	// RejoinInterval is how often a member that fell back asks whether the
	// service is back. 0 means DefaultRejoinInterval.
	RejoinInterval time.Duration
	// ListenAddr is where this process's remote layer listens, for the
	// service's answers, if the executor's actor system has none started
	// (an executor from runtime.Start never has). "" means
	// DefaultListenAddr.
	ListenAddr string

	// Secret, if set, is the secret shared with the service (see
	// [Secret]): every message to the service then carries proof of it,
	// and answers without a valid proof are ignored. At least MinSecretLen
	// bytes; the service must have the same.
	Secret Secret
	// TLS, if set, makes this member talk to the service over mutual TLS
	// (see [TLSFiles]). It applies to the remote layer Attach starts; an
	// actor system with a remote layer already started is refused with it.
	TLS TLSFiles
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
	if err := c.Secret.check("SharedBudget.Secret"); err != nil {
		return err
	}
	if err := c.TLS.check("SharedBudget.TLS"); err != nil {
		return err
	}
	switch {
	case c.Key == "":
		return bad("Key", "must not be empty (use budget.KeyFor)")
	case !utf8.ValidString(c.Key):
		return bad("Key", "must be valid UTF-8")
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
	logger = logger.With(slog.String("component", "budget"))
	release := func() {}
	var watch *tlsWatch
	switch {
	case remoteOf(system) == nil:
		var opts []remote.ConfigOption
		if c.TLS.Enabled() {
			server, client, err := c.TLS.load("SharedBudget.TLS")
			if err != nil {
				return nil, nil, err
			}
			watch = &tlsWatch{}
			opts = remoteOptions(server, client, watch)
		}
		host, port, _ := splitAddr("ListenAddr", c.ListenAddr, true)
		r, err := startRemote(system, host, port, opts...)
		if err != nil {
			return nil, nil, err
		}
		release = func() { shutdownRemote(r) }
	case c.TLS.Enabled():
		return nil, nil, &messages.ConfigError{Field: "SharedBudget.TLS", Reason: "the actor system's remote layer is already started: give it TLS options (remote.WithServerOptions, remote.WithDialOptions) and leave TLS unset"}
	}
	return brokerProps(c, limits, logger, actor.NewPID(c.Address, ServiceName), watch), release, nil
}

// brokerProps returns the props of a broker that asks service for leases;
// cfg has its defaults applied. watch, if not nil, tells of TLS refusals.
func brokerProps(cfg MemberConfig, limits actors.Limits, logger *slog.Logger, service *actor.PID, watch *tlsWatch) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &broker{
			cfg: cfg, limits: limits, logger: logger, service: service, ttl: DefaultLeaseTTL,
			sealer: newSealer(cfg.Secret), watch: watch,
		}
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
	joined    bool
	reqID     uint64
	sentAt    time.Time
	heard     time.Time // when the service last said anything
	waitFor   *time.Timer
	lastSent  time.Time   // when this member last sent the service anything
	heartbeat *time.Timer // every heartbeatEvery()

	// Fallback mode.
	local   *bucket
	localID uint64
	retry   *time.Timer // next try of the local bucket
	probe   *time.Timer

	// Standing, for the executor's Stats.
	since              time.Time // of the current mode
	reason             string    // why it fell back
	fallbacks, rejoins int64

	// Proof of the secret, and refusals.
	sealer  *sealer   // nil without a secret
	watch   *tlsWatch // nil without TLS
	nonces  [64][]byte
	nextOut int    // where the next nonce goes in nonces
	problem string // the latest answer not believed, for the fallback log

	// A graceful stop's return of leases: done once the service answers
	// the Ping sent after them.
	flush      chan struct{}
	flushPing  uint64
	flushTimer *time.Timer
	pings      uint64
}

type replyCheck struct{ id uint64 }
type localRetry struct{}
type probeTick struct{}
type flushTimeout struct{}
type heartbeatTick struct{}

// Receive implements actor.Actor.
func (b *broker) Receive(ctx actor.Context) {
	now := time.Now()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		b.self, b.root = ctx.Self(), ctx.ActorSystem().Root
		b.joined, b.since = true, now // until the service proves otherwise
		b.report(ctx)
		self, root := b.self, b.root
		b.heartbeat = time.AfterFunc(b.heartbeatEvery(), func() { root.Send(self, &heartbeatTick{}) })
	case *heartbeatTick:
		// A member that has spoken for a while is known to the service,
		// which holds back its share once it is silent for long: say it
		// is still here.
		if b.joined && b.reqID > 0 && now.Sub(b.lastSent) >= b.heartbeatEvery() {
			b.tell(ctx, b.ping())
		}
		b.heartbeat.Reset(b.heartbeatEvery())
	case *actors.LeaseWanted:
		b.limiter, b.want = ctx.Sender(), m
		if b.joined {
			b.ask(ctx, now)
		} else {
			b.serveLocal(ctx, now)
		}
	case *budgetpb.Signed:
		b.signed(ctx, m, now)
	case *budgetpb.LeaseGrant, *budgetpb.Pong, *budgetpb.Pause:
		if b.sealer != nil {
			b.problem = "an answer came without proof of the shared secret (has the service none?)"
			return
		}
		b.fromService(ctx, m, now)
	case *budgetpb.Refused:
		b.refused(ctx, m, now)
	case *replyCheck:
		b.checkReply(ctx, m.id, now)
	case *localRetry:
		b.serveLocal(ctx, now)
	case *probeTick:
		b.tell(ctx, b.ping())
		b.probe.Reset(b.cfg.RejoinInterval)
	case *actor.DeadLetterResponse:
		// The service's address answers but has no service: as good as
		// silent. The reply check decides.
	case *actors.LeaseUnused:
		b.unused(ctx, m, now)
	case *actors.AdjustTokens:
		if b.joined {
			b.tell(ctx, &budgetpb.TokenAdjust{Key: b.cfg.Key, Delta: int64(m.Delta)})
		} else if b.local != nil {
			b.local.adjust(now, int64(m.Delta))
		}
	case *actors.PauseUntil:
		if b.local != nil {
			b.local.pause(m.Until)
		}
		if d := m.Until.Sub(now); d >= minSharedPause && b.joined {
			b.tell(ctx, &budgetpb.Pause{Key: b.cfg.Key, DurationNanos: int64(d)})
		}
	case *actors.SetLimits:
		b.limits = m.Limits
		if b.local != nil {
			b.local.setLimits(share(b.limits, b.cfg.ExpectedMembers), now)
		}
	case *actors.ReturnLeases:
		b.returnLeases(ctx, m)
	case *flushTimeout:
		b.endFlush()
	case *actor.Stopping:
		for _, t := range []*time.Timer{b.waitFor, b.retry, b.probe, b.heartbeat} {
			if t != nil {
				t.Stop()
			}
		}
		b.endFlush()
	}
}

// fromService handles an answer of the service, checked if the member has
// a secret.
func (b *broker) fromService(ctx actor.Context, m any, now time.Time) {
	b.heard, b.problem = now, ""
	switch m := m.(type) {
	case *budgetpb.LeaseGrant:
		b.granted(ctx, m, now)
	case *budgetpb.Pong:
		b.ttl = time.Duration(m.GetLeaseTtlNanos())
		if b.flush != nil && m.GetPingId() == b.flushPing {
			b.endFlush()
		}
		if !b.joined {
			b.rejoin(ctx, now)
		}
	case *budgetpb.Pause:
		until := now.Add(time.Duration(m.GetDurationNanos()))
		if b.local != nil {
			b.local.pause(until)
		}
		if b.limiter != nil {
			ctx.Send(b.limiter, &actors.SharedPause{Until: until})
		}
	}
}

// signed opens a signed answer; one that fails its proof is ignored.
func (b *broker) signed(ctx actor.Context, m *budgetpb.Signed, now time.Time) {
	if b.sealer == nil {
		b.problem = "a signed answer, but this member has no secret"
		return
	}
	inner, why := b.sealer.open(m, toMember, pidName(b.self), now)
	if why != "" {
		b.problem = "an answer failed its proof: " + string(why)
		return
	}
	b.fromService(ctx, inner, now)
}

// tell sends m to the service, signed if the member has a secret.
func (b *broker) tell(ctx actor.Context, m proto.Message) {
	b.lastSent = time.Now()
	if b.sealer == nil {
		ctx.Request(b.service, m)
		return
	}
	sm := b.sealer.seal(m, toService, pidName(b.self), b.lastSent)
	b.nonces[b.nextOut] = sm.GetNonce()
	b.nextOut = (b.nextOut + 1) % len(b.nonces)
	ctx.Request(b.service, sm)
}

// heartbeatEvery is how long a joined member stays silent at most: a third
// of its reply timeout. The service holds back its share once it has been
// silent for three quarters of it (see service.join), which leaves most of
// the difference for a late timer or a slow network.
func (b *broker) heartbeatEvery() time.Duration { return b.cfg.ReplyTimeout / 3 }

// ping is a new Ping, saying whether this member keeps to its local share.
func (b *broker) ping() *budgetpb.Ping {
	b.pings++
	return &budgetpb.Ping{Id: b.pings, Key: b.cfg.Key, LocalShare: !b.joined}
}

// refused handles the service's refusal of one of this member's messages:
// it falls back to its local share, and says why.
func (b *broker) refused(ctx actor.Context, m *budgetpb.Refused, now time.Time) {
	if !b.sentNonce(m.GetNonce()) {
		return // not a refusal of anything sent here: forged, or very late
	}
	reason := "refused by the service: " + shorten(m.GetReason())
	if b.joined {
		b.fallBack(ctx, now, reason)
		return
	}
	if reason != b.reason {
		b.reason = reason
		b.logger.Warn(refusedMsg, slog.String("service", b.cfg.Address), slog.String("reason", reason))
		b.report(ctx)
	}
}

// sentNonce reports whether nonce is that of a recent message of this
// member. A member without a secret signs nothing, and is refused with an
// empty nonce.
func (b *broker) sentNonce(nonce []byte) bool {
	if b.sealer == nil {
		return len(nonce) == 0
	}
	if len(nonce) == 0 {
		return false
	}
	for _, n := range b.nonces {
		if subtle.ConstantTimeCompare(n, nonce) == 1 {
			return true
		}
	}
	return false
}

// report tells the executor (the broker's parent) its standing.
func (b *broker) report(ctx actor.Context) {
	if ctx.Parent() == nil {
		return
	}
	ctx.Send(ctx.Parent(), &actors.BrokerState{
		Joined: b.joined, Since: b.since, Reason: b.reason, Fallbacks: b.fallbacks, Rejoins: b.rejoins,
	})
}

// returnLeases sees the leases the limiter gave back (just before m, in
// order) to the service: it pings the service after them and closes m.Done
// on the answer, which the service sends once it has the leases, or after
// ReplyTimeout. Grants that arrive from now on are given back at once.
func (b *broker) returnLeases(ctx actor.Context, m *actors.ReturnLeases) {
	b.want = nil
	if !b.joined || b.flush != nil {
		// Nothing went to the service, or a flush is under way. One
		// that fell back still says it leaves, so that the service stops
		// holding its share back, if the word gets there.
		if !b.joined && b.reqID > 0 {
			p := b.ping()
			p.Leaving = true
			b.tell(ctx, p)
		}
		close(m.Done)
		return
	}
	b.flush = m.Done
	p := b.ping()
	p.Leaving = true
	b.flushPing = p.GetId()
	b.tell(ctx, p)
	self, root := b.self, b.root
	b.flushTimer = time.AfterFunc(b.cfg.ReplyTimeout, func() { root.Send(self, &flushTimeout{}) })
}

func (b *broker) endFlush() {
	if b.flush == nil {
		return
	}
	close(b.flush)
	b.flush = nil
	b.flushTimer.Stop()
}

// ask sends the wanted lease to the service and arms the reply check.
func (b *broker) ask(ctx actor.Context, now time.Time) {
	b.reqID++
	b.sentAt = now
	b.send(ctx)
	b.armCheck(b.reqID)
}

func (b *broker) send(ctx actor.Context) {
	b.tell(ctx, &budgetpb.LeaseRequest{
		Key: b.cfg.Key, RequestId: b.reqID,
		Requests: b.want.Requests, Tokens: b.want.Tokens, MinTokens: b.want.MinTokens,
		Limits:          toWire(b.limits),
		ExpectedMembers: int64(b.cfg.ExpectedMembers), ReplyTimeoutNanos: int64(b.cfg.ReplyTimeout),
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
	b.fallBack(ctx, now, "")
}

func (b *broker) granted(ctx actor.Context, g *budgetpb.LeaseGrant, now time.Time) {
	if ttl := time.Duration(g.GetTtlNanos()); ttl > 0 {
		b.ttl = ttl
	}
	if !b.joined || b.want == nil || g.GetRequestId() != b.reqID {
		// A grant for a request given up on: give it back untouched.
		b.tell(ctx, &budgetpb.LeaseReturn{Key: b.cfg.Key, LeaseId: g.GetLeaseId(), Requests: g.GetRequests(), Tokens: g.GetTokens()})
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

// The broker's log lines when it falls back.
const (
	unreachableMsg = "lionactor: budget service unreachable; using the local share"
	refusedMsg     = "lionactor: budget service refused this member; using the local share"
)

// fallBack starts budgeting alone on the local share. reason says why if
// the service said so; otherwise the service did not answer in time, and
// the TLS layer or an answer not believed may tell more.
func (b *broker) fallBack(ctx actor.Context, now time.Time, reason string) {
	msg := refusedMsg
	if reason == "" {
		msg, reason = unreachableMsg, "no answer within "+b.cfg.ReplyTimeout.String()
		if r := b.watch.lastRefusal(); r != nil && r.at.After(b.heard) {
			reason = "TLS: " + r.reason
			if r.byPeer {
				msg, reason = refusedMsg, "the service refused this member's certificate: "+r.reason
			}
		} else if b.problem != "" {
			reason += "; " + b.problem
		}
	}
	b.joined, b.since, b.reason = false, now, reason
	b.fallbacks++
	part := share(b.limits, b.cfg.ExpectedMembers)
	b.local = newBucket(part, now)
	b.logger.Warn(msg,
		slog.String("service", b.cfg.Address),
		slog.String("reason", reason),
		slog.Float64("requests_per_second", float64(part.RequestsPerSecond)),
		slog.Float64("tokens_per_second", float64(part.TokensPerSecond)),
		slog.Int("expected_members", b.cfg.ExpectedMembers))
	b.report(ctx)
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
	b.joined, b.since, b.reason = true, now, ""
	b.rejoins++
	b.report(ctx)
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
		b.tell(ctx, &budgetpb.LeaseReturn{Key: b.cfg.Key, LeaseId: m.ID, Requests: m.Requests, Tokens: m.Tokens})
	}
}
