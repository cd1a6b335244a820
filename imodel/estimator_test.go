package imodel

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// TestEstimatorCountsAsTheModelCharges: without a key or an executor, an
// Estimator gives every request the tokens and estimated cost the Model
// gives it when it sends it.
func TestEstimatorCountsAsTheModelCharges(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	payloads := []string{
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}],"max_tokens":20}`,
		`{"messages":[{"role":"user","content":"No limit on the reply."}]}`,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"Two replies."}],"max_completion_tokens":7,"n":2}`,
		`{"model":"unpriced-model","messages":[{"role":"user","content":"Who knows."}],"max_tokens":5}`,
	}
	cfg := openAIConfig(e)
	keyless := cfg
	keyless.APIKey = ""
	est, err := NewEstimator(keyless, nil)
	if err != nil {
		t.Fatalf("an estimator needs no key: %v", err)
	}
	m := newModel(t, ex, cfg)
	for _, p := range payloads {
		var payload map[string]any
		if err := json.Unmarshal([]byte(p), &payload); err != nil {
			t.Fatal(err)
		}
		got, err := est.Estimate(payload)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := m.Invoke(ctx, payload)
		if err != nil {
			t.Fatal(err)
		}
		ev := resp.Event
		if got.Tokens() != ev.Tokens.Estimated || !sameUSD(got.Cost(), ev.Cost().Estimated) || got.Priced != ev.Cost().Priced {
			t.Errorf("%s: estimator %+v (%d tokens, $%.8f); the model charged %d tokens, $%.8f", p, got, got.Tokens(), got.Cost(), ev.Tokens.Estimated, ev.Cost().Estimated)
		}
		if m.Estimate(payload) != ev.Tokens.Estimated {
			t.Errorf("%s: Model.Estimate %d, charged %d", p, m.Estimate(payload), ev.Tokens.Estimated)
		}
	}
	got, _ := est.Estimate(map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x"}}})
	if got.Model != openAIModel || got.MaxTokensSet || got.OutputTokens != tokens.DefaultMaxTokens {
		t.Errorf("defaults: %+v", got)
	}
	if p, ok := est.Price(openAIModel); !ok || p.Input != 0.15 {
		t.Errorf("Price = %+v %v", p, ok)
	}
}

func TestEstimatorRefusesWhatTheModelWould(t *testing.T) {
	est, err := NewEstimator(EndpointConfig{Provider: Generic, BaseURL: "http://127.0.0.1:1", Path: "/items/{id}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := est.Estimate(map[string]any{"name": "x"}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("a path parameter without its field: %v", err)
	}
	if _, err := est.Estimate(map[string]any{"id": 1, "bad": func() {}}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("a payload that is not JSON: %v", err)
	}
	got, err := est.Estimate(map[string]any{"id": 7, "model": "m"})
	if err != nil || got.Tokens() != 0 || got.Model != "m" || got.Priced {
		t.Errorf("generic: %+v %v", got, err)
	}
	if _, err := NewEstimator(EndpointConfig{Provider: "nope"}, nil); err == nil {
		t.Error("an invalid endpoint was accepted")
	}
	// Anthropic messages that mark the prompt for caching may be billed at
	// the cache-write price: their estimate says so.
	an, err := NewEstimator(EndpointConfig{Provider: Anthropic, Model: claudeModel}, nil)
	if err != nil {
		t.Fatal(err)
	}
	marked, _ := an.Estimate(map[string]any{"max_tokens": 10, "system": []any{map[string]any{"type": "text", "text": "Rules.", "cache_control": map[string]any{"type": "ephemeral"}}},
		"messages": []any{map[string]any{"role": "user", "content": "Hi"}}})
	plain, _ := an.Estimate(map[string]any{"max_tokens": 10, "system": "Rules.", "messages": []any{map[string]any{"role": "user", "content": "Hi"}}})
	if !marked.CacheWrites || plain.CacheWrites || marked.Tokens() != plain.Tokens() || !(marked.Cost() > plain.Cost()) {
		t.Errorf("marked %+v $%v, plain %+v $%v", marked, marked.Cost(), plain, plain.Cost())
	}
}
