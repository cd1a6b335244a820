// Package lionotel traces an executor's requests with OpenTelemetry.
//
// A [Tracer] turns the snapshots of each request into one span covering its
// whole life, from PENDING to its terminal state, with a child span for
// each phase: "queued" (waiting in the queue, or backing off before a
// retry), "permit wait" (a caller reserved, the rate limiter's permit
// awaited) and one span per attempt (the call itself: for a model request,
// the HTTP request, named by its method). Attributes follow the
// OpenTelemetry semantic conventions, version 1.41.0 (the last release of
// the semconv package with the GenAI conventions in it; later ones left
// them to a project of their own):
//
//   - The request span is a GenAI inference span when its endpoint is a
//     model's (chat completions, Anthropic messages, embeddings,
//     completions): named "{gen_ai.operation.name} {gen_ai.request.model}",
//     with gen_ai.provider.name, gen_ai.request.model, max_tokens,
//     temperature and top_p from the request body, server.address and
//     server.port, and at the end gen_ai.response.model, gen_ai.response.id,
//     gen_ai.response.finish_reasons, gen_ai.usage.input_tokens and
//     gen_ai.usage.output_tokens. A request's Metadata may name the provider,
//     operation or model itself under the keys "gen_ai.provider.name",
//     "gen_ai.operation.name" and "gen_ai.request.model"; other metadata is
//     never recorded. Any other request is a span named "lionactor.request".
//   - Each attempt span follows the HTTP client conventions:
//     http.request.method, server.address, server.port,
//     http.request.resend_count from the second attempt on, and
//     http.response.status_code; a failed attempt has error status and
//     error.type (the HTTP status code, such as "429", or "timeout",
//     "connection" or "cancelled" when no response came). An attempt that
//     is retried ends with a "retry" event on the request span.
//   - A request that fails or is cancelled ends with error status and
//     error.type set to its error's kind ("rate_limited", "timeout",
//     "cancelled", "stopped", ... as messages.ErrorInfo.Kind).
//   - Attributes of this package's own add what the conventions have no
//     name for: on the request span lionactor.request.id, lionactor.status
//     (COMPLETED, FAILED or CANCELLED), lionactor.attempts,
//     lionactor.tokens.estimated and lionactor.tokens.actual; on each phase
//     and attempt span lionactor.attempt, the attempt it belongs to.
//
// Spans carry the times the snapshots record, so a span's length is the
// phase's length as the executor saw it.
//
// # Wiring
//
// Instrument a runtime.Config before starting the executor, and give a
// model the Tracer's transport, so that each attempt's HTTP request carries
// a W3C traceparent header whose parent is that attempt's span:
//
//	tracer := lionotel.New(lionotel.WithTracerProvider(tp))
//	cfg := runtime.DefaultConfig()
//	tracer.Instrument(&cfg)
//	ex, _ := runtime.Start(cfg)
//	client := &http.Client{Transport: tracer.Transport(imodel.NewTransport(cfg.Concurrency))}
//	model, _ := imodel.New(ex, endpoint, imodel.WithHTTPClient(client))
//	reply, _ := model.Chat(ctx, req) // the request span is a child of ctx's span
//
// # Why it is built this way
//
// The core packages know nothing of OpenTelemetry; the executor offers two
// plain hooks and this package uses both. Config.Observer sees every
// snapshot, which is enough to build the spans, but a snapshot carries no
// context: it cannot say which span the submitter was in, nor reach the
// HTTP request. Config.RequestContext, called by Submit with the
// submitter's context and the PENDING snapshot, closes that gap: the Tracer
// starts the request span there, as a child of the span in the submitter's
// context, and returns a context holding the request's tracing state. The
// executor hands that context's values to every attempt's call, so the
// Tracer's transport finds the attempt's span and injects its traceparent
// into the request, and reads the response (status code; model, usage and
// finish reasons from a JSON body of at most 1 MiB, on the call's own
// goroutine rather than the executor's) for the request span. Both hooks
// are OTel-agnostic: an observer, a logger or another tracing system can
// use them the same way. Request metadata was not used to carry the link,
// since it is the user's and shows in every snapshot, and wrapping each
// request's Call would miss the requests a Model builds itself.
//
// The Tracer keeps the requests it is tracing in a map keyed by request ID
// and removes each on its terminal snapshot, which the executor guarantees,
// so nothing outlives a request; it starts no goroutine. A request
// submitted by message (messages.Submit) has no submitter context: its span
// starts a trace of its own and its HTTP requests carry no traceparent.
//
// The Tracer never blocks the executor: spans are handed to the
// TracerProvider's span processor, whose batching exporter drops spans
// rather than wait when its queue is full (size it with OTEL_BSP_* or
// sdktrace.WithMaxQueueSize for large runs).
package lionotel
