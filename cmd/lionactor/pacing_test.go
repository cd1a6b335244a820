package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/simulator"
)

// windowLimiter is a strict per-second rate limit in front of a provider,
// as a provider that enforces a per-minute limit per second (or nginx's
// limit_req) is: it counts the requests it admitted in the last second and
// answers 429 to one more than perSecond allows. An exact pace of perSecond
// puts perSecond + 1 starts in a one-second window closed at both ends (one
// at each end), so that is the most it admits in any such window.
type windowLimiter struct {
	perSecond int

	mu       sync.Mutex
	arrivals []time.Time // every request, in order
	admitted []time.Time
	refused  int
}

func (l *windowLimiter) admit(w http.ResponseWriter, _ *http.Request) bool {
	now := time.Now()
	l.mu.Lock()
	l.arrivals = append(l.arrivals, now)
	inWindow := 0
	for i := len(l.admitted) - 1; i >= 0 && !l.admitted[i].Before(now.Add(-time.Second)); i-- {
		inWindow++
	}
	if inWindow+1 > l.perSecond+1 {
		l.refused++
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("retry-after-ms", "50")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"error":{"message":"Rate limit reached: %d requests per second","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, l.perSecond)
		return false
	}
	l.admitted = append(l.admitted, now)
	l.mu.Unlock()
	return true
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

var rateLineRE = regexp.MustCompile(`(?m)^rate: (\d+) requests/min \(limit 1200, ([\d.]+)%\)`)

// A batch at --rpm 1200 with the default pacing, over loopback HTTP behind
// a limiter that refuses more than 20 starts a second: it never starts more
// than ⌈1200/60⌉ + 1 = 21 in any second and gets no 429. The limiter counts
// arrivals, which add the jitter of delivery to the pace of the starts;
// only a delivery delayed 50 ms more than the one 21 starts later could put
// a 22nd start in a window.
//
// The run's wall time and throughput are logged, not checked: a machine
// too busy to wake the limiter on time loses pace that a limit kept per
// second cannot make up later. internal/batch's TestRunPacesAtTheLimit
// checks them under fake time: 300 requests start over 299 intervals of
// 50 ms, 14.95 s, 100% of the limit. BENCHMARKS.md has the figures of this
// test on an idle machine.
func TestBatchPacingBehindStrictLimiter(t *testing.T) {
	const (
		n         = 300
		rpm       = 1200
		perSecond = rpm / 60
	)
	_, base := startSim(t, simulator.Config{Latency: 20 * time.Millisecond, LatencyJitter: 10 * time.Millisecond, Seed: 3})
	lim := &windowLimiter{perSecond: perSecond}
	url := front(t, base, lim.admit)
	dir := t.TempDir()
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")

	c := newCLI()
	start := time.Now()
	code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", url, "--model", testModel, "--rpm", strconv.Itoa(rpm))
	wall := time.Since(start)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}

	lim.mu.Lock()
	defer lim.mu.Unlock()
	maxStarts := maxInWindow(lim.arrivals, time.Second)
	span := lim.admitted[len(lim.admitted)-1].Sub(lim.admitted[0])
	throughput := float64(len(lim.admitted)-1) / span.Seconds() / perSecond
	t.Logf("%d requests at --rpm %d: at most %d started in any 1-s window, %d answered 429, wall time %v, "+
		"%.2f%% of the limit from the first start to the last (%v), %.2f requests/s over the wall time",
		n, rpm, maxStarts, lim.refused, wall.Round(time.Millisecond), 100*throughput, span.Round(time.Millisecond),
		float64(n)/wall.Seconds())

	if maxStarts > perSecond+1 {
		t.Errorf("%d requests started within one second, want at most %d", maxStarts, perSecond+1)
	}
	if lim.refused != 0 || len(lim.admitted) != n {
		t.Errorf("%d requests answered 429, %d admitted; want 0 and %d", lim.refused, len(lim.admitted), n)
	}
	checkEachOnce(t, readResults(t, out), n)
	// The summary's rate is over the span of the starts: never above the
	// limit.
	m := rateLineRE.FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("no rate line in the summary:\n%s", c.stderr.String())
	}
	if pct, _ := strconv.ParseFloat(m[2], 64); pct > 100 {
		t.Errorf("the summary reports %s requests/min, %s%% of the limit", m[1], m[2])
	}
}
