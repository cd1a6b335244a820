package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

var (
	flow = []messages.RequestStatus{
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling,
	}
	errTransient = errors.New("transient failure")
)

func wantStatuses(t *testing.T, what string, evs []messages.Event, want ...messages.RequestStatus) {
	t.Helper()
	if got := statuses(evs); !slices.Equal(got, want) {
		t.Errorf("%s: statuses %v, want %v", what, got, want)
	}
}

func withFlow(end ...messages.RequestStatus) []messages.RequestStatus {
	return append(slices.Clone(flow), end...)
}

func TestTreeRunsARequestThroughEveryState(t *testing.T) {
	h := startTree(t, noLimits, nil)
	g := newGate()
	ctx := context.WithValue(context.Background(), ctxKey{}, "from the submitter")
	id := h.enqueueCtx(t, ctx, messages.Request{Call: g, Metadata: map[string]string{"k": "v"}})
	calling := h.sink.WaitStatus(t, id, messages.StatusCalling, 1)
	if calling.Attempt != 1 || calling.Timings().CallStarted.IsZero() {
		t.Errorf("CALLING snapshot: attempt %d, call started %v", calling.Attempt, calling.Timings().CallStarted)
	}
	if v := recvValue(t, g.values, "call value"); v != "from the submitter" {
		t.Errorf("call context value = %v, want the Enqueue context's", v)
	}
	if s := h.stats(t); s.InFlight != 1 || s.Queued != 0 {
		t.Errorf("while calling: in flight %d queued %d, want 1 0", s.InFlight, s.Queued)
	}
	g.release <- outcome{res: messages.Result{StatusCode: 200, Body: []byte("hello")}}
	ev := h.sink.WaitEnd(t, id)
	if ev.Status != messages.StatusCompleted {
		t.Fatalf("ended %v (%v), want COMPLETED", ev.Status, ev.Err())
	}
	if resp, ok := ev.Response(); !ok || string(resp.Body) != "hello" || resp.StatusCode != 200 {
		t.Errorf("response %+v, want 200 hello", resp)
	}
	if ev.Metadata()["k"] != "v" {
		t.Errorf("metadata %v lost", ev.Metadata())
	}
	wantStatuses(t, "sink", h.sink.Of(id), withFlow(messages.StatusCompleted)...)
	wantStatuses(t, "observer", h.obs.Of(id), withFlow(messages.StatusCompleted)...)

	s := h.stats(t)
	if s.Completed != 1 || s.Accepted != 1 || s.Queued != 0 || s.InFlight != 0 || s.Failed != 0 {
		t.Errorf("stats %+v, want one accepted and completed", s)
	}
	if !math.IsInf(s.RequestsAvailable, 1) || s.TokensAvailable != -1 {
		t.Errorf("stats budgets %v %v, want +Inf and -1 without limits", s.RequestsAvailable, s.TokensAvailable)
	}
	if n := h.cfg.admission.Len(); n != 0 {
		t.Errorf("admission holds %d slots, want 0", n)
	}
}

func TestTreeConcurrencyCapAndFIFO(t *testing.T) {
	h := startTree(t, noLimits, nil) // two callers
	gates := make([]*gate, 5)
	ids := make([]uuid.UUID, 5)
	for i := range gates {
		gates[i] = newGate()
		ids[i] = h.enqueue(t, messages.Request{Call: gates[i]})
	}
	h.sink.WaitStatus(t, ids[0], messages.StatusCalling, 1)
	h.sink.WaitStatus(t, ids[1], messages.StatusCalling, 1)
	for _, id := range ids[2:] {
		h.sink.WaitStatus(t, id, messages.StatusQueued, 1)
	}
	if s := h.stats(t); s.InFlight != 2 || s.Queued != 3 {
		t.Fatalf("stats in flight %d queued %d, want 2 3", s.InFlight, s.Queued)
	}
	for _, id := range ids[2:] {
		if evs := h.sink.Of(id); evs[len(evs)-1].Status != messages.StatusQueued {
			t.Fatalf("request %s is %v while both callers are busy", id, evs[len(evs)-1].Status)
		}
	}
	// Each release lets the oldest queued request in.
	for i := range gates {
		gates[i].release <- outcome{}
		h.sink.WaitEnd(t, ids[i])
		if next := i + 2; next < len(ids) {
			h.sink.WaitStatus(t, ids[next], messages.StatusCalling, 1)
			for _, later := range ids[next+1:] {
				if evs := h.sink.Of(later); evs[len(evs)-1].Status != messages.StatusQueued {
					t.Errorf("request %d started before request %d", slices.Index(ids, later), next)
				}
			}
		}
	}
}

func TestTreeSubmitByMessage(t *testing.T) {
	h := startTree(t, noLimits, nil)
	p := spawnProbe(t, h.sys)

	id := uuid.New()
	p.request(h.sys, h.tree.Supervisor, &messages.Submit{ID: id, Request: messages.Request{Call: okCall("by message")}})
	var evs []messages.Event
	for len(evs) == 0 || !evs[len(evs)-1].Status.Terminal() {
		ev, _ := expect[messages.Event](t, p)
		if ev.ID != id || ev.Seq != uint64(len(evs)+1) {
			t.Fatalf("event %v id %s seq %d, want id %s seq %d", ev.Status, ev.ID, ev.Seq, id, len(evs)+1)
		}
		evs = append(evs, ev)
	}
	wantStatuses(t, "submitter", evs, withFlow(messages.StatusCompleted)...)
	if resp, _ := evs[len(evs)-1].Response(); string(resp.Body) != "by message" {
		t.Errorf("response body %q", resp.Body)
	}

	// The zero ID asks the executor to choose one.
	p.request(h.sys, h.tree.Supervisor, &messages.Submit{Request: messages.Request{Call: okCall("x")}})
	first, _ := expect[messages.Event](t, p)
	if first.ID == uuid.Nil || first.Status != messages.StatusPending || first.Seq != 1 {
		t.Fatalf("first reply: id %s %v seq %d, want a fresh ID, PENDING, 1", first.ID, first.Status, first.Seq)
	}
	if ev := h.obs.WaitEnd(t, first.ID); ev.Status != messages.StatusCompleted {
		t.Fatalf("ended %v", ev.Status)
	}
	if s := h.stats(t); s.Accepted != 2 || s.Completed != 2 {
		t.Errorf("stats %+v, want 2 accepted and completed", s)
	}
}

func TestTreeSubmitRejections(t *testing.T) {
	lim := Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 100, TokenBurst: 50}
	h := startTree(t, lim, func(c *Config) { c.QueueCapacity = 1 })
	p := spawnProbe(t, h.sys)
	reject := func(what string, r messages.Request, want error) {
		t.Helper()
		id := uuid.New()
		p.request(h.sys, h.tree.Supervisor, &messages.Submit{ID: id, Request: r})
		m, _ := expect[*messages.Rejected](t, p)
		if m.ID != id || !errors.Is(m.Err, want) {
			t.Errorf("%s: Rejected{%s, %v}, want {%s, %v}", what, m.ID, m.Err, id, want)
		}
	}
	reject("no call", messages.Request{}, messages.ErrInvalidRequest)
	reject("negative tokens", messages.Request{Call: okCall("x"), Tokens: -1}, messages.ErrInvalidRequest)
	reject("tokens over the burst", messages.Request{Call: okCall("x"), Tokens: 51}, messages.ErrTokensExceedBurst)

	if !h.cfg.admission.TryAcquire() { // the queue's only slot
		t.Fatal("slot taken")
	}
	reject("full queue", messages.Request{Call: okCall("x")}, messages.ErrQueueFull)
	h.cfg.admission.Release()
	if s := h.stats(t); s.Rejected != 1 || s.Accepted != 0 {
		t.Errorf("stats rejected %d accepted %d, want 1 0 (only a full queue counts)", s.Rejected, s.Accepted)
	}
	published := h.obs.Len()
	if published != 0 {
		t.Errorf("rejected submits published snapshots of %d requests", published)
	}
}

func TestTreeCancel(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1 })
	g := newGate()
	running := h.enqueue(t, messages.Request{Call: g})
	h.sink.WaitStatus(t, running, messages.StatusCalling, 1)
	queued := h.enqueue(t, messages.Request{Call: okCall("q")})
	h.sink.WaitStatus(t, queued, messages.StatusQueued, 1)
	last := h.enqueue(t, messages.Request{Call: okCall("last")})
	h.sink.WaitStatus(t, last, messages.StatusQueued, 1)

	// Queued, without a cause: ErrCancelled.
	h.sys.Root.Send(h.tree.Supervisor, &messages.Cancel{ID: queued})
	ev := h.sink.WaitEnd(t, queued)
	if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrCancelled) {
		t.Errorf("queued request ended %v with %v, want CANCELLED ErrCancelled", ev.Status, ev.Err())
	}
	wantStatuses(t, "cancelled while queued", h.sink.Of(queued),
		messages.StatusPending, messages.StatusQueued, messages.StatusCancelled)

	// Calling, with a cause: the call's context gets it.
	cause := errors.New("user gave up")
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: running, Cause: cause})
	if got := recvValue(t, g.causes, "call cancelled"); got != cause {
		t.Errorf("call context cause %v, want %v", got, cause)
	}
	ev = h.sink.WaitEnd(t, running)
	if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), cause) {
		t.Errorf("running request ended %v with %v, want CANCELLED with the cause", ev.Status, ev.Err())
	}

	// The caller comes back once its call returned: the next one runs.
	if ev := h.sink.WaitEnd(t, last); ev.Status != messages.StatusCompleted {
		t.Errorf("request after the cancelled ones ended %v", ev.Status)
	}
	// Cancels of ended or unknown requests change nothing.
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: running})
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: uuid.New()})
	s := h.stats(t)
	if s.Cancelled != 2 || s.Completed != 1 || s.Queued != 0 || s.InFlight != 0 {
		t.Errorf("stats %+v, want 2 cancelled 1 completed", s)
	}
	if n := h.cfg.admission.Len(); n != 0 {
		t.Errorf("admission holds %d slots after cancels", n)
	}
}

func TestTreeCancelWhileAwaitingPermit(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: 0.01, RequestBurst: 1}, func(c *Config) { c.Concurrency = 1 })
	first := h.enqueue(t, messages.Request{Call: okCall("first")}) // takes the burst
	h.sink.WaitEnd(t, first)
	waiting := h.enqueue(t, messages.Request{Call: okCall("waiting")}) // due in 100 s
	h.sink.WaitStatus(t, waiting, messages.StatusProcessing, 1)
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: waiting})
	if ev := h.sink.WaitEnd(t, waiting); ev.Status != messages.StatusCancelled {
		t.Fatalf("ended %v, want CANCELLED", ev.Status)
	}
	wantStatuses(t, "cancelled awaiting its permit", h.sink.Of(waiting),
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCancelled)
	// A permit that crossed the cancel on its way finds nothing waiting:
	// it is given back, and nothing starts.
	h.sys.Root.Send(h.tree.Queue, &permitsGranted{requests: 1})
	if s := h.stats(t); s.InFlight != 0 || s.Cancelled != 1 {
		t.Errorf("stats in flight %d cancelled %d, want 0 1", s.InFlight, s.Cancelled)
	}
	// Its caller is free again: lift the limit and the next one runs.
	h.sys.Root.Send(h.tree.Supervisor, &SetLimits{Limits: noLimits})
	next := h.enqueue(t, messages.Request{Call: okCall("next")})
	if ev := h.sink.WaitEnd(t, next); ev.Status != messages.StatusCompleted {
		t.Errorf("next request ended %v", ev.Status)
	}
	wantStatuses(t, "cancelled, then granted", h.sink.Of(waiting),
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCancelled)
}

func TestTreeDrain(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		h := startTree(t, noLimits, nil)
		done := make(chan struct{})
		h.sys.Root.Send(h.tree.Queue, &drainQueue{Done: done})
		waitClosed(t, done, "drain of an idle queue")
	})

	t.Run("busy", func(t *testing.T) {
		h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1 })
		p := spawnProbe(t, h.sys)
		g := newGate()
		running := h.enqueue(t, messages.Request{Call: g})
		h.sink.WaitStatus(t, running, messages.StatusCalling, 1)
		queued := h.enqueue(t, messages.Request{Call: okCall("queued")})
		h.sink.WaitStatus(t, queued, messages.StatusQueued, 1)

		done1, done2 := make(chan struct{}), make(chan struct{})
		h.sys.Root.Send(h.tree.Queue, &drainQueue{Done: done1})
		h.sys.Root.Send(h.tree.Queue, &drainQueue{Done: done2})
		// Once draining, the queue refuses new submits; the reply also tells
		// that the drains were handled.
		p.request(h.sys, h.tree.Queue, &messages.Submit{Request: messages.Request{Call: okCall("late")}})
		if m, _ := expect[*messages.Rejected](t, p); !errors.Is(m.Err, messages.ErrStopped) {
			t.Fatalf("submit while draining: %v, want ErrStopped", m.Err)
		}
		if isClosed(done1) || isClosed(done2) {
			t.Fatal("drain done while requests were still live")
		}
		g.release <- outcome{}
		waitClosed(t, done1, "first drain")
		waitClosed(t, done2, "second drain")
		for _, id := range []uuid.UUID{running, queued} {
			if evs := h.sink.Of(id); evs[len(evs)-1].Status != messages.StatusCompleted {
				t.Errorf("request %s is %v when the drain ended, want COMPLETED", id, evs[len(evs)-1].Status)
			}
		}
	})
}

func TestTreeAbort(t *testing.T) {
	for _, fail := range []bool{false, true} {
		want := messages.StatusCancelled
		if fail {
			want = messages.StatusFailed
		}
		t.Run(want.String(), func(t *testing.T) {
			h := startTree(t, noLimits, func(c *Config) {
				c.Concurrency = 1
				c.MaxAttempts = 3
				c.Retry = retryFunc(func(int, error) (time.Duration, bool) { return time.Hour, true })
			})
			p := spawnProbe(t, h.sys)
			g := newGate()
			retrying := h.enqueue(t, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
				return messages.Result{}, errTransient
			})})
			h.sink.WaitStatus(t, retrying, messages.StatusQueued, 2) // waiting out its backoff
			running := h.enqueue(t, messages.Request{Call: g})
			h.sink.WaitStatus(t, running, messages.StatusCalling, 1)
			queued := h.enqueue(t, messages.Request{Call: okCall("q")})
			h.sink.WaitStatus(t, queued, messages.StatusQueued, 1)

			cause := errors.New("shutting down now")
			done := make(chan struct{})
			reply, err := h.sys.Root.RequestFuture(h.tree.Queue, &abortQueue{Err: cause, Fail: fail, Done: done}, waitLimit).Result()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := reply.(*abortDone); !ok {
				t.Errorf("reply to Abort %T, want *abortDone", reply)
			}
			if !isClosed(done) {
				t.Error("Abort answered before closing Done")
			}
			for _, id := range []uuid.UUID{retrying, running, queued} {
				evs := h.sink.Of(id)
				ev := evs[len(evs)-1]
				if ev.Status != want || !errors.Is(ev.Err(), cause) {
					t.Errorf("request %s ended %v with %v, want %v with the cause", id, ev.Status, ev.Err(), want)
				}
			}
			if got := recvValue(t, g.causes, "running call cancelled"); got != cause {
				t.Errorf("running call's context cause %v, want the abort's", got)
			}
			s := h.stats(t)
			if s.Queued != 0 || s.InFlight != 0 || s.Cancelled+s.Failed != 3 {
				t.Errorf("stats after abort %+v", s)
			}

			// Nothing is accepted after an abort.
			late := h.enqueue(t, messages.Request{Call: okCall("late")})
			ev := h.sink.WaitEnd(t, late)
			if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
				t.Errorf("Enqueue after abort ended %v with %v, want CANCELLED ErrStopped", ev.Status, ev.Err())
			}
			wantStatuses(t, "enqueued after abort", h.sink.Of(late), messages.StatusPending, messages.StatusQueued, messages.StatusCancelled)
			p.request(h.sys, h.tree.Supervisor, &messages.Submit{Request: messages.Request{Call: okCall("late")}})
			if m, _ := expect[*messages.Rejected](t, p); !errors.Is(m.Err, messages.ErrStopped) {
				t.Errorf("Submit after abort: %v, want ErrStopped", m.Err)
			}
		})
	}
}

func TestTreeAbortWithoutSender(t *testing.T) {
	h := startTree(t, noLimits, nil)
	done := make(chan struct{})
	h.sys.Root.Send(h.tree.Queue, &abortQueue{Err: messages.ErrStopped, Done: done})
	waitClosed(t, done, "abort of an idle queue")
	late := h.enqueue(t, messages.Request{Call: okCall("late")})
	if ev := h.sink.WaitEnd(t, late); ev.Status != messages.StatusCancelled {
		t.Errorf("Enqueue after abort ended %v", ev.Status)
	}
}

func TestTreeStopFromOutside(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1 })
	g := newGate()
	running := h.enqueue(t, messages.Request{Call: g})
	recvValue(t, g.started, "call start") // the caller holds it, not just its mailbox
	queued := h.enqueue(t, messages.Request{Call: okCall("q")})
	h.settle(t) // the queue holds it, not just its mailbox

	h.sys.Root.Stop(h.tree.Supervisor)
	waitClosed(t, h.cfg.stopped, "Stopped")
	for _, id := range []uuid.UUID{running, queued} {
		evs := h.sink.Of(id)
		if ev := evs[len(evs)-1]; ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
			t.Errorf("request %s ended %v with %v, want CANCELLED ErrStopped", id, ev.Status, ev.Err())
		}
	}
	if got := recvValue(t, g.causes, "running call cancelled"); got != messages.ErrStopped {
		t.Errorf("running call's context cause %v, want ErrStopped", got)
	}
	if s := h.cfg.counters.Stats(nil, time.Now()); s.Cancelled != 2 || s.Queued != 0 || s.InFlight != 0 {
		t.Errorf("stats after stop %+v", s)
	}
}

func TestTreeCallCutShortByItsCallersStopEndsCancelled(t *testing.T) {
	// When the tree stops, the callers may stop, cancel their calls and
	// report the calls' errors before the queue stops: such a request was
	// stopped, not failed, and is not retried.
	h := startTree(t, noLimits, func(c *Config) {
		c.Concurrency, c.MaxAttempts = 1, 3
		c.Retry = retryFunc(func(int, error) (time.Duration, bool) { return 0, true })
	})
	g := newGate()
	id := h.enqueue(t, messages.Request{Call: g})
	recvValue(t, g.started, "call start")
	h.sys.Root.Stop(h.tree.Callers[0])
	if cause := recvValue(t, g.causes, "call cancelled"); cause != messages.ErrStopped {
		t.Fatalf("call's context cause %v, want ErrStopped", cause)
	}
	ev := h.sink.WaitEnd(t, id)
	if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) || ev.Attempt != 1 {
		t.Errorf("request ended %v with %v after %d attempts, want CANCELLED ErrStopped after 1", ev.Status, ev.Err(), ev.Attempt)
	}
	if s := h.cfg.counters.Stats(nil, time.Now()); s.Cancelled != 1 || s.InFlight != 0 || s.Retries != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestTreeForwardsPauseUntil(t *testing.T) {
	h := startTree(t, noLimits, nil)
	until := time.Now().Add(300 * time.Millisecond)
	h.sys.Root.Send(h.tree.Supervisor, &PauseUntil{Until: until})
	h.stats(t) // the supervisor has forwarded the pause before it answers
	id := h.enqueue(t, messages.Request{Call: okCall("x")})
	if ev := h.sink.WaitStatus(t, id, messages.StatusCalling, 1); ev.Timings().CallStarted.Before(until) {
		t.Errorf("call started %v before the pause ended", until.Sub(ev.Timings().CallStarted))
	}
	h.sink.WaitEnd(t, id)
}

func TestTreeForwardsAdjustTokens(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 200, TokenBurst: 100}, nil)
	start := time.Now()
	h.sys.Root.Send(h.tree.Supervisor, &AdjustTokens{Delta: 100}) // empties the bucket
	h.stats(t)
	id := h.enqueue(t, messages.Request{Call: okCall("x"), Tokens: 50})
	// 50 tokens at 200/s: 250 ms after the bucket was emptied.
	if ev := h.sink.WaitStatus(t, id, messages.StatusCalling, 1); ev.Timings().CallStarted.Sub(start) < 250*time.Millisecond {
		t.Errorf("call started %v after the charge, before the bucket refilled (250ms)", ev.Timings().CallStarted.Sub(start))
	}
	h.sink.WaitEnd(t, id)
}

func TestTreeForwardsSetLimits(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: 0.01, RequestBurst: 1}, nil)
	first := h.enqueue(t, messages.Request{Call: okCall("first")}) // takes the burst
	h.sink.WaitEnd(t, first)
	start := time.Now()
	h.sys.Root.Send(h.tree.Supervisor, &SetLimits{Limits: Limits{RequestsPerSecond: 1000, RequestBurst: 1}})
	h.stats(t)
	id := h.enqueue(t, messages.Request{Call: okCall("second")})
	if ev := h.sink.WaitStatus(t, id, messages.StatusCalling, 1); ev.Timings().CallStarted.Sub(start) > 2*time.Second {
		t.Errorf("call started %v after raising the rate, want at once", ev.Timings().CallStarted.Sub(start))
	}
	h.sink.WaitEnd(t, id)
}

// failing returns a call that fails the first n attempts with err, then
// succeeds, and records each attempt number.
func failing(n int, err error, attempts chan<- int) messages.Call {
	return messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
		attempts <- attempt
		if attempt <= n {
			return messages.Result{StatusCode: 503}, err
		}
		return messages.Result{StatusCode: 200}, nil
	})
}

// policyCalls records what a retry policy was asked.
type policyCalls struct {
	mu    sync.Mutex
	asked []int
	delay time.Duration
	retry bool
}

func (p *policyCalls) Backoff(attempt int, err error) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if errors.Is(err, errTransient) {
		p.asked = append(p.asked, attempt)
	}
	return p.delay, p.retry
}

func (p *policyCalls) get() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

func TestTreeRetryAtOnce(t *testing.T) {
	policy := &policyCalls{retry: true}
	h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 3; c.Retry = policy })
	attempts := make(chan int, 8)
	id := h.enqueue(t, messages.Request{Call: failing(1, errTransient, attempts)})
	ev := h.sink.WaitEnd(t, id)
	if ev.Status != messages.StatusCompleted || ev.Attempt != 2 {
		t.Fatalf("ended %v at attempt %d, want COMPLETED at 2", ev.Status, ev.Attempt)
	}
	wantStatuses(t, "retried", h.sink.Of(id), append(withFlow(messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling), messages.StatusCompleted)...)
	if got := policy.get(); !slices.Equal(got, []int{1}) {
		t.Errorf("policy asked after attempts %v, want [1]", got)
	}
	if a, b := <-attempts, <-attempts; a != 1 || b != 2 {
		t.Errorf("call attempts %d %d, want 1 2", a, b)
	}
	if s := h.stats(t); s.Retries != 1 || s.Completed != 1 || s.Queued != 0 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestTreeRetryAfterDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 2; c.Retry = &policyCalls{retry: true, delay: delay} })
	attempts := make(chan int, 8)
	id := h.enqueue(t, messages.Request{Call: failing(1, errTransient, attempts)})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCompleted {
		t.Fatalf("ended %v", ev.Status)
	}
	retried := h.sink.WaitStatus(t, id, messages.StatusQueued, 2)
	second := h.sink.WaitStatus(t, id, messages.StatusCalling, 2)
	if d := second.Timings().CallStarted.Sub(retried.Timings().Queued); d < delay {
		t.Errorf("second attempt started %v after the retry was scheduled, want at least %v", d, delay)
	}
	if second.Attempt != 2 {
		t.Errorf("second CALLING has attempt %d", second.Attempt)
	}
}

func TestTreeRetryGivesUp(t *testing.T) {
	t.Run("executor's attempts", func(t *testing.T) {
		policy := &policyCalls{retry: true}
		h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 2; c.Retry = policy })
		attempts := make(chan int, 8)
		id := h.enqueue(t, messages.Request{Call: failing(10, errTransient, attempts)})
		ev := h.sink.WaitEnd(t, id)
		if ev.Status != messages.StatusFailed || ev.Attempt != 2 || !errors.Is(ev.Err(), errTransient) {
			t.Fatalf("ended %v at attempt %d with %v, want FAILED at 2 with the call's error", ev.Status, ev.Attempt, ev.Err())
		}
		if resp, ok := ev.Response(); !ok || resp.StatusCode != 503 {
			t.Errorf("failed snapshot response %+v, want the call's 503", resp)
		}
		if got := policy.get(); !slices.Equal(got, []int{1}) {
			t.Errorf("policy asked after attempts %v, want [1] (never after the last)", got)
		}
		if s := h.stats(t); s.Retries != 1 || s.Failed != 1 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("request's attempts and policy", func(t *testing.T) {
		policy := &policyCalls{retry: true}
		h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 1 })
		attempts := make(chan int, 8)
		id := h.enqueue(t, messages.Request{Call: failing(10, errTransient, attempts), MaxAttempts: 3, Retry: policy})
		if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusFailed || ev.Attempt != 3 {
			t.Fatalf("ended %v at attempt %d, want FAILED at 3", ev.Status, ev.Attempt)
		}
		if got := policy.get(); !slices.Equal(got, []int{1, 2}) {
			t.Errorf("policy asked after attempts %v, want [1 2]", got)
		}
	})

	t.Run("policy says no", func(t *testing.T) {
		policy := &policyCalls{retry: false}
		h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 5; c.Retry = policy })
		attempts := make(chan int, 8)
		id := h.enqueue(t, messages.Request{Call: failing(10, errTransient, attempts)})
		if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusFailed || ev.Attempt != 1 {
			t.Fatalf("ended %v at attempt %d, want FAILED at 1", ev.Status, ev.Attempt)
		}
		if s := h.stats(t); s.Retries != 0 {
			t.Errorf("retries %d, want 0", s.Retries)
		}
	})
}

func TestTreeCancelWhileWaitingToRetry(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.MaxAttempts = 3; c.Retry = &policyCalls{retry: true, delay: time.Hour} })
	attempts := make(chan int, 8)
	id := h.enqueue(t, messages.Request{Call: failing(10, errTransient, attempts)})
	h.sink.WaitStatus(t, id, messages.StatusQueued, 2)
	if s := h.stats(t); s.Queued != 1 || s.InFlight != 0 {
		t.Errorf("waiting to retry: queued %d in flight %d, want 1 0", s.Queued, s.InFlight)
	}
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: id})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCancelled {
		t.Fatalf("ended %v, want CANCELLED", ev.Status)
	}
	if s := h.stats(t); s.Queued != 0 || s.Cancelled != 1 {
		t.Errorf("stats %+v", s)
	}
}

type pauseErr struct{ until time.Time }

func (e pauseErr) Error() string         { return "429 rate limited" }
func (e pauseErr) PauseUntil() time.Time { return e.until }

func TestTreePauseErrorPausesTheLimiter(t *testing.T) {
	h := startTree(t, noLimits, nil)
	until := time.Now().Add(300 * time.Millisecond)
	limited := h.enqueue(t, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 429}, pauseErr{until: until}
	})})
	ev := h.sink.WaitEnd(t, limited)
	var pe pauseErr
	if ev.Status != messages.StatusFailed || !errors.As(ev.Err(), &pe) {
		t.Fatalf("ended %v with %v, want FAILED with the pause error", ev.Status, ev.Err())
	}
	// The queue sent the pause to the limiter before this request's ask.
	next := h.enqueue(t, messages.Request{Call: okCall("next")})
	if ev := h.sink.WaitStatus(t, next, messages.StatusCalling, 1); ev.Timings().CallStarted.Before(until) {
		t.Errorf("next call started %v before the pause ended", until.Sub(ev.Timings().CallStarted))
	}
	h.sink.WaitEnd(t, next)
}

func usageCall(u messages.Usage) messages.Call {
	return messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 200, Usage: &u}, nil
	})
}

func TestTreeReconcilesTokens(t *testing.T) {
	// 1 token/s: the refill during the test is a few tokens at most.
	h := startTree(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 1000}, nil)
	// settle runs a request after the one before: its ask reaches the
	// limiter after the adjustment the queue sent for the one before.
	settle := func() {
		t.Helper()
		h.sink.WaitEnd(t, h.enqueue(t, messages.Request{Call: okCall("barrier")}))
	}
	available := func() float64 { return h.cfg.buckets.TokensAvailable(time.Now()) }

	under := h.enqueue(t, messages.Request{Call: usageCall(messages.Usage{TotalTokens: 300}), Tokens: 100})
	ev := h.sink.WaitEnd(t, under)
	if ev.Tokens.Estimated != 100 || ev.Tokens.Actual != 300 || !ev.Tokens.HasActual {
		t.Errorf("tokens %+v, want estimated 100 actual 300", ev.Tokens)
	}
	settle()
	if got := available(); !near(got, 700, 3) {
		t.Errorf("after estimating 100 and using 300 of 1000: TokensAvailable %v, want about 700", got)
	}

	over := h.enqueue(t, messages.Request{Call: usageCall(messages.Usage{InputTokens: 10, OutputTokens: 20}), Tokens: 100})
	if ev := h.sink.WaitEnd(t, over); ev.Tokens.Actual != 30 {
		t.Errorf("actual tokens %d, want input+output 30", ev.Tokens.Actual)
	}
	settle()
	if got := available(); !near(got, 670, 3) {
		t.Errorf("after estimating 100 and using 30: TokensAvailable %v, want about 670", got)
	}
	if got := h.cfg.buckets.tokens.Credit(time.Now()); !near(got, 70, 1) {
		t.Errorf("credit %v, want the 70 refunded", got)
	}

	exact := h.enqueue(t, messages.Request{Call: usageCall(messages.Usage{TotalTokens: 50}), Tokens: 50})
	h.sink.WaitEnd(t, exact)
	settle()
	if got := available(); !near(got, 620, 3) {
		t.Errorf("after an exact estimate of 50: TokensAvailable %v, want about 620", got)
	}
}

func TestTreeCallTimeouts(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.CallTimeout = 30 * time.Millisecond })
	waits := messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		<-ctx.Done()
		return messages.Result{}, ctx.Err()
	})
	id := h.enqueue(t, messages.Request{Call: waits})
	ev := h.sink.WaitEnd(t, id)
	if ev.Status != messages.StatusFailed || !errors.Is(ev.Err(), messages.ErrTimeout) {
		t.Errorf("ended %v with %v, want FAILED ErrTimeout", ev.Status, ev.Err())
	}

	// A request's own timeout overrides the executor's.
	deadlines := make(chan time.Duration, 1)
	long := messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		d, _ := ctx.Deadline()
		deadlines <- time.Until(d)
		return messages.Result{}, nil
	})
	id = h.enqueue(t, messages.Request{Call: long, Timeout: time.Hour})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCompleted {
		t.Errorf("ended %v", ev.Status)
	}
	if d := recvValue(t, deadlines, "deadline"); d < 30*time.Minute {
		t.Errorf("call deadline in %v, want the request's hour", d)
	}
}

func TestTreePermitDenied(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100}, func(c *Config) { c.Concurrency = 1 })
	// Enqueue trusts its sender; a cost over the burst is refused by the
	// limiter, as when the burst was lowered after submit.
	id := h.enqueue(t, messages.Request{Call: okCall("big"), Tokens: 200})
	ev := h.sink.WaitEnd(t, id)
	var tle *messages.TokenLimitError
	if ev.Status != messages.StatusFailed || !errors.As(ev.Err(), &tle) || tle.Tokens != 200 || tle.Burst != 100 {
		t.Fatalf("ended %v with %v, want FAILED with TokenLimitError{200, 100}", ev.Status, ev.Err())
	}
	wantStatuses(t, "denied", h.sink.Of(id),
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusFailed)
	if s := h.stats(t); s.InFlight != 0 || s.Failed != 1 || s.Queued != 0 {
		t.Errorf("stats after a denied permit: %+v, want nothing in flight and one failed", s)
	}
	next := h.enqueue(t, messages.Request{Call: okCall("next"), Tokens: 10})
	if ev := h.sink.WaitEnd(t, next); ev.Status != messages.StatusCompleted {
		t.Errorf("request after the denied one ended %v", ev.Status)
	}
	if s := h.stats(t); s.InFlight != 0 {
		t.Errorf("in flight %d when idle", s.InFlight)
	}
}

func panicking(v any) messages.Call {
	return messages.CallFunc(func(context.Context, int) (messages.Result, error) { panic(v) })
}

func TestTreeCallerCrash(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1; c.MaxRestarts = 5 })
	id := h.enqueue(t, messages.Request{Call: panicking("boom")})
	ev := h.sink.WaitEnd(t, id)
	var cce *messages.CallerCrashError
	if ev.Status != messages.StatusFailed || !errors.As(ev.Err(), &cce) || cce.Panic != "boom" || !errors.Is(ev.Err(), messages.ErrCallerCrashed) {
		t.Fatalf("ended %v with %v, want FAILED with CallerCrashError{boom}", ev.Status, ev.Err())
	}
	// What a crash says is kept: the stack where the call panicked, in the
	// error and in the log.
	const where = "panicking" // the function that panicked (inlined into the test: its name is in the frame)
	if !strings.Contains(string(cce.Stack), where) {
		t.Errorf("CallerCrashError.Stack does not show where the call panicked (%s):\n%s", where, cce.Stack)
	}
	if !slices.ContainsFunc(h.logs.messages(), func(m string) bool { return strings.Contains(m, "caller crashed") && strings.Contains(m, where) }) {
		t.Errorf("the restart's log line has no stack: %q", h.logs.messages())
	}
	// The restarted caller serves the next request.
	next := h.enqueue(t, messages.Request{Call: okCall("after")})
	if ev := h.sink.WaitEnd(t, next); ev.Status != messages.StatusCompleted {
		t.Fatalf("request after the crash ended %v", ev.Status)
	}
	// A crash is retried like any failure.
	var once sync.Once
	retried := h.enqueue(t, messages.Request{
		MaxAttempts: 2,
		Retry:       retryFunc(func(int, error) (time.Duration, bool) { return 0, true }),
		Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			once.Do(func() { panic("first attempt") })
			return messages.Result{StatusCode: 200}, nil
		}),
	})
	if ev := h.sink.WaitEnd(t, retried); ev.Status != messages.StatusCompleted || ev.Attempt != 2 {
		t.Fatalf("crashed then retried: ended %v at attempt %d, want COMPLETED at 2", ev.Status, ev.Attempt)
	}
	if s := h.stats(t); s.Restarts != 2 || s.InFlight != 0 {
		t.Errorf("stats %+v, want 2 restarts", s)
	}
	if !slices.ContainsFunc(h.logs.messages(), func(m string) bool { return strings.Contains(m, "caller crashed; restarting") }) {
		t.Errorf("no restart logged: %q", h.logs.messages())
	}
	if err := h.tr.Err(); err != nil {
		t.Errorf("Err() = %v below the restart limit", err)
	}
}

func TestTreeCrashOfACancelledRequest(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1 })
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	id := h.enqueue(t, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		started <- struct{}{}
		<-release // ignores its context
		panic("late panic")
	})})
	recvValue(t, started, "call start")
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: id})
	if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCancelled {
		t.Fatalf("ended %v, want CANCELLED", ev.Status)
	}
	next := h.enqueue(t, messages.Request{Call: okCall("next")})
	h.sink.WaitStatus(t, next, messages.StatusQueued, 1)
	close(release) // the cancelled call now panics: nothing left to fail
	if ev := h.sink.WaitEnd(t, next); ev.Status != messages.StatusCompleted {
		t.Fatalf("next request ended %v", ev.Status)
	}
	wantStatuses(t, "cancelled, then its call panicked", h.sink.Of(id), withFlow(messages.StatusCancelled)...)
}

func TestTreeRestartStorm(t *testing.T) {
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1; c.MaxRestarts = 1 })
	first := h.enqueue(t, messages.Request{Call: panicking("one")})
	if ev := h.sink.WaitEnd(t, first); !errors.Is(ev.Err(), messages.ErrCallerCrashed) {
		t.Fatalf("first crash ended %v with %v", ev.Status, ev.Err())
	}
	release := make(chan struct{})
	second := h.enqueue(t, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		<-release
		panic("two")
	})})
	h.sink.WaitStatus(t, second, messages.StatusCalling, 1)
	queued := []uuid.UUID{
		h.enqueue(t, messages.Request{Call: okCall("a")}),
		h.enqueue(t, messages.Request{Call: okCall("b")}),
	}
	for _, id := range queued {
		h.sink.WaitStatus(t, id, messages.StatusQueued, 1)
	}
	close(release) // the second crash within the window is one too many

	waitClosed(t, h.cfg.stopped, "Stopped after a restart storm")
	if err := h.tr.Err(); !errors.Is(err, messages.ErrRestartStorm) {
		t.Errorf("Err() = %v, want ErrRestartStorm", err)
	}
	for _, id := range append([]uuid.UUID{second}, queued...) {
		evs := h.sink.Of(id)
		if ev := evs[len(evs)-1]; ev.Status != messages.StatusFailed || !errors.Is(ev.Err(), messages.ErrRestartStorm) {
			t.Errorf("request %s ended %v with %v, want FAILED ErrRestartStorm", id, ev.Status, ev.Err())
		}
	}
	if !slices.ContainsFunc(h.logs.messages(), func(m string) bool { return strings.Contains(m, "restart limit exceeded") }) {
		t.Errorf("storm not logged: %q", h.logs.messages())
	}
	if s := h.cfg.counters.Stats(nil, time.Now()); s.Restarts != 2 || s.Failed != 4 || s.InFlight != 0 || s.Queued != 0 {
		t.Errorf("stats after the storm %+v", s)
	}
}

func TestTreeRestartWindowForgetsOldCrashes(t *testing.T) {
	const window = 50 * time.Millisecond
	h := startTree(t, noLimits, func(c *Config) { c.Concurrency = 1; c.MaxRestarts = 1; c.RestartWindow = window })
	first := h.enqueue(t, messages.Request{Call: panicking("one")})
	crashed := h.sink.WaitEnd(t, first).Timings().Finished
	// The second crash comes after the window: it is the only one in it.
	second := h.enqueue(t, messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		<-time.After(time.Until(crashed.Add(2 * window)))
		panic("two")
	})})
	if ev := h.sink.WaitEnd(t, second); !errors.Is(ev.Err(), messages.ErrCallerCrashed) {
		t.Fatalf("second crash ended %v with %v, want a caller crash, not a storm", ev.Status, ev.Err())
	}
	after := h.enqueue(t, messages.Request{Call: okCall("still serving")})
	if ev := h.sink.WaitEnd(t, after); ev.Status != messages.StatusCompleted {
		t.Errorf("request after spaced crashes ended %v", ev.Status)
	}
	if isClosed(h.cfg.stopped) {
		t.Error("the tree stopped for crashes spread over more than the window")
	}
}

// panickySink panics the first time it is given a snapshot with status s.
type panickySink struct {
	once sync.Once
	s    messages.RequestStatus
}

func (p *panickySink) Publish(ev messages.Event) {
	if ev.Status == p.s {
		p.once.Do(func() { panic("sink bug") })
	}
}

func TestTreeQueueIsResumedAfterAPanic(t *testing.T) {
	h := startTree(t, noLimits, nil)
	r := messages.Request{Call: okCall("x")}
	if !h.cfg.admission.TryAcquire() {
		t.Fatal("no slot")
	}
	id := uuid.New()
	now := time.Now()
	lc := messages.NewLifecycle(id, &r, now)
	h.obs.Publish(lc.Pending(now))
	h.obs.Publish(lc.Queue(now, 1, ""))
	h.cfg.counters.queued.Add(1)
	e := &entry{id: id, lc: lc, work: workOf(&r), sink: &panickySink{s: messages.StatusProcessing}, holdsSlot: true, state: inQueue}
	h.sys.Root.Send(h.tree.Queue, e)
	// Handled after the queue was resumed; any message makes it dispatch.
	h.sys.Root.Send(h.tree.Queue, &messages.Cancel{ID: uuid.New()})
	if ev := h.obs.WaitEnd(t, id); ev.Status != messages.StatusCompleted {
		t.Fatalf("request whose sink panicked ended %v", ev.Status)
	}
	wantStatuses(t, "observer", h.obs.Of(id), withFlow(messages.StatusCompleted)...)
	if !slices.ContainsFunc(h.logs.messages(), func(m string) bool {
		return strings.Contains(m, "actor failed; resuming") && strings.Contains(m, h.tree.Queue.Id)
	}) {
		t.Errorf("queue failure not logged: %q", h.logs.messages())
	}
	if isClosed(h.cfg.stopped) {
		t.Error("the tree stopped after a panic in the queue")
	}
}

func TestDroppedSubmitsAreRejectedOnceTheActorStopped(t *testing.T) {
	sys := newSystem(t)
	p := spawnProbe(t, sys)
	_, d := mailboxOf()
	id := uuid.New()
	submit := &actor.MessageEnvelope{Message: &messages.Submit{ID: id}, Sender: p.pid}
	d.MessageReceived(submit) // the actor still runs: it handles the submit itself
	p.expectNone(t, 20*time.Millisecond)

	d.Stopped(sys.Root)
	d.MessageReceived(submit)
	if m, _ := expect[*messages.Rejected](t, p); m.ID != id || !errors.Is(m.Err, messages.ErrStopped) {
		t.Errorf("dropped submit answered %+v, want its ID with ErrStopped", m)
	}
	d.MessageReceived(&actor.MessageEnvelope{Message: &messages.Submit{}, Sender: p.pid})
	if m, _ := expect[*messages.Rejected](t, p); m.ID == uuid.Nil || !errors.Is(m.Err, messages.ErrStopped) {
		t.Errorf("dropped submit without an ID answered %+v, want a fresh ID with ErrStopped", m)
	}
	// Nothing to answer: no sender, or not a submit.
	d.MessageReceived(&messages.Submit{ID: id})
	d.MessageReceived(&actor.MessageEnvelope{Message: &messages.Cancel{ID: id}, Sender: p.pid})
	p.expectNone(t, 20*time.Millisecond)
}

func TestTreeNeverRevivesACallerThatFailsAsTheTreeStops(t *testing.T) {
	// A caller whose call panics while the tree stops reports its failure
	// to the supervisor, which may handle it after it sent the caller its
	// Stop. A restart then would make a new caller, with a worker goroutine
	// that nothing ends: the calls' WaitGroup (checked when each tree is
	// gone) never drains. The race is narrow: try it a number of times
	// (before the fix, 1 to 7 of 100 tries left a worker behind).
	for i := range 100 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			const n = 16 // the harness's queue capacity
			h := startTree(t, noLimits, func(c *Config) { c.Concurrency, c.MaxRestarts = n, 1000 })
			started, release := make(chan struct{}, n), make(chan struct{})
			boom := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
				started <- struct{}{}
				<-release
				panic("boom")
			})
			for range n {
				h.enqueue(t, messages.Request{Call: boom})
			}
			for range n {
				recvValue(t, started, "call start")
			}
			close(release)
			h.sys.Root.Stop(h.tree.Supervisor)
			waitClosed(t, h.cfg.stopped, "Stopped")
		})
	}
}

func TestTreeRevivedByALateRestartStaysStopped(t *testing.T) {
	// A parent's restart can reach the supervisor just after it stopped (the
	// sender resolved the PID before the stop removed it), and protoactor's
	// handleRestart makes a new incarnation even of a stopped actor. That
	// incarnation must not end the tree a second time, nor answer a submit
	// its mailbox already answers.
	var ends atomic.Int32
	h := startTree(t, noLimits, func(c *Config) { c.OnStopped = func(*Tree) { ends.Add(1) } })
	proc, ok := h.sys.ProcessRegistry.Get(h.tree.Supervisor)
	if !ok {
		t.Fatal("supervisor not registered")
	}
	h.sys.Root.Stop(h.tree.Supervisor)
	waitClosed(t, h.cfg.stopped, "Stopped")

	// What a late sender does: straight to the process it resolved.
	proc.SendSystemMessage(h.tree.Supervisor, &actor.Restart{})
	p := spawnProbe(t, h.sys)
	id := uuid.New()
	proc.SendUserMessage(h.tree.Supervisor, &actor.MessageEnvelope{Message: &messages.Submit{ID: id}, Sender: p.pid})
	if m, _ := expect[*messages.Rejected](t, p); m.ID != id || !errors.Is(m.Err, messages.ErrStopped) {
		t.Errorf("submit to the revived supervisor answered %+v", m)
	}
	p.expectNone(t, 50*time.Millisecond)
	if n := ends.Load(); n != 1 {
		t.Errorf("the tree ended %d times", n)
	}
}

// PermitDue reads when a permit could go at an instant it is given: at
// once from full buckets, after the refill the request or token bucket
// lacks, after a pause; it takes nothing, so asking twice says the same.
func TestTreePermitDue(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: 10, RequestBurst: 1, TokensPerSecond: 100, TokenBurst: 200}, nil)
	now := time.Now()
	if got := h.tr.PermitDue(150, now); !got.Equal(now) {
		t.Errorf("full buckets: due %v after now, want at once", got.Sub(now))
	}
	id := h.enqueue(t, messages.Request{Call: okCall("x"), Tokens: 150})
	h.sink.WaitEnd(t, id)
	now = time.Now()
	// One request a tenth of a second; 150 tokens taken of 200 at 100 a
	// second: 100 more tokens are 0.5 s of refill away, less what came
	// back since the call.
	req, tok := h.tr.PermitDue(0, now).Sub(now), h.tr.PermitDue(150, now).Sub(now)
	if req <= 0 || req > 100*time.Millisecond || tok <= 400*time.Millisecond || tok > time.Second {
		t.Errorf("after a request of 150 tokens: due in %v without tokens, %v with 150; want (0, 100ms] and (400ms, 1s]", req, tok)
	}
	if again := h.tr.PermitDue(150, now).Sub(now); again != tok {
		t.Errorf("asked again: due in %v, then %v", tok, again)
	}
	until := now.Add(5 * time.Second)
	h.sys.Root.Send(h.tree.Supervisor, &PauseUntil{Until: until})
	h.stats(t)
	runtimetest.WaitFor(t, waitLimit, "the pause to show", func() bool { return !h.tr.cfg.buckets.PausedUntil().IsZero() })
	if got := h.tr.PermitDue(0, now); !got.Equal(until) {
		t.Errorf("paused: due %v, want the pause's end %v", got, until)
	}
}

// With a shared budget the tree cannot see what the leases hold: a permit
// is due at once, or at the end of a pause.
func TestTreePermitDueWithSharedBudget(t *testing.T) {
	h := startTree(t, Limits{RequestsPerSecond: 1, RequestBurst: 1}, func(c *Config) {
		c.LeaseBroker = actor.PropsFromFunc(func(actor.Context) {})
	})
	h.tr.cfg.buckets.requests.Take(time.Now(), 1)
	now := time.Now()
	if got := h.tr.PermitDue(0, now); !got.Equal(now) {
		t.Errorf("leased: due %v after now, want at once", got.Sub(now))
	}
	until := now.Add(time.Minute)
	h.tr.cfg.buckets.pausedUntil.Store(until.UnixNano())
	if got := h.tr.PermitDue(0, now); !got.Equal(until) {
		t.Errorf("leased and paused: due %v, want %v", got, until)
	}
}
