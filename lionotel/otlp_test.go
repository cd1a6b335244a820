package lionotel

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/simulator"
)

// TestOTLPExport: with the real OTLP/HTTP exporter behind a batching span
// processor, a local receiver decodes the protobuf export and finds the
// same tree, parentage, typed attributes and resource, and the traceparent
// each HTTP request carried names its attempt's exported span.
func TestOTLPExport(t *testing.T) {
	recv := oteltest.NewReceiver(t)
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(recv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("lionotel-test"))))
	e := setupWith(t, tp, nil)
	ctx, caller := e.parentCtx(t)
	if _, err := e.model.Chat(ctx, chat("Hello")); err != nil {
		t.Fatal(err)
	}
	reply, err := e.model.Chat(ctx, chat("Again"),
		imodel.WithHeader(simulator.HeaderFault, "429"), imodel.WithHeader(simulator.HeaderFaultTimes, "1"),
		imodel.WithHeader(simulator.HeaderRequestID, "otlp-429"))
	if err != nil {
		t.Fatal(err)
	}
	caller.End()
	if err := tp.Shutdown(context.Background()); err != nil { // flushes
		t.Fatal(err)
	}
	spans := recv.Spans()
	if recv.Exports() == 0 {
		t.Fatal("nothing exported")
	}
	const want = `caller
├─ chat gpt-4o-mini  lionactor.status=COMPLETED
│  ├─ queued
│  ├─ permit wait
│  └─ POST  http.response.status_code=200
└─ chat gpt-4o-mini  lionactor.status=COMPLETED
   ├─ queued
   ├─ permit wait
   ├─ POST  http.response.status_code=429  ERROR
   ├─ queued
   ├─ permit wait
   └─ POST  http.response.status_code=200
`
	if got := oteltest.Tree(spans, "lionactor.status", "http.response.status_code"); got != want {
		t.Fatalf("tree:\n%s\nwant:\n%s", got, want)
	}
	root := one(t, spans, "caller")
	reqs := oteltest.Children(spans, root)
	last := reqs[1]
	wantAttrs(t, last, map[string]string{
		"gen_ai.provider.name":       "openai",
		"gen_ai.usage.output_tokens": strconv.Itoa(reply.Usage.OutputTokens),
		"lionactor.attempts":         "2",
	})
	if last.Scope != ScopeName || last.Resource["service.name"] != "lionotel-test" {
		t.Errorf("scope %q, resource %v", last.Scope, last.Resource)
	}
	var attempts []oteltest.Span
	for _, r := range reqs {
		attempts = append(attempts, oteltest.ByName(oteltest.Children(spans, r), "POST")...)
	}
	checkTraceparents(t, e.parents.Seen(), attempts)
}
