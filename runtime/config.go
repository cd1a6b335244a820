package runtime

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/messages"
)

// Unlimited, as RequestsPerInterval, turns the request-rate limit off.
const Unlimited = math.MaxInt

// Config configures an [Executor]. Start from [DefaultConfig]: the zero
// Config is invalid, because a zero rate, concurrency or capacity is far more
// often a mistake than a wish.
type Config struct {
	// QueueCapacity bounds the requests waiting in the queue (not those
	// already at a caller, nor those backing off before a retry).
	QueueCapacity int
	// WaitForRoom makes Submit wait for queue room while its context allows,
	// instead of failing at once with ErrQueueFull.
	WaitForRoom bool
	// Concurrency is the number of callers: at most this many calls run at once.
	Concurrency int

	// RequestsPerInterval requests may start per RequestInterval, on average;
	// [Unlimited] turns the limit off.
	//
	// Requests start evenly paced from the first one: with the default
	// RequestBurst, one every RequestInterval/RequestsPerInterval, so that no
	// window of one second ever sees more than ⌈rate per second⌉ + 1 starts.
	// Providers enforce a per-minute limit over shorter windows too, and a
	// minute's worth started at once would be refused.
	RequestsPerInterval int
	RequestInterval     time.Duration
	// RequestBurst is how many requests may start at once after a quiet
	// spell; 0 means 1, an even pace from the first request. A larger burst
	// lets up to RequestBurst requests start together, so that a window of
	// one second may see up to RequestBurst + rate per second starts.
	RequestBurst int

	// TokensPerInterval API tokens may be spent per TokenInterval; 0 turns
	// the token limit off.
	TokensPerInterval int
	TokenInterval     time.Duration
	// TokenBurst is the token bucket's capacity, the most one request may
	// cost; 0 means TokensPerInterval.
	TokenBurst int

	// CallTimeout bounds each attempt unless the request sets its own; 0
	// means no limit.
	CallTimeout time.Duration
	// MaxAttempts is the default total number of attempts per request.
	MaxAttempts int
	// Retry is the default retry policy; nil means failed attempts are not
	// retried.
	Retry messages.RetryPolicy

	// MaxRestarts caller restarts are tolerated within RestartWindow; one
	// more fails every pending request with ErrRestartStorm and stops the
	// executor.
	MaxRestarts   int
	RestartWindow time.Duration

	// Observer, if set, is called with every snapshot of every request, in
	// order per request. It runs on the executor's actor goroutines (and,
	// for PENDING, on the submitting goroutine), so it must be fast, safe for
	// concurrent use, and never block.
	Observer func(messages.Event)
	// RequestContext, if set, is called by Submit with the submitter's
	// context and the request's PENDING snapshot, before Observer sees that
	// snapshot. The values of the context it returns reach every call's
	// context in place of ctx's; it must return ctx or a context derived
	// from it, and its cancellation is ignored (ctx's still cancels the
	// request). It lets an observer tie a request to what its submitter's
	// context carries, such as a trace, without the executor knowing what
	// that is. It runs on the submitting goroutine, so it must be fast and
	// never block. Requests submitted by message (messages.Submit) have no
	// context and are not passed to it.
	RequestContext func(ctx context.Context, pending messages.Event) context.Context
	// Logger receives the executor's and, for an executor with its own actor
	// system, protoactor's logs. Nil means quiet.
	Logger *slog.Logger

	// SharedBudget, if set, makes the executor take its rate permits from a
	// budget shared with other processes (see package budget) instead of
	// from its own buckets. The request and token limits above are still
	// this executor's view of the key's limits: the shared budget applies
	// the lowest of its members', and a request costing more tokens than
	// TokenBurst is still refused at submit.
	SharedBudget SharedBudget

	// SpendCap, if set, bounds what the requests submitted with Submit
	// cost, in US dollars: Submit refuses (ErrSpendCap) a request whose
	// estimated cost (Request.EstimatedCost), with what the ended requests
	// cost and what those in flight are estimated to, would pass the cap,
	// and refuses (ErrPriceUnknown) a request without a price. Several
	// executors may share one SpendCap. Requests submitted by message are
	// not counted.
	SpendCap *SpendCap
}

// SharedBudget connects an executor to a rate budget shared by several
// processes. Package budget's MemberConfig implements it.
type SharedBudget interface {
	// Validate reports an invalid configuration, as a *messages.ConfigError.
	Validate() error
	// Attach readies system for the executor's lease broker (starting what
	// the broker needs, such as the remote layer) and returns the broker's
	// props, with a function that releases what Attach started. The
	// executor calls release once its actors have stopped. The broker
	// speaks package actors' lease protocol (LeaseWanted, LeaseGranted,
	// LeaseUnused, ReturnLeases at a graceful stop) and may report its
	// standing to its parent with actors.BrokerState.
	Attach(system *actor.ActorSystem, limits actors.Limits, logger *slog.Logger) (broker *actor.Props, release func(), err error)
}

// DefaultConfig returns the defaults: a queue of 1000, 10 callers, 10
// requests per second evenly paced (a burst of 1), no token limit (60 s interval once
// TokensPerInterval is set), one attempt, no timeout, and at most 10 caller
// restarts in 10 s.
func DefaultConfig() Config {
	return Config{
		QueueCapacity:       1000,
		Concurrency:         10,
		RequestsPerInterval: 10,
		RequestInterval:     time.Second,
		TokenInterval:       time.Minute,
		MaxAttempts:         1,
		MaxRestarts:         10,
		RestartWindow:       10 * time.Second,
	}
}

// Validate reports the first invalid field as a *messages.ConfigError, which
// matches ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &messages.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.QueueCapacity <= 0:
		return bad("QueueCapacity", "must be positive")
	case c.Concurrency <= 0:
		return bad("Concurrency", "must be positive")
	case c.RequestsPerInterval <= 0:
		return bad("RequestsPerInterval", "must be positive (Unlimited turns the limit off)")
	case c.RequestInterval <= 0:
		return bad("RequestInterval", "must be positive")
	case c.RequestBurst < 0:
		return bad("RequestBurst", "must not be negative")
	case c.TokensPerInterval < 0:
		return bad("TokensPerInterval", "must not be negative (0 turns the limit off)")
	case c.TokensPerInterval > 0 && c.TokenInterval <= 0:
		return bad("TokenInterval", "must be positive when TokensPerInterval is set")
	case c.TokenBurst < 0:
		return bad("TokenBurst", "must not be negative")
	case c.CallTimeout < 0:
		return bad("CallTimeout", "must not be negative")
	case c.MaxAttempts <= 0:
		return bad("MaxAttempts", "must be positive")
	case c.MaxRestarts < 0:
		return bad("MaxRestarts", "must not be negative")
	case c.RestartWindow <= 0:
		return bad("RestartWindow", "must be positive")
	}
	if c.SharedBudget != nil {
		return c.SharedBudget.Validate()
	}
	return nil
}

// limits converts the configured rates into the limiter's buckets.
func (c Config) limits() actors.Limits {
	l := actors.Limits{RequestsPerSecond: rate.Inf}
	if c.RequestsPerInterval != Unlimited {
		l.RequestsPerSecond = perSecond(c.RequestsPerInterval, c.RequestInterval)
		// A burst of 1 by default: the bucket holds one request, so
		// requests start 1/rate apart from the first. The token bucket
		// below keeps its burst of a whole interval: a request's tokens
		// must fit in it, and the providers' token buckets hold a minute.
		l.RequestBurst = max(c.RequestBurst, 1)
	}
	if c.TokensPerInterval > 0 {
		l.TokensPerSecond = perSecond(c.TokensPerInterval, c.TokenInterval)
		l.TokenBurst = c.TokenBurst
		if l.TokenBurst == 0 {
			l.TokenBurst = c.TokensPerInterval
		}
	}
	return l
}

func perSecond(n int, per time.Duration) rate.Limit {
	return rate.Limit(float64(n) / per.Seconds())
}
