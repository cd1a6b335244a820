package lionotel_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/lionotel"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// Tracing a model's requests: instrument the executor's config, give the
// model the Tracer's transport, and call from a context holding a span. A
// 429 on the first attempt shows as a failed attempt and a retry.
func ExampleTracer() {
	// Spans go to an in-memory exporter here; use an OTLP exporter in a
	// program (see the package documentation).
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())

	sim, err := simulator.New(simulator.Config{Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()

	tracer := lionotel.New(lionotel.WithTracerProvider(tp))
	cfg := runtime.DefaultConfig()
	tracer.Instrument(&cfg)
	ex, err := runtime.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Stop(context.Background())

	client := &http.Client{Transport: tracer.Transport(imodel.NewTransport(cfg.Concurrency))}
	defer client.CloseIdleConnections()
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: base + "/v1", APIKey: "sk-local", Model: "gpt-4o-mini",
	}, imodel.WithHTTPClient(client))
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	ctx, span := tp.Tracer("example").Start(context.Background(), "handle question")
	_, err = model.Chat(ctx, imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "Hello"}}, MaxTokens: 8},
		// Make the simulator refuse the first attempt with a 429.
		imodel.WithHeader(simulator.HeaderFault, "429"), imodel.WithHeader(simulator.HeaderFaultTimes, "1"),
		imodel.WithHeader(simulator.HeaderRequestID, "example"))
	span.End()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(oteltest.Tree(oteltest.FromStubs(spans.GetSpans()),
		"gen_ai.provider.name", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
		"http.response.status_code", "error.type", "http.request.resend_count"))
	// Output:
	// handle question
	// └─ chat gpt-4o-mini  gen_ai.provider.name=openai  gen_ai.usage.input_tokens=8  gen_ai.usage.output_tokens=8
	//    ├─ queued
	//    ├─ permit wait
	//    ├─ POST  http.response.status_code=429  error.type=429  ERROR
	//    ├─ queued
	//    ├─ permit wait
	//    └─ POST  http.response.status_code=200  http.request.resend_count=1
}
