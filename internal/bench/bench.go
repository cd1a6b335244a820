// Package bench measures lionactor beside the alternatives a user would
// otherwise write or reach for, on the same machine in the same run:
//
//  1. pipeline: no-op calls through the executor, a hand-written loop
//     (semaphore + rate.Limiter) and failsafe-go (bulkhead + rate limiter);
//  2. http: chat requests through imodel, and through bare net/http, to an
//     in-process simulator without latency or limits;
//  3. latency: open-loop load against a simulator with a fixed latency: what
//     the executor adds to each request;
//  4. rate: how close the executor runs to a request and a token limit that
//     the simulator enforces too, without a 429;
//  5. memory: what a queued request costs, and whether the goroutines grow
//     with the queue.
//
// All traffic goes to simulators on 127.0.0.1, and every workload is bounded
// in requests and in time. Run runs the workloads and returns a Report
// whose table and JSON show each figure with its ratio to its baseline. The
// same subjects serve the go test benchmarks of this package.
package bench

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"time"
)

// Run runs the workloads that o selects and returns the report. Its error
// joins those of the workloads that failed (a request that errored, or that
// went missing from the counts); the report then holds the others.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := o.Sizes()
	r := &Report{Machine: machine(), Sizes: s, Started: time.Now(), FailsafeBuilt: FailsafeBuilt(), Errors: map[string]string{}}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
		}
	}
	var errs []error
	step := func(name, what string, limit time.Duration, f func(context.Context) error) {
		if !o.runs(name) {
			return
		}
		progress("%s: %s", name, what)
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, limit)
		err := f(wctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			r.Errors[name] = err.Error()
			progress("%s: failed after %.1f s: %v", name, time.Since(start).Seconds(), err)
			return
		}
		progress("%s: done in %.1f s", name, time.Since(start).Seconds())
	}
	runs := fmt.Sprintf("%d runs each", s.Reps)
	step(WorkloadPipeline, fmt.Sprintf("%s no-op calls, %s", fmtInt(float64(s.PipelineCalls)), runs), 10*time.Minute,
		func(ctx context.Context) (err error) { r.Pipeline, err = runPipeline(ctx, s); return err })
	step(WorkloadHTTP, fmt.Sprintf("%s chat requests, %s", fmtInt(float64(s.HTTPRequests)), runs), 10*time.Minute,
		func(ctx context.Context) (err error) { r.HTTP, err = runHTTP(ctx, s); return err })
	latencyLimit := 2*time.Minute + time.Duration(4*(s.Reps+1)*2)*s.latencyDuration()
	step(WorkloadLatency, fmt.Sprintf("%d req/s for %g s, %s", s.LatencyRate, s.LatencySeconds, runs), latencyLimit,
		func(ctx context.Context) (err error) { r.Latency, err = runLatency(ctx, s); return err })
	step(WorkloadRate, fmt.Sprintf("%g s at %d req/s, one run", s.RateSeconds, RateLimit), 2*time.Minute+2*s.rateDuration(),
		func(ctx context.Context) (err error) { r.Rate, err = runRate(ctx, s.rateDuration()); return err })
	step(WorkloadMemory, fmt.Sprintf("%s queued requests, %s", fmtInt(float64(s.MemoryRequests)), runs), 10*time.Minute,
		func(ctx context.Context) (err error) { r.Memory, err = runMemory(ctx, s); return err })
	r.Seconds = time.Since(r.Started).Seconds()
	r.Rows = r.rows()
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	return r, errors.Join(errs...)
}

func machine() Machine {
	return Machine{
		CPUs: goruntime.NumCPU(), GOMAXPROCS: goruntime.GOMAXPROCS(0),
		GoVersion: goruntime.Version(), OS: goruntime.GOOS, Arch: goruntime.GOARCH,
	}
}
