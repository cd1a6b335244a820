package runtime

import "github.com/lionactor/lionactor/messages"

// These aliases let users of the runtime write runtime.Request and so on;
// the types live in package messages, which actors of other systems import.
type (
	// Request is one unit of work; see [messages.Request].
	Request = messages.Request
	// Call performs one attempt; see [messages.Call].
	Call = messages.Call
	// CallFunc adapts a function to [Call].
	CallFunc = messages.CallFunc
	// Result is what a successful call returns.
	Result = messages.Result
	// Event is one immutable snapshot of a request.
	Event = messages.Event
	// Stats is a moment's count of an executor's work.
	Stats = messages.Stats
	// RetryPolicy decides whether a failed attempt is tried again.
	RetryPolicy = messages.RetryPolicy
	// RequestStatus is the stage of a request's life.
	RequestStatus = messages.RequestStatus
)

// The request states; see package messages.
const (
	StatusPending    = messages.StatusPending
	StatusQueued     = messages.StatusQueued
	StatusProcessing = messages.StatusProcessing
	StatusCalling    = messages.StatusCalling
	StatusCompleted  = messages.StatusCompleted
	StatusFailed     = messages.StatusFailed
	StatusCancelled  = messages.StatusCancelled
)

// The runtime's sentinel errors; see package messages for their meaning.
var (
	ErrInvalidConfig     = messages.ErrInvalidConfig
	ErrInvalidRequest    = messages.ErrInvalidRequest
	ErrQueueFull         = messages.ErrQueueFull
	ErrStopped           = messages.ErrStopped
	ErrCancelled         = messages.ErrCancelled
	ErrTimeout           = messages.ErrTimeout
	ErrCallerCrashed     = messages.ErrCallerCrashed
	ErrRestartStorm      = messages.ErrRestartStorm
	ErrTokensExceedBurst = messages.ErrTokensExceedBurst
)
