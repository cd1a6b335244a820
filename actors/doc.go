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
// Most users want package runtime, which starts this tree and gives it a Go
// API; this package is for those who assemble the tree themselves.
package actors
