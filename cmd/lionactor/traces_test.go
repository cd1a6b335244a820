package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/simulator"
)

// checkRunTrace checks the trace of a batch run: one root "lionactor batch"
// span, every request a "chat" span under it, and every HTTP request the
// server saw carrying the traceparent of one of their attempt spans. It
// returns the run's span and the request spans by status.
func checkRunTrace(t *testing.T, spans []oteltest.Span, seen []string) (oteltest.Span, map[string][]oteltest.Span) {
	t.Helper()
	runs := oteltest.ByName(spans, "lionactor batch")
	if len(runs) != 1 || runs[0].ParentID != "" {
		t.Fatalf("%d run spans; spans:\n%s", len(runs), oteltest.Tree(spans))
	}
	run := runs[0]
	byStatus := map[string][]oteltest.Span{}
	var attempts, cancelled []oteltest.Span
	for _, req := range oteltest.Children(spans, run) {
		if req.Name != "chat "+testModel {
			t.Errorf("a child of the run is %q", req.Name)
		}
		status := req.Attrs["lionactor.status"]
		byStatus[status] = append(byStatus[status], req)
		posts := oteltest.ByName(oteltest.Children(spans, req), "POST")
		if status == "CANCELLED" {
			// An interrupt cancels what has not started calling; a call
			// that started as the cancel went may end before its request
			// went out.
			cancelled = append(cancelled, posts...)
			continue
		}
		attempts = append(attempts, posts...)
	}
	for _, p := range oteltest.MatchTraceparentsCancelling(seen, attempts, cancelled) {
		t.Error(p)
	}
	return run, byStatus
}

// TestBatchOTLPEndpoint: --otlp-endpoint exports the run's trace over
// OTLP/HTTP, flushed before the command returns.
func TestBatchOTLPEndpoint(t *testing.T) {
	recv := oteltest.NewReceiver(t)
	base, parents := oteltest.StartSimulator(t, simulator.Config{Seed: 5, Faults: simulator.Faults{RateLimit: 0.3}, FaultRetryAfter: 1})
	dir := t.TempDir()
	const n = 30
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel,
		"--rpm", "600000", "--concurrency", "4", "--otlp-endpoint", recv.URL); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	run, byStatus := checkRunTrace(t, recv.Spans(), parents.Seen())
	if len(byStatus["COMPLETED"]) != n || len(byStatus) != 1 {
		t.Errorf("request spans by status: %d completed of %d kinds", len(byStatus["COMPLETED"]), len(byStatus))
	}
	if run.Error || run.Attrs["lionactor.batch.completed"] != strconv.Itoa(n) || run.Resource["service.name"] != "lionactor" {
		t.Errorf("run span: error %v, attrs %v, resource %v", run.Error, run.Attrs, run.Resource)
	}
	retried := 0
	for _, r := range results {
		if r.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no request was retried: the trace shows no retry")
	}
}

// TestBatchOTLPFromEnvironment: without the flag, the standard variables
// turn tracing on; the exporter and the resource read them.
func TestBatchOTLPFromEnvironment(t *testing.T) {
	recv := oteltest.NewReceiver(t)
	base, parents := oteltest.StartSimulator(t, simulator.Config{})
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "nightly-eval")
	dir := t.TempDir()
	in, out := writeRequests(t, dir, 5), filepath.Join(dir, "results.jsonl")
	c := newCLI()
	c.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.URL
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	run, byStatus := checkRunTrace(t, recv.Spans(), parents.Seen())
	if len(byStatus["COMPLETED"]) != 5 || run.Resource["service.name"] != "nightly-eval" {
		t.Errorf("%d completed request spans, service.name %q", len(byStatus["COMPLETED"]), run.Resource["service.name"])
	}
}

// TestBatchWithoutTracing: no flag and no variable, no traceparent.
func TestBatchWithoutTracing(t *testing.T) {
	base, parents := oteltest.StartSimulator(t, simulator.Config{})
	dir := t.TempDir()
	in, out := writeRequests(t, dir, 3), filepath.Join(dir, "results.jsonl")
	if code := newCLI().run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, h := range parents.Seen() {
		if h != "" {
			t.Errorf("traceparent %q sent without tracing", h)
		}
	}
}

// TestBatchOTLPEndpointErrors: a bad --otlp-endpoint is a usage error that
// names the flag, before anything is sent.
func TestBatchOTLPEndpointErrors(t *testing.T) {
	base, parents := oteltest.StartSimulator(t, simulator.Config{})
	dir := t.TempDir()
	in := writeRequests(t, dir, 2)
	for _, bad := range []string{"127.0.0.1:4318", "ftp://collector:4318", "http://", "http://user:pw@collector:4318", "::"} {
		c := newCLI()
		code := c.run(t, context.Background(), "batch", "--in", in, "--out", filepath.Join(dir, "out.jsonl"), "--url", base, "--otlp-endpoint", bad)
		if code != exitUsage || !strings.Contains(c.stderr.String(), "--otlp-endpoint") {
			t.Errorf("--otlp-endpoint %q: exit %d, stderr %q", bad, code, c.stderr.String())
		}
		if strings.Contains(c.stderr.String(), "pw@") {
			t.Errorf("the error repeats credentials: %q", c.stderr.String())
		}
	}
	if len(parents.Seen()) != 0 {
		t.Errorf("%d requests sent despite the usage error", len(parents.Seen()))
	}
}

func TestOTLPTarget(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":            "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":           "http://127.0.0.1:4318/v1/traces",
		"https://collector/otlp":           "https://collector/otlp/v1/traces",
		"https://collector:4318/v1/traces": "https://collector:4318/v1/traces",
	} {
		if got, err := otlpTarget(in); err != nil || got != want {
			t.Errorf("otlpTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestBatchTracesFlushedOnInterrupt: Ctrl-C still exports the run's trace:
// the run's span in error with what remains, a completed span for every
// result written, and the requests the interrupt cancelled ended in error.
func TestBatchTracesFlushedOnInterrupt(t *testing.T) {
	recv := oteltest.NewReceiver(t)
	base, parents := oteltest.StartSimulator(t, simulator.Config{Latency: 10 * time.Millisecond})
	dir := t.TempDir()
	const n = 300
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCLI()
	c.stderr.onWrite = func(all string) {
		if strings.Count(all, "progress: ") >= 20 {
			cancel()
		}
	}
	if code := c.run(t, ctx, "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000",
		"--concurrency", "4", "--queue", "40", "--progress-every", "0s", "--otlp-endpoint", recv.URL); code != exitInterrupted {
		t.Fatalf("exit %d, want %d", code, exitInterrupted)
	}
	written := readResults(t, out)
	left := remaining(t, c.stderr.String())
	run, byStatus := checkRunTrace(t, recv.Spans(), parents.Seen())
	if !run.Error || run.Attrs["lionactor.batch.remaining"] != strconv.Itoa(left) || left == 0 {
		t.Errorf("run span: error %v, remaining %s; the command said %d remain", run.Error, run.Attrs["lionactor.batch.remaining"], left)
	}
	if len(byStatus["COMPLETED"]) != len(written) {
		t.Errorf("%d completed request spans, %d results written", len(byStatus["COMPLETED"]), len(written))
	}
	if len(byStatus["CANCELLED"]) == 0 {
		t.Error("no cancelled request span: the interrupt cancelled nothing queued")
	}
	for _, s := range byStatus["CANCELLED"] {
		if !s.Error || s.Attrs["error.type"] != "cancelled" {
			t.Errorf("cancelled request span: error %v, error.type %q", s.Error, s.Attrs["error.type"])
		}
	}
}
