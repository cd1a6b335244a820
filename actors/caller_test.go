package actors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sourcegraph/conc/panics"

	"github.com/lionactor/lionactor/messages"
)

// callerFixture is a caller that reports to a probe standing in for the
// queue, spawned under a parent that records its failures and restarts it.
// The test hands its worker jobs as the queue does, through the channel of
// the caller's callerReady.
type callerFixture struct {
	sys      *actor.ActorSystem
	queue    *probe
	pid      *actor.PID
	calls    *sync.WaitGroup
	failures chan any
	ready    *callerReady // the latest
}

// callerParent spawns one caller and supervises it: it records each
// failure's reason and restarts the child.
type callerParent struct {
	props    *actor.Props
	spawned  chan *actor.PID
	failures chan any
}

func (p *callerParent) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		p.spawned <- ctx.Spawn(p.props)
	}
}

func (p *callerParent) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
	p.failures <- reason
	sup.RestartChildren(child)
}

func startCaller(t *testing.T) *callerFixture {
	t.Helper()
	sys := newSystem(t)
	f := &callerFixture{sys: sys, queue: spawnProbe(t, sys), calls: &sync.WaitGroup{}, failures: make(chan any, 8)}
	parent := &callerParent{
		props:    actor.PropsFromProducer(func() actor.Actor { return newCaller(f.queue.pid, f.calls) }),
		spawned:  make(chan *actor.PID, 1),
		failures: f.failures,
	}
	ppid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return parent }))
	t.Cleanup(func() { waitGroup(t, f.calls) }) // after the parent (and the caller) stopped
	stopActor(t, sys, ppid)
	f.pid = recvValue(t, parent.spawned, "caller spawned")
	f.expectReady(t)
	return f
}

// expectReady expects the caller's callerReady, and hands the next jobs to
// the worker it announces.
func (f *callerFixture) expectReady(t *testing.T) *callerReady {
	t.Helper()
	m, _ := expect[*callerReady](t, f.queue)
	if m.caller.Id != f.pid.Id || m.work == nil || m.stop == nil {
		t.Fatalf("callerReady %+v, want one from %s with a channel and a stop context", m, f.pid.Id)
	}
	if err := m.stop.Err(); err != nil {
		t.Fatalf("callerReady with its stop context done: %v", err)
	}
	f.ready = m
	return m
}

// run hands the worker a job, with a context made as the queue makes it,
// and returns the context's cancel, the queue's way to cut the call short.
func (f *callerFixture) run(ticket uint64, call messages.Call, timeout time.Duration, values context.Context) context.CancelCauseFunc {
	ctx, cancel := callContext(values, f.ready.stop, timeout)
	f.ready.work <- job{ticket: ticket, call: call, attempt: int(ticket), timeout: timeout, ctx: ctx, cancel: cancel}
	return cancel
}

// done expects the worker's callDone for ticket.
func (f *callerFixture) done(t *testing.T, ticket uint64) *callDone {
	t.Helper()
	m, _ := expect[*callDone](t, f.queue)
	if m.ticket != ticket || m.caller.Id != f.pid.Id {
		t.Fatalf("callDone for ticket %d from %s, want %d from %s", m.ticket, m.caller.Id, ticket, f.pid.Id)
	}
	return m
}

func TestCallerRunsJobs(t *testing.T) {
	f := startCaller(t)
	attempts := make(chan int, 1)
	f.run(3, messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		attempts <- attempt
		return messages.Result{StatusCode: 201, Body: []byte("made")}, nil
	}), 0, nil)
	m := f.done(t, 3)
	if m.err != nil || m.stopped || m.result.StatusCode != 201 || string(m.result.Body) != "made" {
		t.Fatalf("callDone %+v, want 201 made", m)
	}
	if got := recvValue(t, attempts, "attempt"); got != 3 {
		t.Errorf("call ran as attempt %d, want 3", got)
	}

	// The same worker takes the next job.
	boom := errors.New("boom")
	f.run(4, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 500}, boom
	}), 0, nil)
	if m := f.done(t, 4); m.err != boom || m.stopped || m.result.StatusCode != 500 {
		t.Fatalf("callDone %+v, want 500 and the call's error as it is", m)
	}
}

func TestCallerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startCaller(t)
		const timeout = 20 * time.Millisecond

		// A call that returns its context's error gets the timeout wrapped
		// in, with how long it was.
		var start, end time.Time
		start = time.Now()
		f.run(1, messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
			<-ctx.Done()
			end = time.Now()
			return messages.Result{}, ctx.Err()
		}), timeout, nil)
		m := f.done(t, 1)
		if !errors.Is(m.err, messages.ErrTimeout) || !errors.Is(m.err, context.DeadlineExceeded) || m.stopped {
			t.Fatalf("timed-out call: %+v, want ErrTimeout and DeadlineExceeded", m)
		}
		if !strings.Contains(m.err.Error(), "after 20ms") {
			t.Errorf("timed-out call: %q does not say after how long", m.err)
		}
		if got := end.Sub(start); got != timeout {
			t.Errorf("call context done after %v, want %v", got, timeout)
		}

		// One that returns the cause already says so.
		f.run(2, messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
			<-ctx.Done()
			return messages.Result{}, context.Cause(ctx)
		}), timeout, nil)
		if m := f.done(t, 2); m.err != messages.ErrTimeout {
			t.Fatalf("timed-out call returning the cause: err %v, want ErrTimeout as it is", m.err)
		}

		// A call that fails before its timeout is not called a timeout.
		boom := errors.New("boom")
		f.run(3, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			return messages.Result{}, boom
		}), time.Hour, nil)
		if m := f.done(t, 3); m.err != boom {
			t.Fatalf("call failing before its timeout: err %v, want its own error", m.err)
		}

		// Nor one that succeeds late, having ignored its context.
		f.run(4, messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
			<-ctx.Done()
			return messages.Result{StatusCode: 200}, nil
		}), timeout, nil)
		if m := f.done(t, 4); m.err != nil || m.result.StatusCode != 200 {
			t.Fatalf("call succeeding after its timeout: %+v, want its result", m)
		}
	})
}

func TestCallerCallCancelledByTheQueue(t *testing.T) {
	f := startCaller(t)
	g := newGate()
	cancel := f.run(1, g, time.Hour, nil)
	recvValue(t, g.started, "call start")
	cause := errors.New("cancelled by its submitter")
	cancel(cause)
	if got := recvValue(t, g.causes, "call cancelled"); got != cause {
		t.Fatalf("call context cause = %v, want %v", got, cause)
	}
	if m := f.done(t, 1); !errors.Is(m.err, cause) || errors.Is(m.err, messages.ErrTimeout) || m.stopped {
		t.Fatalf("callDone %+v, want the cancel's cause, not stopped", m)
	}
}

func TestCallerContextCarriesValuesNotCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startCaller(t)
		g := newGate()
		values, cancelValues := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		f.run(1, g, 0, values)
		if v := recvValue(t, g.values, "call value"); v != "v" {
			t.Errorf("call context value = %v, want the submitter's", v)
		}
		recvValue(t, g.started, "call start")
		cancelValues() // the submitter's context supplies values only
		synctest.Wait()
		select {
		case c := <-g.causes:
			t.Fatalf("call cancelled with %v when the submitter's context was", c)
		default:
		}
		g.release <- outcome{res: messages.Result{StatusCode: 200}}
		if m := f.done(t, 1); m.err != nil {
			t.Fatalf("callDone err %v", m.err)
		}
	})
}

func TestCallerStopCutsItsCallShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startCaller(t)
		g := newGate()
		f.run(1, g, 0, nil)
		recvValue(t, g.started, "call start")

		// The WaitGroup counts the worker while its caller lives.
		waited := make(chan struct{})
		go func() { f.calls.Wait(); close(waited) }()
		synctest.Wait()
		if isClosed(waited) {
			t.Fatal("WaitGroup empty while the caller lives")
		}

		if err := f.sys.Root.StopFuture(f.pid).Wait(); err != nil {
			t.Fatal(err)
		}
		if got := recvValue(t, g.causes, "call cancelled"); got != messages.ErrStopped {
			t.Fatalf("call context cause = %v, want ErrStopped", got)
		}
		if m := f.done(t, 1); !m.stopped || !errors.Is(m.err, messages.ErrStopped) {
			t.Fatalf("callDone %+v, want stopped with ErrStopped", m)
		}
		if cause := context.Cause(f.ready.stop); cause != messages.ErrStopped {
			t.Errorf("the announced stop context's cause = %v, want ErrStopped", cause)
		}
		waitClosed(t, waited, "worker to end")
	})
}

// explode panics; its name shows in the stack the caller keeps.
func explode() { panic("kaboom") }

func TestCallerPanicRestartsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startCaller(t)
		first := f.ready
		f.run(1, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			explode()
			return messages.Result{}, nil
		}), 0, nil)
		reason := recvValue(t, f.failures, "caller failure")
		cp, ok := reason.(*callPanic)
		if !ok || cp.Value != "kaboom" {
			t.Fatalf("failure reason %T %v, want *callPanic{kaboom}", reason, reason)
		}
		if !strings.Contains(string(cp.Stack), "actors.explode") {
			t.Errorf("the panic's stack does not show where it happened:\n%s", cp.Stack)
		}

		// Restarted: idle again, with a fresh worker; the old one's calls
		// are cut short.
		again := f.expectReady(t)
		if again.work == first.work {
			t.Error("restarted caller announced its old worker's channel")
		}
		if cause := context.Cause(first.stop); cause != messages.ErrStopped {
			t.Errorf("old incarnation's stop context cause = %v, want ErrStopped", cause)
		}
		f.run(2, okCall("again"), 0, nil)
		if m := f.done(t, 2); m.err != nil || string(m.result.Body) != "again" {
			t.Fatalf("after restart: callDone %+v", m)
		}

		// The old worker is gone: nothing reads its channel any more.
		ran := make(chan struct{}, 1)
		ctx, cancel := callContext(nil, first.stop, 0)
		first.work <- job{ticket: 3, call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			ran <- struct{}{}
			return messages.Result{}, nil
		}), ctx: ctx, cancel: cancel}
		quiet(t, f.queue)
		if len(ran) != 0 || len(f.failures) != 0 {
			t.Errorf("after the restart: old worker ran %d calls, %d more failures", len(ran), len(f.failures))
		}
		cancel(nil)
	})
}

func TestCallerIgnoresAStaleFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startCaller(t)
		// A panic reported by a worker of another incarnation: not this
		// one's call, no crash.
		f.sys.Root.Send(f.pid, &callFinished{ticket: 99, panic: &panics.Recovered{Value: "stale"}, worker: make(chan struct{})})
		f.sys.Root.Send(f.pid, &callFinished{ticket: 98})
		f.run(1, okCall("x"), 0, nil)
		f.done(t, 1)
		quiet(t, f.queue)
		if len(f.failures) != 0 {
			t.Errorf("caller failed %d times after a stale finish", len(f.failures))
		}
	})
}

func TestCallPanicLogsItsValueAndStack(t *testing.T) {
	p := &callPanic{panics.Recovered{Value: "kaboom", Stack: []byte("goroutine 1 [running]:\nmain.explode()")}}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Error("crash", slog.Any("reason", p))
	if got := b.String(); !strings.Contains(got, "reason.panic=kaboom") || !strings.Contains(got, "main.explode()") {
		t.Errorf("logged %q, want the panic's value and stack", got)
	}
}

func TestCallContext(t *testing.T) {
	errStop := errors.New("incarnation over")

	t.Run("values but not cancellation", func(t *testing.T) {
		values, cancelValues := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		cancelValues()
		ctx, cancel := callContext(values, context.Background(), 0)
		defer cancel(nil)
		if ctx.Value(ctxKey{}) != "v" || ctx.Err() != nil {
			t.Errorf("value %v err %v, want the submitter's value and not done", ctx.Value(ctxKey{}), ctx.Err())
		}
		if _, ok := ctx.Deadline(); ok {
			t.Error("a deadline without a timeout")
		}
	})

	t.Run("without values", func(t *testing.T) {
		ctx, cancel := callContext(nil, context.Background(), 0)
		if ctx.Err() != nil || ctx.Value(ctxKey{}) != nil {
			t.Fatalf("err %v value %v", ctx.Err(), ctx.Value(ctxKey{}))
		}
		cancel(errStop)
		if context.Cause(ctx) != errStop {
			t.Errorf("cause %v, want the cancel's", context.Cause(ctx))
		}
	})

	t.Run("the caller's stop, with its cause", func(t *testing.T) {
		stop, stopAll := context.WithCancelCause(context.Background())
		ctx, cancel := callContext(nil, stop, time.Hour)
		defer cancel(nil)
		stopAll(messages.ErrStopped)
		<-ctx.Done()
		if context.Cause(ctx) != messages.ErrStopped {
			t.Errorf("cause %v, want ErrStopped", context.Cause(ctx))
		}
	})

	t.Run("stopped already", func(t *testing.T) {
		stop, stopAll := context.WithCancelCause(context.Background())
		stopAll(errStop)
		ctx, cancel := callContext(nil, stop, 0)
		defer cancel(nil)
		<-ctx.Done()
		if context.Cause(ctx) != errStop {
			t.Errorf("cause %v, want the stop's", context.Cause(ctx))
		}
	})

	t.Run("cancelled first, the stop changes nothing", func(t *testing.T) {
		stop, stopAll := context.WithCancelCause(context.Background())
		ctx, cancel := callContext(nil, stop, time.Hour)
		cause := errors.New("cancelled")
		cancel(cause)
		stopAll(errStop)
		if context.Cause(ctx) != cause || !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("cause %v err %v, want the cancel's cause", context.Cause(ctx), ctx.Err())
		}
	})

	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			ctx, cancel := callContext(nil, context.Background(), 30*time.Millisecond)
			if d, ok := ctx.Deadline(); !ok || d != start.Add(30*time.Millisecond) {
				t.Errorf("deadline %v %v, want in 30ms", d.Sub(start), ok)
			}
			<-ctx.Done()
			if waited := time.Since(start); waited != 30*time.Millisecond {
				t.Errorf("done after %v, want 30ms", waited)
			}
			if context.Cause(ctx) != messages.ErrTimeout || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Errorf("cause %v err %v, want ErrTimeout and DeadlineExceeded", context.Cause(ctx), ctx.Err())
			}
			cancel(errStop) // too late to change the cause
			if context.Cause(ctx) != messages.ErrTimeout {
				t.Errorf("cause after a late cancel %v, want ErrTimeout", context.Cause(ctx))
			}
		})
	})
}
