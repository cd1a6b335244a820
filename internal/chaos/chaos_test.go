package chaos

import (
	"context"
	"flag"
	"os"
	goruntime "runtime"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

// TestMain checks that no run leaves a goroutine behind: executors,
// simulators, connections and streams must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chaosN is the size of the chaos and shutdown runs: 2000 by default, more
// with -chaos.n or CHAOS_N (10000 for the full run).
var chaosN = flag.Int("chaos.n", 0, "requests per chaos run (default 2000, or $CHAOS_N)")

// chaosSeed replays a run: -chaos.seed or CHAOS_SEED.
var chaosSeed = flag.Int64("chaos.seed", 0, "seed of the chaos runs (default from the clock, or $CHAOS_SEED)")

func runSize() int {
	if *chaosN > 0 {
		return *chaosN
	}
	if n, err := strconv.Atoi(os.Getenv("CHAOS_N")); err == nil && n > 0 {
		return n
	}
	return 2000
}

func runSeed() int64 {
	if *chaosSeed != 0 {
		return *chaosSeed
	}
	if n, err := strconv.ParseInt(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		return n
	}
	return 0
}

// heapAlloc returns the live heap after a collection.
func heapAlloc() uint64 {
	goruntime.GC()
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// runChecked runs opts with a runtimetest.Recorder as an extra observer,
// fails t on any violation or broken snapshot invariant, and checks that
// the recorder's terminal counts agree with the report's.
func runChecked(t *testing.T, opts Options) Report {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = runSeed()
	}
	rec := runtimetest.NewRecorder()
	opts.Observer = rec.Observe
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opts)
	t.Logf("chaos report (replay with -chaos.seed=%d):\n%v", rep.Seed, rep)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, msg := range rep.Violations {
		t.Error(msg)
	}
	counts := rec.Check(t)
	total := 0
	for status, n := range counts {
		total += n
		if rep.ByStatus[status.String()] != n {
			t.Errorf("%v: the recorder counts %d, the report %d", status, n, rep.ByStatus[status.String()])
		}
	}
	if total != rep.Submitted || rep.Lost != 0 {
		t.Errorf("the recorder saw %d requests end, %d were submitted, %d lost", total, rep.Submitted, rep.Lost)
	}
	return rep
}

func TestChaos(t *testing.T) {
	n := runSize()
	// Warm up first: the token counters load their vocabularies (about
	// 11 MiB) once per process, which is not growth of the run.
	if _, err := Run(context.Background(), Options{Requests: 20, NoFaults: true, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	before := heapAlloc()
	rep := runChecked(t, Options{Requests: n, PanicRate: 0.01, ForcedRate: 0.1})
	if rep.Submitted != n || rep.Refused != 0 {
		t.Errorf("%d of %d submitted, %d refused", rep.Submitted, n, rep.Refused)
	}
	if rep.Panics == 0 || rep.Restarts == 0 {
		t.Errorf("no panic was injected (%d) or no caller restarted (%d)", rep.Panics, rep.Restarts)
	}
	if rep.ByStatus[messages.StatusCompleted.String()] == 0 || rep.ByStatus[messages.StatusFailed.String()] == 0 {
		t.Errorf("a run with faults should both complete and fail requests: %v", rep.ByStatus)
	}
	for _, kind := range []string{"429", "500", "503", "529", "reset", "slow", "truncate", "malformed", "panic"} {
		if rep.Faults[kind] == 0 {
			t.Errorf("no %s fault was injected: %v", kind, rep.Faults)
		}
	}
	if rep.Forced == 0 {
		t.Error("no request had a forced fault")
	}
	after := heapAlloc()
	t.Logf("heap: %d KiB before, %d KiB after", before>>10, after>>10)
	if after > before+20<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB over the run", before>>10, after>>10)
	}
}

// TestConcurrencyCapAtSimulator: with every fault that the server itself
// ends (no timeouts, no malformed replies whose stream the client leaves),
// the simulator's own count of requests in flight never exceeds the cap.
func TestConcurrencyCapAtSimulator(t *testing.T) {
	f := DefaultFaults()
	f.Slow, f.Malformed = 0, 0
	rep := runChecked(t, Options{Requests: runSize() / 2, Faults: f, PanicRate: 0.01})
	if rep.SimMaxInFlight > rep.Concurrency || rep.SimMaxInFlight == 0 {
		t.Errorf("the simulator counted %d requests in flight, the cap is %d", rep.SimMaxInFlight, rep.Concurrency)
	}
}
