package lionotel

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestMain checks that no test leaves a goroutine behind: the Tracer starts
// none, and executors, simulators and exporters must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testKey   = "sk-test-lionotel-7c2e91"
	testModel = "gpt-4o-mini"
)

// fastRetry keeps retried tests quick.
var fastRetry = runtime.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Retryable: imodel.Retryable}

const fastAttempts = 3

// env is a traced executor with a model on a local simulator, whose
// requests' traceparent headers are recorded.
type env struct {
	exp     *tracetest.InMemoryExporter // nil with setupWith
	tp      *sdktrace.TracerProvider
	tracer  *Tracer
	ex      *runtime.Executor
	model   *imodel.Model
	parents *oteltest.Traceparents
	base    string // the simulator's API root
}

// setup starts an env; edit may change the executor's config and the
// endpoint before they are used.
func setup(t *testing.T, edit func(*runtime.Config, *imodel.EndpointConfig)) *env {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := setupWith(t, tp, edit)
	e.exp = exp
	return e
}

// setupWith starts an env whose spans go to tp.
func setupWith(t *testing.T, tp *sdktrace.TracerProvider, edit func(*runtime.Config, *imodel.EndpointConfig)) *env {
	t.Helper()
	e := &env{tp: tp}
	e.tracer = New(WithTracerProvider(e.tp))

	e.base, e.parents = oteltest.StartSimulator(t, simulator.Config{Seed: 7})

	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	ep := imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: e.base, APIKey: testKey, Model: testModel, MaxAttempts: fastAttempts, Retry: fastRetry}
	if edit != nil {
		edit(&cfg, &ep)
	}
	e.tracer.Instrument(&cfg)
	var err error
	e.ex, err = runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: e.tracer.Transport(imodel.NewTransport(cfg.Concurrency))}
	e.model, err = imodel.New(e.ex, ep, imodel.WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.ex.StopNow(ctx); err != nil {
			t.Errorf("StopNow: %v", err)
		}
		e.model.Close()
		client.CloseIdleConnections()
		if n := e.tracer.openRequests(); n != 0 {
			t.Errorf("%d requests still open in the Tracer after the executor stopped", n)
		}
	})
	return e
}

// spans returns the finished spans.
func (e *env) spans() []oteltest.Span { return oteltest.FromStubs(e.exp.GetSpans()) }

// parentCtx returns a context holding a span of the test's own, as a
// submitter's would, and that span.
func (e *env) parentCtx(t *testing.T) (context.Context, trace.Span) {
	ctx, span := e.tp.Tracer("test").Start(context.Background(), "caller")
	t.Cleanup(func() { span.End() })
	return ctx, span
}

func chat(text string) imodel.ChatRequest {
	return imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: text}}, MaxTokens: 8}
}

// one returns the only span named name, failing the test otherwise.
func one(t *testing.T, spans []oteltest.Span, name string) oteltest.Span {
	t.Helper()
	got := oteltest.ByName(spans, name)
	if len(got) != 1 {
		t.Fatalf("%d spans named %q, want 1; spans:\n%s", len(got), name, oteltest.Tree(spans))
	}
	return got[0]
}

// names lists the spans' names.
func names(spans []oteltest.Span) string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return strings.Join(out, ", ")
}

// wantAttrs fails the test unless span has each key with its value.
func wantAttrs(t *testing.T, span oteltest.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := span.Attrs[k]; !ok || got != v {
			t.Errorf("span %q: %s = %q (present %v), want %q", span.Name, k, got, ok, v)
		}
	}
}

// lacks fails the test if span has any of keys.
func lacks(t *testing.T, span oteltest.Span, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := span.Attrs[k]; ok {
			t.Errorf("span %q has %s = %q, want none", span.Name, k, v)
		}
	}
}
