package runtime

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

func newCap(t *testing.T, limit float64) *SpendCap {
	t.Helper()
	c, err := NewSpendCap(limit)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewSpendCapRefusesALimitThatIsNotAnAmount(t *testing.T) {
	for _, limit := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		_, err := NewSpendCap(limit)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != "SpendCap" {
			t.Errorf("NewSpendCap(%v) = %v, want a ConfigError for SpendCap", limit, err)
		}
	}
}

func TestSpendCapCountsSpentAndCommitted(t *testing.T) {
	c := newCap(t, 1)
	if err := c.Reserve(0.4); err != nil {
		t.Fatal(err)
	}
	if err := c.Reserve(0.4); err != nil {
		t.Fatal(err)
	}
	err := c.Reserve(0.3)
	var sce *messages.SpendCapError
	if !errors.As(err, &sce) || !errors.Is(err, messages.ErrSpendCap) {
		t.Fatalf("Reserve over the cap = %v, want a SpendCapError", err)
	}
	if *sce != (messages.SpendCapError{Limit: 1, Spent: 0, Committed: 0.8, Estimate: 0.3}) {
		t.Errorf("refusal %+v", *sce)
	}
	// A request that cost less than its estimate frees the difference.
	c.Settle(0.4, 0.1)
	if st := c.Stats(); !sameUSD(st.Spent, 0.1) || !sameUSD(st.Committed, 0.4) || st.InFlight != 1 {
		t.Errorf("after a settle: %+v", st)
	}
	if err := c.Reserve(0.3); err != nil {
		t.Errorf("Reserve with room freed: %v", err)
	}
	c.Release(0.3) // not sent after all
	c.Charge(0.2)  // spent before, elsewhere
	c.Charge(-5)   // nothing
	if st := c.Stats(); !sameUSD(st.Spent, 0.3) || !sameUSD(st.Committed, 0.4) || st.InFlight != 1 || st.Limit != 1 {
		t.Errorf("after a release and a charge: %+v", st)
	}
	if err := c.Reserve(0.31); !errors.Is(err, messages.ErrSpendCap) {
		t.Errorf("0.3 spent + 0.4 committed + 0.31 = %v, want refused", err)
	}
	c.Settle(0.4, 0.45) // an estimate is not a bound on what the provider bills
	if st := c.Stats(); !sameUSD(st.Spent, 0.75) || st.Committed != 0 || st.InFlight != 0 {
		t.Errorf("all settled: %+v", st)
	}
}

func TestSpendCapWaitEndsWhenRoomIsFreedOrCannotBe(t *testing.T) {
	c := newCap(t, 1)
	ctx := context.Background()
	if err := c.Wait(ctx, 0.5); err != nil {
		t.Fatalf("Wait with room: %v", err)
	}
	if err := c.Reserve(0.9); err != nil {
		t.Fatal(err)
	}
	// Whenever the waiter starts, before or after the settle, it ends
	// with room: the request in flight cost less than its estimate.
	done := make(chan error, 1)
	go func() { done <- c.Wait(ctx, 0.5) }()
	c.Settle(0.9, 0.2)
	if err := <-done; err != nil {
		t.Errorf("Wait after room was freed: %v", err)
	}

	if err := c.Reserve(0.7); err != nil {
		t.Fatal(err)
	}
	go func() { done <- c.Wait(ctx, 0.5) }()
	c.Settle(0.7, 0.6) // 0.8 spent, nothing in flight: 0.5 never fits
	if err := <-done; !errors.Is(err, messages.ErrSpendCap) {
		t.Errorf("Wait when nothing can free room = %v, want ErrSpendCap", err)
	}
	if err := c.Wait(ctx, 0.5); !errors.Is(err, messages.ErrSpendCap) {
		t.Errorf("Wait with nothing in flight = %v, want ErrSpendCap at once", err)
	}

	if err := c.Reserve(0.1); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := errors.New("interrupted")
	go func() { done <- c.Wait(cctx, 0.5) }()
	cancel(stop)
	if err := <-done; !errors.Is(err, stop) {
		t.Errorf("Wait whose context ended = %v, want its cause", err)
	}
}

// TestSpendCapIsSafeForConcurrentUse: reservations and settlements from
// many goroutines leave the sums exact.
func TestSpendCapIsSafeForConcurrentUse(t *testing.T) {
	c := newCap(t, 1000)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if c.Reserve(0.25) == nil {
					c.Settle(0.25, 0.125)
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Spent != 500 || st.Committed != 0 || st.InFlight != 0 {
		t.Errorf("%+v, want 4000 requests at 0.125 spent and nothing in flight", st)
	}
}

// flat prices every usage at usd per output token.
type flat float64

func (f flat) Cost(u messages.Usage) float64 { return float64(f) * float64(u.OutputTokens) }

func TestExecutorAdmitsWithinTheSpendCap(t *testing.T) {
	c := newCap(t, 1)
	ex, rec := startRec(t, func(cfg *Config) { cfg.SpendCap = c })
	b := runtimetest.NewBlocker()
	// Each call reports 10 output tokens at a cent: $0.10, estimated at
	// $0.30.
	billed := messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		res, err := b.Do(ctx, attempt)
		res.Usage = &messages.Usage{OutputTokens: 10}
		return res, err
	})
	req := messages.Request{Call: billed, Pricing: flat(0.01), EstimatedCost: 0.3}
	var hs []*Handle
	for range 3 {
		hs = append(hs, submitT(t, ex, req))
	}
	_, err := ex.Submit(context.Background(), req)
	var sce *messages.SpendCapError
	if !errors.As(err, &sce) || !sameUSD(sce.Committed, 0.9) {
		t.Fatalf("fourth request: %v, want refused with $0.90 committed", err)
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok("x")}); !errors.Is(err, messages.ErrPriceUnknown) {
		t.Errorf("a request without a price under a cap: %v, want ErrPriceUnknown", err)
	}
	close(b.Release)
	for _, h := range hs {
		ev := waitT(t, h)
		if ev.Status != messages.StatusCompleted || !sameUSD(ev.Cost().Actual, 0.1) {
			t.Errorf("%v cost %+v, want COMPLETED at $0.10", ev.Status, ev.Cost())
		}
	}
	if st := c.Stats(); !sameUSD(st.Spent, 0.3) || st.Committed != 0 || st.InFlight != 0 {
		t.Errorf("after the three ended: %+v", st)
	}
	// $0.30 spent: two more fit, a third does not.
	submitT(t, ex, req)
	submitT(t, ex, req)
	if _, err := ex.Submit(context.Background(), req); !errors.Is(err, messages.ErrSpendCap) {
		t.Errorf("past the cap: %v", err)
	}
	if err := ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !sameUSD(st.Spent, 0.5) || st.InFlight != 0 {
		t.Errorf("after a graceful stop: %+v", st)
	}
	rec.Check(t)
}

// A request that ends without a call (cancelled, stopped) gives its
// reservation back, whichever way it ends.
func TestSpendCapIsSettledByEveryEnd(t *testing.T) {
	c := newCap(t, 10)
	ex, rec := startRec(t, func(cfg *Config) { cfg.SpendCap = c; cfg.Concurrency = 1 })
	b := runtimetest.NewBlocker()
	req := messages.Request{Call: b, Pricing: flat(1), EstimatedCost: 1}
	running := submitT(t, ex, req)
	<-b.Started
	queued := submitT(t, ex, req)
	cancelled := submitT(t, ex, req)
	cancelled.Cancel()
	if ev := waitT(t, cancelled); ev.Status != messages.StatusCancelled {
		t.Fatalf("cancelled request ended %v", ev.Status)
	}
	if st := c.Stats(); !sameUSD(st.Committed, 2) || st.InFlight != 2 {
		t.Errorf("after a cancel: %+v, want two in flight", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.StopNow(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Handle{running, queued} {
		if ev := waitT(t, h); ev.Status != messages.StatusCancelled {
			t.Errorf("%v after StopNow", ev.Status)
		}
	}
	if st := c.Stats(); st.Spent != 0 || st.Committed != 0 || st.InFlight != 0 {
		t.Errorf("after StopNow: %+v, want nothing spent or held", st)
	}
	rec.Check(t)
}

// A request whose reply is known ends at once: no queue slot, no permit,
// no call, nothing of the spend cap; PENDING then COMPLETED, seen by the
// observer before the handle.
func TestCachedRequestIsAnsweredWithoutAPermit(t *testing.T) {
	c := newCap(t, 1)
	ex, rec := startRec(t, func(cfg *Config) {
		cfg.RequestsPerInterval, cfg.RequestInterval = 1, time.Hour // one permit, then none for an hour
		cfg.QueueCapacity, cfg.Concurrency = 1, 1
		cfg.SpendCap = c
	})
	b := runtimetest.NewBlocker()
	first := submitT(t, ex, messages.Request{Call: b, Pricing: flat(0), EstimatedCost: 0.5})
	<-b.Started                                                                                     // took the only permit and the only caller
	queued := submitT(t, ex, messages.Request{Call: ok("q"), Pricing: flat(0), EstimatedCost: 0.5}) // fills the queue
	never := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		t.Error("the call of a cached request ran")
		return messages.Result{}, nil
	})
	h, err := ex.Submit(context.Background(), messages.Request{
		Call: never, Tokens: 7, Metadata: map[string]string{"k": "v"},
		Cached: &messages.Result{StatusCode: 200, Body: []byte(`"stored"`)},
	})
	if err != nil {
		t.Fatalf("Submit of a cached request with the queue full and the cap committed: %v", err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("the cached request had not ended when Submit returned")
	}
	evs := rec.Of(h.ID())
	if got := runtimetest.Statuses(evs); len(got) != 2 || got[0] != messages.StatusPending || got[1] != messages.StatusCompleted {
		t.Fatalf("observer saw %v, want PENDING COMPLETED", got)
	}
	var fromHandle []messages.Event
	for ev := range h.Events() {
		fromHandle = append(fromHandle, ev)
	}
	if len(fromHandle) != 2 || fromHandle[1].Seq != 2 {
		t.Fatalf("handle has %d snapshots", len(fromHandle))
	}
	end := fromHandle[1]
	if !end.Cached() || end.Cost() != (messages.Cost{Priced: true, HasActual: true}) || end.Metadata()["k"] != "v" || end.Tokens.Estimated != 7 {
		t.Errorf("terminal snapshot: cached %v cost %+v metadata %v tokens %+v", end.Cached(), end.Cost(), end.Metadata(), end.Tokens)
	}
	if resp, _ := end.Response(); string(resp.Body) != `"stored"` {
		t.Errorf("response %q", resp.Body)
	}
	h.Cancel() // ended: nothing happens
	if st := ex.Stats(); st.Cached != 1 || st.Completed != 1 || st.Accepted != 3 {
		t.Errorf("stats: cached %d, completed %d, accepted %d; want 1, 1 (the cached one), 3", st.Cached, st.Completed, st.Accepted)
	}
	if st := c.Stats(); st.InFlight != 2 || !sameUSD(st.Committed, 1) {
		t.Errorf("the cap holds %+v, want only the two called requests", st)
	}
	close(b.Release)
	waitT(t, first)
	queued.Cancel() // it would wait an hour for its permit
	waitT(t, queued)
	rec.Check(t)
}

func TestCachedRequestAfterStopIsRefused(t *testing.T) {
	ex := startT(t, nil)
	if err := ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := ex.Submit(context.Background(), messages.Request{Call: ok("x"), Cached: &messages.Result{}})
	if !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after Stop = %v, want ErrStopped", err)
	}
}

func sameUSD(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// A router's spend cap reserves a request once, at Submit, by the
// estimate of its first build, and settles it with what its attempts cost
// at their own deployments' prices: here an attempt billed and failed at
// the expensive deployment, then one that succeeds at its fallback.
func TestRouterSpendCapCountsEveryAttemptOnce(t *testing.T) {
	c := newCap(t, 1)
	cfg := DefaultRouterConfig(perMinute("dear", "big", 6000), perMinute("cheap", "small", 6000))
	cfg.Fallbacks = map[string][]string{"big": {"small"}}
	cfg.SpendCap = c
	b := runtimetest.NewBlocker()
	// Each call reports 10 output tokens: $0.10 at "dear", $0.01 at "cheap".
	billed := func(fail bool) messages.Call {
		return messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
			res, err := b.Do(ctx, attempt)
			res.Usage = &messages.Usage{OutputTokens: 10}
			if fail && err == nil {
				err = errSick
			}
			return res, err
		})
	}
	build := func(d string) (messages.Request, error) {
		if d == "dear" {
			return messages.Request{Call: billed(true), Pricing: flat(0.01), EstimatedCost: 0.4}, nil
		}
		return messages.Request{Call: billed(false), Pricing: flat(0.001), EstimatedCost: 0.04}, nil
	}
	rt, rec := startRouterT(t, cfg)
	first, err := rt.Submit(context.Background(), "big", build)
	if err != nil {
		t.Fatal(err)
	}
	second, err := rt.Submit(context.Background(), "big", build)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !sameUSD(st.Committed, 0.8) || st.InFlight != 2 {
		t.Fatalf("two requests in: %+v, want $0.80 committed by their first builds", st)
	}
	_, err = rt.Submit(context.Background(), "big", build)
	var sce *messages.SpendCapError
	if !errors.As(err, &sce) || !sameUSD(sce.Committed, 0.8) {
		t.Fatalf("third request: %v, want refused with $0.80 committed", err)
	}
	unpriced := func(string) (messages.Request, error) { return messages.Request{Call: noop}, nil }
	if _, err := rt.Submit(context.Background(), "big", unpriced); !errors.Is(err, messages.ErrPriceUnknown) {
		t.Errorf("a request without a price under a cap: %v, want ErrPriceUnknown", err)
	}
	close(b.Release)
	for _, h := range []*Handle{first, second} {
		ev := waitT(t, h)
		if ev.Status != messages.StatusCompleted || ev.Deployment != "cheap" || ev.Attempt != 2 {
			t.Fatalf("ended %v at %q after %d attempts, want COMPLETED at cheap after 2", ev.Status, ev.Deployment, ev.Attempt)
		}
		if cost := ev.Cost(); !sameUSD(cost.Actual, 0.11) || !cost.HasActual || !cost.Priced || cost.Estimated != 0.4 {
			t.Errorf("cost %+v, want $0.11: $0.10 billed at dear, $0.01 at cheap", cost)
		}
		if ev.Tokens.Actual != 20 {
			t.Errorf("tokens %+v, want 20: both attempts'", ev.Tokens)
		}
	}
	if st := c.Stats(); !sameUSD(st.Spent, 0.22) || st.Committed != 0 || st.InFlight != 0 {
		t.Errorf("after both ended: %+v, want $0.22 spent, nothing held", st)
	}
	rec.Check(t)
}

func TestRouterRefusesASpendCapPerDeployment(t *testing.T) {
	d := perMinute("a", "g", 60)
	d.Config.SpendCap = newCap(t, 1)
	_, err := StartRouter(DefaultRouterConfig(d))
	var ce *messages.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Deployments[0].Config.SpendCap" {
		t.Fatalf("StartRouter: %v, want a ConfigError naming Deployments[0].Config.SpendCap", err)
	}
}
