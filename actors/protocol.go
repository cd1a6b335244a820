package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"github.com/sourcegraph/conc/panics"

	"github.com/lionactor/lionactor/messages"
)

// Sink receives the snapshots of one request, in order. Publish is called on
// an actor goroutine and must not block.
type Sink interface {
	Publish(messages.Event)
}

// Enqueue hands an accepted request to the queue actor. The sender has
// already published the PENDING snapshot from Lifecycle and holds a slot of
// the queue's [Admission], which the queue releases.
type enqueueRequest struct {
	ID        uuid.UUID
	Lifecycle *messages.Lifecycle
	Request   messages.Request
	Sink      Sink
	// Context supplies the values (not the cancellation) of each call's
	// context.
	Context context.Context
}

// Drain puts the queue in draining mode: Done is closed once every accepted
// request has ended. Requests keep flowing meanwhile.
type drainQueue struct {
	Done chan struct{}
}

// Abort ends every accepted request at once: CANCELLED with Err, or FAILED
// with Err when Fail is set. Running calls have their contexts cancelled.
// Done is closed when all of them have their terminal snapshot.
type abortQueue struct {
	Err  error
	Fail bool
	Done chan struct{}
}

// PauseUntil tells the limiter to grant no permit before Until, as when a
// server answered 429 for the whole key. A later pause extends an earlier
// one; an earlier one is ignored.
type PauseUntil struct {
	Until time.Time
}

// SetLimits changes the limiter's rates and bursts at run time.
type SetLimits struct {
	Limits Limits
}

// AdjustTokens corrects the token bucket once a call's real usage is known:
// a positive Delta charges tokens that were under-estimated, a negative one
// refunds an over-estimate.
type AdjustTokens struct {
	Delta int
}

// Tree names the actors of one executor.
type pids struct {
	Supervisor, Queue, Limiter *actor.PID
	Broker                     *actor.PID // nil without Config.LeaseBroker
	Callers                    []*actor.PID
}

// permitAsk asks the limiter for one request permit plus tokens API tokens.
type permitAsk struct {
	ticket uint64
	tokens int
}

// permitCancel withdraws an ask that is no longer wanted.
type permitCancel struct {
	ticket uint64
}

// permitGranted tells the queue that ticket may call now.
type permitGranted struct {
	ticket uint64
}

// permitDenied tells the queue that ticket's ask can never be granted (the
// token burst was lowered below its cost at run time).
type permitDenied struct {
	ticket uint64
	err    error
}

// limiterTick wakes the limiter when the head permit is due.
type limiterTick struct{}

// startCall tells a caller to run one attempt.
type startCall struct {
	ticket  uint64
	call    messages.Call
	attempt int
	timeout time.Duration
	base    context.Context
}

// cancelCall cancels the caller's running attempt of ticket with cause.
type cancelCall struct {
	ticket uint64
	cause  error
}

// callFinished is sent by a caller's worker to the caller when a call
// panicked (an outcome goes to the queue as callDone).
type callFinished struct {
	ticket uint64
	panic  *panics.Recovered
}

// callDone reports an attempt's outcome to the queue; the caller is idle
// again.
type callDone struct {
	caller *actor.PID
	ticket uint64
	result messages.Result
	err    error
	// stopped says the call failed after its caller, stopping, cancelled
	// it with ErrStopped: the tree is going away under the call.
	stopped bool
}

// callerReady tells the queue a caller (new or restarted) is idle.
type callerReady struct {
	caller *actor.PID
}

// callerCrashed tells the queue a caller panicked; it restarts and then sends
// callerReady.
type callerCrashed struct {
	caller *actor.PID
	reason any
}

// retryDue returns a request to the queue after its backoff.
type retryDue struct {
	ticket uint64
}

// callPanic is what a caller panics with when its call panicked, so the
// supervisor can tell the request's crash from a bug in the caller itself.
// It keeps the panic's value and the stack where it was recovered: a
// caller that panics again in its Receive would otherwise lose the stack.
type callPanic struct {
	panics.Recovered
}

// LogValue implements slog.LogValuer: the panic's value and its stack, not
// the raw program counters.
func (p *callPanic) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("panic", p.Value), slog.String("stack", string(p.Stack)))
}
