package lionotel

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// BenchmarkNoOpCall sends no-op calls described as chat completions through
// an executor (no rate limit, 64 callers) from parallel submitters, without
// tracing and traced into the SDK's batching processor with an exporter
// that drops everything: the cost per request of the Tracer and the SDK.
func BenchmarkNoOpCall(b *testing.B) {
	req := messages.Request{
		Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil }),
		Endpoint: messages.Endpoint{Method: "POST", URL: "https://api.openai.com/v1/chat/completions",
			Payload: []byte(`{"max_tokens":16,"messages":[{"content":"Say hello.","role":"user"}],"model":"gpt-4o-mini"}`)},
		Tokens: 30,
	}
	b.Run("untraced", func(b *testing.B) { benchCalls(b, req, nil) })
	b.Run("traced", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer tp.Shutdown(context.Background())
		benchCalls(b, req, New(WithTracerProvider(tp)))
	})
}

func benchCalls(b *testing.B, req messages.Request, tracer *Tracer) {
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval, cfg.Concurrency, cfg.QueueCapacity, cfg.WaitForRoom = runtime.Unlimited, 64, 1<<16, true
	if tracer != nil {
		tracer.Instrument(&cfg)
	}
	ex, err := runtime.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var pending []*runtime.Handle
		for pb.Next() {
			h, err := ex.Submit(ctx, req)
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
