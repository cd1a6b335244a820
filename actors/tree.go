package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// Tree is one executor's running actor tree: the supervisor with its queue,
// limiter, callers and, with a shared budget, lease broker. Its methods
// are the operations package runtime builds its executor from; they are safe
// for concurrent use, and those that only read (Validate, Stats) or take a
// queue slot (Admit) answer without a round trip through the actors.
type Tree struct {
	cfg  *config
	pids pids
	root *actor.RootContext
}

// Spawn starts a tree as a child of parent (an actor's context, or the
// system's root) and returns it once its actors are up. cfg must be valid,
// as runtime.Config.Validate makes it.
func Spawn(parent actor.SpawnerContext, cfg Config) (*Tree, error) {
	c := newConfig(cfg)
	t := &Tree{cfg: c, root: parent.ActorSystem().Root}
	c.tree = t
	ready := make(chan pids, 1)
	pid := parent.SpawnPrefix(supervisorProps(c, ready), "lionactor")
	select {
	case t.pids = <-ready:
		return t, nil
	case <-c.stopped:
		t.Close()
		return nil, fmt.Errorf("lionactor: executor %s stopped while starting", pid.Id)
	}
}

// PID is the tree's supervisor, to which actors send messages.Submit,
// messages.Cancel and messages.StatsQuery.
func (t *Tree) PID() *actor.PID { return t.pids.Supervisor }

// Validate refuses a request that can never run: an invalid one
// (ErrInvalidRequest) or one costing more tokens than the token bucket
// holds (a *messages.TokenLimitError).
func (t *Tree) Validate(r *messages.Request) error { return validateRequest(r, t.cfg.buckets) }

// Admit takes a slot of the queue for one request. If the queue is full it
// fails at once with ErrQueueFull, or, with wait, waits for room until ctx
// ends (its cause) or stop is closed (ErrStopped).
func (t *Tree) Admit(ctx context.Context, wait bool, stop <-chan struct{}) error {
	if wait {
		return t.cfg.admission.Acquire(ctx, stop, messages.ErrStopped)
	}
	if !t.cfg.admission.TryAcquire() {
		t.cfg.counters.Rejected()
		return messages.ErrQueueFull
	}
	return nil
}

// Release gives back a slot that Admit took, for a request that will not be
// handed to the tree after all.
func (t *Tree) Release() { t.cfg.admission.Release() }

// Enqueue hands an admitted request to the queue actor, which owns lc from
// then on and publishes every later snapshot to sink after the observer;
// the request counts as accepted. The caller has published PENDING from lc
// already; Enqueue publishes QUEUED, here rather than on the queue's
// goroutine, since the request is in the queue from now on (its slot is
// taken). ctx supplies the values (not the cancellation) of each call's
// context.
func (t *Tree) Enqueue(id uuid.UUID, lc *messages.Lifecycle, r messages.Request, sink Sink, ctx context.Context) {
	c := t.cfg
	c.counters.Accepted()
	c.counters.queued.Add(1)
	ev := lc.Queue(time.Now(), 1, "")
	if c.Observer != nil {
		c.Observer(ev)
	}
	sink.Publish(ev)
	// The entry is the message: a queued request costs one allocation
	// less.
	e := &entry{id: id, lc: lc, work: workOf(&r), sink: sink, base: ctx, holdsSlot: true, state: inQueue}
	t.root.Send(t.pids.Queue, e)
}

// Dropped accounts for a request handed over by Enqueue whose hand-off the
// queue never read, because the tree stopped first: its queue slot comes
// back, and Stats counts it as the caller must end it, which Dropped says:
// FAILED with the storm's error after a restart storm, else CANCELLED with
// ErrStopped.
func (t *Tree) Dropped() (messages.RequestStatus, error) {
	t.cfg.admission.Release()
	t.cfg.counters.queued.Add(-1)
	status, err := t.cfg.stoppedEnd()
	if status == messages.StatusFailed {
		t.cfg.counters.failed.Add(1)
	} else {
		t.cfg.counters.cancelled.Add(1)
	}
	return status, err
}

// Cancel asks the queue to cancel request id with cause (nil means
// ErrCancelled). A request the queue does not know (ended, or not handed
// over yet) is left alone.
func (t *Tree) Cancel(id uuid.UUID, cause error) {
	t.root.Send(t.pids.Queue, &messages.Cancel{ID: id, Cause: cause})
}

// Drain asks the queue to finish what it holds: the channel is closed once
// every request handed over has ended. Requests keep flowing meanwhile.
func (t *Tree) Drain() <-chan struct{} {
	done := make(chan struct{})
	t.root.Send(t.pids.Queue, &drainQueue{Done: done})
	return done
}

// Abort ends every request the queue holds at once, CANCELLED with err,
// cancelling running calls; the channel is closed once all have ended.
func (t *Tree) Abort(err error) <-chan struct{} {
	done := make(chan struct{})
	t.root.Send(t.pids.Queue, &abortQueue{Err: err, Done: done})
	return done
}

// ReturnLeases asks the limiter to give what the leases of a shared budget
// still hold back at once (see ReturnLeases); the channel is closed once
// the broker has seen them to the service, or gave up on it. Without a
// shared budget it returns nil.
func (t *Tree) ReturnLeases() <-chan struct{} {
	if t.pids.Broker == nil {
		return nil
	}
	done := make(chan struct{})
	t.root.Send(t.pids.Limiter, &ReturnLeases{Done: done})
	return done
}

// Pause grants no permit to any request before until.
func (t *Tree) Pause(until time.Time) { t.root.Send(t.pids.Limiter, &PauseUntil{Until: until}) }

// AdjustTokens corrects the token bucket by delta tokens (see AdjustTokens).
func (t *Tree) AdjustTokens(delta int) {
	t.root.Send(t.pids.Limiter, &AdjustTokens{Delta: delta})
}

// SetLimits changes the limits: at once for Validate and Stats, and for the
// limiter by message, which plans its next permit at the new rates.
func (t *Tree) SetLimits(l Limits) {
	t.cfg.buckets.Apply(time.Now(), l)
	t.root.Send(t.pids.Limiter, &SetLimits{Limits: l})
}

// PermitDue is when the limiter could grant the permit of one request of
// tokens API tokens asked at now with no ask before it: now when its
// buckets hold it, later by what they lack at their rates, never before
// the end of a pause. It reads the buckets and takes nothing. With a
// shared budget, whose permits come from leases, it is now or the end of a
// pause. A router compares deployments by it (see runtime.Router).
func (t *Tree) PermitDue(tokens int, now time.Time) time.Time {
	if t.cfg.LeaseBroker != nil {
		if p := t.cfg.buckets.PausedUntil(); p.After(now) {
			return p
		}
		return now
	}
	return t.cfg.buckets.due(tokens, now)
}

// Stats returns the tree's counts and what its limits allow now.
func (t *Tree) Stats() messages.Stats { return t.cfg.counters.Stats(t.cfg.buckets, time.Now()) }

// Stop stops the supervisor and with it the tree; the queue ends what it
// still holds CANCELLED with ErrStopped.
func (t *Tree) Stop() { t.root.Stop(t.pids.Supervisor) }

// Stopped is closed once the tree has stopped, whatever stopped it.
func (t *Tree) Stopped() <-chan struct{} { return t.cfg.stopped }

// Err returns ErrRestartStorm once callers crashed more often than the
// restart budget allows, which stops the tree; otherwise nil.
func (t *Tree) Err() error {
	if p := t.cfg.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Close waits for the tree to stop, then for its calls' goroutines to
// return, and releases its dispatcher's goroutines.
func (t *Tree) Close() {
	<-t.cfg.stopped
	t.cfg.calls.Wait()
	t.cfg.dispatch.Close()
}
