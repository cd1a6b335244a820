package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sourcegraph/conc/panics"

	"github.com/lionactor/lionactor/messages"
)

// Sink receives the snapshots of one request, in order. Publish is called on
// an actor goroutine and must not block.
type Sink interface {
	Publish(messages.Event)
}

// enqueueRequest hands an accepted request to the queue actor (see
// Tree.Enqueue), QUEUED already.
type enqueueRequest struct {
	entry *entry
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

// permitsWanted asks the limiter for the permits of the requests the queue
// has callers for, beyond what it holds: up to requests requests and tokens
// API tokens, of which the head request needs minRequests (0 or 1) and
// minTokens before it can go; headTokens is the head's whole cost. The
// queue has at most one out: it asks again only after an answer or a
// permitsWithdrawn.
type permitsWanted struct {
	requests, tokens       int64
	minRequests, minTokens int64
	headTokens             int64
}

// permitsWithdrawn drops the queue's ask: it has nothing waiting any more.
type permitsWithdrawn struct{}

// permitsGranted answers permitsWanted: the queue may spend requests and
// tokens, on its requests in their order; unlimited, no limit applies and
// it may spend without asking until permitsRevoked.
type permitsGranted struct {
	requests, tokens int64
	unlimited        bool
}

// permitsDenied answers a permitsWanted whose head can never be granted
// (its cost is over the token burst, which was lowered at run time).
type permitsDenied struct {
	err error
}

// permitsRevoked takes back what the queue holds, as a pause begins or the
// limits change: it answers with permitsReturned and asks again.
type permitsRevoked struct{}

// permitsReturned gives back permits the queue holds and will not spend.
type permitsReturned struct {
	requests, tokens int64
}

// limiterTick wakes the limiter when the head permit is due.
type limiterTick struct{}

// callFinished is sent by a caller's worker to the caller when a call
// panicked (an outcome goes to the queue as callDone).
type callFinished struct {
	ticket uint64
	panic  *panics.Recovered
	// worker is the incarnation of the worker that ran it: a restarted
	// caller ignores what its predecessor's worker reports.
	worker <-chan struct{}
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

// callerReady tells the queue a caller (new or restarted) is idle, and
// where its worker takes calls.
type callerReady struct {
	caller *actor.PID
	work   chan<- job
	// stop is cancelled, with ErrStopped, when the caller stops or
	// restarts: the calls it runs then are cut short.
	stop context.Context
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
