package budget

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
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
}

// Validate reports an invalid field as a *messages.ConfigError.
func (c ServiceConfig) Validate() error {
	switch {
	case c.LeaseTTL < 0:
		return &messages.ConfigError{Field: "LeaseTTL", Reason: "must not be negative"}
	case c.MemberTimeout < 0:
		return &messages.ConfigError{Field: "MemberTimeout", Reason: "must not be negative"}
	}
	return nil
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
	// expired; LeasesByMember breaks it down by member (its PID).
	Leases         int
	LeasesByMember map[string]int
	Waiting        int // lease requests waiting for budget

	Granted, Returned, Expired int64 // leases
	GrantedRequests            int64 // requests in granted leases
	GrantedTokens              int64
	ReturnedRequests           int64 // unused requests given back
	ReturnedTokens             int64
	Pauses                     int64 // pauses that extended a key's pause
}

// Service is a running budget service.
type Service struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// ErrServiceStopped is returned by Service methods after Stop.
var ErrServiceStopped = errors.New("budget: service stopped")

// NewService spawns a budget service in system under [ServiceName]. For
// members in other processes to reach it, system must have protoactor's
// remote layer started ([Listen] does both).
func NewService(system *actor.ActorSystem, cfg ServiceConfig) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &service{cfg: cfg, keys: map[string]*keyState{}, leases: map[uint64]*leaseRecord{}}
	}), ServiceName)
	if err != nil {
		return nil, fmt.Errorf("budget: spawning service: %w", err)
	}
	return &Service{system: system, pid: pid}, nil
}

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
	root   *actor.RootContext
	keys   map[string]*keyState
	leases map[uint64]*leaseRecord
	nextID uint64
	sweep  *time.Timer
	stats  ServiceStats
}

type keyState struct {
	name    string
	bucket  *bucket
	members map[string]*memberState
	waiting []waitingLease
	timer   *time.Timer
}

type memberState struct {
	pid      *actor.PID
	limits   actors.Limits
	lastSeen time.Time
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
		s.self, s.root = ctx.Self(), ctx.ActorSystem().Root
		s.cfg.Logger.Info("budget service started", slog.String("pid", s.self.String()), slog.Duration("lease_ttl", s.cfg.LeaseTTL))
	case *budgetpb.LeaseRequest:
		s.lease(ctx, m, now)
	case *budgetpb.LeaseReturn:
		s.giveBack(m, now)
	case *budgetpb.TokenAdjust:
		if k := s.keys[m.GetKey()]; k != nil {
			s.seen(k, ctx.Sender(), nil, now)
			k.bucket.adjust(now, m.GetDelta())
			s.serve(ctx, k, now)
		}
	case *budgetpb.Pause:
		if k := s.keys[m.GetKey()]; k != nil {
			s.pause(ctx, k, ctx.Sender(), time.Duration(m.GetDurationNanos()), now)
		}
	case *budgetpb.Ping:
		s.respond(ctx, &budgetpb.Pong{LeaseTtlNanos: int64(s.cfg.LeaseTTL)})
	case *keyTick:
		if k := s.keys[m.key]; k != nil {
			s.serve(ctx, k, now)
		}
	case *sweepTick:
		s.sweepNow(now)
	case *statsQuery:
		s.respond(ctx, s.snapshot(now))
	case *actor.Stopping:
		for _, k := range s.keys {
			if k.timer != nil {
				k.timer.Stop()
			}
		}
		if s.sweep != nil {
			s.sweep.Stop()
		}
	}
}

func (s *service) respond(ctx actor.Context, m any) {
	if ctx.Sender() != nil {
		ctx.Respond(m)
	}
}

func (s *service) lease(ctx actor.Context, m *budgetpb.LeaseRequest, now time.Time) {
	from := ctx.Sender()
	if from == nil || m.GetKey() == "" {
		return // nowhere to send a grant, or no budget to take it from
	}
	limits := fromWire(m.GetLimits())
	k := s.keys[m.GetKey()]
	if k == nil {
		k = &keyState{name: m.GetKey(), members: map[string]*memberState{}, bucket: newBucket(limits, now)}
		s.keys[k.name] = k
		s.cfg.Logger.Info("budget: new key", slog.String("key", k.name))
	}
	s.seen(k, from, &limits, now)
	for _, w := range k.waiting {
		if w.req.GetRequestId() == m.GetRequestId() && w.from.Equal(from) {
			// A member asking again is checking that the service is
			// alive: tell it the request is still waiting.
			ctx.Send(from, &budgetpb.Pong{LeaseTtlNanos: int64(s.cfg.LeaseTTL)})
			return
		}
	}
	k.waiting = append(k.waiting, waitingLease{from: from, req: m})
	s.serve(ctx, k, now)
}

// seen records that member spoke for k, with its limits if it sent them,
// and applies the lowest limits of k's live members.
func (s *service) seen(k *keyState, member *actor.PID, limits *actors.Limits, now time.Time) {
	if member == nil {
		return
	}
	ms := k.members[member.String()]
	if ms == nil {
		if limits == nil {
			return // only a lease request makes a member
		}
		ms = &memberState{pid: member}
		k.members[member.String()] = ms
		s.cfg.Logger.Info("budget: member joined", slog.String("key", k.name), slog.String("member", member.String()))
	}
	ms.lastSeen = now
	if limits != nil && *limits != ms.limits {
		ms.limits = *limits
		s.applyLimits(k, now)
	}
}

func (s *service) applyLimits(k *keyState, now time.Time) {
	var l actors.Limits
	first := true
	for _, ms := range k.members {
		if first {
			l, first = ms.limits, false
			continue
		}
		l = lowest(l, ms.limits)
	}
	if !first && l != k.bucket.limits {
		k.bucket.available(now) // settle credit at the old limits
		k.bucket.setLimits(l, now)
	}
}

// serve grants the waiting lease requests of k in order while the budget
// allows, and arms k's timer for the first it cannot.
func (s *service) serve(ctx actor.Context, k *keyState, now time.Time) {
	for len(k.waiting) > 0 {
		w := k.waiting[0]
		r := w.req
		requests, tokens, wait := k.bucket.grant(now, r.GetRequests(), r.GetTokens(), r.GetMinTokens())
		if requests == 0 {
			s.arm(k, wait)
			return
		}
		k.waiting[0] = waitingLease{}
		k.waiting = k.waiting[1:]
		s.nextID++
		id := s.nextID
		s.leases[id] = &leaseRecord{key: k.name, member: w.from.String(), requests: requests, tokens: tokens, expires: now.Add(s.cfg.LeaseTTL)}
		s.stats.Granted++
		s.stats.GrantedRequests += requests
		s.stats.GrantedTokens += tokens
		ctx.Send(w.from, &budgetpb.LeaseGrant{
			RequestId: r.GetRequestId(), LeaseId: id,
			Requests: requests, Tokens: tokens, TtlNanos: int64(s.cfg.LeaseTTL),
		})
		s.armSweep()
	}
	if len(k.waiting) == 0 {
		k.waiting = nil
	}
}

func (s *service) arm(k *keyState, wait time.Duration) {
	if k.timer == nil {
		self, root, key := s.self, s.root, k.name
		k.timer = time.AfterFunc(wait, func() { root.Send(self, &keyTick{key: key}) })
		return
	}
	k.timer.Reset(wait)
}

func (s *service) armSweep() {
	if s.sweep == nil {
		self, root := s.self, s.root
		s.sweep = time.AfterFunc(s.cfg.LeaseTTL/2, func() { root.Send(self, &sweepTick{}) })
	}
}

// sweepNow forgets expired leases and silent members; it re-arms itself
// while anything is left to watch.
func (s *service) sweepNow(now time.Time) {
	for id, l := range s.leases {
		if !now.Before(l.expires) {
			delete(s.leases, id)
			s.stats.Expired++
		}
	}
	members := 0
	for _, k := range s.keys {
		for name, ms := range k.members {
			if now.Sub(ms.lastSeen) > s.cfg.MemberTimeout {
				delete(k.members, name)
				s.cfg.Logger.Info("budget: member gone quiet", slog.String("key", k.name), slog.String("member", name))
				s.applyLimits(k, now)
			}
		}
		members += len(k.members)
	}
	if len(s.leases) > 0 || members > 0 {
		s.sweep.Reset(s.cfg.LeaseTTL / 2)
		return
	}
	s.sweep = nil
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
	s.seen(k, from, nil, now)
	if d <= 0 || !k.bucket.pause(now.Add(d)) {
		return
	}
	s.stats.Pauses++
	s.cfg.Logger.Info("budget: key paused", slog.String("key", k.name), slog.Duration("for", d))
	for _, ms := range k.members {
		if from == nil || !ms.pid.Equal(from) {
			ctx.Send(ms.pid, &budgetpb.Pause{Key: k.name, DurationNanos: int64(d)})
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
	}
	return &st
}
