package batch

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// t0 is the start of every recorded test run; at(s) is s seconds after it.
var t0 = time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// callError is an attempt's error as imodel reports it: a kind and an HTTP
// status in its details.
type callError struct {
	kind   string
	status int
}

func (e *callError) Error() string { return fmt.Sprintf("%s (%d)", e.kind, e.status) }
func (e *callError) Kind() string  { return e.kind }
func (e *callError) Details() map[string]string {
	return map[string]string{"status": fmt.Sprint(e.status)}
}

var (
	err429 = &callError{"rate_limited", 429}
	err500 = &callError{"server", 500}
)

// script is one request's life, as the executor would publish it: every
// snapshot, each at the time it happened.
type script struct {
	l      *messages.Lifecycle
	events []timedEvent
}

type timedEvent struct {
	at time.Time
	ev messages.Event
}

func newScript(tokens int, created time.Time) *script {
	s := &script{l: messages.NewLifecycle(uuid.New(), &messages.Request{Tokens: tokens}, created)}
	s.add(created, s.l.Pending(created))
	s.add(created, s.l.Queue(created, 1, ""))
	return s
}

func (s *script) add(at time.Time, ev messages.Event) *script {
	s.events = append(s.events, timedEvent{at, ev})
	return s
}

func (s *script) call(t float64) *script {
	s.add(at(t), s.l.Process(at(t)))
	return s.add(at(t), s.l.Call(at(t)))
}

func (s *script) complete(t float64, actual int) *script {
	return s.add(at(t), s.l.Complete(at(t), messages.Result{StatusCode: 200, Usage: &messages.Usage{TotalTokens: actual}}))
}

func (s *script) retry(t float64, err error) *script {
	return s.add(at(t), s.l.Retry(at(t), 0, err, messages.Result{}))
}

func (s *script) fail(t float64, err error) *script {
	return s.add(at(t), s.l.Fail(at(t), err, messages.Result{}))
}

func (s *script) cancel(t float64) *script {
	return s.add(at(t), s.l.Cancel(at(t), messages.ErrCancelled))
}

// play feeds the scripts' snapshots to a new recorder in time order, as the
// executor's queue publishes them.
func play(info ReportInfo, scripts ...*script) *Recorder {
	var all []timedEvent
	for _, s := range scripts {
		all = append(all, s.events...)
	}
	slices.SortStableFunc(all, func(a, b timedEvent) int { return a.at.Compare(b.at) })
	r := NewRecorder(t0, info)
	for _, te := range all {
		r.Observe(te.ev)
	}
	return r
}

// scenario is a small run with every kind of ending: a completion, a 429
// that is retried and completes, a server error, a cancellation before any
// call, and a final 429.
func scenario() *Recorder {
	return play(ReportInfo{RPM: 120, TPM: 6000, Concurrency: 4, Provider: "openai", Model: "gpt-4o-mini", Host: "127.0.0.1:1"},
		newScript(20, at(0)).call(0.2).complete(0.5, 30),
		newScript(40, at(0)).call(0.4).retry(0.6, err429).call(1.3).complete(1.8, 50),
		newScript(10, at(0)).call(1.5).fail(2.5, err500),
		newScript(7, at(0)).cancel(2.0),
		newScript(5, at(0)).call(2.2).fail(2.4, err429),
	)
}

func TestRecorderAggregatesPerSecond(t *testing.T) {
	tl := scenario().timeline(at(3.2))
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	want := []second{
		// A runs 0.2–0.5 s, B 0.4–0.6 s: 0.3 s + 0.2 s in flight, two at
		// once; A reported 30 tokens, B's 429 attempt is charged its
		// estimate of 40.
		{started: 2, retries: 1, limited: 1, completed: 1, peak: 2, tokens: 30 + 40, estimated: 20 + 40, busy: ms(500)},
		// B's second attempt 1.3–1.8 s (50 tokens), C from 1.5 s on.
		{started: 2, completed: 1, peak: 2, tokens: 50 + 10, estimated: 40 + 10, busy: ms(500 + 500)},
		// C until 2.5 s, E 2.2–2.4 s ends in a 429; D is cancelled
		// without ever calling.
		{started: 1, limited: 1, failed: 2, cancelled: 1, peak: 2, tokens: 5, estimated: 5, busy: ms(500 + 200)},
		{},
	}
	if len(tl.secs) != len(want) {
		t.Fatalf("%d seconds recorded, want %d: %+v", len(tl.secs), len(want), tl.secs)
	}
	for i := range want {
		got := tl.secs[i]
		// Float seconds make the integral a few nanoseconds off.
		if d := got.busy - want[i].busy; d > time.Microsecond || d < -time.Microsecond {
			t.Errorf("second %d: busy %v, want %v", i, got.busy, want[i].busy)
		}
		got.busy = want[i].busy
		if got != want[i] {
			t.Errorf("second %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}

	tt := tl.totals
	if tt.started != 5 || tt.retries != 1 || tt.limited != 2 || tt.completed != 2 || tt.failed != 2 || tt.cancelled != 1 {
		t.Errorf("counts: %+v", tt)
	}
	if tt.failedBy["server"] != 1 || tt.failedBy["rate_limited"] != 1 || len(tt.failedBy) != 2 {
		t.Errorf("failures by kind = %v, want server 1, rate_limited 1", tt.failedBy)
	}
	if tt.tokens != 135 || tt.estimated != 115 || tt.actual != 80 || tt.reported != 2 || tt.estimatedReported != 60 {
		t.Errorf("tokens: %d charged, %d estimated, %d actual by %d requests estimated at %d; want 135, 115, 80 by 2 at 60",
			tt.tokens, tt.estimated, tt.actual, tt.reported, tt.estimatedReported)
	}
	if tt.peak != 2 {
		t.Errorf("peak in flight %d, want 2", tt.peak)
	}
	// Starts at 0.2, 0.4, 1.3, 1.5 and 2.2 s: 1.3, 1.5 and 2.2 fall in one
	// second.
	if tt.maxInWindow != 3 {
		t.Errorf("most starts in one second %d, want 3", tt.maxInWindow)
	}
	// Four intervals between the first start and the last, over 2 s.
	if got := tt.callRate(); math.Abs(got-120) > 1e-9 {
		t.Errorf("call rate %v per minute, want 120", got)
	}
	if got, want := tt.tokenRate(), 135.0/5*120; math.Abs(got-want) > 1e-9 {
		t.Errorf("token rate %v per minute, want %v", got, want)
	}
	if tl.wall != 3200*time.Millisecond {
		t.Errorf("wall %v, want 3.2s", tl.wall)
	}
	if tl.lat.n != 2 || tl.lat.min != 300*time.Millisecond || tl.lat.max != 500*time.Millisecond {
		t.Errorf("latency %+v: want 2 completed calls of 300 and 500 ms", tl.lat)
	}
}

// TestRecorderRateLimitByKindWithoutStatus: a call that reports no HTTP
// status is a 429 when its kind says rate_limited, and only then.
func TestRecorderRateLimitByKindWithoutStatus(t *testing.T) {
	tl := play(ReportInfo{RPM: 60},
		newScript(1, at(0)).call(0.1).retry(0.2, &kindOnly{"rate_limited"}).call(0.3).fail(0.4, &kindOnly{"timeout"}),
		newScript(1, at(0)).call(0.1).retry(0.2, &callError{"quota_exhausted", 429}).call(0.3).complete(0.4, 1),
		newScript(1, at(0)).call(0.1).retry(0.2, &callError{"server", 503}).call(0.3).complete(0.4, 1),
	).timeline(at(1))
	if tl.totals.limited != 2 || tl.totals.retries != 3 {
		t.Errorf("429s %d, retries %d; want 2 and 3", tl.totals.limited, tl.totals.retries)
	}
}

type kindOnly struct{ kind string }

func (e *kindOnly) Error() string { return e.kind }
func (e *kindOnly) Kind() string  { return e.kind }

// TestRecorderSpreadsLongCalls: a call in flight across seconds counts in
// each of them, for their peak and their mean.
func TestRecorderSpreadsLongCalls(t *testing.T) {
	tl := play(ReportInfo{RPM: 60, Concurrency: 2},
		newScript(1, at(0)).call(0.5).complete(3.25, 1),
	).timeline(at(4))
	wantBusy := []time.Duration{500 * time.Millisecond, time.Second, time.Second, 250 * time.Millisecond}
	for i, w := range wantBusy {
		s := tl.secs[i]
		if d := s.busy - w; d > time.Microsecond || d < -time.Microsecond || s.peak != 1 {
			t.Errorf("second %d: busy %v peak %d, want %v and 1", i, s.busy, s.peak, w)
		}
	}
	if tl.secs[0].started != 1 || tl.secs[3].completed != 1 || tl.secs[0].tokens != 1 {
		t.Errorf("the call is not where it started and ended: %+v", tl.secs)
	}
}

// TestRecorderInterruptedRun: calls still in flight when the report is made
// count as in flight up to the end, and snapshots from before the start
// count in the first second.
func TestRecorderInterruptedRun(t *testing.T) {
	early := newScript(3, t0.Add(-time.Second))
	early.add(t0.Add(-time.Millisecond), early.l.Process(t0.Add(-time.Millisecond)))
	early.add(t0.Add(-time.Millisecond), early.l.Call(t0.Add(-time.Millisecond)))
	r := play(ReportInfo{RPM: 60, Concurrency: 2}, early, newScript(4, at(0)).call(1.5))
	tl := r.timeline(at(2.5))
	if len(tl.secs) != 3 || tl.secs[0].started != 1 || tl.secs[1].started != 1 {
		t.Fatalf("seconds %+v: want 3, a start in each of the first two", tl.secs)
	}
	if tl.secs[2].peak != 2 || tl.secs[2].busy != time.Second {
		t.Errorf("last second: peak %d busy %v, want both calls in flight for its half second", tl.secs[2].peak, tl.secs[2].busy)
	}
	if tl.totals.tokens != 0 || tl.totals.estimated != 7 {
		t.Errorf("tokens %d charged, %d estimated; want 0 (no call ended) and 7", tl.totals.tokens, tl.totals.estimated)
	}
	// The timeline can be taken again: it closes nothing twice.
	if again := r.timeline(at(2.5)); again.secs[2].busy != time.Second {
		t.Errorf("a second timeline changed the busy time: %v", again.secs[2].busy)
	}
}

// TestRecorderEmptyRun: a run with no call still has a one-second timeline.
func TestRecorderEmptyRun(t *testing.T) {
	tl := NewRecorder(t0, ReportInfo{RPM: 60}).timeline(at(0))
	if len(tl.secs) != 1 || tl.totals.started != 0 || tl.totals.callRate() != 0 || tl.totals.tokenRate() != 0 {
		t.Errorf("empty run: %+v", tl)
	}
}

// TestRecorderMemoryFollowsDurationNotRequests: 100,000 requests over ten
// seconds make ten seconds of timeline (and the millisecond the last call
// ends in) and leave nothing in flight.
func TestRecorderMemoryFollowsDurationNotRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 lifecycles")
	}
	const n = 100_000
	r := NewRecorder(t0, ReportInfo{RPM: 600_000, Concurrency: 64})
	for i := range n {
		start := t0.Add(time.Duration(i) * 10 * time.Second / n)
		l := messages.NewLifecycle(uuid.New(), &messages.Request{Tokens: 3}, start)
		l.Pending(start)
		l.Queue(start, 1, "")
		l.Process(start)
		r.Observe(l.Call(start))
		r.Observe(l.Complete(start.Add(time.Millisecond), messages.Result{Usage: &messages.Usage{TotalTokens: 4}}))
	}
	tl := r.timeline(at(10))
	if len(tl.secs) != 11 || len(r.inFlight) != 0 || len(tl.lat.counts) > 200 {
		t.Errorf("%d seconds, %d in flight, %d latency buckets; want 11, 0 and a few", len(tl.secs), len(r.inFlight), len(tl.lat.counts))
	}
	if tl.totals.completed != n || tl.totals.actual != 4*n || tl.totals.maxInWindow != n/10 {
		t.Errorf("totals %+v", tl.totals)
	}
	if len(r.window) > n/10 {
		t.Errorf("the start window holds %d, more than a second's starts", len(r.window))
	}
}

// TestRecorderConcurrentObservers: snapshots of different requests arrive
// from several goroutines (PENDING comes from the submitter).
func TestRecorderConcurrentObservers(t *testing.T) {
	r := NewRecorder(t0, ReportInfo{RPM: 60, Concurrency: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				s := newScript(2, at(0)).call(float64(g)+float64(i)/1000).complete(float64(g)+float64(i)/1000+0.0005, 2)
				for _, te := range s.events {
					r.Observe(te.ev)
				}
			}
		})
	}
	wg.Wait()
	tl := r.timeline(at(9))
	if tl.totals.started != 1600 || tl.totals.completed != 1600 || len(r.inFlight) != 0 {
		t.Errorf("started %d, completed %d, in flight %d; want 1600, 1600, 0", tl.totals.started, tl.totals.completed, len(r.inFlight))
	}
}

func TestRecorderFailureKindsAreBounded(t *testing.T) {
	var scripts []*script
	for i := range maxKinds + 5 {
		scripts = append(scripts, newScript(1, at(0)).call(0.1).fail(0.2, &kindOnly{fmt.Sprintf("kind-%02d", i)}))
	}
	tl := play(ReportInfo{RPM: 60}, scripts...).timeline(at(1))
	if len(tl.totals.failedBy) != maxKinds+1 || tl.totals.failedBy["other"] != 5 {
		t.Errorf("failure kinds %v: want %d named and 5 other", tl.totals.failedBy, maxKinds)
	}
}

// TestHistogramQuantiles: quantiles from the histogram are within 1% of
// the exact nearest-rank ones.
func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	var exact []time.Duration
	// A spread from 50 µs to 20 s, uneven on purpose.
	for i := range 5000 {
		d := time.Duration(50_000 + int64(i)*int64(i)*800)
		h.add(d)
		exact = append(exact, d)
	}
	slices.SortFunc(exact, cmp.Compare)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 1} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.quantile(q)
		if want > histMin && math.Abs(float64(got-want)) > 0.01*float64(want) {
			t.Errorf("q%.2f = %v, exact %v: more than 1%% off", q, got, want)
		}
		if want <= histMin && got > histMin {
			t.Errorf("q%.2f = %v, exact %v: not in the first bucket", q, got, want)
		}
	}
	if h.min != exact[0] || h.max != exact[len(exact)-1] || h.n != 5000 {
		t.Errorf("histogram %+v", h)
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("an empty histogram has quantiles")
	}
}
