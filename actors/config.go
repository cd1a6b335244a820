package actors

import (
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
)

// Config configures an executor's actor tree. Package runtime fills it from
// its own Config, which it has validated; so must anyone who spawns a tree
// directly.
type Config struct {
	Concurrency   int    // callers: at most this many calls run at once
	QueueCapacity int    // requests waiting in the queue, at most
	Limits        Limits // the limiter's buckets

	CallTimeout time.Duration        // default per-attempt timeout; 0 for none
	MaxAttempts int                  // default total attempts, at least 1
	Retry       messages.RetryPolicy // default retry policy; nil: no retries

	// MaxRestarts caller restarts are allowed within RestartWindow; one more
	// is a restart storm: every pending request fails with ErrRestartStorm
	// and the tree stops.
	MaxRestarts   int
	RestartWindow time.Duration

	// Observer, if set, is called with every snapshot, on the tree's actor
	// goroutines; it must not block.
	Observer func(messages.Event)
	Logger   *slog.Logger

	// LeaseBroker, if set, is spawned as the supervisor's child "budget",
	// and the limiter takes its permits from the leases it obtains instead
	// of from its own buckets (see LeaseWanted).
	LeaseBroker *actor.Props

	// OnStopped, if set, is called on the supervisor's goroutine once the
	// tree has stopped, with all its children: no actor of the tree
	// handles a message after it. Requests handed to the tree whose hand-off
	// the queue never read (protoactor drops what is left in a stopped
	// mailbox) are the caller's to end there. It is given the tree, which
	// may not have been returned by Spawn yet (a tree that stops while
	// starting).
	OnStopped func(*Tree)
}

// config is what the tree's actors share: the Config, and the state that
// the Tree's methods read and change from other goroutines.
type config struct {
	Config
	buckets   *buckets
	admission *admission
	counters  *counters
	calls     sync.WaitGroup // every caller's worker goroutine
	dispatch  *dispatcher
	fatal     atomic.Pointer[error] // set by a restart storm
	stopped   chan struct{}         // closed once the tree has stopped
	tree      *Tree                 // for OnStopped
}

// validateRequest checks a request before it is accepted: what can never
// run is refused at submit, never left to wait.
func validateRequest(r *messages.Request, b *buckets) error {
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

// newConfig prepares the shared state of a tree for cfg.
func newConfig(cfg Config) *config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &config{
		Config:    cfg,
		buckets:   newBuckets(cfg.Limits),
		admission: newAdmission(cfg.QueueCapacity),
		counters:  &counters{},
		// A worker per core, and a few more so that a queue, a limiter and
		// busy callers rarely wait for one.
		dispatch: newDispatcher(goruntime.GOMAXPROCS(0)+2, 300),
		stopped:  make(chan struct{}),
	}
}

// stoppedEnd is how a request the stopping tree can no longer run ends:
// FAILED with the storm's error once a restart storm stopped the tree
// (whoever submitted it raced the storm, and the storm is why it did not
// run), CANCELLED with ErrStopped otherwise.
func (c *config) stoppedEnd() (messages.RequestStatus, error) {
	if p := c.fatal.Load(); p != nil {
		return messages.StatusFailed, *p
	}
	return messages.StatusCancelled, messages.ErrStopped
}
