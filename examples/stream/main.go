// Stream shows a streamed chat: the reply is printed chunk by chunk as the
// provider sends it, then the number of chunks and the token usage. The
// same code speaks OpenAI's and Anthropic's dialects; pick one with
// -provider. A streamed request is admitted by the executor like any other
// (rate limits, concurrency cap) and holds its caller until the stream ends.
//
// It starts the built-in simulator, so it runs offline and without a key:
//
//	go run ./examples/stream
//	go run ./examples/stream -provider anthropic
//
// To call a real API instead, give its base URL and put the key in
// OPENAI_API_KEY or ANTHROPIC_API_KEY:
//
//	go run ./examples/stream -provider anthropic -url https://api.anthropic.com/v1
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

// defaultModels are the models asked unless -model says otherwise.
var defaultModels = map[imodel.Provider]string{
	imodel.OpenAI:    "gpt-4o-mini",
	imodel.Anthropic: "claude-3-5-haiku-latest",
}

func run(ctx context.Context, w io.Writer, args []string) error {
	flags := flag.NewFlagSet("stream", flag.ContinueOnError)
	provider := flags.String("provider", "openai", "API dialect: openai or anthropic")
	baseURL := flags.String("url", "", "base URL of the API (default: start the simulator)")
	modelName := flags.String("model", "", "model to ask (default: one of the provider's)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	p := imodel.Provider(*provider)
	if _, ok := defaultModels[p]; !ok {
		return fmt.Errorf("unknown provider %q: want openai or anthropic", p)
	}
	if *modelName == "" {
		*modelName = defaultModels[p]
	}

	apiKey := "" // empty: imodel reads OPENAI_API_KEY or ANTHROPIC_API_KEY
	if *baseURL == "" {
		sim, err := simulator.New(simulator.Config{CompletionTokens: 24})
		if err != nil {
			return err
		}
		defer sim.Close()
		addr, err := sim.Start("127.0.0.1:0")
		if err != nil {
			return err
		}
		*baseURL, apiKey = addr+"/v1", "sk-example-key" // the simulator takes any key
	}

	ex, err := runtime.Start(runtime.DefaultConfig())
	if err != nil {
		return err
	}
	defer ex.Stop(context.Background())

	model, err := imodel.New(ex, imodel.EndpointConfig{Provider: p, BaseURL: *baseURL, APIKey: apiKey, Model: *modelName})
	if err != nil {
		return err
	}
	defer model.Close()

	stream, err := model.Stream(ctx, imodel.ChatRequest{
		Messages:  []imodel.Message{{Role: "user", Content: "Tell me a very short story."}},
		MaxTokens: 64,
	})
	if err != nil {
		return err
	}
	chunks := 0
	for chunk := range stream.Chunks() { // as they arrive
		fmt.Fprint(w, chunk)
		chunks++
	}
	fmt.Fprintln(w)

	reply, err := stream.Wait(ctx) // the whole reply, and how the request ended
	if err != nil {
		return fmt.Errorf("after %d chunks: %w", chunks, err)
	}
	fmt.Fprintf(w, "%s %s: %d chunks, finish reason %q\n", p, reply.Model, chunks, reply.FinishReason)
	fmt.Fprintf(w, "usage: %d input + %d output = %d tokens\n",
		reply.Usage.InputTokens, reply.Usage.OutputTokens, reply.Usage.TotalTokens)
	return nil
}
