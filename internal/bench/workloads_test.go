package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/simulator"
)

// tiny are sizes small enough for the race detector: the figures are only
// checked for sense, never for speed.
func tiny() Sizes {
	s := Options{Scale: 0.001, Reps: 1}.Sizes()
	s.PipelineCalls, s.HTTPRequests, s.MemoryRequests = 600, 60, 2*Concurrency+20
	s.LatencyRate, s.LatencySeconds = 400, 0.1
	return s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func checkSeries(t *testing.T, s Series, n, runs int) {
	t.Helper()
	if len(s.Runs) != runs {
		t.Errorf("%s: %d runs, want %d", s.Name, len(s.Runs), runs)
	}
	m := s.Median
	if m.Calls != n || m.CallsPerSec <= 0 || m.NsPerCall <= 0 || m.Seconds <= 0 {
		t.Errorf("%s: median %+v, want %d calls and positive figures", s.Name, m, n)
	}
	if m.AllocsPerCall < 0 || m.BytesPerCall < 0 {
		t.Errorf("%s: negative allocations %+v", s.Name, m)
	}
}

func TestPipeline(t *testing.T) {
	s := tiny()
	s.Reps = 2
	res, err := runPipeline(testContext(t), s)
	if err != nil {
		t.Fatal(err)
	}
	checkSeries(t, res.Executor, s.PipelineCalls, 2)
	checkSeries(t, res.HandLoop, s.PipelineCalls, 2)
	if res.Executor.Name != nameExecutor || res.HandLoop.Name != nameHandLoop {
		t.Errorf("names %q, %q", res.Executor.Name, res.HandLoop.Name)
	}
	if (res.Failsafe != nil) != FailsafeBuilt() {
		t.Errorf("failsafe series present %v, built %v", res.Failsafe != nil, FailsafeBuilt())
	}
	if res.Failsafe != nil {
		checkSeries(t, *res.Failsafe, s.PipelineCalls, 2)
	}
	if res.Executor.Median.AllocsPerCall <= 0 {
		t.Errorf("the executor allocated nothing: %+v", res.Executor.Median)
	}
}

func TestHTTP(t *testing.T) {
	s := tiny()
	res, err := runHTTP(testContext(t), s)
	if err != nil {
		t.Fatal(err)
	}
	checkSeries(t, res.Executor, s.HTTPRequests, 1)
	checkSeries(t, res.Bare, s.HTTPRequests, 1)
	if res.Concurrency != Concurrency || res.Requests != s.HTTPRequests {
		t.Errorf("result %+v", res)
	}
}

func TestLatency(t *testing.T) {
	s := tiny()
	res, err := runLatency(testContext(t), s)
	if err != nil {
		t.Fatal(err)
	}
	n := int(float64(s.LatencyRate) * s.LatencySeconds)
	for _, series := range []LatencySeries{res.Executor, res.Bare} {
		m := series.Median
		if len(series.Runs) != 1 || m.Count != n {
			t.Errorf("%s: %d runs, %d requests; want 1 run of %d", series.Name, len(series.Runs), m.Count, n)
		}
		// Every request waits for the simulated latency at least.
		if m.P50US < float64(SimulatedLatency.Microseconds()) || m.P50US > m.P99US || m.P99US > m.MaxUS || m.MeanUS <= 0 {
			t.Errorf("%s: distribution %+v", series.Name, m)
		}
	}
	for _, d := range []Distribution{res.BuildToSubmit, res.SubmitToCall, res.CallToReply} {
		if d.Count != n || d.P50US < 0 || d.P50US > d.MaxUS {
			t.Errorf("executor's share %+v, want %d requests", d, n)
		}
	}
	if res.AddedP50US != res.Executor.Median.P50US-res.Bare.Median.P50US ||
		res.AddedP99US != res.Executor.Median.P99US-res.Bare.Median.P99US ||
		res.AddedMaxUS != res.Executor.Median.MaxUS-res.Bare.Median.MaxUS {
		t.Errorf("added figures are not the differences of the percentiles: %+v", res)
	}
}

// TestRate runs the rate workload for about 2 s: the executor must keep
// the simulator from answering a single 429, and every request must be
// accounted for.
func TestRate(t *testing.T) {
	res, err := runRate(testContext(t), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.RateLimited != 0 || res.Failed != 0 {
		t.Errorf("%d 429s, %d failed requests; want none", res.RateLimited, res.Failed)
	}
	if res.Completed != res.Submitted || res.SimulatorRequests != res.Submitted || res.SimulatorAdmitted != res.Submitted {
		t.Errorf("submitted %d, completed %d, simulator saw %d and admitted %d",
			res.Submitted, res.Completed, res.SimulatorRequests, res.SimulatorAdmitted)
	}
	// The executor charges what the simulator charges, request by request.
	if res.TokensAdmitted != res.TokensExpected {
		t.Errorf("simulator admitted %d tokens, the requests cost %d", res.TokensAdmitted, res.TokensExpected)
	}
	if res.RequestFraction <= 0 || res.TokenFraction <= 0 || res.WindowSeconds <= 0 {
		t.Errorf("fractions %v, %v over %v s", res.RequestFraction, res.TokenFraction, res.WindowSeconds)
	}
	if res.MaxRequestsIn1s <= 0 || res.MaxRequestsIn1s > RateLimit+RateSimulatorBurst {
		t.Errorf("largest 1 s burst %d", res.MaxRequestsIn1s)
	}
	if res.LargeCost <= res.SmallCost || res.TokensPerMinute != RateLimit*30*(res.SmallCost+res.LargeCost) {
		t.Errorf("costs %d and %d, token limit %d", res.SmallCost, res.LargeCost, res.TokensPerMinute)
	}
}

func TestMemory(t *testing.T) {
	s := tiny()
	res, err := runMemory(testContext(t), s)
	if err != nil {
		t.Fatal(err)
	}
	n := s.MemoryRequests
	ex, hand := res.Executor.Median, res.HandLoop.Median
	if ex.Requests != n || ex.HeapBytesPerRequest <= 0 || ex.DrainSeconds <= 0 {
		t.Errorf("executor figures %+v", ex)
	}
	// The executor's goroutines do not follow the queue's length; the
	// hand loop's are one per queued request.
	if d := ex.GoroutinesAfter - ex.GoroutinesTenth; d < -goroutineSlack || d > goroutineSlack {
		t.Errorf("executor goroutines %d → %d → %d grow with the queue", ex.GoroutinesBefore, ex.GoroutinesTenth, ex.GoroutinesAfter)
	}
	if hand.GoroutinesAfter-hand.GoroutinesBefore < n {
		t.Errorf("hand loop goroutines %d → %d, want at least %d more", hand.GoroutinesBefore, hand.GoroutinesAfter, n)
	}
	if hand.StackBytesPerRequest <= 0 || hand.DrainSeconds <= 0 {
		t.Errorf("hand loop figures %+v", hand)
	}
	if (res.Failsafe != nil) != FailsafeBuilt() {
		t.Errorf("failsafe series present %v, built %v", res.Failsafe != nil, FailsafeBuilt())
	}
}

// TestSameBody checks that imodel and the bare client send the same bytes
// with the same headers.
func TestSameBody(t *testing.T) {
	sim, err := simulator.New(simConfigHTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var (
		mu     sync.Mutex
		bodies [][]byte
		heads  []http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, heads = append(bodies, b), append(heads, r.Header.Clone())
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		sim.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := testContext(t)
	im, err := newIModelTarget(sim, srv.URL+"/v1", 1)
	if err != nil {
		t.Fatal(err)
	}
	bare := newBareTarget(sim, srv.URL+"/v1", 1)
	defer closeAll(ctx, []Target{im, bare})
	if err := im.chat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bare.chat(ctx); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) {
		t.Fatalf("bodies differ:\nimodel %s\nbare   %s", bodies[0], bodies[1])
	}
	for _, h := range []string{"Content-Type", "Accept", "Authorization"} {
		if heads[0].Get(h) != heads[1].Get(h) {
			t.Errorf("header %s: imodel %q, bare %q", h, heads[0].Get(h), heads[1].Get(h))
		}
	}
}

// TestFailuresAreReported checks that the subjects fail a run whose
// requests fail or go missing, rather than counting them as done.
func TestFailuresAreReported(t *testing.T) {
	ctx := testContext(t)
	sim, base, err := startSimulator(simulator.Config{Seed: 1, Faults: simulator.Faults{ServerError: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	im, err := NewIModelTarget(sim, base, 4)
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{im, NewBareTarget(sim, base, 4)}
	defer closeAll(ctx, targets)
	for _, tg := range targets {
		if err := tg.Run(ctx, 8); err == nil || !strings.Contains(err.Error(), "8 of 8 requests failed") {
			t.Errorf("%s against a failing server: %v", tg.Name(), err)
		}
		if _, err := Measure(ctx, tg, 2); err == nil || !strings.Contains(err.Error(), tg.Name()) {
			t.Errorf("Measure of %s: %v", tg.Name(), err)
		}
	}
	// A count that does not add up is an error too.
	if err := checkServed(sim, sim.Stats(), 1); err == nil {
		t.Error("a request the simulator never saw was not missed")
	}
	if _, err := openLoop(ctx, 1000, 5*time.Millisecond, func(context.Context) error { return errors.New("boom") }); err == nil {
		t.Error("open loop ignored failures")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := openLoop(cancelled, 1000, 5*time.Millisecond, func(context.Context) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("open loop after cancel: %v", err)
	}
	if err := NewHandLoop(2).Run(cancelled, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("hand loop after cancel: %v", err)
	}
	if _, err := runClosedLoop(cancelled, 5, 2, func(ctx context.Context) error { return ctx.Err() }); !errors.Is(err, context.Canceled) {
		t.Errorf("closed loop after cancel: %v", err)
	}
	p, err := NewExecutorPipeline(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(cancelled, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("executor after cancel: %v", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Error(err)
	}
}
