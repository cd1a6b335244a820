package runtime

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

// oneCaller is a deployment of group g without a rate limit and with one
// caller: what it holds beyond its call waits in its queue.
func oneCaller(name, g string) Deployment {
	c := DefaultConfig()
	c.RequestsPerInterval, c.Concurrency = Unlimited, 1
	return Deployment{Name: name, Group: g, Config: c}
}

// A request is cancelled wherever it is: waiting in the router (it never
// reaches a deployment), at a deployment's call (the call's context ends),
// or by its submitter's context; each ends CANCELLED once, with its cause.
func TestRouterCancel(t *testing.T) {
	rt, rec := startRouterT(t, DefaultRouterConfig(oneCaller("a", "gpt")))
	b := runtimetest.NewBlocker()
	build := calls{"a": b}.builder(0)
	calling := submitOK(t, rt, "gpt", build)
	<-b.Started
	var waiting []*Handle
	for range 3 { // two at the deployment, one in the router
		waiting = append(waiting, submitOK(t, rt, "gpt", build))
	}
	waitStat(t, "one request in the router's queue", func() bool { return rt.Stats().Queued == 1 })
	last := waiting[2]
	last.Cancel()
	ev := waitT(t, last)
	if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrCancelled) || ev.Deployment != "" {
		t.Errorf("cancelled in the router: %v %v at %q", ev.Status, ev.Err(), ev.Deployment)
	}
	calling.Cancel()
	if cause := <-b.Seen; !errors.Is(cause, messages.ErrCancelled) {
		t.Errorf("the call's context ended with %v", cause)
	}
	if ev := waitT(t, calling); ev.Status != messages.StatusCancelled || ev.Deployment != "a" || ev.Attempt != 1 {
		t.Errorf("cancelled while calling: %v at %q after %d attempts", ev.Status, ev.Deployment, ev.Attempt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := rt.Submit(ctx, "gpt", build)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if ev := waitT(t, h); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), context.Canceled) {
		t.Errorf("context cancelled: %v %v", ev.Status, ev.Err())
	}
	close(b.Release)
	for _, h := range waiting[:2] {
		if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
			t.Errorf("a request not cancelled ended %v", ev.Status)
		}
	}
	if got := len(rec.Of(last.ID())); got != 3 {
		t.Errorf("the request cancelled in the router has %d snapshots, want PENDING, QUEUED, CANCELLED", got)
	}
	if st := rt.Stats(); st.Cancelled != 3 || st.Completed != 2 || st.Queued != 0 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Stop finishes every accepted request, in the router and at the
// deployments; StopNow cancels them, calls included. After either, Submit
// refuses, and a second stop waits for the same end.
func TestRouterStopAndStopNow(t *testing.T) {
	for _, now := range []bool{false, true} {
		t.Run(map[bool]string{false: "Stop", true: "StopNow"}[now], func(t *testing.T) {
			cfg := DefaultRouterConfig(oneCaller("a", "gpt"), oneCaller("b", "gpt"))
			rt, rec := startRouterT(t, cfg)
			b := runtimetest.NewBlocker()
			build := calls{"a": b, "b": b}.builder(0)
			hs := submitAll(t, rt, 10, "gpt", build)
			<-b.Started
			<-b.Started
			stopped := make(chan error, 1)
			go func() {
				if now {
					stopped <- rt.StopNow(context.Background())
				} else {
					stopped <- rt.Stop(context.Background())
				}
			}()
			waitStat(t, "the stop to begin", func() bool { return rt.checkRunning() != nil })
			if _, err := rt.Submit(context.Background(), "gpt", build); !errors.Is(err, messages.ErrStopped) {
				t.Errorf("Submit while stopping: %v", err)
			}
			if !now {
				close(b.Release)
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			want := messages.StatusCompleted
			if now {
				want = messages.StatusCancelled
			}
			for _, h := range hs {
				select {
				case <-h.Done():
				default:
					t.Fatalf("a request had not ended when the stop returned: %v", h.Latest().Status)
				}
				if ev := h.Latest(); ev.Status != want {
					t.Errorf("ended %v (%v), want %v", ev.Status, ev.Err(), want)
				}
			}
			if err := rt.Stop(context.Background()); err != nil {
				t.Errorf("a second Stop: %v", err)
			}
			if n := rec.Len(); n != 10 {
				t.Errorf("%d requests recorded", n)
			}
		})
	}
}

// A graceful stop whose context ends first cancels what is left.
func TestRouterStopRunsOutOfTime(t *testing.T) {
	rt, _ := startRouterT(t, DefaultRouterConfig(oneCaller("a", "gpt")))
	b := runtimetest.NewBlocker()
	h := submitOK(t, rt, "gpt", calls{"a": b}.builder(0))
	<-b.Started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := rt.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want its context's error", err)
	}
	if ev := waitT(t, h); ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
		t.Errorf("ended %v %v", ev.Status, ev.Err())
	}
}

// routedProbe submits to a router by message and keeps what it answers.
type routedProbe struct {
	mu       sync.Mutex
	events   map[uuid.UUID][]messages.Event
	rejected map[uuid.UUID]error
	stats    []RouterStats
	dead     int
	changed  chan struct{}
}

func newRoutedProbe() *routedProbe {
	return &routedProbe{events: map[uuid.UUID][]messages.Event{}, rejected: map[uuid.UUID]error{}, changed: make(chan struct{}, 1000)}
}

func (p *routedProbe) Receive(ctx actor.Context) {
	p.mu.Lock()
	switch m := ctx.Message().(type) {
	case messages.Event:
		p.events[m.ID] = append(p.events[m.ID], m)
	case *messages.Rejected:
		p.rejected[m.ID] = m.Err
	case RouterStats:
		p.stats = append(p.stats, m)
	case *actor.DeadLetterResponse:
		p.dead++
	default:
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.changed <- struct{}{}
}

// await waits until cond holds of what the probe received.
func (p *routedProbe) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		ok := cond()
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (p *routedProbe) ended(id uuid.UUID) (messages.Event, bool) {
	evs := p.events[id]
	if n := len(evs); n > 0 && evs[n-1].Status.Terminal() {
		return evs[n-1], true
	}
	return messages.Event{}, false
}

// Another actor drives a router by messages: a RoutedSubmit is answered
// with every snapshot, a Cancel by the request's ID ends it, a StatsQuery
// is answered with the stats, and what cannot be accepted is answered
// with a single Rejected, once the router has stopped too.
func TestRouterDrivenByMessages(t *testing.T) {
	rt, _ := startRouterT(t, DefaultRouterConfig(oneCaller("a", "gpt")))
	root := rt.System().Root
	p := newRoutedProbe()
	pid := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }))
	defer func() { _ = root.StopFuture(pid).Wait() }()
	b := runtimetest.NewBlocker()
	build := calls{"a": b}.builder(0)

	done, blocked := uuid.New(), uuid.New()
	root.RequestWithCustomSender(rt.PID(), &RoutedSubmit{ID: done, Group: "gpt", Build: calls{}.builder(0)}, pid)
	p.await(t, "the first request to end", func() bool { _, ok := p.ended(done); return ok })
	p.mu.Lock()
	evs := p.events[done]
	p.mu.Unlock()
	if statuses := runtimetest.Statuses(evs); len(statuses) != 5 || evs[4].Status != messages.StatusCompleted || evs[4].Deployment != "a" {
		t.Errorf("snapshots %v, last at %q", statuses, evs[len(evs)-1].Deployment)
	}
	root.RequestWithCustomSender(rt.PID(), &RoutedSubmit{ID: blocked, Group: "gpt", Build: build}, pid)
	<-b.Started
	root.Send(rt.PID(), &messages.Cancel{ID: blocked})
	p.await(t, "the cancelled request to end", func() bool { _, ok := p.ended(blocked); return ok })

	unknown, plain := uuid.New(), uuid.New()
	root.RequestWithCustomSender(rt.PID(), &RoutedSubmit{ID: unknown, Group: "claude", Build: build}, pid)
	root.RequestWithCustomSender(rt.PID(), &messages.Submit{ID: plain, Request: messages.Request{Call: noop}}, pid)
	root.RequestWithCustomSender(rt.PID(), &messages.StatsQuery{}, pid)
	p.await(t, "two rejections and the stats", func() bool { return len(p.rejected) == 2 && len(p.stats) == 1 })
	p.mu.Lock()
	if !errors.Is(p.rejected[unknown], ErrUnknownGroup) || !errors.Is(p.rejected[plain], messages.ErrInvalidRequest) {
		t.Errorf("rejections %v", p.rejected)
	}
	if st := p.stats[0]; st.Completed != 1 || st.Cancelled != 1 || len(st.Deployments) != 1 {
		t.Errorf("stats by message %+v", st)
	}
	p.mu.Unlock()

	if err := rt.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	late := uuid.New()
	root.RequestWithCustomSender(rt.PID(), &RoutedSubmit{ID: late, Group: "gpt", Build: build}, pid)
	p.await(t, "the late submit to be answered", func() bool { return p.rejected[late] != nil || p.dead > 0 })
}

// A router spawned under an actor stops with it: every request it
// accepted ends by the time the parent has stopped, CANCELLED with
// ErrStopped, and Submit refuses after.
func TestSpawnRouterEndsWithItsParent(t *testing.T) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	rec := runtimetest.NewRecorder()
	cfg := DefaultRouterConfig(oneCaller("a", "gpt"), oneCaller("b", "gpt"))
	cfg.Observer = rec.Observe
	got := make(chan *Router, 1)
	parent := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			rt, err := SpawnRouter(ctx, cfg)
			if err != nil {
				panic(err)
			}
			got <- rt
		}
	}))
	rt := <-got
	if rt.System() != system {
		t.Error("the router runs in another system")
	}
	b := runtimetest.NewBlocker()
	hs := submitAll(t, rt, 8, "gpt", calls{"a": b, "b": b}.builder(0))
	<-b.Started
	if err := system.Root.StopFuture(parent).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		ev := waitT(t, h)
		if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrStopped) {
			t.Errorf("ended %v %v", ev.Status, ev.Err())
		}
	}
	if _, err := rt.Submit(context.Background(), "gpt", calls{}.builder(0)); !errors.Is(err, messages.ErrStopped) {
		t.Errorf("Submit after the parent stopped: %v", err)
	}
	if err := rt.Stop(context.Background()); err != nil {
		t.Errorf("Stop after the parent stopped: %v", err)
	}
	rec.Check(t)
	if _, err := SpawnRouter(nil, cfg); err == nil {
		t.Error("SpawnRouter without a parent")
	}
	outliveDeadLetters()
}

// A router its parent restarts (an all-for-one restart of a sibling)
// stops, and ends every request it held.
func TestRouterRestartedByItsParentStops(t *testing.T) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	rec := runtimetest.NewRecorder()
	cfg := DefaultRouterConfig(oneCaller("a", "gpt"))
	cfg.Observer = rec.Observe
	got, sibling := make(chan *Router, 1), make(chan *actor.PID, 1)
	parent := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			rt, err := SpawnRouter(ctx, cfg)
			if err != nil {
				panic(err)
			}
			got <- rt
			sibling <- ctx.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				if _, fail := ctx.Message().(string); fail {
					panic("sibling fails")
				}
			}))
		}
	}, actor.WithSupervisor(actor.NewAllForOneStrategy(10, time.Minute, actor.DefaultDecider))))
	defer func() { _ = system.Root.StopFuture(parent).Wait() }()
	rt, sib := <-got, <-sibling
	b := runtimetest.NewBlocker()
	hs := submitAll(t, rt, 5, "gpt", calls{"a": b}.builder(0))
	<-b.Started
	system.Root.Send(sib, "fail")
	for _, h := range hs {
		if ev := waitT(t, h); ev.Status != messages.StatusCancelled {
			t.Errorf("ended %v", ev.Status)
		}
	}
	if err := rt.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	rec.Check(t)
	outliveDeadLetters()
}

// Deployments that could each start a request at once take turns in
// proportion to their weights.
func TestRouterWeightsBreakTies(t *testing.T) {
	light, heavy := oneCaller("light", "gpt"), oneCaller("heavy", "gpt")
	light.Config.Concurrency, heavy.Config.Concurrency = 4, 4
	heavy.Weight = 3
	rt, _ := startRouterT(t, DefaultRouterConfig(light, heavy))
	var hs []*Handle
	for range 400 {
		h := submitOK(t, rt, "gpt", calls{}.builder(0))
		waitT(t, h) // one at a time: every choice is a tie
		hs = append(hs, h)
	}
	n := map[string]int{}
	for _, h := range hs {
		n[h.Latest().Deployment]++
	}
	if n["light"] != 100 || n["heavy"] != 300 {
		t.Errorf("light took %d, heavy %d; want 100 and 300", n["light"], n["heavy"])
	}
}

// A deployment whose executor stops by itself (its callers crash past
// their restart budget) takes nothing more; its requests go on elsewhere.
func TestRouterDeploymentThatStopsItself(t *testing.T) {
	crash, good := oneCaller("crash", "gpt"), oneCaller("good", "gpt")
	crash.Config.MaxRestarts = 0
	crash.Weight = 1000 // first choice while it lasts
	panics := messages.CallFunc(func(context.Context, int) (messages.Result, error) { panic("boom") })
	cfg := DefaultRouterConfig(crash, good)
	cfg.MaxAttempts = 5
	rt, _ := startRouterT(t, cfg)
	hs := submitAll(t, rt, 20, "gpt", calls{"crash": panics}.builder(0))
	for _, h := range hs {
		if ev := waitT(t, h); ev.Status != messages.StatusCompleted || ev.Deployment != "good" {
			t.Errorf("ended %v at %q: %v", ev.Status, ev.Deployment, ev.Err())
		}
	}
	if err := rt.Executor("crash").Err(); !errors.Is(err, messages.ErrRestartStorm) {
		t.Errorf("the crashing deployment: %v", err)
	}
	if rt.Executor("nobody") != nil {
		t.Error("Executor of an unknown deployment")
	}
}

// The context RequestContext returns reaches every attempt's call,
// wherever it goes.
func TestRouterRequestContextReachesEveryDeployment(t *testing.T) {
	cfg := DefaultRouterConfig(oneCaller("a", "gpt"), oneCaller("b", "claude"))
	cfg.Fallbacks = map[string][]string{"gpt": {"claude"}}
	cfg.RequestContext = func(ctx context.Context, pending messages.Event) context.Context {
		return context.WithValue(ctx, requestKey{}, pending.ID)
	}
	var (
		mu   sync.Mutex
		seen []any
	)
	record := func(fail bool) messages.Call {
		return messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
			mu.Lock()
			seen = append(seen, ctx.Value(requestKey{}))
			mu.Unlock()
			if fail {
				return messages.Result{}, errSick
			}
			return messages.Result{}, nil
		})
	}
	rt, _ := startRouterT(t, cfg)
	h := submitOK(t, rt, "gpt", calls{"a": record(true), "b": record(false)}.builder(0))
	if ev := waitT(t, h); ev.Status != messages.StatusCompleted || ev.Deployment != "b" {
		t.Fatalf("ended %v at %s", ev.Status, ev.Deployment)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != h.ID() || seen[1] != h.ID() {
		t.Errorf("the calls saw %v, want the request's ID twice", seen)
	}
}

// WaitForRoom makes Submit wait for room in the router's queue, until its
// context ends or the router stops.
func TestRouterWaitForRoom(t *testing.T) {
	cfg := DefaultRouterConfig(oneCaller("a", "gpt"))
	cfg.QueueCapacity, cfg.WaitForRoom = 1, true
	rt, _ := startRouterT(t, cfg)
	b := runtimetest.NewBlocker()
	build := calls{"a": b}.builder(0)
	for i := range 3 {
		submitOK(t, rt, "gpt", build)
		waitStat(t, "the router to give the request away", func() bool { return rt.Stats().InFlight == int64(i+1) })
	}
	submitOK(t, rt, "gpt", build) // fills the router's queue
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := rt.Submit(ctx, "gpt", build); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past its context: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := rt.Submit(context.Background(), "gpt", build)
		got <- err
	}()
	go func() { _ = rt.StopNow(context.Background()) }()
	if err := <-got; !errors.Is(err, messages.ErrStopped) {
		t.Errorf("waiting while the router stops: %v", err)
	}
}

// Every invalid field is named.
func TestRouterConfigValidation(t *testing.T) {
	ok := func() RouterConfig {
		c := DefaultRouterConfig(perMinute("a", "gpt", 60), perMinute("b", "claude", 60))
		c.Fallbacks = map[string][]string{"gpt": {"claude"}}
		return c
	}
	if err := ok().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		edit  func(*RouterConfig)
	}{
		{"Deployments", func(c *RouterConfig) { c.Deployments = nil }},
		{"QueueCapacity", func(c *RouterConfig) { c.QueueCapacity = 0 }},
		{"MaxAttempts", func(c *RouterConfig) { c.MaxAttempts = 0 }},
		{"FailureThreshold", func(c *RouterConfig) { c.FailureThreshold = 0 }},
		{"BreakerDelay", func(c *RouterConfig) { c.BreakerDelay = 0 }},
		{"Lookahead", func(c *RouterConfig) { c.Lookahead = -1 }},
		{"Deployments[1].Name", func(c *RouterConfig) { c.Deployments[1].Name = "" }},
		{"Deployments[1].Name", func(c *RouterConfig) { c.Deployments[1].Name = "a" }},
		{"Deployments[0].Group", func(c *RouterConfig) { c.Deployments[0].Group = "" }},
		{"Deployments[0].Weight", func(c *RouterConfig) { c.Deployments[0].Weight = -1 }},
		{"Deployments[1].Config.Concurrency", func(c *RouterConfig) { c.Deployments[1].Config.Concurrency = 0 }},
		{"Fallbacks", func(c *RouterConfig) { c.Fallbacks["mini"] = []string{"gpt"} }},
		{"Fallbacks", func(c *RouterConfig) { c.Fallbacks["gpt"] = []string{"mini"} }},
		{"Fallbacks", func(c *RouterConfig) { c.Fallbacks["gpt"] = []string{"gpt"} }},
	} {
		cfg := ok()
		c.edit(&cfg)
		err := cfg.Validate()
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: %v", c.field, err)
		}
		if _, err := StartRouter(cfg); err == nil {
			t.Errorf("%s: StartRouter accepted it", c.field)
		}
	}
	if _, err := SpawnRouter(nil, ok()); err == nil {
		t.Error("SpawnRouter without a parent")
	}
}

// What a router says of itself.
func TestRouterDescribesItself(t *testing.T) {
	a, b := perMinute("a", "gpt", 60), perMinute("b", "claude", 60)
	b.Model = "claude-3-5-haiku"
	rt, _ := startRouterT(t, DefaultRouterConfig(a, b, perMinute("c", "gpt", 60)))
	if g := rt.Groups(); len(g) != 2 || g[0] != "gpt" || g[1] != "claude" {
		t.Errorf("groups %v", g)
	}
	if ds := rt.Deployments(); len(ds) != 3 || ds[1].Name != "b" || ds[1].Model != "claude-3-5-haiku" || ds[0].Model != "gpt" || ds[0].Weight != 1 {
		t.Errorf("deployments %+v", ds)
	}
	if rt.Config().QueueCapacity != 1000 || rt.PID() == nil {
		t.Error("config or PID")
	}
	for _, v := range []Verdict{VerdictFatal, VerdictBusy, VerdictUnhealthy, VerdictDown, 0} {
		if v.String() == "" || (v == 0) != strings.HasPrefix(v.String(), "Verdict(") {
			t.Errorf("Verdict %d: %q", int(v), v)
		}
	}
}
