package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
)

// caller runs one call at a time. The call runs in its own goroutine with a
// context, so that the actor stays responsive (to a cancel, to a stop) while
// the call blocks; the goroutine reports back by message. A call that panics
// makes the caller panic in Receive, so the supervisor sees the failure and
// restarts it; the queue, which knows what the caller held, accounts for the
// request.
type caller struct {
	queue   *actor.PID
	calls   *sync.WaitGroup // every call goroutine, so a stop can wait for them
	running *runningCall
}

type runningCall struct {
	ticket uint64
	cancel context.CancelCauseFunc
}

func newCaller(queue *actor.PID, calls *sync.WaitGroup) *caller {
	return &caller{queue: queue, calls: calls}
}

// Receive implements actor.Actor.
func (c *caller) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// Sent on first start and after every restart.
		ctx.Send(c.queue, &callerReady{caller: ctx.Self()})
	case *startCall:
		c.start(ctx, m)
	case *cancelCall:
		if c.running != nil && c.running.ticket == m.ticket {
			c.running.cancel(m.cause)
		}
	case *callFinished:
		c.finish(ctx, m)
	case *actor.Restarting, *actor.Stopping:
		if c.running != nil {
			c.running.cancel(messages.ErrStopped)
			c.running = nil
		}
	}
}

func (c *caller) start(ctx actor.Context, m *startCall) {
	base := m.base
	if base == nil {
		base = context.Background()
	}
	callCtx, cancel := context.WithCancelCause(context.WithoutCancel(base))
	if m.timeout > 0 {
		var stopTimer context.CancelFunc
		callCtx, stopTimer = context.WithTimeoutCause(callCtx, m.timeout, messages.ErrTimeout)
		inner := cancel
		cancel = func(cause error) { inner(cause); stopTimer() }
	}
	c.running = &runningCall{ticket: m.ticket, cancel: cancel}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.calls.Add(1)
	go func() {
		defer c.calls.Done()
		res, err, pv, panicked := runCall(callCtx, m.call, m.attempt)
		if err != nil && errors.Is(context.Cause(callCtx), messages.ErrTimeout) && !errors.Is(err, messages.ErrTimeout) {
			err = fmt.Errorf("%w after %v: %w", messages.ErrTimeout, m.timeout, err)
		}
		root.Send(self, &callFinished{ticket: m.ticket, result: res, err: err, panicked: panicked, panicVal: pv})
	}()
}

// runCall runs one attempt, turning a panic into a value.
func runCall(ctx context.Context, call messages.Call, attempt int) (res messages.Result, err error, pv any, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			pv, panicked = r, true
		}
	}()
	res, err = call.Do(ctx, attempt)
	return res, err, nil, false
}

func (c *caller) finish(ctx actor.Context, m *callFinished) {
	if c.running == nil || c.running.ticket != m.ticket {
		return // a call of a previous incarnation, already accounted for
	}
	c.running.cancel(nil) // release the context's resources
	c.running = nil
	if m.panicked {
		panic(&callPanic{value: m.panicVal})
	}
	ctx.Send(c.queue, &callDone{caller: ctx.Self(), ticket: m.ticket, result: m.result, err: m.err})
}
