package batch

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// Summary counts a run. Its methods are safe for concurrent use; read it
// through Snapshot.
type Summary struct {
	mu sync.Mutex
	s  Snapshot
	// latencies of completed calls, in milliseconds
	latencies []float64
	// latency, when metrics are served, observes each completed call.
	latency prometheus.Histogram
}

// Snapshot is a moment's copy of a Summary.
type Snapshot struct {
	RPMLimit, TPMLimit int
	// Total is the number of requests in the input, when known in advance.
	Total int
	// Read counts request lines read; Unread those left unread by an
	// interrupt; Skipped those with a result from an earlier run.
	Read, Unread, Skipped int
	Completed, Failed     int
	// InvalidInput counts lines failed before any call: malformed, or
	// impossible (too many tokens).
	InvalidInput int
	// Cancelled counts requests an interrupt stopped; they have no line
	// and remain for a rerun.
	Cancelled int
	// Retrying is the number of retries scheduled (attempts after a first).
	Retries int
	// RateLimited is the number of 429 responses.
	RateLimited     int64
	TokensEstimated int64
	TokensActual    int64
	// P50, P95 and P99 are call latencies of completed requests.
	P50, P95, P99 time.Duration
	Start, End    time.Time
	// Shared is the run's part in a shared budget (Config.Budget), as the
	// run ended; its Mode is "" without one.
	Shared messages.SharedStats
}

func newSummary(cfg Config) *Summary {
	return &Summary{s: Snapshot{RPMLimit: cfg.RPM, TPMLimit: cfg.TPM}}
}

func (m *Summary) update(f func(*Snapshot)) {
	m.mu.Lock()
	f(&m.s)
	m.mu.Unlock()
}

func (m *Summary) begin(start time.Time, total int) {
	m.update(func(s *Snapshot) { s.Start, s.Total = start, total })
}
func (m *Summary) blankLine()   {}
func (m *Summary) read()        { m.update(func(s *Snapshot) { s.Read++ }) }
func (m *Summary) unread(n int) { m.update(func(s *Snapshot) { s.Unread += n }) }
func (m *Summary) skipped()     { m.update(func(s *Snapshot) { s.Skipped++ }) }
func (m *Summary) failedInput() { m.update(func(s *Snapshot) { s.InvalidInput++ }) }
func (m *Summary) retried()     { m.update(func(s *Snapshot) { s.Retries++ }) }
func (m *Summary) ended(ev *messages.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Status {
	case messages.StatusCompleted:
		m.s.Completed++
		m.latencies = append(m.latencies, float64(ev.Timings.CallDuration())/float64(time.Millisecond))
		if m.latency != nil {
			m.latency.Observe(ev.Timings.CallDuration().Seconds())
		}
	case messages.StatusFailed:
		m.s.Failed++
	default:
		m.s.Cancelled++
		return
	}
	m.s.TokensEstimated += int64(ev.Tokens.Estimated)
	if ev.Tokens.HasActual {
		m.s.TokensActual += int64(ev.Tokens.Actual)
	}
}

func (m *Summary) finish(end time.Time, st imodel.Stats, shared messages.SharedStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.End = end
	m.s.RateLimited = st.RateLimited()
	m.s.Shared = shared
	slices.Sort(m.latencies)
	m.s.P50, m.s.P95, m.s.P99 = percentile(m.latencies, 0.50), percentile(m.latencies, 0.95), percentile(m.latencies, 0.99)
}

// percentile of sorted values in milliseconds, nearest rank.
func percentile(sorted []float64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return time.Duration(sorted[i] * float64(time.Millisecond))
}

// Snapshot returns a copy of the counts.
func (m *Summary) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s
}

// Done counts the requests with a result line in this run.
func (s Snapshot) Done() int { return s.Completed + s.Failed + s.InvalidInput }

// Remaining counts the requests without a final result: those an interrupt
// left unread, cancelled or never submitted.
func (s Snapshot) Remaining() int { return s.Read + s.Unread - s.Skipped - s.Done() }

// Elapsed is the run's wall time so far (or in all, once ended).
func (s Snapshot) Elapsed() time.Duration {
	end := s.End
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(s.Start)
}

// RPM is the achieved rate of requests per minute: those that got a
// response from a call, over the wall time.
func (s Snapshot) RPM() float64 {
	return perMinute(float64(s.Completed+s.Failed), s.Elapsed())
}

// TPM is the achieved rate of actual API tokens per minute.
func (s Snapshot) TPM() float64 { return perMinute(float64(s.TokensActual), s.Elapsed()) }

func perMinute(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Minutes()
}

// Write prints the run's summary.
func (s Snapshot) Write(w io.Writer) {
	fmt.Fprintf(w, "requests: %d completed, %d failed, %d invalid input, %d skipped (done before), %d remaining\n",
		s.Completed, s.Failed, s.InvalidInput, s.Skipped, s.Remaining())
	fmt.Fprintf(w, "retries: %d; 429 responses: %d\n", s.Retries, s.RateLimited)
	errPct := 0.0
	if s.TokensEstimated > 0 {
		errPct = 100 * float64(s.TokensActual-s.TokensEstimated) / float64(s.TokensEstimated)
	}
	fmt.Fprintf(w, "tokens: %d estimated, %d actual (%+.1f%%)\n", s.TokensEstimated, s.TokensActual, errPct)
	fmt.Fprintf(w, "rate: %.0f requests/min (limit %d, %.1f%%)", s.RPM(), s.RPMLimit, 100*s.RPM()/float64(max(s.RPMLimit, 1)))
	if s.TPMLimit > 0 {
		fmt.Fprintf(w, ", %.0f tokens/min (limit %d, %.1f%%)", s.TPM(), s.TPMLimit, 100*s.TPM()/float64(s.TPMLimit))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "call latency: p50 %v, p95 %v, p99 %v\n", s.P50.Round(time.Millisecond), s.P95.Round(time.Millisecond), s.P99.Round(time.Millisecond))
	if sh := s.Shared; sh.Mode != "" {
		fmt.Fprintf(w, "shared budget: %s since %s", sh.Mode, sh.Since.Format("15:04:05"))
		if sh.Reason != "" {
			fmt.Fprintf(w, " (%s)", sh.Reason)
		}
		fmt.Fprintf(w, "; %d leases for %d requests, %d returned unused (%d requests); %d fallbacks, %d rejoins\n",
			sh.Leases, sh.LeasedRequests, sh.Returned, sh.ReturnedRequests, sh.Fallbacks, sh.Rejoins)
	}
	fmt.Fprintf(w, "wall time: %v\n", s.Elapsed().Round(10*time.Millisecond))
}
