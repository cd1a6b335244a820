package actors

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// The Tree's methods, as package runtime uses them.

func TestTreeValidateAndSetLimits(t *testing.T) {
	h := startTree(t, tokensOnly(1000, 100), nil)
	if !h.tr.PID().Equal(h.tree.Supervisor) {
		t.Errorf("PID %v, want the supervisor %v", h.tr.PID(), h.tree.Supervisor)
	}
	if err := h.tr.Validate(&messages.Request{Call: okCall(""), Tokens: 100}); err != nil {
		t.Errorf("a request of the whole burst: %v", err)
	}
	var tle *messages.TokenLimitError
	if err := h.tr.Validate(&messages.Request{Call: okCall(""), Tokens: 101}); !errors.As(err, &tle) || tle.Tokens != 101 || tle.Burst != 100 {
		t.Errorf("a request over the burst: %v, want TokenLimitError{101, 100}", err)
	}
	if err := h.tr.Validate(&messages.Request{}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("a request without a call: %v, want ErrInvalidRequest", err)
	}
	// New limits apply at once to Validate and Stats, without waiting for
	// the limiter.
	h.tr.SetLimits(tokensOnly(1000, 50))
	if err := h.tr.Validate(&messages.Request{Call: okCall(""), Tokens: 60}); !errors.As(err, &tle) || tle.Burst != 50 {
		t.Errorf("after lowering the burst to 50: %v, want TokenLimitError with burst 50", err)
	}
	if s := h.tr.Stats(); s.TokensAvailable > 50 || !math.IsInf(s.RequestsAvailable, 1) {
		t.Errorf("Stats after lowering the burst: tokens %v requests %v, want at most 50 and +Inf", s.TokensAvailable, s.RequestsAvailable)
	}
	// The limiter plans with them too: a request of the new burst runs.
	id := h.enqueue(t, messages.Request{Call: okCall("x"), Tokens: 50})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCompleted {
		t.Errorf("request of the new burst ended %v (%v)", ev.Status, ev.Err())
	}
}

func TestTreeAdmit(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.QueueCapacity = 1 })
	if err := h.tr.Admit(context.Background(), false, nil); err != nil {
		t.Fatalf("first Admit: %v", err)
	}
	if err := h.tr.Admit(context.Background(), false, nil); !errors.Is(err, messages.ErrQueueFull) {
		t.Errorf("Admit of a full queue: %v, want ErrQueueFull", err)
	}
	if s := h.tr.Stats(); s.Rejected != 1 {
		t.Errorf("Stats.Rejected = %d, want 1", s.Rejected)
	}
	cause := errors.New("submitter gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := h.tr.Admit(ctx, true, nil); err != cause {
		t.Errorf("waiting Admit with its context done: %v, want its cause", err)
	}
	stop := make(chan struct{})
	close(stop)
	if err := h.tr.Admit(context.Background(), true, stop); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("waiting Admit while stopping: %v, want ErrStopped", err)
	}
	// A slot given back lets a waiting Admit in.
	admitted := make(chan error, 1)
	go func() { admitted <- h.tr.Admit(context.Background(), true, nil) }()
	h.tr.Release()
	if err := recvValue(t, admitted, "waiting Admit"); err != nil {
		t.Errorf("waiting Admit after a Release: %v", err)
	}
	h.tr.Release()
}

func TestTreeCancelDrainAbortStop(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1 })
	g := newGate()
	running := h.enqueue(t, messages.Request{Call: g})
	recvValue(t, g.started, "call start")
	queued := h.enqueue(t, messages.Request{Call: okCall("q")})
	h.sink.WaitStatus(t, queued, messages.StatusQueued, 1)

	cause := errors.New("not wanted any more")
	h.tr.Cancel(queued, cause)
	if ev := h.sink.WaitEnd(t, queued); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), cause) {
		t.Errorf("cancelled request ended %v with %v, want CANCELLED with the cause", ev.Status, ev.Err())
	}
	h.tr.Cancel(uuid.New(), nil) // unknown: left alone

	drained := h.tr.Drain()
	if isClosed(drained) {
		t.Fatal("drained with a call running")
	}
	abortErr := errors.New("shutting down")
	waitClosed(t, h.tr.Abort(abortErr), "Abort")
	if ev := h.sink.WaitEnd(t, running); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), abortErr) {
		t.Errorf("running request ended %v with %v, want CANCELLED with the abort's error", ev.Status, ev.Err())
	}
	waitClosed(t, drained, "drain once the abort ended everything")
	h.tr.Stop()
	waitClosed(t, h.tr.Stopped(), "Stopped")
}

func TestTreePause(t *testing.T) {
	h := startTree(t, noLimits, nil)
	until := time.Now().Add(200 * time.Millisecond)
	h.tr.Pause(until)
	id := h.enqueue(t, messages.Request{Call: okCall("x")})
	if ev := h.sink.WaitStatus(t, id, messages.StatusCalling, 1); ev.Timings().CallStarted.Before(until) {
		t.Errorf("call started %v before the pause's end", until.Sub(ev.Timings().CallStarted))
	}
	h.sink.WaitEnd(t, id)
	if p := h.tr.Stats().PausedUntil; !p.IsZero() {
		t.Errorf("Stats.PausedUntil = %v after the pause, want zero", p)
	}
}

// Enqueue publishes QUEUED itself, before the queue has the request: a
// request handed to a tree that stopped has its QUEUED snapshot all the
// same, and the runtime ends it and accounts for it with Dropped.
func TestTreeEnqueuePublishesQueuedItself(t *testing.T) {
	h := startTree(t, noLimits, nil)
	h.tr.Stop()
	waitClosed(t, h.tr.Stopped(), "Stopped")

	r := messages.Request{Call: okCall("late")}
	if err := h.tr.Admit(context.Background(), false, nil); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	lc := messages.NewLifecycle(id, &r, time.Now())
	pending := lc.Pending(time.Now())
	h.obs.Publish(pending)
	h.sink.Publish(pending)
	h.tr.Enqueue(id, lc, r, h.sink, context.Background())
	wantStatuses(t, "sink when Enqueue returned", h.sink.Of(id), messages.StatusPending, messages.StatusQueued)
	wantStatuses(t, "observer when Enqueue returned", h.obs.Of(id), messages.StatusPending, messages.StatusQueued)
	if s := h.tr.Stats(); s.Accepted != 1 || s.Queued != 1 {
		t.Errorf("Stats after Enqueue: accepted %d queued %d, want 1 1", s.Accepted, s.Queued)
	}

	// The queue never read it: the runtime ends it.
	status, err := h.tr.Dropped()
	if status != messages.StatusCancelled || !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Dropped says end it %v with %v, want CANCELLED with ErrStopped", status, err)
	}
	ev := lc.Cancel(time.Now(), err)
	h.obs.Publish(ev)
	h.sink.Publish(ev)
	if s := h.tr.Stats(); s.Queued != 0 || s.Cancelled != 1 {
		t.Errorf("Stats after Dropped: queued %d cancelled %d, want 0 1", s.Queued, s.Cancelled)
	}
	if n := h.cfg.admission.Len(); n != 0 {
		t.Errorf("admission holds %d slots after Dropped, want 0", n)
	}
}

// The queue hands each call to the worker its caller last announced, with
// a context cancelled by that worker's stop; a callerReady from a caller
// busy with a call changes nothing.
func TestQueueHandsCallsToTheAnnouncedWorker(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: rate.Inf}, func(c *Config) { c.Concurrency = 1 })
	caller := h.tree.Callers[0]
	// Once a call has run, the queue has the caller's own worker.
	first := h.enqueue(t, messages.Request{Call: okCall("first")})
	h.sink.WaitEnd(t, first)
	work := make(chan job, 1)
	stop, stopWorker := context.WithCancelCause(context.Background())
	defer stopWorker(nil)
	// As from the caller restarted: the queue takes the new worker in
	// place of the old.
	h.sys.Root.Send(h.tree.Queue, &callerReady{caller: caller, work: work, stop: stop})
	h.settle(t)

	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	id := h.enqueueCtx(t, ctx, messages.Request{Call: okCall("x"), Timeout: time.Hour})
	j := recvValue(t, work, "job at the announced worker")
	if j.attempt != 1 || j.timeout != time.Hour || j.ctx.Value(ctxKey{}) != "v" {
		t.Errorf("job attempt %d timeout %v value %v, want 1, 1h, the submitter's", j.attempt, j.timeout, j.ctx.Value(ctxKey{}))
	}
	// Busy: another announcement is ignored; the caller does not count
	// as idle twice, and the next request waits for it.
	other := make(chan job, 1)
	h.sys.Root.Send(h.tree.Queue, &callerReady{caller: caller, work: other, stop: context.Background()})
	next := h.enqueue(t, messages.Request{Call: okCall("y")})
	h.settle(t)
	if len(other) != 0 {
		t.Fatal("a call went to the worker announced while the caller was busy")
	}
	if evs := h.sink.Of(next); evs[len(evs)-1].Status != messages.StatusQueued {
		t.Fatalf("with the only caller busy, the next request is %v, want QUEUED", evs[len(evs)-1].Status)
	}

	// The worker's stop cuts the call short.
	stopWorker(messages.ErrStopped)
	<-j.ctx.Done()
	if cause := context.Cause(j.ctx); cause != messages.ErrStopped {
		t.Errorf("call context cause %v, want the worker's stop", cause)
	}
	j.cancel(nil)
	h.sys.Root.Send(h.tree.Queue, &callDone{caller: caller, ticket: j.ticket, err: messages.ErrStopped, stopped: true})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
		t.Errorf("request ended %v with %v, want CANCELLED ErrStopped", ev.Status, ev.Err())
	}
	// Idle again: the next call goes to the worker announced before the
	// busy spell.
	j = recvValue(t, work, "next job at the announced worker")
	h.sys.Root.Send(h.tree.Queue, &callDone{caller: caller, ticket: j.ticket, result: messages.Result{StatusCode: 200}})
	if ev := h.sink.WaitEnd(t, next); ev.Status != messages.StatusCompleted {
		t.Errorf("next request ended %v (%v)", ev.Status, ev.Err())
	}
	if len(other) != 0 {
		t.Error("a call went to the worker announced while the caller was busy")
	}
	j.cancel(nil)
}

// A head that ends while the queue's ask for it is out must not leave its
// ask behind: a denial of that ask must not fail the next request, which
// fits, and what was reserved for it must not hold the next one up.
func TestQueueAsksAgainWhenItsHeadEnds(t *testing.T) {
	t.Run("denial of a gone head", func(t *testing.T) {
		h := startTree(t, tokensOnly(1, 100), func(c *Config) { c.Concurrency = 3 })
		g := newGate()
		x := h.enqueue(t, messages.Request{Call: g, Tokens: 100})
		recvValue(t, g.started, "first call start") // the bucket is empty
		a := h.enqueue(t, messages.Request{Call: okCall("a"), Tokens: 100})
		h.sink.WaitStatus(t, a, messages.StatusProcessing, 1)
		b := h.enqueue(t, messages.Request{Call: okCall("b"), Tokens: 10})
		h.sink.WaitStatus(t, b, messages.StatusProcessing, 1)
		h.tr.Cancel(a, nil)
		h.tr.SetLimits(tokensOnly(1000, 50)) // b still fits; a would not have
		if ev := h.sink.WaitEnd(t, b); ev.Status != messages.StatusCompleted {
			t.Errorf("b ended %v with %v, want COMPLETED", ev.Status, ev.Err())
		}
		close(g.release)
		h.sink.WaitEnd(t, x)
	})
	t.Run("reservation of a gone head", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := startTree(t, tokensOnly(1, 100), func(c *Config) { c.Concurrency = 3 })
			start := time.Now()
			first := h.enqueue(t, messages.Request{Call: okCall("first"), Tokens: 100}) // empties the bucket
			h.sink.WaitEnd(t, first)
			a := h.enqueue(t, messages.Request{Call: okCall("a"), Tokens: 100}) // due at 100 s
			h.sink.WaitStatus(t, a, messages.StatusProcessing, 1)
			b := h.enqueue(t, messages.Request{Call: okCall("b"), Tokens: 10})
			h.sink.WaitStatus(t, b, messages.StatusProcessing, 1)
			h.tr.Cancel(a, nil)
			time.Sleep(20 * time.Second) // in the bubble's time: at once
			synctest.Wait()
			evs := h.sink.Of(b)
			if ev := evs[len(evs)-1]; ev.Status != messages.StatusCompleted {
				t.Fatalf("b is %v 20s after the bucket was emptied: the cancelled head's reservation (due at 100s) holds it up", ev.Status)
			} else if d := ev.Timings().CallStarted.Sub(start); d != 10*time.Second {
				t.Errorf("b (10 tokens at 1/s) started %v after the bucket was emptied, want 10s", d)
			}
		})
	})
}

// A request that raced a restart storm, and that the stopped tree never
// ran, ends FAILED with the storm's error, as every request the storm
// caught does, not CANCELLED as by a stop: whether the queue closed under
// its hand-off or never read it.
func TestTreeRequestThatRacedAStormFailsWithIt(t *testing.T) {
	h := startTree(t, noLimits, nil)
	storm := messages.ErrRestartStorm
	h.cfg.fatal.Store(&storm)
	// The queue has closed (the storm's abort) but still reads its mailbox.
	done := make(chan struct{})
	h.sys.Root.Send(h.tree.Queue, &abortQueue{Err: storm, Fail: true, Done: done})
	waitClosed(t, done, "abort")
	r := messages.Request{Call: okCall("late")}
	if err := h.tr.Admit(context.Background(), false, nil); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	lc := messages.NewLifecycle(id, &r, time.Now())
	pending := lc.Pending(time.Now())
	h.obs.Publish(pending)
	h.sink.Publish(pending)
	h.tr.Enqueue(id, lc, r, h.sink, context.Background())
	if ev := h.obs.WaitEnd(t, id); ev.Status != messages.StatusFailed || !errors.Is(ev.Err(), messages.ErrRestartStorm) {
		t.Errorf("a request enqueued after the storm's abort ended %v (%v), want FAILED with ErrRestartStorm", ev.Status, ev.Err())
	}
	// One the queue never read: Dropped says the same.
	if err := h.tr.Admit(context.Background(), false, nil); err != nil {
		t.Fatal(err)
	}
	h.cfg.counters.queued.Add(1)
	if status, err := h.tr.Dropped(); status != messages.StatusFailed || !errors.Is(err, messages.ErrRestartStorm) {
		t.Errorf("Dropped after a storm says %v with %v, want FAILED with ErrRestartStorm", status, err)
	}
	if s := h.tr.Stats(); s.Failed != 2 || s.Cancelled != 0 {
		t.Errorf("Stats: %d failed, %d cancelled; want 2 failed", s.Failed, s.Cancelled)
	}
}
