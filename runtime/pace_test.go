package runtime

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

// callStarts runs n no-op requests through an executor made from cfg, in a
// bubble of fake time, and returns when each call started, in order.
func callStarts(t *testing.T, cfg Config, n int) []time.Time {
	t.Helper()
	var (
		mu     sync.Mutex
		starts []time.Time
	)
	synctest.Test(t, func(t *testing.T) {
		cfg.Observer = func(ev messages.Event) {
			if ev.Status == messages.StatusCalling {
				mu.Lock()
				starts = append(starts, ev.Timings().CallStarted)
				mu.Unlock()
			}
		}
		ex, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := make([]*Handle, n)
		for i := range hs {
			if hs[i], err = ex.Submit(context.Background(), messages.Request{Call: noop}); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range hs {
			if ev, _ := h.Wait(context.Background()); ev.Status != messages.StatusCompleted {
				t.Errorf("request ended %v", ev.Status)
			}
		}
		if err := ex.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	slices.SortFunc(starts, time.Time.Compare)
	if len(starts) != n {
		t.Fatalf("%d calls started, want %d", len(starts), n)
	}
	return starts
}

// The default configuration paces requests evenly from the first: at 10 a
// second, a one-second window never holds more than ⌈10⌉ + 1 starts, and
// the first ten take 0.9 s, not an instant.
func TestDefaultConfigPacesEvenly(t *testing.T) {
	cfg := DefaultConfig()
	starts := callStarts(t, cfg, 35)
	perSecond := float64(cfg.RequestsPerInterval) / cfg.RequestInterval.Seconds()
	if got, limit := runtimetest.MaxInWindow(starts, time.Second), int(math.Ceil(perSecond))+1; got > limit {
		t.Errorf("%d calls started within one second, want at most %d", got, limit)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < 100*time.Millisecond {
			t.Fatalf("calls %d and %d started %v apart, want 100ms at 10/s", i-1, i, gap)
		}
	}
	// Pacing costs no throughput: 35 calls take 3.4 s, 34 intervals.
	if span := starts[len(starts)-1].Sub(starts[0]); span != 3400*time.Millisecond {
		t.Errorf("35 calls spanned %v, want 3.4s", span)
	}
}

// A burst set explicitly still lets that many requests start at once, and
// the pace after it is the rate.
func TestRequestBurstStartsTogether(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RequestBurst = 5
	starts := callStarts(t, cfg, 25)
	if together := runtimetest.MaxInWindow(starts, 0); together != 5 {
		t.Errorf("%d calls started at the same instant, want the burst of 5", together)
	}
	if got := runtimetest.MaxInWindow(starts, time.Second); got > 5+10 {
		t.Errorf("%d calls started within one second, want at most burst 5 + 10", got)
	}
	if span := starts[len(starts)-1].Sub(starts[0]); span != 2*time.Second {
		t.Errorf("25 calls spanned %v, want (25 - 5) / 10 per second = 2s", span)
	}
}
