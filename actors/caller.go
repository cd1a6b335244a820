package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sourcegraph/conc/panics"

	"github.com/lionactor/lionactor/messages"
)

// caller runs one call at a time. The call runs on the caller's worker
// goroutine with a context, so that the actor stays responsive (to a cancel,
// to a stop) while the call blocks. The worker lives as long as the actor's
// incarnation, so a call costs no goroutine start, and it reports the outcome
// straight to the queue. A call that panics is reported to the caller, which
// panics in Receive, so the supervisor sees the failure and restarts it; the
// queue, which knows what the caller held, accounts for the request.
type caller struct {
	queue   *actor.PID
	calls   *sync.WaitGroup // every worker, so a stop can wait for them
	work    chan job        // to this incarnation's worker
	running *runningCall
}

type runningCall struct {
	ticket uint64
	cancel context.CancelCauseFunc
}

// job is one attempt handed to the worker.
type job struct {
	start  *startCall
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newCaller(queue *actor.PID, calls *sync.WaitGroup) *caller {
	return &caller{queue: queue, calls: calls}
}

// Receive implements actor.Actor.
func (c *caller) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// On first start and after every restart: a fresh worker.
		c.work = make(chan job, 1)
		c.calls.Add(1)
		go c.worker(ctx.Self(), ctx.ActorSystem().Root, c.work)
		ctx.Send(c.queue, &callerReady{caller: ctx.Self()})
	case *startCall:
		c.start(m)
	case *cancelCall:
		if c.running != nil && c.running.ticket == m.ticket {
			c.running.cancel(m.cause)
		}
	case *callFinished:
		if m.panic != nil && c.running != nil && c.running.ticket == m.ticket {
			c.running = nil
			panic(&callPanic{*m.panic})
		}
	case *actor.Restarting, *actor.Stopping:
		if c.running != nil {
			c.running.cancel(messages.ErrStopped)
			c.running = nil
		}
		if c.work != nil {
			close(c.work) // the worker ends once its call returns
			c.work = nil
		}
	}
}

// start hands an attempt to the worker. The queue sends a startCall only to
// an idle caller, whose worker has finished the previous call, so the send
// never blocks.
func (c *caller) start(m *startCall) {
	base := m.base
	switch {
	case base == nil:
		base = context.Background()
	case base.Done() != nil:
		// Keep the submitter's values, not its cancellation: the queue
		// cancels by message, so that the request ends as one event.
		base = context.WithoutCancel(base)
	}
	callCtx, cancel := context.WithCancelCause(base)
	if m.timeout > 0 {
		var stopTimer context.CancelFunc
		callCtx, stopTimer = context.WithTimeoutCause(callCtx, m.timeout, messages.ErrTimeout)
		inner := cancel
		cancel = func(cause error) { inner(cause); stopTimer() }
	}
	c.running = &runningCall{ticket: m.ticket, cancel: cancel}
	c.work <- job{start: m, ctx: callCtx, cancel: cancel}
}

// worker runs the incarnation's calls until its channel is closed.
func (c *caller) worker(self *actor.PID, root *actor.RootContext, work <-chan job) {
	defer c.calls.Done()
	for j := range work {
		m := j.start
		res, err, rec := runCall(j.ctx, m.call, m.attempt)
		if err != nil && errors.Is(context.Cause(j.ctx), messages.ErrTimeout) && !errors.Is(err, messages.ErrTimeout) {
			err = fmt.Errorf("%w after %v: %w", messages.ErrTimeout, m.timeout, err)
		}
		j.cancel(nil) // release the context's resources
		if rec != nil {
			root.Send(self, &callFinished{ticket: m.ticket, panic: rec})
			continue
		}
		stopped := err != nil && errors.Is(context.Cause(j.ctx), messages.ErrStopped)
		root.Send(c.queue, &callDone{caller: self, ticket: m.ticket, result: res, err: err, stopped: stopped})
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
