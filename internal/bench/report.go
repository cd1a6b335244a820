package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// A Row is one line of the table: a figure of lionactor's beside the same
// figure of a baseline measured in the same run.
type Row struct {
	Workload      string  `json:"workload"`
	Metric        string  `json:"metric"`
	Unit          string  `json:"unit"`
	Value         float64 `json:"value"`
	Shown         string  `json:"shown"`
	Baseline      string  `json:"baseline"`
	BaselineValue float64 `json:"baseline_value"`
	BaselineShown string  `json:"baseline_shown"`
	// Ratio is Value / BaselineValue; 0 when there is no baseline figure.
	Ratio float64 `json:"ratio"`
	// Delta, for latencies, is Value − BaselineValue: what lionactor adds.
	Delta  *float64 `json:"delta,omitempty"`
	Target string   `json:"target,omitempty"`
	// Met says whether the target is met; nil when the row has none or it
	// cannot be judged.
	Met *bool `json:"met,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// Report is the outcome of a run: the figures of each workload and the
// table's rows.
type Report struct {
	Machine       Machine           `json:"machine"`
	Sizes         Sizes             `json:"sizes"`
	Started       time.Time         `json:"started"`
	Seconds       float64           `json:"seconds"`
	FailsafeBuilt bool              `json:"failsafe_built"`
	Pipeline      *PipelineResult   `json:"pipeline,omitempty"`
	HTTP          *HTTPResult       `json:"http,omitempty"`
	Latency       *LatencyResult    `json:"latency,omitempty"`
	Rate          *RateResult       `json:"rate,omitempty"`
	Memory        *MemoryResult     `json:"memory,omitempty"`
	Rows          []Row             `json:"rows"`
	Errors        map[string]string `json:"errors,omitempty"`
}

// Targets of the table.
const (
	targetPipelineCallsPerSec = 250_000
	targetPipelineNsPerCall   = 4_000
	targetPipelineVsHand      = 0.5 // within 2× of the hand loop
	targetHTTPVsBare          = 0.95
	targetAddedP50US          = 50
	targetAddedP99US          = 500
	targetRequestFraction     = 0.99
	targetTokenFraction       = 0.97
	targetHeapPerRequest      = 1024
	// goroutineSlack is how far the goroutine count may move between a
	// tenth of the requests queued and all of them, for it to count as
	// independent of the queue's length.
	goroutineSlack = 4
)

func met(ok bool) *bool { return &ok }

// rows builds the table from the figures.
func (r *Report) rows() []Row {
	var rows []Row
	if p := r.Pipeline; p != nil {
		rows = append(rows, pipelineRows(p)...)
	}
	if h := r.HTTP; h != nil {
		ex, b := h.Executor.Median, h.Bare.Median
		rt := ratio(ex.CallsPerSec, b.CallsPerSec)
		rows = append(rows, Row{
			Workload: "2 http", Metric: "requests/s", Unit: "req/s",
			Value: ex.CallsPerSec, Shown: fmtInt(ex.CallsPerSec),
			Baseline: nameBare, BaselineValue: b.CallsPerSec, BaselineShown: fmtInt(b.CallsPerSec),
			Ratio: rt, Target: "≥ 0.95× bare", Met: met(rt >= targetHTTPVsBare),
		})
	}
	if l := r.Latency; l != nil {
		rows = append(rows, latencyRows(l)...)
	}
	if rt := r.Rate; rt != nil {
		rows = append(rows, rateRows(rt)...)
	}
	if m := r.Memory; m != nil {
		rows = append(rows, memoryRows(m, r.FailsafeBuilt)...)
	}
	return rows
}

func pipelineRows(p *PipelineResult) []Row {
	ex := p.Executor.Median
	type base struct {
		name string
		s    *Series
	}
	bases := []base{{nameHandLoop, &p.HandLoop}, {nameFailsafe, p.Failsafe}}
	var rows []Row
	for _, b := range bases {
		if b.s == nil {
			rows = append(rows, Row{Workload: "1 pipeline", Metric: "calls/s", Unit: "calls/s",
				Value: ex.CallsPerSec, Shown: fmtInt(ex.CallsPerSec),
				Baseline: b.name, BaselineShown: "not in this build (-tags failsafe)", Target: "ahead of failsafe-go"})
			continue
		}
		bm := b.s.Median
		cps := Row{Workload: "1 pipeline", Metric: "calls/s", Unit: "calls/s",
			Value: ex.CallsPerSec, Shown: fmtInt(ex.CallsPerSec),
			Baseline: b.name, BaselineValue: bm.CallsPerSec, BaselineShown: fmtInt(bm.CallsPerSec),
			Ratio: ratio(ex.CallsPerSec, bm.CallsPerSec)}
		ns := Row{Workload: "1 pipeline", Metric: "ns/call", Unit: "ns",
			Value: ex.NsPerCall, Shown: fmtInt(ex.NsPerCall),
			Baseline: b.name, BaselineValue: bm.NsPerCall, BaselineShown: fmtInt(bm.NsPerCall),
			Ratio: ratio(ex.NsPerCall, bm.NsPerCall)}
		if b.name == nameHandLoop {
			cps.Target = "≥ 250,000/s and ≥ 0.5× hand loop"
			cps.Met = met(ex.CallsPerSec >= targetPipelineCallsPerSec && cps.Ratio >= targetPipelineVsHand)
			ns.Target = "< 4,000 ns"
			ns.Met = met(ex.NsPerCall < targetPipelineNsPerCall)
		} else {
			cps.Target = "> 1× (ahead of failsafe-go)"
			cps.Met = met(cps.Ratio > 1)
		}
		rows = append(rows, cps, ns,
			Row{Workload: "1 pipeline", Metric: "allocs/call", Unit: "allocs",
				Value: ex.AllocsPerCall, Shown: fmtFloat(ex.AllocsPerCall, 1),
				Baseline: b.name, BaselineValue: bm.AllocsPerCall, BaselineShown: fmtFloat(bm.AllocsPerCall, 1),
				Ratio: ratio(ex.AllocsPerCall, bm.AllocsPerCall)},
			Row{Workload: "1 pipeline", Metric: "bytes/call", Unit: "B",
				Value: ex.BytesPerCall, Shown: fmtInt(ex.BytesPerCall),
				Baseline: b.name, BaselineValue: bm.BytesPerCall, BaselineShown: fmtInt(bm.BytesPerCall),
				Ratio: ratio(ex.BytesPerCall, bm.BytesPerCall)})
	}
	return rows
}

func latencyRows(l *LatencyResult) []Row {
	ex, b := l.Executor.Median, l.Bare.Median
	row := func(metric string, v, bv float64, target string, limit float64) Row {
		d := v - bv
		r := Row{Workload: "3 latency", Metric: metric, Unit: "µs",
			Value: v, Shown: fmt.Sprintf("%s (%s)", fmtMs(v), fmtSignedUs(d)),
			Baseline: nameBare, BaselineValue: bv, BaselineShown: fmtMs(bv),
			Ratio: ratio(v, bv), Delta: &d, Target: target}
		if target != "" {
			r.Met = met(d <= limit)
		}
		return r
	}
	return []Row{
		row("p50 latency (added)", ex.P50US, b.P50US, "added ≤ 50 µs", targetAddedP50US),
		row("p99 latency (added)", ex.P99US, b.P99US, "added ≤ 500 µs", targetAddedP99US),
		row("max latency (added)", ex.MaxUS, b.MaxUS, "", 0),
	}
}

func rateRows(r *RateResult) []Row {
	return []Row{
		{Workload: "4 rate", Metric: "request rate", Unit: "req/s",
			Value: r.RequestRate, Shown: fmtFloat(r.RequestRate, 2) + "/s",
			Baseline: "limit", BaselineValue: float64(r.RequestsPerSecond), BaselineShown: fmtInt(float64(r.RequestsPerSecond)) + "/s",
			Ratio: r.RequestFraction, Target: "≥ 0.99× limit", Met: met(r.RequestFraction >= targetRequestFraction)},
		{Workload: "4 rate", Metric: "token rate", Unit: "tokens/min",
			Value: r.TokenRate, Shown: fmtInt(r.TokenRate) + "/min",
			Baseline: "limit", BaselineValue: float64(r.TokensPerMinute), BaselineShown: fmtInt(float64(r.TokensPerMinute)) + "/min",
			Ratio: r.TokenFraction, Target: "≥ 0.97× limit", Met: met(r.TokenFraction >= targetTokenFraction)},
		{Workload: "4 rate", Metric: "429 responses", Unit: "responses",
			Value: float64(r.RateLimited), Shown: fmtInt(float64(r.RateLimited)),
			Baseline: "requests sent", BaselineValue: float64(r.Submitted), BaselineShown: fmtInt(float64(r.Submitted)),
			Ratio: ratio(float64(r.RateLimited), float64(r.Submitted)), Target: "0", Met: met(r.RateLimited == 0)},
		{Workload: "4 rate", Metric: "max requests in 1 s", Unit: "requests",
			Value: float64(r.MaxRequestsIn1s), Shown: fmtInt(float64(r.MaxRequestsIn1s)),
			Baseline: "limit", BaselineValue: float64(r.RequestsPerSecond), BaselineShown: fmtInt(float64(r.RequestsPerSecond)),
			Ratio: ratio(float64(r.MaxRequestsIn1s), float64(r.RequestsPerSecond))},
	}
}

func memoryRows(m *MemoryResult, failsafeBuilt bool) []Row {
	ex := m.Executor.Median
	bases := []*MemorySeries{&m.HandLoop}
	if m.Failsafe != nil {
		bases = append(bases, m.Failsafe)
	}
	goroutines := func(f MemoryFigures) string {
		return fmt.Sprintf("%s → %s → %s", fmtInt(float64(f.GoroutinesBefore)), fmtInt(float64(f.GoroutinesTenth)), fmtInt(float64(f.GoroutinesAfter)))
	}
	independent := math.Abs(float64(ex.GoroutinesAfter-ex.GoroutinesTenth)) <= goroutineSlack
	var rows []Row
	for i, b := range bases {
		bm := b.Median
		heap := Row{Workload: "5 memory", Metric: "heap B/queued request", Unit: "B",
			Value: ex.HeapBytesPerRequest, Shown: fmtInt(ex.HeapBytesPerRequest),
			Baseline: b.Name, BaselineValue: bm.HeapBytesPerRequest, BaselineShown: fmtInt(bm.HeapBytesPerRequest),
			Ratio: ratio(ex.HeapBytesPerRequest, bm.HeapBytesPerRequest)}
		g := Row{Workload: "5 memory", Metric: "goroutines (before → 10% → all queued)", Unit: "goroutines",
			Value: float64(ex.GoroutinesAfter), Shown: goroutines(ex),
			Baseline: b.Name, BaselineValue: float64(bm.GoroutinesAfter), BaselineShown: goroutines(bm),
			Ratio: ratio(float64(ex.GoroutinesAfter), float64(bm.GoroutinesAfter))}
		if i == 0 {
			heap.Target, heap.Met = "≤ 1,024 B", met(ex.HeapBytesPerRequest <= targetHeapPerRequest)
			g.Target, g.Met = "independent of queue length", met(independent)
		}
		rows = append(rows, heap,
			Row{Workload: "5 memory", Metric: "stack B/queued request", Unit: "B",
				Value: ex.StackBytesPerRequest, Shown: fmtInt(ex.StackBytesPerRequest),
				Baseline: b.Name, BaselineValue: bm.StackBytesPerRequest, BaselineShown: fmtInt(bm.StackBytesPerRequest),
				Ratio: ratio(ex.StackBytesPerRequest, bm.StackBytesPerRequest)},
			g,
			Row{Workload: "5 memory", Metric: "drain time", Unit: "s",
				Value: ex.DrainSeconds, Shown: fmtMs(ex.DrainSeconds * 1e6),
				Baseline: b.Name, BaselineValue: bm.DrainSeconds, BaselineShown: fmtMs(bm.DrainSeconds * 1e6),
				Ratio: ratio(ex.DrainSeconds, bm.DrainSeconds)})
	}
	if !failsafeBuilt {
		rows = append(rows, Row{Workload: "5 memory", Metric: "heap B/queued request", Unit: "B",
			Value: ex.HeapBytesPerRequest, Shown: fmtInt(ex.HeapBytesPerRequest),
			Baseline: nameFailsafe, BaselineShown: "not in this build (-tags failsafe)"})
	}
	return rows
}

// WriteTable writes the report as a text table, with the machine, the sizes
// and any workload's error.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Sizes
	mode := "full"
	if s.Quick {
		mode = "quick"
	}
	if s.Scale != 1 {
		mode += fmt.Sprintf(", scale %g", s.Scale)
	}
	fmt.Fprintf(w, "lionactor bench: %d CPUs, GOMAXPROCS %d, %s %s/%s; %s sizes, median of %d runs per subject; %.1f s\n",
		r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.OS, r.Machine.Arch, mode, s.Reps, r.Seconds)
	fmt.Fprintf(w, "  pipeline %s no-op calls; http %s requests; latency %d req/s for %gs at %v simulated; rate %gs at %d req/s; memory %s queued; concurrency %d\n\n",
		fmtInt(float64(s.PipelineCalls)), fmtInt(float64(s.HTTPRequests)), s.LatencyRate, s.LatencySeconds,
		SimulatedLatency, s.RateSeconds, RateLimit, fmtInt(float64(s.MemoryRequests)), s.Concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tMETRIC\tLIONACTOR\tBASELINE\tRATIO\tTARGET\tMET")
	for _, row := range r.Rows {
		rt := "—"
		if row.Ratio != 0 || row.BaselineValue != 0 {
			rt = fmtRatio(row.Ratio)
		}
		m := "—"
		if row.Met != nil {
			m = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		target := row.Target
		if target == "" {
			target = "—"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s: %s\t%s\t%s\t%s\n", row.Workload, row.Metric, row.Shown, row.Baseline, row.BaselineShown, rt, target, m)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rr := r.Rate; rr != nil {
		fmt.Fprintf(w, "\nrate: limits %d req/s and %s tokens/min (requests of %d and %d tokens in turn); executor bursts %d req, %s tokens; simulator bursts %d req, %s tokens; window %.1f s; the executor grants at most %d requests in any 1 s (limit + burst), arrivals add delivery jitter\n",
			rr.RequestsPerSecond, fmtInt(float64(rr.TokensPerMinute)), rr.SmallCost, rr.LargeCost,
			rr.ExecutorRequestBurst, fmtInt(float64(rr.ExecutorTokenBurst)), rr.SimulatorRequestBurst, fmtInt(float64(rr.SimulatorTokenBurst)), rr.WindowSeconds,
			rr.RequestsPerSecond+rr.ExecutorRequestBurst)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "latency: lionactor's share, last run: imodel building the request p50 %s, p99 %s; submit → call start p50 %s, p99 %s; call end → reply p50 %s, p99 %s\n",
			fmtUs(l.BuildToSubmit.P50US), fmtUs(l.BuildToSubmit.P99US), fmtUs(l.SubmitToCall.P50US), fmtUs(l.SubmitToCall.P99US),
			fmtUs(l.CallToReply.P50US), fmtUs(l.CallToReply.P99US))
	}
	for _, name := range Workloads {
		if msg, ok := r.Errors[name]; ok {
			fmt.Fprintf(w, "ERROR %s: %s\n", name, msg)
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// fmtInt rounds v and groups its digits by thousands.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtFloat formats v with prec decimals, grouping the integer part.
func fmtFloat(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s := strconv.FormatFloat(math.Abs(v), 'f', prec, 64)
	whole, frac, _ := strings.Cut(s, ".")
	w, _ := strconv.ParseFloat(whole, 64)
	out := fmtInt(w)
	if v < 0 {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// fmtMs shows microseconds as milliseconds.
func fmtMs(us float64) string { return fmtFloat(us/1000, 3) + " ms" }

// fmtUs shows microseconds.
func fmtUs(us float64) string { return fmtInt(us) + " µs" }

// fmtSignedUs shows a difference in microseconds with its sign.
func fmtSignedUs(us float64) string {
	if us >= 0 {
		return "+" + fmtInt(us) + " µs"
	}
	return fmtInt(us) + " µs"
}

func fmtRatio(r float64) string {
	switch {
	case r == 0:
		return "0×"
	case r < 0.01:
		return strconv.FormatFloat(r, 'g', 2, 64) + "×"
	}
	return fmtFloat(r, 2) + "×"
}
