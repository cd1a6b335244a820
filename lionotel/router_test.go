package lionotel

import (
	"context"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// A routed request is one trace too: its attempt at a deployment that
// failed and its attempt at the one that served it are its children, each
// naming its deployment, and each HTTP request carries its attempt's
// traceparent.
func TestRoutedRequestIsOneSpanAcrossDeployments(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	tracer := New(WithTracerProvider(tp))
	base, parents := oteltest.StartSimulator(t, simulator.Config{Seed: 7})

	c := runtime.DefaultConfig()
	c.RequestsPerInterval = runtime.Unlimited
	cfg := runtime.DefaultRouterConfig(runtime.Deployment{Name: "sick", Group: testModel, Weight: 100, Config: c},
		runtime.Deployment{Name: "well", Group: testModel, Config: c})
	tracer.InstrumentRouter(&cfg)
	rt, err := runtime.StartRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.StopNow(context.Background())
	ep := imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: base, APIKey: testKey, Retry: fastRetry}
	sick := ep
	sick.Headers = map[string]string{simulator.HeaderFault: "500"}
	client := &http.Client{Transport: tracer.Transport(imodel.NewTransport(20))}
	defer client.CloseIdleConnections()
	r, err := imodel.NewRouter(rt, map[string]imodel.EndpointConfig{"sick": sick, "well": ep}, imodel.WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	reply, err := r.Chat(ctx, imodel.ChatRequest{Model: testModel, Messages: []imodel.Message{{Role: "user", Content: "hi"}}, MaxTokens: 8})
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	spans := oteltest.FromStubs(exp.GetSpans())
	req := one(t, spans, "chat "+testModel)
	kids := oteltest.Children(spans, req)
	if got := names(kids); got != "queued, permit wait, POST, queued, permit wait, POST" {
		t.Fatalf("children %s", got)
	}
	first, second := kids[2], kids[5]
	wantAttrs(t, first, map[string]string{"lionactor.deployment": "sick", "http.response.status_code": "500", "lionactor.attempt": "1"})
	wantAttrs(t, second, map[string]string{"lionactor.deployment": "well", "http.response.status_code": "200", "lionactor.attempt": "2"})
	wantAttrs(t, req, map[string]string{"lionactor.attempts": "2", "lionactor.status": "COMPLETED", "gen_ai.response.id": reply.ID})
	checkTraceparents(t, parents.Seen(), []oteltest.Span{first, second})
}
