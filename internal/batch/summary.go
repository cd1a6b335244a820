package batch

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lionactor/lionactor/batchapi"
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
	// costByModel is what the ended requests cost, by model.
	costByModel map[string]float64
}

// Snapshot is a moment's copy of a Summary.
type Snapshot struct {
	RPMLimit, TPMLimit int
	// Burst is how many calls the request bucket lets start at once.
	Burst int
	// Total is the number of requests in the input, when known in advance.
	Total int
	// Read counts request lines read; Unread those left unread by an
	// interrupt that would have run.
	Read, Unread int
	// Skipped counts the requests with a final result from an earlier run
	// that this run did not redo ("done before"); New those without one;
	// RetriedFailed those whose last result was FAILED, run again; Changed
	// those whose id has a result for other content than the line's now,
	// run again only if ChangedRerun. Each input request is in one of
	// Skipped, New and RetriedFailed, or is Changed and counted in Skipped
	// unless rerun.
	Skipped, New, RetriedFailed, Changed int
	ChangedRerun                         bool
	// ChangedIDs are the ids of the first changed requests, as written.
	ChangedIDs        []string
	Completed, Failed int
	// InvalidInput counts lines failed before any call: malformed, or
	// impossible (too many tokens).
	InvalidInput int
	// Cancelled counts requests an interrupt stopped; they have no line
	// and remain for a rerun.
	Cancelled int
	// Retrying is the number of retries scheduled (attempts after a first).
	Retries int
	// RateLimited is the number of 429 responses.
	RateLimited int64
	// TokensEstimated and TokensActual are the API tokens of the ended
	// requests: estimated, and as the provider reported them.
	TokensEstimated, TokensActual int64
	// Reported counts the ended requests whose response reported usage,
	// and ReportedEstimated is what was estimated for them: the estimate
	// is compared with the actual count over these requests only.
	Reported          int
	ReportedEstimated int64
	// Calls counts the calls started, retries included; FirstCall and
	// LastCall are when the first and the last started.
	Calls               int
	FirstCall, LastCall time.Time
	// P50, P95 and P99 are call latencies of completed requests.
	P50, P95, P99 time.Duration
	Start, End    time.Time
	// Shared is the run's part in a shared budget (Config.Budget), as the
	// run ended; its Mode is "" without one.
	Shared messages.SharedStats
	// Batches counts the provider batches of a run through the batch API
	// (Config.BatchAPI), once it has ended; nil for an online run. Calls,
	// Retries, RateLimited and the latencies are then those of the
	// requests sent online.
	Batches *batchapi.Stats
	// BatchCost is what the answers of the provider batches cost, at the
	// batch price, and BatchCostOnline what the same usage costs online.
	BatchCost, BatchCostOnline float64

	// CostActual is what the ended requests with a price (Priced of them)
	// cost by the usage they reported, and CostEstimated what they were
	// estimated at, at most, before their calls; in US dollars.
	// PriceUnknown counts the ended requests without a price, of the
	// models UnpricedModels names (the first few): their cost is unknown,
	// not counted as $0. PricesDate is the price table's date.
	CostActual, CostEstimated float64
	Priced, PriceUnknown      int
	UnpricedModels            []string
	PricesDate                string
	// Cached counts the requests answered from the cache, at no cost;
	// they are counted in Completed too.
	Cached int
	// SpendLimit is the spend cap (Config.MaxCost; 0: none), SpentBefore
	// what the results file's earlier lines cost, counted against it, and
	// SpendCapped says the cap stopped the run.
	SpendLimit, SpentBefore float64
	SpendCapped             bool
	// Deployments break a run over several deployments (Config.Deployments)
	// down by deployment, in the order of the config.
	Deployments []DeploymentSnapshot
}

// maxChangedIDs is how many changed requests the summary names.
const maxChangedIDs = 10

func newSummary(cfg Config) *Summary {
	s := Snapshot{RPMLimit: cfg.RPM, TPMLimit: cfg.TPM, Burst: cfg.burst(), ChangedRerun: cfg.RerunChanged, Deployments: deploymentSnapshots(cfg),
		SpendLimit: cfg.MaxCost, PricesDate: cfg.prices().Date()}
	if cfg.routed() {
		info := cfg.routerReportInfo()
		s.RPMLimit, s.TPMLimit, s.Burst = info.RPM, info.TPM, info.Burst
	}
	return &Summary{s: s}
}

func (m *Summary) update(f func(*Snapshot)) {
	m.mu.Lock()
	f(&m.s)
	m.mu.Unlock()
}

func (m *Summary) begin(start time.Time, total int) {
	m.update(func(s *Snapshot) { s.Start, s.Total = start, total })
}
func (m *Summary) read()        { m.update(func(s *Snapshot) { s.Read++ }) }
func (m *Summary) unread(n int) { m.update(func(s *Snapshot) { s.Unread += n }) }
func (m *Summary) failedInput() { m.update(func(s *Snapshot) { s.InvalidInput++ }) }
func (m *Summary) retried()     { m.update(func(s *Snapshot) { s.Retries++ }) }

// judged counts a request by what the run does with it.
func (m *Summary) judged(v verdict, id json.RawMessage) {
	m.update(func(s *Snapshot) {
		switch v {
		case runNew:
			s.New++
		case runRetry:
			s.RetriedFailed++
		case skipDone:
			s.Skipped++
		case runChanged, skipChanged:
			s.Changed++
			if v == skipChanged {
				s.Skipped++
			}
			if len(s.ChangedIDs) < maxChangedIDs {
				s.ChangedIDs = append(s.ChangedIDs, string(id))
			}
		}
	})
}

// called counts a call started at t.
func (m *Summary) called(t time.Time) {
	m.update(func(s *Snapshot) {
		s.Calls++
		if s.FirstCall.IsZero() || t.Before(s.FirstCall) {
			s.FirstCall = t
		}
		if t.After(s.LastCall) {
			s.LastCall = t
		}
	})
}
func (m *Summary) ended(ev *messages.Event) { m.end(ev, true) }

// end counts a request that ended; call says whether its snapshot's call
// is a call of the run's, whose duration is a latency (not a provider
// batch's).
func (m *Summary) end(ev *messages.Event, call bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Status {
	case messages.StatusCompleted:
		m.s.Completed++
		if ev.Cached() {
			return // no call: no latency, no API tokens
		}
		if !call {
			break // a batch's answer: no call of the run's
		}
		m.latencies = append(m.latencies, float64(ev.Timings().CallDuration())/float64(time.Millisecond))
		if m.latency != nil {
			m.latency.Observe(ev.Timings().CallDuration().Seconds())
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
		m.s.Reported++
		m.s.ReportedEstimated += int64(ev.Tokens.Estimated)
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
	s := m.s
	s.ChangedIDs, s.Deployments = slices.Clone(s.ChangedIDs), slices.Clone(s.Deployments)
	return s
}

// Done counts the requests with a result line in this run.
func (s Snapshot) Done() int { return s.Completed + s.Failed + s.InvalidInput }

// ToDo counts the requests this run has to do: those without a result, and
// those rerun.
func (s Snapshot) ToDo() int {
	n := s.New + s.RetriedFailed
	if s.ChangedRerun {
		n += s.Changed
	}
	return n
}

// Remaining counts the requests without a final result: those an interrupt
// left unread, cancelled or never submitted.
func (s Snapshot) Remaining() int { return s.ToDo() - s.Done() }

// Elapsed is the run's wall time so far (or in all, once ended).
func (s Snapshot) Elapsed() time.Duration {
	end := s.End
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(s.Start)
}

// CallSpan is the span in which calls were being started: from the first
// call's start to the last's.
func (s Snapshot) CallSpan() time.Duration { return s.LastCall.Sub(s.FirstCall) }

// RPM is the achieved rate of calls (retries included) per minute over
// CallSpan, or 0 until more than Burst calls have started.
//
// The request bucket lets Burst calls start at once and one more each
// 60/limit seconds after, so n calls take at least (n - Burst) × 60/limit
// seconds: RPM counts n - Burst calls over the span. It is never above the
// limit when the run kept to it, and equals it when the run went at the
// limit; a run that never needed its burst reads a little low, by
// (Burst - 1) calls over the span. With the default burst of 1 it is the
// plain rate between the first start and the last.
func (s Snapshot) RPM() float64 {
	if s.Calls <= s.Burst {
		return 0
	}
	return perMinute(float64(s.Calls-s.Burst), s.CallSpan())
}

// TPM is the achieved rate of actual API tokens per minute over CallSpan.
// The token bucket holds a minute's worth from the start, as the
// providers' do, so a run much shorter than a minute may read above its
// limit while keeping to it.
func (s Snapshot) TPM() float64 { return perMinute(float64(s.TokensActual), s.CallSpan()) }

func perMinute(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Minutes()
}

// Write prints the run's summary.
func (s Snapshot) Write(w io.Writer) {
	fmt.Fprintf(w, "requests: %d completed, %d failed, %d invalid input, %d remaining; %d done before, %d new",
		s.Completed, s.Failed, s.InvalidInput, s.Remaining(), s.Skipped, s.New)
	if s.RetriedFailed > 0 {
		fmt.Fprintf(w, ", %d failed before and retried", s.RetriedFailed)
	}
	if s.Changed > 0 && s.ChangedRerun {
		fmt.Fprintf(w, ", %d changed and rerun", s.Changed)
	}
	fmt.Fprintln(w)
	if s.Changed > 0 {
		what := "not rerun (--rerun-changed reruns them)"
		if s.ChangedRerun {
			what = "rerun"
		}
		ids := strings.Join(s.ChangedIDs, ", ")
		if more := s.Changed - len(s.ChangedIDs); more > 0 {
			ids += fmt.Sprintf(" and %d more", more)
		}
		fmt.Fprintf(w, "changed since their result: %d, %s: %s\n", s.Changed, what, ids)
	}
	// A run through the batch API makes calls only for the requests it
	// sends online: the calls' figures are theirs.
	calls := s.Batches == nil || s.Calls > 0
	if calls {
		fmt.Fprintf(w, "retries: %d; 429 responses: %d\n", s.Retries, s.RateLimited)
	}
	fmt.Fprintln(w, tokensLine(s))
	for _, line := range costLines(s) {
		fmt.Fprintln(w, line)
	}
	if s.Batches != nil {
		s.writeBatches(w)
	}
	if calls {
		fmt.Fprintf(w, "rate: %s", rateOf(s.RPM(), s.RPMLimit, "requests/min"))
		if s.TPMLimit > 0 {
			fmt.Fprintf(w, ", %s", rateOf(s.TPM(), s.TPMLimit, "tokens/min"))
		}
		if s.Calls > 1 {
			span := s.CallSpan()
			if span >= time.Second {
				span = span.Round(10 * time.Millisecond)
			} else {
				span = roundDuration(span)
			}
			fmt.Fprintf(w, " over %v of calls", span)
		}
		fmt.Fprintln(w)
		if s.Completed == 0 {
			fmt.Fprintln(w, "call latency: - (no call completed)")
		} else {
			fmt.Fprintf(w, "call latency: p50 %v, p95 %v, p99 %v\n", roundDuration(s.P50), roundDuration(s.P95), roundDuration(s.P99))
		}
	}
	if sh := s.Shared; sh.Mode != "" {
		fmt.Fprintf(w, "shared budget: %s since %s", sh.Mode, sh.Since.Format("15:04:05"))
		if sh.Reason != "" {
			fmt.Fprintf(w, " (%s)", sh.Reason)
		}
		fmt.Fprintf(w, "; %d leases for %d requests, %d returned unused (%d requests); %d fallbacks, %d rejoins\n",
			sh.Leases, sh.LeasedRequests, sh.Returned, sh.ReturnedRequests, sh.Fallbacks, sh.Rejoins)
	}
	writeDeployments(w, s)
	fmt.Fprintf(w, "wall time: %v\n", s.Elapsed().Round(10*time.Millisecond))
}

// tokensLine compares the estimated tokens with the actual ones over the
// requests that reported usage only: a request without usage (a failure,
// an endpoint that reports none) has an estimate and nothing to compare it
// with.
func tokensLine(s Snapshot) string {
	errPct := 0.0
	if s.ReportedEstimated > 0 {
		errPct = 100 * float64(s.TokensActual-s.ReportedEstimated) / float64(s.ReportedEstimated)
	}
	line := fmt.Sprintf("tokens: %d estimated, %d actual (%+.1f%%) over the %s that reported usage",
		s.ReportedEstimated, s.TokensActual, errPct, requests(s.Reported))
	ended := s.Completed - s.Cached + s.Failed
	if rest := ended - s.Reported; rest > 0 {
		line += fmt.Sprintf("; %d more reported none (%d estimated)", rest, s.TokensEstimated-s.ReportedEstimated)
	}
	return line
}

// requests says "1 request" or "n requests".
func requests(n int) string {
	if n == 1 {
		return "1 request"
	}
	return fmt.Sprintf("%d requests", n)
}

// rateOf shows an achieved rate against its limit; "-" while unknown.
func rateOf(achieved float64, limit int, unit string) string {
	if achieved == 0 {
		return fmt.Sprintf("- %s (limit %d)", unit, limit)
	}
	return fmt.Sprintf("%.0f %s (limit %d, %.1f%%)", achieved, unit, limit, 100*achieved/float64(max(limit, 1)))
}

// roundDuration rounds d for display: to the millisecond, or to the
// microsecond below one, so that a fast call does not read "0s".
func roundDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
