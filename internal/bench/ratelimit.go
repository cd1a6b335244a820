package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// largePrompt is the rate workload's larger request: its cost is several
// times the small one's, so it waits on the token bucket where the small
// one waits on the request bucket.
var largePrompt = strings.Repeat("An actor owns its state and changes it only in response to a message. ", 8) +
	"Summarise this in one sentence."

// RateResult is workload 4. The fractions are the simulator's admitted
// requests and tokens over the measured window (the run less its first
// tenth, at most a second, which holds the executor's initial burst),
// divided by the limits over that window.
type RateResult struct {
	Seconds               float64 `json:"seconds"`
	WindowSeconds         float64 `json:"window_seconds"`
	RequestsPerSecond     int     `json:"request_limit_per_second"`
	TokensPerMinute       int     `json:"token_limit_per_minute"`
	SmallCost             int     `json:"small_request_tokens"`
	LargeCost             int     `json:"large_request_tokens"`
	ExecutorRequestBurst  int     `json:"executor_request_burst"`
	ExecutorTokenBurst    int     `json:"executor_token_burst"`
	SimulatorRequestBurst int     `json:"simulator_request_burst"`
	SimulatorTokenBurst   int     `json:"simulator_token_burst"`

	Submitted int64 `json:"submitted"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`

	AdmittedInWindow   int64   `json:"admitted_in_window"`
	TokensInWindow     int64   `json:"tokens_in_window"`
	RequestRate        float64 `json:"request_rate_per_second"`
	TokenRate          float64 `json:"token_rate_per_minute"`
	RequestFraction    float64 `json:"request_fraction"`
	TokenFraction      float64 `json:"token_fraction"`
	RateLimited        int64   `json:"rate_limited_429"`
	MaxRequestsIn1s    int     `json:"max_requests_in_1s"`
	TokensAdmitted     int64   `json:"tokens_admitted"`
	TokensExpected     int64   `json:"tokens_expected"`
	SimulatorRequests  int64   `json:"simulator_requests"`
	SimulatorAdmitted  int64   `json:"simulator_admitted"`
	SimulatorMaxFlight int     `json:"simulator_max_in_flight"`
}

// costOf is the token cost of a chat request with prompt as both the
// executor (imodel's estimate) and the simulator charge it.
func costOf(prompt string) int {
	return tokens.ForModel(benchModel).ChatRequest([]tokens.Message{{Role: "user", Text: prompt}}, 1, replyTokens)
}

// runRate is workload 4: the executor and the simulator enforce the same
// request and token limits, and the executor is kept saturated for d with
// small and large requests in turn. The token limit is set so that the mean
// request spends the request and token limits at the same pace: the large
// requests wait on the token bucket and the small on the request bucket.
func runRate(ctx context.Context, d time.Duration) (res *RateResult, err error) {
	small, large := costOf(benchPrompt), costOf(largePrompt)
	tpm := RateLimit * 30 * (small + large) // RateLimit × 60 × mean cost
	res = &RateResult{
		Seconds: d.Seconds(), RequestsPerSecond: RateLimit, TokensPerMinute: tpm,
		SmallCost: small, LargeCost: large,
		ExecutorRequestBurst: RateExecutorBurst, ExecutorTokenBurst: RateExecutorBurst * (small + large) / 2,
		SimulatorRequestBurst: RateSimulatorBurst, SimulatorTokenBurst: RateSimulatorBurst * (small + large) / 2,
	}
	sim, base, err := startSimulator(simulator.Config{
		Seed: 1, Latency: SimulatedLatency,
		RequestsPerMinute: RateLimit * 60, RequestBurst: res.SimulatorRequestBurst,
		TokensPerMinute: tpm, TokenBurst: res.SimulatorTokenBurst,
	})
	if err != nil {
		return nil, err
	}
	defer sim.Close()

	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval, cfg.RequestInterval, cfg.RequestBurst = RateLimit, time.Second, res.ExecutorRequestBurst
	cfg.TokensPerInterval, cfg.TokenInterval, cfg.TokenBurst = tpm, time.Minute, res.ExecutorTokenBurst
	cfg.Concurrency, cfg.QueueCapacity, cfg.WaitForRoom = Concurrency, Concurrency, true
	ex, err := runtime.Start(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, ex.Stop(stop))
	}()
	// The executor's own limiter is what is measured: the adaptive pause on
	// the provider's rate-limit headers stays out of it.
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: base, APIKey: benchKey, Model: benchModel,
		MaxAttempts: 1,
	}, imodel.WithoutAdaptiveLimits())
	if err != nil {
		return nil, err
	}
	defer model.Close()
	payloads := []map[string]any{chatFields(benchPrompt), chatFields(largePrompt)}
	costs := []int{small, large}
	for i, p := range payloads {
		if got := model.Estimate(p); got != costs[i] {
			return nil, fmt.Errorf("imodel estimates %d tokens for a request the simulator charges %d", got, costs[i])
		}
	}

	start := time.Now()
	warm := min(time.Second, d/10)
	tA, tB := start.Add(warm), start.Add(d)
	var (
		snapA, snapB simulator.Stats
		atA, atB     time.Time
		haveA        bool
		expected     int64
	)
	limit := int(2*float64(RateLimit)*d.Seconds()) + 4*Concurrency // a bound the limits never reach
	handles := make([]*runtime.Handle, 0, limit)
	for i := 0; ; i++ {
		now := time.Now()
		if !haveA && !now.Before(tA) {
			snapA, atA, haveA = sim.Stats(), now, true
		}
		if !now.Before(tB) || i == limit {
			break
		}
		h, err := model.Submit(ctx, payloads[i%2])
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		handles = append(handles, h)
		expected += int64(costs[i%2])
	}
	snapB, atB = sim.Stats(), time.Now()
	res.Submitted = int64(len(handles))
	for _, h := range handles {
		select {
		case <-h.Done():
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for request %s: %w", h.ID(), ctx.Err())
		}
		ev := h.Latest()
		switch {
		case ev.Status == messages.StatusCompleted:
			res.Completed++
		case ev.Status == messages.StatusFailed && errors.Is(ev.Err(), imodel.ErrRateLimited):
			res.Failed++ // counted below as the simulator's 429s
		default:
			return nil, fmt.Errorf("request %s ended %v: %v", ev.ID, ev.Status, ev.Err())
		}
	}
	final := sim.Stats()
	if res.Completed+res.Failed != res.Submitted || final.Requests != res.Submitted {
		return nil, fmt.Errorf("submitted %d requests: %d completed, %d rate limited, %d reached the simulator",
			res.Submitted, res.Completed, res.Failed, final.Requests)
	}
	if window := atB.Sub(atA); haveA && window > 0 {
		res.WindowSeconds = window.Seconds()
		res.AdmittedInWindow = snapB.Admitted - snapA.Admitted
		res.TokensInWindow = snapB.TokensAdmitted - snapA.TokensAdmitted
		res.RequestRate = float64(res.AdmittedInWindow) / window.Seconds()
		res.TokenRate = float64(res.TokensInWindow) / window.Minutes()
		res.RequestFraction = res.RequestRate / float64(RateLimit)
		res.TokenFraction = res.TokenRate / float64(tpm)
	}
	res.RateLimited = final.RateLimited
	res.MaxRequestsIn1s = simulator.MaxBurst(sim.Arrivals(), time.Second)
	res.TokensAdmitted, res.TokensExpected = final.TokensAdmitted, expected
	res.SimulatorRequests, res.SimulatorAdmitted, res.SimulatorMaxFlight = final.Requests, final.Admitted, final.MaxInFlight
	return res, nil
}
