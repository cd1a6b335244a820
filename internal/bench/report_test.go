package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRunReport runs every workload at the tiniest sizes through Run and
// checks the table and the JSON.
func TestRunReport(t *testing.T) {
	var progress bytes.Buffer
	rep, err := Run(testContext(t), Options{Quick: true, Scale: 0.001, Reps: 1, LatencyRate: 400, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pipeline == nil || rep.HTTP == nil || rep.Latency == nil || rep.Rate == nil || rep.Memory == nil || rep.Errors != nil {
		t.Fatalf("report %+v", rep)
	}
	if rep.Machine.CPUs <= 0 || rep.Machine.GoVersion == "" || rep.Seconds <= 0 {
		t.Errorf("machine %+v, %v s", rep.Machine, rep.Seconds)
	}
	seen := map[string]bool{}
	for _, row := range rep.Rows {
		seen[row.Workload] = true
		if row.Shown == "" || row.Baseline == "" || row.BaselineShown == "" {
			t.Errorf("row %+v has an empty cell", row)
		}
		if row.BaselineValue > 0 && row.Value > 0 && row.Ratio <= 0 {
			t.Errorf("row %+v: ratio not positive", row)
		}
		if row.Met != nil && row.Target == "" {
			t.Errorf("row %+v is judged without a target", row)
		}
	}
	for _, w := range []string{"1 pipeline", "2 http", "3 latency", "4 rate", "5 memory"} {
		if !seen[w] {
			t.Errorf("no row for %s", w)
		}
	}
	for _, w := range Workloads {
		if !strings.Contains(progress.String(), "bench: "+w+": done") {
			t.Errorf("progress lacks %s:\n%s", w, progress.String())
		}
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{"WORKLOAD", "RATIO", "TARGET", "calls/s", "hand loop", "bare net/http", "requests/s",
		"p50 latency", "p99 latency", "request rate", "token rate", "429 responses", "heap B/queued request", "goroutines", "quick"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines < len(rep.Rows)+3 {
		t.Errorf("table has %d lines for %d rows:\n%s", lines, len(rep.Rows), out)
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(rep.Rows) || back.Pipeline == nil || back.Rate == nil ||
		back.Pipeline.Executor.Median.CallsPerSec != rep.Pipeline.Executor.Median.CallsPerSec ||
		back.Rate.Submitted != rep.Rate.Submitted || back.Sizes != rep.Sizes {
		t.Errorf("JSON does not carry the same figures:\n%s", js.String())
	}
}

// TestRunErrors checks that a workload that cannot finish is reported, and
// the report still written.
func TestRunErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := Run(ctx, Options{Quick: true, Scale: 0.001, Reps: 1, Only: []string{WorkloadPipeline, WorkloadMemory}})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the cancellation", err)
	}
	if rep == nil || len(rep.Errors) != 2 || rep.Pipeline != nil || rep.Memory != nil || rep.HTTP != nil {
		t.Fatalf("report %+v", rep)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "ERROR pipeline:") || !strings.Contains(table.String(), "ERROR memory:") {
		t.Errorf("table lacks the errors:\n%s", table.String())
	}
	if _, err := Run(context.Background(), Options{Only: []string{"nope"}}); err == nil {
		t.Error("an unknown workload was accepted")
	}
}

// TestRows checks the rows and targets on figures made up to sit on
// either side of each target.
func TestRows(t *testing.T) {
	series := func(cps, ns float64) Series {
		return Series{Median: Throughput{Calls: 10, CallsPerSec: cps, NsPerCall: ns, AllocsPerCall: 3, BytesPerCall: 100}}
	}
	fs := series(100_000, 10_000)
	r := &Report{
		FailsafeBuilt: true,
		Pipeline:      &PipelineResult{Executor: series(300_000, 3_000), HandLoop: series(700_000, 2_000), Failsafe: &fs},
		HTTP:          &HTTPResult{Executor: series(960, 0), Bare: series(1000, 0)},
		Latency: &LatencyResult{
			Executor: LatencySeries{Median: Distribution{P50US: 20_040, P99US: 21_000, MaxUS: 30_000}},
			Bare:     LatencySeries{Median: Distribution{P50US: 20_000, P99US: 20_400, MaxUS: 25_000}},
		},
		Rate: &RateResult{RequestsPerSecond: 100, TokensPerMinute: 6000, ExecutorRequestBurst: 10,
			RequestRate: 99.5, RequestFraction: 0.995, TokenRate: 5700, TokenFraction: 0.95, RateLimited: 1, Submitted: 100, MaxRequestsIn1s: 111},
		Memory: &MemoryResult{
			Executor: MemorySeries{Median: MemoryFigures{HeapBytesPerRequest: 900, GoroutinesBefore: 70, GoroutinesTenth: 134, GoroutinesAfter: 135, DrainSeconds: 0.1}},
			HandLoop: MemorySeries{Name: nameHandLoop, Median: MemoryFigures{HeapBytesPerRequest: 300, StackBytesPerRequest: 4000, GoroutinesBefore: 3, GoroutinesAfter: 1003, DrainSeconds: 0.05}},
			Failsafe: &MemorySeries{Name: nameFailsafe, Median: MemoryFigures{HeapBytesPerRequest: 1300, GoroutinesAfter: 1003, DrainSeconds: 0.08}},
		},
	}
	want := map[string]bool{ // metric and baseline → met
		"calls/s|hand loop":                                false, // 0.6× the hand loop but ≥ 250,000
		"ns/call|hand loop":                                true,
		"calls/s|failsafe-go":                              true,
		"requests/s|bare net/http":                         true,
		"p50 latency (added)|bare net/http":                true,
		"p99 latency (added)|bare net/http":                false,
		"request rate|limit":                               true,
		"token rate|limit":                                 false,
		"429 responses|requests sent":                      false,
		"heap B/queued request|hand loop":                  true,
		"goroutines (before → 10% → all queued)|hand loop": true,
	}
	rows := r.rows()
	got := map[string]bool{}
	for _, row := range rows {
		if row.Met != nil {
			got[row.Metric+"|"+row.Baseline] = *row.Met
		}
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: met %v (judged %v), want %v", k, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("judged rows %v, want %v", got, want)
	}
	r.Pipeline.HandLoop = series(400_000, 2_500)
	for _, row := range r.rows() {
		if row.Metric == "calls/s" && row.Baseline == nameHandLoop && !*row.Met {
			t.Errorf("300,000/s against 400,000/s misses its target: %+v", row)
		}
	}

	// Without failsafe-go the table says so.
	r.FailsafeBuilt, r.Pipeline.Failsafe, r.Memory.Failsafe = false, nil, nil
	var table bytes.Buffer
	r.Rows = r.rows()
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(table.String(), "not in this build"); n != 2 {
		t.Errorf("%d notes of the missing failsafe-go baseline:\n%s", n, table.String())
	}
}

func TestOptions(t *testing.T) {
	full := Options{}.Sizes()
	if full.Reps != 5 || full.PipelineCalls != 200_000 || full.HTTPRequests != 20_000 || full.LatencySeconds != 10 ||
		full.RateSeconds != 30 || full.MemoryRequests != 100_000 || full.LatencyRate != DefaultLatencyRate || full.Scale != 1 {
		t.Errorf("full sizes %+v", full)
	}
	quick := Options{Quick: true, LatencyRate: 500}.Sizes()
	if quick.Reps != 3 || quick.PipelineCalls != 50_000 || quick.HTTPRequests != 5_000 || quick.LatencySeconds != 2 ||
		quick.RateSeconds != 10 || quick.MemoryRequests != 20_000 || quick.LatencyRate != 500 {
		t.Errorf("quick sizes %+v", quick)
	}
	small := Options{Quick: true, Scale: 1e-9, Reps: 2}.Sizes()
	if small.Reps != 2 || small.PipelineCalls != 1 || small.MemoryRequests != 2*Concurrency || small.LatencySeconds <= 0 || small.RateSeconds <= 0 {
		t.Errorf("smallest sizes %+v", small)
	}
	for _, bad := range []Options{{Scale: -1}, {Reps: -1}, {LatencyRate: -5}, {Only: []string{"pipeline", "warp"}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (Options{Only: Workloads}).Validate(); err != nil {
		t.Error(err)
	}
	if (Options{Only: []string{WorkloadRate}}).runs(WorkloadHTTP) || !(Options{}).runs(WorkloadHTTP) {
		t.Error("runs selects the wrong workloads")
	}
}

func TestHelpers(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3 %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median of 4 %v", m)
	}
	if median(nil) != 0 || percentile(nil, 0.5) != 0 || ratio(1, 0) != 0 || perItem(5, 3, 1) != 0 || perItem(1, 5, 0) != 0 {
		t.Error("empty cases")
	}
	ds := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(ds, 0.5) != 5 || percentile(ds, 0.99) != 10 || percentile(ds, 0) != 1 {
		t.Errorf("percentiles %v %v %v", percentile(ds, 0.5), percentile(ds, 0.99), percentile(ds, 0))
	}
	if d := summarize(ds); d.Count != 10 || d.P50US != 0.005 || d.MaxUS != 0.01 || d.MeanUS != 0.0055 {
		t.Errorf("summary %+v", d)
	}
	if got := split(10, 3); got[0]+got[1]+got[2] != 10 || got[0] != 4 || got[2] != 3 {
		t.Errorf("split %v", got)
	}
	var order []string
	run := func(name string) func(int) error {
		return func(int) error { order = append(order, name); return nil }
	}
	if err := alternate(2, run("a"), run("b")); err != nil || strings.Join(order, "") != "abba" {
		t.Errorf("alternate order %v, %v", order, err)
	}
	boom := errors.New("boom")
	calls := 0
	if err := alternate(3, func(int) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("alternate after an error: %v, %d calls", err, calls)
	}
	if err := waitFor(context.Background(), 5*time.Millisecond, "never", func() bool { return false }); !errors.Is(err, errTimeout) {
		t.Errorf("waitFor timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitFor(ctx, time.Second, "never", func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("waitFor cancelled: %v", err)
	}
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.6: "1,234,568", -4321: "-4,321"} {
		if got := fmtInt(v); got != want {
			t.Errorf("fmtInt(%v) = %q, want %q", v, got, want)
		}
	}
	for _, c := range []struct {
		v    float64
		prec int
		want string
	}{{1234.5678, 2, "1,234.57"}, {-0.25, 2, "-0.25"}, {12, 1, "12.0"}} {
		if got := fmtFloat(c.v, c.prec); got != c.want {
			t.Errorf("fmtFloat(%v, %d) = %q, want %q", c.v, c.prec, got, c.want)
		}
	}
	inf := 1 / zero()
	if fmtInt(inf) != "+Inf" || fmtFloat(inf, 1) != "+Inf" {
		t.Errorf("infinities %q %q", fmtInt(inf), fmtFloat(inf, 1))
	}
	if fmtRatio(0) != "0×" || fmtRatio(0.004) != "0.004×" || fmtRatio(1.234) != "1.23×" {
		t.Errorf("ratios %q %q %q", fmtRatio(0), fmtRatio(0.004), fmtRatio(1.234))
	}
	if fmtSignedUs(12.4) != "+12 µs" || fmtSignedUs(-3) != "-3 µs" || fmtMs(20_500) != "20.500 ms" {
		t.Errorf("durations %q %q %q", fmtSignedUs(12.4), fmtSignedUs(-3), fmtMs(20_500))
	}
}

func zero() float64 { return 0 }
