package imodel

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// longSystem is a system prompt long enough for the providers' prompt
// caches (over 1,024 tokens), as one instruction repeated over a batch is.
var longSystem = "You grade answers." + strings.Repeat(" Be strict and fair about every point.", 200)

// costOf is what u costs at p, worked out here rather than by Price.Cost:
// each input token at the price of its kind, each output token at the
// output price.
func costOf(p Price, u messages.Usage) float64 {
	plain := u.InputTokens - u.CachedInputTokens - u.CacheWriteTokens
	return (float64(plain)*p.Input + float64(u.CachedInputTokens)*p.CachedInput + float64(u.CacheWriteTokens)*p.CacheWrite + float64(u.OutputTokens)*p.Output) / 1e6
}

// checkCost checks a completed request's cost: estimated from its tokens
// (input at the input price, or the cache-write price for a request that
// marks its prompt for caching, the rest at the output price), actual from
// the usage its reply reported.
func checkCost(t *testing.T, what string, ev messages.Event, price Price, u messages.Usage, input int, cacheWrites bool) {
	t.Helper()
	if ev.Status != messages.StatusCompleted {
		t.Fatalf("%s: %v %v", what, ev.Status, ev.Err())
	}
	inputPrice := price.Input
	if cacheWrites {
		inputPrice = price.CacheWrite // the most an input token may cost
	}
	wantEstimate := (float64(input)*inputPrice + float64(ev.Tokens.Estimated-input)*price.Output) / 1e6
	if !ev.Cost().Priced || !sameUSD(ev.Cost().Estimated, wantEstimate) {
		t.Errorf("%s: estimated %+v, want %.8f", what, ev.Cost(), wantEstimate)
	}
	if want := costOf(price, u); !ev.Cost().HasActual || !sameUSD(ev.Cost().Actual, want) {
		t.Errorf("%s: actual %.8f, want %.8f for %+v", what, ev.Cost().Actual, want, u)
	}
	if ev.Cost().Actual > ev.Cost().Estimated {
		t.Errorf("%s: actual %.8f above the estimate %.8f", what, ev.Cost().Actual, ev.Cost().Estimated)
	}
}

// TestOpenAICostCountsCachedAndReasoningTokens: a reasoning model under a
// long system prompt, asked twice: the second reply's usage has cached
// input and reasoning tokens, decoded and priced at their rates, the
// same through Chat, Stream and the generic Invoke.
func TestOpenAICostCountsCachedAndReasoningTokens(t *testing.T) {
	e := startSim(t, simulator.Config{ReasoningTokens: 24, CompletionTokens: 12})
	ex := startExecutor(t, nil)
	cfg := openAIConfig(e)
	cfg.Model = "o4-mini"
	m := newModel(t, ex, cfg)
	price, _ := DefaultPrices().Lookup(OpenAI, "o4-mini")
	req := func(user string) ChatRequest {
		return ChatRequest{System: longSystem, Messages: []Message{{Role: "user", Content: user}}, MaxTokens: 100}
	}
	est, err := mustEstimator(t, cfg).Estimate(mustPayload(t, m, req("First.")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Chat(ctx, req("First.")); err != nil {
		t.Fatal(err)
	}
	reply, err := m.Chat(ctx, req("Second."))
	if err != nil {
		t.Fatal(err)
	}
	u := reply.Usage
	if u.CachedInputTokens < 1024 || u.ReasoningTokens != 24 || u.OutputTokens != 24+12 || u.InputTokens != est.InputTokens-tokensOf("First.")+tokensOf("Second.") {
		t.Fatalf("usage %+v: want cached input, 24 reasoning of 36 output tokens", u)
	}
	checkCost(t, "Chat", reply.Event, price, u, u.InputTokens, false)

	s, err := m.Stream(ctx, req("Second."))
	if err != nil {
		t.Fatal(err)
	}
	sr, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Usage.CachedInputTokens < u.CachedInputTokens || sr.Usage.ReasoningTokens != 24 {
		t.Errorf("stream usage %+v", sr.Usage)
	}
	checkCost(t, "Stream", sr.Event, price, sr.Usage, sr.Usage.InputTokens, false)

	resp, err := m.Invoke(ctx, mustPayload(t, m, req("Third.")))
	if err != nil {
		t.Fatal(err)
	}
	var body wire.ChatResponse
	if err := resp.Decode(&body); err != nil {
		t.Fatal(err)
	}
	checkCost(t, "Invoke", resp.Event, price, openAIUsage(body.Usage), body.Usage.PromptTokens, false)
}

// TestAnthropicCostCountsCacheWritesAndReads: a system prompt marked for
// caching is written by the first request and read by the next, each
// priced at its rate, through Chat, Invoke and Stream.
func TestAnthropicCostCountsCacheWritesAndReads(t *testing.T) {
	e := startSim(t, simulator.Config{CompletionTokens: 12})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, anthropicConfig(e))
	price, _ := DefaultPrices().Lookup(Anthropic, claudeModel)
	system := []map[string]any{{"type": "text", "text": longSystem, "cache_control": map[string]string{"type": "ephemeral"}}}
	req := func(user string) ChatRequest {
		return ChatRequest{Messages: []Message{{Role: "user", Content: user}}, MaxTokens: 50, Extra: map[string]any{"system": system}}
	}
	first, err := m.Chat(ctx, req("First."))
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.Chat(ctx, req("Second."))
	if err != nil {
		t.Fatal(err)
	}
	if first.Usage.CacheWriteTokens < 1024 || first.Usage.CachedInputTokens != 0 {
		t.Errorf("first usage %+v: want the system prompt written", first.Usage)
	}
	if second.Usage.CachedInputTokens != first.Usage.CacheWriteTokens || second.Usage.CacheWriteTokens != 0 {
		t.Errorf("second usage %+v: want the system prompt read", second.Usage)
	}
	for _, r := range []*ChatResponse{first, second} {
		if r.Usage.InputTokens != r.Event.Tokens.Estimated-50 || r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
			t.Errorf("usage %+v: input counts the cached tokens, as the estimate does (%d)", r.Usage, r.Event.Tokens.Estimated-50)
		}
		checkCost(t, "Chat", r.Event, price, r.Usage, r.Usage.InputTokens, true)
	}
	if second.Event.Cost().Actual >= first.Event.Cost().Actual {
		t.Errorf("reading the cache (%.6f) costs less than writing it (%.6f)", second.Event.Cost().Actual, first.Event.Cost().Actual)
	}

	resp, err := m.Invoke(ctx, mustPayload(t, m, req("Third.")))
	if err != nil {
		t.Fatal(err)
	}
	var body wire.MessagesResponse
	if err := resp.Decode(&body); err != nil {
		t.Fatal(err)
	}
	checkCost(t, "Invoke", resp.Event, price, anthropicUsage(body.Usage), anthropicUsage(body.Usage).InputTokens, true)

	s, err := m.Stream(ctx, req("Fourth."))
	if err != nil {
		t.Fatal(err)
	}
	sr, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Usage.CachedInputTokens != second.Usage.CachedInputTokens {
		t.Errorf("stream usage %+v", sr.Usage)
	}
	checkCost(t, "Stream", sr.Event, price, sr.Usage, sr.Usage.InputTokens, true)
}

func TestEmbeddingsCostTheirInput(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: e.URL + "/v1", APIKey: testKey, Model: embedModel})
	reply, err := m.Embed(ctx, []string{"one two three", "four"})
	if err != nil {
		t.Fatal(err)
	}
	price, _ := DefaultPrices().Lookup(OpenAI, embedModel)
	checkCost(t, "Embed", reply.Event, price, reply.Usage, reply.Usage.InputTokens, false)
	if want := float64(reply.Usage.InputTokens) * 0.02 / 1e6; !sameUSD(reply.Event.Cost().Actual, want) {
		t.Errorf("cost %v, want %v", reply.Event.Cost().Actual, want)
	}
}

// An unknown model's cost is unknown, never $0; a price file gives it one.
func TestUnknownModelHasNoPriceUntilOneIsGiven(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	cfg := openAIConfig(e)
	cfg.Model = "in-house-model-7"
	reply, err := newModel(t, ex, cfg).Chat(ctx, hello("Hi", 8))
	if err != nil {
		t.Fatal(err)
	}
	if c := reply.Event.Cost(); c.Priced || c.HasActual || c.Estimated != 0 || c.Actual != 0 {
		t.Errorf("unknown model: cost %+v, want price unknown", c)
	}
	if !reply.Event.Tokens.HasActual {
		t.Error("its tokens are still counted")
	}

	file := filepath.Join(t.TempDir(), "prices.yaml")
	writeFile(t, file, "providers:\n  openai:\n    models:\n      in-house-model-7: {input: 1, output: 2}\n")
	prices, err := LoadPrices(file)
	if err != nil {
		t.Fatal(err)
	}
	reply, err = newModel(t, ex, cfg, WithPrices(prices)).Chat(ctx, hello("Hi", 8))
	if err != nil {
		t.Fatal(err)
	}
	u := reply.Usage
	if c := reply.Event.Cost(); !c.Priced || !sameUSD(c.Actual, float64(u.InputTokens+2*u.OutputTokens)/1e6) {
		t.Errorf("priced by the file: cost %+v for usage %+v", c, u)
	}
}

// Azure is priced by its deployment's name (or the request's model) under
// provider azure, which the embedded table leaves to a price file.
func TestAzureIsPricedByTheDeployment(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	cfg := EndpointConfig{Provider: Azure, BaseURL: e.URL, APIKey: testKey, Deployment: "prod-mini", APIVersion: "2024-10-21"}
	reply, err := newModel(t, ex, cfg).Chat(ctx, hello("Hi", 8))
	if err != nil {
		t.Fatal(err)
	}
	if reply.Event.Cost().Priced {
		t.Errorf("Azure without a price file: %+v", reply.Event.Cost())
	}
	file := filepath.Join(t.TempDir(), "prices.yaml")
	writeFile(t, file, "providers:\n  azure:\n    models:\n      prod-mini: {input: 0.165, cached_input: 0.083, output: 0.66}\n")
	prices, err := LoadPrices(file)
	if err != nil {
		t.Fatal(err)
	}
	reply, err = newModel(t, ex, cfg, WithPrices(prices)).Chat(ctx, ChatRequest{System: longSystem, Messages: []Message{{Role: "user", Content: "Hi"}}, MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	price, _ := prices.Lookup(Azure, "prod-mini")
	checkCost(t, "Azure", reply.Event, price, reply.Usage, reply.Usage.InputTokens, false)
}

func mustEstimator(t *testing.T, cfg EndpointConfig) *Estimator {
	t.Helper()
	est, err := NewEstimator(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return est
}

// mustPayload is the provider's body of a chat request, for Invoke.
func mustPayload(t *testing.T, m *Model, r ChatRequest) map[string]any {
	t.Helper()
	p, err := m.chatPayload(r, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tokensOf(s string) int { return tokens.ForModel(openAIModel).Count(s) }
