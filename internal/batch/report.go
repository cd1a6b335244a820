package batch

import (
	"io"
	"math"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/messages"
)

// Recorder keeps the timeline of a run for its report: what the executor's
// snapshots say happened, second by second. Its memory grows with the run's
// duration (one small record per second), with the calls in flight at once
// and with the calls started in one second, never with the number of
// requests, so a run of 100,000 requests costs what a run of 100 does over
// the same time.
//
// Feed it every snapshot with Observe; it reads the times the snapshots
// carry, not the clock, so what it records is what the executor saw. The
// snapshots that start and end calls come from the executor's queue in the
// order they happened, which the count of calls in flight relies on; one
// that came late would count at the latest time seen. Its methods are safe
// for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	info  ReportInfo
	start time.Time

	secs []second
	// inFlight holds the attempts between CALLING and the snapshot that
	// ends them: at most the concurrency cap.
	inFlight map[uuid.UUID]attempt
	// last is when the number in flight last changed (from start), the
	// point up to which secs' busy time is accounted.
	last time.Duration
	// window holds the start times of the calls of the last second, for
	// the most calls started in any one-second window.
	window []time.Duration

	t       reportTotals
	latency histogram
	deps    []deploymentRecord // by the index of info.Deployments; nil until one is seen
}

// ReportInfo describes the run a report is of: its limits and what it
// called. It holds nothing secret (no key, no header, no URL path or query).
type ReportInfo struct {
	// RPM, TPM and Concurrency are the run's limits; TPM 0 means none.
	RPM, TPM, Concurrency int
	// Burst is how many calls the request limit lets start at once.
	Burst int
	// Provider and Model name what was called; Host is the endpoint's host.
	// A run over several deployments names them all.
	Provider, Model, Host string
	// Deployments are those of a run over several, whose figures the
	// report breaks down by deployment.
	Deployments []ReportDeployment
}

// ReportDeployment is one deployment of a run over several: its name, the
// model it serves, and its request limit.
type ReportDeployment struct {
	Name, Group string
	RPM, Burst  int
}

// second is what happened in one second of the run.
type second struct {
	started   int32 // attempts that started calling
	retries   int32 // attempts scheduled again after a failure
	limited   int32 // attempts answered 429
	completed int32 // requests that ended, by how
	failed    int32
	cancelled int32
	peak      int32 // most calls in flight at once
	// tokens are the API tokens of the attempts started in this second:
	// what the provider reported, or the estimate for an attempt that
	// reported none, as the limiter charges them. estimated are the
	// estimates alone.
	tokens, estimated int64
	// busy is the calls in flight integrated over the second: busy/1s is
	// the mean number in flight.
	busy time.Duration
}

// attempt is a call in flight.
type attempt struct {
	start     time.Duration // from the run's start
	estimated int
	actual    int // the request's actual tokens before this attempt
	hasActual bool
}

// reportTotals are the run's counts, for the summary table.
type reportTotals struct {
	started, retries, limited    int
	completed, failed, cancelled int
	failedBy                     map[string]int // failures by error kind
	tokens, estimated            int64          // of all attempts, as in second
	actual, estimatedReported    int64          // of requests that reported usage
	reported                     int            // requests that reported usage
	firstStart, lastStart        time.Duration  // firstStart -1 before any
	peak                         int            // most calls in flight at once
	maxInWindow                  int            // most calls started in any one-second window

	// batches are the provider batches of a run through the batch API;
	// nil for an online run.
	batches *batchapi.Stats
	// what the ended requests cost (see costed)
	costActual, costEstimated float64
	priced, unpriced, cached  int
}

// maxKinds bounds the failure kinds counted apart; the rest count as "other".
const maxKinds = 16

// NewRecorder returns a recorder of a run that starts at start.
func NewRecorder(start time.Time, info ReportInfo) *Recorder {
	return &Recorder{
		info: info, start: start,
		inFlight: map[uuid.UUID]attempt{},
		t:        reportTotals{failedBy: map[string]int{}, firstStart: -1},
	}
}

// Observe records one snapshot. It keeps CALLING (an attempt starts), the
// QUEUED snapshot of a retry (an attempt ended in an error that is tried
// again) and the terminal snapshots (a request ended); it ignores the rest.
func (r *Recorder) Observe(ev messages.Event) {
	switch {
	case ev.Status == messages.StatusCalling:
		r.mu.Lock()
		r.callStarted(ev)
		r.byDeployment(ev)
		r.mu.Unlock()
	case ev.Status == messages.StatusQueued && ev.Attempt > 0 && isRetry(ev):
		r.mu.Lock()
		r.retried(ev)
		r.byDeployment(ev)
		r.mu.Unlock()
	case ev.Status.Terminal():
		r.mu.Lock()
		r.ended(ev)
		r.byDeployment(ev)
		r.mu.Unlock()
	}
}

// offset is t's time from the run's start, never negative.
func (r *Recorder) offset(t time.Time) time.Duration { return max(t.Sub(r.start), 0) }

// sec returns the record of the second at d, growing the timeline to it.
func (r *Recorder) sec(d time.Duration) *second {
	i := int(d / time.Second)
	for len(r.secs) <= i {
		r.secs = append(r.secs, second{})
	}
	return &r.secs[i]
}

// advance accounts the calls in flight from the last change up to d.
func (r *Recorder) advance(d time.Duration) {
	if d <= r.last {
		return // a snapshot from the same instant, or an earlier one
	}
	n := int32(len(r.inFlight))
	if n > 0 {
		for from := r.last; from < d; {
			s := r.sec(from)
			to := min(d, (from/time.Second+1)*time.Second)
			s.busy += time.Duration(n) * (to - from)
			s.peak = max(s.peak, n)
			from = to
		}
	}
	r.last = d
}

func (r *Recorder) callStarted(ev messages.Event) {
	d := r.offset(ev.Timings().CallStarted)
	r.advance(d)
	r.inFlight[ev.ID] = attempt{start: d, estimated: ev.Tokens.Estimated, actual: ev.Tokens.Actual, hasActual: ev.Tokens.HasActual}
	s := r.sec(d)
	s.started++
	s.estimated += int64(ev.Tokens.Estimated)
	s.peak = max(s.peak, int32(len(r.inFlight)))

	t := &r.t
	t.started++
	t.estimated += int64(ev.Tokens.Estimated)
	t.peak = max(t.peak, len(r.inFlight))
	if t.firstStart < 0 {
		t.firstStart = d
	}
	t.lastStart = max(t.lastStart, d)
	// The window keeps the starts of the last second, oldest first.
	keep := 0
	for keep < len(r.window) && r.window[keep] <= d-time.Second {
		keep++
	}
	r.window = append(r.window[keep:], d)
	t.maxInWindow = max(t.maxInWindow, len(r.window))
}

// attemptEnded takes the attempt of ev's request out of flight at d and
// charges its tokens to the second it started in.
func (r *Recorder) attemptEnded(ev messages.Event, d time.Duration) {
	a, ok := r.inFlight[ev.ID]
	if !ok {
		return // ended before it called (cancelled while waiting)
	}
	r.advance(d)
	delete(r.inFlight, ev.ID)
	tokens := int64(a.estimated)
	if ev.Tokens.HasActual && (!a.hasActual || ev.Tokens.Actual != a.actual) {
		tokens = int64(ev.Tokens.Actual - a.actual) // this attempt reported usage
	}
	r.sec(a.start).tokens += tokens
	r.t.tokens += tokens
}

func (r *Recorder) retried(ev messages.Event) {
	d := r.offset(ev.Timings().Queued)
	r.attemptEnded(ev, d)
	s := r.sec(d)
	s.retries++
	r.t.retries++
	if info, ok := ev.RetryFailure(); ok && isRateLimit(info) {
		s.limited++
		r.t.limited++
	}
}

func (r *Recorder) ended(ev messages.Event) { r.end(ev, true) }

// end records a request that ended; call says whether its snapshot's call
// is a call of the run's, whose duration is a latency (not a provider
// batch's).
func (r *Recorder) end(ev messages.Event, call bool) {
	d := r.offset(ev.Timings().Finished)
	r.attemptEnded(ev, d)
	s := r.sec(d)
	t := &r.t
	t.costed(ev)
	switch ev.Status {
	case messages.StatusCompleted:
		s.completed++
		t.completed++
		if call && !ev.Cached() { // a call of the run's, not a cache's answer or a batch's
			r.latency.add(ev.Timings().CallDuration())
		}
	case messages.StatusFailed:
		s.failed++
		t.failed++
		kind := "error"
		if info, ok := ev.Failure(); ok {
			kind = info.Kind
			if isRateLimit(info) {
				s.limited++
				t.limited++
			}
		}
		if _, seen := t.failedBy[kind]; !seen && len(t.failedBy) >= maxKinds {
			kind = "other"
		}
		t.failedBy[kind]++
	default:
		s.cancelled++
		t.cancelled++
		return // a cancelled request's tokens are not the run's work
	}
	if ev.Tokens.HasActual {
		t.reported++
		t.actual += int64(ev.Tokens.Actual)
		t.estimatedReported += int64(ev.Tokens.Estimated)
	}
}

// isRateLimit tells an attempt answered 429: by its HTTP status, or, for a
// call that reports none, by its error kind.
func isRateLimit(info messages.ErrorInfo) bool {
	if status, ok := info.Details["status"]; ok {
		return status == "429"
	}
	return info.Kind == "rate_limited"
}

// timeline is the recorder's content at the end of the run, end being when
// the run ended.
type timeline struct {
	info   ReportInfo
	start  time.Time
	wall   time.Duration
	secs   []second
	totals reportTotals
	lat    histogram
	deps   []deploymentRecord
}

// timeline closes the run's record at end and returns a copy of it.
func (r *Recorder) timeline(end time.Time) timeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.offset(end)
	r.advance(d)
	if len(r.secs) == 0 || d > time.Duration(len(r.secs))*time.Second {
		r.sec(max(d-1, 0)) // the timeline covers the run's wall time
	}
	t := r.t
	t.failedBy = make(map[string]int, len(r.t.failedBy))
	for k, v := range r.t.failedBy {
		t.failedBy[k] = v
	}
	return timeline{
		info: r.info, start: r.start, wall: max(d, r.last),
		secs: append([]second(nil), r.secs...), totals: t,
		lat: r.latency.clone(), deps: slices.Clone(r.deps),
	}
}

// WriteHTML writes the report of the run, which ended at end, to w: one
// self-contained HTML page (charts as inline SVG, no script, nothing
// fetched) of the run over time and its summary table.
func (r *Recorder) WriteHTML(w io.Writer, end time.Time) error {
	tl := r.timeline(end)
	return renderReport(w, tl.view())
}

// windowBound is the most calls the limits let start in a window of one
// second: a second's share of the request limit, and the burst.
func (i ReportInfo) windowBound() int {
	if len(i.Deployments) > 0 {
		n := 0 // each deployment's, added up
		for _, d := range i.Deployments {
			n += (d.RPM+59)/60 + max(d.Burst, 1)
		}
		return n
	}
	return (i.RPM+59)/60 + max(i.Burst, 1)
}

// callRate is the achieved rate of calls started, per minute: the
// intervals between the first start and the last, so that a run paced at
// exactly its limit shows 100%.
func (t reportTotals) callRate() float64 {
	span := t.lastStart - t.firstStart
	if t.started < 2 || span <= 0 {
		return 0
	}
	return float64(t.started-1) / span.Minutes()
}

// tokenRate is the achieved rate of API tokens per minute: the mean tokens
// of an attempt at the achieved call rate.
func (t reportTotals) tokenRate() float64 {
	if t.started == 0 {
		return 0
	}
	return float64(t.tokens) / float64(t.started) * t.callRate()
}

// hostOf returns the host of a base URL, without credentials, path or
// query; "" when it has none.
func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Host
}

// histogram counts durations in buckets whose bounds grow by growth from
// histMin: quantiles read from it are within 1% of the exact ones, in a
// few kilobytes for any number of samples.
type histogram struct {
	counts   []int64
	n        int64
	min, max time.Duration
	sum      time.Duration
}

const (
	histMin    = 100 * time.Microsecond
	histGrowth = 1.02
)

func histBucket(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	return int(math.Log(float64(d)/float64(histMin)) / math.Log(histGrowth))
}

// histLower is the lower bound of bucket i.
func histLower(i int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i)))
}

func (h *histogram) add(d time.Duration) {
	d = max(d, 0)
	i := histBucket(d)
	for len(h.counts) <= i {
		h.counts = append(h.counts, 0)
	}
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
}

func (h histogram) clone() histogram {
	h.counts = append([]int64(nil), h.counts...)
	return h
}

// quantile is the nearest-rank q-quantile: the middle of its bucket,
// kept within the smallest and largest samples.
func (h histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.n))), 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			mid := time.Duration(math.Sqrt(float64(histLower(i)) * float64(histLower(i+1))))
			if i == 0 {
				mid = histMin / 2
			}
			return min(max(mid, h.min), h.max)
		}
	}
	return h.max
}

func (h histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// newRecorder returns the recorder of a run that writes a report, or nil.
func newRecorder(cfg Config) *Recorder {
	if cfg.Report == nil {
		return nil
	}
	if cfg.routed() {
		return NewRecorder(time.Now(), cfg.routerReportInfo())
	}
	base := cfg.Endpoint.BaseURL
	if base == "" {
		base = cfg.Endpoint.Provider.DefaultBaseURL()
	}
	return NewRecorder(time.Now(), ReportInfo{
		RPM: cfg.RPM, TPM: cfg.TPM, Concurrency: cfg.Concurrency, Burst: cfg.executorConfig(nil).RequestBurst,
		Provider: string(cfg.Endpoint.Provider), Model: cfg.Endpoint.Model, Host: hostOf(base),
	})
}

// record feeds the run's recorder, if it has one.
func (r *runner) record(ev messages.Event) {
	if r.rec != nil {
		r.rec.Observe(ev)
	}
}

// writeReport writes the run's report, if it has one, as of end.
func (r *runner) writeReport(end time.Time) error {
	if r.rec == nil {
		return nil
	}
	return r.rec.WriteHTML(r.cfg.Report, end)
}
