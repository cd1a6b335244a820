package imodel_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// start runs a local simulator, whose replies are fixed by its seed, and an
// executor; stop releases both.
func start() (baseURL string, ex *runtime.Executor, stop func()) {
	sim, err := simulator.New(simulator.Config{Seed: 1, RequestsPerMinute: 600, TokensPerMinute: 100000})
	if err != nil {
		log.Fatal(err)
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = 600     // the provider's limit: 600 a minute,
	cfg.RequestInterval = time.Minute // started one every 100 ms (RequestBurst 0 means 1)
	ex, err = runtime.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return base + "/v1", ex, func() {
		ex.Stop(context.Background())
		sim.Close()
	}
}

func ExampleModel_Chat() {
	baseURL, ex, stop := start()
	defer stop()

	m, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI,
		BaseURL:  baseURL,
		APIKey:   "sk-test-example",
		Model:    "gpt-4o-mini",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	resp, err := m.Chat(context.Background(), imodel.ChatRequest{
		System:    "You are terse.",
		Messages:  []imodel.Message{{Role: "user", Content: "Say something."}},
		MaxTokens: 8,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Text)
	fmt.Println("finish:", resp.FinishReason)
	fmt.Printf("usage: %d in, %d out\n", resp.Usage.InputTokens, resp.Usage.OutputTokens)
	fmt.Printf("tokens: %d estimated, %d used\n", resp.Event.Tokens.Estimated, resp.Event.Tokens.Actual)
	fmt.Println(resp.Event.Status, "after", resp.Event.Attempt, "attempt")
	// Output:
	// Lorem dolor tempor nisi labore do ad.
	// finish: length
	// usage: 19 in, 8 out
	// tokens: 27 estimated, 27 used
	// COMPLETED after 1 attempt
}

func ExampleModel_Invoke() {
	baseURL, ex, stop := start()
	defer stop()

	m, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.Anthropic,
		BaseURL:  baseURL,
		APIKey:   "sk-test-example",
		Model:    "claude-sonnet-4-5",
		Defaults: map[string]any{"max_tokens": 64, "temperature": 0.2},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// The payload is the provider's own body; a field set by an option wins
	// over the payload, which wins over the config's defaults.
	resp, err := m.Invoke(context.Background(), map[string]any{
		"system":     "Answer in five words.",
		"messages":   []map[string]any{{"role": "user", "content": "What is an actor?"}},
		"max_tokens": 32,
	}, imodel.WithField("max_tokens", 5))
	if err != nil {
		log.Fatal(err)
	}
	var msg struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		StopReason string `json:"stop_reason"`
	}
	if err := resp.Decode(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode, msg.Content[0].Text, msg.StopReason)
	fmt.Println("endpoint:", resp.Event.Endpoint().Method, strings.TrimPrefix(resp.Event.Endpoint().URL, baseURL))
	fmt.Println("key shown as:", resp.Event.Endpoint().Header.Get("X-Api-Key"))
	// Output:
	// 200 Lorem sunt ex enim. max_tokens
	// endpoint: POST /messages
	// key shown as: [REDACTED]
}

func ExampleModel_Stream() {
	baseURL, ex, stop := start()
	defer stop()

	m, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI,
		BaseURL:  baseURL,
		APIKey:   "sk-test-example",
		Model:    "gpt-4o-mini",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	s, err := m.Stream(context.Background(), imodel.ChatRequest{
		Messages:  []imodel.Message{{Role: "user", Content: "Stream a few words."}},
		MaxTokens: 6,
	})
	if err != nil {
		log.Fatal(err)
	}
	for chunk := range s.Chunks() {
		fmt.Printf("%q\n", chunk)
	}
	resp, err := s.Wait(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Text)
	fmt.Printf("%s, %d tokens\n", resp.FinishReason, resp.Usage.TotalTokens)
	// Output:
	// "Lorem"
	// " sint"
	// " anim"
	// " amet"
	// " et"
	// "."
	// Lorem sint anim amet et.
	// length, 18 tokens
}

// An Azure OpenAI deployment: the resource's endpoint as BaseURL (here the
// simulator, which serves Azure's paths at its root), the deployment and
// the api-version. The key goes in the api-key header.
func ExampleNew_azure() {
	baseURL, ex, stop := start()
	defer stop()

	m, err := imodel.New(ex, imodel.EndpointConfig{
		Provider:   imodel.Azure,
		BaseURL:    strings.TrimSuffix(baseURL, "/v1"), // https://RESOURCE.openai.azure.com
		Deployment: "gpt-4o-mini",
		APIVersion: "2024-10-21",
		APIKey:     "azure-test-example", // default: $AZURE_OPENAI_API_KEY
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	resp, err := m.Chat(context.Background(), imodel.ChatRequest{
		Messages:  []imodel.Message{{Role: "user", Content: "Say something."}},
		MaxTokens: 4,
	})
	if err != nil {
		log.Fatal(err)
	}
	ep := resp.Event.Endpoint()
	fmt.Println(resp.Text)
	fmt.Println("endpoint:", strings.TrimPrefix(ep.URL, strings.TrimSuffix(baseURL, "/v1")))
	fmt.Println("key shown as:", ep.Header.Get("Api-Key"))
	// Output:
	// Lorem magna adipiscing.
	// endpoint: /openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21
	// key shown as: [REDACTED]
}

// A retry policy of other delays than the default keeps imodel's
// classification of what is worth another attempt.
func ExampleRetryable() {
	policy := runtime.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Retryable: imodel.Retryable}
	cfg := imodel.EndpointConfig{Provider: imodel.OpenAI, MaxAttempts: 5, Retry: policy}
	for _, err := range []error{messages.ErrTimeout, messages.ErrCancelled, messages.ErrStopped} {
		_, retry := cfg.Retry.Backoff(1, err)
		fmt.Printf("%v: retried %v\n", err, retry)
	}
	// Output:
	// lionactor: call timed out: retried true
	// lionactor: request cancelled: retried false
	// lionactor: executor stopped: retried false
}

// Two keys of one model, each at its own limit, and a fallback on
// another provider: the router starts each request where it can start
// soonest, and a chat whose model's keys fail goes on to the fallback, in
// its dialect. Each snapshot names the deployment of its attempt.
func ExampleNewRouter() {
	sim, err := simulator.New(simulator.Config{Seed: 1, KeyLimits: map[string]simulator.Limits{
		"sk-test-key-a": {RequestsPerMinute: 600}, "sk-test-key-b": {RequestsPerMinute: 1200},
	}})
	if err != nil {
		log.Fatal(err)
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()
	sim.SetFaults("sk-test-key-a", simulator.Faults{Overloaded: 1}) // key a answers 529
	sim.SetFaults("sk-test-key-b", simulator.Faults{Overloaded: 1}) // and so does key b

	limit := func(rpm int) runtime.Config {
		c := runtime.DefaultConfig()
		c.RequestsPerInterval, c.RequestInterval = rpm, time.Minute
		return c
	}
	cfg := runtime.DefaultRouterConfig(
		runtime.Deployment{Name: "key-a", Group: "gpt-4o-mini", Config: limit(600)},
		runtime.Deployment{Name: "key-b", Group: "gpt-4o-mini", Config: limit(1200)},
		runtime.Deployment{Name: "claude", Group: "claude-haiku", Model: "claude-3-5-haiku-latest", Config: limit(600)},
	)
	cfg.Fallbacks = map[string][]string{"gpt-4o-mini": {"claude-haiku"}}
	rt, err := runtime.StartRouter(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(context.Background())
	r, err := imodel.NewRouter(rt, map[string]imodel.EndpointConfig{
		"key-a":  {Provider: imodel.OpenAI, BaseURL: base + "/v1", APIKey: "sk-test-key-a"},
		"key-b":  {Provider: imodel.OpenAI, BaseURL: base + "/v1", APIKey: "sk-test-key-b"},
		"claude": {Provider: imodel.Anthropic, BaseURL: base + "/v1", APIKey: "sk-test-claude"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	reply, err := r.Chat(context.Background(), imodel.ChatRequest{
		Model:     "gpt-4o-mini",
		Messages:  []imodel.Message{{Role: "user", Content: "Say something."}},
		MaxTokens: 8,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("served by %s (%s) after %d attempts\n", reply.Event.Deployment, reply.Event.Model, reply.Event.Attempt)
	fmt.Println(reply.Text)
	// Output:
	// served by claude (claude-3-5-haiku-latest) after 3 attempts
	// Lorem amet do ipsum velit sit nulla.
}
