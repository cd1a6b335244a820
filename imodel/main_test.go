package imodel

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestMain checks that no test leaves a goroutine behind: executors,
// simulators, connections and streams must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Test keys. They are made up and only the simulator accepts them.
const (
	testKey      = "sk-test-imodel-4f1c2b7e9a"
	testAntKey   = "sk-test-ant-imodel-8d3e5a1c"
	openAIModel  = "gpt-4o-mini"
	claudeModel  = "claude-sonnet-4-5"
	embedModel   = "text-embedding-3-small"
	testSeed     = 42
	pollInterval = time.Millisecond
)

var ctx = context.Background()

// fastRetry keeps retried tests quick: backoff below 5 ms, over
// fastAttempts attempts.
var fastRetry = runtime.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Retryable: Retryable}

const fastAttempts = 3

// simEnv is a simulator on the loopback interface that records the
// requests it receives.
type simEnv = simtest.Recording

// startSim starts a simulator for cfg, seeded with testSeed unless cfg
// sets a seed, stopped when the test ends.
func startSim(t testing.TB, cfg simulator.Config) *simEnv {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = testSeed
	}
	return simtest.StartRecording(t, cfg, nil)
}

// eventLog is an executor Observer that keeps every snapshot.
type eventLog struct {
	mu     sync.Mutex
	events []messages.Event
}

func (l *eventLog) observe(ev messages.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []messages.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// of returns the snapshots of one request, in order.
func (l *eventLog) of(ev messages.Event) []messages.Event {
	var out []messages.Event
	for _, e := range l.all() {
		if e.ID == ev.ID {
			out = append(out, e)
		}
	}
	return out
}

// startExecutor starts an executor without a request limit, with 8
// callers, adjusted by mod; it is stopped when the test ends.
func startExecutor(t testing.TB, mod func(*runtime.Config)) *runtime.Executor {
	t.Helper()
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.Concurrency = 8
	if mod != nil {
		mod(&cfg)
	}
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatalf("runtime.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := ex.StopNow(context.Background()); err != nil {
			t.Errorf("StopNow: %v", err)
		}
	})
	return ex
}

// newModel returns a model closed when the test ends.
func newModel(t testing.TB, ex Executor, cfg EndpointConfig, opts ...Option) *Model {
	t.Helper()
	m, err := New(ex, cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// openAIConfig is an OpenAI endpoint on the simulator.
func openAIConfig(e *simEnv) EndpointConfig {
	return EndpointConfig{Provider: OpenAI, BaseURL: e.URL + "/v1", APIKey: testKey, Model: openAIModel, MaxAttempts: fastAttempts, Retry: fastRetry}
}

// anthropicConfig is an Anthropic endpoint on the simulator.
func anthropicConfig(e *simEnv) EndpointConfig {
	return EndpointConfig{Provider: Anthropic, BaseURL: e.URL + "/v1", APIKey: testAntKey, Model: claudeModel, MaxAttempts: fastAttempts, Retry: fastRetry}
}

// setup starts a simulator and an executor and returns a model of each
// chat provider on them.
func setup(t testing.TB, simCfg simulator.Config, mod func(*runtime.Config)) (e *simEnv, ex *runtime.Executor, oa, an *Model) {
	t.Helper()
	e = startSim(t, simCfg)
	ex = startExecutor(t, mod)
	return e, ex, newModel(t, ex, openAIConfig(e)), newModel(t, ex, anthropicConfig(e))
}

// fault returns the options that make the simulator answer the first
// times attempts of a request with fault; times 0 means every attempt.
func fault(kind string, times int, id string) []CallOption {
	opts := []CallOption{WithHeader(simulator.HeaderFault, kind)}
	if times > 0 {
		opts = append(opts, WithHeader(simulator.HeaderFaultTimes, strconv.Itoa(times)), WithHeader(simulator.HeaderRequestID, id))
	}
	return opts
}

// hello is a one-message chat.
func hello(text string, maxTokens int) ChatRequest {
	return ChatRequest{Messages: []Message{{Role: "user", Content: text}}, MaxTokens: maxTokens}
}

// chatPayloadOf is a raw OpenAI chat payload for Invoke.
func chatPayloadOf(text string) map[string]any {
	return map[string]any{"messages": []map[string]any{{"role": "user", "content": text}}, "max_tokens": 8}
}

// collect walks a handle's snapshots to the terminal one.
func collect(h *runtime.Handle) []messages.Event {
	var out []messages.Event
	for ev := range h.Events() {
		out = append(out, ev)
	}
	return out
}

// statuses lists the states of snapshots.
func statuses(evs []messages.Event) []messages.RequestStatus {
	out := make([]messages.RequestStatus, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

// callStarts returns the start of each attempt, by attempt number.
func callStarts(evs []messages.Event) map[int]time.Time {
	out := map[int]time.Time{}
	for _, ev := range evs {
		if ev.Status == messages.StatusCalling {
			out[ev.Attempt] = ev.Timings().CallStarted
		}
	}
	return out
}

// barrier runs a call that costs nothing through ex and waits for it. The
// queue sends its permit request to the limiter after every message it sent
// for earlier outcomes (token reconciliation, pauses), so once it has run
// the limiter has applied those.
func barrier(t testing.TB, ex *runtime.Executor) messages.Event {
	t.Helper()
	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{}, nil
	})})
	if err != nil {
		t.Fatalf("barrier: %v", err)
	}
	ev, err := h.Wait(context.Background())
	if err != nil || ev.Status != messages.StatusCompleted {
		t.Fatalf("barrier: %v %v", ev.Status, err)
	}
	return ev
}

// clockSlack absorbs the difference between the monotonic clock, by which
// the limiter keeps its pause, and the wall clock of Stats().PausedUntil,
// when the two are compared.
const clockSlack = time.Millisecond

// waitPaused waits until the executor reports a pause and returns its end.
// The limiter applies a pause asynchronously; every pause a test provokes
// lasts far longer than this wait takes.
func waitPaused(t testing.TB, ex *runtime.Executor) time.Time {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if p := ex.Stats().PausedUntil; !p.IsZero() {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("the executor never paused")
		}
		<-tick.C
	}
}
