package lionotel

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lionactor/lionactor/messages"
)

// maxReplyBytes bounds the response body the transport keeps to read the
// model, usage and finish reasons from: a chat reply is a few kilobytes; a
// larger body (many embeddings) is passed through unread.
const maxReplyBytes = 1 << 20

// Transport returns an http.RoundTripper that sends each request through
// base (http.DefaultTransport if nil) with the trace context of the attempt
// it belongs to: a traceparent header whose parent is the attempt's span,
// when the request comes from a call of an instrumented executor, or else
// the span of the request's context, if any. For an attempt it also records
// the response's status code on the attempt's span, and the model, usage
// and finish reasons of a successful JSON response on the request's span.
//
// Give it to a model with imodel.WithHTTPClient. Closing the client's idle
// connections closes base's.
func (t *Tracer) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{propagator: t.propagator, base: base}
}

type transport struct {
	propagator propagation.TextMapPropagator
	base       http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	span := trace.SpanFromContext(ctx)
	r, _ := ctx.Value(requestKey{}).(*request)
	n := 0
	if r != nil {
		if a, num := r.current(); a != nil {
			span, n = a, num
		}
	}
	out := req.Clone(ctx) // a RoundTripper must not change the caller's request
	tr.propagator.Inject(trace.ContextWithSpan(ctx, span), propagation.HeaderCarrier(out.Header))
	resp, err := tr.base.RoundTrip(out)
	if n == 0 {
		return resp, err
	}
	if err != nil {
		errType := transportErrorType(ctx, err)
		r.record(n, func(ex *exchange) { ex.errorType = errType })
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		errType := strconv.Itoa(resp.StatusCode)
		r.record(n, func(ex *exchange) { ex.errorType = errType })
	}
	if resp.StatusCode < 300 && isJSON(resp.Header) {
		resp.Body = &replyReader{body: resp.Body, r: r, n: n, buf: make([]byte, 0, initialCap(resp.ContentLength))}
	}
	return resp, nil
}

// CloseIdleConnections closes base's idle connections, so that
// http.Client.CloseIdleConnections reaches them.
func (tr *transport) CloseIdleConnections() {
	if c, ok := tr.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// transportErrorType is error.type for an attempt that got no response.
func transportErrorType(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(context.Cause(ctx), messages.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case ctx.Err() != nil:
		return "cancelled"
	}
	return "connection"
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || len(mt) > 5 && mt[len(mt)-5:] == "+json")
}

func initialCap(contentLength int64) int {
	if contentLength > 0 && contentLength <= maxReplyBytes {
		return int(contentLength)
	}
	return 512
}

// replyReader passes a response body through, keeping up to maxReplyBytes
// of it, and reads the reply from what it kept once the body is read to its
// end or closed. It runs on the call's goroutine, not the executor's.
type replyReader struct {
	body io.ReadCloser
	r    *request
	n    int // the attempt
	buf  []byte
	over bool // more than maxReplyBytes: not kept
	done bool
}

func (b *replyReader) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if !b.over && !b.done {
		if len(b.buf)+n > maxReplyBytes {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

func (b *replyReader) Close() error {
	b.finish()
	return b.body.Close()
}

func (b *replyReader) finish() {
	if b.done {
		return
	}
	b.done = true
	if b.over {
		b.r.record(b.n, func(ex *exchange) { ex.tooLarge = true })
		return
	}
	rep := parseReply(b.buf)
	b.buf = nil
	if rep != nil {
		b.r.record(b.n, func(ex *exchange) { ex.reply = rep })
	}
}
