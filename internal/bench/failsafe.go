package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
)

// The failsafe-go baseline is built only with the failsafe tag: failsafe-go's
// policies import github.com/bits-and-blooms/bitset, which the module's
// requirements (go.mod and go.sum) must list for the build to succeed.
func init() {
	newFailsafePipeline = func(concurrency int) Target { return &failsafePipeline{exec: newFailsafeExecutor(concurrency)} }
	newFailsafeQueue = newFailsafeGatedQueue
}

// newFailsafeExecutor composes the policies as the hand loop does: a
// bulkhead of concurrency permits around a rate limiter of a rate no run
// reaches, both waiting (rather than failing) for their permits.
func newFailsafeExecutor(concurrency int) failsafe.Executor[any] {
	bh := bulkhead.NewBuilder[any](uint(concurrency)).WithMaxWaitTime(time.Hour).Build()
	rl := ratelimiter.NewBurstyBuilder[any](1<<30, time.Second).WithMaxWaitTime(time.Hour).Build()
	return failsafe.With[any](bh, rl)
}

// failsafePipeline runs each call with failsafe-go's RunAsync, which starts
// a goroutine per call, as Submit queues a request: the submitters hold the
// results in batches as they hold the executor's handles.
type failsafePipeline struct{ exec failsafe.Executor[any] }

func (p *failsafePipeline) Name() string                { return nameFailsafe }
func (p *failsafePipeline) Close(context.Context) error { return nil }

func (p *failsafePipeline) Run(ctx context.Context, n int) error {
	exec := p.exec.WithContext(ctx)
	var (
		wg   sync.WaitGroup
		done atomic.Int64
	)
	shares := split(n, submitters())
	errs := make([]error, len(shares))
	for i, share := range shares {
		wg.Go(func() {
			pending := make([]failsafe.ExecutionResult[any], 0, submitBatch)
			flush := func() error {
				for _, r := range pending {
					select {
					case <-r.Done():
					case <-ctx.Done():
						return ctx.Err()
					}
					if err := r.Error(); err != nil {
						return err
					}
					done.Add(1)
				}
				pending = pending[:0]
				return nil
			}
			for range share {
				pending = append(pending, exec.RunAsync(func() error { _, err := noop.Do(ctx, 1); return err }))
				if len(pending) == submitBatch {
					if errs[i] = flush(); errs[i] != nil {
						return
					}
				}
			}
			errs[i] = flush()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if got := done.Load(); got != int64(n) {
		return fmt.Errorf("failsafe-go completed %d calls, want %d", got, n)
	}
	return nil
}

// failsafeQueue queues with RunAsync: each queued request is a goroutine
// waiting for a bulkhead permit.
type failsafeQueue struct {
	exec        failsafe.Executor[any]
	block       func(context.Context) error
	entered     atomic.Int64
	results     []failsafe.ExecutionResult[any]
	concurrency int
}

func newFailsafeGatedQueue(concurrency, n int, gate <-chan struct{}) gatedQueue {
	q := &failsafeQueue{exec: newFailsafeExecutor(concurrency), results: make([]failsafe.ExecutionResult[any], 0, n),
		concurrency: concurrency}
	q.block = gatedCall(gate, &q.entered)
	return q
}

func (q *failsafeQueue) Name() string { return nameFailsafe }

func (q *failsafeQueue) submit(ctx context.Context, n int) error {
	exec := q.exec.WithContext(ctx)
	for range n {
		q.results = append(q.results, exec.RunAsync(func() error { return q.block(ctx) }))
	}
	return nil
}

// settled: the calls hold every permit and every other request is still
// pending (RunAsync's goroutine for it waits for the bulkhead). Counting
// goroutines against a baseline instead would never settle when goroutines
// of an earlier workload end in the meantime.
func (q *failsafeQueue) settled() bool {
	n := len(q.results)
	if q.entered.Load() != int64(min(n, q.concurrency)) {
		return false
	}
	for _, r := range q.results {
		if r.IsDone() {
			return false
		}
	}
	return true
}

func (q *failsafeQueue) wait(ctx context.Context) error {
	for _, r := range q.results {
		select {
		case <-r.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

func (q *failsafeQueue) close(context.Context) error {
	for _, r := range q.results {
		if !r.IsDone() {
			r.Cancel()
		}
	}
	return nil
}
