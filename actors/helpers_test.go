package actors

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait for something a correct implementation does
// promptly; it only matters when a test is failing.
const waitLimit = 5 * time.Second

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newSystem returns a quiet actor system that is shut down when the test
// ends, after the cleanups registered later (which stop the test's actors).
func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	t.Cleanup(sys.Shutdown)
	return sys
}

// stopActor stops pid when the test ends and waits until it is gone.
func stopActor(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	t.Cleanup(func() {
		if err := sys.Root.StopFuture(pid).Wait(); err != nil {
			t.Errorf("stopping %s: %v", pid.Id, err)
		}
	})
}

// received is one message a probe got.
type received struct {
	msg    any
	sender *actor.PID
	at     time.Time
}

// probeRequest makes a probe send msg to target with itself as the sender.
type probeRequest struct {
	target *actor.PID
	msg    any
}

// probe is an actor standing in for the peers of the actor under test: it
// records every user message with its arrival time.
type probe struct {
	pid *actor.PID
	ch  chan received
}

func spawnProbe(t *testing.T, sys *actor.ActorSystem) *probe {
	t.Helper()
	p := &probe{ch: make(chan received, 4096)}
	p.pid = sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case actor.SystemMessage, actor.AutoReceiveMessage:
		case *probeRequest:
			ctx.Request(m.target, m.msg)
		default:
			p.ch <- received{msg: m, sender: ctx.Sender(), at: time.Now()}
		}
	}))
	stopActor(t, sys, p.pid)
	return p
}

// request makes the probe send msg to target, as its sender.
func (p *probe) request(sys *actor.ActorSystem, target *actor.PID, msg any) {
	sys.Root.Send(p.pid, &probeRequest{target: target, msg: msg})
}

func (p *probe) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-p.ch:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("probe: no message within %v", waitLimit)
		return received{}
	}
}

// expect returns the probe's next message, which must be a T.
func expect[T any](t *testing.T, p *probe) (T, received) {
	t.Helper()
	r := p.next(t)
	m, ok := r.msg.(T)
	if !ok {
		var zero T
		t.Fatalf("probe got %T %+v, want %T", r.msg, r.msg, zero)
	}
	return m, r
}

// expectNone fails if the probe gets a message within d. A correct
// implementation sends nothing at all; d only bounds how long we look.
func (p *probe) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-p.ch:
		t.Fatalf("probe got unexpected %T %+v", r.msg, r.msg)
	case <-time.After(d):
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s: not within %v", what, waitLimit)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitClosed(t, done, "call goroutines to end")
}

func recvValue[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("%s: nothing within %v", what, waitLimit)
		var zero T
		return zero
	}
}

// recorder is runtimetest's Recorder as a Sink too, for the requests a
// test hands to the tree itself.
type recorder struct{ *runtimetest.Recorder }

func newRecorder() recorder { return recorder{runtimetest.NewRecorder()} }

// Publish implements Sink.
func (r recorder) Publish(ev messages.Event) { r.Observe(ev) }

func statuses(evs []messages.Event) []messages.RequestStatus {
	out := make([]messages.RequestStatus, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

// outcome is what a gate's call returns when released.
type outcome struct {
	res messages.Result
	err error
}

// gate is a Call that blocks until released or until its context ends. It
// reports each attempt's start and, when its context ends, the cause.
type gate struct {
	started chan int
	release chan outcome
	causes  chan error
	values  chan any
}

type ctxKey struct{}

func newGate() *gate {
	return &gate{
		started: make(chan int, 64),
		release: make(chan outcome, 64),
		causes:  make(chan error, 64),
		values:  make(chan any, 64),
	}
}

func (g *gate) Do(ctx context.Context, attempt int) (messages.Result, error) {
	g.values <- ctx.Value(ctxKey{})
	g.started <- attempt
	select {
	case o := <-g.release:
		return o.res, o.err
	case <-ctx.Done():
		cause := context.Cause(ctx)
		g.causes <- cause
		return messages.Result{}, cause
	}
}

func okCall(body string) messages.Call {
	return messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 200, Body: []byte(body)}, nil
	})
}

// retryFunc adapts a function to messages.RetryPolicy.
type retryFunc func(attempt int, err error) (time.Duration, bool)

func (f retryFunc) Backoff(attempt int, err error) (time.Duration, bool) { return f(attempt, err) }

// logCapture is a slog handler that keeps the messages logged.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.Key + "=" + a.Value.Resolve().String()
		return true
	})
	l.msgs = append(l.msgs, msg)
	return nil
}

func (l *logCapture) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// harness is a whole tree spawned with Spawn, as the runtime does.
type harness struct {
	sys  *actor.ActorSystem
	tr   *Tree
	cfg  *config  // tr's shared state
	tree pids     // tr's actors
	obs  recorder // the Observer: every request's every snapshot
	sink recorder // the Sink of requests handed over with Enqueue
	logs *logCapture
}

// noLimits turns every limit off.
var noLimits = Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1}

func startTree(t *testing.T, lim Limits, edit func(*Config)) *harness {
	t.Helper()
	sys := newSystem(t)
	h := &harness{sys: sys, obs: newRecorder(), sink: newRecorder(), logs: &logCapture{}}
	cfg := Config{
		Concurrency:   2,
		QueueCapacity: 16,
		Limits:        lim,
		MaxAttempts:   1,
		MaxRestarts:   3,
		RestartWindow: time.Minute,
		Observer:      h.obs.Publish,
		Logger:        slog.New(h.logs),
	}
	if edit != nil {
		edit(&cfg)
	}
	tr, err := Spawn(sys.Root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tr, h.cfg, h.tree = tr, tr.cfg, tr.pids
	if h.tree.Queue == nil || h.tree.Limiter == nil || len(h.tree.Callers) != cfg.Concurrency {
		t.Fatalf("tree %+v", h.tree)
	}
	t.Cleanup(func() {
		if !isClosed(h.cfg.stopped) {
			tr.Stop()
		}
		waitClosed(t, h.cfg.stopped, "supervisor to stop")
		waitGroup(t, &h.cfg.calls)
		tr.Close()
		h.obs.Check(t)
		h.sink.Check(t)
		if n := h.cfg.admission.Len(); n != 0 {
			t.Errorf("%d admission slots still taken after stop", n)
		}
	})
	return h
}

// enqueue hands r to the queue the way the runtime does: a slot first, the
// PENDING snapshot published by the sender, then Enqueue.
func (h *harness) enqueue(t *testing.T, r messages.Request) uuid.UUID {
	t.Helper()
	return h.enqueueCtx(t, context.Background(), r)
}

func (h *harness) enqueueCtx(t *testing.T, ctx context.Context, r messages.Request) uuid.UUID {
	t.Helper()
	if err := h.tr.Admit(ctx, false, nil); err != nil {
		t.Fatalf("no admission slot free: %v", err)
	}
	id := uuid.New()
	now := time.Now()
	lc := messages.NewLifecycle(id, &r, now)
	pending := lc.Pending(now)
	h.obs.Publish(pending)
	h.sink.Publish(pending)
	h.tr.Enqueue(id, lc, r, h.sink, ctx)
	return id
}

// settle returns once the queue has handled every message sent to it
// before: it answers an invalid submit at once.
func (h *harness) settle(t *testing.T) {
	t.Helper()
	p := spawnProbe(t, h.sys)
	p.request(h.sys, h.tree.Queue, &messages.Submit{})
	expect[*messages.Rejected](t, p)
}

func (h *harness) stats(t *testing.T) messages.Stats {
	t.Helper()
	res, err := h.sys.Root.RequestFuture(h.tree.Supervisor, &messages.StatsQuery{}, waitLimit).Result()
	if err != nil {
		t.Fatalf("StatsQuery: %v", err)
	}
	s, ok := res.(messages.Stats)
	if !ok {
		t.Fatalf("StatsQuery answered %T", res)
	}
	return s
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }
