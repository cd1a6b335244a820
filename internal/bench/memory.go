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

// A gatedQueue holds requests whose calls block on a gate: concurrency of
// them in calls, the rest queued, until the gate opens.
type gatedQueue interface {
	Name() string
	// submit queues n more requests.
	submit(ctx context.Context, n int) error
	// settled reports whether every request submitted so far is queued or
	// blocked in its call, with all concurrency slots taken.
	settled() bool
	// wait waits for every request to end and fails unless all completed.
	wait(ctx context.Context) error
	close(ctx context.Context) error
}

// newFailsafeQueue, when the failsafe-go baseline is built in, returns it;
// nil otherwise.
var newFailsafeQueue func(concurrency, n int, gate <-chan struct{}) gatedQueue

// gatedCall returns a call that counts itself in entered, then blocks until
// gate is closed or ctx ends.
func gatedCall(gate <-chan struct{}, entered *atomic.Int64) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		entered.Add(1)
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// executorQueue queues requests in an executor.
type executorQueue struct {
	ex          *runtime.Executor
	call        messages.Call
	entered     atomic.Int64
	handles     []*runtime.Handle
	concurrency int
	before      messages.Stats
}

func newExecutorQueue(concurrency, n int, gate <-chan struct{}) (gatedQueue, error) {
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval, cfg.Concurrency, cfg.QueueCapacity = runtime.Unlimited, concurrency, n
	ex, err := runtime.Start(cfg)
	if err != nil {
		return nil, err
	}
	q := &executorQueue{ex: ex, handles: make([]*runtime.Handle, 0, n), concurrency: concurrency, before: ex.Stats()}
	block := gatedCall(gate, &q.entered)
	q.call = messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		return messages.Result{}, block(ctx)
	})
	return q, nil
}

func (q *executorQueue) Name() string { return nameExecutor }

func (q *executorQueue) submit(ctx context.Context, n int) error {
	for range n {
		h, err := q.ex.Submit(ctx, messages.Request{Call: q.call})
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		q.handles = append(q.handles, h)
	}
	return nil
}

func (q *executorQueue) settled() bool {
	n := int64(len(q.handles))
	st := q.ex.Stats()
	return q.entered.Load() == min(n, int64(q.concurrency)) && st.Queued+st.InFlight == n
}

func (q *executorQueue) wait(ctx context.Context) error {
	for _, h := range q.handles {
		if err := awaitCompleted(ctx, h); err != nil {
			return err
		}
	}
	return checkExecutorCounts(ctx, q.ex, q.before, len(q.handles))
}

func (q *executorQueue) close(ctx context.Context) error { return q.ex.Stop(ctx) }

// handQueue is the hand-written design queueing: a goroutine per request
// that waits for a slot of a semaphore, then on a rate.Limiter (rate.Inf),
// then makes the call.
type handQueue struct {
	gate                   <-chan struct{}
	sem                    chan struct{}
	lim                    *rate.Limiter
	wg                     sync.WaitGroup
	arrived, entered, done atomic.Int64
	failed                 atomic.Int64
	submitted, concurrency int
	firstErr               atomic.Pointer[error]
	block                  func(context.Context) error
}

func newHandQueue(concurrency, _ int, gate <-chan struct{}) gatedQueue {
	q := &handQueue{gate: gate, sem: make(chan struct{}, concurrency), lim: rate.NewLimiter(rate.Inf, 0), concurrency: concurrency}
	q.block = gatedCall(gate, &q.entered)
	return q
}

func (q *handQueue) Name() string { return nameHandLoop }

func (q *handQueue) submit(ctx context.Context, n int) error {
	q.submitted += n
	for range n {
		q.wg.Go(func() {
			q.arrived.Add(1)
			err := q.one(ctx)
			if err != nil {
				q.failed.Add(1)
				q.firstErr.CompareAndSwap(nil, &err)
				return
			}
			q.done.Add(1)
		})
	}
	return nil
}

func (q *handQueue) one(ctx context.Context) error {
	select {
	case q.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-q.sem }()
	if err := q.lim.Wait(ctx); err != nil {
		return err
	}
	return q.block(ctx)
}

func (q *handQueue) settled() bool {
	return q.arrived.Load() == int64(q.submitted) && q.entered.Load() == min(int64(q.submitted), int64(q.concurrency))
}

func (q *handQueue) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p := q.firstErr.Load(); p != nil {
		return fmt.Errorf("%d calls failed: %w", q.failed.Load(), *p)
	}
	if got := q.done.Load(); got != int64(q.submitted) {
		return fmt.Errorf("hand loop completed %d calls, want %d", got, q.submitted)
	}
	return nil
}

func (q *handQueue) close(context.Context) error { return nil }

// MemoryFigures is one run of workload 5 on one subject.
type MemoryFigures struct {
	Requests int `json:"requests"`
	// HeapBytesPerRequest is the growth of the live heap (HeapAlloc after
	// a GC) from before to after queueing, per request. The requests carry
	// no payload of their own (they share one call value), so nothing is
	// subtracted.
	HeapBytesPerRequest float64 `json:"heap_bytes_per_request"`
	// StackBytesPerRequest is the growth of goroutine stacks (StackInuse)
	// per request.
	StackBytesPerRequest float64 `json:"stack_bytes_per_request"`
	// Goroutines before queueing, with a tenth of the requests queued, and
	// with all of them queued.
	GoroutinesBefore int     `json:"goroutines_before"`
	GoroutinesTenth  int     `json:"goroutines_tenth"`
	GoroutinesAfter  int     `json:"goroutines_after"`
	DrainSeconds     float64 `json:"drain_seconds"`
}

// MemorySeries is the runs of one subject and their per-figure medians.
type MemorySeries struct {
	Name   string          `json:"name"`
	Runs   []MemoryFigures `json:"runs"`
	Median MemoryFigures   `json:"median"`
}

func (s *MemorySeries) add(f MemoryFigures) {
	s.Runs = append(s.Runs, f)
	pick := func(f func(MemoryFigures) float64) float64 { return medianOf(s.Runs, f) }
	s.Median = MemoryFigures{
		Requests:             f.Requests,
		HeapBytesPerRequest:  pick(func(r MemoryFigures) float64 { return r.HeapBytesPerRequest }),
		StackBytesPerRequest: pick(func(r MemoryFigures) float64 { return r.StackBytesPerRequest }),
		GoroutinesBefore:     int(pick(func(r MemoryFigures) float64 { return float64(r.GoroutinesBefore) })),
		GoroutinesTenth:      int(pick(func(r MemoryFigures) float64 { return float64(r.GoroutinesTenth) })),
		GoroutinesAfter:      int(pick(func(r MemoryFigures) float64 { return float64(r.GoroutinesAfter) })),
		DrainSeconds:         pick(func(r MemoryFigures) float64 { return r.DrainSeconds }),
	}
}

// MemoryResult is workload 5.
type MemoryResult struct {
	Requests    int           `json:"requests"`
	Concurrency int           `json:"concurrency"`
	Executor    MemorySeries  `json:"executor"`
	HandLoop    MemorySeries  `json:"hand_loop"`
	Failsafe    *MemorySeries `json:"failsafe,omitempty"`
}

// settleLimit bounds each wait for queued requests to settle.
const settleLimit = time.Minute

// measureQueue queues n requests behind a closed gate on a new subject and
// measures the heap and goroutines they hold, then opens the gate and times
// the drain.
func measureQueue(ctx context.Context, newQueue func(concurrency, n int, gate <-chan struct{}) (gatedQueue, error), n int) (f MemoryFigures, err error) {
	gate := make(chan struct{})
	q, err := newQueue(Concurrency, n, gate)
	if err != nil {
		return f, err
	}
	opened := false
	defer func() {
		if !opened {
			close(gate) // let blocked calls return so the subject can stop
		}
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, q.close(stop))
	}()
	settle := func() error { return waitFor(ctx, settleLimit, q.Name()+"'s queued requests", q.settled) }
	f.Requests = n
	before := settledHeap()
	f.GoroutinesBefore = goruntime.NumGoroutine()
	tenth := min(n, max(Concurrency, n/10))
	if err := q.submit(ctx, tenth); err != nil {
		return f, err
	}
	if err := settle(); err != nil {
		return f, err
	}
	f.GoroutinesTenth = goruntime.NumGoroutine()
	if err := q.submit(ctx, n-tenth); err != nil {
		return f, err
	}
	if err := settle(); err != nil {
		return f, err
	}
	after := settledHeap()
	f.GoroutinesAfter = goruntime.NumGoroutine()
	f.HeapBytesPerRequest = perItem(before.HeapAlloc, after.HeapAlloc, n)
	f.StackBytesPerRequest = perItem(before.StackInuse, after.StackInuse, n)

	start := time.Now()
	close(gate)
	opened = true
	if err := q.wait(ctx); err != nil {
		return f, err
	}
	f.DrainSeconds = time.Since(start).Seconds()
	return f, nil
}

// runMemory is workload 5, on the executor and the baselines, alternated.
func runMemory(ctx context.Context, s Sizes) (*MemoryResult, error) {
	type subject struct {
		series   *MemorySeries
		newQueue func(int, int, <-chan struct{}) (gatedQueue, error)
	}
	res := &MemoryResult{Requests: s.MemoryRequests, Concurrency: Concurrency,
		Executor: MemorySeries{Name: nameExecutor}, HandLoop: MemorySeries{Name: nameHandLoop}}
	subjects := []subject{
		{&res.Executor, newExecutorQueue},
		{&res.HandLoop, func(c, n int, g <-chan struct{}) (gatedQueue, error) { return newHandQueue(c, n, g), nil }},
	}
	if newFailsafeQueue != nil {
		res.Failsafe = &MemorySeries{Name: nameFailsafe}
		subjects = append(subjects, subject{res.Failsafe, func(c, n int, g <-chan struct{}) (gatedQueue, error) {
			return newFailsafeQueue(c, n, g), nil
		}})
	}
	runs := make([]func(int) error, len(subjects))
	for i, sub := range subjects {
		runs[i] = func(int) error {
			f, err := measureQueue(ctx, sub.newQueue, s.MemoryRequests)
			if err != nil {
				return fmt.Errorf("%s: %w", sub.series.Name, err)
			}
			sub.series.add(f)
			return nil
		}
	}
	if err := alternate(s.Reps, runs...); err != nil {
		return nil, err
	}
	return res, nil
}
