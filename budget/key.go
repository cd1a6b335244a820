package budget

import (
	"crypto/sha256"
	"encoding/hex"
	"math"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
)

// KeyFor names the budget of one API key at one endpoint: the endpoint and
// a SHA-256 hash of the key, so that the key itself never crosses the
// network nor appears in the service's logs. Every member using the same
// key at the same endpoint must use the same name.
func KeyFor(endpoint, apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return endpoint + "#" + hex.EncodeToString(sum[:16])
}

// toWire converts limits for a LeaseRequest: a rate of 0 means off.
func toWire(l actors.Limits) *budgetpb.Limits {
	w := &budgetpb.Limits{RequestBurst: int64(l.RequestBurst)}
	if l.RequestsPerSecond != rate.Inf {
		w.RequestsPerSecond = float64(l.RequestsPerSecond)
	}
	if l.TokensEnabled() {
		w.TokensPerSecond, w.TokenBurst = float64(l.TokensPerSecond), int64(l.TokenBurst)
	}
	return w
}

// fromWire converts and sanitizes limits received from a member: nonsense
// (negative, NaN, a rate without a burst) becomes the nearest safe value.
func fromWire(w *budgetpb.Limits) actors.Limits {
	l := actors.Limits{RequestsPerSecond: rate.Inf}
	if r := w.GetRequestsPerSecond(); r > 0 && !math.IsInf(r, 1) {
		l.RequestsPerSecond = rate.Limit(r)
		l.RequestBurst = int(clamp(w.GetRequestBurst(), 1, math.MaxInt32))
	}
	if r := w.GetTokensPerSecond(); r > 0 && !math.IsInf(r, 1) {
		l.TokensPerSecond = rate.Limit(r)
		l.TokenBurst = int(clamp(w.GetTokenBurst(), 1, math.MaxInt32))
	}
	return l
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// lowest is the tighter of two limits, field by field.
func lowest(a, b actors.Limits) actors.Limits {
	out := actors.Limits{
		RequestsPerSecond: min(a.RequestsPerSecond, b.RequestsPerSecond),
		RequestBurst:      minPositive(a.RequestBurst, b.RequestBurst),
	}
	switch {
	case !a.TokensEnabled():
		out.TokensPerSecond, out.TokenBurst = b.TokensPerSecond, b.TokenBurst
	case !b.TokensEnabled():
		out.TokensPerSecond, out.TokenBurst = a.TokensPerSecond, a.TokenBurst
	default:
		out.TokensPerSecond, out.TokenBurst = min(a.TokensPerSecond, b.TokensPerSecond), min(a.TokenBurst, b.TokenBurst)
	}
	return out
}

// minPositive is the smaller of two bursts, where 0 (no request limit)
// counts as none.
func minPositive(a, b int) int {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// share is a member's part of limits when it budgets alone: limits divided
// by the number of members expected, bursts at least 1.
func share(l actors.Limits, members int) actors.Limits { return scaleLimits(l, 1, members) }

// scaleLimits is num/den of limits (num ≤ den): the rates so scaled, the
// request burst too but at least 1.
func scaleLimits(l actors.Limits, num, den int) actors.Limits {
	if num >= den {
		return l
	}
	n, d := rate.Limit(num), rate.Limit(den)
	out := l
	if l.RequestsPerSecond != rate.Inf {
		out.RequestsPerSecond = l.RequestsPerSecond * n / d
		out.RequestBurst = max(1, l.RequestBurst*num/den)
	}
	if l.TokensEnabled() {
		out.TokensPerSecond = l.TokensPerSecond * n / d
		// The token burst stays whole: a request may cost up to it, and
		// the rate alone keeps the share.
	}
	return out
}
