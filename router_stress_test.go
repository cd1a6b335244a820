package lionactor_test

// The randomized test of stress_test.go, for a router: whatever is raced
// against what (submits, message submits, cancels of every kind, a stop of
// every kind, deployments that fail, crash, pause or cannot take a
// request), every request the router accepted ends exactly once, its
// handle and the observer saw the same gap-free snapshots, every message
// submit is answered, and nothing is left running. The variables of
// stress_test.go set its seeds and size too:
//
//	LIONACTOR_STRESS_FOR=10m go test -race -run TestStressRouter -timeout 0 -v .

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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

func TestStressRouterEveryRequestEndsOnce(t *testing.T) {
	seeds := envInt(t, "LIONACTOR_STRESS_SEEDS", 20)
	ops := envInt(t, "LIONACTOR_STRESS_OPS", 300)
	var until time.Time
	if v := os.Getenv("LIONACTOR_STRESS_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LIONACTOR_STRESS_FOR=%q: %v", v, err)
		}
		until = time.Now().Add(d)
	}
	next := func() uint64 { return rand.Uint64() }
	if v := os.Getenv("LIONACTOR_STRESS_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LIONACTOR_STRESS_SEED=%q: %v", v, err)
		}
		seeds, until = 1, time.Time{}
		next = func() uint64 { return seed }
	}
	var (
		tried, failed int
		sum           stressTotals
	)
	start := time.Now()
	for i := 0; i < seeds || time.Now().Before(until); i++ {
		seed := next()
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			sum.add(runRouterStress(t, seed, ops))
			if t.Failed() {
				t.Logf("replay: LIONACTOR_STRESS_SEED=%d LIONACTOR_STRESS_OPS=%d go test -race -run 'TestStressRouterEveryRequestEndsOnce' .", seed, ops)
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

// routerStress is one seed's run.
type routerStress struct {
	t       *testing.T
	rt      *runtime.Router
	cfg     runtime.RouterConfig
	groups  []string
	root    *actor.RootContext
	parent  *actor.PID // the router's parent actor, if it has one
	sibling *actor.PID // fails to make the parent restart the router
	rec     *runtimetest.Recorder
	rep     *replies
	sink    *actor.PID
	other   *actor.PID // answered stats queries go here, apart from sink's counts

	mu      sync.Mutex
	handles []*runtime.Handle
	cancels []context.CancelFunc
	ids     []uuid.UUID

	sent    atomic.Int64
	ops     atomic.Int64
	stopAt  int64
	stopNow chan struct{}
	stopped atomic.Bool
}

// routerParent spawns a router and a sibling under an all-for-one
// strategy, as restartingParent does an executor.
type routerParent struct {
	cfg     runtime.RouterConfig
	got     chan<- *runtime.Router
	sibling chan<- *actor.PID
}

func (p *routerParent) Receive(ctx actor.Context) {
	if _, started := ctx.Message().(*actor.Started); started {
		rt, err := runtime.SpawnRouter(ctx, p.cfg)
		if err != nil {
			panic(err)
		}
		p.got <- rt
		p.sibling <- ctx.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if _, fail := ctx.Message().(string); fail {
				panic("sibling fails")
			}
		}))
	}
}

// routerStressConfig draws deployments over two groups (the second a
// fallback of the first, sometimes), each with small limits.
func routerStressConfig(rng *rand.Rand, observe func(messages.Event)) (runtime.RouterConfig, []string) {
	groups := []string{"gpt", "claude"}
	var deps []runtime.Deployment
	for i := range 2 + rng.IntN(4) {
		ec := stressConfig(rng, nil)
		ec.Observer = nil
		deps = append(deps, runtime.Deployment{
			Name: "d" + strconv.Itoa(i), Group: groups[i%2], Weight: rng.IntN(3), Config: ec,
		})
	}
	cfg := runtime.DefaultRouterConfig(deps...)
	cfg.Observer = observe
	cfg.QueueCapacity = 1 + rng.IntN(40)
	cfg.WaitForRoom = rng.IntN(3) == 0
	cfg.MaxAttempts = 1 + rng.IntN(4)
	cfg.FailureThreshold = 1 + rng.IntN(3)
	cfg.BreakerDelay = time.Duration(1+rng.IntN(20)) * time.Millisecond
	cfg.Lookahead = time.Duration(1+rng.IntN(100)) * time.Millisecond
	cfg.Retry = runtime.Backoff{Initial: time.Duration(50+rng.IntN(1000)) * time.Microsecond, Max: 3 * time.Millisecond}
	if rng.IntN(2) == 0 {
		cfg.Fallbacks = map[string][]string{"gpt": {"claude"}}
	}
	return cfg, groups
}

func runRouterStress(t *testing.T, seed uint64, total int) stressTotals {
	leaks := goleak.IgnoreCurrent()
	rng := rand.New(rand.NewPCG(seed, 0x22))
	s := &routerStress{t: t, rec: runtimetest.NewRecorder(), rep: newReplies(), stopNow: make(chan struct{})}
	s.cfg, s.groups = routerStressConfig(rng, s.rec.Observe)
	mode := rng.IntN(3)
	defer func() {
		if t.Failed() {
			t.Logf("mode %d, %d operations, stop at %d, config %+v", mode, s.ops.Load(), s.stopAt, s.cfg)
		}
	}()

	var system *actor.ActorSystem
	switch mode {
	case ownSystem:
		rt, err := runtime.StartRouter(s.cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.rt = rt
	case underRoot:
		system = quietSystem()
		rt, err := runtime.SpawnRouter(system.Root, s.cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.rt = rt
	case underParent:
		system = quietSystem()
		got, sibling := make(chan *runtime.Router, 1), make(chan *actor.PID, 1)
		s.parent = system.Root.Spawn(actor.PropsFromProducer(
			func() actor.Actor { return &routerParent{cfg: s.cfg, got: got, sibling: sibling} },
			actor.WithSupervisor(actor.NewAllForOneStrategy(10, time.Minute, actor.DefaultDecider)),
		))
		s.rt, s.sibling = <-got, <-sibling
	}
	s.root = s.rt.System().Root
	s.sink = s.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return s.rep }))
	s.other = s.root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))

	clients := 2 + rng.IntN(3)
	s.stopAt = int64(total/4 + rng.IntN(total*7/4))
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

	s.mu.Lock()
	for _, cancel := range s.cancels {
		cancel()
	}
	for _, id := range s.ids {
		s.root.Send(s.rt.PID(), &messages.Cancel{ID: id})
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	if rng.IntN(2) == 0 {
		err = s.rt.Stop(ctx)
	} else {
		err = s.rt.StopNow(ctx)
	}
	if err != nil {
		t.Errorf("final stop: %v", err)
	}
	ends := s.check()
	if s.parent != nil {
		_ = system.Root.StopFuture(s.parent).Wait()
	}
	_ = s.root.StopFuture(s.sink).Wait()
	_ = s.root.StopFuture(s.other).Wait()
	if system != nil {
		system.Shutdown()
	}
	goleak.VerifyNone(t, leaks)
	out := stressTotals{ops: int(s.ops.Load()), handles: len(s.handles), messages: int(s.sent.Load()), ends: ends}
	if s.stopped.Load() {
		out.stopped = 1
	}
	return out
}

// build draws what a request's builder does: the same call for every
// deployment, or one that some deployments cannot take (an error, or
// more tokens than their buckets hold).
func (s *routerStress) build(rng *rand.Rand) runtime.Builder {
	var draw *stress
	r := draw.request(rng)
	unable := map[string]bool{}
	if rng.IntN(4) == 0 {
		for _, d := range s.cfg.Deployments {
			if rng.IntN(2) == 0 {
				unable[d.Name] = true
			}
		}
	}
	huge := rng.IntN(10) == 0
	return func(d string) (messages.Request, error) {
		if unable[d] {
			return messages.Request{}, errors.New("not on this deployment")
		}
		req := r
		if huge {
			req.Tokens = 1 << 30
		}
		return req, nil
	}
}

func (s *routerStress) client(rng *rand.Rand, n int) {
	for range n {
		if s.ops.Add(1) == s.stopAt {
			close(s.stopNow)
		}
		group := s.groups[rng.IntN(len(s.groups))]
		switch k := rng.IntN(100); {
		case k < 45:
			s.submit(rng, group)
		case k < 60:
			id := uuid.New()
			s.mu.Lock()
			s.ids = append(s.ids, id)
			s.mu.Unlock()
			s.root.RequestWithCustomSender(s.rt.PID(), &runtime.RoutedSubmit{ID: id, Group: group, Build: s.build(rng)}, s.sink)
			s.sent.Add(1)
		case k < 70:
			if h := pickFrom(s, rng, &s.handles); h != nil {
				h.Cancel()
			}
		case k < 75:
			if id := pickFrom(s, rng, &s.ids); id != uuid.Nil {
				s.root.Send(s.rt.PID(), &messages.Cancel{ID: id})
			}
		case k < 80:
			if cancel := pickFrom(s, rng, &s.cancels); cancel != nil {
				cancel()
			}
		case k < 85:
			st := s.rt.Stats()
			if st.Queued < 0 || st.InFlight < 0 {
				s.t.Errorf("stats out of bounds: %+v", st)
			}
		case k < 92:
			if h := pickFrom(s, rng, &s.handles); h != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				if ev, err := h.Wait(ctx); err == nil && !ev.Status.Terminal() {
					s.t.Errorf("Wait returned %v", ev.Status)
				}
				cancel()
			}
		default:
			s.root.RequestWithCustomSender(s.rt.PID(), &messages.StatsQuery{}, s.other)
		}
	}
}

func pickFrom[T any](s *routerStress, rng *rand.Rand, list *[]T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if len(*list) == 0 {
		return zero
	}
	return (*list)[rng.IntN(len(*list))]
}

func (s *routerStress) submit(rng *rand.Rand, group string) {
	build := s.build(rng)
	how := rng.IntN(5)
	if how == 0 {
		s.accepted(s.rt.Submit(context.Background(), group, build))
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
		go cancel()
		s.accepted(s.rt.Submit(ctx, group, build))
	case 2:
		s.accepted(s.rt.Submit(ctx, group, build))
		cancel()
	default:
		s.accepted(s.rt.Submit(ctx, group, build))
		s.mu.Lock()
		s.cancels = append(s.cancels, cancel)
		s.mu.Unlock()
	}
}

func (s *routerStress) accepted(h *runtime.Handle, err error) {
	if err != nil {
		var tle *messages.TokenLimitError
		if !errors.Is(err, messages.ErrStopped) && !errors.Is(err, messages.ErrQueueFull) && !errors.As(err, &tle) &&
			!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && err.Error() != "not on this deployment" {
			s.t.Errorf("Submit: %v", err)
		}
		return
	}
	s.mu.Lock()
	s.handles = append(s.handles, h)
	s.mu.Unlock()
}

// stop stops the router one way, or two at once.
func (s *routerStress) stop(rng *rand.Rand) {
	s.stopped.Store(true)
	ways := 1 + rng.IntN(2)
	var wg sync.WaitGroup
	for range ways {
		way := rng.IntN(5)
		deadline := time.Duration(rng.IntN(30)) * time.Millisecond
		wg.Go(func() {
			switch {
			case way == 0:
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				if err := s.rt.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					s.t.Errorf("Stop: %v", err)
				}
			case way == 1:
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := s.rt.StopNow(ctx); err != nil {
					s.t.Errorf("StopNow: %v", err)
				}
			case way == 2 && s.parent != nil:
				_ = s.root.StopFuture(s.parent).Wait()
			case way == 3 && s.sibling != nil:
				s.root.Send(s.sibling, "fail")
			case way == 4:
				s.root.Stop(s.rt.PID()) // stopped from outside
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := s.rt.Stop(ctx); err != nil {
					s.t.Errorf("Stop: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

// check runs once the router has stopped: every handle ended exactly
// once, as the observer saw it, every message submit was answered, and
// the counts agree.
func (s *routerStress) check() map[messages.RequestStatus]int {
	t := s.t
	for _, h := range s.handles {
		select {
		case <-h.Done():
		default:
			t.Errorf("request %s not ended after the router stopped: %v", h.ID(), h.Latest().Status)
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
		for _, ev := range seen {
			if (ev.Status == messages.StatusProcessing || ev.Status == messages.StatusCalling) && ev.Deployment == "" {
				t.Errorf("request %s: %v names no deployment", h.ID(), ev.Status)
			}
		}
	}
	ends := s.rec.Check(t)
	s.rep.await(t, int(s.sent.Load()))
	st := s.rt.Stats()
	if st.Queued != 0 || st.InFlight != 0 || st.Completed+st.Failed+st.Cancelled != st.Accepted {
		t.Errorf("stats after the stop: %+v", st)
	}
	for _, d := range st.Deployments {
		if e := d.Executor; e.Queued != 0 || e.InFlight != 0 || e.Completed+e.Failed+e.Cancelled != e.Accepted {
			t.Errorf("deployment %s after the stop: %+v", d.Name, e)
		}
	}
	return ends
}
