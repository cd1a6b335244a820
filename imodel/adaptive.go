package imodel

import (
	"net/http"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// lowWatermark is the share of a provider budget below which the executor
// stops spending and waits for the provider's bucket to refill. Requests
// already in flight were admitted against the provider's older count, so
// running the budget to zero would turn them into 429s.
const lowWatermark = 0.05

// parseRateLimit reads the provider's rate-limit headers; ok is false when
// there are none, or they do not parse.
func parseRateLimit(p Provider, h http.Header, now time.Time) (wire.RateLimit, bool) {
	var (
		rl  wire.RateLimit
		err error
	)
	if p == Anthropic {
		rl, err = wire.ParseAnthropicRateLimit(h, now)
	} else {
		rl, err = wire.ParseOpenAIRateLimit(h, now)
	}
	if err != nil || (!rl.Requests.Present() && !rl.Tokens.Present()) {
		return wire.RateLimit{}, false
	}
	return rl, true
}

// pauseFor returns until when the executor should grant no permit, judging
// by a response's rate-limit headers, or the zero time. When the provider
// says fewer than lowWatermark of its requests or tokens are left, the
// pause lasts until its bucket has refilled to that level at the rate the
// headers imply (the budget refills to Limit by Reset).
func pauseFor(rl wire.RateLimit, now time.Time) time.Time {
	var until time.Time
	for _, b := range []wire.LimitState{rl.Requests, rl.Tokens} {
		if !b.HasLimit || !b.HasRemaining || b.Limit <= 0 {
			continue
		}
		low := max(1, int(float64(b.Limit)*lowWatermark))
		resetIn := b.ResetIn(now)
		if b.Remaining >= low || resetIn <= 0 {
			continue
		}
		perSecond := float64(b.Limit-b.Remaining) / resetIn.Seconds()
		wait := time.Duration(float64(low-b.Remaining) / perSecond * float64(time.Second))
		if t := now.Add(min(wait, resetIn)); t.After(until) {
			until = t
		}
	}
	return until
}
