package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/lionotel"
)

// flushTimeout bounds the export of the spans left when a run ends.
const flushTimeout = 10 * time.Second

// tracesPath is the OTLP/HTTP path of traces under a collector's base URL.
const tracesPath = "/v1/traces"

// tracing exports a batch run's spans over OTLP/HTTP: one "lionactor batch"
// span for the run, and under it the spans of every request.
type tracing struct {
	provider *sdktrace.TracerProvider
	tracer   *lionotel.Tracer
	run      trace.Span
}

// otlpTarget checks --otlp-endpoint, a collector's base URL, and returns
// the URL traces are posted to.
func otlpTarget(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", usagef("--otlp-endpoint: want the collector's OTLP/HTTP URL, such as http://127.0.0.1:4318")
	}
	if !strings.HasSuffix(u.Path, tracesPath) {
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
	}
	return u.String(), nil
}

// startTracing turns tracing on when --otlp-endpoint is set or the standard
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variable
// names a collector; the exporter reads the other OTEL_EXPORTER_OTLP_*
// variables (headers, timeout, compression, certificates) itself, and the
// resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. It returns nil
// and ctx unchanged when tracing is off, else the context of the run's span.
func startTracing(ctx context.Context, endpoint string, getenv func(string) string) (*tracing, context.Context, error) {
	var opts []otlptracehttp.Option
	switch {
	case endpoint != "":
		target, err := otlpTarget(endpoint)
		if err != nil {
			return nil, ctx, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(target))
	case getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "":
		return nil, ctx, nil
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, ctx, usagef("traces: %v", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName("lionactor")), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, ctx, usagef("traces: resource: %v", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := &tracing{provider: tp, tracer: lionotel.New(lionotel.WithTracerProvider(tp))}
	ctx, t.run = tp.Tracer("github.com/lionactor/lionactor/cmd/lionactor").Start(ctx, "lionactor batch")
	return t, ctx, nil
}

// stop ends the run's span with the run's counts and outcome and exports
// what is left, within flushTimeout whatever the run's context says (an
// interrupted run's spans are sent too). A failed export is reported on
// stderr, not as the run's error.
func (t *tracing) stop(sum *batch.Summary, runErr error, stderr io.Writer) {
	if t == nil {
		return
	}
	if sum != nil {
		s := sum.Snapshot()
		t.run.SetAttributes(attribute.Int("lionactor.batch.completed", s.Completed),
			attribute.Int("lionactor.batch.failed", s.Failed+s.InvalidInput),
			attribute.Int("lionactor.batch.remaining", s.Remaining()))
	}
	if runErr != nil {
		t.run.SetStatus(codes.Error, runErr.Error())
	}
	t.run.End()
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "lionactor: traces not all exported: %v\n", err)
	}
}
