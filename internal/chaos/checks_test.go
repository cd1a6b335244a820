package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

func TestOptionsInvalid(t *testing.T) {
	cases := map[string]Options{
		"negative fault":   {Faults: Faults{Reset: -0.1}},
		"NaN fault":        {Faults: Faults{Slow: math.NaN()}},
		"faults above one": {Faults: Faults{ServerError: 0.6, Reset: 0.6}},
		"negative weight":  {Mix: Mix{OpenAIChat: -1, Embeddings: 2}},
		"infinite weight":  {Mix: Mix{OpenAIChat: math.Inf(1)}},
		"negative count 2": {Requests: -1},
		"panic rate":       {PanicRate: 2},
		"forced rate":      {ForcedRate: -1},
		"negative count":   {Concurrency: -1},
		"negative timeout": {Timeout: -time.Second},
		"stop mode":        {Stop: StopMode(7)},
		"attempts":         {MaxAttempts: 31},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Run(context.Background(), o)
			var ce *messages.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, messages.ErrInvalidConfig) {
				t.Errorf("Run(%+v): %v, want a *ConfigError", o, err)
			}
		})
	}
	o, err := Options{NoFaults: true, Faults: Faults{Reset: 0.5}}.withDefaults()
	if err != nil || o.Faults != (Faults{}) || o.Seed == 0 || o.StopAfter != o.Requests/2 || o.Window != 8*o.Concurrency {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestStopModeString(t *testing.T) {
	for m, want := range map[StopMode]string{NoStop: "none", Graceful: "graceful", Immediate: "immediate", StopMode(9): "StopMode(9)"} {
		if got := m.String(); got != want {
			t.Errorf("%d: %q, want %q", int(m), got, want)
		}
	}
}

func TestReportStringAndErr(t *testing.T) {
	r := Report{Seed: 5, Requests: 3, Submitted: 3, ByStatus: map[string]int{"COMPLETED": 3}, Stop: Immediate,
		ExecutorErr: messages.ErrRestartStorm, Bursts: []Burst{{Window: time.Second, Max: 3, Allowed: 4}}}
	if r.Err() != nil {
		t.Errorf("Err of a clean report: %v", r.Err())
	}
	s := r.String()
	for _, want := range []string{"seed 5", "COMPLETED 3", "errors: none", "stop: immediate", "restart limit", "3 arrivals within 1s (allowed 4)", "violations: 0"} {
		if !strings.Contains(s, want) {
			t.Errorf("String lacks %q:\n%s", want, s)
		}
	}
	r.Violations = []string{"a", "b"}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "a; b") {
		t.Errorf("Err: %v", err)
	}
	if !strings.Contains(r.String(), "\n  b") {
		t.Errorf("String does not list the violations:\n%s", r.String())
	}
}

func TestViolationsBounded(t *testing.T) {
	var v violations
	for i := range 8 {
		v.add("x", "x %d", i)
	}
	v.add("y", "y")
	got := v.result()
	if len(got) != 7 || got[5] != "y" || got[6] != "x: 3 more like the above" {
		t.Errorf("result %q", got)
	}
}

// fakeDriver is a driver with a plan and outcomes but nothing running, to
// check that the checks catch what they must.
func fakeDriver(plans []plan, outs []outcome) *driver {
	d := &driver{o: Options{MaxAttempts: 3}, plans: plans, outs: outs, seen: map[uuid.UUID]*seenRequest{},
		attemptErrs: map[string]int64{}, tr: newTransport(1)}
	for _, out := range outs {
		if out.submitted {
			d.seen[out.id] = &seenRequest{seq: 5, terminals: 1}
		}
	}
	return d
}

func TestChecksCatchViolations(t *testing.T) {
	id := func() uuid.UUID { return uuid.New() }
	crash := fmt.Errorf("wrapped: %w", &messages.CallerCrashError{Panic: "boom"})
	plans := []plan{
		{kind: openAIChat},
		{kind: openAIChat},
		{kind: anthropicChat, forced: "500", times: 1, wantStatus: messages.StatusCompleted, wantAttempts: 2},
		{kind: embeddings, panics: 1 << 2},
		{kind: embeddings, panics: 1 << 1},
		{kind: openAIStream},
		{kind: openAIChat},
		{kind: openAIChat},
		{kind: anthropicStream},
	}
	outs := []outcome{
		{id: id(), submitted: true, status: messages.StatusCompleted, attempts: 1},                                                                  // fine
		{id: id(), submitted: true, status: messages.StatusCompleted, attempts: 1, problem: "no text"},                                              // bad reply
		{id: id(), submitted: true, status: messages.StatusFailed, errKind: "server", attempts: 2},                                                  // forced mismatch
		{id: id(), submitted: true, status: messages.StatusFailed, errKind: "caller_crashed", err: crash, attempts: 1},                              // crash on the wrong attempt
		{id: id(), submitted: true, status: messages.StatusCompleted, attempts: 2},                                                                  // passed its panic
		{id: id(), submitted: true, status: messages.StatusCancelled, err: messages.ErrStopped, errKind: "stopped", attempts: 1, fromCalling: true}, // cancelled without a stop
		{id: id(), submitted: true, lost: true},                                                                                                     // lost
		{refused: messages.ErrQueueFull},                                                                                                            // refused without a stop
		{id: id(), submitted: true, status: messages.StatusFailed, errKind: "auth", attempts: 1},                                                    // not a fault
	}
	d := fakeDriver(plans, outs)
	d.seen[outs[0].id].terminals = 2 // and one with two terminal snapshots
	d.panics.Store(2)
	rep := Report{ByKind: map[string]int{}, ByStatus: map[string]int{}, ByError: map[string]int{}}
	var v violations
	d.checkRequests(&rep, &v, false, false, false)
	d.checkPanics(&rep, &v, false, false)
	got := strings.Join(v.result(), "\n")
	for _, want := range []string{
		"request 0 (" + outs[0].id.String() + "): 2 terminal snapshots",
		"request 1 (openai_chat): no text",
		"request 2 (anthropic_chat, fault 500 ×1): FAILED after 2 attempts",
		"request 3 failed with a caller crash on attempt 1; its first panic was planned for attempt 2",
		"request 4 reached its panicking attempt 1 but ended COMPLETED",
		"request 5 (openai_stream) CANCELLED",
		"stream 5 cancelled while calling: its HTTP attempt did not end",
		"request 6 (" + outs[6].id.String() + "): 1 terminal snapshots, lost true",
		"request 7 refused",
		"request 8 (anthropic_stream) FAILED with auth",
		"2 panics but 0 caller restarts",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("violations lack %q:\n%s", want, got)
		}
	}
	if rep.Lost != 2 || rep.Submitted != 8 || rep.Refused != 1 {
		t.Errorf("lost %d, submitted %d, refused %d", rep.Lost, rep.Submitted, rep.Refused)
	}
}

func TestEndlessStopsAtItsOwnLimit(t *testing.T) {
	e := &Endless{Limit: 10 << 10}
	srv := httptest.NewServer(e)
	defer srv.Close()
	for _, body := range []string{`{"stream":true}`, `{}`} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n < 10<<10 || n > 20<<10 {
			t.Errorf("%s: %d bytes, want about 10 KiB", body, n)
		}
	}
	if e.Served() != 2 || e.ReachedLimit() != 2 || e.ClientGone() != 0 {
		t.Errorf("served %d, limit %d, client gone %d", e.Served(), e.ReachedLimit(), e.ClientGone())
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestRunInterrupted ends a run by its context: Run returns the context's
// error, and no request is lost.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var completed atomic.Int64
	rep, err := Run(ctx, Options{Requests: 400, NoFaults: true, RequestsPerSecond: 100, Seed: 11,
		Observer: func(ev messages.Event) {
			if ev.Status == messages.StatusCompleted && completed.Add(1) == 20 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if rep.Lost != 0 || rep.Submitted == 0 || rep.Submitted == 400 || rep.ByStatus["CANCELLED"] == 0 || len(rep.Violations) != 0 {
		t.Errorf("interrupted run:\n%v", rep)
	}
}

func TestObserverCatchesBrokenSnapshots(t *testing.T) {
	d := fakeDriver(nil, nil)
	id := uuid.New()
	d.observe(messages.Event{ID: id, Seq: 2, Status: messages.StatusQueued})
	d.observe(messages.Event{ID: id, Seq: 3, Status: messages.StatusCompleted})
	d.observe(messages.Event{ID: id, Seq: 4, Status: messages.StatusFailed})
	for range maxListed {
		d.observe(messages.Event{ID: id, Seq: 9})
	}
	got := strings.Join(d.obsBad, "\n")
	for _, want := range []string{"seq 2 after 0", "FAILED after its terminal snapshot"} {
		if !strings.Contains(got, want) {
			t.Errorf("observer found %q, want %q", got, want)
		}
	}
	if len(d.obsBad) != maxListed || d.obsMore == 0 {
		t.Errorf("%d listed, %d more", len(d.obsBad), d.obsMore)
	}
}

// TestCloseReleasesAll: close, as after a failed start, releases whatever
// was started, and is safe on nothing.
func TestCloseReleasesAll(t *testing.T) {
	(&driver{}).close()
	o, err := Options{Seed: 1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{o: o}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	d.close()
	if err := d.ex.Stop(context.Background()); err != nil {
		t.Errorf("Stop after close: %v", err)
	}
}
