package imodel

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// recordingExecutor is an Executor of the test's own: it hands each request
// to one of two runtime executors in turn, as a router would, and records
// what the model asked of it.
type recordingExecutor struct {
	to []*runtime.Executor

	mu     sync.Mutex
	reqs   []messages.Request
	pauses []time.Time
}

func (r *recordingExecutor) Submit(ctx context.Context, req messages.Request) (*runtime.Handle, error) {
	r.mu.Lock()
	ex := r.to[len(r.reqs)%len(r.to)]
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return ex.Submit(ctx, req)
}

func (r *recordingExecutor) PauseUntil(t time.Time) {
	r.mu.Lock()
	r.pauses = append(r.pauses, t)
	r.mu.Unlock()
}

// TestModelOnItsOwnExecutor runs every kind of call of a model through an
// Executor that is not a *runtime.Executor: each reaches it as one
// request, the rate-limit headers reach its PauseUntil, and the model's
// transport is sized without a Config to read.
func TestModelOnItsOwnExecutor(t *testing.T) {
	e := startSim(t, simulator.Config{TokensPerMinute: 10000})
	rex := &recordingExecutor{to: []*runtime.Executor{startExecutor(t, nil), startExecutor(t, nil)}}
	m := newModel(t, rex, openAIConfig(e))
	if tr, ok := m.client.Transport.(*http.Transport); !ok || tr.MaxIdleConnsPerHost != NewTransport(0).MaxIdleConnsPerHost {
		t.Errorf("transport %#v, want NewTransport(0)'s", m.client.Transport)
	}

	if _, err := m.Invoke(ctx, chatPayloadOf("invoke")); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if _, err := m.Chat(ctx, hello("chat", 4)); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	embedder := newModel(t, rex, EndpointConfig{Provider: OpenAI, BaseURL: e.URL + "/v1", APIKey: testKey, Model: embedModel})
	if _, err := embedder.Embed(ctx, []string{"a", "b"}); err != nil {
		t.Fatalf("Embed: %v", err)
	}
	s, err := m.Stream(ctx, hello("stream", 4))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if _, err := s.Wait(ctx); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	// A request that leaves about 150 of the 10000 tokens (the calls above
	// spent some 50), under the watermark of 500 even after two seconds of
	// refill, pauses the executor the model holds.
	prompt := tokens.ForModel(openAIModel).ChatPrompt([]tokens.Message{{Role: "user", Text: "spend"}})
	if _, err := m.Chat(ctx, hello("spend", 9800-prompt)); err != nil {
		t.Fatalf("Chat: %v", err)
	}

	rex.mu.Lock()
	defer rex.mu.Unlock()
	wantPaths := []string{"/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/chat/completions", "/v1/chat/completions"}
	if len(rex.reqs) != len(wantPaths) {
		t.Fatalf("%d requests submitted, want %d", len(rex.reqs), len(wantPaths))
	}
	for i, r := range rex.reqs {
		if got := r.Endpoint.URL; got != e.URL+wantPaths[i] || r.MaxAttempts != fastAttempts || r.Retry == nil {
			t.Errorf("request %d: %s, %d attempts, retry %v", i, got, r.MaxAttempts, r.Retry)
		}
	}
	if len(rex.pauses) == 0 {
		t.Error("the low budget did not reach the executor's PauseUntil")
	}
}

func TestNewNilExecutor(t *testing.T) {
	var none *runtime.Executor
	for _, ex := range []Executor{nil, none} {
		_, err := New(ex, EndpointConfig{Provider: OpenAI, APIKey: testKey})
		checkConfigError(t, err, "executor")
	}
}
