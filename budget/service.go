package budget

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/internal/selftimer"
	"github.com/lionactor/lionactor/messages"
)

// ServiceName is the name the budget service is spawned under: members
// reach it at the PID (address, ServiceName).
const ServiceName = "lionactor-budget"

// DefaultLeaseTTL is how long a lease stays valid unless ServiceConfig says
// otherwise.
const DefaultLeaseTTL = time.Second

// ServiceConfig configures a budget service. The zero value is usable.
type ServiceConfig struct {
	// LeaseTTL is how long a member may use a lease; what it has not used
	// by then it gives back, and what a dead member held is forgotten.
	// Shorter means less capacity held by members that stopped; longer
	// means fewer round trips. 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// MemberTimeout is how long a member may stay silent before the
	// service stops counting its limits and relaying pauses to it. 0 means
	// 10 × LeaseTTL.
	MemberTimeout time.Duration
	// Logger receives the service's logs; nil means quiet.
	Logger *slog.Logger

	// Secret, if set, is the secret the service shares with its members:
	// it then refuses every message without a valid proof of it (see
	// [Secret]) and signs its own. At least MinSecretLen bytes.
	Secret Secret
	// TLS, if set, makes [Listen] serve over mutual TLS: only processes
	// with a certificate signed by TLS.CA can connect. [NewService] refuses
	// it: give the remote layer you start TLS options yourself.
	TLS TLSFiles
	// Insecure lets [Listen] serve without TLS on an address other than
	// loopback, where anything that reaches it can connect. Without it,
	// Listen refuses such an address.
	Insecure bool
}

// Validate reports an invalid field as a *messages.ConfigError.
func (c ServiceConfig) Validate() error {
	switch {
	case c.LeaseTTL < 0:
		return &messages.ConfigError{Field: "LeaseTTL", Reason: "must not be negative"}
	case c.MemberTimeout < 0:
		return &messages.ConfigError{Field: "MemberTimeout", Reason: "must not be negative"}
	}
	if err := c.Secret.check("Secret"); err != nil {
		return err
	}
	return c.TLS.check("TLS")
}

func (c ServiceConfig) withDefaults() ServiceConfig {
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.MemberTimeout == 0 {
		c.MemberTimeout = 10 * c.LeaseTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ServiceStats is a snapshot of a service's state and counts.
type ServiceStats struct {
	Keys    int // budgets known
	Members int // members heard from within MemberTimeout, over all keys
	// Leases is the number of leases granted and not yet returned or
	// expired; LeasesByMember breaks it down by member, named
	// by its PID as address/id.
	Leases         int
	LeasesByMember map[string]int
	Waiting        int // lease requests waiting for budget
	// HeldBack is the number of members whose share of their key's limits
	// the service holds back: they said they keep to their local share, or
	// have been silent for longer than they wait for an answer.
	HeldBack int

	Granted, Returned, Expired int64 // leases
	GrantedRequests            int64 // requests in granted leases
	GrantedTokens              int64
	ReturnedRequests           int64 // unused requests given back
	ReturnedTokens             int64
	Pauses                     int64 // pauses that extended a key's pause

	// RefusedConnections counts the connections that failed the TLS
	// handshake (a server from Listen with TLS); RefusedMessages the
	// messages without a valid proof of the secret (a service with a
	// Secret), and signed messages to a service without one.
	RefusedConnections int64
	RefusedMessages    int64
}

// Service is a running budget service.
type Service struct {
	system *actor.ActorSystem
	pid    *actor.PID
	// refusedConns counts refused TLS handshakes, for a service that
	// Listen started with TLS; nil otherwise.
	refusedConns *atomic.Int64
}

// ErrServiceStopped is returned by Service methods after Stop.
var ErrServiceStopped = errors.New("budget: service stopped")

// NewService spawns a budget service in system under [ServiceName]. For
// members in other processes to reach it, system must have protoactor's
// remote layer started ([Listen] does both).
func NewService(system *actor.ActorSystem, cfg ServiceConfig) (*Service, error) {
	if cfg.TLS.Enabled() {
		return nil, &messages.ConfigError{Field: "TLS", Reason: "only Listen applies it: start your remote layer with TLS options (remote.WithServerOptions, remote.WithDialOptions)"}
	}
	return newService(system, cfg, nil)
}

func newService(system *actor.ActorSystem, cfg ServiceConfig, refusedConns *atomic.Int64) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Logger = cfg.Logger.With(slog.String("component", "budget"))
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &service{
			cfg: cfg, keys: map[string]*keyState{}, leases: map[uint64]*leaseRecord{},
			sealer:     newSealer(cfg.Secret),
			refusedLog: throttle{interval: time.Second},
			replies:    rate.NewLimiter(refusalReplies, refusalReplies),
		}
	}), ServiceName)
	if err != nil {
		return nil, fmt.Errorf("budget: spawning service: %w", err)
	}
	return &Service{system: system, pid: pid, refusedConns: refusedConns}, nil
}

// refusalReplies is how many Refused answers the service sends per second
// at most. A refused member learns why from one; a flood of bogus messages
// with made-up senders must not make the service connect out to every
// address they name.
const refusalReplies = 10

// PID is the service actor.
func (s *Service) PID() *actor.PID { return s.pid }

// Stats asks the service for its current state.
func (s *Service) Stats() (ServiceStats, error) {
	res, err := s.system.Root.RequestFuture(s.pid, &statsQuery{}, 5*time.Second).Result()
	if err != nil {
		return ServiceStats{}, fmt.Errorf("%w: %w", ErrServiceStopped, err)
	}
	st, ok := res.(*ServiceStats)
	if !ok {
		return ServiceStats{}, ErrServiceStopped
	}
	if s.refusedConns != nil {
		st.RefusedConnections = s.refusedConns.Load()
	}
	return *st, nil
}

// Stop stops the service actor. Leases already granted stay valid at their
// members until they expire.
func (s *Service) Stop() {
	_ = s.system.Root.PoisonFuture(s.pid).Wait()
}

type statsQuery struct{}

// keyTick wakes the service when a key's head lease request may be due.
type keyTick struct{ key string }

// sweepTick wakes the service to expire leases and forget silent members.
type sweepTick struct{}

// service is the actor: one bucket per key, each with a FIFO of lease
// requests, and the record of every lease granted and not yet returned or
// expired.
type service struct {
	cfg    ServiceConfig
	self   *actor.PID
	keys   map[string]*keyState
	leases map[uint64]*leaseRecord
	nextID uint64
	sweep  selftimer.Timer
	stats  ServiceStats

	sealer     *sealer // nil without a secret
	refusedLog throttle
	replies    *rate.Limiter // Refused answers
}

type keyState struct {
	name     string
	label    string // for logs: the endpoint, without the key's hash
	heldBack int    // members whose share is held back
	bucket   *bucket
	members  map[string]*memberState
	waiting  []waitingLease
	timer    selftimer.Timer
	tick     *keyTick // what its timer sends
}

type memberState struct {
	pid      *actor.PID
	limits   actors.Limits
	lastSeen time.Time
	// expected is how many members the member expects; quietAfter how long
	// it may stay silent before it could be keeping to its local share
	// (0: never, for a member that did not say); local is set while it says
	// it is.
	expected   int
	quietAfter time.Duration
	local      bool
}

type waitingLease struct {
	from *actor.PID
	req  *budgetpb.LeaseRequest
}

type leaseRecord struct {
	key              string
	member           string
	requests, tokens int64
	expires          time.Time
}

// Receive implements actor.Actor.
func (s *service) Receive(ctx actor.Context) {
	now := time.Now()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.self = ctx.Self()
		s.cfg.Logger.Info("budget service started", slog.String("pid", pidName(s.self)), slog.Duration("lease_ttl", s.cfg.LeaseTTL))
	case *budgetpb.Signed:
		s.signed(ctx, m, now)
	case *budgetpb.LeaseRequest, *budgetpb.LeaseReturn, *budgetpb.TokenAdjust, *budgetpb.Pause, *budgetpb.Ping:
		if s.sealer != nil {
			s.refuse(ctx, ctx.Sender(), m.(proto.Message), nil, refusedNoProof, now)
			return
		}
		s.handle(ctx, ctx.Sender(), m, now)
	case *keyTick:
		if k := s.keys[m.key]; k != nil {
			s.serve(ctx, k, now)
		}
	case *sweepTick:
		s.sweepNow(ctx, now)
	case *statsQuery:
		ctx.Respond(s.snapshot(now))
	case *actor.Stopping:
		for _, k := range s.keys {
			k.timer.Stop()
		}
		s.sweep.Stop()
	}
}

// signed opens a signed message and handles what it carries, or refuses
// it.
func (s *service) signed(ctx actor.Context, m *budgetpb.Signed, now time.Time) {
	from := ctx.Sender()
	if s.sealer == nil {
		s.refuse(ctx, from, m, m.GetNonce(), refusedNoSecret, now)
		return
	}
	if from == nil {
		s.refuse(ctx, nil, m, nil, refusedNoProof, now) // signed by nobody
		return
	}
	inner, why := s.sealer.open(m, toService, pidName(from), now)
	if why != "" {
		s.refuse(ctx, from, m, m.GetNonce(), why, now)
		return
	}
	s.handle(ctx, from, inner, now)
}

// handle serves a member's message, checked if the service has a secret.
func (s *service) handle(ctx actor.Context, from *actor.PID, m any, now time.Time) {
	switch m := m.(type) {
	case *budgetpb.LeaseRequest:
		s.lease(ctx, from, m, now)
	case *budgetpb.LeaseReturn:
		if k := s.keys[m.GetKey()]; k != nil {
			s.seen(k, from, now)
		}
		s.giveBack(m, now)
	case *budgetpb.TokenAdjust:
		if k := s.keys[m.GetKey()]; k != nil {
			s.seen(k, from, now)
			k.bucket.adjust(now, m.GetDelta())
			s.serve(ctx, k, now)
		}
	case *budgetpb.Pause:
		if k := s.keys[m.GetKey()]; k != nil {
			s.pause(ctx, k, from, time.Duration(m.GetDurationNanos()), now)
		}
	case *budgetpb.Ping:
		if k := s.keys[m.GetKey()]; k != nil {
			s.pinged(ctx, k, from, m, now)
		}
		s.send(ctx, from, &budgetpb.Pong{LeaseTtlNanos: int64(s.cfg.LeaseTTL), PingId: m.GetId()}, now)
	}
}

// pinged notes a member's word on its standing: still here, keeping to its
// local share, or leaving.
func (s *service) pinged(ctx actor.Context, k *keyState, from *actor.PID, m *budgetpb.Ping, now time.Time) {
	ms := s.seen(k, from, now)
	switch {
	case ms == nil:
		return
	case m.GetLeaving():
		delete(k.members, pidName(from))
		s.cfg.Logger.Info("budget: member left", slog.String("key", k.label), slog.String("member", pidName(from)))
	default:
		ms.local = m.GetLocalShare()
	}
	s.serve(ctx, k, now) // at the limits as they now are
}

// send sends m to a member, signed if the service has a secret.
func (s *service) send(ctx actor.Context, to *actor.PID, m proto.Message, now time.Time) {
	switch {
	case to == nil:
	case s.sealer != nil:
		ctx.Send(to, s.sealer.seal(m, toMember, pidName(to), now))
	default:
		ctx.Send(to, m)
	}
}

// refuse counts and logs a refused message, and tells its sender why if
// the service has not told too many already this second. The log is
// throttled too: a flood of bogus messages leaves one line a second, with
// the count of those not logged.
func (s *service) refuse(ctx actor.Context, from *actor.PID, m proto.Message, nonce []byte, why refusal, now time.Time) {
	s.stats.RefusedMessages++
	if ok, held := s.refusedLog.allow(now); ok {
		sender := "none"
		if from != nil {
			sender = shorten(pidName(from))
		}
		what := string(m.ProtoReflect().Descriptor().Name())
		if sm, ok := m.(*budgetpb.Signed); ok {
			what = "signed " + shorten(sm.GetType())
		}
		s.cfg.Logger.Warn("budget: refused a message",
			slog.String("from", sender), slog.String("message", what), slog.String("reason", string(why)),
			slog.Int64("refusals_not_logged", held))
	}
	if from != nil && s.replies.AllowN(now, 1) {
		ctx.Send(from, &budgetpb.Refused{Nonce: nonce, Reason: string(why)})
	}
}

// pidName names a PID the same way in every process: PID.String is
// protobuf's text form, which is not stable across binaries.
func pidName(pid *actor.PID) string { return pid.GetAddress() + "/" + pid.GetId() }

func (s *service) lease(ctx actor.Context, from *actor.PID, m *budgetpb.LeaseRequest, now time.Time) {
	if from == nil || m.GetKey() == "" {
		return // nowhere to send a grant, or no budget to take it from
	}
	limits := fromWire(m.GetLimits())
	k := s.keys[m.GetKey()]
	if k == nil {
		k = &keyState{name: m.GetKey(), label: keyLabel(m.GetKey(), len(s.keys)+1), members: map[string]*memberState{}, bucket: newBucket(limits, now)}
		s.keys[k.name] = k
		s.cfg.Logger.Info("budget: new key", slog.String("key", k.label))
	}
	s.join(k, from, m, limits, now)
	for _, w := range k.waiting {
		if w.req.GetRequestId() == m.GetRequestId() && w.from.Equal(from) {
			// A member asking again is checking that the service is
			// alive: tell it the request is still waiting.
			s.send(ctx, from, &budgetpb.Pong{LeaseTtlNanos: int64(s.cfg.LeaseTTL)}, now)
			return
		}
	}
	k.waiting = append(k.waiting, waitingLease{from: from, req: m})
	s.serve(ctx, k, now)
}

// join records a member's lease request: a member of k from now on (only
// a lease request makes one), with its limits and what it expects.
func (s *service) join(k *keyState, member *actor.PID, m *budgetpb.LeaseRequest, limits actors.Limits, now time.Time) {
	name := pidName(member)
	ms := k.members[name]
	if ms == nil {
		ms = &memberState{pid: member}
		k.members[name] = ms
		s.cfg.Logger.Info("budget: member joined", slog.String("key", k.label), slog.String("member", name))
	}
	ms.lastSeen, ms.local, ms.limits = now, false, limits
	ms.expected = int(clamp(m.GetExpectedMembers(), 0, maxExpected))
	// The member falls back once it has heard nothing for its reply
	// timeout after a request; its share is held back a little sooner,
	// before any answer could be late for it, and well after the
	// heartbeat it sends at a third of that timeout.
	ms.quietAfter = time.Duration(clamp(m.GetReplyTimeoutNanos(), 0, int64(time.Hour))) * 3 / 4
}

// maxExpected caps the members a member may say it expects.
const maxExpected = 1 << 16

// seen records that member spoke for k, and returns its state, or nil if
// it is not a member.
func (s *service) seen(k *keyState, member *actor.PID, now time.Time) *memberState {
	if member == nil {
		return nil
	}
	ms := k.members[pidName(member)]
	if ms != nil {
		ms.lastSeen, ms.local = now, false
	}
	return ms
}

// applyLimits sets k's bucket to the lowest limits of its members, less
// the shares of the members that may be keeping to their local shares
// instead: those that said so, and those silent for longer than they would
// wait for an answer. Without that, the members still joined would share
// the whole limit while the others spend their shares beside them. It
// returns with the bucket as of now.
func (s *service) applyLimits(k *keyState, now time.Time) {
	var l actors.Limits
	first := true
	expected, held := len(k.members), 0
	for _, ms := range k.members {
		if first {
			l, first = ms.limits, false
		} else {
			l = lowest(l, ms.limits)
		}
		expected = max(expected, ms.expected)
		if ms.local || (ms.quietAfter > 0 && now.Sub(ms.lastSeen) > ms.quietAfter) {
			held++
		}
	}
	if first {
		return
	}
	if held != k.heldBack {
		k.heldBack = held
		s.cfg.Logger.Info("budget: holding back the shares of members that may be on their own",
			slog.String("key", k.label), slog.Int("members", held), slog.Int("of", expected))
	}
	l = scaleLimits(l, max(expected-held, 1), expected)
	if l != k.bucket.limits {
		k.bucket.available(now) // settle credit at the old limits
		k.bucket.setLimits(l, now)
	}
}

// serve grants the waiting lease requests of k in order while the budget
// allows, and arms k's timer for the first it cannot.
func (s *service) serve(ctx actor.Context, k *keyState, now time.Time) {
	s.applyLimits(k, now)
	for len(k.waiting) > 0 {
		w := k.waiting[0]
		r := w.req
		requests, tokens, wait := k.bucket.grant(now, r.GetRequests(), r.GetTokens(), r.GetMinTokens())
		if requests == 0 {
			if k.tick == nil {
				k.tick = &keyTick{key: k.name}
			}
			k.timer.Arm(ctx, now, wait, k.tick)
			return
		}
		k.waiting[0] = waitingLease{}
		k.waiting = k.waiting[1:]
		s.nextID++
		id := s.nextID
		s.leases[id] = &leaseRecord{key: k.name, member: pidName(w.from), requests: requests, tokens: tokens, expires: now.Add(s.cfg.LeaseTTL)}
		s.stats.Granted++
		s.stats.GrantedRequests += requests
		s.stats.GrantedTokens += tokens
		s.send(ctx, w.from, &budgetpb.LeaseGrant{
			RequestId: r.GetRequestId(), LeaseId: id,
			Requests: requests, Tokens: tokens, TtlNanos: int64(s.cfg.LeaseTTL),
		}, now)
		if !s.sweep.Armed() {
			s.sweep.Arm(ctx, now, s.cfg.LeaseTTL/2, theSweep)
		}
	}
	if len(k.waiting) == 0 {
		k.waiting = nil
	}
}

// theSweep is the one message of the sweep timer.
var theSweep = &sweepTick{}

// sweepNow forgets expired leases and silent members; it re-arms itself
// while anything is left to watch.
func (s *service) sweepNow(ctx actor.Context, now time.Time) {
	for id, l := range s.leases {
		if !now.Before(l.expires) {
			delete(s.leases, id)
			s.stats.Expired++
		}
	}
	if s.sealer != nil {
		s.sealer.forget(now)
	}
	members := 0
	for _, k := range s.keys {
		for name, ms := range k.members {
			if now.Sub(ms.lastSeen) > s.cfg.MemberTimeout {
				delete(k.members, name)
				s.cfg.Logger.Info("budget: member gone quiet", slog.String("key", k.label), slog.String("member", pidName(ms.pid)))
			}
		}
		s.applyLimits(k, now)
		members += len(k.members)
	}
	if len(s.leases) > 0 || members > 0 {
		s.sweep.Arm(ctx, now, s.cfg.LeaseTTL/2, theSweep)
		return
	}
	s.sweep.Stop()
}

// giveBack credits the unused part of a lease to its key.
func (s *service) giveBack(m *budgetpb.LeaseReturn, now time.Time) {
	l := s.leases[m.GetLeaseId()]
	if l == nil || l.key != m.GetKey() {
		return // unknown (from before a restart) or already expired
	}
	delete(s.leases, m.GetLeaseId())
	requests, tokens := clamp(m.GetRequests(), 0, l.requests), clamp(m.GetTokens(), 0, l.tokens)
	s.stats.Returned++
	s.stats.ReturnedRequests += requests
	s.stats.ReturnedTokens += tokens
	if k := s.keys[l.key]; k != nil {
		k.bucket.refund(now, requests, tokens)
	}
}

// pause stops k's grants for d and tells k's other members.
func (s *service) pause(ctx actor.Context, k *keyState, from *actor.PID, d time.Duration, now time.Time) {
	s.seen(k, from, now)
	if d <= 0 || !k.bucket.pause(now.Add(d)) {
		return
	}
	s.stats.Pauses++
	s.cfg.Logger.Info("budget: key paused", slog.String("key", k.label), slog.Duration("for", d))
	for _, ms := range k.members {
		if from == nil || !ms.pid.Equal(from) {
			s.send(ctx, ms.pid, &budgetpb.Pause{Key: k.name, DurationNanos: int64(d)}, now)
		}
	}
}

func (s *service) snapshot(now time.Time) *ServiceStats {
	st := s.stats
	st.Keys = len(s.keys)
	st.Leases = len(s.leases)
	st.LeasesByMember = map[string]int{}
	for _, l := range s.leases {
		if now.Before(l.expires) {
			st.LeasesByMember[l.member]++
		} else {
			st.Leases--
		}
	}
	for _, k := range s.keys {
		st.Members += len(k.members)
		st.Waiting += len(k.waiting)
		st.HeldBack += k.heldBack
	}
	return &st
}

// keyLabel names key n in logs: its endpoint and number, never the hash of
// its API key.
func keyLabel(key string, n int) string {
	endpoint, _, _ := strings.Cut(key, "#")
	return fmt.Sprintf("%s (budget %d)", endpoint, n)
}
