package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// A Router spreads the requests of model groups over deployments: one
// model name served by several keys, endpoints or providers, each at its
// own limits. Each deployment is an [Executor] of its own (its limiter,
// queue and callers), spawned under the router's actor, which owns every
// routed request from its acceptance to its terminal snapshot:
//
//   - it routes each attempt to the deployment of the request's group that
//     can start it soonest, by that deployment's next permit
//     ([actors.Tree.PermitDue]) and the attempts it already holds, so that
//     load follows the budget each deployment has left rather than a
//     round robin; weights break ties;
//   - it keeps each deployment fed a little ahead of its permits (about
//     RouterConfig.Lookahead of them) and holds the rest itself, so that a
//     request is given to a deployment only when it can soon start there,
//     with the latest word on that deployment's health;
//   - a failing deployment is taken out for a while: a circuit breaker
//     per deployment (failsafe-go's) opens after FailureThreshold attempts
//     in a row that failed for the deployment's sake (a server or
//     connection error, an overload), or at once on one that says the
//     deployment cannot serve at all (out of quota, a refused key), and lets
//     one probe through after BreakerDelay;
//   - an attempt that fails with an error another deployment may not meet
//     goes at once to another deployment of the group, then to the groups
//     of RouterConfig.Fallbacks in order, within the request's attempts;
//     once all were tried it waits out the request's backoff and starts
//     over;
//   - a request keeps one ID and one gap-free sequence of snapshots
//     across deployments, each naming the deployment and model of its
//     attempt (messages.Event.Deployment and Model).
//
// The attempt at a deployment is a request of its own there, of one
// attempt, built for that deployment by the request's [Builder]: a
// deployment of another provider gets a request in its own dialect.
// While it runs, its snapshots drive the routed request's (PROCESSING and
// CALLING, at the deployment's instants); its end comes back to the
// router, which decides what follows.
//
// A Router gives the same promises as an Executor: every request it
// accepts reaches exactly one terminal snapshot, whatever stops or cancels
// around it. Create one with [StartRouter] or [SpawnRouter]; its methods
// are safe for concurrent use. Other actors drive it with [RoutedSubmit],
// messages.Cancel and messages.StatsQuery sent to its PID.
type Router struct {
	cfg       RouterConfig
	system    *actor.ActorSystem
	ownSystem bool
	pid       *actor.PID
	state     *routerState // the actor's, whatever its incarnation
	deps      []*deployment
	byName    map[string]*deployment
	groups    map[string]*group
	slots     chan struct{} // queue admission: one per request waiting in the router
	counts    routerCounts
	watches   watches // cancels routed requests whose submit context is done

	// mu orders submissions against the start of a stop, as Executor's
	// does: a submit that passed the running check has its request in the
	// actor's mailbox before the stop's drain or abort, and in live before
	// the actor's end takes it.
	mu       sync.RWMutex
	stopping bool
	stopCh   chan struct{} // closed when a stop begins
	stopped  chan struct{} // closed once the router's actor has stopped
	cleaned  chan struct{} // closed once everything the router started has ended
	shutdown sync.Once

	// live holds the requests Submit accepted that have not ended. The
	// actor owns them from their enqueue on; if it stops before reading
	// the enqueue, its end ends them (routerState.stopped).
	liveMu sync.Mutex
	live   map[*entry]struct{}
}

// RouterConfig configures a [Router]. Start from [DefaultRouterConfig].
type RouterConfig struct {
	// Deployments are where requests go; at least one. Their groups are
	// the model names requests ask for.
	Deployments []Deployment
	// Fallbacks lists, for a group, the groups whose deployments take its
	// requests, in order, once every deployment of the group has failed
	// them (or is out with an open breaker). Each group named must have
	// deployments.
	Fallbacks map[string][]string

	// QueueCapacity bounds the requests waiting in the router for a
	// deployment (not those out at one, nor those backing off).
	QueueCapacity int
	// WaitForRoom makes Submit wait for room while its context allows,
	// instead of failing at once with ErrQueueFull.
	WaitForRoom bool

	// MaxAttempts and Retry are the attempts and backoff of a request
	// whose built request sets none; the request built first (at submit)
	// decides them for all its attempts, wherever they go. Retry is waited
	// out only once every deployment a request may go to has failed it;
	// nil fails the request then.
	MaxAttempts int
	Retry       messages.RetryPolicy
	// Classify sorts the error of a failed attempt (see Verdict); nil means
	// [DefaultClassify].
	Classify func(error) Verdict

	// FailureThreshold is how many attempts in a row must fail for a
	// deployment's sake (VerdictUnhealthy) to open its breaker.
	FailureThreshold int
	// BreakerDelay is how long an open breaker keeps its deployment out
	// before it lets one probe through (half-open): a success closes it,
	// a failure opens it again.
	BreakerDelay time.Duration
	// Lookahead is how far ahead of its permits a deployment is given
	// requests: each holds about Lookahead × its request rate of them
	// (at least 2) waiting at it, and a request is held in the router
	// while the soonest deployment could start it only later than this.
	Lookahead time.Duration

	// SpendCap, if set, bounds what the routed requests cost, wherever
	// they go, as Config.SpendCap bounds an executor's: Submit reserves
	// the estimated cost of the request built first
	// (messages.Request.EstimatedCost), refuses the one that would pass
	// the cap (*messages.SpendCapError, ErrSpendCap) or has no price
	// (ErrPriceUnknown), and the request's actual cost, summed over its
	// attempts at their deployments' prices, settles it when it ends.
	// The deployments' own Config.SpendCap must be nil: one cap counts
	// each request once.
	SpendCap *SpendCap

	// Observer, if set, is called with every snapshot of every routed
	// request, in order per request; as Config.Observer, it must be fast,
	// safe for concurrent use, and never block. It runs on the router's
	// and its deployments' goroutines.
	Observer func(messages.Event)
	// RequestContext is Config.RequestContext for routed requests: its
	// context's values reach every attempt's call, at any deployment.
	RequestContext func(ctx context.Context, pending messages.Event) context.Context
	// Logger receives the router's logs (breakers opening and closing)
	// and its deployments'; nil means quiet.
	Logger *slog.Logger
}

// Deployment is one place a router sends a group's requests: an endpoint
// with its own limits, run by an executor of its own.
type Deployment struct {
	// Name is unique among the router's deployments; snapshots, stats and
	// logs show it.
	Name string
	// Group is the model group the deployment serves: the name requests
	// ask for.
	Group string
	// Model is what the deployment calls the model, shown in snapshots;
	// "" means Group.
	Model string
	// Weight breaks ties between deployments that could start a request
	// as soon as each other: they take turns in proportion to their
	// weights. 0 means 1.
	Weight int
	// Config is the deployment's executor: its limits, callers, timeout
	// and shared budget. The router sets its QueueCapacity, WaitForRoom,
	// MaxAttempts, Retry, Observer, RequestContext and Logger.
	Config Config
}

// DefaultRouterConfig returns the defaults for the given deployments: a
// queue of 1000, 3 attempts without backoff, breakers that open after 3
// failures in a row for 10 s, and a lookahead of 100 ms.
func DefaultRouterConfig(deployments ...Deployment) RouterConfig {
	return RouterConfig{
		Deployments:      deployments,
		QueueCapacity:    1000,
		MaxAttempts:      3,
		FailureThreshold: 3,
		BreakerDelay:     10 * time.Second,
		Lookahead:        100 * time.Millisecond,
	}
}

// Validate reports the first invalid field as a *messages.ConfigError; a
// deployment's fields are named by their place ("Deployments[1].Name",
// "Deployments[2].Config.Concurrency").
func (c RouterConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &messages.ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(c.Deployments) == 0:
		return bad("Deployments", "at least one is required")
	case c.QueueCapacity <= 0:
		return bad("QueueCapacity", "must be positive")
	case c.MaxAttempts <= 0:
		return bad("MaxAttempts", "must be positive")
	case c.FailureThreshold <= 0:
		return bad("FailureThreshold", "must be positive")
	case c.BreakerDelay <= 0:
		return bad("BreakerDelay", "must be positive")
	case c.Lookahead <= 0:
		return bad("Lookahead", "must be positive")
	}
	names := map[string]int{}
	groups := map[string]bool{}
	for i, d := range c.Deployments {
		field := fmt.Sprintf("Deployments[%d].", i)
		switch {
		case d.Name == "":
			return bad(field+"Name", "required")
		case d.Group == "":
			return bad(field+"Group", "required")
		case d.Weight < 0:
			return bad(field+"Weight", "must not be negative")
		}
		if j, dup := names[d.Name]; dup {
			return bad(field+"Name", "%q is also the name of deployment %d", d.Name, j)
		}
		names[d.Name] = i
		groups[d.Group] = true
		if d.Config.SpendCap != nil {
			return bad(field+"Config.SpendCap", "a router's deployments take no spend cap of their own: give it in RouterConfig.SpendCap, which counts each request once")
		}
		ec := d.Config
		ec.QueueCapacity, ec.MaxAttempts = 1, 1 // the router's to set
		if err := ec.Validate(); err != nil {
			var ce *messages.ConfigError
			if errors.As(err, &ce) {
				return bad(field+"Config."+ce.Field, "%s", ce.Reason)
			}
			return err
		}
	}
	for g, to := range c.Fallbacks {
		if !groups[g] {
			return bad("Fallbacks", "%q has no deployment", g)
		}
		for _, f := range to {
			switch {
			case !groups[f]:
				return bad("Fallbacks", "%q falls back to %q, which has no deployment", g, f)
			case f == g:
				return bad("Fallbacks", "%q falls back to itself", g)
			}
		}
	}
	return nil
}

// Verdict sorts the error of a failed attempt: what it says of the
// request and of the deployment that refused it.
type Verdict int

// The verdicts.
const (
	// VerdictFatal: the request's own fault, which no deployment would
	// answer otherwise (a bad request, a cancel, a stream that broke after
	// its text was sent). The request fails.
	VerdictFatal Verdict = iota + 1
	// VerdictBusy: the deployment is sound but could not take the request
	// now (a rate limit; its limiter pauses). Another deployment may.
	VerdictBusy
	// VerdictUnhealthy: the deployment failed (a server or connection
	// error, an overload, a timeout). Another deployment may do better;
	// FailureThreshold of these in a row open its breaker.
	VerdictUnhealthy
	// VerdictDown: the deployment cannot serve at all (out of quota, a
	// key refused): its breaker opens at once.
	VerdictDown
)

// String names the verdict.
func (v Verdict) String() string {
	switch v {
	case VerdictFatal:
		return "fatal"
	case VerdictBusy:
		return "busy"
	case VerdictUnhealthy:
		return "unhealthy"
	case VerdictDown:
		return "down"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// DefaultClassify is the Classify of a router that sets none: a cancel,
// a stop or an invalid request is fatal; an error that says its own
// verdict (a Verdict() Verdict method, as imodel's APIError has: a 429
// busy, a quota or key refused down, a 400 fatal) has it; an error asking
// for a pause (a messages.PauseError with a time) is busy; any other is
// unhealthy.
func DefaultClassify(err error) Verdict {
	if errors.Is(err, messages.ErrCancelled) || errors.Is(err, messages.ErrStopped) ||
		errors.Is(err, messages.ErrInvalidRequest) || errors.Is(err, messages.ErrTokensExceedBurst) {
		return VerdictFatal
	}
	var says interface{ Verdict() Verdict }
	if errors.As(err, &says) {
		if v := says.Verdict(); v != 0 {
			return v
		}
	}
	var pause messages.PauseError
	if errors.As(err, &pause) && !pause.PauseUntil().IsZero() {
		return VerdictBusy
	}
	return VerdictUnhealthy
}

// A Builder makes the request of one attempt at a deployment, named by
// Deployment.Name, as that deployment must receive it: its endpoint, key,
// dialect and token estimate. A router calls it at most once per
// deployment per request (it keeps what it built), on the submitting
// goroutine for the first and on its own for the others, never two at
// once. A request it cannot build for a deployment (an error, or tokens
// beyond that deployment's token bucket) goes to the others. The request
// it makes is sent as one attempt: its MaxAttempts and Retry are read from
// the request built first, for the routed request as a whole.
type Builder func(deployment string) (messages.Request, error)

// RoutedSubmit asks a router to run a request of Group, built by Build
// for each deployment it tries. Send it to Router.PID with a sender: the
// router replies with every snapshot of the request, the first being
// PENDING and the last terminal, or with a single messages.Rejected,
// as an executor answers messages.Submit.
type RoutedSubmit struct {
	// ID names the request; the zero UUID asks the router to choose one.
	ID    uuid.UUID
	Group string
	Build Builder
}

// ErrUnknownGroup is returned at submit for a request of a model group
// that no deployment serves. It matches messages.ErrInvalidRequest too.
var ErrUnknownGroup = errors.New("lionactor: no deployment serves this model")

type unknownGroupError string

func (g unknownGroupError) Error() string {
	return fmt.Sprintf("%v: %q", ErrUnknownGroup, string(g))
}

func (g unknownGroupError) Is(target error) bool {
	return target == ErrUnknownGroup || target == messages.ErrInvalidRequest
}

// ErrNoDeployment ends a request that no deployment it may go to can
// take: each was tried, cannot serve it (a build error, too many tokens)
// or has stopped. The last attempt's error, if any, is wrapped with it.
var ErrNoDeployment = errors.New("lionactor: no deployment left to try")

// StartRouter validates cfg and starts a router, with its deployments'
// executors, in an actor system of its own, which is shut down when the
// router stops.
func StartRouter(cfg RouterConfig) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.logger()
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	return spawnRouter(system.Root, system, true, cfg)
}

// SpawnRouter validates cfg and spawns a router inside an existing actor
// system, as a child of parent, as [Spawn] spawns an executor: if the
// parent stops or restarts it, the router stops, and every request it
// accepted has ended by the time the parent's stop has completed.
func SpawnRouter(parent actor.SpawnerContext, cfg RouterConfig) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if parent == nil {
		return nil, &messages.ConfigError{Field: "parent", Reason: "nil SpawnerContext"}
	}
	return spawnRouter(parent, parent.ActorSystem(), false, cfg)
}

func (c RouterConfig) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c RouterConfig) classify(err error) Verdict {
	if c.Classify != nil {
		return c.Classify(err)
	}
	return DefaultClassify(err)
}

func spawnRouter(parent actor.SpawnerContext, system *actor.ActorSystem, ownSystem bool, cfg RouterConfig) (*Router, error) {
	rt := &Router{
		cfg:       cfg,
		system:    system,
		ownSystem: ownSystem,
		byName:    map[string]*deployment{},
		groups:    map[string]*group{},
		slots:     make(chan struct{}, cfg.QueueCapacity),
		stopCh:    make(chan struct{}),
		stopped:   make(chan struct{}),
		cleaned:   make(chan struct{}),
		live:      map[*entry]struct{}{},
	}
	for i, d := range cfg.Deployments {
		dep := newDeployment(i, d, cfg)
		rt.deps = append(rt.deps, dep)
		rt.byName[d.Name] = dep
		g := rt.groups[d.Group]
		if g == nil {
			g = &group{name: d.Group}
			rt.groups[d.Group] = g
		}
		g.deps = append(g.deps, dep)
	}
	rt.state = newRouterState(rt)
	ready := make(chan error, 1)
	mailbox, dropped := routerMailbox()
	rt.state.mailbox = dropped
	incarnations := 0 // the producer runs on the actor's goroutine, one call at a time
	props := actor.PropsFromProducer(func() actor.Actor {
		incarnations++
		return &routerActor{rs: rt.state, ready: ready, restarted: incarnations > 1}
	}, mailbox)
	rt.pid = parent.SpawnPrefix(props, "lionactor-router")
	select {
	case err := <-ready:
		if err == nil {
			return rt, nil
		}
		<-rt.cleaned
		return nil, err
	case <-rt.cleaned:
		return nil, fmt.Errorf("lionactor: router %s stopped while starting", rt.pid.Id)
	}
}

// PID is the router's actor. Actors drive the router by sending it
// RoutedSubmit, messages.Cancel (by the ID of a routed request) and
// messages.StatsQuery (answered with RouterStats).
func (rt *Router) PID() *actor.PID { return rt.pid }

// System is the actor system the router runs in.
func (rt *Router) System() *actor.ActorSystem { return rt.system }

// Config returns the configuration the router was started with.
func (rt *Router) Config() RouterConfig { return rt.cfg }

// Executor returns the executor of the deployment of that name, or nil.
// Bind a model to it (imodel.New) to build the requests of that
// deployment: its pauses (after a 429, or when the provider's headers say
// the budget is low) are the deployment's. Submit requests through the
// router, not to it.
func (rt *Router) Executor(deployment string) *Executor {
	if d := rt.byName[deployment]; d != nil {
		return d.ex
	}
	return nil
}

// Deployments returns the deployments, in the order of the config.
func (rt *Router) Deployments() []Deployment {
	out := make([]Deployment, len(rt.deps))
	for i, d := range rt.deps {
		out[i] = d.Deployment
	}
	return out
}

// Groups returns the names of the groups, in the order their first
// deployment comes in the config.
func (rt *Router) Groups() []string {
	var out []string
	for _, d := range rt.deps {
		if !slices.Contains(out, d.Group) {
			out = append(out, d.Group)
		}
	}
	return out
}

// Submit hands the router a request of group, built for each deployment
// by build, and returns its handle. As Executor.Submit, ctx bounds the
// request's whole life, and its values reach every attempt's call.
//
// Submit builds the request for the deployments the request may go to, in
// order (its group's, then its fallbacks'), until one can take it; it
// refuses, with a typed error and no snapshot, a request of an unknown
// group (ErrUnknownGroup), one no deployment can take (the error of its
// first build, or a TokenLimitError naming the largest token bucket when
// it has more tokens than any), a full queue (ErrQueueFull, unless
// WaitForRoom), or a stopping router (ErrStopped).
func (rt *Router) Submit(ctx context.Context, group string, build Builder) (*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, err := rt.newEntry(group, build)
	if err != nil {
		return nil, err
	}
	if err := rt.checkRunning(); err != nil {
		return nil, err
	}
	if err := rt.admit(ctx); err != nil {
		return nil, err
	}
	if err := rt.reserve(e); err != nil {
		rt.release()
		return nil, err
	}

	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if err := rt.checkRunningLocked(); err != nil {
		rt.release()
		rt.cfg.SpendCap.finish(e.reserved, 0)
		return nil, err
	}
	id := uuid.New()
	h := newHandle(id, rt)
	e.id, e.handle, e.holdsSlot = id, h, true
	now := time.Now()
	e.lc = messages.NewLifecycle(id, &e.first, now)
	pending := e.lc.Pending(now)
	e.base = ctx
	if rt.cfg.RequestContext != nil {
		e.base = rt.cfg.RequestContext(ctx, pending)
	}
	e.base = context.WithoutCancel(e.base) // the router cancels attempts itself
	rt.publish(e, pending)
	rt.liveMu.Lock()
	rt.live[e] = struct{}{}
	rt.liveMu.Unlock()
	rt.counts.accepted.Add(1)
	rt.system.Root.Send(rt.pid, &routeEnqueue{e: e})
	// Only now may a cancel be sent: it follows the enqueue into the
	// actor's mailbox, as Executor.Submit's follows its Enqueue.
	if ctx.Done() != nil {
		rt.watches.add(ctx, h)
	}
	return h, nil
}

// cancelRequest implements owner: the router's actor cancels a routed
// request.
func (rt *Router) cancelRequest(id uuid.UUID, cause error) {
	rt.system.Root.Send(rt.pid, &messages.Cancel{ID: id, Cause: cause})
}

// newEntry prepares a request of group: the groups it may go to, and its
// request built for the first deployment that can take it.
func (rt *Router) newEntry(groupName string, build Builder) (*entry, error) {
	g := rt.groups[groupName]
	if g == nil {
		return nil, unknownGroupError(groupName)
	}
	if build == nil {
		return nil, fmt.Errorf("%w: no Builder", messages.ErrInvalidRequest)
	}
	e := &entry{build: build, built: make([]built, len(rt.deps)), tiers: []*group{g}}
	for _, f := range rt.cfg.Fallbacks[groupName] {
		e.tiers = append(e.tiers, rt.groups[f])
	}
	var (
		firstErr error
		tooLarge *messages.TokenLimitError
	)
	for _, t := range e.tiers {
		for _, d := range t.deps {
			r, err := e.request(d)
			if err == nil {
				e.first, e.tokens = r, r.Tokens
				e.maxAttempts = r.MaxAttempts
				if e.maxAttempts == 0 {
					e.maxAttempts = rt.cfg.MaxAttempts
				}
				e.retry = r.Retry
				if e.retry == nil {
					e.retry = rt.cfg.Retry
				}
				return e, nil
			}
			var tle *messages.TokenLimitError
			if errors.As(err, &tle) {
				if tooLarge == nil || tle.Burst > tooLarge.Burst {
					tooLarge = tle
				}
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if tooLarge != nil && firstErr == nil {
		return nil, tooLarge
	}
	return nil, firstErr
}

// admit takes a queue slot for an accepted request: at once, or, with
// WaitForRoom, once one is free while ctx allows. Every check that refuses
// a routed request before it is accepted, and counts against nothing
// until it is, belongs here, after the request was built (its tokens are
// known) and before its slot is taken: a limit on spending is consulted
// here the way the executor's admission consults it.
func (rt *Router) admit(ctx context.Context) error {
	select {
	case rt.slots <- struct{}{}:
		return nil
	default:
	}
	if !rt.cfg.WaitForRoom {
		rt.counts.rejected.Add(1)
		return messages.ErrQueueFull
	}
	select {
	case rt.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-rt.stopCh:
		return messages.ErrStopped
	}
}

// release gives back a queue slot.
func (rt *Router) release() { <-rt.slots }

// reserve takes the estimated cost of e's first build from the spend cap,
// if the router has one; a request is reserved once, however many
// attempts it makes, and settled when it ends (publish).
func (rt *Router) reserve(e *entry) error {
	if err := rt.cfg.SpendCap.admit(&e.first); err != nil {
		return err
	}
	e.reserved = e.first.EstimatedCost
	return nil
}

func (rt *Router) checkRunning() error {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.checkRunningLocked()
}

func (rt *Router) checkRunningLocked() error {
	if rt.stopping {
		return messages.ErrStopped
	}
	return nil
}

// publish delivers a snapshot of a routed request: to the observer first,
// then to its handle or its submitting actor. It runs on the router's
// goroutine or, during an attempt, on the deployment's.
func (rt *Router) publish(e *entry, ev messages.Event) {
	if ev.Status.Terminal() {
		// Before anyone sees the end: whoever waits on it finds the
		// cap settled.
		rt.cfg.SpendCap.finish(e.reserved, ev.Cost().Actual)
	}
	if rt.cfg.Observer != nil {
		rt.cfg.Observer(ev)
	}
	if e.sender != nil {
		rt.system.Root.Send(e.sender, ev)
	}
	if e.handle != nil {
		if ev.Status.Terminal() {
			rt.liveMu.Lock()
			delete(rt.live, e)
			rt.liveMu.Unlock()
		}
		e.handle.publish(ev)
	}
}

// Stop stops the router gracefully: it refuses new requests, finishes
// every accepted one, stops its deployments' executors gracefully (a
// shared budget's leases go back), then its actor and, if it has its own
// actor system, that. If ctx ends first, what is left is cancelled as by
// StopNow and ctx's error is returned. Calling it again waits for the
// same end.
func (rt *Router) Stop(ctx context.Context) error {
	if !rt.beginStop() {
		return rt.finish(ctx, nil)
	}
	done := make(chan struct{})
	rt.system.Root.Send(rt.pid, &routeDrain{done: done})
	select {
	case <-done:
	case <-rt.stopped:
	case <-ctx.Done():
		rt.abort()
		return rt.finish(ctx, ctx.Err())
	}
	return rt.finish(ctx, nil)
}

// StopNow stops the router at once: every accepted request that has not
// ended is CANCELLED (cause ErrStopped), with its attempt's call. It
// returns once everything the router started has ended, or with ctx's
// error if ctx ends first.
func (rt *Router) StopNow(ctx context.Context) error {
	if rt.beginStop() {
		rt.abort()
	}
	return rt.finish(ctx, nil)
}

func (rt *Router) beginStop() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopping {
		return false
	}
	rt.stopping = true
	close(rt.stopCh)
	return true
}

// abort ends every request left, and waits for it: the actor answers at
// once for what it holds and as soon as the deployments report the
// cancelled attempts.
func (rt *Router) abort() {
	done := make(chan struct{})
	rt.system.Root.Send(rt.pid, &routeAbort{done: done})
	select {
	case <-done:
	case <-rt.stopped:
	}
}

// finish stops the deployments and the actor and waits, within ctx, for
// the cleanup; past ctx the cleanup goes on by itself.
func (rt *Router) finish(ctx context.Context, err error) error {
	rt.shutdown.Do(func() { go rt.cleanup() })
	select {
	case <-rt.cleaned:
		return err
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
}

// cleanup stops what the router started: the deployments' executors,
// last first (the first may hold a remote layer the others share, for a
// shared budget), then the actor, then an owned actor system.
func (rt *Router) cleanup() {
	for _, d := range slices.Backward(rt.deps) {
		if d.ex == nil {
			continue // never started
		}
		ctx, cancel := context.WithTimeout(context.Background(), returnLeasesWait+time.Second)
		_ = d.ex.Stop(ctx)
		cancel()
	}
	rt.system.Root.Stop(rt.pid)
	<-rt.stopped
	if rt.ownSystem {
		rt.system.Shutdown()
	}
	close(rt.cleaned)
}

// RouterStats is a moment's count of a router's work.
type RouterStats struct {
	// Queued counts the requests waiting in the router: for a deployment,
	// or out a backoff. InFlight counts those with an attempt out at a
	// deployment.
	Queued, InFlight int64
	// Accepted and Rejected count the submits accepted and those refused
	// for a full queue; Completed, Failed and Cancelled the requests
	// ended so; Retries the attempts after a first, wherever they went.
	Accepted, Rejected           int64
	Completed, Failed, Cancelled int64
	Retries                      int64
	// Deployments are the deployments' figures, in the order of the
	// config.
	Deployments []DeploymentStats
}

// DeploymentStats are one deployment's figures.
type DeploymentStats struct {
	Name, Group, Model string
	// Executor is the deployment's executor's: its calls in flight, its
	// queue, the permits it could grant now, the end of its pause, its
	// part in a shared budget.
	Executor messages.Stats
	// Breaker is its breaker's state; Openings counts the times it opened.
	Breaker  BreakerState
	Openings int64
	// Attempts counts the calls started there; Completed those it
	// answered with success; Failed those that ended in an error there
	// (the request may have gone on elsewhere); RateLimited those of them
	// that a rate limit refused (VerdictBusy).
	Attempts, Completed, Failed, RateLimited int64
}

// BreakerState is the state of a deployment's circuit breaker.
type BreakerState string

// The breaker states.
const (
	// BreakerClosed: the deployment takes requests.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: the deployment takes none until its delay is over.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen: the deployment takes one probe, whose outcome
	// closes or opens the breaker.
	BreakerHalfOpen BreakerState = "half-open"
)

// Stats returns the router's counts and its deployments', without a
// round trip through the actors.
func (rt *Router) Stats() RouterStats {
	s := RouterStats{
		Queued:    rt.counts.queued.Load(),
		InFlight:  rt.counts.inFlight.Load(),
		Accepted:  rt.counts.accepted.Load(),
		Rejected:  rt.counts.rejected.Load(),
		Completed: rt.counts.completed.Load(),
		Failed:    rt.counts.failed.Load(),
		Cancelled: rt.counts.cancelled.Load(),
		Retries:   rt.counts.retries.Load(),
	}
	for _, d := range rt.deps {
		ds := DeploymentStats{
			Name: d.Name, Group: d.Group, Model: d.Model,
			Breaker:     d.health.state(),
			Openings:    d.counts.openings.Load(),
			Attempts:    d.counts.attempts.Load(),
			Completed:   d.counts.completed.Load(),
			Failed:      d.counts.failed.Load(),
			RateLimited: d.counts.rateLimited.Load(),
		}
		if d.ex != nil {
			ds.Executor = d.ex.Stats()
		}
		s.Deployments = append(s.Deployments, ds)
	}
	return s
}

// routerCounts are the router's running totals, written by its actor and
// read by Stats from any goroutine.
type routerCounts struct {
	queued, inFlight             atomic.Int64
	accepted, rejected           atomic.Int64
	completed, failed, cancelled atomic.Int64
	retries                      atomic.Int64
}

// deploymentCounts are one deployment's totals.
type deploymentCounts struct {
	attempts, completed, failed, rateLimited atomic.Int64
	openings                                 atomic.Int64
}

// group is a model group: its deployments, in the order of the config.
type group struct {
	name string
	deps []*deployment
}

// deployment is a Deployment as the router runs it.
type deployment struct {
	Deployment
	index  int
	ex     *Executor // set once the actor has started it
	health *health
	counts deploymentCounts
	// interval is the time between two request permits, 0 without a
	// request limit; tokenRate the tokens a second, 0 without a limit.
	interval  time.Duration
	tokenRate float64
	// ahead is how many attempts it may hold that have not started their
	// call: about Lookahead of its permits, at least 2.
	ahead int

	// The actor's alone:
	backlog int     // attempts given it that have not started calling
	calling int     // attempts calling
	load    float64 // attempts given it, over its weight: turns among ties
	gone    bool    // its executor stopped: it takes nothing more
	// pausedUntil is the latest pause an attempt's error announced (a
	// 429's retry-after). The deployment's limiter learns of it by a
	// message of its own, which may come round after the router has
	// dispatched again: the router keeps it too, so as not to give a
	// paused deployment attempts it would hold past the pause.
	pausedUntil time.Time
	// waiting are the attempts given it whose calls have not started.
	waiting map[*attempt]struct{}
}

func newDeployment(i int, d Deployment, cfg RouterConfig) *deployment {
	if d.Model == "" {
		d.Model = d.Group
	}
	if d.Weight == 0 {
		d.Weight = 1
	}
	dep := &deployment{Deployment: d, index: i, waiting: map[*attempt]struct{}{}}
	l := d.Config.limits()
	perSecond := math.Inf(1)
	if !math.IsInf(float64(l.RequestsPerSecond), 1) {
		perSecond = float64(l.RequestsPerSecond)
		dep.interval = time.Duration(float64(time.Second) / perSecond)
	}
	if l.TokensEnabled() {
		dep.tokenRate = float64(l.TokensPerSecond)
	}
	dep.ahead = 2
	if math.IsInf(perSecond, 1) {
		dep.ahead = max(dep.ahead, d.Config.Concurrency)
	} else {
		dep.ahead = max(dep.ahead, int(math.Ceil(perSecond*cfg.Lookahead.Seconds())))
	}
	dep.health = newHealth(dep, cfg)
	return dep
}

// executorConfig is the deployment's executor's config: its own limits
// and callers, a queue for what the router gives it ahead, one attempt
// per request (the router retries), no observer of its own.
func (d *deployment) executorConfig(logger *slog.Logger) Config {
	c := d.Config
	c.QueueCapacity = d.ahead + 1
	c.WaitForRoom = false
	c.MaxAttempts, c.Retry = 1, nil
	c.Observer, c.RequestContext = nil, nil
	c.Logger = logger.With(slog.String("deployment", d.Name))
	return c
}

// start is when the deployment could start a request of tokens API
// tokens given it now: its next permit (Tree.PermitDue), plus a permit's
// worth of each attempt already waiting at it. It is an estimate, off by
// at most one permit.
func (d *deployment) start(tokens int, now time.Time) time.Time {
	due := d.ex.tree.PermitDue(tokens, now)
	if d.pausedUntil.After(due) {
		due = d.pausedUntil
	}
	if d.backlog == 0 {
		return due
	}
	per := d.interval
	if d.tokenRate > 0 && tokens > 0 {
		per = max(per, time.Duration(float64(tokens)/d.tokenRate*float64(time.Second)))
	}
	return due.Add(time.Duration(d.backlog) * per)
}
