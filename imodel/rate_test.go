package imodel

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestRateAtTheLimit sends 500 chat requests to a simulator that enforces
// 6000 requests a minute (100 a second) through an executor limited the
// same way. The executor's burst is smaller than the simulator's: the
// difference absorbs the jitter between a call's start and its arrival
// (40 requests, 0.4 s at this rate, which a loaded machine needs), so the
// simulator must refuse none. The achieved rate is logged: on an idle
// machine it is the limit.
func TestRateAtTheLimit(t *testing.T) {
	const (
		n        = 500
		perMin   = 6000
		perSec   = perMin / 60.0
		simBurst = 50
		exBurst  = 10
	)
	e := startSim(t, simulator.Config{RequestsPerMinute: perMin, RequestBurst: simBurst})
	var (
		mu     sync.Mutex
		starts []time.Time // of every attempt
	)
	ex := startExecutor(t, func(c *runtime.Config) {
		c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = perMin, time.Minute, exBurst
		c.Concurrency = 32
		c.Observer = func(ev messages.Event) {
			if ev.Status == messages.StatusCalling {
				mu.Lock()
				starts = append(starts, ev.Timings().CallStarted)
				mu.Unlock()
			}
		}
	})
	m := newModel(t, ex, openAIConfig(e))

	begin := time.Now()
	handles := make([]*runtime.Handle, n)
	for i := range handles {
		h, err := m.Submit(ctx, chatPayloadOf(fmt.Sprintf("request %d", i)))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		handles[i] = h
	}
	for i, h := range handles {
		if ev, _ := h.Wait(ctx); ev.Status != messages.StatusCompleted {
			t.Errorf("request %d ended %v: %v", i, ev.Status, ev.Err())
		}
	}
	st, es := e.Stats(), ex.Stats()
	if st.RateLimited != 0 || st.ByStatus[429] != 0 || st.ByStatus[200] != n {
		t.Errorf("simulator: %d rate limited, statuses %v", st.RateLimited, st.ByStatus)
	}
	if es.Completed != n || es.Retries != 0 {
		t.Errorf("executor: %d completed, %d retries", es.Completed, es.Retries)
	}

	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	span := starts[len(starts)-1].Sub(starts[0])
	rate := float64(len(starts)-1) / span.Seconds()
	// After the first burst the limit alone sets the pace.
	steady := float64(len(starts)-exBurst) / starts[len(starts)-1].Sub(starts[exBurst-1]).Seconds()
	arrivals := e.Arrivals()
	arrSpan := arrivals[len(arrivals)-1].Sub(arrivals[0])
	t.Logf("%d calls in %v: %.1f/s = %.3f of the limit (%.3f after the first burst of %d), at most %d started in any second; "+
		"at the simulator: %.3f of the limit, at most %d arrivals in any second, %d in flight at once, %d refused",
		len(starts), span.Round(time.Millisecond), rate, rate/perSec, steady/perSec, exBurst, simulator.MaxBurst(starts, time.Second),
		float64(len(arrivals)-1)/arrSpan.Seconds()/perSec, simulator.MaxBurst(arrivals, time.Second), st.MaxInFlight, st.RateLimited)

	// The executor never starts calls faster than its limit allows: beyond
	// its first burst, one per 10 ms from the start.
	if min := time.Duration(float64(n-exBurst) / perSec * float64(time.Second)); starts[len(starts)-1].Sub(begin) < min {
		t.Errorf("%d calls started within %v of the first submit; the limit needs %v", n, starts[len(starts)-1].Sub(begin), min)
	}
}
