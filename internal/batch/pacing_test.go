package batch

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lionactor/lionactor/simulator"
)

// handlerTransport serves requests with a handler in memory: no sockets,
// so that a whole run can go in a bubble of fake time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// perSecondLimit is a strict per-second limit in front of a provider: it
// answers 429 to a request that would make more than perSecond + 1 in a
// one-second window closed at both ends, the most an exact pace of
// perSecond puts there (one at each end).
type perSecondLimit struct {
	next      http.Handler
	perSecond int

	mu       sync.Mutex
	admitted []time.Time
	refused  int
}

func (l *perSecondLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	l.mu.Lock()
	n := 0
	for i := len(l.admitted) - 1; i >= 0 && !l.admitted[i].Before(now.Add(-time.Second)); i-- {
		n++
	}
	if n+1 > l.perSecond+1 {
		l.refused++
		l.mu.Unlock()
		w.Header().Set("retry-after-ms", "50")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		return
	}
	l.admitted = append(l.admitted, now)
	l.mu.Unlock()
	l.next.ServeHTTP(w, r)
}

// maxInWindow is the most of the sorted times within any window [t, t+d]
// closed at both ends.
func maxInWindow(times []time.Time, d time.Duration) int {
	best, lo := 0, 0
	for hi, t := range times {
		for times[lo].Add(d).Before(t) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// The pace of a run at 1200 requests a minute with the default burst,
// under fake time so that the figures are exact on any machine: behind a
// limit of 20 a second, no window of one second holds more than 21 starts,
// nothing is refused, 300 requests take 299 intervals of 50 ms plus one
// call, and the summary's rate is the limit. (TestBatchPacingBehindStrictLimiter
// in cmd/lionactor runs the same over loopback HTTP in real time.)
func TestRunPacesAtTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, rpm = 300, 1200
		sim, err := simulator.New(simulator.Config{Latency: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		lim := &perSecondLimit{next: sim.Handler(), perSecond: rpm / 60}
		cfg := testConfig("http://simulator.test/v1")
		cfg.RPM, cfg.Concurrency = rpm, 32
		cfg.client = &http.Client{Transport: handlerTransport{lim}}

		start := time.Now()
		results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n)), Total: n}, nil)
		wall := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		wantIndices(t, results, seq(0, n))

		lim.mu.Lock()
		defer lim.mu.Unlock()
		if got := maxInWindow(lim.admitted, time.Second); got != rpm/60+1 || lim.refused != 0 {
			t.Errorf("at most %d started in a second, %d refused; want %d and 0", got, lim.refused, rpm/60+1)
		}
		span := lim.admitted[n-1].Sub(lim.admitted[0])
		if want := 299 * 50 * time.Millisecond; span != want || wall != span+20*time.Millisecond {
			t.Errorf("starts spanned %v, the run %v; want %v and 20 ms more", span, wall, want)
		}
		if throughput := float64(n-1) / span.Seconds() / (rpm / 60); throughput < 0.99 {
			t.Errorf("throughput %.4f of the limit", throughput)
		}
		if s := sum.Snapshot(); s.RPM() != rpm || s.Calls != n || s.CallSpan() != span {
			t.Errorf("summary: %v requests/min over %v of %d calls; want %d over %v", s.RPM(), s.CallSpan(), s.Calls, rpm, span)
		}
	})
}
