// Package oteltest helps tests read the spans the lionotel package makes:
// from the SDK's in-memory exporter, or from a local OTLP/HTTP receiver
// that decodes what the real exporter sends; and it prints them as a tree.
package oteltest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/simulator"
)

// Span is one finished span, from either source.
type Span struct {
	TraceID, SpanID, ParentID string // lower-case hex; ParentID "" for a root
	Name                      string
	Kind                      string // "client", "internal", ...
	Start, End                time.Time
	Attrs                     map[string]string // values as text; lists as [a b]
	Error                     bool              // status is Error
	StatusMessage             string
	Events                    []string // event names, in order
	Scope                     string   // instrumentation scope
	Resource                  map[string]string
}

// FromStubs converts what tracetest.InMemoryExporter holds.
func FromStubs(stubs tracetest.SpanStubs) []Span {
	out := make([]Span, 0, len(stubs))
	for _, s := range stubs {
		sp := Span{
			TraceID: s.SpanContext.TraceID().String(), SpanID: s.SpanContext.SpanID().String(),
			Name: s.Name, Kind: strings.ToLower(s.SpanKind.String()), Start: s.StartTime, End: s.EndTime,
			Attrs: attrsOf(s.Attributes), Error: s.Status.Code.String() == "Error", StatusMessage: s.Status.Description,
			Scope: s.InstrumentationScope.Name,
		}
		if s.Parent.IsValid() {
			sp.ParentID = s.Parent.SpanID().String()
		}
		for _, e := range s.Events {
			sp.Events = append(sp.Events, e.Name)
		}
		if s.Resource != nil {
			sp.Resource = attrsOf(s.Resource.Attributes())
		}
		out = append(out, sp)
	}
	return out
}

func attrsOf(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
		if kv.Value.Type() == attribute.STRINGSLICE {
			m[string(kv.Key)] = fmt.Sprint(kv.Value.AsStringSlice())
		}
	}
	return m
}

// Receiver is an OTLP/HTTP trace receiver on loopback: it decodes each
// export request's protobuf (gzip or not) and keeps the spans.
type Receiver struct {
	// URL is the receiver's base URL; the exporter posts to URL+"/v1/traces".
	URL string

	srv     *httptest.Server
	mu      sync.Mutex
	spans   []Span
	exports int
	errs    []string
}

// NewReceiver starts a receiver, closed when the test ends; a malformed
// export fails the test.
func NewReceiver(t testing.TB) *Receiver {
	r := StartReceiver()
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// StartReceiver starts a receiver; Close it when done.
func StartReceiver() *Receiver {
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	return r
}

// Close stops the receiver and reports the exports it could not decode.
func (r *Receiver) Close() error {
	r.srv.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		return fmt.Errorf("OTLP receiver: %s", strings.Join(r.errs, "; "))
	}
	return nil
}

func (r *Receiver) fail(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.errs = append(r.errs, msg)
	r.mu.Unlock()
	http.Error(w, msg, http.StatusBadRequest)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		r.fail(w, "%s %s, want POST /v1/traces", req.Method, req.URL.Path)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.fail(w, "content type %q, want application/x-protobuf", ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.fail(w, "gzip: %v", err)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		r.fail(w, "reading: %v", err)
		return
	}
	var export collector.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &export); err != nil {
		r.fail(w, "decoding: %v", err)
		return
	}
	var got []Span
	for _, rs := range export.GetResourceSpans() {
		res := kvsOf(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, spanOf(s, ss.GetScope().GetName(), res))
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.exports++
	r.mu.Unlock()
	out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Exports is how many export requests arrived.
func (r *Receiver) Exports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exports
}

func spanOf(s *tracepb.Span, scope string, res map[string]string) Span {
	sp := Span{
		TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
		ParentID: hex.EncodeToString(s.GetParentSpanId()), Name: s.GetName(),
		Kind:  strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")),
		Start: time.Unix(0, int64(s.GetStartTimeUnixNano())), End: time.Unix(0, int64(s.GetEndTimeUnixNano())),
		Attrs: kvsOf(s.GetAttributes()), Error: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
		StatusMessage: s.GetStatus().GetMessage(), Scope: scope, Resource: res,
	}
	for _, e := range s.GetEvents() {
		sp.Events = append(sp.Events, e.GetName())
	}
	return sp
}

func kvsOf(kvs []*common.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyText(kv.GetValue())
	}
	return m
}

func anyText(v *common.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *common.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *common.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *common.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyText(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v)
}

// ByName returns the spans named name.
func ByName(spans []Span, name string) []Span {
	var out []Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Children returns the children of parent, in start order.
func Children(spans []Span, parent Span) []Span {
	var out []Span
	for _, s := range spans {
		if s.ParentID == parent.SpanID && s.TraceID == parent.TraceID {
			out = append(out, s)
		}
	}
	sortSpans(out)
	return out
}

func sortSpans(spans []Span) {
	slices.SortStableFunc(spans, func(a, b Span) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if c := a.End.Compare(b.End); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Tree prints spans as a tree, children under their parent in start order,
// each line the span's name, the values of the given attribute keys it has,
// and "ERROR" for an error status. Spans whose parent is not among them are
// roots. It prints no IDs or times, so that the same run prints the same.
func Tree(spans []Span, keys ...string) string {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.TraceID+s.SpanID] = true
	}
	var roots []Span
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.TraceID+s.ParentID] {
			roots = append(roots, s)
		}
	}
	sortSpans(roots)
	var b strings.Builder
	var walk func(s Span, prefix, branch string)
	walk = func(s Span, prefix, branch string) {
		b.WriteString(strings.TrimRight(prefix+branch+line(s, keys), " "))
		b.WriteByte('\n')
		kids := Children(spans, s)
		switch branch {
		case "├─ ":
			prefix += "│  "
		case "└─ ":
			prefix += "   "
		}
		for i, k := range kids {
			if i == len(kids)-1 {
				walk(k, prefix, "└─ ")
			} else {
				walk(k, prefix, "├─ ")
			}
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
	return b.String()
}

func line(s Span, keys []string) string {
	parts := []string{s.Name}
	for _, k := range keys {
		if v, ok := s.Attrs[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if s.Error {
		parts = append(parts, "ERROR")
	}
	return strings.Join(parts, "  ")
}

// StartSimulator starts a simulator for cfg behind a loopback server that
// records the traceparent header of every request, both closed when the
// test ends, and returns the API root clients use (".../v1").
func StartSimulator(t testing.TB, cfg simulator.Config) (string, *Traceparents) {
	t.Helper()
	sim, err := simulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parents := RecordTraceparents(sim.Handler())
	ts := httptest.NewServer(parents)
	t.Cleanup(func() {
		sim.Close() // ends the simulator's delays, so that ts.Close does not wait for them
		ts.Close()
	})
	return ts.URL + "/v1", parents
}

// Traceparents wraps h and records the traceparent header of every request
// it serves, in arrival order.
type Traceparents struct {
	mu   sync.Mutex
	seen []string
	next http.Handler
}

// RecordTraceparents returns a handler recording the traceparent headers
// of the requests it passes to h.
func RecordTraceparents(h http.Handler) *Traceparents { return &Traceparents{next: h} }

// ServeHTTP implements http.Handler.
func (t *Traceparents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	t.seen = append(t.seen, r.Header.Get("Traceparent"))
	t.mu.Unlock()
	t.next.ServeHTTP(w, r)
}

// Seen returns the headers recorded so far ("" for a request without one).
func (t *Traceparents) Seen() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.seen)
}

// MatchTraceparents checks that each traceparent header in seen names one
// of spans as its parent, and each of spans exactly once; it returns what
// does not match.
func MatchTraceparents(seen []string, spans []Span) []string {
	return MatchTraceparentsCancelling(seen, spans, nil)
}

// MatchTraceparentsCancelling is MatchTraceparents where the spans of
// cancelled may be named by no traceparent: attempts of requests that were
// cancelled, whose call may have ended before its request went out.
func MatchTraceparentsCancelling(seen []string, spans, cancelled []Span) []string {
	count := make(map[string]int, len(spans)+len(cancelled))
	for _, s := range slices.Concat(spans, cancelled) {
		count[s.TraceID+"-"+s.SpanID] = 0
	}
	var problems []string
	for _, h := range seen {
		traceID, spanID, ok := ParentOf(h)
		n, known := count[traceID+"-"+spanID]
		if !ok || !known {
			problems = append(problems, fmt.Sprintf("traceparent %q names none of the spans", h))
			continue
		}
		count[traceID+"-"+spanID] = n + 1
	}
	for _, s := range spans {
		if n := count[s.TraceID+"-"+s.SpanID]; n != 1 {
			problems = append(problems, fmt.Sprintf("span %s %q is named by %d traceparents, want 1", s.SpanID, s.Name, n))
		}
	}
	for _, s := range cancelled {
		if n := count[s.TraceID+"-"+s.SpanID]; n > 1 {
			problems = append(problems, fmt.Sprintf("span %s %q is named by %d traceparents, want at most 1", s.SpanID, s.Name, n))
		}
	}
	return problems
}

// ParentOf returns the trace ID and parent span ID a W3C traceparent
// header names, or ok false if it is malformed.
func ParentOf(traceparent string) (traceID, spanID string, ok bool) {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return "", "", false
	}
	return parts[1], parts[2], true
}
