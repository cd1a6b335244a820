package runtime

import (
	"context"
	"sync"
	"testing"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// BenchmarkPipeline sends no-op calls through the whole executor (queue,
// limiter, caller, snapshots) with no rate limit and 64 callers, from
// parallel submitters: the cost of the actors themselves.
func BenchmarkPipeline(b *testing.B) {
	cfg := DefaultConfig()
	cfg.RequestsPerInterval, cfg.Concurrency, cfg.QueueCapacity, cfg.WaitForRoom = Unlimited, 64, 1<<16, true
	ex, err := Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var pending []*Handle
		for pb.Next() {
			h, err := ex.Submit(ctx, messages.Request{Call: noop})
			if err != nil {
				b.Error(err)
				return
			}
			pending = append(pending, h)
			if len(pending) == 256 {
				for _, h := range pending {
					<-h.Done()
				}
				pending = pending[:0]
			}
		}
		for _, h := range pending {
			<-h.Done()
		}
	})
	b.StopTimer()
	if err := ex.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSemaphoreLimiterLoop is the hand-written baseline: one goroutine
// per call, bounded by a semaphore of 64, each waiting on a rate.Limiter.
func BenchmarkSemaphoreLimiterLoop(b *testing.B) {
	lim := rate.NewLimiter(rate.Inf, 0)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := lim.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
			noop(ctx, 1)
		})
	}
	wg.Wait()
}
