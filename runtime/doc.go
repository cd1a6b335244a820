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
//
// Two additions serve what requests cost. A [SpendCap] in Config.SpendCap
// bounds the money the requests spend: Submit reserves each request's
// estimated cost (messages.Request.EstimatedCost) and refuses the one that
// would pass the cap; the reservation becomes the request's actual cost
// when it ends. A router over several executors can share one SpendCap
// among them, or consult it at its own admission. And a request whose
// reply is already known, such as one a cache holds (messages.Request.Cached),
// is answered by Submit at once: it gets a handle with PENDING and then
// COMPLETED, takes no queue slot, no permit and nothing of the cap, and is
// counted in Stats.Cached.
package runtime
