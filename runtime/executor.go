package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/messages"
)

// Executor runs requests through its actor tree. Create one with [Start] or
// [Spawn]; its methods are safe for concurrent use.
type Executor struct {
	cfg       Config
	system    *actor.ActorSystem
	ownSystem bool
	tree      *actors.Tree

	// mu orders submissions against the start of a stop: a submit that
	// passed the running check has its request in the queue's mailbox before
	// the stop's Drain or Abort, and in live before the tree's end takes it.
	mu       sync.RWMutex
	stopping bool
	stopCh   chan struct{} // closed when a stop begins: wakes submitters waiting for room
	cleaned  chan struct{} // closed when everything the executor started has ended
	shutdown sync.Once

	// live holds, for every handle Submit returned whose request has not
	// ended, the request's Lifecycle. The queue owns the Lifecycle from its
	// Enqueue on; but protoactor drops the messages left in a stopped
	// actor's mailbox, so once the tree is gone the executor ends, with
	// their Lifecycle, the requests the queue never received (treeStopped).
	liveMu sync.Mutex
	live   map[*Handle]*messages.Lifecycle
	// watches cancels requests whose submit context is done.
	watches watches

	limitsMu sync.Mutex
	limits   actors.Limits

	cached atomic.Int64 // requests answered from a cache (Request.Cached)

	release func() // undoes SharedBudget.Attach; nil without a shared budget
}

// Start validates cfg and starts an executor in an actor system of its own,
// which is shut down when the executor stops.
func Start(cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := loggerOf(cfg)
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }),
		// The dead-letter throttle keeps a goroutine alive for one interval
		// after a dead letter: keep it short so a stopped executor leaves
		// nothing running.
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	return spawn(system.Root, system, true, cfg)
}

// Spawn validates cfg and spawns an executor inside an existing actor
// system, as a child of parent: the system's root context, or an actor's
// context so that the executor lives under that actor's supervision. Stop
// stops the executor's actors but never the system.
//
// If the parent stops, or restarts the executor (protoactor restarts a child
// by stopping its children and making it anew), the executor stops: by the
// time the parent's stop has completed, every request it accepted has ended
// (CANCELLED with ErrStopped, unless it ended otherwise first), Submit
// returns ErrStopped, and the executor's goroutines end once its running
// calls have returned, without a call to Stop.
//
// protoactor logs to standard output unless the system was created with
// actor.WithLoggerFactory, and keeps a goroutine alive for
// DeadLetterThrottleInterval (1 s by default) after a dead letter: create
// the system with actor.WithDeadLetterThrottleInterval if a leak checker
// runs right after Shutdown.
func Spawn(parent actor.SpawnerContext, cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if parent == nil {
		return nil, &messages.ConfigError{Field: "parent", Reason: "nil SpawnerContext"}
	}
	return spawn(parent, parent.ActorSystem(), false, cfg)
}

func loggerOf(cfg Config) *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// spawn starts the executor's tree under parent; ownSystem says whether the
// executor shuts system down when it stops (and if it fails to start).
func spawn(parent actor.SpawnerContext, system *actor.ActorSystem, ownSystem bool, cfg Config) (*Executor, error) {
	limits := cfg.limits()
	ex := &Executor{
		cfg:       cfg,
		system:    system,
		ownSystem: ownSystem,
		stopCh:    make(chan struct{}),
		cleaned:   make(chan struct{}),
		live:      make(map[*Handle]*messages.Lifecycle),
		limits:    limits,
	}
	tcfg := actors.Config{
		Concurrency:   cfg.Concurrency,
		QueueCapacity: cfg.QueueCapacity,
		Limits:        limits,
		CallTimeout:   cfg.CallTimeout,
		MaxAttempts:   cfg.MaxAttempts,
		Retry:         cfg.Retry,
		MaxRestarts:   cfg.MaxRestarts,
		RestartWindow: cfg.RestartWindow,
		Observer:      cfg.Observer,
		Logger:        loggerOf(cfg),
		OnStopped:     ex.treeStopped,
	}
	if cfg.SharedBudget != nil {
		broker, release, err := cfg.SharedBudget.Attach(system, limits, loggerOf(cfg))
		if err != nil {
			if ownSystem {
				system.Shutdown()
			}
			return nil, err
		}
		tcfg.LeaseBroker, ex.release = broker, release
	}
	tree, err := actors.Spawn(parent, tcfg)
	if err != nil {
		// The tree's end started the cleanup (treeStopped).
		<-ex.cleaned
		return nil, err
	}
	ex.tree = tree
	return ex, nil
}

// PID is the executor's supervisor. Actors drive the executor by sending it
// messages.Submit, messages.Cancel and messages.StatsQuery. A Submit that
// reaches it while it stops is rejected with ErrStopped; once the executor
// has stopped the PID no longer exists, and protoactor answers a message
// sent to it with a sender with *actor.DeadLetterResponse.
func (ex *Executor) PID() *actor.PID { return ex.tree.PID() }

// Config returns the configuration the executor was started with (rates
// changed at run time are not reflected).
func (ex *Executor) Config() Config { return ex.cfg }

// System is the actor system the executor runs in.
func (ex *Executor) System() *actor.ActorSystem { return ex.system }

// Err returns why the executor stopped by itself (ErrRestartStorm), or nil.
func (ex *Executor) Err() error { return ex.tree.Err() }

// Submit hands a request to the executor and returns its handle. ctx bounds
// the request's whole life: if it is done before the request ends, the
// request is cancelled. Its values (not its deadline) reach each call's
// context.
//
// Submit refuses, with a typed error and no snapshot, what it cannot accept:
// an invalid request (ErrInvalidRequest), one costing more tokens than the
// token bucket holds (ErrTokensExceedBurst), a full queue (ErrQueueFull,
// unless Config.WaitForRoom), a stopping executor (ErrStopped), and, with a
// Config.SpendCap, a request that would pass the cap (a
// *messages.SpendCapError, ErrSpendCap) or has no price (ErrPriceUnknown).
//
// A request whose reply is known (Request.Cached) is answered at once: its
// handle has PENDING and COMPLETED before Submit returns, and it takes no
// queue slot, no permit and nothing of a spend cap.
//
// Once it returns a handle, the request reaches exactly one terminal
// snapshot, seen by the observer before the handle, whatever stops or
// cancels around it: a cancel of ctx or of the handle at any moment, even
// while Submit runs, is never lost; Stop finishes the request, StopNow
// cancels it, and if the executor's actors stop another way (its parent
// stops or restarts it, a restart storm) it ends with them: CANCELLED with
// ErrStopped, or FAILED with ErrRestartStorm after a storm.
func (ex *Executor) Submit(ctx context.Context, r messages.Request) (*Handle, error) {
	return ex.submit(ctx, r, nil)
}

// submit is Submit; notify, if not nil, is called with every snapshot of
// the request as its handle receives it (see Handle.notify).
func (ex *Executor) submit(ctx context.Context, r messages.Request, notify func(messages.Event)) (*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ex.tree.Validate(&r); err != nil {
		return nil, err
	}
	if err := ex.checkRunning(); err != nil {
		return nil, err
	}
	if r.Cached != nil {
		return ex.answer(ctx, &r, notify), nil
	}
	if err := ex.tree.Admit(ctx, ex.cfg.WaitForRoom, ex.stopCh); err != nil {
		return nil, err
	}
	if err := ex.cfg.SpendCap.admit(&r); err != nil {
		ex.tree.Release()
		return nil, err
	}

	ex.mu.RLock()
	defer ex.mu.RUnlock()
	if err := ex.checkRunningLocked(); err != nil {
		ex.tree.Release()
		ex.cfg.SpendCap.finish(r.EstimatedCost, 0)
		return nil, err
	}
	id := newID()
	h := newHandle(id, ex)
	h.reserved = r.EstimatedCost
	h.notify = notify
	now := time.Now()
	lc := messages.NewLifecycle(id, &r, now)
	pending := lc.Pending(now)
	base := ctx
	if ex.cfg.RequestContext != nil {
		base = ex.cfg.RequestContext(ctx, pending)
	}
	if ex.cfg.Observer != nil {
		ex.cfg.Observer(pending)
	}
	h.publish(pending)
	ex.liveMu.Lock()
	ex.live[h] = lc
	ex.liveMu.Unlock()
	ex.tree.Enqueue(id, lc, r, (*sink)(h), base)
	// Only now may a cancel be sent: whatever goroutine sends it, it does so
	// after this one sent the Enqueue, and a mailbox is a FIFO (a mutex-
	// guarded ring in protoactor), so the queue knows the request by the
	// time the cancel arrives. A cancel sent before could overtake the
	// Enqueue and find nothing to cancel.
	if ctx.Done() != nil {
		ex.watches.add(ctx, h)
	}
	return h, nil
}

// cancelRequest implements owner.
func (ex *Executor) cancelRequest(id uuid.UUID, cause error) { ex.tree.Cancel(id, cause) }

// ended takes h out of live: its request has reached its terminal snapshot
// ev.
func (ex *Executor) ended(h *Handle, ev messages.Event) {
	ex.liveMu.Lock()
	delete(ex.live, h)
	ex.liveMu.Unlock()
	ex.settle(h, ev)
}

// settle turns the reservation of h's request, which ended with ev, into
// what it actually cost. It runs once per request: from ended, or from
// treeStopped for a request the queue never received.
func (ex *Executor) settle(h *Handle, ev messages.Event) {
	ex.cfg.SpendCap.finish(h.reserved, ev.Cost().Actual)
}

// answer completes a request whose reply is known (Request.Cached) without
// the queue, the limiter or a caller: PENDING, then COMPLETED with the
// reply, both seen by the observer before the handle, as for any request.
// Its handle has ended by the time it is returned, so it needs no place in
// live and nothing can cancel it.
func (ex *Executor) answer(ctx context.Context, r *messages.Request, notify func(messages.Event)) *Handle {
	id := newID()
	h := newHandle(id, nobody)
	h.notify = notify
	now := time.Now()
	lc := messages.NewLifecycle(id, r, now)
	pending := lc.Pending(now)
	if ex.cfg.RequestContext != nil {
		ex.cfg.RequestContext(ctx, pending)
	}
	ex.publish(h, pending)
	ex.cached.Add(1)
	ex.publish(h, lc.CompleteFromCache(time.Now(), *r.Cached))
	return h
}

// publish delivers a snapshot the executor made itself: to the observer
// first, then to the handle.
func (ex *Executor) publish(h *Handle, ev messages.Event) {
	if ex.cfg.Observer != nil {
		ex.cfg.Observer(ev)
	}
	h.publish(ev)
}

// treeStopped runs on the supervisor's goroutine once the tree has stopped,
// whatever stopped it: Stop, StopNow, a restart storm, or its parent. The
// queue ended every request it had received (as it stopped, at the latest);
// the requests still live are those whose Enqueue it never read, which
// protoactor dropped from its mailbox or sent to dead letters. The queue
// being gone, their Lifecycles are the executor's again, and it ends them
// as Tree.Dropped says: CANCELLED with ErrStopped, or FAILED with
// ErrRestartStorm after a storm. Taking mu orders this against Submit: a submit
// either registered its request before (and it is ended here, if the queue
// did not) or finds the executor stopping and refuses.
func (ex *Executor) treeStopped(tree *actors.Tree) {
	ex.mu.Lock()
	if !ex.stopping {
		ex.stopping = true
		close(ex.stopCh)
	}
	ex.liveMu.Lock()
	left := ex.live
	ex.live = nil
	ex.liveMu.Unlock()
	ex.mu.Unlock()

	for h, lc := range left {
		var ev messages.Event
		if status, err := tree.Dropped(); status == messages.StatusFailed {
			ev = lc.Fail(time.Now(), err, messages.Result{})
		} else {
			ev = lc.Cancel(time.Now(), err)
		}
		ex.settle(h, ev)
		ex.publish(h, ev)
	}
	// Nothing else will end: release what the executor started, even if
	// nobody calls Stop (as when the parent stopped it).
	ex.shutdown.Do(func() { go ex.cleanup(tree) })
}

func (ex *Executor) checkRunning() error {
	ex.mu.RLock()
	defer ex.mu.RUnlock()
	return ex.checkRunningLocked()
}

func (ex *Executor) checkRunningLocked() error {
	if err := ex.Err(); err != nil {
		return fmt.Errorf("%w: %w", messages.ErrStopped, err)
	}
	if ex.stopping {
		return messages.ErrStopped
	}
	select {
	case <-ex.tree.Stopped():
		return messages.ErrStopped
	default:
		return nil
	}
}

// Stats returns the executor's counts and current budget, without a round
// trip through the actors. With a shared budget, the budget is what its
// leases hold, and Stats.Shared says whether it is joined to the service or
// has fallen back to its local share.
//
// Requests answered from a cache (Request.Cached) are counted in Cached,
// and in Accepted and Completed.
func (ex *Executor) Stats() messages.Stats {
	s := ex.tree.Stats()
	c := ex.cached.Load()
	s.Cached = c
	s.Accepted += c
	s.Completed += c
	return s
}

// PauseUntil grants no permit to any request before t, as after a 429 that
// concerns the whole API key.
func (ex *Executor) PauseUntil(t time.Time) { ex.tree.Pause(t) }

// TokenBurst returns the most API tokens one request may cost now: the
// token bucket's capacity as Config.TokenBurst or the last SetTokenRate
// set it, or 0 without a token limit. Submit refuses a request that costs
// more (ErrTokensExceedBurst); a model reads it to refuse, without
// counting its tokens, a request whose size alone proves it would be.
func (ex *Executor) TokenBurst() int {
	ex.limitsMu.Lock()
	defer ex.limitsMu.Unlock()
	if !ex.limits.TokensEnabled() {
		return 0
	}
	return ex.limits.TokenBurst
}

// AdjustTokens corrects the token bucket by delta tokens: positive charges
// tokens used beyond an estimate, negative refunds an over-estimate. The
// executor already does this for calls that report messages.Usage.
func (ex *Executor) AdjustTokens(delta int) { ex.tree.AdjustTokens(delta) }

// SetRequestRate changes the request limit at run time to n requests per
// interval with the given burst (0 means 1: an even pace, see
// [Config.RequestBurst]); n may be [Unlimited].
func (ex *Executor) SetRequestRate(n int, interval time.Duration, burst int) error {
	c := ex.cfg
	c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = n, interval, burst
	if err := c.Validate(); err != nil {
		return err
	}
	l := c.limits()
	ex.limitsMu.Lock()
	defer ex.limitsMu.Unlock()
	ex.limits.RequestsPerSecond, ex.limits.RequestBurst = l.RequestsPerSecond, l.RequestBurst
	ex.applyLimits()
	return nil
}

// SetTokenRate changes the token limit at run time to n tokens per interval
// with the given burst (0 means n); n = 0 turns the limit off.
func (ex *Executor) SetTokenRate(n int, interval time.Duration, burst int) error {
	c := ex.cfg
	c.TokensPerInterval, c.TokenInterval, c.TokenBurst = n, interval, burst
	if err := c.Validate(); err != nil {
		return err
	}
	l := c.limits()
	ex.limitsMu.Lock()
	defer ex.limitsMu.Unlock()
	ex.limits.TokensPerSecond, ex.limits.TokenBurst = l.TokensPerSecond, l.TokenBurst
	ex.applyLimits()
	return nil
}

// applyLimits makes new limits visible to Submit at once and tells the
// limiter. The caller holds limitsMu.
func (ex *Executor) applyLimits() { ex.tree.SetLimits(ex.limits) }

// Stop stops the executor gracefully: it refuses new requests, finishes
// every accepted one (queued, backing off, or in flight), then stops its
// actors and, if it has its own actor system, shuts that down. With a
// shared budget, what its leases still hold is given back to the service
// before the actors stop. If ctx ends first, what is left is cancelled as
// by [Executor.StopNow] and ctx's error is returned. Calling Stop again, or
// after StopNow, or once the executor has stopped by itself (its parent
// stopped, a restart storm), waits for the same end.
func (ex *Executor) Stop(ctx context.Context) error {
	if !ex.beginStop() {
		return ex.finish(ctx, nil)
	}
	select {
	case <-ex.tree.Drain():
		ex.returnLeases(ctx)
	case <-ex.tree.Stopped():
	case <-ctx.Done():
		ex.abort()
		return ex.finish(ctx, ctx.Err())
	}
	return ex.finish(ctx, nil)
}

// returnLeases gives what the executor's leases of a shared budget still
// hold back to the service at once, rather than leave it held until the
// leases expire. It waits until the service has them, or the broker gives
// up on it (budget's broker waits its ReplyTimeout), or ctx ends, or
// returnLeasesWait has passed, in case a broker does not answer at all.
func (ex *Executor) returnLeases(ctx context.Context) {
	done := ex.tree.ReturnLeases()
	if done == nil {
		return
	}
	t := time.NewTimer(returnLeasesWait)
	defer t.Stop()
	select {
	case <-done:
	case <-ex.tree.Stopped():
	case <-ctx.Done():
	case <-t.C:
	}
}

// returnLeasesWait bounds a graceful stop's wait for a broker to see its
// leases back to the service.
const returnLeasesWait = 10 * time.Second

// StopNow stops the executor at once: every accepted request that has not
// ended is CANCELLED (cause ErrStopped) and running calls have their
// contexts cancelled. It returns once the actors are gone, every accepted
// request has ended and the call goroutines have returned, or with ctx's
// error if ctx ends first.
func (ex *Executor) StopNow(ctx context.Context) error {
	if ex.beginStop() {
		ex.abort()
	}
	return ex.finish(ctx, nil)
}

func (ex *Executor) beginStop() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.stopping {
		return false
	}
	ex.stopping = true
	close(ex.stopCh)
	return true
}

// abort cancels everything left. The queue answers at once, so this wait is
// short; it is bounded anyway in case the tree is already gone.
func (ex *Executor) abort() {
	select {
	case <-ex.tree.Abort(messages.ErrStopped):
	case <-ex.tree.Stopped():
	}
}

// finish stops the actors and waits, within ctx, for the cleanup: the
// actors gone, the call goroutines returned, the dispatcher's workers ended
// and an owned actor system shut down. If ctx ends first the cleanup goes on
// by itself, so Stop returns within its context whatever a call does.
func (ex *Executor) finish(ctx context.Context, err error) error {
	ex.tree.Stop()
	ex.shutdown.Do(func() { go ex.cleanup(ex.tree) })
	select {
	case <-ex.cleaned:
		return err
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
}

func (ex *Executor) cleanup(tree *actors.Tree) {
	tree.Close()
	if ex.release != nil {
		ex.release()
	}
	if ex.ownSystem {
		ex.system.Shutdown()
	}
	close(ex.cleaned)
}
