package lionactor_test

// End-to-end tests of the actor tree, driven through package runtime as a
// user would, and by plain messages from a user's own actor.

import (
	"context"
	"errors"
	"log/slog"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ok = runtimetest.OK

// start runs an executor with an unlimited request rate unless edit says
// otherwise, stopping it (immediately) when the test ends.
func start(t *testing.T, edit func(*runtime.Config)) (*runtime.Executor, *runtimetest.Recorder) {
	t.Helper()
	rec := runtimetest.NewRecorder()
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.Observer = rec.Observe
	if edit != nil {
		edit(&cfg)
	}
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ex.StopNow(ctx); err != nil {
			t.Errorf("StopNow: %v", err)
		}
	})
	return ex, rec
}

func submit(t *testing.T, ex *runtime.Executor, r messages.Request) *runtime.Handle {
	t.Helper()
	h, err := ex.Submit(context.Background(), r)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return h
}

func wait(t *testing.T, h *runtime.Handle) messages.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait %s: %v (last %v)", h.ID(), err, h.Latest().Status)
	}
	return ev
}

// waitStatus walks h's snapshots until one has status s.
func waitStatus(t *testing.T, h *runtime.Handle, s messages.RequestStatus) messages.Event {
	t.Helper()
	for ev := range h.Events() {
		if ev.Status == s {
			return ev
		}
	}
	t.Fatalf("%s ended %v without reaching %v", h.ID(), h.Latest().Status, s)
	return messages.Event{}
}

func TestFlowPublishesEveryTransitionInOrder(t *testing.T) {
	ex, rec := start(t, nil)
	h := submit(t, ex, messages.Request{
		Call:     ok(`{"answer":42}`),
		Tokens:   7,
		Endpoint: messages.Endpoint{Method: "POST", URL: "http://127.0.0.1/v1/x"},
		Metadata: map[string]string{"row": "3"},
	})
	final := wait(t, h)

	var got []messages.Event
	for ev := range h.Events() {
		got = append(got, ev)
	}
	want := []messages.RequestStatus{messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling, messages.StatusCompleted}
	if !slices.Equal(runtimetest.Statuses(got), want) {
		t.Fatalf("statuses %v, want %v", runtimetest.Statuses(got), want)
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) || ev.ID != h.ID() {
			t.Errorf("snapshot %d: seq %d id %s", i, ev.Seq, ev.ID)
		}
	}
	if !slices.Equal(runtimetest.Statuses(rec.Of(h.ID())), want) {
		t.Errorf("observer saw %v", runtimetest.Statuses(rec.Of(h.ID())))
	}
	resp, has := final.Response()
	if !has || resp.StatusCode != 200 || string(resp.Body) != `{"answer":42}` {
		t.Errorf("response %+v %v", resp, has)
	}
	if final.Attempt != 1 || final.Tokens.Estimated != 7 || final.Metadata()["row"] != "3" || final.Endpoint().URL != "http://127.0.0.1/v1/x" {
		t.Errorf("final snapshot %+v", final)
	}
	tm := final.Timings()
	if tm.Created.After(tm.Queued) || tm.Queued.After(tm.Processing) || tm.Processing.After(tm.CallStarted) || tm.CallStarted.After(tm.Finished) {
		t.Errorf("timings out of order: %+v", tm)
	}
	if final.Err() != nil {
		t.Errorf("Err = %v", final.Err())
	}
	rec.Check(t)
}

func TestManyRequestsEachEndOnceWithGaplessSeq(t *testing.T) {
	ex, rec := start(t, func(c *runtime.Config) {
		c.Concurrency = 8
		c.MaxAttempts = 3
		c.Retry = runtime.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}
	})
	const n = 300
	var attempts atomic.Int64
	handles := make([]*runtime.Handle, n)
	for i := range n {
		call := messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
			attempts.Add(1)
			switch {
			case i%3 == 0 && attempt == 1: // fails once, then succeeds
				return messages.Result{}, errors.New("transient")
			case i%7 == 0: // always fails
				return messages.Result{}, errors.New("permanent")
			}
			return messages.Result{StatusCode: 200}, nil
		})
		handles[i] = submit(t, ex, messages.Request{Call: call})
	}
	want := map[messages.RequestStatus]int{}
	for i, h := range handles {
		ev := wait(t, h)
		exp := messages.StatusCompleted
		if i%7 == 0 {
			exp = messages.StatusFailed
		}
		want[exp]++
		if ev.Status != exp {
			t.Errorf("request %d ended %v, want %v", i, ev.Status, exp)
		}
		// The handle saw exactly what the observer saw.
		var fromHandle []messages.Event
		for e := range h.Events() {
			fromHandle = append(fromHandle, e)
		}
		if !slices.Equal(runtimetest.Statuses(fromHandle), runtimetest.Statuses(rec.Of(h.ID()))) {
			t.Errorf("request %d: handle %v, observer %v", i, runtimetest.Statuses(fromHandle), runtimetest.Statuses(rec.Of(h.ID())))
		}
	}
	counts := rec.Check(t)
	if counts[messages.StatusCompleted] != want[messages.StatusCompleted] || counts[messages.StatusFailed] != want[messages.StatusFailed] {
		t.Errorf("counts %v, want %v", counts, want)
	}
	st := ex.Stats()
	if st.Completed+st.Failed != n || st.Accepted != n || st.Queued != 0 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
	// Every retry shows as another attempt.
	if int64(n)+st.Retries != attempts.Load() {
		t.Errorf("attempts %d, want %d + %d retries", attempts.Load(), n, st.Retries)
	}
}

func TestFIFOAdmission(t *testing.T) {
	ex, _ := start(t, func(c *runtime.Config) {
		c.Concurrency = 3
		c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = 200, time.Second, 1
	})
	const n = 30
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: ok("")})
	}
	var prev time.Time
	for i, h := range handles {
		ev := wait(t, h)
		if ev.Timings().CallStarted.Before(prev) {
			t.Errorf("request %d started at %v, before request %d", i, ev.Timings().CallStarted, i-1)
		}
		prev = ev.Timings().CallStarted
	}
}

// checkWindows asserts the defining property of a token bucket: over the
// interval between any two admissions i ≤ j, the cost admitted is at most
// burst + rate × (t_j − t_i). The start times are read when the queue
// actor hands each permitted request to its caller, a little after the
// limiter's grant and not always equally late; slack absorbs that delay
// (50 ms is one request at 20/s, far below what a limiter that reserved
// nothing would show).
func checkWindows(t *testing.T, starts []time.Time, costs []float64, burst, perSecond float64, slack time.Duration) {
	t.Helper()
	order := make([]int, len(starts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return starts[a].Compare(starts[b]) })
	for a := range order {
		sum := 0.0
		for b := a; b < len(order); b++ {
			i, j := order[a], order[b]
			sum += costs[j]
			allowed := burst + perSecond*(starts[j].Sub(starts[i])+slack).Seconds()
			if sum > allowed+1e-9 {
				t.Fatalf("%.0f admitted between %v and %v (%v apart), bucket allows %.1f", sum, starts[i], starts[j], starts[j].Sub(starts[i]), allowed)
			}
		}
	}
}

func TestRequestRateFollowsTheBucket(t *testing.T) {
	const (
		n     = 12
		rate  = 20 // per second
		burst = 3
	)
	before := time.Now()
	ex, _ := start(t, func(c *runtime.Config) {
		c.Concurrency = n
		c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = rate, time.Second, burst
	})
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: ok("")})
	}
	starts := make([]time.Time, n)
	costs := make([]float64, n)
	for i, h := range handles {
		starts[i] = wait(t, h).Timings().CallStarted
		costs[i] = 1
		// No start before the bucket allows: the k-th start (0-based) needs
		// k-burst+1 refills after the bucket was created, which was after
		// `before`.
		if earliest := before.Add(time.Duration(float64(i-burst+1) / rate * float64(time.Second))); i >= burst && starts[i].Before(earliest) {
			t.Errorf("request %d started %v before the bucket allows", i, earliest.Sub(starts[i]))
		}
	}
	checkWindows(t, starts, costs, burst, rate, 50*time.Millisecond)
	// And not needlessly late: the last permit is due at (n-burst)/rate.
	if total := starts[n-1].Sub(before); total > time.Duration(float64(n-burst)/rate*float64(time.Second))+2*time.Second {
		t.Errorf("last start after %v", total)
	}
}

func TestTokenRateFollowsTheBucket(t *testing.T) {
	const (
		n         = 8
		cost      = 200
		perSecond = 1000
		burst     = 500
	)
	ex, _ := start(t, func(c *runtime.Config) {
		c.Concurrency = n
		c.TokensPerInterval, c.TokenInterval, c.TokenBurst = perSecond, time.Second, burst
	})
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: ok(""), Tokens: cost})
	}
	starts := make([]time.Time, n)
	costs := make([]float64, n)
	for i, h := range handles {
		starts[i] = wait(t, h).Timings().CallStarted
		costs[i] = cost
	}
	checkWindows(t, starts, costs, burst, perSecond, 50*time.Millisecond)
	// 1600 tokens in all, 500 at once: at least 1.1 s at 1000/s.
	if span := starts[n-1].Sub(starts[0]); span < 1000*time.Millisecond {
		t.Errorf("8 requests of 200 tokens spanned only %v", span)
	}
}

func TestConcurrencyNeverExceedsTheCap(t *testing.T) {
	const cap = 4
	ex, _ := start(t, func(c *runtime.Config) { c.Concurrency = cap })
	var inFlight, peak atomic.Int64
	gate := make(chan struct{})
	startedCh := make(chan struct{}, 64)
	call := messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		startedCh <- struct{}{}
		<-gate
		return messages.Result{}, nil
	})
	const n = 40
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: call})
	}
	// Let calls through one at a time once the cap is reached.
	for range cap {
		<-startedCh
	}
	// Some submits may still be in the queue's mailbox, not yet counted.
	if st := ex.Stats(); st.InFlight != cap || st.Queued > n-cap {
		t.Errorf("with %d callers busy: %+v", cap, st)
	}
	for i := range n {
		gate <- struct{}{}
		if i+cap < n {
			<-startedCh
		}
	}
	for _, h := range handles {
		wait(t, h)
	}
	if p := peak.Load(); p != cap {
		t.Errorf("peak concurrency %d, want %d", p, cap)
	}
}

func TestQueueFullIsRefusedBeforeAcceptance(t *testing.T) {
	// Seed regression 2: a refused request was dropped and stayed QUEUED.
	ex, rec := start(t, func(c *runtime.Config) { c.Concurrency, c.QueueCapacity = 1, 3 })
	b := runtimetest.NewBlocker()
	first := submit(t, ex, messages.Request{Call: b})
	<-b.Started
	queued := []*runtime.Handle{first}
	for range 3 {
		queued = append(queued, submit(t, ex, messages.Request{Call: ok("")}))
	}
	h, err := ex.Submit(context.Background(), messages.Request{Call: ok("")})
	if !errors.Is(err, messages.ErrQueueFull) || h != nil {
		t.Fatalf("Submit on a full queue = %v, %v", h, err)
	}
	close(b.Release)
	for _, h := range queued {
		if ev := wait(t, h); ev.Status != messages.StatusCompleted {
			t.Errorf("%v", ev.Status)
		}
	}
	counts := rec.Check(t)
	if counts[messages.StatusCompleted] != 4 || len(counts) != 1 {
		t.Errorf("observer saw %v: the refused request must not appear", counts)
	}
	if st := ex.Stats(); st.Rejected != 1 || st.Accepted != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestCancelInEachState(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		ex, rec := start(t, func(c *runtime.Config) { c.Concurrency = 1 })
		b := runtimetest.NewBlocker()
		submit(t, ex, messages.Request{Call: b})
		<-b.Started
		var ran atomic.Bool
		h := submit(t, ex, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			ran.Store(true)
			return messages.Result{}, nil
		})})
		waitStatus(t, h, messages.StatusQueued)
		h.Cancel()
		ev := wait(t, h)
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrCancelled) {
			t.Fatalf("%v %v", ev.Status, ev.Err())
		}
		close(b.Release)
		if st := ex.Stats(); st.Queued != 0 {
			t.Errorf("stats %+v", st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ex.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if ran.Load() {
			t.Error("a cancelled queued request ran")
		}
		if info, _ := ev.Failure(); info.Kind != "cancelled" {
			t.Errorf("kind %q", info.Kind)
		}
		rec.Check(t)
	})
	t.Run("processing", func(t *testing.T) {
		ex, rec := start(t, func(c *runtime.Config) {
			c.Concurrency = 2
			c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = 1, time.Hour, 1
		})
		first := submit(t, ex, messages.Request{Call: ok("")}) // takes the only permit
		h := submit(t, ex, messages.Request{Call: ok("")})
		waitStatus(t, h, messages.StatusProcessing)
		h.Cancel()
		if ev := wait(t, h); ev.Status != messages.StatusCancelled || ev.Attempt != 0 {
			t.Fatalf("%v attempt %d", ev.Status, ev.Attempt)
		}
		wait(t, first)
		if st := ex.Stats(); st.InFlight != 0 {
			t.Errorf("stats %+v", st)
		}
		rec.Check(t)
	})
	t.Run("calling", func(t *testing.T) {
		ex, rec := start(t, nil)
		b := runtimetest.NewBlocker()
		h := submit(t, ex, messages.Request{Call: b})
		<-b.Started
		h.Cancel()
		ev := wait(t, h)
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrCancelled) {
			t.Fatalf("%v %v", ev.Status, ev.Err())
		}
		if cause := <-b.Seen; !errors.Is(cause, messages.ErrCancelled) {
			t.Errorf("call's context cause %v", cause)
		}
		rec.Check(t)
	})
	t.Run("backing off", func(t *testing.T) {
		ex, rec := start(t, func(c *runtime.Config) {
			c.MaxAttempts = 2
			c.Retry = runtime.Backoff{Initial: time.Hour, Max: time.Hour, Retryable: func(error) bool { return true }}
		})
		var calls atomic.Int64
		h := submit(t, ex, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			calls.Add(1)
			return messages.Result{}, errors.New("try later")
		})})
		// The retry's QUEUED snapshot is the second QUEUED.
		n := 0
		for ev := range h.Events() {
			if ev.Status == messages.StatusQueued {
				n++
			}
			if n == 2 {
				break
			}
		}
		h.Cancel()
		if ev := wait(t, h); ev.Status != messages.StatusCancelled || ev.Attempt != 1 {
			t.Fatalf("%v attempt %d", ev.Status, ev.Attempt)
		}
		if calls.Load() != 1 {
			t.Errorf("%d calls", calls.Load())
		}
		rec.Check(t)
	})
	t.Run("submit context", func(t *testing.T) {
		ex, rec := start(t, nil)
		b := runtimetest.NewBlocker()
		ctx, cancel := context.WithCancel(context.Background())
		h, err := ex.Submit(ctx, messages.Request{Call: b})
		if err != nil {
			t.Fatal(err)
		}
		<-b.Started
		cancel()
		ev := wait(t, h)
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), context.Canceled) || !errors.Is(ev.Err(), messages.ErrCancelled) {
			t.Fatalf("%v %v", ev.Status, ev.Err())
		}
		rec.Check(t)
	})
	t.Run("after the end", func(t *testing.T) {
		ex, rec := start(t, nil)
		h := submit(t, ex, messages.Request{Call: ok("")})
		final := wait(t, h)
		h.Cancel()
		// A later request's completion proves the cancel was processed.
		wait(t, submit(t, ex, messages.Request{Call: ok("")}))
		if l := h.Latest(); l.Seq != final.Seq || l.Status != messages.StatusCompleted {
			t.Errorf("cancel after the end changed the request: %v", l.Status)
		}
		rec.Check(t)
	})
}

func TestCallTimeout(t *testing.T) {
	ex, rec := start(t, func(c *runtime.Config) { c.CallTimeout = 30 * time.Millisecond })
	b := runtimetest.NewBlocker()
	h := submit(t, ex, messages.Request{Call: b})
	ev := wait(t, h)
	if ev.Status != messages.StatusFailed || !errors.Is(ev.Err(), messages.ErrTimeout) || !errors.Is(ev.Err(), context.DeadlineExceeded) {
		t.Fatalf("%v %v", ev.Status, ev.Err())
	}
	if info, _ := ev.Failure(); info.Kind != "timeout" {
		t.Errorf("kind %q", info.Kind)
	}
	// The request's own timeout wins over the default.
	h = submit(t, ex, messages.Request{Call: b, Timeout: time.Hour})
	<-b.Started
	<-b.Started
	b.Release <- struct{}{}
	if ev := wait(t, h); ev.Status != messages.StatusCompleted {
		t.Fatalf("%v %v", ev.Status, ev.Err())
	}
	rec.Check(t)
}

func TestPanicRestartsTheCallerAndAccountsTheRequest(t *testing.T) {
	ex, rec := start(t, func(c *runtime.Config) { c.Concurrency = 1 })
	boom := messages.CallFunc(func(context.Context, int) (messages.Result, error) { panic("boom") })
	h := submit(t, ex, messages.Request{Call: boom})
	ev := wait(t, h)
	var crash *messages.CallerCrashError
	if ev.Status != messages.StatusFailed || !errors.As(ev.Err(), &crash) || crash.Panic != "boom" {
		t.Fatalf("%v %v", ev.Status, ev.Err())
	}
	// The only caller was restarted: the next requests run.
	for range 3 {
		if ev := wait(t, submit(t, ex, messages.Request{Call: ok("")})); ev.Status != messages.StatusCompleted {
			t.Fatalf("after restart: %v", ev.Status)
		}
	}
	// With a retry policy the crashed attempt is retried.
	h = submit(t, ex, messages.Request{
		MaxAttempts: 2,
		Retry:       runtime.Backoff{Initial: time.Millisecond},
		Call: messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
			if attempt == 1 {
				panic("first attempt")
			}
			return messages.Result{StatusCode: 200}, nil
		}),
	})
	if ev := wait(t, h); ev.Status != messages.StatusCompleted || ev.Attempt != 2 {
		t.Fatalf("%v attempt %d", ev.Status, ev.Attempt)
	}
	if st := ex.Stats(); st.Restarts != 2 {
		t.Errorf("restarts %d", st.Restarts)
	}
	rec.Check(t)
}

func TestRestartStormFailsPendingRequestsAndStops(t *testing.T) {
	ex, rec := start(t, func(c *runtime.Config) {
		c.Concurrency, c.MaxRestarts, c.RestartWindow = 1, 2, time.Minute
	})
	// The calls crash only once all ten are in: a storm before the last
	// submit would refuse it.
	gate := make(chan struct{})
	boom := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		<-gate
		panic("boom")
	})
	handles := make([]*runtime.Handle, 10)
	for i := range handles {
		handles[i] = submit(t, ex, messages.Request{Call: boom})
	}
	close(gate)
	crashed, storm := 0, 0
	for _, h := range handles {
		ev := wait(t, h)
		switch {
		case ev.Status == messages.StatusFailed && errors.Is(ev.Err(), messages.ErrRestartStorm):
			storm++
		case ev.Status == messages.StatusFailed && errors.Is(ev.Err(), messages.ErrCallerCrashed):
			crashed++
		default:
			t.Errorf("%v %v", ev.Status, ev.Err())
		}
	}
	// Two restarts are allowed; the third crash is the storm.
	if crashed != 2 || storm != 8 {
		t.Errorf("crashed %d, storm %d", crashed, storm)
	}
	if !errors.Is(ex.Err(), messages.ErrRestartStorm) {
		t.Errorf("Err = %v", ex.Err())
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok("")}); !errors.Is(err, messages.ErrStopped) || !errors.Is(err, messages.ErrRestartStorm) {
		t.Errorf("Submit after a storm = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.Stop(ctx); err != nil {
		t.Fatalf("Stop after a storm: %v", err)
	}
	rec.Check(t)
}

func TestGracefulStopFinishesEverything(t *testing.T) {
	// Seed regression 3: graceful stop left queued requests QUEUED.
	ex, rec := start(t, func(c *runtime.Config) {
		c.Concurrency, c.RequestsPerInterval, c.RequestInterval = 8, 2000, time.Second
		c.MaxAttempts, c.Retry = 2, runtime.Backoff{Initial: 5 * time.Millisecond}
	})
	const n = 300
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
			if i%10 == 0 && attempt == 1 {
				return messages.Result{}, errors.New("retry me")
			}
			select { // a little work, as a real call would have
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return messages.Result{}, ctx.Err()
			}
			return messages.Result{StatusCode: 200}, nil
		})})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ex.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for i, h := range handles {
		select {
		case <-h.Done():
		default:
			t.Fatalf("request %d not ended after Stop: %v", i, h.Latest().Status)
		}
		if s := h.Latest().Status; s != messages.StatusCompleted {
			t.Errorf("request %d: %v", i, s)
		}
	}
	if counts := rec.Check(t); counts[messages.StatusCompleted] != n {
		t.Errorf("counts %v", counts)
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok("")}); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after Stop = %v", err)
	}
}

func TestImmediateStopCancelsEverything(t *testing.T) {
	// Seed regression 4: immediate stop left in-flight requests CALLING.
	ex, rec := start(t, func(c *runtime.Config) { c.Concurrency = 8 })
	b := runtimetest.NewBlocker()
	const n = 200
	handles := make([]*runtime.Handle, n)
	for i := range n {
		handles[i] = submit(t, ex, messages.Request{Call: b})
	}
	for range 8 {
		<-b.Started // every caller is in a call
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.StopNow(ctx); err != nil {
		t.Fatal(err)
	}
	for i, h := range handles {
		select {
		case <-h.Done():
		default:
			t.Fatalf("request %d not ended after StopNow: %v", i, h.Latest().Status)
		}
		ev := h.Latest()
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
			t.Errorf("request %d: %v %v", i, ev.Status, ev.Err())
		}
	}
	// The running calls saw their contexts cancelled, and returned.
	for range 8 {
		if cause := <-b.Seen; !errors.Is(cause, messages.ErrStopped) {
			t.Errorf("call context cause %v", cause)
		}
	}
	if counts := rec.Check(t); counts[messages.StatusCancelled] != n {
		t.Errorf("counts %v", counts)
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok("")}); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after StopNow = %v", err)
	}
	// Stopping again is harmless.
	if err := ex.Stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestTokensBeyondTheBurstAreRefusedAtSubmit(t *testing.T) {
	// Seed regression 5: a request larger than the token bucket waited,
	// ran, and was never charged.
	ex, _ := start(t, func(c *runtime.Config) {
		c.TokensPerInterval, c.TokenInterval, c.TokenBurst = 1000, time.Hour, 1000
	})
	_, err := ex.Submit(context.Background(), messages.Request{Call: ok(""), Tokens: 1001})
	var tle *messages.TokenLimitError
	if !errors.As(err, &tle) || tle.Tokens != 1001 || tle.Burst != 1000 || !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Fatalf("Submit = %v", err)
	}
	// A request of exactly the burst runs, and is charged.
	wait(t, submit(t, ex, messages.Request{Call: ok(""), Tokens: 1000}))
	if b := ex.Stats().TokensAvailable; b > 1 {
		t.Errorf("token budget %.1f after spending the burst", b)
	}
}

func TestSeedLimiterReservesPermits(t *testing.T) {
	// Seed regression 1: 10 calls at 2 requests/s all started within 0.5 s.
	// At 2/s with a burst of 2, the 4th start is due 1 s after the first.
	before := time.Now()
	ex, _ := start(t, func(c *runtime.Config) {
		c.Concurrency = 10
		c.RequestsPerInterval, c.RequestInterval = 2, time.Second
	})
	b := runtimetest.NewBlocker()
	for range 10 {
		submit(t, ex, messages.Request{Call: b})
	}
	for range 4 {
		<-b.Started
	}
	if elapsed := time.Since(before); elapsed < time.Second {
		t.Fatalf("4 calls started within %v at 2 requests/s", elapsed)
	}
	if st := ex.Stats(); st.InFlight < 6 {
		t.Errorf("the other requests should be waiting for permits: %+v", st)
	}
}

// pauseErr is a call error that pauses the whole budget, as a 429 does.
type pauseErr struct{ until time.Time }

func (e pauseErr) Error() string             { return "429 rate limited" }
func (e pauseErr) PauseUntil() time.Time     { return e.until }
func (e pauseErr) RetryAfter() time.Duration { return time.Until(e.until) }

func TestPauseErrorPausesTheSharedBudget(t *testing.T) {
	ex, _ := start(t, func(c *runtime.Config) { c.Concurrency = 4 })
	until := time.Now().Add(150 * time.Millisecond)
	h := submit(t, ex, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 429}, pauseErr{until}
	})})
	if ev := wait(t, h); ev.Status != messages.StatusFailed {
		t.Fatalf("%v", ev.Status)
	}
	// Another request, of another submitter, waits for the pause too.
	ev := wait(t, submit(t, ex, messages.Request{Call: ok("")}))
	if ev.Timings().CallStarted.Before(until) {
		t.Errorf("call started %v before the pause ended", until.Sub(ev.Timings().CallStarted))
	}
	// And a retry honours the server's delay.
	until = time.Now().Add(50 * time.Millisecond)
	h = submit(t, ex, messages.Request{MaxAttempts: 2, Retry: runtime.Backoff{Initial: time.Microsecond},
		Call: messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
			if attempt == 1 {
				return messages.Result{}, pauseErr{until}
			}
			return messages.Result{}, nil
		})})
	if ev := wait(t, h); ev.Status != messages.StatusCompleted || ev.Timings().CallStarted.Before(until) {
		t.Errorf("%v, retried %v early", ev.Status, until.Sub(ev.Timings().CallStarted))
	}
}

func TestTokenReconciliation(t *testing.T) {
	ex, _ := start(t, func(c *runtime.Config) {
		c.TokensPerInterval, c.TokenInterval, c.TokenBurst = 10000, time.Hour, 10000
	})
	usage := func(n int) messages.Call {
		return messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			return messages.Result{Usage: &messages.Usage{InputTokens: n / 2, OutputTokens: n - n/2}}, nil
		})
	}
	// Estimated 3000, used 1000: 2000 come back.
	ev := wait(t, submit(t, ex, messages.Request{Call: usage(1000), Tokens: 3000}))
	if !ev.Tokens.HasActual || ev.Tokens.Actual != 1000 || ev.Tokens.Estimated != 3000 {
		t.Fatalf("tokens %+v", ev.Tokens)
	}
	// The refund reaches the limiter by message: a later request's permit
	// is granted after it.
	wait(t, submit(t, ex, messages.Request{Call: ok("")}))
	if b := ex.Stats().TokensAvailable; b < 8990 || b > 9010 {
		t.Errorf("after an over-estimate the budget is %.0f, want about 9000", b)
	}
	// Estimated 1000, used 4000: 3000 more are charged, leaving what
	// 10000 − 1000 − 4000 really used.
	wait(t, submit(t, ex, messages.Request{Call: usage(4000), Tokens: 1000}))
	wait(t, submit(t, ex, messages.Request{Call: ok("")}))
	if b := ex.Stats().TokensAvailable; b < 4990 || b > 5010 {
		t.Errorf("after an under-estimate the budget is %.0f, want about 5000", b)
	}
}

func TestSnapshotsAreImmutable(t *testing.T) {
	ex, _ := start(t, nil)
	hdr := map[string][]string{"Authorization": {"Bearer sk-test-000"}, "Accept": {"application/json"}}
	payload := []byte(`{"q":1}`)
	meta := map[string]string{"k": "v"}
	h := submit(t, ex, messages.Request{
		Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			return messages.Result{StatusCode: 200, Header: map[string][]string{"X-Id": {"a"}}, Body: []byte(`{"r":2}`)}, nil
		}),
		Endpoint: messages.Endpoint{Method: "POST", URL: "http://127.0.0.1/x", Header: hdr, Payload: payload},
		Metadata: meta,
	})
	ev := wait(t, h)
	// Change everything the submitter still holds, and everything the
	// accessors return.
	hdr["Accept"][0], payload[0], meta["k"] = "changed", 'X', "changed"
	ep := ev.Endpoint()
	ep.Header["Accept"][0], ep.Payload[1] = "changed", 'X'
	ev.Metadata()["k"] = "changed"
	resp, _ := ev.Response()
	resp.Header["X-Id"][0], resp.Body[0] = "changed", 'X'
	ev.Log()[0].Message = "changed"

	again := h.Latest()
	ep2 := again.Endpoint()
	r2, _ := again.Response()
	if ep2.Header.Get("Accept") != "application/json" || string(ep2.Payload) != `{"q":1}` ||
		again.Metadata()["k"] != "v" || r2.Header.Get("X-Id") != "a" || string(r2.Body) != `{"r":2}` ||
		again.Log()[0].Message != "accepted" {
		t.Errorf("a snapshot changed: %+v %s %v %+v %v", ep2, ep2.Payload, again.Metadata(), r2, again.Log()[0])
	}
	if got := ep2.Header.Get("Authorization"); got != messages.Redacted {
		t.Errorf("Authorization shown as %q", got)
	}
}

// userActor is an actor of the user's own system that drives the executor by
// messages alone and reports what it receives.
type userActor struct {
	executor *actor.PID
	requests []messages.Request
	out      chan<- any
}

func (u *userActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, r := range u.requests {
			ctx.Request(u.executor, &messages.Submit{Request: r})
		}
	case messages.Event, *messages.Rejected:
		u.out <- m
	}
}

// quietSystem is a user's actor system as tests need it: silent, and with a
// dead-letter throttle short enough for goleak.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
}

func TestUserActorDrivesTheExecutorByMessages(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	cfg := runtime.DefaultConfig()
	cfg.QueueCapacity = 2
	cfg.Concurrency = 1
	ex, err := runtime.Spawn(system.Root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan any, 100)
	gate := make(chan struct{})
	slow := messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		<-gate
		return messages.Result{StatusCode: 200, Body: []byte(`"done"`)}, nil
	})
	reqs := []messages.Request{
		{Call: slow, Metadata: map[string]string{"n": "1"}},
		{Call: ok(`"two"`), Metadata: map[string]string{"n": "2"}},
		{Call: ok(`"three"`), Metadata: map[string]string{"n": "3"}},
		{Call: ok(`"four"`)}, // refused: the queue holds 2 once the first is calling
		{},                   // refused: no call
	}
	// The first request must be at its caller before the others arrive.
	system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &userActor{executor: ex.PID(), requests: reqs[:1], out: out}
	}))
	for ev := range out {
		if e, isEv := ev.(messages.Event); isEv && e.Status == messages.StatusCalling {
			break
		}
	}
	system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &userActor{executor: ex.PID(), requests: reqs[1:], out: out}
	}))
	var rejected []error
	for len(rejected) < 2 {
		if r, isRej := (<-out).(*messages.Rejected); isRej {
			rejected = append(rejected, r.Err)
		}
	}
	if !errors.Is(rejected[0], messages.ErrQueueFull) || !errors.Is(rejected[1], messages.ErrInvalidRequest) {
		t.Errorf("rejections %v", rejected)
	}
	close(gate)
	finals := map[string]string{}
	for len(finals) < 3 {
		if e, isEv := (<-out).(messages.Event); isEv && e.Status.Terminal() {
			r, _ := e.Response()
			finals[e.Metadata()["n"]] = string(r.Body)
		}
	}
	if finals["1"] != `"done"` || finals["2"] != `"two"` || finals["3"] != `"three"` {
		t.Errorf("results %v", finals)
	}
	// Stats by message too.
	res, err := system.Root.RequestFuture(ex.PID(), &messages.StatsQuery{}, 5*time.Second).Result()
	if st, isStats := res.(messages.Stats); err != nil || !isStats || st.Completed != 3 || st.Rejected != 1 {
		t.Errorf("stats reply %+v %v", res, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The user's system is still running: Stop never shuts it down.
	if system.IsStopped() {
		t.Error("Stop shut down the user's actor system")
	}
}

// parentActor spawns an executor under itself, as a user's supervisor would.
type parentActor struct {
	got chan<- *runtime.Executor
}

func (p *parentActor) Receive(ctx actor.Context) {
	if _, started := ctx.Message().(*actor.Started); started {
		cfg := runtime.DefaultConfig()
		cfg.Concurrency = 2
		ex, err := runtime.Spawn(ctx, cfg)
		if err != nil {
			panic(err)
		}
		p.got <- ex
	}
}

func TestExecutorUnderAUserActorStopsWithIt(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	got := make(chan *runtime.Executor, 1)
	parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &parentActor{got: got} }))
	ex := <-got
	b := runtimetest.NewBlocker()
	handles := make([]*runtime.Handle, 5)
	for i := range handles {
		handles[i] = submit(t, ex, messages.Request{Call: b})
	}
	<-b.Started
	<-b.Started
	if err := system.Root.StopFuture(parent).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, h := range handles {
		if ev := wait(t, h); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
			t.Errorf("%v %v", ev.Status, ev.Err())
		}
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok("")}); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after the parent stopped = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitCtx is a call that runs until its context ends: only a cancel (or a
// stop) ends the request.
var waitCtx = messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
	<-ctx.Done()
	return messages.Result{}, context.Cause(ctx)
})

// spawnerActor spawns an executor under itself with cfg.
type spawnerActor struct {
	cfg runtime.Config
	got chan<- *runtime.Executor
}

func (p *spawnerActor) Receive(ctx actor.Context) {
	if _, started := ctx.Message().(*actor.Started); started {
		ex, err := runtime.Spawn(ctx, p.cfg)
		if err != nil {
			panic(err)
		}
		p.got <- ex
	}
}

// replies is an actor that collects what an executor answers to message
// submits: per request ID, whether it was accepted (PENDING), rejected, or
// reached a terminal snapshot, and how many dead-letter responses came for
// submits that found no actor.
type replies struct {
	mu          sync.Mutex
	accepted    map[uuid.UUID]bool
	rejected    map[uuid.UUID]error
	terminal    map[uuid.UUID]messages.Event
	twice       []string // IDs answered with an end more than once, or rejected once accepted
	deadLetters int
}

func newReplies() *replies {
	return &replies{accepted: map[uuid.UUID]bool{}, rejected: map[uuid.UUID]error{}, terminal: map[uuid.UUID]messages.Event{}}
}

func (r *replies) Receive(ctx actor.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m := ctx.Message().(type) {
	case *messages.Rejected:
		if _, done := r.terminal[m.ID]; done || r.rejected[m.ID] != nil || r.accepted[m.ID] {
			r.twice = append(r.twice, m.ID.String())
		}
		r.rejected[m.ID] = m.Err
	case messages.Event:
		if m.Status == messages.StatusPending {
			r.accepted[m.ID] = true
		}
		if !m.Status.Terminal() {
			return
		}
		if _, done := r.terminal[m.ID]; done || r.rejected[m.ID] != nil || !r.accepted[m.ID] {
			r.twice = append(r.twice, m.ID.String())
		}
		r.terminal[m.ID] = m
	case *actor.DeadLetterResponse:
		r.deadLetters++
	}
}

// await fails t unless, within a few seconds, each of n submits has had
// exactly one final answer, and every accepted one has ended.
func (r *replies) await(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		got := len(r.rejected) + len(r.terminal) + r.deadLetters
		if got >= n || time.Now().After(deadline) {
			if got != n || len(r.twice) > 0 || len(r.terminal) != len(r.accepted) {
				t.Errorf("%d message submits, %d answered (%d rejected, %d accepted, %d ended, %d dead letters); answered twice: %v",
					n, got, len(r.rejected), len(r.accepted), len(r.terminal), r.deadLetters, r.twice)
			}
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		<-tick.C
	}
}

func TestParentStopEndsEveryAcceptedRequest(t *testing.T) {
	// Issue 11, first reproduction: requests submitted while the parent of
	// an embedded executor stops stayed PENDING, and message submits in that
	// window got no answer at all.
	system := quietSystem()
	defer system.Shutdown()
	rec := runtimetest.NewRecorder()
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.QueueCapacity = 1 << 20
	cfg.Concurrency = 4
	cfg.Observer = rec.Observe
	got := make(chan *runtime.Executor, 1)
	parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &spawnerActor{cfg: cfg, got: got} }))
	ex := <-got

	rep := newReplies()
	collector := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return rep }))
	defer func() { _ = system.Root.StopFuture(collector).Wait() }()

	var (
		mu         sync.Mutex
		handles    []*runtime.Handle
		accepted   atomic.Int64
		sent       atomic.Int64
		parentGone = make(chan struct{})
		wg         sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				h, err := ex.Submit(context.Background(), messages.Request{Call: waitCtx})
				if err != nil {
					if !errors.Is(err, messages.ErrStopped) {
						t.Errorf("Submit: %v", err)
					}
					return
				}
				mu.Lock()
				handles = append(handles, h)
				mu.Unlock()
				accepted.Add(1)
			}
		})
	}
	// Message submits, before, during and after the stop.
	wg.Go(func() {
		after := 0
		for after < 200 {
			select {
			case <-parentGone:
				after++
			default:
			}
			system.Root.RequestWithCustomSender(ex.PID(), &messages.Submit{ID: uuid.New(), Request: messages.Request{Call: waitCtx}}, collector)
			sent.Add(1)
		}
	})
	for accepted.Load() < 1000 {
		goruntime.Gosched()
	}
	if err := system.Root.StopFuture(parent).Wait(); err != nil {
		t.Fatal(err)
	}
	close(parentGone)
	wg.Wait()

	// The executor stopped with its parent: every handle it returned has
	// ended, by now, without waiting.
	pending := map[messages.RequestStatus]int{}
	for _, h := range handles {
		select {
		case <-h.Done():
			if ev := h.Latest(); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
				t.Errorf("%s ended %v %v", h.ID(), ev.Status, ev.Err())
			}
		default:
			pending[h.Latest().Status]++
		}
	}
	if len(pending) > 0 {
		t.Errorf("of %d accepted requests, these never ended after the parent stopped: %v", len(handles), pending)
	}
	// Every message submit was answered: accepted and ended, rejected as
	// stopped, or (once the executor's actors were gone) answered by
	// protoactor's dead-letter response.
	rep.await(t, int(sent.Load()))
	rec.Check(t)
	rep.mu.Lock()
	t.Logf("%d accepted requests ended with the parent; %d message submits: %d rejected, %d ended, %d dead letters",
		len(handles), sent.Load(), len(rep.rejected), len(rep.terminal), rep.deadLetters)
	rep.mu.Unlock()
	// Nobody called Stop: the executor released what it started (its
	// dispatcher's workers) by itself.
	goleak.VerifyNone(t)
}

func TestSubmitContextCancelledDuringSubmitCancelsTheRequest(t *testing.T) {
	// Issue 11, second reproduction: a context cancelled while Submit ran
	// could send its cancel ahead of the request, which then ran forever.
	ex, rec := start(t, func(c *runtime.Config) { c.Concurrency, c.QueueCapacity = 64, 1<<20 })
	const submitters, each = 4, 5000
	var (
		mu      sync.Mutex
		handles []*runtime.Handle
		wg      sync.WaitGroup
	)
	for range submitters {
		wg.Go(func() {
			for range each {
				ctx, cancel := context.WithCancel(context.Background())
				go cancel()
				h, err := ex.Submit(ctx, messages.Request{Call: waitCtx})
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("Submit: %v", err)
					}
					continue
				}
				mu.Lock()
				handles = append(handles, h)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stuck := map[messages.RequestStatus]int{}
	for _, h := range handles {
		select {
		case <-h.Done():
		case <-ctx.Done():
		}
		ev := h.Latest()
		if !ev.Status.Terminal() {
			stuck[ev.Status]++
			continue
		}
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), context.Canceled) {
			t.Errorf("%s ended %v %v", h.ID(), ev.Status, ev.Err())
		}
	}
	if len(stuck) > 0 {
		t.Fatalf("of %d accepted requests whose context was cancelled, these never ended: %v", len(handles), stuck)
	}
	if st := ex.Stats(); st.InFlight != 0 || st.Queued != 0 {
		t.Errorf("callers still held: %+v", st)
	}
	rec.Check(t)
}

// restartingParent spawns an executor and a sibling under an all-for-one
// strategy: when the sibling fails, protoactor restarts every child,
// the executor's supervisor too.
type restartingParent struct {
	cfg     runtime.Config
	got     chan<- *runtime.Executor
	sibling chan<- *actor.PID
}

func (p *restartingParent) Receive(ctx actor.Context) {
	if _, started := ctx.Message().(*actor.Started); started {
		ex, err := runtime.Spawn(ctx, p.cfg)
		if err != nil {
			panic(err)
		}
		p.got <- ex
		p.sibling <- ctx.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if _, fail := ctx.Message().(string); fail {
				panic("sibling fails")
			}
		}))
	}
}

func TestExecutorRestartedByItsParentStopsAndEndsEveryRequest(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	rec := runtimetest.NewRecorder()
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.QueueCapacity = 1 << 20
	cfg.Concurrency = 2
	cfg.Observer = rec.Observe
	got, sibling := make(chan *runtime.Executor, 1), make(chan *actor.PID, 1)
	parent := system.Root.Spawn(actor.PropsFromProducer(
		func() actor.Actor { return &restartingParent{cfg: cfg, got: got, sibling: sibling} },
		actor.WithSupervisor(actor.NewAllForOneStrategy(10, time.Minute, actor.DefaultDecider)),
	))
	defer func() { _ = system.Root.StopFuture(parent).Wait() }()
	ex, sib := <-got, <-sibling

	var (
		mu       sync.Mutex
		handles  []*runtime.Handle
		accepted atomic.Int64
		wg       sync.WaitGroup
	)
	failed := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for after := 0; after < 1000; {
				select {
				case <-failed:
					after++
				default:
				}
				h, err := ex.Submit(context.Background(), messages.Request{Call: waitCtx})
				if err != nil {
					if !errors.Is(err, messages.ErrStopped) {
						t.Errorf("Submit: %v", err)
					}
					return
				}
				mu.Lock()
				handles = append(handles, h)
				mu.Unlock()
				accepted.Add(1)
			}
		})
	}
	for accepted.Load() < 500 {
		goruntime.Gosched()
	}
	system.Root.Send(sib, "fail")
	close(failed)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The executor stopped with the restart; stopping it again ends
	// whatever a surviving executor would still run.
	if err := ex.StopNow(ctx); err != nil {
		t.Errorf("StopNow after the restart: %v", err)
	}
	if _, err := ex.Submit(ctx, messages.Request{Call: waitCtx}); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after the restart: %v", err)
	}
	pending := map[messages.RequestStatus]int{}
	for _, h := range handles {
		select {
		case <-h.Done():
		case <-ctx.Done():
		}
		if ev := h.Latest(); !ev.Status.Terminal() {
			pending[ev.Status]++
		} else if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
			t.Errorf("%s ended %v %v", h.ID(), ev.Status, ev.Err())
		}
	}
	if len(pending) > 0 {
		t.Errorf("of %d accepted requests, these never ended after the restart: %v", len(handles), pending)
	}
	rec.Check(t)
}
