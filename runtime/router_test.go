package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

// perMinute is a deployment of group g named name, limited to rpm
// requests a minute, evenly paced, with 8 callers.
func perMinute(name, g string, rpm int) Deployment {
	c := DefaultConfig()
	c.RequestsPerInterval, c.RequestInterval, c.Concurrency = rpm, time.Minute, 8
	return Deployment{Name: name, Group: g, Config: c}
}

// calls maps deployment names to what their attempts do.
type calls map[string]messages.Call

// builder makes, for each deployment, a request whose call is the
// deployment's in cs (a no-op for those not in it), recording the
// deployment in the request's endpoint URL.
func (cs calls) builder(tokens int) Builder {
	return func(d string) (messages.Request, error) {
		c := cs[d]
		if c == nil {
			c = noop
		}
		return messages.Request{Call: c, Tokens: tokens, Endpoint: messages.Endpoint{URL: "test://" + d}}, nil
	}
}

// startRouterT starts a router for cfg, stopped at the end of the test,
// with a recorder as its observer checking the snapshot invariants.
func startRouterT(t *testing.T, cfg RouterConfig) (*Router, *runtimetest.Recorder) {
	t.Helper()
	rec := runtimetest.NewRecorder()
	prev := cfg.Observer
	cfg.Observer = func(ev messages.Event) {
		rec.Observe(ev)
		if prev != nil {
			prev(ev)
		}
	}
	rt, err := StartRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := rt.StopNow(ctx); err != nil {
			t.Errorf("StopNow: %v", err)
		}
		rec.Check(t)
		outliveDeadLetters()
	})
	return rt, rec
}

// outliveDeadLetters lets protoactor's dead-letter throttle, which keeps
// a goroutine for its interval (1 ms here) after a message reaches a
// stopped actor, end before the test does: a bubble of fake time must
// not end with it, nor a leak check run before it has.
func outliveDeadLetters() { time.Sleep(2 * time.Millisecond) }

func submitAll(t *testing.T, rt *Router, n int, group string, build Builder) []*Handle {
	t.Helper()
	hs := make([]*Handle, n)
	for i := range hs {
		h, err := rt.Submit(context.Background(), group, build)
		if err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
		hs[i] = h
	}
	return hs
}

// startsBy returns, per deployment, when each attempt's call started, in
// order, from the recorded snapshots.
func startsBy(rec *runtimetest.Recorder, hs []*Handle) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, h := range hs {
		for _, ev := range rec.Of(h.ID()) {
			if ev.Status == messages.StatusCalling {
				out[ev.Deployment] = append(out[ev.Deployment], ev.Timings().CallStarted)
			}
		}
	}
	for _, s := range out {
		slices.SortFunc(s, time.Time.Compare)
	}
	return out
}

// Three deployments of one group at 600, 1200 and 1800 requests a minute:
// under fake time, 600 requests take the sum of the limits, 3,600 a
// minute, from the first start to the last, each deployment starting no
// more than its pace allows (its first at once, then one per interval)
// and, since the others are at theirs, at least what is left.
func TestRouterSpreadsLoadByBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 600
		rpm := map[string]int{"a": 600, "b": 1200, "c": 1800}
		cfg := DefaultRouterConfig(perMinute("a", "gpt", rpm["a"]), perMinute("b", "gpt", rpm["b"]), perMinute("c", "gpt", rpm["c"]))
		rt, rec := startRouterT(t, cfg)
		hs := submitAll(t, rt, n, "gpt", calls{}.builder(0))
		for _, h := range hs {
			if ev := waitT(t, h); ev.Status != messages.StatusCompleted || ev.Attempt != 1 {
				t.Fatalf("request ended %v after %d attempts: %v", ev.Status, ev.Attempt, ev.Err())
			}
		}
		starts := startsBy(rec, hs)
		var all []time.Time
		for _, s := range starts {
			all = append(all, s...)
		}
		slices.SortFunc(all, time.Time.Compare)
		span := all[n-1].Sub(all[0])
		// Three buckets of one start each, then 60 a second together.
		ideal := time.Duration(float64(n-3) / 60 * float64(time.Second))
		t.Logf("%d requests over %v (ideal %v): a %d, b %d, c %d", n, span, ideal, len(starts["a"]), len(starts["b"]), len(starts["c"]))
		if rate := float64(n-3) / span.Seconds() / 60; rate < 0.97 || rate > 1.0001 {
			t.Errorf("achieved %.4f of the sum of the limits, want [0.97, 1]", rate)
		}
		// The first at once, then one per interval (to a nanosecond's
		// rounding of the intervals).
		bound := func(d string) int { return 1 + int(float64(rpm[d])/60*span.Seconds()+1e-3) }
		for d := range rpm {
			got := len(starts[d])
			most := bound(d)
			least := n
			for o := range rpm {
				if o != d {
					least -= bound(o)
				}
			}
			if got > most || got < least {
				t.Errorf("deployment %s started %d calls over %v, want [%d, %d]", d, got, span, least, most)
			}
			if w := runtimetest.MaxInWindow(starts[d], time.Second); w > rpm[d]/60+1 {
				t.Errorf("deployment %s started %d calls within one second, want at most %d", d, w, rpm[d]/60+1)
			}
		}
		st := rt.Stats()
		if st.Completed != n || st.Queued != 0 || st.InFlight != 0 || st.Retries != 0 {
			t.Errorf("stats %+v", st)
		}
		for _, d := range st.Deployments {
			if int(d.Attempts) != len(starts[d.Name]) || d.Completed != d.Attempts || d.Breaker != BreakerClosed {
				t.Errorf("deployment %s: %+v", d.Name, d)
			}
		}
	})
}

// errDown and errSick are attempts' errors a test's Classify calls down
// and unhealthy.
var (
	errDown = errors.New("insufficient_quota")
	errSick = errors.New("overloaded")
	errBad  = errors.New("bad request")
)

func testClassify(err error) Verdict {
	switch {
	case errors.Is(err, errDown):
		return VerdictDown
	case errors.Is(err, errBad):
		return VerdictFatal
	}
	return DefaultClassify(err)
}

// failingWhile is a call that fails with err while sick says so.
func failingWhile(sick *atomic.Bool, err error) messages.Call {
	return messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		if sick.Load() {
			return messages.Result{StatusCode: 529}, err
		}
		return messages.Result{StatusCode: 200}, nil
	})
}

// A deployment that starts failing half-way through a run: its breaker
// opens after FailureThreshold failures in a row, the others carry the
// load, every request completes; once it heals, its breaker half-opens
// after the delay, the probe succeeds, and it takes its share again.
// Under fake time, the figures are exact: the time from its first
// failure to its breaker opening, and the attempts it failed.
func TestRouterBreakerTakesAFailingDeploymentOutAndBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 900
		var sick atomic.Bool
		cfg := DefaultRouterConfig(perMinute("a", "gpt", 600), perMinute("b", "gpt", 1200), perMinute("c", "gpt", 1800))
		cfg.MaxAttempts, cfg.BreakerDelay = 5, 2*time.Second
		var (
			mu            sync.Mutex
			firstFailure  time.Time
			opened        time.Time
			openings      []time.Time
			closedAgainAt time.Time
		)
		cfg.Observer = func(ev messages.Event) {
			if info, ok := ev.RetryFailure(); ok && ev.Deployment == "c" {
				mu.Lock()
				if firstFailure.IsZero() {
					firstFailure = ev.Timings().Queued
				}
				_ = info
				mu.Unlock()
			}
		}
		rt, rec := startRouterT(t, cfg)
		start := time.Now()
		hs := submitAll(t, rt, n, "gpt", calls{"c": failingWhile(&sick, errSick)}.builder(0))
		// Sick from 3 s to 8 s into the run.
		time.Sleep(3 * time.Second)
		sick.Store(true)
		sickAt := time.Now()
		for rt.Stats().Deployments[2].Openings == 0 {
			time.Sleep(time.Millisecond)
		}
		opened = time.Now()
		openings = append(openings, opened)
		time.Sleep(8*time.Second - time.Since(start))
		sick.Store(false)
		healedAt := time.Now()
		for rt.Stats().Deployments[2].Breaker != BreakerClosed {
			time.Sleep(time.Millisecond)
		}
		closedAgainAt = time.Now()
		for _, h := range hs {
			if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
				t.Fatalf("request ended %v: %v", ev.Status, ev.Err())
			}
		}
		st := rt.Stats().Deployments[2]
		mu.Lock()
		routeAround := opened.Sub(firstFailure)
		mu.Unlock()
		t.Logf("c sick at %v, first failure +%v, breaker open after %v, %d openings; healed at %v, closed again +%v; c: %d attempts, %d failed",
			sickAt.Sub(start), firstFailure.Sub(sickAt), routeAround, st.Openings, healedAt.Sub(start), closedAgainAt.Sub(healedAt), st.Attempts, st.Failed)
		// Three failures in a row at 30 a second open it within 0.1 s of
		// the first: the attempts already given it (its lookahead) fail
		// too, and each half-open probe while sick.
		if routeAround > 100*time.Millisecond {
			t.Errorf("the breaker opened %v after the first failure, want within 3 permits (100ms)", routeAround)
		}
		probesWhileSick := int64(5*time.Second/cfg.BreakerDelay) + 1
		if most := int64(cfg.FailureThreshold) + int64(rt.deps[2].ahead) + probesWhileSick + 1; st.Failed > most {
			t.Errorf("c failed %d attempts, want at most %d", st.Failed, most)
		}
		if st.Openings < 2 || st.Openings > probesWhileSick+1 {
			t.Errorf("c's breaker opened %d times over 5 s sick with a delay of 2 s, want 2 (the first, and a failed probe) to %d", st.Openings, probesWhileSick+1)
		}
		if d := closedAgainAt.Sub(healedAt); d > cfg.BreakerDelay+100*time.Millisecond {
			t.Errorf("c came back %v after it healed, want within the breaker's delay", d)
		}
		after := 0
		for _, s := range startsBy(rec, hs)["c"] {
			if s.After(closedAgainAt) {
				after++
			}
		}
		if after == 0 {
			t.Error("c took no request after it came back")
		}
	})
}

// A deployment whose attempts say it cannot serve at all (out of quota)
// is taken out at once: only the attempts already given it fail there,
// and the run completes on the others.
func TestRouterTakesADownDeploymentOutAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 300
		var down atomic.Bool
		down.Store(true)
		cfg := DefaultRouterConfig(perMinute("a", "gpt", 1200), perMinute("b", "gpt", 1800), perMinute("quota", "gpt", 1800))
		cfg.Classify, cfg.BreakerDelay = testClassify, time.Hour
		rt, _ := startRouterT(t, cfg)
		hs := submitAll(t, rt, n, "gpt", calls{"quota": failingWhile(&down, errDown)}.builder(0))
		for _, h := range hs {
			if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
				t.Fatalf("request ended %v: %v", ev.Status, ev.Err())
			}
		}
		st := rt.Stats().Deployments[2]
		// The first failure opens it: what it held then (its lookahead
		// and the call under way) fails with it, nothing after.
		if most := int64(rt.deps[2].Config.Concurrency); st.Failed == 0 || st.Failed > most || st.Completed != 0 || st.Openings != 1 || st.Breaker != BreakerOpen {
			t.Errorf("the deployment out of quota: %+v; want 1 to %d failures and one opening", st, most)
		}
		if st.Attempts != st.Failed {
			t.Errorf("%d calls started there, %d failed", st.Attempts, st.Failed)
		}
	})
}

// A request whose group's deployments all fail goes to its fallback
// groups in order, within its attempts; its snapshots name each attempt's
// deployment and model, and it keeps one ID and one gap-free sequence.
func TestRouterFallsBackAcrossGroups(t *testing.T) {
	var (
		sick  atomic.Bool
		mu    sync.Mutex
		built []string
	)
	sick.Store(true)
	g1, g2, c := perMinute("openai-a", "gpt-4o", 6000), perMinute("openai-b", "gpt-4o", 6000), perMinute("claude", "claude-haiku", 6000)
	g1.Model, g2.Model, c.Model = "gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "claude-3-5-haiku-latest"
	cfg := DefaultRouterConfig(g1, g2, c, perMinute("other", "mini", 6000))
	cfg.Fallbacks = map[string][]string{"gpt-4o": {"mini", "claude-haiku"}}
	sickCall := failingWhile(&sick, errSick)
	cs := calls{"openai-a": sickCall, "openai-b": sickCall, "other": sickCall}
	build := func(d string) (messages.Request, error) {
		mu.Lock()
		built = append(built, d)
		mu.Unlock()
		return cs.builder(0)(d)
	}
	cfg.MaxAttempts = 4
	rt, rec := startRouterT(t, cfg)
	h, err := rt.Submit(context.Background(), "gpt-4o", build)
	if err != nil {
		t.Fatal(err)
	}
	ev := waitT(t, h)
	if ev.Status != messages.StatusCompleted || ev.Deployment != "claude" || ev.Model != "claude-3-5-haiku-latest" || ev.Attempt != 4 {
		t.Fatalf("ended %v at %q (%q) after %d attempts; want COMPLETED at claude after 4", ev.Status, ev.Deployment, ev.Model, ev.Attempt)
	}
	evs := rec.Of(h.ID())
	var path []string
	for i, e := range evs {
		if e.ID != h.ID() || e.Seq != uint64(i+1) {
			t.Errorf("snapshot %d: ID %v seq %d", i, e.ID, e.Seq)
		}
		if e.Status == messages.StatusCalling {
			path = append(path, e.Deployment+"/"+e.Model)
		}
		if e.Status == messages.StatusQueued && e.Attempt > 0 {
			if info, ok := e.RetryFailure(); !ok || info.Message != errSick.Error() {
				t.Errorf("retry snapshot %d at %s: failure %+v", i, e.Deployment, info)
			}
		}
	}
	// Its own group first (either deployment first, then the other), then
	// the fallbacks in order.
	if len(path) != 4 || !slices.Contains(path[:2], "openai-a/gpt-4o-2024-08-06") || !slices.Contains(path[:2], "openai-b/gpt-4o-2024-08-06") ||
		path[2] != "other/mini" || path[3] != "claude/claude-3-5-haiku-latest" {
		t.Errorf("attempts went %v", path)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(built) != 4 {
		t.Errorf("built for %v, want each deployment once", built)
	}
	if got := runtimetest.Statuses(evs); len(got) != 2+3*3+2+1 {
		t.Errorf("statuses %v", got)
	}
}

// A request every deployment fails, round after round: it waits out its
// backoff between rounds and fails once its attempts are spent, with the
// last attempt's error; without a backoff policy it fails after one round.
func TestRouterGivesUpWhenEveryDeploymentFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sick atomic.Bool
		sick.Store(true)
		cfg := DefaultRouterConfig(perMinute("a", "gpt", 6000), perMinute("b", "gpt", 6000))
		cfg.MaxAttempts, cfg.FailureThreshold = 5, 100
		cfg.Retry = Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1, Retryable: func(error) bool { return true }}
		sickCall := failingWhile(&sick, errSick)
		build := calls{"a": sickCall, "b": sickCall}.builder(0)
		rt, rec := startRouterT(t, cfg)
		start := time.Now()
		h, err := rt.Submit(context.Background(), "gpt", build)
		if err != nil {
			t.Fatal(err)
		}
		ev := waitT(t, h)
		if ev.Status != messages.StatusFailed || ev.Attempt != 5 || !errors.Is(ev.Err(), errSick) {
			t.Fatalf("ended %v after %d attempts with %v; want FAILED after 5 with the last error", ev.Status, ev.Attempt, ev.Err())
		}
		// Two at once, a backoff, two at once, a backoff, the fifth.
		var delays []string
		for _, e := range rec.Of(h.ID()) {
			if e.Status == messages.StatusQueued && e.Attempt > 0 {
				delays = append(delays, e.Log()[len(e.Log())-1].Message[:len("retry in 0s")])
			}
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second+100*time.Millisecond {
			t.Errorf("took %v; two backoffs of at most 1s", elapsed)
		}
		if n := len(delays); n != 4 || delays[0] != "retry in 0s" || delays[2] != "retry in 0s" {
			t.Errorf("retries %q", delays)
		}

		cfg.Retry = nil
		rt2, _ := startRouterT(t, cfg)
		h, err = rt2.Submit(context.Background(), "gpt", build)
		if err != nil {
			t.Fatal(err)
		}
		if ev := waitT(t, h); ev.Status != messages.StatusFailed || ev.Attempt != 2 {
			t.Errorf("without a backoff: ended %v after %d attempts, want FAILED after one round of 2", ev.Status, ev.Attempt)
		}
	})
}

// A failure that is the request's own (a fatal verdict) ends it at once,
// wherever it was, and counts for the deployment's health as an answer.
func TestRouterFatalErrorEndsTheRequest(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	cfg := DefaultRouterConfig(perMinute("a", "gpt", 6000), perMinute("b", "gpt", 6000))
	cfg.Classify = testClassify
	call := failingWhile(&bad, errBad)
	rt, _ := startRouterT(t, cfg)
	h, err := rt.Submit(context.Background(), "gpt", calls{"a": call, "b": call}.builder(0))
	if err != nil {
		t.Fatal(err)
	}
	if ev := waitT(t, h); ev.Status != messages.StatusFailed || ev.Attempt != 1 || !errors.Is(ev.Err(), errBad) {
		t.Errorf("ended %v after %d attempts: %v", ev.Status, ev.Attempt, ev.Err())
	}
	for _, d := range rt.Stats().Deployments {
		if d.Breaker != BreakerClosed {
			t.Errorf("%s: breaker %v", d.Name, d.Breaker)
		}
	}
}

// pauseErr is a rate limit's error: busy, and a pause of the deployment.
type pauseErr struct{ until time.Time }

func (p pauseErr) Error() string         { return "rate limited" }
func (p pauseErr) PauseUntil() time.Time { return p.until }

// A deployment that answers a rate limit is paused by its own limiter and
// the request goes to another at once; its breaker does not count it, and
// while it is paused the router gives it nothing.
func TestRouterBusyDeploymentIsPausedNotBroken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var limited atomic.Int32
		busy := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			limited.Add(1)
			return messages.Result{StatusCode: 429}, pauseErr{time.Now().Add(time.Minute)}
		})
		cfg := DefaultRouterConfig(perMinute("busy", "gpt", 6000), perMinute("free", "gpt", 600))
		cfg.FailureThreshold = 1
		rt, _ := startRouterT(t, cfg)
		hs := submitAll(t, rt, 20, "gpt", calls{"busy": busy}.builder(0))
		for _, h := range hs {
			if ev := waitT(t, h); ev.Status != messages.StatusCompleted || ev.Deployment != "free" {
				t.Fatalf("ended %v at %s", ev.Status, ev.Deployment)
			}
		}
		st := rt.Stats().Deployments[0]
		if st.Breaker != BreakerClosed || st.RateLimited != int64(limited.Load()) || st.RateLimited == 0 || st.Openings != 0 {
			t.Errorf("busy deployment: %+v (%d answered 429)", st, limited.Load())
		}
		if most := int64(rt.deps[0].ahead) + 1; st.Attempts > most {
			t.Errorf("the paused deployment was given %d attempts, want at most %d", st.Attempts, most)
		}
		if st.Executor.PausedUntil.IsZero() {
			t.Error("the busy deployment is not paused")
		}
	})
}

// A request with more tokens than a deployment's token bucket holds goes
// to one whose bucket can; one that no bucket holds is refused at submit,
// naming the largest.
func TestRouterRequestTooLargeForOneDeployment(t *testing.T) {
	small, large := perMinute("small", "gpt", 6000), perMinute("large", "gpt", 6000)
	small.Config.TokensPerInterval, large.Config.TokensPerInterval = 1000, 100000
	rt, _ := startRouterT(t, DefaultRouterConfig(small, large))
	hs := submitAll(t, rt, 5, "gpt", calls{}.builder(5000))
	for _, h := range hs {
		if ev := waitT(t, h); ev.Status != messages.StatusCompleted || ev.Deployment != "large" {
			t.Errorf("ended %v at %s, want COMPLETED at large", ev.Status, ev.Deployment)
		}
	}
	_, err := rt.Submit(context.Background(), "gpt", calls{}.builder(500000))
	var tle *messages.TokenLimitError
	if !errors.As(err, &tle) || tle.Burst != 100000 || tle.Tokens != 500000 {
		t.Errorf("Submit of 500,000 tokens: %v, want a TokenLimitError naming the burst of 100,000", err)
	}
}

// What Submit refuses, with a typed error and no snapshot.
func TestRouterSubmitRefusals(t *testing.T) {
	one := perMinute("a", "gpt", 60)
	one.Config.RequestsPerInterval, one.Config.Concurrency = Unlimited, 1
	cfg := DefaultRouterConfig(one)
	cfg.QueueCapacity = 1
	rt, rec := startRouterT(t, cfg)
	if _, err := rt.Submit(context.Background(), "claude", calls{}.builder(0)); !errors.Is(err, ErrUnknownGroup) || !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("unknown group: %v", err)
	}
	if _, err := rt.Submit(context.Background(), "gpt", nil); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("no builder: %v", err)
	}
	unsupported := errors.New("not on this provider")
	if _, err := rt.Submit(context.Background(), "gpt", func(string) (messages.Request, error) { return messages.Request{}, unsupported }); !errors.Is(err, unsupported) {
		t.Errorf("a builder that fails: %v", err)
	}
	if _, err := rt.Submit(context.Background(), "gpt", func(string) (messages.Request, error) { return messages.Request{}, nil }); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("a request without a call: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rt.Submit(ctx, "gpt", calls{}.builder(0)); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context: %v", err)
	}
	b := runtimetest.NewBlocker()
	build := calls{"a": b}.builder(0)
	// One at the deployment's only caller, two waiting there (its
	// lookahead), one in the router's queue of 1: the next is refused.
	var hs []*Handle
	for i := range 3 {
		hs = append(hs, submitOK(t, rt, "gpt", build))
		waitStat(t, "the router to give the request away", func() bool { return rt.Stats().InFlight == int64(i+1) })
	}
	<-b.Started
	hs = append(hs, submitOK(t, rt, "gpt", build))
	if _, err := rt.Submit(context.Background(), "gpt", build); !errors.Is(err, messages.ErrQueueFull) {
		t.Errorf("a full queue: %v", err)
	}
	waitStat(t, "the router to queue the fourth", func() bool { return rt.Stats().Queued == 1 })
	if st := rt.Stats(); st.Rejected != 1 || st.Accepted != 4 || st.InFlight != 3 {
		t.Errorf("stats %+v", st)
	}
	close(b.Release)
	for _, h := range hs {
		waitT(t, h)
	}
	if err := rt.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Submit(context.Background(), "gpt", build); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("after Stop: %v", err)
	}
	if rec.Len() != 4 {
		t.Errorf("%d requests have snapshots, want the 4 accepted", rec.Len())
	}
}

func submitOK(t *testing.T, rt *Router, group string, build Builder) *Handle {
	t.Helper()
	h, err := rt.Submit(context.Background(), group, build)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return h
}

// waitStat waits for a condition on the router's counts, which no
// snapshot signals.
func waitStat(t *testing.T, what string, cond func() bool) {
	t.Helper()
	runtimetest.WaitFor(t, 10*time.Second, what, cond)
}

// A request whose remaining deployments turn out unable to take it (their
// builds fail) fails with ErrNoDeployment and the last attempt's error.
func TestRouterNoDeploymentLeft(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	unsupported := errors.New("embeddings not on this provider")
	cfg := DefaultRouterConfig(perMinute("a", "gpt", 6000), perMinute("b", "gpt", 6000))
	cfg.MaxAttempts, cfg.Lookahead = 5, time.Millisecond
	rt, _ := startRouterT(t, cfg)
	sickCall := failingWhile(&sick, errSick)
	h := submitOK(t, rt, "gpt", func(d string) (messages.Request, error) {
		if d == "b" {
			return messages.Request{}, unsupported
		}
		return messages.Request{Call: sickCall}, nil
	})
	ev := waitT(t, h)
	if ev.Status != messages.StatusFailed || ev.Attempt != 1 || !errors.Is(ev.Err(), ErrNoDeployment) || !errors.Is(ev.Err(), errSick) {
		t.Errorf("ended %v after %d attempts: %v", ev.Status, ev.Attempt, ev.Err())
	}
}

// verdictErr says its own verdict.
type verdictErr Verdict

func (v verdictErr) Error() string    { return "says " + Verdict(v).String() }
func (v verdictErr) Verdict() Verdict { return Verdict(v) }

func TestDefaultClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Verdict
	}{
		{messages.ErrCancelled, VerdictFatal},
		{fmt.Errorf("wrapped: %w", messages.ErrStopped), VerdictFatal},
		{messages.ErrInvalidRequest, VerdictFatal},
		{&messages.TokenLimitError{Tokens: 2, Burst: 1}, VerdictFatal},
		{fmt.Errorf("call: %w", verdictErr(VerdictDown)), VerdictDown},
		{verdictErr(VerdictBusy), VerdictBusy},
		{verdictErr(0), VerdictUnhealthy},
		{pauseErr{time.Now()}, VerdictBusy},
		{pauseErr{}, VerdictUnhealthy},
		{messages.ErrTimeout, VerdictUnhealthy},
		{errors.New("connection reset"), VerdictUnhealthy},
	} {
		if got := DefaultClassify(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}
