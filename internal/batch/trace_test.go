package batch

import (
	"context"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/lionotel"
	"github.com/lionactor/lionactor/simulator"
)

// TestRunTraced: with a Tracer, every request of the run is a span under the
// span in Run's context, with as many attempt spans as its result counts
// attempts, and every HTTP request the server saw carried the traceparent
// of one of those attempt spans.
func TestRunTraced(t *testing.T) {
	base, parents := oteltest.StartSimulator(t, simulator.Config{Seed: 3, Faults: simulator.Faults{RateLimit: 0.3}, FaultRetryAfter: 1})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	cfg := testConfig(base)
	cfg.MaxAttempts = 5
	cfg.Tracer = lionotel.New(lionotel.WithTracerProvider(tp))
	ctx, run := tp.Tracer("test").Start(context.Background(), "run")
	const n = 40
	results, _, _, err := runInput(t, ctx, cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	run.End()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Result{}
	for _, r := range wantIndices(t, results, seq(0, n)) {
		byID[r.RequestID] = r
	}

	spans := oteltest.FromStubs(exp.GetSpans())
	root := oteltest.ByName(spans, "run")[0]
	reqs := oteltest.Children(spans, root)
	if len(reqs) != n {
		t.Fatalf("%d request spans under the run's span, want %d", len(reqs), n)
	}
	var allAttempts []oteltest.Span
	retried := 0
	for _, req := range reqs {
		res, ok := byID[req.Attrs["lionactor.request.id"]]
		if !ok {
			t.Fatalf("request span %s matches no result", req.Attrs["lionactor.request.id"])
		}
		attempts := oteltest.ByName(oteltest.Children(spans, req), "POST")
		if len(attempts) != res.Attempts || req.Attrs["lionactor.attempts"] != strconv.Itoa(res.Attempts) {
			t.Errorf("request %d: %d attempt spans, attempts attribute %s, result %d", res.Index, len(attempts), req.Attrs["lionactor.attempts"], res.Attempts)
		}
		if res.Attempts > 1 {
			retried++
		}
		if req.Name != "chat gpt-4o-mini" || req.Attrs["lionactor.status"] != res.Status {
			t.Errorf("request %d: span %q status %s, result %s", res.Index, req.Name, req.Attrs["lionactor.status"], res.Status)
		}
		allAttempts = append(allAttempts, attempts...)
	}
	if retried == 0 {
		t.Fatal("no request was retried: the test shows nothing of retries")
	}
	for _, p := range oteltest.MatchTraceparents(parents.Seen(), allAttempts) {
		t.Error(p)
	}
}
