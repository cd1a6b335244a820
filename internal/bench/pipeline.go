package bench

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// A Target runs calls to completion: the executor or one of the baselines it
// is measured beside.
type Target interface {
	// Name labels the target in the report.
	Name() string
	// Run makes n calls and returns once every one has ended, with an
	// error if any failed or went missing.
	Run(ctx context.Context, n int) error
	// Close releases what the target holds.
	Close(ctx context.Context) error
}

// Names of the subjects in the report.
const (
	nameExecutor = "lionactor"
	nameHandLoop = "hand loop"
	nameFailsafe = "failsafe-go"
	nameBare     = "bare net/http"
)

// noop is the call of the pipeline workload: it does nothing, so what is
// measured is the machinery around it.
var noop = messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })

// submitters is the number of goroutines that submit in parallel.
func submitters() int { return max(2, goruntime.GOMAXPROCS(0)) }

// newFailsafePipeline, when the failsafe-go baseline is built in, returns
// it; nil otherwise.
var newFailsafePipeline func(concurrency int) Target

// FailsafeBuilt reports whether this build has the failsafe-go baselines.
func FailsafeBuilt() bool { return newFailsafePipeline != nil }

// executorPipeline sends no-op calls through an executor without a rate
// limit: the queue, the limiter, the callers and the snapshots.
type executorPipeline struct{ ex *runtime.Executor }

// NewExecutorPipeline starts an executor with concurrency callers, no rate
// limit and room for every submitter's batch.
func NewExecutorPipeline(concurrency int) (Target, error) {
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.Concurrency = concurrency
	cfg.QueueCapacity = 1 << 16
	cfg.WaitForRoom = true
	ex, err := runtime.Start(cfg)
	if err != nil {
		return nil, err
	}
	return &executorPipeline{ex: ex}, nil
}

func (p *executorPipeline) Name() string { return nameExecutor }

func (p *executorPipeline) Run(ctx context.Context, n int) error {
	before := p.ex.Stats()
	var wg sync.WaitGroup
	shares := split(n, submitters())
	errs := make([]error, len(shares))
	for i, share := range shares {
		wg.Go(func() { errs[i] = submitAll(ctx, p.ex, share, messages.Request{Call: noop}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return checkExecutorCounts(ctx, p.ex, before, n)
}

func (p *executorPipeline) Close(ctx context.Context) error { return p.ex.Stop(ctx) }

// submitAll submits n copies of r and waits for them in batches of
// submitBatch, failing on any that does not complete.
func submitAll(ctx context.Context, ex *runtime.Executor, n int, r messages.Request) error {
	pending := make([]*runtime.Handle, 0, submitBatch)
	flush := func() error {
		for _, h := range pending {
			if err := awaitCompleted(ctx, h); err != nil {
				return err
			}
		}
		pending = pending[:0]
		return nil
	}
	for range n {
		h, err := ex.Submit(ctx, r)
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		if pending = append(pending, h); len(pending) == submitBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// awaitCompleted waits for h to end and fails unless it completed.
func awaitCompleted(ctx context.Context, h *runtime.Handle) error {
	select {
	case <-h.Done():
	case <-ctx.Done():
		return fmt.Errorf("waiting for request %s: %w", h.ID(), ctx.Err())
	}
	if ev := h.Latest(); ev.Status != messages.StatusCompleted {
		return fmt.Errorf("request %s ended %v: %v", ev.ID, ev.Status, ev.Err())
	}
	return nil
}

// checkExecutorCounts checks that the executor counted exactly n more
// accepted and completed requests since before, and no other ending.
func checkExecutorCounts(ctx context.Context, ex *runtime.Executor, before messages.Stats, n int) error {
	var after messages.Stats
	settled := func() bool {
		after = ex.Stats()
		return after.Completed-before.Completed >= int64(n)
	}
	// The counts are written before the terminal snapshot; the short wait
	// only guards against a reordering of the two.
	_ = waitFor(ctx, time.Second, "the executor's counts", settled)
	got := struct{ accepted, completed, failed, cancelled int64 }{
		after.Accepted - before.Accepted, after.Completed - before.Completed,
		after.Failed - before.Failed, after.Cancelled - before.Cancelled,
	}
	if got.accepted != int64(n) || got.completed != int64(n) || got.failed != 0 || got.cancelled != 0 {
		return fmt.Errorf("executor counted %d accepted, %d completed, %d failed, %d cancelled; want %d accepted and completed",
			got.accepted, got.completed, got.failed, got.cancelled, n)
	}
	return nil
}

// handLoop is the hand-written baseline: per call a goroutine, started once
// a semaphore of concurrency slots has room, that waits on a rate.Limiter
// (rate.Inf) and then makes the call.
type handLoop struct{ concurrency int }

// NewHandLoop returns the hand-written baseline.
func NewHandLoop(concurrency int) Target { return &handLoop{concurrency: concurrency} }

func (h *handLoop) Name() string                { return nameHandLoop }
func (h *handLoop) Close(context.Context) error { return nil }

func (h *handLoop) Run(ctx context.Context, n int) error {
	lim := rate.NewLimiter(rate.Inf, 0)
	sem := make(chan struct{}, h.concurrency)
	var (
		wg         sync.WaitGroup
		done, errs atomic.Int64
		firstErr   atomic.Pointer[error]
		submit     sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	for _, share := range split(n, submitters()) {
		submit.Go(func() {
			for range share {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					fail(ctx.Err())
					return
				}
				wg.Go(func() {
					defer func() { <-sem }()
					if err := lim.Wait(ctx); err != nil {
						fail(err)
						return
					}
					if _, err := noop.Do(ctx, 1); err != nil {
						fail(err)
						return
					}
					done.Add(1)
				})
			}
		})
	}
	submit.Wait()
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return fmt.Errorf("%d calls failed: %w", errs.Load(), *p)
	}
	if got := done.Load(); got != int64(n) {
		return fmt.Errorf("hand loop completed %d calls, want %d", got, n)
	}
	return nil
}

// Throughput is what one run of a Target measured.
type Throughput struct {
	Calls         int     `json:"calls"`
	Seconds       float64 `json:"seconds"`
	CallsPerSec   float64 `json:"calls_per_sec"`
	NsPerCall     float64 `json:"ns_per_call"`
	AllocsPerCall float64 `json:"allocs_per_call"`
	BytesPerCall  float64 `json:"bytes_per_call"`
}

// Measure runs n calls on t and returns their rate and the allocations per
// call (the allocator's Mallocs and TotalAlloc over the run, divided by n:
// everything the process allocated meanwhile, the submitters' included).
func Measure(ctx context.Context, t Target, n int) (Throughput, error) {
	goruntime.GC()
	before := memSnapshot()
	start := time.Now()
	err := t.Run(ctx, n)
	elapsed := time.Since(start)
	after := memSnapshot()
	if err != nil {
		return Throughput{}, fmt.Errorf("%s: %w", t.Name(), err)
	}
	return Throughput{
		Calls: n, Seconds: elapsed.Seconds(),
		CallsPerSec:   float64(n) / elapsed.Seconds(),
		NsPerCall:     float64(elapsed.Nanoseconds()) / float64(n),
		AllocsPerCall: perItem(before.Mallocs, after.Mallocs, n),
		BytesPerCall:  perItem(before.TotalAlloc, after.TotalAlloc, n),
	}, nil
}

// Series is the runs of one subject and their medians.
type Series struct {
	Name   string       `json:"name"`
	Runs   []Throughput `json:"runs"`
	Median Throughput   `json:"median"`
}

func (s *Series) add(t Throughput) {
	s.Runs = append(s.Runs, t)
	pick := func(f func(Throughput) float64) float64 { return medianOf(s.Runs, f) }
	s.Median = Throughput{
		Calls:         t.Calls,
		Seconds:       pick(func(r Throughput) float64 { return r.Seconds }),
		CallsPerSec:   pick(func(r Throughput) float64 { return r.CallsPerSec }),
		NsPerCall:     pick(func(r Throughput) float64 { return r.NsPerCall }),
		AllocsPerCall: pick(func(r Throughput) float64 { return r.AllocsPerCall }),
		BytesPerCall:  pick(func(r Throughput) float64 { return r.BytesPerCall }),
	}
}

// PipelineResult is workload 1.
type PipelineResult struct {
	Calls       int     `json:"calls"`
	Concurrency int     `json:"concurrency"`
	Executor    Series  `json:"executor"`
	HandLoop    Series  `json:"hand_loop"`
	Failsafe    *Series `json:"failsafe,omitempty"`
}

// runPipeline is workload 1: n no-op calls through each target, alternated
// reps times after a warm-up.
func runPipeline(ctx context.Context, s Sizes) (res *PipelineResult, err error) {
	ex, err := NewExecutorPipeline(Concurrency)
	if err != nil {
		return nil, err
	}
	targets := []Target{ex, NewHandLoop(Concurrency)}
	if newFailsafePipeline != nil {
		targets = append(targets, newFailsafePipeline(Concurrency))
	}
	defer func() { err = errors.Join(err, closeAll(ctx, targets)) }()
	series, err := measureAlternating(ctx, targets, s.PipelineCalls, s.Reps)
	if err != nil {
		return nil, err
	}
	res = &PipelineResult{Calls: s.PipelineCalls, Concurrency: Concurrency, Executor: *series[0], HandLoop: *series[1]}
	if len(series) > 2 {
		res.Failsafe = series[2]
	}
	return res, nil
}
