package batchapi_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// Three questions through Anthropic's Message Batches, against the
// simulator, whose batches end as soon as they are created.
func ExampleDo() {
	sim, _ := simulator.New(simulator.Config{CompletionTokens: 5, Seed: 1})
	base, _ := sim.Start("127.0.0.1:0")
	defer sim.Close()
	ex, _ := runtime.Start(runtime.DefaultConfig()) // runs only what goes online
	defer ex.Stop(context.Background())
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.Anthropic, BaseURL: base + "/v1", APIKey: "sk-ant-local", Model: "claude-sonnet-4-5",
	})
	if err != nil {
		panic(err)
	}
	defer model.Close()
	dir, _ := os.MkdirTemp("", "batchapi-example-")
	defer os.RemoveAll(dir)

	var requests []batchapi.Request
	for i, q := range []string{"Why is the sky blue?", "What is an actor?", "Name a prime."} {
		requests = append(requests, batchapi.Request{
			Key:     fmt.Sprintf("q%d", i),
			Payload: map[string]any{"max_tokens": 100, "messages": []any{map[string]any{"role": "user", "content": q}}},
		})
	}
	cfg := batchapi.Config{
		Journal: filepath.Join(dir, "questions.batches.jsonl"), // a rerun after a crash resumes from it
		Poll:    10 * time.Millisecond,                         // 30 s against a real provider
	}
	outcomes, stats, err := batchapi.Do(context.Background(), model, cfg, requests)
	if err != nil {
		panic(err)
	}
	for _, o := range outcomes {
		fmt.Println(o.Key, o.Event.Status, o.Event.Tokens.Actual, "tokens")
	}
	fmt.Printf("%d batch created, %d ended\n", stats.Created, stats.Ended)
	// Output:
	// q0 COMPLETED 18 tokens
	// q1 COMPLETED 17 tokens
	// q2 COMPLETED 16 tokens
	// 1 batch created, 1 ended
}

// Run delivers each outcome as its batch ends; with a journal, a run that
// is interrupted leaves its batches running, and the next run with the
// same journal and requests collects them instead of creating new ones.
func ExampleRun() {
	sim, _ := simulator.New(simulator.Config{CompletionTokens: 5, Seed: 1})
	base, _ := sim.Start("127.0.0.1:0")
	defer sim.Close()
	ex, _ := runtime.Start(runtime.DefaultConfig())
	defer ex.Stop(context.Background())
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: base + "/v1", APIKey: "sk-local", Model: "gpt-4o-mini",
	})
	if err != nil {
		panic(err)
	}
	defer model.Close()
	dir, _ := os.MkdirTemp("", "batchapi-example-")
	defer os.RemoveAll(dir)

	requests := func(yield func(batchapi.Request) bool) {
		for i := range 250 {
			q := batchapi.Request{Key: fmt.Sprintf("row-%d", i), Payload: map[string]any{
				"messages": []any{map[string]any{"role": "user", "content": fmt.Sprintf("Summarise record %d.", i)}},
			}}
			if !yield(q) {
				return
			}
		}
	}
	completed := 0
	cfg := batchapi.Config{Journal: filepath.Join(dir, "rows.batches.jsonl"), Poll: 10 * time.Millisecond, MaxRequests: 100}
	stats, err := batchapi.Run(context.Background(), model, cfg, requests, func(o batchapi.Outcome) {
		if o.Event.Status == messages.StatusCompleted {
			completed++
		}
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d completed in %d batches\n", completed, stats.Created)
	// Output:
	// 250 completed in 3 batches
}
