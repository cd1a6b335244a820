package budget

import (
	"crypto/subtle"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/internal/selftimer"
)

// serviceName names the budget service in a member's log lines.
const serviceName = "budget service"

// serviceBackend reaches the budget service at a PID, over protoactor's
// remote layer (or locally, in tests). Messages to the service are one way:
// its answers arrive in the broker's mailbox, which hands them here. So
// this backend tells for itself when the service is silent: a lease request
// unanswered for ReplyTimeout is sent again if the service has said
// anything since (it answers a repeated request with a Pong while the
// budget is short), and otherwise reported down. Joined, it speaks at
// least every third of ReplyTimeout, so that the service holds back the
// share of a member silent for longer.
type serviceBackend struct {
	cfg     MemberConfig
	service *actor.PID
	self    *actor.PID
	ttl     time.Duration // lease lifetime, as the service last said
	// local is set while the broker keeps to its local share: this
	// backend said the service was down, and has not yet said it is up.
	local bool

	// The lease request out.
	ask      uint64
	want     actors.LeaseWanted
	limits   actors.Limits
	asking   bool
	sentAt   time.Time // when it was first sent
	check    selftimer.Timer
	heard    time.Time // when the service last said anything
	lastSent time.Time // when this member last sent the service anything
	spoke    bool      // a lease request went out: the service knows this member
	beat     selftimer.Timer
	pings    uint64
	flushFor uint64 // the Ping whose Pong says the returned leases are in

	// Proof of the secret, and refusals.
	sealer  *sealer   // nil without a secret
	watch   *tlsWatch // nil without TLS
	nonces  [64][]byte
	nextOut int    // where the next nonce goes in nonces
	problem string // the latest answer not believed, for the fallback log
}

func newServiceBackend(cfg MemberConfig, service *actor.PID, watch *tlsWatch) *serviceBackend {
	return &serviceBackend{cfg: cfg, service: service, ttl: DefaultLeaseTTL, sealer: newSealer(cfg.Secret), watch: watch}
}

type replyCheck struct{ ask uint64 }
type heartbeatTick struct{}

var theHeartbeat = &heartbeatTick{}

func (s *serviceBackend) name() string     { return serviceName }
func (s *serviceBackend) where() slog.Attr { return slog.String("service", s.cfg.Address) }

func (s *serviceBackend) start(ctx actor.Context) {
	s.self = ctx.Self()
	s.beat.Arm(ctx, time.Now(), s.heartbeatEvery(), theHeartbeat)
}

func (s *serviceBackend) stop() {
	s.check.Stop()
	s.beat.Stop()
}

func (s *serviceBackend) lease(ctx actor.Context, ask uint64, want actors.LeaseWanted, limits actors.Limits) {
	s.ask, s.want, s.limits, s.asking = ask, want, limits, true
	s.sentAt = time.Now()
	s.spoke = true
	s.sendLease(ctx)
}

func (s *serviceBackend) sendLease(ctx actor.Context) {
	s.tell(ctx, &budgetpb.LeaseRequest{
		Key: s.cfg.Key, RequestId: s.ask,
		Requests: s.want.Requests, Tokens: s.want.Tokens, MinTokens: s.want.MinTokens,
		Limits:          toWire(s.limits),
		ExpectedMembers: int64(s.cfg.ExpectedMembers), ReplyTimeoutNanos: int64(s.cfg.ReplyTimeout),
	})
	s.check.Arm(ctx, time.Now(), s.cfg.ReplyTimeout, &replyCheck{ask: s.ask})
}

func (s *serviceBackend) giveBack(ctx actor.Context, id uint64, requests, tokens int64) {
	s.tell(ctx, &budgetpb.LeaseReturn{Key: s.cfg.Key, LeaseId: id, Requests: requests, Tokens: tokens})
}

func (s *serviceBackend) adjust(ctx actor.Context, delta int64) {
	s.tell(ctx, &budgetpb.TokenAdjust{Key: s.cfg.Key, Delta: delta})
}

func (s *serviceBackend) pause(ctx actor.Context, until time.Time) {
	s.tell(ctx, &budgetpb.Pause{Key: s.cfg.Key, DurationNanos: int64(time.Until(until))})
}

func (s *serviceBackend) probe(ctx actor.Context) { s.tell(ctx, s.ping()) }

// leave says so to the service; with wait, the service's Pong to it says
// the leases returned before it are in. A member that never spoke to the
// service and need not wait has nothing to say.
func (s *serviceBackend) leave(ctx actor.Context, wait bool) {
	s.asking = false
	if !wait && !s.spoke {
		return
	}
	p := s.ping()
	p.Leaving = true
	if wait {
		s.flushFor = p.GetId()
	}
	s.tell(ctx, p)
}

func (s *serviceBackend) receive(ctx actor.Context, m any) {
	switch m := m.(type) {
	case *budgetpb.Signed:
		s.signed(ctx, m)
	case *budgetpb.LeaseGrant, *budgetpb.Pong, *budgetpb.Pause:
		if s.sealer != nil {
			s.problem = "an answer came without proof of the shared secret (has the service none?)"
			return
		}
		s.fromService(ctx, m)
	case *budgetpb.Refused:
		s.refused(ctx, m)
	case *replyCheck:
		s.checkReply(ctx, m.ask)
	case *heartbeatTick:
		s.heartbeat(ctx)
	}
}

// fromService handles an answer of the service, checked if the member has
// a secret.
func (s *serviceBackend) fromService(ctx actor.Context, m any) {
	now := time.Now()
	s.heard, s.problem = now, ""
	switch m := m.(type) {
	case *budgetpb.LeaseGrant:
		if ttl := time.Duration(m.GetTtlNanos()); ttl > 0 {
			s.ttl = ttl
		}
		if s.asking && m.GetRequestId() == s.ask {
			s.asking = false
			s.check.Stop()
		}
		ctx.Send(s.self, &leaseAnswer{ask: m.GetRequestId(), lease: actors.LeaseGranted{
			ID: m.GetLeaseId(), Requests: m.GetRequests(), Tokens: m.GetTokens(),
			// From when it was asked for: the member's clock stays on the
			// safe side of the service's whatever the delay.
			Expires: s.sentAt.Add(s.ttl),
		}})
	case *budgetpb.Pong:
		if ttl := time.Duration(m.GetLeaseTtlNanos()); ttl > 0 {
			s.ttl = ttl
		}
		if s.flushFor != 0 && m.GetPingId() == s.flushFor {
			s.flushFor = 0
			ctx.Send(s.self, &flushed{})
		}
		if s.local {
			s.local = false
			ctx.Send(s.self, &budgetUp{})
		}
	case *budgetpb.Pause:
		ctx.Send(s.self, &pauseShared{until: now.Add(time.Duration(m.GetDurationNanos()))})
	}
}

// signed opens a signed answer; one that fails its proof is ignored.
func (s *serviceBackend) signed(ctx actor.Context, m *budgetpb.Signed) {
	if s.sealer == nil {
		s.problem = "a signed answer, but this member has no secret"
		return
	}
	inner, why := s.sealer.open(m, toMember, pidName(s.self), time.Now())
	if why != "" {
		s.problem = "an answer failed its proof: " + string(why)
		return
	}
	s.fromService(ctx, inner)
}

// tell sends m to the service, signed if the member has a secret.
func (s *serviceBackend) tell(ctx actor.Context, m proto.Message) {
	s.lastSent = time.Now()
	if s.sealer == nil {
		ctx.Request(s.service, m)
		return
	}
	sm := s.sealer.seal(m, toService, pidName(s.self), s.lastSent)
	s.nonces[s.nextOut] = sm.GetNonce()
	s.nextOut = (s.nextOut + 1) % len(s.nonces)
	ctx.Request(s.service, sm)
}

// heartbeatEvery is how long a joined member stays silent at most: a third
// of its reply timeout. The service holds back its share once it has been
// silent for three quarters of it (see service.join), which leaves most of
// the difference for a late timer or a slow network.
func (s *serviceBackend) heartbeatEvery() time.Duration { return s.cfg.ReplyTimeout / 3 }

// heartbeat says this member is still here, if it has been silent for a
// while: a member that has spoken is known to the service, which holds back
// its share once it is silent for long.
func (s *serviceBackend) heartbeat(ctx actor.Context) {
	now := time.Now()
	if !s.local && s.spoke && now.Sub(s.lastSent) >= s.heartbeatEvery() {
		s.tell(ctx, s.ping())
	}
	s.beat.Arm(ctx, now, s.heartbeatEvery(), theHeartbeat)
}

// ping is a new Ping, saying whether this member keeps to its local share.
func (s *serviceBackend) ping() *budgetpb.Ping {
	s.pings++
	return &budgetpb.Ping{Id: s.pings, Key: s.cfg.Key, LocalShare: s.local}
}

// checkReply runs ReplyTimeout after a lease request was sent: if the
// service said anything since, it is alive but the budget is short, so ask
// again; otherwise it is down.
func (s *serviceBackend) checkReply(ctx actor.Context, ask uint64) {
	if !s.asking || ask != s.ask || s.local {
		return // answered, or overtaken
	}
	if s.heard.After(time.Now().Add(-s.cfg.ReplyTimeout)) {
		s.sendLease(ctx)
		return
	}
	s.down(ctx, s.silence())
}

// silence says why the service did not answer: the TLS layer, or an answer
// not believed, may tell more than the silence. A certificate the service
// refused is a refusal.
func (s *serviceBackend) silence() *budgetDown {
	reason := "no answer within " + s.cfg.ReplyTimeout.String()
	if r := s.watch.lastRefusal(); r != nil && r.at.After(s.heard) {
		if r.byPeer {
			return &budgetDown{reason: "the service refused this member's certificate: " + r.reason, refused: true}
		}
		return &budgetDown{reason: "TLS: " + r.reason}
	}
	if s.problem != "" {
		reason += "; " + s.problem
	}
	return &budgetDown{reason: reason}
}

// down tells the broker the service cannot be used.
func (s *serviceBackend) down(ctx actor.Context, why *budgetDown) {
	s.local, s.asking = true, false
	s.check.Stop()
	ctx.Send(s.self, why)
}

// refused handles the service's refusal of one of this member's messages.
func (s *serviceBackend) refused(ctx actor.Context, m *budgetpb.Refused) {
	if !s.sentNonce(m.GetNonce()) {
		return // not a refusal of anything sent here: forged, or very late
	}
	s.down(ctx, &budgetDown{reason: "refused by the service: " + shorten(m.GetReason()), refused: true})
}

// sentNonce reports whether nonce is that of a recent message of this
// member. A member without a secret signs nothing, and is refused with an
// empty nonce.
func (s *serviceBackend) sentNonce(nonce []byte) bool {
	if s.sealer == nil {
		return len(nonce) == 0
	}
	if len(nonce) == 0 {
		return false
	}
	for _, n := range s.nonces {
		if subtle.ConstantTimeCompare(n, nonce) == 1 {
			return true
		}
	}
	return false
}
