package actors

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
)

// Config assembles an actor tree. The runtime package fills it from its own,
// validated configuration; every field must be set unless marked optional.
type Config struct {
	Concurrency int      // number of callers
	Buckets     *Buckets // the limiter's buckets
	Admission   *Admission
	Counters    *Counters
	Calls       *sync.WaitGroup // tracks call goroutines
	// Dispatcher, if set, runs every actor of the tree (optional).
	Dispatcher *Dispatcher
	// LeaseBroker, if set, is spawned as the supervisor's child "budget",
	// and the limiter takes its permits from the leases it obtains instead
	// of from Budget's buckets (optional; see LeaseWanted).
	LeaseBroker *actor.Props

	CallTimeout time.Duration        // default per-attempt timeout; 0 for none
	MaxAttempts int                  // default total attempts, at least 1
	Retry       messages.RetryPolicy // default retry policy; optional

	// MaxRestarts caller restarts are allowed within RestartWindow; one more
	// is a restart storm: every pending request fails with ErrRestartStorm
	// and the tree stops.
	MaxRestarts   int
	RestartWindow time.Duration

	Observer func(messages.Event) // optional; called for every snapshot, must not block
	Logger   *slog.Logger

	// OnFatal is called (optional) from the supervisor when a restart storm
	// ends the executor, before the pending requests are failed.
	OnFatal func(error)
	// OnStopped is called (optional) from the supervisor once it has stopped,
	// with all its children, before Stopped is closed: no actor of the tree
	// handles a message after it.
	OnStopped func()
	// Stopped is closed when the supervisor has stopped, with all its children.
	Stopped chan struct{}
}

// ValidateRequest checks a request before it is accepted: what can never run
// is refused at submit, never left to wait.
func ValidateRequest(r *messages.Request, b *Buckets) error {
	switch {
	case r.Call == nil:
		return fmt.Errorf("%w: no Call", messages.ErrInvalidRequest)
	case r.Tokens < 0:
		return fmt.Errorf("%w: negative Tokens %d", messages.ErrInvalidRequest, r.Tokens)
	case r.Timeout < 0:
		return fmt.Errorf("%w: negative Timeout %v", messages.ErrInvalidRequest, r.Timeout)
	case r.MaxAttempts < 0:
		return fmt.Errorf("%w: negative MaxAttempts %d", messages.ErrInvalidRequest, r.MaxAttempts)
	}
	if burst := b.TokenBurst(); b.TokensEnabled() && r.Tokens > burst {
		return &messages.TokenLimitError{Tokens: r.Tokens, Burst: burst}
	}
	return nil
}
