package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// Distribution summarises one run's latencies, in microseconds.
type Distribution struct {
	Count  int     `json:"count"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

func summarize(lat []time.Duration) Distribution {
	s := slices.Clone(lat)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	d := Distribution{Count: len(s)}
	if len(s) > 0 {
		d.MeanUS = us(sum) / float64(len(s))
		d.P50US, d.P90US, d.P99US = us(percentile(s, 0.5)), us(percentile(s, 0.9)), us(percentile(s, 0.99))
		d.P999US, d.MaxUS = us(percentile(s, 0.999)), us(s[len(s)-1])
	}
	return d
}

// LatencySeries is the runs of one subject and their per-figure medians.
type LatencySeries struct {
	Name   string         `json:"name"`
	Runs   []Distribution `json:"runs"`
	Median Distribution   `json:"median"`
}

func (s *LatencySeries) add(d Distribution) {
	s.Runs = append(s.Runs, d)
	pick := func(f func(Distribution) float64) float64 { return medianOf(s.Runs, f) }
	s.Median = Distribution{
		Count:  d.Count,
		MeanUS: pick(func(r Distribution) float64 { return r.MeanUS }),
		P50US:  pick(func(r Distribution) float64 { return r.P50US }),
		P90US:  pick(func(r Distribution) float64 { return r.P90US }),
		P99US:  pick(func(r Distribution) float64 { return r.P99US }),
		P999US: pick(func(r Distribution) float64 { return r.P999US }),
		MaxUS:  pick(func(r Distribution) float64 { return r.MaxUS }),
	}
}

// overheadTrace collects, per request through imodel and the executor, the
// time from the Chat call to Submit (building the request: JSON, token
// estimate), from Submit to the call's start (queue, limiter and caller
// hops) and from the call's end to the reply reaching the submitter
// (snapshot and handle).
type overheadTrace struct {
	n                       atomic.Int64
	build, toCall, fromCall []time.Duration
}

func newOverheadTrace(n int) *overheadTrace {
	return &overheadTrace{build: make([]time.Duration, n), toCall: make([]time.Duration, n), fromCall: make([]time.Duration, n)}
}

func (o *overheadTrace) add(start time.Time, t messages.Timings, returned time.Time) {
	if i := o.n.Add(1) - 1; i < int64(len(o.toCall)) {
		o.build[i], o.toCall[i], o.fromCall[i] = t.Created.Sub(start), t.CallStarted.Sub(t.Created), returned.Sub(t.Finished)
	}
}

func (o *overheadTrace) summaries() (build, toCall, fromCall Distribution) {
	n := min(int(o.n.Load()), len(o.toCall))
	return summarize(o.build[:n]), summarize(o.toCall[:n]), summarize(o.fromCall[:n])
}

// LatencyResult is workload 3. The added figures are differences of the
// medians of the subjects' percentiles: p50 of lionactor minus p50 of bare,
// and so on.
type LatencyResult struct {
	Rate               int           `json:"rate"`
	Seconds            float64       `json:"seconds"`
	Requests           int           `json:"requests"`
	SimulatedLatencyMS float64       `json:"simulated_latency_ms"`
	Callers            int           `json:"callers"`
	Executor           LatencySeries `json:"executor"`
	Bare               LatencySeries `json:"bare"`
	AddedP50US         float64       `json:"added_p50_us"`
	AddedP99US         float64       `json:"added_p99_us"`
	AddedMaxUS         float64       `json:"added_max_us"`
	// BuildToSubmit, SubmitToCall and CallToReply split lionactor's part of
	// each request, from its snapshots' timings, in the last measured run:
	// imodel building the request, the executor bringing it to a call, and
	// the reply coming back through the executor.
	BuildToSubmit Distribution `json:"build_to_submit"`
	SubmitToCall  Distribution `json:"submit_to_call"`
	CallToReply   Distribution `json:"call_to_reply"`
}

// openLoop starts one call of one at each tick of a fixed schedule of rate
// per second for d, whether or not earlier calls have ended, and returns
// each call's time from its scheduled start to its end: a late start counts
// against the subject, as it would for a client on a schedule.
func openLoop(ctx context.Context, rate int, d time.Duration, one func(context.Context) error) ([]time.Duration, error) {
	n := max(1, int(float64(rate)*d.Seconds()))
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Pointer[error]
	)
	start := time.Now().Add(time.Millisecond)
	started := 0
	for i := range n {
		at := start.Add(time.Duration(float64(i) * float64(time.Second) / float64(rate)))
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			break
		}
		started++
		wg.Go(func() {
			err := one(ctx)
			lat[i] = time.Since(at)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	switch {
	case firstErr.Load() != nil:
		return nil, fmt.Errorf("%d of %d requests failed, first: %w", failed.Load(), n, *firstErr.Load())
	case started < n:
		return nil, fmt.Errorf("started %d of %d requests: %w", started, n, ctx.Err())
	}
	return lat, nil
}

// runLatency is workload 3: open-loop load against a simulator with a fixed
// latency, through imodel and the executor and through bare net/http,
// alternated.
func runLatency(ctx context.Context, s Sizes) (res *LatencyResult, err error) {
	sim, base, err := startSimulator(simulator.Config{Seed: 1, Latency: SimulatedLatency})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	im, err := newIModelTarget(sim, base, LatencyConcurrency)
	if err != nil {
		return nil, err
	}
	subjects := []chatter{im, newBareTarget(sim, base, LatencyConcurrency)}
	defer func() { err = errors.Join(err, closeAll(ctx, []Target{subjects[0], subjects[1]})) }()

	d := s.latencyDuration()
	res = &LatencyResult{
		Rate: s.LatencyRate, Seconds: d.Seconds(), Requests: max(1, int(float64(s.LatencyRate)*d.Seconds())),
		SimulatedLatencyMS: float64(SimulatedLatency) / float64(time.Millisecond), Callers: LatencyConcurrency,
		Executor: LatencySeries{Name: nameExecutor}, Bare: LatencySeries{Name: nameBare},
	}
	series := []*LatencySeries{&res.Executor, &res.Bare}
	one := func(c chatter, d time.Duration) (Distribution, error) {
		check := c.begin()
		lat, err := openLoop(ctx, s.LatencyRate, d, c.chat)
		if err == nil {
			err = check(ctx, len(lat))
		}
		if err != nil {
			return Distribution{}, fmt.Errorf("%s: %w", c.Name(), err)
		}
		return summarize(lat), nil
	}
	runs := make([]func(int) error, len(subjects))
	for i, c := range subjects {
		if _, err := one(c, max(d/5, 10*time.Millisecond)); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		runs[i] = func(int) error {
			if c == im {
				im.trace = newOverheadTrace(res.Requests)
				defer func() { res.BuildToSubmit, res.SubmitToCall, res.CallToReply = im.trace.summaries(); im.trace = nil }()
			}
			dist, err := one(c, d)
			if err != nil {
				return err
			}
			series[i].add(dist)
			return nil
		}
	}
	if err := alternate(s.Reps, runs...); err != nil {
		return nil, err
	}
	res.AddedP50US = res.Executor.Median.P50US - res.Bare.Median.P50US
	res.AddedP99US = res.Executor.Median.P99US - res.Bare.Median.P99US
	res.AddedMaxUS = res.Executor.Median.MaxUS - res.Bare.Median.MaxUS
	return res, nil
}
