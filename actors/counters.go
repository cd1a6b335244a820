package actors

import (
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// counters are the executor's running totals. The actors write them; Stats
// reads them from any goroutine without asking the actors.
type counters struct {
	queued, inFlight             atomic.Int64
	completed, failed, cancelled atomic.Int64
	retries, restarts            atomic.Int64
	accepted, rejected           atomic.Int64
}

// Accepted counts a request accepted for the queue.
func (c *counters) Accepted() { c.accepted.Add(1) }

// Rejected counts a submit refused because the queue was full.
func (c *counters) Rejected() { c.rejected.Add(1) }

// Stats returns the counts, with the budget's availability at now.
func (c *counters) Stats(b *buckets, now time.Time) messages.Stats {
	s := messages.Stats{
		Queued:    c.queued.Load(),
		InFlight:  c.inFlight.Load(),
		Completed: c.completed.Load(),
		Failed:    c.failed.Load(),
		Cancelled: c.cancelled.Load(),
		Retries:   c.retries.Load(),
		Restarts:  c.restarts.Load(),
		Accepted:  c.accepted.Load(),
		Rejected:  c.rejected.Load(),
	}
	if b == nil {
		return s
	}
	s.PausedUntil = b.PausedUntil()
	if shared, ok := b.shared.stats(); ok {
		// The buckets are not used: what can be granted now is what the
		// leases hold.
		s.Shared = shared
		s.RequestsAvailable, s.TokensAvailable = float64(shared.HeldRequests), float64(shared.HeldTokens)
		if !b.TokensEnabled() {
			s.TokensAvailable = -1
		}
		return s
	}
	s.RequestsAvailable = b.RequestsAvailable(now)
	s.TokensAvailable = b.TokensAvailable(now)
	return s
}
