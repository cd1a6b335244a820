package runtime

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/lionactor/lionactor/messages"
)

// SpendCap stops admitting requests once what they cost would pass a limit
// in US dollars. It holds two sums: what the requests that ended actually
// cost (spent), and the estimated cost of those admitted and not yet ended
// (committed). A request is admitted only if spent + committed + its own
// estimate stays within the limit, so the cap holds while the requests in
// flight are still running, as far as each estimate bounds its request's
// real cost (imodel estimates the input with OpenAI's tokenizers and the
// output at max_tokens).
//
// An executor consults the SpendCap in Config.SpendCap at Submit, and a
// Router the one in RouterConfig.SpendCap, for all its deployments at
// once. Several executors can share one SpendCap; so can code that admits
// work of its own (Reserve, then Settle or Release), as long as no request
// is reserved twice.
//
// Its methods are safe for concurrent use.
type SpendCap struct {
	limit float64

	mu        sync.Mutex
	spent     float64
	committed float64
	inFlight  int           // reservations not yet settled
	changed   chan struct{} // made by a waiter, closed at the next settle
}

// NewSpendCap returns a cap of limit US dollars, nothing spent. A limit
// that is not a positive number is refused with a *messages.ConfigError.
func NewSpendCap(limit float64) (*SpendCap, error) {
	if !(limit > 0) || math.IsInf(limit, 1) {
		return nil, &messages.ConfigError{Field: "SpendCap", Reason: fmt.Sprintf("the limit must be a positive number of US dollars, got %v", limit)}
	}
	return &SpendCap{limit: limit}, nil
}

// admit reserves what r is estimated to cost, as an executor's or a
// router's Submit does: a nil SpendCap (no cap) admits every request, and
// a cap refuses a request without a price, whose cost it could not count
// (messages.ErrPriceUnknown).
func (c *SpendCap) admit(r *messages.Request) error {
	if c == nil {
		return nil
	}
	if r.Pricing == nil {
		return fmt.Errorf("%w: a spend cap is set and the request has no Pricing", messages.ErrPriceUnknown)
	}
	return c.Reserve(r.EstimatedCost)
}

// finish settles a reservation admit made: with the request's actual
// cost once it ended, or 0 when it was not accepted after all. A nil
// SpendCap has nothing to settle.
func (c *SpendCap) finish(reserved, actual float64) {
	if c != nil {
		c.Settle(reserved, actual)
	}
}

// Limit is the cap, in US dollars.
func (c *SpendCap) Limit() float64 { return c.limit }

// Charge counts usd as spent outside the cap's requests, such as what an
// earlier run of the same work cost, so that the cap bounds the whole.
func (c *SpendCap) Charge(usd float64) {
	if !(usd > 0) {
		return
	}
	c.mu.Lock()
	c.spent += usd
	c.mu.Unlock()
}

// Reserve admits a request whose cost is estimated at estimate, counting
// the estimate as committed until Settle or Release, or refuses it with a
// *messages.SpendCapError if spent + committed + estimate would pass the
// limit.
func (c *SpendCap) Reserve(estimate float64) error {
	estimate = max(estimate, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spent+c.committed+estimate > c.limit {
		return c.refusal(estimate)
	}
	c.committed += estimate
	c.inFlight++
	return nil
}

// refusal describes why estimate does not fit. The caller holds mu.
func (c *SpendCap) refusal(estimate float64) error {
	return &messages.SpendCapError{Limit: c.limit, Spent: c.spent, Committed: c.committed, Estimate: estimate}
}

// Settle ends a reservation of estimate made by Reserve: its request
// ended, having cost actual.
func (c *SpendCap) Settle(estimate, actual float64) {
	c.mu.Lock()
	c.spent += max(actual, 0)
	c.release(estimate)
	c.mu.Unlock()
}

// Release ends a reservation of estimate made by Reserve for a request
// that was not sent after all, and cost nothing.
func (c *SpendCap) Release(estimate float64) { c.Settle(estimate, 0) }

// release takes estimate off the committed sum and wakes the waiters. The
// caller holds mu.
func (c *SpendCap) release(estimate float64) {
	c.committed = max(c.committed-max(estimate, 0), 0)
	c.inFlight = max(c.inFlight-1, 0)
	if c.inFlight == 0 {
		c.committed = 0 // no rounding left behind
	}
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Wait waits until a request estimated at estimate would be admitted now
// and returns nil (without reserving: Reserve may still refuse it if
// another request took the room first), or returns the
// *messages.SpendCapError at once when it never can be: nothing is in
// flight whose end could free room. It returns ctx's error if ctx ends
// first.
func (c *SpendCap) Wait(ctx context.Context, estimate float64) error {
	estimate = max(estimate, 0)
	for {
		c.mu.Lock()
		if c.spent+c.committed+estimate <= c.limit {
			c.mu.Unlock()
			return nil
		}
		if c.inFlight == 0 {
			err := c.refusal(estimate)
			c.mu.Unlock()
			return err
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// SpendStats is a moment's account of a SpendCap, in US dollars.
type SpendStats struct {
	Limit     float64
	Spent     float64 // the actual cost of the requests that ended, and what was charged
	Committed float64 // the estimated cost of the requests admitted and not ended
	InFlight  int     // the requests admitted and not ended
}

// Stats returns the cap's sums.
func (c *SpendCap) Stats() SpendStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return SpendStats{Limit: c.limit, Spent: c.spent, Committed: c.committed, InFlight: c.inFlight}
}
