package actors

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sourcegraph/conc/panics"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
)

// callerFixture is a caller that reports to a probe, spawned under a parent
// that records its failures and restarts it.
type callerFixture struct {
	sys      *actor.ActorSystem
	probe    *probe
	pid      *actor.PID
	calls    *sync.WaitGroup
	failures chan any
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
	f := &callerFixture{sys: sys, probe: spawnProbe(t, sys), calls: &sync.WaitGroup{}, failures: make(chan any, 8)}
	parent := &callerParent{
		props:    actor.PropsFromProducer(func() actor.Actor { return newCaller(f.probe.pid, f.calls) }),
		spawned:  make(chan *actor.PID, 1),
		failures: f.failures,
	}
	ppid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return parent }))
	t.Cleanup(func() { waitGroup(t, f.calls) }) // after the parent (and the caller) stopped
	stopActor(t, sys, ppid)
	f.pid = recvValue(t, parent.spawned, "caller spawned")
	f.ready(t)
	return f
}

// ready expects the caller's callerReady.
func (f *callerFixture) ready(t *testing.T) {
	t.Helper()
	m, _ := expect[*callerReady](t, f.probe)
	if m.caller.Id != f.pid.Id {
		t.Fatalf("callerReady from %s, want %s", m.caller.Id, f.pid.Id)
	}
}

func (f *callerFixture) start(ticket uint64, call messages.Call, timeout time.Duration, base context.Context) {
	f.sys.Root.Send(f.pid, &startCall{ticket: ticket, call: call, attempt: int(ticket), timeout: timeout, base: base})
}

// done expects the caller's callDone for ticket.
func (f *callerFixture) done(t *testing.T, ticket uint64) *callDone {
	t.Helper()
	m, _ := expect[*callDone](t, f.probe)
	if m.ticket != ticket || m.caller.Id != f.pid.Id {
		t.Fatalf("callDone for ticket %d from %s, want %d from %s", m.ticket, m.caller.Id, ticket, f.pid.Id)
	}
	return m
}

func TestCallerRunsACall(t *testing.T) {
	f := startCaller(t)
	attempts := make(chan int, 1)
	call := messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		attempts <- attempt
		return messages.Result{StatusCode: 201, Body: []byte("made")}, nil
	})
	f.start(3, call, 0, nil)
	m := f.done(t, 3)
	if m.err != nil || m.result.StatusCode != 201 || string(m.result.Body) != "made" {
		t.Fatalf("callDone result %+v err %v, want 201 made", m.result, m.err)
	}
	if got := recvValue(t, attempts, "attempt"); got != 3 {
		t.Errorf("call ran as attempt %d, want 3", got)
	}

	boom := errors.New("boom")
	f.start(4, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 500}, boom
	}), 0, nil)
	if m := f.done(t, 4); m.err != boom || m.result.StatusCode != 500 {
		t.Fatalf("callDone result %+v err %v, want 500 and the call's error", m.result, m.err)
	}
}

func TestCallerContextCarriesValuesNotCancellation(t *testing.T) {
	f := startCaller(t)
	g := newGate()
	base, cancelBase := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	f.start(1, g, 0, base)
	if v := recvValue(t, g.values, "call value"); v != "v" {
		t.Errorf("call context value = %v, want the base context's", v)
	}
	recvValue(t, g.started, "call start")
	cancelBase() // the base supplies values only
	select {
	case c := <-g.causes:
		t.Fatalf("call cancelled with %v when the base context was", c)
	case <-time.After(20 * time.Millisecond):
	}
	g.release <- outcome{res: messages.Result{StatusCode: 200}}
	if m := f.done(t, 1); m.err != nil {
		t.Fatalf("callDone err %v", m.err)
	}
}

func TestCallerCancelCall(t *testing.T) {
	f := startCaller(t)
	g := newGate()
	f.start(1, g, 0, nil)
	recvValue(t, g.started, "call start")
	cause := errors.New("cancelled by test")
	f.sys.Root.Send(f.pid, &cancelCall{ticket: 2, cause: errors.New("wrong ticket")}) // not the running call
	f.sys.Root.Send(f.pid, &cancelCall{ticket: 1, cause: cause})
	if got := recvValue(t, g.causes, "call cancelled"); got != cause {
		t.Fatalf("call context cause = %v, want %v", got, cause)
	}
	if m := f.done(t, 1); !errors.Is(m.err, cause) {
		t.Fatalf("callDone err %v, want the cancel's cause", m.err)
	}
}

func TestCallerTimeout(t *testing.T) {
	f := startCaller(t)

	// A call that returns its context's error gets the timeout wrapped in.
	f.start(1, messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		<-ctx.Done()
		return messages.Result{}, ctx.Err()
	}), 20*time.Millisecond, nil)
	m := f.done(t, 1)
	if !errors.Is(m.err, messages.ErrTimeout) || !errors.Is(m.err, context.DeadlineExceeded) {
		t.Fatalf("timed-out call: err %v, want ErrTimeout and DeadlineExceeded", m.err)
	}

	// One that returns the cause already says so.
	f.start(2, messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		<-ctx.Done()
		return messages.Result{}, context.Cause(ctx)
	}), 20*time.Millisecond, nil)
	if m := f.done(t, 2); m.err != messages.ErrTimeout {
		t.Fatalf("timed-out call returning the cause: err %v, want ErrTimeout as it is", m.err)
	}

	// A call that fails before its timeout is not called a timeout.
	boom := errors.New("boom")
	f.start(3, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{}, boom
	}), time.Hour, nil)
	if m := f.done(t, 3); m.err != boom {
		t.Fatalf("call failing before its timeout: err %v, want its own error", m.err)
	}
}

func TestCallerIgnoresUnknownFinish(t *testing.T) {
	f := startCaller(t)
	f.sys.Root.Send(f.pid, &callFinished{ticket: 99, panic: &panics.Recovered{Value: "stale"}}) // not its call: no crash
	f.start(1, okCall("x"), 0, nil)
	f.done(t, 1) // the stale finish produced nothing before it
	f.probe.expectNone(t, 20*time.Millisecond)
}

func TestCallerPanicRestartsIt(t *testing.T) {
	f := startCaller(t)
	f.start(1, messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		panic("kaboom")
	}), 0, nil)
	reason := recvValue(t, f.failures, "caller failure")
	cp, ok := reason.(*callPanic)
	if !ok || cp.Value != "kaboom" {
		t.Fatalf("failure reason %T %v, want *callPanic{kaboom}", reason, reason)
	}
	f.ready(t) // restarted: idle again
	f.start(2, okCall("again"), 0, nil)
	if m := f.done(t, 2); m.err != nil || string(m.result.Body) != "again" {
		t.Fatalf("after restart: callDone %+v", m)
	}
}

func TestCallerStopCancelsTheRunningCall(t *testing.T) {
	f := startCaller(t)
	g := newGate()
	f.start(1, g, 0, nil)
	recvValue(t, g.started, "call start")

	// The WaitGroup counts the running call's goroutine.
	waited := make(chan struct{})
	go func() { f.calls.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("WaitGroup empty while a call runs")
	case <-time.After(20 * time.Millisecond):
	}

	if err := f.sys.Root.StopFuture(f.pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := recvValue(t, g.causes, "call cancelled"); got != messages.ErrStopped {
		t.Fatalf("call context cause = %v, want ErrStopped", got)
	}
	waitClosed(t, waited, "call goroutine to end")
}
