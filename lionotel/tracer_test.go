package lionotel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestChatIsOneSpanWithItsPhases: a chat makes a request span, a child of
// the submitter's span, with the GenAI attributes of the request and the
// reply, and under it the queue, permit and attempt spans in that order;
// the simulator receives the attempt span's traceparent.
func TestChatIsOneSpanWithItsPhases(t *testing.T) {
	e := setup(t, nil)
	ctx, caller := e.parentCtx(t)
	reply, err := e.model.Chat(ctx, chat("Hello"))
	if err != nil {
		t.Fatal(err)
	}
	spans := e.spans()
	req := one(t, spans, "chat "+testModel)
	if req.ParentID != caller.SpanContext().SpanID().String() || req.TraceID != caller.SpanContext().TraceID().String() {
		t.Errorf("request span's parent %s/%s, want the caller's span %s", req.TraceID, req.ParentID, caller.SpanContext().SpanID())
	}
	if req.Kind != "client" || req.Error || req.Scope != ScopeName {
		t.Errorf("request span kind %s, error %v, scope %q", req.Kind, req.Error, req.Scope)
	}
	wantAttrs(t, req, map[string]string{
		"gen_ai.operation.name":          "chat",
		"gen_ai.provider.name":           "openai",
		"gen_ai.request.model":           testModel,
		"gen_ai.request.max_tokens":      "8",
		"gen_ai.response.model":          reply.Model,
		"gen_ai.response.id":             reply.ID,
		"gen_ai.response.finish_reasons": "[" + reply.FinishReason + "]",
		"gen_ai.usage.input_tokens":      strconv.Itoa(reply.Usage.InputTokens),
		"gen_ai.usage.output_tokens":     strconv.Itoa(reply.Usage.OutputTokens),
		"server.address":                 "127.0.0.1",
		"lionactor.request.id":           reply.Event.ID.String(),
		"lionactor.status":               "COMPLETED",
		"lionactor.attempts":             "1",
		"lionactor.tokens.estimated":     strconv.Itoa(reply.Event.Tokens.Estimated),
		"lionactor.tokens.actual":        strconv.Itoa(reply.Usage.TotalTokens),
	})
	if reply.Usage.InputTokens == 0 || reply.Usage.OutputTokens == 0 || reply.Model == "" {
		t.Fatalf("the simulator's reply has no usage or model: %+v", reply)
	}
	if req.Attrs["server.port"] == "" {
		t.Error("no server.port")
	}
	kids := oteltest.Children(spans, req)
	if got := names(kids); got != "queued, permit wait, POST" {
		t.Fatalf("children %s, want queued, permit wait, POST", got)
	}
	attempt := kids[2]
	wantAttrs(t, attempt, map[string]string{
		"http.request.method": "POST", "http.response.status_code": "200", "server.address": "127.0.0.1", "lionactor.attempt": "1",
	})
	lacks(t, attempt, "http.request.resend_count", "error.type")
	if attempt.Kind != "client" || attempt.Error {
		t.Errorf("attempt span kind %s, error %v", attempt.Kind, attempt.Error)
	}
	// Each phase ends where the next begins, inside the request's span.
	if !kids[0].Start.Equal(req.Start.Add(reply.Event.Timings().Queued.Sub(reply.Event.Timings().Created))) ||
		!kids[0].End.Equal(kids[1].Start) || !kids[1].End.Equal(kids[2].Start) || !kids[2].End.Equal(req.End) {
		t.Errorf("phases do not tile the request: %v", spans)
	}
	if d := req.End.Sub(req.Start); d != reply.Event.Timings().Total() {
		t.Errorf("request span lasts %v, the request %v", d, reply.Event.Timings().Total())
	}
	checkTraceparents(t, e.parents.Seen(), []oteltest.Span{attempt})
}

// checkTraceparents fails the test unless the i-th request the server saw
// carried the traceparent of the i-th attempt span.
func checkTraceparents(t *testing.T, seen []string, attempts []oteltest.Span) {
	t.Helper()
	if len(seen) != len(attempts) {
		t.Fatalf("the server saw %d requests, want %d", len(seen), len(attempts))
	}
	for i, h := range seen {
		traceID, spanID, ok := oteltest.ParentOf(h)
		if !ok || !strings.HasSuffix(h, "-01") {
			t.Errorf("request %d: traceparent %q, want a sampled W3C traceparent", i+1, h)
			continue
		}
		if traceID != attempts[i].TraceID || spanID != attempts[i].SpanID {
			t.Errorf("request %d: traceparent %s, want the attempt span %s-%s", i+1, h, attempts[i].TraceID, attempts[i].SpanID)
		}
	}
}

// TestRetried429IsTwoAttempts: an attempt refused with 429 and retried
// shows as two attempt spans, the first failed with status 429, the second
// a success resent once; each HTTP request carried its own attempt's
// traceparent.
func TestRetried429IsTwoAttempts(t *testing.T) {
	e := setup(t, nil)
	ctx, _ := e.parentCtx(t)
	reply, err := e.model.Chat(ctx, chat("Hello"),
		imodel.WithHeader(simulator.HeaderFault, "429"), imodel.WithHeader(simulator.HeaderFaultTimes, "1"),
		imodel.WithHeader(simulator.HeaderRequestID, "r429"))
	if err != nil {
		t.Fatal(err)
	}
	spans := e.spans()
	req := one(t, spans, "chat "+testModel)
	kids := oteltest.Children(spans, req)
	if got := names(kids); got != "queued, permit wait, POST, queued, permit wait, POST" {
		t.Fatalf("children %s", got)
	}
	first, second := kids[2], kids[5]
	if !first.Error || second.Error || req.Error {
		t.Errorf("errors: first attempt %v, second %v, request %v; want true, false, false", first.Error, second.Error, req.Error)
	}
	wantAttrs(t, first, map[string]string{"http.response.status_code": "429", "error.type": "429", "lionactor.attempt": "1"})
	if !strings.Contains(first.StatusMessage, "retry in") {
		t.Errorf("first attempt's status message %q does not say it is retried", first.StatusMessage)
	}
	lacks(t, first, "http.request.resend_count")
	wantAttrs(t, second, map[string]string{"http.response.status_code": "200", "http.request.resend_count": "1", "lionactor.attempt": "2"})
	lacks(t, second, "error.type")
	wantAttrs(t, kids[3], map[string]string{"lionactor.attempt": "2"})
	wantAttrs(t, req, map[string]string{"lionactor.attempts": "2", "lionactor.status": "COMPLETED", "gen_ai.response.id": reply.ID})
	if len(req.Events) != 1 || req.Events[0] != "retry" {
		t.Errorf("request span events %v, want one retry", req.Events)
	}
	checkTraceparents(t, e.parents.Seen(), []oteltest.Span{first, second})
}

// TestFailedRequestEndsInError: a request that fails for good ends its
// request and attempt spans in error, with error.type; its spans leave the
// Tracer.
func TestFailedRequestEndsInError(t *testing.T) {
	e := setup(t, func(_ *runtime.Config, ep *imodel.EndpointConfig) { ep.MaxAttempts = 1 })
	_, err := e.model.Chat(context.Background(), chat("Hello"), imodel.WithHeader(simulator.HeaderFault, "500"))
	var apiErr *imodel.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Chat: %v, want an APIError", err)
	}
	spans := e.spans()
	req := one(t, spans, "chat "+testModel)
	if !req.Error || req.ParentID != "" {
		t.Errorf("request span error %v, parent %q; want an error, and a root (no span in the context)", req.Error, req.ParentID)
	}
	wantAttrs(t, req, map[string]string{"error.type": apiErr.Kind(), "lionactor.status": "FAILED", "lionactor.attempts": "1"})
	lacks(t, req, "gen_ai.response.model", "gen_ai.usage.input_tokens")
	attempt := one(t, spans, "POST")
	if !attempt.Error {
		t.Error("attempt span not in error")
	}
	wantAttrs(t, attempt, map[string]string{"error.type": "500", "http.response.status_code": "500"})
}

// TestCancelledRequestsEndInError: a request cancelled while calling, and
// one cancelled while queued, end their spans in error with error.type
// "cancelled", the phase they were in included.
func TestCancelledRequestsEndInError(t *testing.T) {
	e := setup(t, func(c *runtime.Config, _ *imodel.EndpointConfig) { c.Concurrency = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	slow, err := e.model.Submit(ctx, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}},
		imodel.WithHeader(simulator.HeaderLatency, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	queued, err := e.model.Submit(queuedCtx, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, slow, messages.StatusCalling)
	waitStatus(t, queued, messages.StatusQueued)
	cancelQueued()
	<-queued.Done()
	cancel()
	<-slow.Done()

	spans := e.spans()
	reqs := oteltest.ByName(spans, "chat "+testModel)
	if len(reqs) != 2 {
		t.Fatalf("%d request spans", len(reqs))
	}
	for _, req := range reqs {
		if !req.Error {
			t.Errorf("request %s not in error", req.Attrs["lionactor.request.id"])
		}
		wantAttrs(t, req, map[string]string{"error.type": "cancelled", "lionactor.status": "CANCELLED"})
		kids := oteltest.Children(spans, req)
		last := kids[len(kids)-1]
		if !last.Error || last.Attrs["error.type"] != "cancelled" {
			t.Errorf("the phase a cancel ended (%s) has error %v, error.type %q", last.Name, last.Error, last.Attrs["error.type"])
		}
		switch req.Attrs["lionactor.request.id"] {
		case slow.ID().String():
			if names(kids) != "queued, permit wait, POST" {
				t.Errorf("the slow request's phases: %s", names(kids))
			}
		case queued.ID().String():
			if names(kids) != "queued" {
				t.Errorf("the queued request's phases: %s", names(kids))
			}
		}
	}
}

func waitStatus(t *testing.T, h *runtime.Handle, s messages.RequestStatus) {
	t.Helper()
	for ev := range h.Events() {
		if ev.Status == s {
			return
		}
	}
	t.Fatalf("request ended %v without reaching %v", h.Latest().Status, s)
}

// TestPlainCallsAndMetadata: a request that is not a model's is a
// "lionactor.request" span with "attempt" children; metadata can name the
// GenAI operation, provider and model of a call the Tracer cannot read.
func TestPlainCallsAndMetadata(t *testing.T) {
	e := setup(t, nil)
	call := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{Usage: &messages.Usage{InputTokens: 3, OutputTokens: 4}}, nil
	})
	for _, md := range []map[string]string{
		nil,
		{OperationMetadata: "generate_content", ProviderMetadata: "gcp.gemini", ModelMetadata: "gemini-2.5-flash", "secret": "s3"},
	} {
		h, err := e.ex.Submit(context.Background(), messages.Request{Call: call, Metadata: md, Tokens: 5})
		if err != nil {
			t.Fatal(err)
		}
		<-h.Done()
	}
	spans := e.spans()
	plain := one(t, spans, "lionactor.request")
	if plain.Kind != "internal" {
		t.Errorf("plain request kind %s", plain.Kind)
	}
	lacks(t, plain, "gen_ai.operation.name", "gen_ai.provider.name", "server.address")
	wantAttrs(t, plain, map[string]string{"lionactor.tokens.estimated": "5", "lionactor.tokens.actual": "7"})
	if got := names(oteltest.Children(spans, plain)); got != "queued, permit wait, attempt" {
		t.Errorf("children %s", got)
	}
	named := one(t, spans, "generate_content gemini-2.5-flash")
	wantAttrs(t, named, map[string]string{"gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": "gemini-2.5-flash"})
	for _, s := range spans {
		for k, v := range s.Attrs {
			if k == "secret" || v == "s3" {
				t.Errorf("span %q records other metadata: %s=%s", s.Name, k, v)
			}
		}
	}
}

// TestSubmittedByMessage: a request sent to the executor as a message has
// no submitter context; it is traced as a root span all the same, and
// leaves the Tracer when it ends.
func TestSubmittedByMessage(t *testing.T) {
	e := setup(t, nil)
	req, err := e.model.NewRequest(map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The executor answers the sender with every snapshot of the request.
	events := make(chan messages.Event, 16)
	root := e.ex.System().Root
	sender := root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if ev, ok := c.Message().(messages.Event); ok {
			events <- ev
		}
	}))
	defer root.Stop(sender)
	root.RequestWithCustomSender(e.ex.PID(), &messages.Submit{Request: req}, sender)
	for ev := range events {
		if ev.Status.Terminal() {
			break
		}
	}
	spans := e.spans()
	span := one(t, spans, "chat "+testModel)
	if span.ParentID != "" || span.Error {
		t.Errorf("parent %q, error %v", span.ParentID, span.Error)
	}
	if n := e.tracer.openRequests(); n != 0 {
		t.Errorf("%d requests open", n)
	}
	if seen := e.parents.Seen(); len(seen) != 1 || seen[0] != "" {
		t.Errorf("traceparents %q, want none on a request with no context", seen)
	}
}

// TestManyConcurrentRequests: concurrent submitters, retries and failures
// leave one request span per request, each with its own children, and an
// empty Tracer.
func TestManyConcurrentRequests(t *testing.T) {
	e := setup(t, func(c *runtime.Config, _ *imodel.EndpointConfig) { c.Concurrency = 8 })
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			opts := []imodel.CallOption{imodel.WithHeader(simulator.HeaderRequestID, fmt.Sprint("m", i))}
			if i%3 == 0 {
				opts = append(opts, imodel.WithHeader(simulator.HeaderFault, "503"), imodel.WithHeader(simulator.HeaderFaultTimes, "1"))
			}
			if _, err := e.model.Chat(context.Background(), chat("hi"), opts...); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := e.tracer.openRequests(); n != 0 {
		t.Errorf("%d requests open after all ended", n)
	}
	spans := e.spans()
	reqs := oteltest.ByName(spans, "chat "+testModel)
	if len(reqs) != n {
		t.Fatalf("%d request spans, want %d", len(reqs), n)
	}
	attempts := 0
	for _, r := range reqs {
		attempts += len(oteltest.ByName(oteltest.Children(spans, r), "POST"))
	}
	if want := n + n/3; attempts != want {
		t.Errorf("%d attempt spans, want %d", attempts, want)
	}
	if seen := e.parents.Seen(); len(seen) != attempts {
		t.Errorf("%d HTTP requests for %d attempt spans", len(seen), attempts)
	}
}

// TestInstrumentKeepsTheHooksAlreadySet: an observer and a request-context
// hook set before Instrument still run.
func TestInstrumentKeepsTheHooksAlreadySet(t *testing.T) {
	type key struct{}
	var mu sync.Mutex
	var observed, hooked int
	var sawValue bool
	e := setup(t, func(c *runtime.Config, _ *imodel.EndpointConfig) {
		c.Observer = func(messages.Event) { mu.Lock(); observed++; mu.Unlock() }
		c.RequestContext = func(ctx context.Context, _ messages.Event) context.Context {
			mu.Lock()
			hooked++
			mu.Unlock()
			return context.WithValue(ctx, key{}, "kept")
		}
	})
	h, err := e.ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		mu.Lock()
		sawValue = ctx.Value(key{}) == "kept"
		mu.Unlock()
		return messages.Result{}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	mu.Lock()
	defer mu.Unlock()
	if observed != 5 || hooked != 1 || !sawValue {
		t.Errorf("observer saw %d snapshots, hook ran %d times, call saw its value %v; want 5, 1, true", observed, hooked, sawValue)
	}
	if len(e.spans()) != 4 {
		t.Errorf("spans: %s", names(e.spans()))
	}
}

// TestNoSecretInSpans: the API key appears in no span, whether the request
// succeeds, fails or is refused for its key.
func TestNoSecretInSpans(t *testing.T) {
	e := setup(t, func(_ *runtime.Config, ep *imodel.EndpointConfig) { ep.MaxAttempts = 1 })
	_, _ = e.model.Chat(context.Background(), chat("Hello "+testKey))
	_, _ = e.model.Chat(context.Background(), chat("Hello"), imodel.WithHeader(simulator.HeaderFault, "quota"))
	_, _ = e.model.Chat(context.Background(), chat("Hello"), imodel.WithHeader(simulator.HeaderFault, "500"))
	spans := e.spans()
	if len(spans) < 12 {
		t.Fatalf("only %d spans", len(spans))
	}
	for _, s := range spans {
		text := fmt.Sprint(s)
		if strings.Contains(text, testKey) || strings.Contains(text, testKey[len(testKey)-6:]) {
			t.Errorf("span %q carries the key: %s", s.Name, text)
		}
	}
}

// TestTransportOutsideAnExecutor: the transport injects the span of a plain
// request's context, and nothing without one.
func TestTransportOutsideAnExecutor(t *testing.T) {
	e := setup(t, nil)
	client := e.tracer.Transport(nil)
	ctx, span := e.parentCtx(t)
	for _, c := range []context.Context{ctx, context.Background()} {
		req, _ := http.NewRequestWithContext(c, http.MethodGet, strings.TrimSuffix(e.base, "/v1")+"/healthz", nil)
		resp, err := client.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	seen := e.parents.Seen()
	traceID, spanID, ok := oteltest.ParentOf(seen[0])
	if !ok || traceID != span.SpanContext().TraceID().String() || spanID != span.SpanContext().SpanID().String() {
		t.Errorf("traceparent %q, want the context's span", seen[0])
	}
	if seen[1] != "" {
		t.Errorf("traceparent %q without a span in the context", seen[1])
	}
	if len(e.spans()) != 0 {
		t.Errorf("the transport made spans of its own: %s", names(e.spans()))
	}
	client.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

// TestEmbedAndStream: embeddings record input tokens only; a stream, whose
// body the transport cannot read, gets its usage from the decoded reply.
func TestEmbedAndStream(t *testing.T) {
	e := setup(t, nil)
	emb, err := e.model.Embed(context.Background(), []string{"a", "b"}, imodel.WithField("model", "text-embedding-3-small"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.model.Stream(context.Background(), chat("Hello"))
	if err != nil {
		t.Fatal(err)
	}
	sr, err := st.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	spans := e.spans()
	es := one(t, spans, "embeddings text-embedding-3-small")
	wantAttrs(t, es, map[string]string{"gen_ai.operation.name": "embeddings", "gen_ai.usage.input_tokens": strconv.Itoa(emb.Usage.InputTokens), "gen_ai.response.model": emb.Model})
	lacks(t, es, "gen_ai.usage.output_tokens")
	cs := one(t, spans, "chat "+testModel)
	wantAttrs(t, cs, map[string]string{"gen_ai.usage.output_tokens": strconv.Itoa(sr.Usage.OutputTokens), "gen_ai.response.model": sr.Model})
}

// TestTimeoutIsAnAttemptErrorType: an attempt cut by its timeout has
// error.type "timeout".
func TestTimeoutIsAnAttemptErrorType(t *testing.T) {
	e := setup(t, func(_ *runtime.Config, ep *imodel.EndpointConfig) {
		ep.MaxAttempts, ep.Timeout = 1, 50*time.Millisecond
	})
	_, err := e.model.Chat(context.Background(), chat("Hello"), imodel.WithHeader(simulator.HeaderLatency, "1m"))
	if !errors.Is(err, messages.ErrTimeout) {
		t.Fatalf("Chat: %v, want a timeout", err)
	}
	spans := e.spans()
	wantAttrs(t, one(t, spans, "POST"), map[string]string{"error.type": "timeout"})
	wantAttrs(t, one(t, spans, "chat "+testModel), map[string]string{"error.type": "timeout", "lionactor.status": "FAILED"})
}

// TestWithPropagator: the transport injects what the given propagator
// carries, here baggage and no trace context.
func TestWithPropagator(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx, span := sdktrace.NewTracerProvider().Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "caller")
	defer span.End()
	tr := New(WithPropagator(propagation.Baggage{})).Transport(nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	if got.Get("Baggage") != "tenant=acme" || got.Get("Traceparent") != "" {
		t.Errorf("headers %v, want the baggage alone", got)
	}
	if req.Header.Get("Baggage") != "" {
		t.Error("the transport changed the caller's request")
	}
}

// TestLargeReplyPassesThrough: a response body above the size the
// transport reads replies from reaches the caller whole; the span then has
// no usage rather than a copy of the body made on the executor's goroutine.
func TestLargeReplyPassesThrough(t *testing.T) {
	e := setup(t, nil)
	const dims = 20_000 // three vectors of about 20 bytes a value: over 1 MiB
	emb, err := e.model.Embed(context.Background(), []string{"a", "b", "c"},
		imodel.WithField("model", "text-embedding-3-small"), imodel.WithField("dimensions", dims))
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Vectors) != 3 || len(emb.Vectors[2]) != dims || emb.Usage.InputTokens == 0 {
		t.Fatalf("%d vectors, last of %d values, usage %+v", len(emb.Vectors), len(emb.Vectors[len(emb.Vectors)-1]), emb.Usage)
	}
	if raw, _ := emb.Event.Response(); len(raw.Body) <= maxReplyBytes {
		t.Fatalf("the body is %d bytes, not over %d: the test shows nothing", len(raw.Body), maxReplyBytes)
	}
	span := one(t, e.spans(), "embeddings text-embedding-3-small")
	lacks(t, span, "gen_ai.usage.input_tokens", "gen_ai.response.model")
	wantAttrs(t, span, map[string]string{"lionactor.status": "COMPLETED", "lionactor.tokens.actual": strconv.Itoa(emb.Usage.TotalTokens)})
}
