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
// A [Router] spreads the requests of model groups over several
// deployments (keys, endpoints, providers), each an Executor of its own at
// its own limits, under one actor that owns every routed request: it
// starts each attempt where it can start soonest, takes failing
// deployments out with a circuit breaker, falls back across deployments
// and groups, and keeps one ID and one gap-free sequence of snapshots per
// request, each naming the deployment of its attempt. Start one with
// [StartRouter] or [SpawnRouter]; package imodel binds model endpoints to
// its deployments (imodel.NewRouter).
//
// Why the router is built so:
//
//   - Each deployment is an executor subtree of its own, not one executor
//     with a limiter per deployment: its limiter, queue, callers, retries
//     of one attempt, pauses after a 429 and shared-budget lease broker are
//     the executor's, unchanged and tested; a deployment's concurrency cap
//     and its key's limits stay its own, and one deployment's restart storm
//     stops it alone.
//   - The router actor holds the waiting requests and gives each
//     deployment only about Lookahead of its permits ahead (at least 2): a
//     request is placed when it can soon start, with the latest word on
//     each deployment's pace, pause and health, and so load follows the
//     budget each deployment has left (a deployment pulls at its own
//     rate), not a round robin. The choice is the deployment whose next
//     permit (actors.Tree.PermitDue) plus the attempts already waiting at
//     it come first; ties go by turns, in proportion to weights.
//   - An attempt is a request of one attempt at its deployment, built
//     there by the request's Builder, so each deployment gets its own
//     dialect, key and token estimate; the router retries. The routed
//     request's Lifecycle is handed to the attempt while it runs (its
//     PROCESSING and CALLING are published on the deployment's goroutine,
//     at the deployment's instants, before the call starts, so a tracer's
//     attempt span is open when the HTTP request goes out) and comes back
//     with the attempt's end: one owner at a time keeps Seq gap-free.
//   - Attempts given a deployment that is then paused past the lookahead,
//     or whose breaker opens, are taken back before their calls start (a
//     compare-and-swap with the call's start: a call sent is never taken
//     back, one taken back is never sent) and go elsewhere.
//   - Health is failsafe-go's circuit breaker, one per deployment, opened
//     by FailureThreshold unhealthy attempts in a row or at once by a
//     deployment that cannot serve (quota, a refused key), with one
//     half-open probe after BreakerDelay. An attempt can outlast the
//     breaker state it was given in, so its outcome counts only if the
//     breaker has not changed state since it was given.
//   - A failed attempt goes at once to a deployment the request has not
//     tried this round (its group's, then its fallback groups' in order);
//     once all were tried, the request waits out its backoff and starts a
//     new round, within its attempts. A group's deployments that are busy
//     (not failing) are waited for, not fallen back from.
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
