package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sourcegraph/conc/panics"

	"github.com/lionactor/lionactor/messages"
)

// caller is one of the tree's N callers: at most N calls run at once. Its
// calls run on a worker goroutine that lives as long as the actor's
// incarnation, so a call costs no goroutine start; the queue hands the
// worker each call straight through a channel and the worker reports the
// outcome straight back, so a call costs the queue no round trip through
// the caller's mailbox. The actor is there for supervision: a call that
// panics is reported to it, it panics in Receive, and the supervisor
// restarts it with a fresh worker; and when it stops or restarts, the call
// its worker runs is cut short (its context is cancelled with ErrStopped).
type caller struct {
	queue *actor.PID
	calls *sync.WaitGroup // every worker, so a stop can wait for them
	// stop is this incarnation's context, from which its calls' contexts
	// are cancelled when it stops or restarts.
	stop    context.Context
	cancel  context.CancelCauseFunc
	retired chan struct{} // closed when the incarnation ends: the worker goes
}

// job is one attempt handed to a worker by the queue.
type job struct {
	ticket  uint64
	call    messages.Call
	attempt int
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelCauseFunc
}

func newCaller(queue *actor.PID, calls *sync.WaitGroup) *caller {
	return &caller{queue: queue, calls: calls}
}

// Receive implements actor.Actor.
func (c *caller) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// On first start and after every restart: a fresh worker. Its
		// channel holds one job: the queue hands a job only to a caller
		// whose worker is idle, so the send never blocks.
		work := make(chan job, 1)
		c.stop, c.cancel = context.WithCancelCause(context.Background())
		c.retired = make(chan struct{})
		c.calls.Add(1)
		go c.worker(ctx.Self(), ctx.ActorSystem().Root, work, c.retired)
		ctx.Send(c.queue, &callerReady{caller: ctx.Self(), work: work, stop: c.stop})
	case *callFinished:
		if m.panic != nil && m.worker == c.retired {
			panic(&callPanic{*m.panic})
		}
	case *actor.Restarting, *actor.Stopping:
		if c.cancel != nil {
			c.cancel(messages.ErrStopped)
			close(c.retired) // the worker ends once its call returns
			c.cancel = nil
		}
	}
}

// worker runs the incarnation's calls until it is retired.
func (c *caller) worker(self *actor.PID, root *actor.RootContext, work <-chan job, retired <-chan struct{}) {
	defer c.calls.Done()
	for {
		var j job
		select {
		case j = <-work:
		case <-retired:
			return
		}
		res, err, rec := runCall(j.ctx, j.call, j.attempt)
		cause := context.Cause(j.ctx)
		if err != nil && errors.Is(cause, messages.ErrTimeout) && !errors.Is(err, messages.ErrTimeout) {
			err = fmt.Errorf("%w after %v: %w", messages.ErrTimeout, j.timeout, err)
		}
		j.cancel(nil) // release the context's resources
		if rec != nil {
			root.Send(self, &callFinished{ticket: j.ticket, panic: rec, worker: retired})
			continue
		}
		stopped := err != nil && errors.Is(cause, messages.ErrStopped)
		root.Send(c.queue, &callDone{caller: self, ticket: j.ticket, result: res, err: err, stopped: stopped})
	}
}

// runCall runs one attempt, turning a panic into its value and stack.
func runCall(ctx context.Context, call messages.Call, attempt int) (res messages.Result, err error, rec *panics.Recovered) {
	defer func() {
		if r := recover(); r != nil {
			p := panics.NewRecovered(1, r)
			rec = &p
		}
	}()
	res, err = call.Do(ctx, attempt)
	return res, err, nil
}

// callContext is the context of one attempt: it carries the submitter's
// values (from values, whose cancellation it ignores: the queue cancels by
// itself, so that the request ends as one event) and is cancelled when the
// caller's incarnation stops (with stop's cause), when cancel is called, or,
// with a timeout, when the attempt runs past it (cause ErrTimeout).
func callContext(values, stop context.Context, timeout time.Duration) (context.Context, context.CancelCauseFunc) {
	parent := context.Background()
	if values != nil {
		parent = context.WithoutCancel(values)
	}
	ctx, cancel := context.WithCancelCause(parent)
	// A child of stop's cancellation, registered without a goroutine.
	unwatch := context.AfterFunc(stop, func() { cancel(context.Cause(stop)) })
	release := func(cause error) { unwatch(); cancel(cause) }
	if timeout > 0 {
		var stopTimer context.CancelFunc
		ctx, stopTimer = context.WithTimeoutCause(ctx, timeout, messages.ErrTimeout)
		return ctx, func(cause error) { release(cause); stopTimer() }
	}
	return ctx, release
}
