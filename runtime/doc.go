// Package runtime runs lionactor's executor: an actor tree that executes
// calls under a request-rate limit, an API-token-rate limit and a
// concurrency cap, and reports every request's life as immutable snapshots.
//
// Start an executor with its own actor system, or spawn it inside an actor
// system you already run:
//
//	ex, err := runtime.Start(runtime.DefaultConfig())
//	...
//	h, err := ex.Submit(ctx, messages.Request{Call: messages.CallFunc(fn)})
//	final, err := h.Wait(ctx)
//	...
//	err = ex.Stop(ctx)
//
// Every accepted request ends in exactly one terminal snapshot (COMPLETED,
// FAILED or CANCELLED), whatever happens: a panic in the call, a timeout, a
// cancel, or a stop. A request that cannot be accepted is refused at Submit
// with a typed error instead.
//
// Other actors drive an executor by plain messages (package messages) sent
// to [Executor.PID].
package runtime
