// Basic shows the two ways to call a chat model through an executor:
// Model.Invoke sends a raw chat-completions payload and leaves the reply to
// you to decode, and Model.Chat sends a provider-neutral request and
// decodes the reply itself. For each it prints the reply, the request's
// final status and its API tokens: estimated before the call, and actual
// as the API reported them.
//
// It starts the built-in simulator, so it runs offline and without a key:
//
//	go run ./examples/basic
//
// To call a real OpenAI-compatible API instead, give its base URL and put
// the key in OPENAI_API_KEY:
//
//	go run ./examples/basic -url https://api.openai.com/v1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "basic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	flags := flag.NewFlagSet("basic", flag.ContinueOnError)
	baseURL := flags.String("url", "", "base URL of an OpenAI-compatible API (default: start the simulator)")
	modelName := flags.String("model", "gpt-4o-mini", "model to ask")
	if err := flags.Parse(args); err != nil {
		return err
	}

	apiKey := "" // empty: imodel reads OPENAI_API_KEY
	if *baseURL == "" {
		sim, err := simulator.New(simulator.Config{})
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

	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI,
		BaseURL:  *baseURL,
		APIKey:   apiKey,
		Model:    *modelName,
	})
	if err != nil {
		return err
	}
	defer model.Close()

	// 1. Invoke: any JSON payload for the endpoint; you decode the reply.
	resp, err := model.Invoke(ctx, map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": "Say hello."}},
		"max_tokens": 12,
	})
	if err != nil {
		return fmt.Errorf("invoke: %w", err)
	}
	var completion struct { // only the fields needed
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := resp.Decode(&completion); err != nil {
		return err
	}
	if len(completion.Choices) == 0 {
		return errors.New("invoke: no choices in the reply")
	}
	fmt.Fprintf(w, "Invoke (HTTP %d): %q\n", resp.StatusCode, completion.Choices[0].Message.Content)
	printOutcome(w, resp.Event)

	// 2. Chat: one request shape for OpenAI and Anthropic; the reply decoded.
	chat, err := model.Chat(ctx, imodel.ChatRequest{
		System:    "You answer in a few words.",
		Messages:  []imodel.Message{{Role: "user", Content: "Name three colours."}},
		MaxTokens: 12,
	})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	fmt.Fprintf(w, "Chat (finish %s): %q\n", chat.FinishReason, chat.Text)
	printOutcome(w, chat.Event)
	return nil
}

// printOutcome prints what a request's final snapshot says about it.
func printOutcome(w io.Writer, ev messages.Event) {
	fmt.Fprintf(w, "  status %s after %d attempt(s) in %v\n", ev.Status, ev.Attempt, ev.Timings().Total().Round(100*time.Microsecond))
	fmt.Fprintf(w, "  tokens estimated %d, actual %d\n", ev.Tokens.Estimated, ev.Tokens.Actual)
}
