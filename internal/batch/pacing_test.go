package batch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
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

// The pace of a run at 1200 requests a minute with the default burst,
// under fake time so that the figures are exact on any machine: behind a
// limit of 20 a second, no window of one second holds more than 21 starts,
// nothing is refused, 300 requests start over 299 intervals of 50 ms, the
// run ends within 16 s, and the summary's rate is the limit.
// (TestBatchPacingBehindStrictLimiter in cmd/lionactor runs the same over
// loopback HTTP in real time.)
func TestRunPacesAtTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, rpm = 300, 1200
		sim, err := simulator.New(simulator.Config{Latency: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		lim := &runtimetest.WindowLimit{PerSecond: rpm / 60}
		limited := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if lim.Admit(w, r) {
				sim.Handler().ServeHTTP(w, r)
			}
		})
		cfg := testConfig("http://simulator.test/v1")
		cfg.RPM, cfg.Concurrency = rpm, 32
		cfg.client = &http.Client{Transport: handlerTransport{limited}}

		start := time.Now()
		results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n)), Total: n}, nil)
		wall := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		wantIndices(t, results, seq(0, n))

		arrivals, admitted, refused := lim.Seen()
		if got := runtimetest.MaxInWindow(arrivals, time.Second); got != rpm/60+1 || refused != 0 {
			t.Errorf("at most %d started in a second, %d refused; want %d and 0", got, refused, rpm/60+1)
		}
		span := admitted[n-1].Sub(admitted[0])
		if want := 299 * 50 * time.Millisecond; span != want || wall > 16*time.Second {
			t.Errorf("starts spanned %v, the run %v; want %v and at most 16 s", span, wall, want)
		}
		if throughput := float64(n-1) / span.Seconds() / (rpm / 60); throughput < 0.99 {
			t.Errorf("throughput %.4f of the limit", throughput)
		}
		if s := sum.Snapshot(); s.RPM() != rpm || s.Calls != n || s.CallSpan() != span {
			t.Errorf("summary: %v requests/min over %v of %d calls; want %d over %v", s.RPM(), s.CallSpan(), s.Calls, rpm, span)
		}
	})
}
