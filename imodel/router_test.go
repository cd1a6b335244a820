package imodel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// handlerTransport serves requests with a handler in memory: no sockets,
// so that a whole run can go in a bubble of fake time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// key is a deployment on a key of its own: its name, group, provider, key
// and limit.
type key struct {
	name, group string
	provider    Provider
	apiKey      string
	rpm         int
}

// routerOf starts a runtime router over the keys, each at its rpm evenly
// paced with 16 callers, and binds each to its endpoint at base (the
// simulator's /v1); cfg, if not nil, edits the runtime router's config.
// Everything stops when the test ends.
func routerOf(t *testing.T, base string, keys []key, edit func(*runtime.RouterConfig), opts ...Option) (*Router, *runtimetest.Recorder) {
	t.Helper()
	var deps []runtime.Deployment
	eps := map[string]EndpointConfig{}
	for _, k := range keys {
		c := runtime.DefaultConfig()
		c.RequestsPerInterval, c.RequestInterval, c.Concurrency = k.rpm, time.Minute, 16
		deps = append(deps, runtime.Deployment{Name: k.name, Group: k.group, Config: c})
		eps[k.name] = EndpointConfig{Provider: k.provider, BaseURL: base, APIKey: k.apiKey, Retry: fastRetry}
	}
	rec := runtimetest.NewRecorder()
	cfg := runtime.DefaultRouterConfig(deps...)
	cfg.Observer = rec.Observe
	cfg.QueueCapacity = 10000
	if edit != nil {
		edit(&cfg)
	}
	rt, err := runtime.StartRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRouter(rt, eps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := rt.StopNow(ctx); err != nil {
			t.Errorf("StopNow: %v", err)
		}
		rec.Check(t)
		time.Sleep(2 * time.Millisecond) // protoactor's dead-letter throttle outlives a stop by 1 ms
	})
	return r, rec
}

// inMemory serves the simulator's handler in memory, for a run in fake
// time.
func inMemory(sim *simulator.Server) Option {
	return WithHTTPClient(&http.Client{Transport: handlerTransport{sim.Handler()}})
}

// starts returns, by deployment, when each call started.
func starts(rec *runtimetest.Recorder, hs []*runtime.Handle) map[string][]time.Time {
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

// threeKeys are three keys of one group on one simulator, at 600, 1200
// and 1800 requests a minute.
var threeKeys = []key{
	{"key-a", "gpt-4o-mini", OpenAI, "sk-router-key-a", 600},
	{"key-b", "gpt-4o-mini", OpenAI, "sk-router-key-b", 1200},
	{"key-c", "gpt-4o-mini", OpenAI, "sk-router-key-c", 1800},
}

// simFor is a simulator that holds each key to its limit per second, as
// providers enforce a per-minute limit over shorter windows.
func simFor(t *testing.T, keys []key) *simulator.Server {
	t.Helper()
	limits := map[string]simulator.Limits{}
	for _, k := range keys {
		limits[k.apiKey] = simulator.Limits{RequestsPerMinute: k.rpm, RequestBurst: k.rpm / 60}
	}
	sim, err := simulator.New(simulator.Config{Seed: testSeed, KeyLimits: limits, Keys: []string{"sk-none"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// Three keys at 600, 1200 and 1800 requests a minute for one group:
// under fake time the run goes at the sum of their limits (at least 97%
// of 3,600 a minute from the first start to the last), the simulator
// refuses nothing though it holds each key to its limit per second, and
// each key is used in proportion to its limit: no more than its pace
// allows, and, the others being at theirs, no less than what is left.
func TestRouterThreeKeysGoAtTheSumOfTheirLimits(t *testing.T) {
	n := 3000
	synctest.Test(t, func(t *testing.T) {
		sim := simFor(t, threeKeys)
		r, rec := routerOf(t, "http://simulator.test/v1", threeKeys, nil, inMemory(sim))
		hs := make([]*runtime.Handle, n)
		for i := range hs {
			h, err := r.Submit(ctx, map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{{"role": "user", "content": fmt.Sprint("request ", i)}}, "max_tokens": 8})
			if err != nil {
				t.Fatal(err)
			}
			hs[i] = h
		}
		for _, h := range hs {
			if ev := awaitEnd(h); ev.Status != messages.StatusCompleted || ev.Attempt != 1 {
				t.Fatalf("ended %v after %d attempts: %v", ev.Status, ev.Attempt, ev.Err())
			}
		}
		by := starts(rec, hs)
		var all []time.Time
		for _, s := range by {
			all = append(all, s...)
		}
		slices.SortFunc(all, time.Time.Compare)
		span := all[n-1].Sub(all[0])
		achieved := float64(n-len(threeKeys)) / span.Minutes()
		st := sim.Stats()
		t.Logf("%d requests in %v: %.0f requests/min, %.2f%% of the sum of the limits (3600); 429s %d; by key: a %d, b %d, c %d",
			n, span, achieved, 100*achieved/3600, st.ByStatus[429], len(by["key-a"]), len(by["key-b"]), len(by["key-c"]))
		if achieved < 0.97*3600 || achieved > 3600*1.0001 {
			t.Errorf("achieved %.1f requests a minute, want [97%%, 100%%] of 3600", achieved)
		}
		if st.ByStatus[429] != 0 || st.ByStatus[200] != int64(n) {
			t.Errorf("simulator statuses %v", st.ByStatus)
		}
		most := func(k key) int { return 1 + int(float64(k.rpm)/60*span.Seconds()+1e-3) }
		for _, k := range threeKeys {
			least := n
			for _, o := range threeKeys {
				if o != k {
					least -= most(o)
				}
			}
			got := int(st.ByKey[k.apiKey].Admitted)
			if got != len(by[k.name]) || got > most(k) || got < least {
				t.Errorf("%s: %d admitted (%d started), want [%d, %d]", k.name, got, len(by[k.name]), least, most(k))
			}
		}
	})
}

// One key starts answering 529 half-way: its breaker opens after three
// failures in a row, the other two carry the load, every request
// completes; once it heals, its breaker half-opens after its delay, the
// probe succeeds and the key takes its share again. Under fake time the
// time to route around it is exact.
func TestRouterRoutesAroundAFailingKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 900
		sim := simFor(t, threeKeys)
		r, rec := routerOf(t, "http://simulator.test/v1", threeKeys, func(c *runtime.RouterConfig) {
			c.MaxAttempts, c.BreakerDelay = 5, 2*time.Second
		}, inMemory(sim))
		hs := make([]*runtime.Handle, n)
		for i := range hs {
			h, err := r.Submit(ctx, chatPayloadOf(fmt.Sprint("request ", i)))
			if err != nil {
				t.Fatal(err)
			}
			hs[i] = h
		}
		start := time.Now()
		time.Sleep(5 * time.Second)
		if err := sim.SetFaults("sk-router-key-c", simulator.Faults{Overloaded: 1}); err != nil {
			t.Fatal(err)
		}
		sickAt := time.Now()
		c := func() runtime.DeploymentStats { return r.Stats().Deployments[2] }
		for c().Openings == 0 {
			time.Sleep(time.Millisecond)
		}
		routedAround := time.Since(sickAt)
		time.Sleep(5 * time.Second)
		if err := sim.SetFaults("sk-router-key-c", simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		healedAt := time.Now()
		for c().Breaker != runtime.BreakerClosed {
			time.Sleep(time.Millisecond)
		}
		back := time.Since(healedAt)
		for _, h := range hs {
			if ev := awaitEnd(h); ev.Status != messages.StatusCompleted {
				t.Fatalf("ended %v: %v", ev.Status, ev.Err())
			}
		}
		st := r.Stats()
		cs := st.Deployments[2]
		t.Logf("key c sick %v into the run: breaker open %v after, %d openings, %d of its calls failed (%d answered 529); healed: back %v after; "+
			"every request completed, %d retries in all; run %v",
			sickAt.Sub(start), routedAround, cs.Openings, cs.Failed, st.HTTP["key-c"].ByStatus[529], back, st.Retries, time.Since(start))
		// Three 529s in a row at key c's pace of 30 a second.
		if routedAround > 100*time.Millisecond {
			t.Errorf("the breaker opened %v after key c fell sick, want within 100ms", routedAround)
		}
		if back > 2*time.Second+100*time.Millisecond {
			t.Errorf("key c came back %v after it healed, want within the breaker's delay of 2s", back)
		}
		if cs.Failed != st.HTTP["key-c"].ByStatus[529] || cs.Failed > 3+2+1 {
			t.Errorf("key c failed %d calls (%d 529s); want its three, and a probe a delay", cs.Failed, st.HTTP["key-c"].ByStatus[529])
		}
		var after int
		for _, s := range starts(rec, hs)["key-c"] {
			if s.After(healedAt.Add(back)) {
				after++
			}
		}
		if after == 0 {
			t.Error("key c took nothing after it came back")
		}
	})
}

// A key out of quota (insufficient_quota) is taken out at once, not
// retried into the ground: only what it held when it first answered so
// fails there, and the run completes on the others.
func TestRouterTakesAKeyOutOfQuotaOut(t *testing.T) {
	sim := startSim(t, simulator.Config{QuotaExhaustedKeys: []string{"sk-router-key-c"}})
	fast := slices.Clone(threeKeys)
	for i := range fast {
		fast[i].rpm *= 10
	}
	r, _ := routerOf(t, sim.URL+"/v1", fast, func(c *runtime.RouterConfig) { c.MaxAttempts = 5 })
	var hs []*runtime.Handle
	for i := range 100 {
		h, err := r.Submit(ctx, chatPayloadOf(fmt.Sprint("request ", i)))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if ev := awaitEnd(h); ev.Status != messages.StatusCompleted || ev.Deployment == "key-c" {
			t.Fatalf("ended %v at %s: %v", ev.Status, ev.Deployment, ev.Err())
		}
	}
	st := r.Stats()
	c := st.Deployments[2]
	if c.Breaker != runtime.BreakerOpen || c.Openings != 1 || c.Completed != 0 || c.Failed == 0 || c.Failed > 16 {
		t.Errorf("key c: %+v; want one opening and at most its callers' worth of failures", c)
	}
	if got := st.HTTP["key-c"].ByStatus[429]; got != c.Failed {
		t.Errorf("key c answered %d 429s, %d calls failed there", got, c.Failed)
	}
}

// A chat of gpt-4o whose only deployment fails falls back to the
// claude-haiku group on the simulator's Anthropic endpoint: the request
// that reaches it is an Anthropic messages request, mapped from the
// chat, and the result names the deployment that served it. So does a
// raw chat completion body given to Invoke.
func TestRouterFallsBackToAnotherProvider(t *testing.T) {
	sim := startSim(t, simulator.Config{})
	if err := sim.SetFaults("sk-router-openai", simulator.Faults{ServerError: 1}); err != nil {
		t.Fatal(err)
	}
	keys := []key{
		{"openai", "gpt-4o", OpenAI, "sk-router-openai", 6000},
		{"claude", "claude-haiku", Anthropic, "sk-router-claude", 6000},
	}
	r, rec := routerOf(t, sim.URL+"/v1", keys, func(c *runtime.RouterConfig) {
		c.Deployments[1].Model = "claude-3-5-haiku-latest"
		c.Fallbacks = map[string][]string{"gpt-4o": {"claude-haiku"}}
	})
	reply, err := r.Chat(ctx, ChatRequest{Model: "gpt-4o", System: "be brief", Messages: []Message{{Role: "user", Content: "hello"}}, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	ev := reply.Event
	if ev.Deployment != "claude" || ev.Model != "claude-3-5-haiku-latest" || ev.Attempt != 2 || reply.Text == "" || reply.Model != "claude-3-5-haiku-latest" {
		t.Errorf("served by %q (%q) after %d attempts: %+v", ev.Deployment, ev.Model, ev.Attempt, reply)
	}
	calling := 0
	for _, e := range rec.Of(ev.ID) {
		if e.Status == messages.StatusCalling {
			calling++
			if want := []string{"openai", "claude"}[calling-1]; e.Deployment != want {
				t.Errorf("attempt %d at %s, want %s", calling, e.Deployment, want)
			}
		}
	}
	last := sim.Last(t)
	body := last.Fields(t)
	if last.Path != "/v1/messages" || body["model"] != "claude-3-5-haiku-latest" || body["system"] != "be brief" || body["max_tokens"] != float64(12) {
		t.Errorf("the fallback sent %s %v", last.Path, body)
	}

	resp, err := r.Invoke(ctx, map[string]any{"model": "gpt-4o", "max_tokens": 9, "temperature": 0.5,
		"messages": []map[string]any{{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Event.Deployment != "claude" || !strings.Contains(string(resp.Body), `"type":"message"`) {
		t.Errorf("Invoke served by %q: %s", resp.Event.Deployment, resp.Body)
	}
	if body := sim.Last(t).Fields(t); body["system"] != "terse" || body["max_tokens"] != float64(9) || body["temperature"] != 0.5 {
		t.Errorf("the raw chat mapped to %v", body)
	}
	// A chat that cannot be put in Anthropic's dialect has nowhere to go.
	_, err = r.Invoke(ctx, map[string]any{"model": "gpt-4o", "tools": []any{}, "messages": []map[string]any{{"role": "user", "content": "hi"}}})
	if !errors.Is(err, runtime.ErrNoDeployment) || !errors.Is(err, ErrNotPortable) {
		t.Errorf("a chat with tools: %v", err)
	}
}

// A file mixing two models with different limits: each model's rate is
// kept apart, at no more than its own pace in any second, and together
// they go at the sum of theirs.
func TestRouterPacesEachModelApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := []key{
			{"mini", "gpt-4o-mini", OpenAI, "sk-router-mini", 1200},
			{"big", "gpt-4o", OpenAI, "sk-router-big", 600},
		}
		sim := simFor(t, keys)
		r, rec := routerOf(t, "http://simulator.test/v1", keys, nil, inMemory(sim))
		var hs []*runtime.Handle
		for i := range 300 {
			model := "gpt-4o-mini"
			if i%3 == 0 {
				model = "gpt-4o"
			}
			h, err := r.Submit(ctx, map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": "hi"}}})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		for _, h := range hs {
			if ev := awaitEnd(h); ev.Status != messages.StatusCompleted {
				t.Fatalf("ended %v", ev.Status)
			}
		}
		by := starts(rec, hs)
		for _, k := range keys {
			if w := runtimetest.MaxInWindow(by[k.name], time.Second); len(by[k.name]) != 100*(1+btoi(k.name == "mini")) || w > k.rpm/60+1 {
				t.Errorf("%s: %d calls, at most %d in one second; want %d and at most %d", k.name, len(by[k.name]), w, 100*(1+btoi(k.name == "mini")), k.rpm/60+1)
			}
		}
		if st := sim.Stats(); st.ByStatus[429] != 0 {
			t.Errorf("429s: %d", st.ByStatus[429])
		}
		for _, h := range hs {
			ev := h.Latest()
			want := map[bool]string{true: "big", false: "mini"}[ev.Model == "gpt-4o"]
			if ev.Deployment != want {
				t.Errorf("a request of %s went to %s", ev.Model, ev.Deployment)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Streams, embeddings and message submits go through a router too; an
// embedding never goes to a provider without embeddings.
func TestRouterStreamEmbedAndMessages(t *testing.T) {
	sim := startSim(t, simulator.Config{})
	keys := []key{
		{"claude", "chat", Anthropic, "sk-router-claude", 6000},
		{"openai", "chat", OpenAI, "sk-router-openai", 6000},
	}
	r, _ := routerOf(t, sim.URL+"/v1", keys, func(c *runtime.RouterConfig) { c.Deployments[0].Weight = 100 })
	s, err := r.Stream(ctx, ChatRequest{Model: "chat", Messages: []Message{{Role: "user", Content: "stream this"}}, MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	for c := range s.Chunks() {
		chunks = append(chunks, c)
	}
	reply, err := s.Wait(ctx)
	if err != nil || len(chunks) < 2 || strings.Join(chunks, "") != reply.Text || reply.Event.Deployment != "claude" {
		t.Errorf("stream: %v, %d chunks, served by %s", err, len(chunks), reply.Event.Deployment)
	}
	emb, err := r.Embed(ctx, "chat", []string{"one", "two"})
	if err != nil || len(emb.Vectors) != 2 || emb.Event.Deployment != "openai" {
		t.Errorf("embed: %v, %d vectors, served by %s", err, len(emb.Vectors), emb.Event.Deployment)
	}
	// No model: the only group.
	if reply, err := r.Chat(ctx, ChatRequest{Messages: []Message{{Role: "user", Content: "hi"}}}); err != nil || reply.Text == "" {
		t.Errorf("a chat naming no model: %v", err)
	}
	sub, err := r.NewChatRequest(ChatRequest{Model: "chat", Messages: []Message{{Role: "user", Content: "by message"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan messages.Event, 10)
	root := r.Runtime().System().Root
	pid := root.Spawn(actorFunc(func(ev messages.Event) { got <- ev }))
	defer func() { _ = root.StopFuture(pid).Wait() }()
	root.RequestWithCustomSender(r.Runtime().PID(), &sub, pid)
	for ev := range got {
		if ev.Status.Terminal() {
			if reply, err := ChatResult(ev); err != nil || reply.Text == "" {
				t.Errorf("by message: %v", err)
			}
			break
		}
	}
	if _, err := r.NewRequest(map[string]any{"model": 3}); err != nil {
		t.Errorf("a model that is not a string falls to the only group: %v", err)
	}
	if r.Model("claude") == nil || r.Model("nobody") != nil {
		t.Error("Model by deployment")
	}
	if st := r.Stats(); st.HTTP["claude"].ByStatus[200] == 0 || st.HTTP["openai"].ByStatus[200] == 0 {
		t.Errorf("HTTP counts %+v", st.HTTP)
	}
	r.Close()
	if _, err := r.Chat(ctx, ChatRequest{Model: "chat"}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// What NewRouter refuses, naming the deployment.
func TestNewRouterErrors(t *testing.T) {
	c := runtime.DefaultConfig()
	cfg := runtime.DefaultRouterConfig(runtime.Deployment{Name: "a", Group: "g", Config: c}, runtime.Deployment{Name: "b", Group: "h", Config: c})
	rt, err := runtime.StartRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.StopNow(context.Background())
	good := EndpointConfig{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1:1/v1"}
	for _, c := range []struct {
		eps   map[string]EndpointConfig
		field string
	}{
		{map[string]EndpointConfig{"a": good}, `Endpoints["b"]`},
		{map[string]EndpointConfig{"a": good, "b": good, "c": good}, `Endpoints["c"]`},
		{map[string]EndpointConfig{"a": good, "b": {Provider: OpenAICompatible}}, `Endpoints["b"].BaseURL`},
	} {
		_, err := NewRouter(rt, c.eps)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%v: %v, want a ConfigError for %s", c.eps, err, c.field)
		}
	}
	if _, err := NewRouter(nil, nil); err == nil {
		t.Error("a nil router")
	}
	r, err := NewRouter(rt, map[string]EndpointConfig{"a": good, "b": good})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Submit(ctx, map[string]any{"messages": []any{}}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("no model with two groups: %v", err)
	}
	if _, err := r.Submit(ctx, map[string]any{"model": "nope"}); !errors.Is(err, runtime.ErrUnknownGroup) {
		t.Errorf("an unknown model: %v", err)
	}
	if r.Runtime() != rt {
		t.Error("Runtime")
	}
	r.Close()
}

// An API error says what it means for the deployment that returned it.
func TestAPIErrorVerdict(t *testing.T) {
	for _, c := range []struct {
		kind error
		want runtime.Verdict
	}{
		{ErrRateLimited, runtime.VerdictBusy},
		{ErrQuotaExhausted, runtime.VerdictDown},
		{ErrAuth, runtime.VerdictDown},
		{ErrServer, runtime.VerdictUnhealthy},
		{ErrConnection, runtime.VerdictUnhealthy},
		{ErrMalformedResponse, runtime.VerdictUnhealthy},
		{ErrBadRequest, runtime.VerdictFatal},
		{ErrStreamBroken, runtime.VerdictFatal},
		{ErrResponseTooLarge, runtime.VerdictFatal},
	} {
		e := &APIError{kind: c.kind}
		if got := e.Verdict(); got != c.want {
			t.Errorf("%v: %v, want %v", c.kind, got, c.want)
		}
		if got := runtime.DefaultClassify(fmt.Errorf("call: %w", e)); got != c.want {
			t.Errorf("%v through DefaultClassify: %v, want %v", c.kind, got, c.want)
		}
	}
}

// actorFunc is the props of an actor that passes the snapshots it
// receives to f.
func actorFunc(f func(messages.Event)) *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if ev, ok := ctx.Message().(messages.Event); ok {
			f(ev)
		}
	})
}
