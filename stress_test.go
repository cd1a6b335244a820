package lionactor_test

// A randomized test of the executor's central promise under concurrency:
// whatever is raced against what, every request accepted (by Submit or by
// message) ends exactly once, no caller stays held, and nothing is left
// running. Each seed draws a configuration and a schedule of operations
// for a few client goroutines and a stopper; the interleaving itself is
// the scheduler's, so a seed replays the same operations, not always the
// same race: run a failing seed many times.
//
//	LIONACTOR_STRESS_SEED=n   run seed n only (as printed by a failure)
//	LIONACTOR_STRESS_SEEDS=n  how many seeds (default 40)
//	LIONACTOR_STRESS_OPS=n    operations per seed, all clients together (default 300)
//	LIONACTOR_STRESS_FOR=d    after those, keep drawing seeds until d has passed
//
// For example, ten minutes of it:
//
//	LIONACTOR_STRESS_FOR=10m go test -race -run TestStress -timeout 0 -v .

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
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

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func TestStressEveryRequestEndsOnce(t *testing.T) {
	seeds := envInt(t, "LIONACTOR_STRESS_SEEDS", 40)
	ops := envInt(t, "LIONACTOR_STRESS_OPS", 300)
	var until time.Time
	if v := os.Getenv("LIONACTOR_STRESS_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LIONACTOR_STRESS_FOR=%q: %v", v, err)
		}
		until = time.Now().Add(d)
	}
	next := func(i int) uint64 { return rand.Uint64() } // fresh seeds unless one is given
	if v := os.Getenv("LIONACTOR_STRESS_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LIONACTOR_STRESS_SEED=%q: %v", v, err)
		}
		seeds, until = 1, time.Time{}
		next = func(int) uint64 { return seed }
	}
	var (
		tried, failed int
		sum           stressTotals
	)
	start := time.Now()
	for i := 0; i < seeds || time.Now().Before(until); i++ {
		seed := next(i)
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			sum.add(runStress(t, seed, ops))
			if t.Failed() {
				t.Logf("replay: LIONACTOR_STRESS_SEED=%d LIONACTOR_STRESS_OPS=%d go test -race -run 'TestStressEveryRequestEndsOnce' .", seed, ops)
			}
		})
		tried++
		if !ok {
			if failed++; failed == 5 {
				break
			}
		}
	}
	t.Logf("%d seeds in %v: %s", tried, time.Since(start).Round(time.Millisecond), &sum)
}

// stressTotals counts what the seeds did, to show what a run covered.
type stressTotals struct {
	ops, handles, messages int
	ends                   map[messages.RequestStatus]int
	stopped, storms        int
}

func (s *stressTotals) add(o stressTotals) {
	s.ops += o.ops
	s.handles += o.handles
	s.messages += o.messages
	s.stopped += o.stopped
	s.storms += o.storms
	if s.ends == nil {
		s.ends = map[messages.RequestStatus]int{}
	}
	for k, v := range o.ends {
		s.ends[k] += v
	}
}

func (s *stressTotals) String() string {
	return fmt.Sprintf("%d operations, %d handles, %d message submits, ends %v, %d stopped while running, %d restart storms",
		s.ops, s.handles, s.messages, s.ends, s.stopped, s.storms)
}

// stress is one seed's run.
type stress struct {
	t      *testing.T
	ex     *runtime.Executor
	cfg    runtime.Config
	root   *actor.RootContext // of the executor's system
	parent *actor.PID         // the executor's parent actor, if it has one
	// sibling is the executor's sibling under parent: when it fails, the
	// parent restarts both (all for one).
	sibling *actor.PID
	rec     *runtimetest.Recorder
	rep     *replies
	sink    *actor.PID // where message submits are answered

	mu      sync.Mutex
	handles []*runtime.Handle
	cancels []context.CancelFunc
	ids     []uuid.UUID // message submits sent

	sent    atomic.Int64  // message submits sent
	ops     atomic.Int64  // operations started, all clients together
	stopAt  int64         // the operation at which the stopper stops the executor
	stopNow chan struct{} // closed at that operation
	stopped atomic.Bool   // the stopper has begun
	ends    map[messages.RequestStatus]int
}

// The ways the executor runs.
const (
	ownSystem   = iota // runtime.Start
	underRoot          // runtime.Spawn(system.Root, …)
	underParent        // runtime.Spawn from a user actor's Started, all-for-one
)

func runStress(t *testing.T, seed uint64, total int) stressTotals {
	leaks := goleak.IgnoreCurrent()
	rng := rand.New(rand.NewPCG(seed, 0x11))
	s := &stress{t: t, rec: runtimetest.NewRecorder(), rep: newReplies(), stopNow: make(chan struct{})}
	s.cfg = stressConfig(rng, s.rec.Observe)
	mode := rng.IntN(3)
	defer func() {
		if t.Failed() {
			t.Logf("mode %d, %d operations, stop at %d, config %+v", mode, s.ops.Load(), s.stopAt, s.cfg)
		}
	}()

	var system *actor.ActorSystem
	switch mode {
	case ownSystem:
		ex, err := runtime.Start(s.cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.ex = ex
	case underRoot:
		system = quietSystem()
		ex, err := runtime.Spawn(system.Root, s.cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.ex = ex
	case underParent:
		system = quietSystem()
		got, sibling := make(chan *runtime.Executor, 1), make(chan *actor.PID, 1)
		s.parent = system.Root.Spawn(actor.PropsFromProducer(
			func() actor.Actor { return &restartingParent{cfg: s.cfg, got: got, sibling: sibling} },
			actor.WithSupervisor(actor.NewAllForOneStrategy(10, time.Minute, actor.DefaultDecider)),
		))
		s.ex, s.sibling = <-got, <-sibling
	}
	s.root = s.ex.System().Root
	s.sink = s.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return s.rep }))

	// Clients and a stopper, all drawing from their own generators.
	clients := 2 + rng.IntN(3)
	s.stopAt = int64(total/4 + rng.IntN(total*7/4)) // past the last: no stop while the clients run
	var wg sync.WaitGroup
	for c := range clients {
		crng := rand.New(rand.NewPCG(seed, uint64(c)+1))
		n := total / clients
		wg.Go(func() { s.client(crng, n) })
	}
	srng := rand.New(rand.NewPCG(seed, 0x5709))
	clientsDone := make(chan struct{})
	var stopper sync.WaitGroup
	stopper.Go(func() {
		select {
		case <-s.stopNow:
			s.stop(srng)
		case <-clientsDone:
		}
	})
	wg.Wait()
	close(clientsDone)
	stopper.Wait()

	// Late cancels, of everything, and the end.
	s.mu.Lock()
	for _, cancel := range s.cancels {
		cancel()
	}
	for _, id := range s.ids {
		s.root.Send(s.ex.PID(), &messages.Cancel{ID: id})
	}
	s.mu.Unlock()
	if s.running() {
		s.quiesce()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	if rng.IntN(2) == 0 {
		err = s.ex.Stop(ctx)
	} else {
		err = s.ex.StopNow(ctx)
	}
	if err != nil {
		t.Errorf("final stop: %v", err)
	}
	s.check()
	if s.parent != nil {
		_ = system.Root.StopFuture(s.parent).Wait()
	}
	_ = s.root.StopFuture(s.sink).Wait()
	if system != nil {
		system.Shutdown()
	}
	goleak.VerifyNone(t, leaks)
	out := stressTotals{ops: int(s.ops.Load()), handles: len(s.handles), messages: int(s.sent.Load()), ends: s.ends}
	if s.stopped.Load() {
		out.stopped = 1
	}
	if s.ex.Err() != nil {
		out.storms = 1
	}
	return out
}

// stressConfig draws a configuration small enough for every limit to bite.
func stressConfig(rng *rand.Rand, observe func(messages.Event)) runtime.Config {
	cfg := runtime.DefaultConfig()
	cfg.Observer = observe
	cfg.Logger = nil
	cfg.Concurrency = 1 + rng.IntN(4)
	cfg.QueueCapacity = 1 + rng.IntN(40)
	cfg.WaitForRoom = rng.IntN(3) == 0
	cfg.MaxAttempts = 1 + rng.IntN(3)
	cfg.Retry = runtime.Backoff{Initial: time.Duration(50+rng.IntN(1000)) * time.Microsecond, Max: 3 * time.Millisecond}
	cfg.MaxRestarts = rng.IntN(8)
	cfg.RestartWindow = time.Minute
	if rng.IntN(3) == 0 {
		cfg.CallTimeout = time.Duration(1+rng.IntN(20)) * time.Millisecond
	}
	cfg.RequestsPerInterval = runtime.Unlimited
	if rng.IntN(2) == 0 {
		cfg.RequestsPerInterval, cfg.RequestInterval, cfg.RequestBurst = 500+rng.IntN(5000), time.Second, 1+rng.IntN(5)
	}
	if rng.IntN(3) == 0 {
		cfg.TokensPerInterval, cfg.TokenInterval, cfg.TokenBurst = 20000+rng.IntN(100000), time.Second, 500+rng.IntN(2000)
	}
	return cfg
}

// running reports whether the executor has not been stopped, nor stopped
// itself after a restart storm.
func (s *stress) running() bool { return !s.stopped.Load() && s.ex.Err() == nil }

// request draws a request. Every call ends by itself within a few
// milliseconds, or when its context ends, which a timeout then guarantees.
func (s *stress) request(rng *rand.Rand) messages.Request {
	r := messages.Request{}
	if rng.IntN(4) == 0 {
		r.Tokens = rng.IntN(300)
	}
	switch k := rng.IntN(100); {
	case k < 25:
		r.Call = ok("")
	case k < 45:
		d := time.Duration(rng.IntN(2000)) * time.Microsecond
		r.Call = messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return messages.Result{StatusCode: 200}, nil
			case <-ctx.Done():
				return messages.Result{}, context.Cause(ctx)
			}
		})
	case k < 60:
		r.Call = waitCtx
		r.Timeout = time.Duration(1+rng.IntN(20)) * time.Millisecond
	case k < 72:
		fails := 1 + rng.IntN(3)
		r.Call = messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
			if attempt <= fails {
				return messages.Result{StatusCode: 503}, errors.New("transient")
			}
			return messages.Result{StatusCode: 200}, nil
		})
	case k < 80:
		always := rng.IntN(2) == 0
		r.Call = messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
			if always || attempt == 1 {
				panic("call panics")
			}
			return messages.Result{StatusCode: 200}, nil
		})
	case k < 86:
		pause := time.Duration(1+rng.IntN(3)) * time.Millisecond
		r.Call = messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			return messages.Result{StatusCode: 429}, pauseErr{time.Now().Add(pause)}
		})
	case k < 93:
		used := rng.IntN(400)
		r.Call = messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			return messages.Result{StatusCode: 200, Usage: &messages.Usage{TotalTokens: used}}, nil
		})
	default: // ignores its context for a moment
		d := time.Duration(rng.IntN(1000)) * time.Microsecond
		r.Call = messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			time.Sleep(d)
			return messages.Result{StatusCode: 200}, nil
		})
	}
	return r
}

func (s *stress) client(rng *rand.Rand, n int) {
	for range n {
		if s.ops.Add(1) == s.stopAt {
			close(s.stopNow)
		}
		switch k := rng.IntN(100); {
		case k < 40:
			s.submit(rng)
		case k < 55:
			id := uuid.New()
			s.mu.Lock()
			s.ids = append(s.ids, id)
			s.mu.Unlock()
			s.root.RequestWithCustomSender(s.ex.PID(), &messages.Submit{ID: id, Request: s.request(rng)}, s.sink)
			s.sent.Add(1)
		case k < 62:
			if h := pick(s, rng, &s.handles); h != nil {
				h.Cancel()
			}
		case k < 66:
			if id := pick(s, rng, &s.ids); id != uuid.Nil {
				s.root.Send(s.ex.PID(), &messages.Cancel{ID: id})
			}
		case k < 70:
			if cancel := pick(s, rng, &s.cancels); cancel != nil {
				cancel()
			}
		case k < 75:
			if err := s.ex.SetRequestRate(500+rng.IntN(5000), time.Second, rng.IntN(5)); err != nil {
				s.t.Errorf("SetRequestRate: %v", err)
			}
		case k < 78:
			if err := s.ex.SetRequestRate(runtime.Unlimited, time.Second, 0); err != nil {
				s.t.Errorf("SetRequestRate: %v", err)
			}
		case k < 82:
			n := 0
			if rng.IntN(3) > 0 {
				n = 20000 + rng.IntN(100000)
			}
			if err := s.ex.SetTokenRate(n, time.Second, 300+rng.IntN(2000)); err != nil {
				s.t.Errorf("SetTokenRate: %v", err)
			}
		case k < 86:
			s.ex.PauseUntil(time.Now().Add(time.Duration(rng.IntN(5000)) * time.Microsecond))
		case k < 88:
			s.ex.AdjustTokens(rng.IntN(200) - 100)
		case k < 92:
			if st := s.ex.Stats(); st.InFlight < 0 || st.InFlight > int64(s.cfg.Concurrency) || st.Queued < 0 {
				s.t.Errorf("stats out of bounds with %d callers: %+v", s.cfg.Concurrency, st)
			}
		case k < 96:
			if h := pick(s, rng, &s.handles); h != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				if ev, err := h.Wait(ctx); err == nil && !ev.Status.Terminal() {
					s.t.Errorf("Wait returned %v", ev.Status)
				}
				cancel()
			}
		default:
			goruntime.Gosched()
		}
	}
}

// pick returns a random element of *list (read under s.mu), or the zero value.
func pick[T any](s *stress, rng *rand.Rand, list *[]T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if len(*list) == 0 {
		return zero
	}
	return (*list)[rng.IntN(len(*list))]
}

// submit calls Submit with a context that is never cancelled, cancelled
// while Submit runs, just after, or later, or that has a short deadline.
func (s *stress) submit(rng *rand.Rand) {
	r := s.request(rng)
	how := rng.IntN(5)
	if how == 0 {
		s.accepted(s.ex.Submit(context.Background(), r))
		return
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if how == 4 {
		ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.IntN(3000))*time.Microsecond)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	switch how {
	case 1:
		go cancel() // races Submit
		s.accepted(s.ex.Submit(ctx, r))
	case 2:
		s.accepted(s.ex.Submit(ctx, r))
		cancel()
	default: // cancelled later, by a client or at the end
		s.accepted(s.ex.Submit(ctx, r))
		s.mu.Lock()
		s.cancels = append(s.cancels, cancel)
		s.mu.Unlock()
	}
}

// accepted keeps the handle of an accepted request, and checks that a
// refusal is one Submit documents.
func (s *stress) accepted(h *runtime.Handle, err error) {
	if err != nil {
		var tle *messages.TokenLimitError
		if !errors.Is(err, messages.ErrStopped) && !errors.Is(err, messages.ErrQueueFull) && !errors.As(err, &tle) &&
			!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			s.t.Errorf("Submit: %v", err)
		}
		return
	}
	s.mu.Lock()
	s.handles = append(s.handles, h)
	s.mu.Unlock()
}

// stop stops the executor one way, or two at once.
func (s *stress) stop(rng *rand.Rand) {
	s.stopped.Store(true)
	ways := 1 + rng.IntN(2)
	var wg sync.WaitGroup
	for range ways {
		way := rng.IntN(6)
		deadline := time.Duration(rng.IntN(30)) * time.Millisecond
		wg.Go(func() {
			switch {
			case way == 0: // graceful, maybe cut short by its deadline
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				if err := s.ex.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					s.t.Errorf("Stop: %v", err)
				}
			case way == 1:
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := s.ex.StopNow(ctx); err != nil {
					s.t.Errorf("StopNow: %v", err)
				}
			case way == 2 && s.parent != nil:
				s.root.Stop(s.parent)
			case way == 3 && s.parent != nil:
				_ = s.root.StopFuture(s.parent).Wait()
			case way == 4:
				// Stopped from outside, as by a supervisor or a poison pill.
				s.root.Stop(s.ex.PID())
			case way == 5 && s.sibling != nil:
				s.root.Send(s.sibling, "fail") // the parent restarts the executor
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := s.ex.Stop(ctx); err != nil {
					s.t.Errorf("Stop: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

// quiesce waits, with the executor still running, for every request to
// end by itself, and then checks that every caller is free: as many
// requests as callers all start.
func (s *stress) quiesce() {
	t := s.t
	deadline := time.Now().Add(20 * time.Second)
	s.mu.Lock()
	handles := slices.Clone(s.handles)
	s.mu.Unlock()
	for _, h := range handles {
		select {
		case <-h.Done():
		case <-time.After(time.Until(deadline)):
			t.Errorf("request %s never ended (%v) with the executor running", h.ID(), h.Latest().Status)
		}
	}
	if !s.running() {
		return // a restart storm stopped it meanwhile
	}
	s.rep.await(t, int(s.sent.Load()))
	if st := s.ex.Stats(); st.Queued != 0 || st.InFlight != 0 {
		t.Errorf("every request ended, and yet %+v", st)
	}
	// Every caller free: as many calls as callers run at once.
	_ = s.ex.SetRequestRate(runtime.Unlimited, time.Second, 0)
	_ = s.ex.SetTokenRate(0, time.Second, 0)
	b := runtimetest.NewBlocker()
	var probes []*runtime.Handle
	for len(probes) < s.cfg.Concurrency && s.running() && time.Now().Before(deadline) {
		h, err := s.ex.Submit(context.Background(), messages.Request{Call: b})
		switch {
		case errors.Is(err, messages.ErrQueueFull):
			goruntime.Gosched() // the queue's single slot is still being freed
		case err != nil:
			if !errors.Is(err, messages.ErrStopped) {
				t.Errorf("probe Submit: %v", err)
			}
		default:
			probes = append(probes, h)
		}
	}
	for range probes {
		select {
		case <-b.Started:
		case <-time.After(time.Until(deadline)):
			if s.running() {
				t.Errorf("only some of %d probes started: a caller is held (%+v)", len(probes), s.ex.Stats())
			}
		}
	}
	close(b.Release)
}

// check runs once the executor has stopped: every handle ended exactly once,
// as the observer saw it first, every message submit was answered, and the
// counts agree.
func (s *stress) check() {
	t := s.t
	for _, h := range s.handles {
		select {
		case <-h.Done():
		default:
			t.Errorf("request %s not ended after the executor stopped: %v", h.ID(), h.Latest().Status)
			continue
		}
		var seen []messages.Event
		for ev := range h.Events() {
			seen = append(seen, ev)
		}
		observed := s.rec.Of(h.ID())
		if len(seen) != len(observed) || !slices.Equal(runtimetest.Statuses(seen), runtimetest.Statuses(observed)) {
			t.Errorf("request %s: handle saw %v, observer %v", h.ID(), runtimetest.Statuses(seen), runtimetest.Statuses(observed))
		}
	}
	s.ends = s.rec.Check(t)
	s.rep.await(t, int(s.sent.Load()))
	st := s.ex.Stats()
	if st.Queued != 0 || st.InFlight != 0 || st.Completed+st.Failed+st.Cancelled != st.Accepted {
		t.Errorf("stats after the stop: %+v", st)
	}
	if err := s.ex.Err(); err != nil && !errors.Is(err, messages.ErrRestartStorm) {
		t.Errorf("Err = %v", err)
	}
}
