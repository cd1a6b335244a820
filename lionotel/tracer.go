package lionotel

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// ScopeName is the instrumentation scope of the spans a Tracer makes.
const ScopeName = "github.com/lionactor/lionactor/lionotel"

// The span names of a request's phases.
const (
	queuedSpan = "queued"      // in the queue, or backing off before a retry
	permitSpan = "permit wait" // a caller reserved, the rate limiter's permit awaited
)

// Attributes for what the conventions have no name for.
const (
	requestIDKey       = attribute.Key("lionactor.request.id")
	statusKey          = attribute.Key("lionactor.status")
	attemptsKey        = attribute.Key("lionactor.attempts")
	attemptKey         = attribute.Key("lionactor.attempt")
	tokensEstimatedKey = attribute.Key("lionactor.tokens.estimated")
	tokensActualKey    = attribute.Key("lionactor.tokens.actual")
	deploymentKey      = attribute.Key("lionactor.deployment") // a router's deployment of the attempt
)

// Tracer traces the requests of the executors it instruments. Create it
// with [New]; it is safe for concurrent use, and one Tracer may serve
// several executors.
type Tracer struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator

	mu   sync.Mutex
	open map[uuid.UUID]*request // requests between PENDING and their terminal snapshot
}

// Option configures a Tracer.
type Option func(*options)

type options struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
}

// WithTracerProvider makes the Tracer create its spans with tp instead of
// the global provider (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.provider = tp }
}

// WithPropagator makes the transport inject p's headers instead of the W3C
// trace context (traceparent and tracestate) alone; pass
// otel.GetTextMapPropagator() to use the global one.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.propagator = p }
}

// New returns a Tracer.
func New(opts ...Option) *Tracer {
	o := options{propagator: propagation.TraceContext{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.provider == nil {
		o.provider = otel.GetTracerProvider()
	}
	return &Tracer{
		tracer:     o.provider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		propagator: o.propagator,
		open:       make(map[uuid.UUID]*request),
	}
}

// Instrument makes every request of an executor started with cfg traced: it
// sets cfg's RequestContext and Observer, still calling those already set
// (the Tracer's first). Call it once per Config.
func (t *Tracer) Instrument(cfg *runtime.Config) {
	t.instrument(&cfg.RequestContext, &cfg.Observer)
}

// InstrumentRouter makes every request of a router started with cfg
// traced, as Instrument does an executor's: one span per request, with a
// span per attempt at whichever deployment it went to (its
// lionactor.deployment attribute names it).
func (t *Tracer) InstrumentRouter(cfg *runtime.RouterConfig) {
	t.instrument(&cfg.RequestContext, &cfg.Observer)
}

func (t *Tracer) instrument(requestContext *func(context.Context, messages.Event) context.Context, observer *func(messages.Event)) {
	prevContext, prevObserver := *requestContext, *observer
	*requestContext = func(ctx context.Context, pending messages.Event) context.Context {
		if prevContext != nil {
			ctx = prevContext(ctx, pending)
		}
		return t.requestContext(ctx, pending)
	}
	*observer = func(ev messages.Event) {
		t.observe(ev)
		if prevObserver != nil {
			prevObserver(ev)
		}
	}
}

// requestKey is the context key of a request's tracing state.
type requestKey struct{}

// requestContext starts the request's span as a child of ctx's span, and
// returns the context whose values every attempt's call will see.
func (t *Tracer) requestContext(ctx context.Context, pending messages.Event) context.Context {
	r := t.begin(ctx, pending)
	return context.WithValue(trace.ContextWithSpan(ctx, r.span), requestKey{}, r)
}

// observe moves the request's spans along with its snapshots.
func (t *Tracer) observe(ev messages.Event) {
	t.mu.Lock()
	r := t.open[ev.ID]
	if r != nil && ev.Status.Terminal() {
		delete(t.open, ev.ID)
	}
	t.mu.Unlock()
	if r == nil {
		if ev.Status == messages.StatusPending {
			t.begin(context.Background(), ev) // submitted by message: no submitter context
		}
		return
	}
	r.advance(ev)
}

// openRequests is how many requests are being traced.
func (t *Tracer) openRequests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open)
}

// begin starts a request's span and registers the request.
func (t *Tracer) begin(parent context.Context, pending messages.Event) *request {
	d := describe(pending)
	kind := trace.SpanKindInternal
	if d.http {
		kind = trace.SpanKindClient
	}
	attrs := append(d.requestAttrs(), requestIDKey.String(pending.ID.String()))
	if pending.Tokens.Estimated > 0 {
		attrs = append(attrs, tokensEstimatedKey.Int(pending.Tokens.Estimated))
	}
	_, span := t.tracer.Start(parent, d.spanName(), trace.WithSpanKind(kind),
		trace.WithTimestamp(pending.Timings().Created), trace.WithAttributes(attrs...))
	r := &request{tracer: t.tracer, desc: d, span: span, ctx: trace.ContextWithSpan(context.Background(), span)}
	t.mu.Lock()
	t.open[pending.ID] = r
	t.mu.Unlock()
	return r
}

// request is the tracing state of one request. The executor's observer
// moves it along; the transport reads the current attempt and records what
// the HTTP exchange showed, from the call's goroutine, hence the lock.
type request struct {
	tracer trace.Tracer
	desc   description
	span   trace.Span
	ctx    context.Context // holds span, to start children from

	phase trace.Span // the open "queued" or "permit wait" span, if any

	mu      sync.Mutex
	attempt trace.Span // the open attempt's span, if any
	number  int        // the open (or last) attempt's number
	exch    exchange   // what the transport saw of attempt number
}

// exchange is what the transport saw of one attempt.
type exchange struct {
	errorType string // error.type, for a status >= 400 or no response
	reply     *reply // the JSON body's model, usage and finish reasons
	tooLarge  bool   // the body was too large to read for them
}

// advance moves the spans to ev's state.
func (r *request) advance(ev messages.Event) {
	switch ev.Status {
	case messages.StatusQueued:
		at := ev.Timings().Queued
		if ev.Attempt > 0 {
			r.endAttempt(ev, at, retryReason(ev))
		}
		r.startPhase(queuedSpan, ev.Attempt+1, at)
	case messages.StatusProcessing:
		r.startPhase(permitSpan, ev.Attempt+1, ev.Timings().Processing)
	case messages.StatusCalling:
		r.endPhase(ev.Timings().CallStarted, nil)
		r.startAttempt(ev.Attempt, ev.Deployment, ev.Timings().CallStarted)
	case messages.StatusCompleted, messages.StatusFailed, messages.StatusCancelled:
		info, failed := ev.Failure()
		if failed {
			r.endPhase(ev.Timings().Finished, &info)
			r.endAttempt(ev, ev.Timings().Finished, info.Message)
		} else {
			r.endPhase(ev.Timings().Finished, nil)
			r.endAttempt(ev, ev.Timings().Finished, "")
		}
		r.end(ev, info, failed)
	}
}

func (r *request) startPhase(name string, attempt int, at time.Time) {
	r.endPhase(at, nil)
	_, r.phase = r.tracer.Start(r.ctx, name, trace.WithTimestamp(at), trace.WithAttributes(attemptKey.Int(attempt)))
}

// endPhase ends the open phase span; failure, when set, is why the request
// ended in that phase.
func (r *request) endPhase(at time.Time, failure *messages.ErrorInfo) {
	if r.phase == nil {
		return
	}
	if failure != nil {
		r.phase.SetAttributes(semconv.ErrorTypeKey.String(failure.Kind))
		r.phase.SetStatus(codes.Error, failure.Message)
	}
	r.phase.End(trace.WithTimestamp(at))
	r.phase = nil
}

func (r *request) startAttempt(n int, deployment string, at time.Time) {
	attrs := append(r.desc.attemptAttrs(), attemptKey.Int(n))
	if deployment != "" {
		attrs = append(attrs, deploymentKey.String(deployment))
	}
	if n > 1 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(n-1))
	}
	kind, name := trace.SpanKindInternal, "attempt"
	if r.desc.http {
		kind, name = trace.SpanKindClient, r.desc.method
	}
	_, span := r.tracer.Start(r.ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(at), trace.WithAttributes(attrs...))
	r.mu.Lock()
	r.attempt, r.number, r.exch = span, n, exchange{}
	r.mu.Unlock()
}

// endAttempt ends the open attempt span as of ev: a success when ev is
// COMPLETED, otherwise a failure described by reason.
func (r *request) endAttempt(ev messages.Event, at time.Time, reason string) {
	r.mu.Lock()
	span, ex := r.attempt, r.exch
	r.attempt = nil
	r.mu.Unlock()
	if span == nil {
		return
	}
	if ev.Status != messages.StatusCompleted {
		errType := ex.errorType
		if errType == "" {
			if info, ok := ev.Failure(); ok {
				errType = info.Kind
			} else {
				errType = semconv.ErrorTypeOther.Value.AsString()
			}
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		span.SetStatus(codes.Error, reason)
		if ev.Status == messages.StatusQueued {
			r.span.AddEvent("retry", trace.WithTimestamp(at),
				trace.WithAttributes(attemptKey.Int(ev.Attempt), semconv.ErrorTypeKey.String(errType)))
		}
	}
	span.End(trace.WithTimestamp(at))
}

// end ends the request span with what the terminal snapshot ev, and the
// last attempt's response, say.
func (r *request) end(ev messages.Event, info messages.ErrorInfo, failed bool) {
	attrs := []attribute.KeyValue{statusKey.String(ev.Status.String()), attemptsKey.Int(ev.Attempt)}
	if ev.Tokens.HasActual {
		attrs = append(attrs, tokensActualKey.Int(ev.Tokens.Actual))
	}
	if rep := r.finalReply(ev); rep != nil && r.desc.genAI() {
		attrs = append(attrs, rep.attrs(r.desc.operation)...)
	}
	if failed {
		attrs = append(attrs, semconv.ErrorTypeKey.String(info.Kind))
		r.span.SetStatus(codes.Error, info.Message)
	}
	r.span.SetAttributes(attrs...)
	r.span.End(trace.WithTimestamp(ev.Timings().Finished))
}

// finalReply is what the last attempt's response said of the model and
// usage: from the transport's reading of its body, or else from the typed
// value a chat, stream or embedding call decoded.
func (r *request) finalReply(ev messages.Event) *reply {
	r.mu.Lock()
	ex, n := r.exch, r.number
	r.mu.Unlock()
	if ex.reply != nil && n == ev.Attempt {
		return ex.reply
	}
	if ex.tooLarge {
		return nil // the body is large: do not copy it on the executor's goroutine
	}
	resp, ok := ev.Response()
	if !ok {
		return nil
	}
	switch v := resp.Value.(type) {
	case *imodel.ChatResponse:
		rep := &reply{id: v.ID, model: v.Model, usage: usageOf(v.Usage)}
		if v.FinishReason != "" {
			rep.finishReasons = []string{v.FinishReason}
		}
		return rep
	case *imodel.EmbedResponse:
		return &reply{model: v.Model, usage: usageOf(v.Usage)}
	}
	return nil
}

// current returns the open attempt's span and number, for the transport.
func (r *request) current() (trace.Span, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempt, r.number
}

// record keeps what the transport saw of attempt n, unless a later attempt
// has begun.
func (r *request) record(n int, update func(*exchange)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n == r.number {
		update(&r.exch)
	}
}

// retryReason is the note of a retry's QUEUED snapshot: why the attempt
// failed and when the next comes.
func retryReason(ev messages.Event) string {
	log := ev.Log()
	if len(log) == 0 {
		return ""
	}
	return log[len(log)-1].Message
}
