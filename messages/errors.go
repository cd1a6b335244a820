package messages

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of the runtime. Test for them with [errors.Is]; the typed
// errors below wrap them and carry the details.
var (
	// ErrInvalidConfig is wrapped by every [ConfigError].
	ErrInvalidConfig = errors.New("lionactor: invalid config")
	// ErrInvalidRequest is returned at submit for a request that can never run
	// as given (no call, a negative token count, ...).
	ErrInvalidRequest = errors.New("lionactor: invalid request")
	// ErrQueueFull is returned at submit when the queue is at capacity. The
	// request was never accepted.
	ErrQueueFull = errors.New("lionactor: queue full")
	// ErrStopped is returned at submit once the executor is stopping or
	// stopped, and is the cause of requests cancelled by an immediate stop.
	ErrStopped = errors.New("lionactor: executor stopped")
	// ErrCancelled is the cause of a request cancelled by its submitter.
	ErrCancelled = errors.New("lionactor: request cancelled")
	// ErrTimeout is the cause of a call that ran past its timeout.
	ErrTimeout = errors.New("lionactor: call timed out")
	// ErrCallerCrashed is wrapped by [CallerCrashError]: the caller running the
	// request panicked.
	ErrCallerCrashed = errors.New("lionactor: caller crashed")
	// ErrRestartStorm fails every pending request when callers crash more
	// often than the supervisor's restart budget allows; the executor stops.
	ErrRestartStorm = errors.New("lionactor: caller restart limit exceeded")
	// ErrTokensExceedBurst is wrapped by [TokenLimitError]: the request needs
	// more API tokens than the token bucket can ever hold.
	ErrTokensExceedBurst = errors.New("lionactor: request tokens exceed the token bucket's burst")
	// ErrSpendCap is wrapped by [SpendCapError]: admitting the request
	// would let what is spent pass the spend cap.
	ErrSpendCap = errors.New("lionactor: spend cap reached")
	// ErrPriceUnknown is returned at submit, under a spend cap, for a
	// request without a price (Request.Pricing): what it would spend
	// cannot be counted against the cap.
	ErrPriceUnknown = errors.New("lionactor: price unknown")
)

// ConfigError reports an invalid configuration field. It matches
// [ErrInvalidConfig] under [errors.Is].
type ConfigError struct {
	Field  string // the field's name, e.g. "Concurrency"
	Reason string // what is wrong with it
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("lionactor: invalid config: %s: %s", e.Field, e.Reason)
}

// Unwrap returns [ErrInvalidConfig].
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// TokenLimitError reports a request whose token cost can never fit in the
// token bucket. It matches [ErrTokensExceedBurst] under [errors.Is].
type TokenLimitError struct {
	Tokens int // the request's estimated tokens
	Burst  int // the token bucket's capacity
	// AtLeast says Tokens is a lower bound of the estimate: the request
	// was refused by its size alone, without counting its tokens.
	AtLeast bool
}

// Error implements error.
func (e *TokenLimitError) Error() string {
	atLeast := ""
	if e.AtLeast {
		atLeast = "at least "
	}
	return fmt.Sprintf("lionactor: request needs %s%d tokens but the token bucket holds at most %d", atLeast, e.Tokens, e.Burst)
}

// Unwrap returns [ErrTokensExceedBurst].
func (e *TokenLimitError) Unwrap() error { return ErrTokensExceedBurst }

// SpendCapError reports a request refused by a spend cap: what was spent,
// with the estimated cost of what is in flight and of the request, would
// pass the cap. It matches [ErrSpendCap] under [errors.Is]. All amounts
// are in US dollars.
type SpendCapError struct {
	Limit     float64 // the cap
	Spent     float64 // the actual cost of the requests that ended, and what was spent before
	Committed float64 // the estimated cost of the requests admitted and not ended
	Estimate  float64 // the estimated cost of the request refused
}

// Error implements error.
func (e *SpendCapError) Error() string {
	return fmt.Sprintf("lionactor: spend cap of $%.4f reached: $%.4f spent and $%.4f in flight leave no room for a request of up to $%.4f",
		e.Limit, e.Spent, e.Committed, e.Estimate)
}

// Unwrap returns [ErrSpendCap].
func (e *SpendCapError) Unwrap() error { return ErrSpendCap }

// CallerCrashError reports that the caller running a request panicked. It
// matches [ErrCallerCrashed] under [errors.Is].
type CallerCrashError struct {
	Panic any // the value passed to panic
	// Stack is the stack of the goroutine that panicked, as it was when
	// the panic was recovered (nil when the caller itself failed rather
	// than the call). The executor's log has it too.
	Stack []byte
}

// Error implements error. It names the panic value, not the stack.
func (e *CallerCrashError) Error() string {
	return fmt.Sprintf("lionactor: caller crashed: %v", e.Panic)
}

// Unwrap returns [ErrCallerCrashed].
func (e *CallerCrashError) Unwrap() error { return ErrCallerCrashed }

// RetryAfterError is implemented by call errors that carry the server's
// minimum delay before a retry (a Retry-After header). Retry policies treat it
// as the least backoff.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// PauseError is implemented by call errors that mean the whole shared budget
// must wait, such as a 429 from the provider: the executor's limiter grants no
// permit to any request before PauseUntil.
type PauseError interface {
	error
	PauseUntil() time.Time
}
