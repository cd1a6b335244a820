package runtime

import (
	"log/slog"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// health is a deployment's circuit breaker, failsafe-go's, as the router
// actor uses it: only the actor calls what changes it.
//
// failsafe-go pairs each permit with the outcome recorded for it, as its
// own executor does around one call. A routed attempt may outlast the
// state it was given in (a call of a minute, a breaker that opened and
// half-opened meanwhile): an outcome counts only if the breaker has not
// changed state since the attempt's permit (epoch), so a stale success
// cannot close a breaker, nor a stale failure open one, nor a stale
// outcome give back a half-open permit it never took.
type health struct {
	cb     circuitbreaker.CircuitBreaker[any]
	epoch  uint64   // bumped by every change of state
	probe  *attempt // the attempt holding the half-open permit
	logger *slog.Logger
}

// outcome is what an attempt's end says to the breaker.
type outcome int

const (
	outcomeSuccess   outcome = iota // the deployment answered
	outcomeFailure                  // it failed: one of FailureThreshold in a row
	outcomeDown                     // it cannot serve: open at once
	outcomeAbandoned                // cancelled: no word on the deployment
)

// outcomeOf is what a verdict says of the deployment.
func outcomeOf(v Verdict) outcome {
	switch v {
	case VerdictUnhealthy:
		return outcomeFailure
	case VerdictDown:
		return outcomeDown
	}
	return outcomeSuccess // a fatal or busy answer came from a working deployment
}

func newHealth(d *deployment, cfg RouterConfig) *health {
	h := &health{logger: cfg.logger().With(slog.String("deployment", d.Name))}
	h.cb = circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(uint(cfg.FailureThreshold)).
		WithSuccessThreshold(1).
		WithDelay(cfg.BreakerDelay).
		OnStateChanged(func(ev circuitbreaker.StateChangedEvent) {
			h.epoch++
			h.probe = nil
			switch ev.NewState {
			case circuitbreaker.OpenState:
				d.counts.openings.Add(1)
				h.logger.Warn("lionactor: deployment out: its breaker opened", slog.Duration("for", cfg.BreakerDelay))
			case circuitbreaker.HalfOpenState:
				h.logger.Info("lionactor: deployment probed: its breaker half-opened")
			case circuitbreaker.ClosedState:
				h.logger.Info("lionactor: deployment back: its breaker closed")
			}
		}).
		Build()
	return h
}

// state is the breaker's state, for statistics: safe from any goroutine.
func (h *health) state() BreakerState {
	switch h.cb.State() {
	case circuitbreaker.OpenState:
		return BreakerOpen
	case circuitbreaker.HalfOpenState:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// blocked reports whether the breaker keeps the deployment from taking an
// attempt at now, and until when, if time alone ends that (zero when the
// end of the probe out will).
func (h *health) blocked(now time.Time) (bool, time.Time) {
	switch h.cb.State() {
	case circuitbreaker.OpenState:
		if rem := h.cb.RemainingDelay(); rem > 0 {
			return true, now.Add(rem)
		}
		return false, time.Time{} // its permit half-opens it
	case circuitbreaker.HalfOpenState:
		return h.probe != nil, time.Time{}
	}
	return false, time.Time{}
}

// acquire takes the breaker's permit for a, which blocked allowed.
func (h *health) acquire(a *attempt) {
	h.cb.TryAcquirePermit() // may half-open it, which moves the epoch
	a.epoch = h.epoch
	if h.cb.State() == circuitbreaker.HalfOpenState {
		a.probe, h.probe = true, a
	}
}

// record tells the breaker how a's attempt ended.
func (h *health) record(a *attempt, o outcome) {
	if a.epoch != h.epoch {
		return
	}
	if h.probe == a {
		h.probe = nil
	}
	switch o {
	case outcomeSuccess:
		h.cb.RecordSuccess()
	case outcomeFailure:
		h.cb.RecordFailure()
	case outcomeDown:
		h.cb.Open()
	case outcomeAbandoned:
		if a.probe {
			// The probe was cancelled: no word on the deployment, and a
			// half-open breaker has one permit. Opening it again lets the
			// next probe through after the delay.
			h.cb.Open()
		}
	}
}
