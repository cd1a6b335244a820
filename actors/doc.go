// Package actors implements the actor tree of a lionactor executor on
// protoactor-go: a supervisor that spawns one queue actor, one limiter actor
// and N caller actors, and restarts callers that fail.
//
// The queue actor owns every accepted request until it ends: it keeps the
// bounded FIFO, reserves an idle caller for the head request, asks the limiter
// for its permit, hands it to the caller, and turns each outcome into the next
// immutable snapshot (COMPLETED, FAILED, a retry, or CANCELLED). The limiter
// grants permits in FIFO order when its token buckets allow, by timers, never
// by sleeping. A caller runs one call at a time in a goroutine with a context
// and reports back by message.
//
// Most users want package runtime, which starts this tree ([Spawn]) and
// gives it a Go API with a handle per request. What this package exports
// besides is the tree's protocol with the actors around it:
//
//   - a lease broker, which makes the limiter take its permits from a budget
//     shared with other processes (package budget provides two), receives
//     [LeaseWanted] and answers [LeaseGranted]; it is told [LeaseUnused],
//     [ReturnLeases], and the [PauseUntil], [AdjustTokens] and [SetLimits]
//     the limiter sees, and reports its standing as [BrokerState];
//   - any actor may send the executor's PID [PauseUntil], [AdjustTokens]
//     and [SetLimits], besides the messages of package messages.
package actors
