package bench

import (
	"context"
	"testing"
)

// benchTarget runs b.N calls on t after a short warm-up.
func benchTarget(b *testing.B, t Target) {
	b.Helper()
	ctx := context.Background()
	defer func() {
		if err := t.Close(ctx); err != nil {
			b.Error(err)
		}
	}()
	if err := t.Run(ctx, 100); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := t.Run(ctx, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// BenchmarkPipeline sends no-op calls through the executor: 64 callers, no
// rate limit, parallel submitters.
func BenchmarkPipeline(b *testing.B) {
	t, err := NewExecutorPipeline(Concurrency)
	if err != nil {
		b.Fatal(err)
	}
	benchTarget(b, t)
}

// BenchmarkHandLoop is the hand-written baseline: a goroutine per call
// under a semaphore of 64, each waiting on a rate.Limiter.
func BenchmarkHandLoop(b *testing.B) { benchTarget(b, NewHandLoop(Concurrency)) }

// BenchmarkFailsafe is the failsafe-go baseline: RunAsync under a bulkhead
// of 64 and a rate limiter.
func BenchmarkFailsafe(b *testing.B) {
	if newFailsafePipeline == nil {
		b.Skip("the failsafe-go baseline is built with -tags failsafe")
	}
	benchTarget(b, newFailsafePipeline(Concurrency))
}

// BenchmarkHTTPImodel sends chat requests through imodel and the executor
// to a zero-latency simulator, from 64 goroutines.
func BenchmarkHTTPImodel(b *testing.B) {
	sim, base, err := startSimulator(simConfigHTTP())
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	t, err := NewIModelTarget(sim, base, Concurrency)
	if err != nil {
		b.Fatal(err)
	}
	benchTarget(b, t)
}

// BenchmarkHTTPBare sends the same requests with net/http alone.
func BenchmarkHTTPBare(b *testing.B) {
	sim, base, err := startSimulator(simConfigHTTP())
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	benchTarget(b, NewBareTarget(sim, base, Concurrency))
}
