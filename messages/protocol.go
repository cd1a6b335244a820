package messages

import (
	"time"

	"github.com/google/uuid"
)

// Submit asks an executor to run a request. Send it with a sender (the
// actor's ctx.Request, or RootContext.Request): the executor replies to the
// sender with every [Event] of the request, the first being PENDING and the
// last terminal, or with a single [Rejected] if it refuses the request; a
// Submit that reaches the executor while it stops is rejected with
// [ErrStopped], even one still unread in a mailbox when the executor's
// actors stop. Once the executor has stopped its PID no longer exists, and
// protoactor answers the sender with its dead-letter response instead.
type Submit struct {
	// ID names the request; the zero UUID asks the executor to choose one.
	ID      uuid.UUID
	Request Request
}

// Rejected is the reply to a [Submit] that was not accepted. Err matches
// [ErrQueueFull], [ErrStopped], [ErrInvalidRequest] or
// [ErrTokensExceedBurst] under errors.Is. (A spend cap is not applied to
// requests submitted by message.)
type Rejected struct {
	ID  uuid.UUID
	Err error
}

// Cancel asks the executor to cancel a request. It has no reply: the request's
// snapshots show the outcome (CANCELLED, or its terminal state if it ended
// first). A Cancel for an ID the executor does not know is ignored: send it
// after the request's Submit, from the same sender (protoactor keeps one
// sender's messages in order), or once its PENDING snapshot has arrived.
type Cancel struct {
	ID uuid.UUID
	// Cause says why; nil means [ErrCancelled]. It becomes the error of the
	// CANCELLED snapshot.
	Cause error
}

// StatsQuery asks the executor for its [Stats]; it replies to the sender.
type StatsQuery struct{}

// Stats is a moment's count of an executor's work.
type Stats struct {
	Queued    int64 // waiting in the queue or for a retry
	InFlight  int64 // holding a caller: awaiting a permit or calling
	Completed int64
	Failed    int64
	Cancelled int64
	Retries   int64 // attempts after the first
	Restarts  int64 // caller restarts after a panic
	// Accepted counts requests accepted since start; Rejected those refused
	// at submit for a full queue.
	Accepted int64
	Rejected int64
	// Cached counts the requests answered from a cache (Request.Cached),
	// which are counted in Accepted and Completed too.
	Cached int64
	// RequestsAvailable and TokensAvailable are the permits the limiter
	// could grant now without waiting (TokensAvailable is -1 without a
	// token limit). With
	// a shared budget they are what the executor's leases hold
	// (Shared.HeldRequests and Shared.HeldTokens): its own buckets are not
	// used then.
	RequestsAvailable float64
	TokensAvailable   float64
	// PausedUntil is when a pause of the whole budget ends, if one is on.
	PausedUntil time.Time
	// Shared is the executor's part in a budget shared with other
	// processes; its Mode is "" without one.
	Shared SharedStats
}

// SharedMode is an executor's standing in a budget shared with other
// processes.
type SharedMode string

// The modes of a shared budget's member.
const (
	// SharedJoined: the executor takes its permits from leases that the
	// budget service grants.
	SharedJoined SharedMode = "joined"
	// SharedFallback: the service did not answer, or refused this
	// executor; it keeps to its local share of the limits (the limits
	// divided by the members expected) until the service answers again.
	SharedFallback SharedMode = "fallen back"
)

// SharedStats is an executor's view of a budget shared with other
// processes: its mode, and the leases it received and gave back. While it
// has fallen back, leases come from its local share.
type SharedStats struct {
	Mode SharedMode
	// Since is when the executor entered Mode.
	Since time.Time
	// Reason says why it fell back: no answer in time, or the service's
	// refusal (a wrong secret, a certificate refused). "" while joined.
	Reason string
	// Fallbacks and Rejoins count the changes of mode.
	Fallbacks, Rejoins int64
	// HeldRequests and HeldTokens are what the executor's unexpired leases
	// hold, not yet spent.
	HeldRequests, HeldTokens int64
	// Leases counts the leases received, with the requests and API tokens
	// they carried.
	Leases, LeasedRequests, LeasedTokens int64
	// Returned counts the leases given back with something unspent (when
	// they expire, or at once at a graceful stop), with what was given back.
	Returned, ReturnedRequests, ReturnedTokens int64
}
