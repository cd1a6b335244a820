// Embed runs an executor inside an actor system of your own and drives it
// by messages alone, as any actor of that system can: a user actor sends
// the executor a messages.Submit per prompt and receives, as messages,
// every snapshot of each request (a messages.Event per status) or a
// messages.Rejected. It prints each status transition, then each result,
// then the executor's stats, asked for with a messages.StatsQuery.
//
// A request sent by message carries its own messages.Call; here the call
// posts to a chat-completions endpoint with a plain http.Client.
//
// It starts the built-in simulator, so it runs offline and without a key:
//
//	go run ./examples/embed
//
// To call a real OpenAI-compatible API instead, give its base URL and put
// the key in OPENAI_API_KEY:
//
//	go run ./examples/embed -url https://api.openai.com/v1
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	flags := flag.NewFlagSet("embed", flag.ContinueOnError)
	baseURL := flags.String("url", "", "base URL of an OpenAI-compatible API (default: start the simulator)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	apiKey := os.Getenv("OPENAI_API_KEY")
	if *baseURL == "" {
		sim, err := simulator.New(simulator.Config{Latency: 10 * time.Millisecond})
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

	// Your actor system; the executor's actors live in it, under its root.
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		// protoactor keeps a goroutine for one throttle interval after a
		// dead letter: keep it short, so that none outlives Shutdown.
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()

	cfg := runtime.DefaultConfig()
	cfg.Concurrency = 2 // two calls at a time: the others wait QUEUED
	ex, err := runtime.Spawn(system.Root, cfg)
	if err != nil {
		return err
	}
	defer ex.Stop(context.Background()) // stops the executor's actors, not the system

	client := &http.Client{Timeout: time.Minute}
	defer client.CloseIdleConnections()
	done := make(chan struct{})
	system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &user{
			executor: ex.PID(),
			prompts:  []string{"Say hello.", "Name a colour.", "Count to three.", "Say goodbye."},
			newCall:  func(prompt string) messages.Call { return chatCall(client, *baseURL, apiKey, prompt) },
			secrets:  []string{apiKey},
			w:        w,
			done:     done,
		}
	}))
	select {
	case <-done:
	case <-ctx.Done():
		ex.StopNow(context.Background()) // cancels what is left
		return ctx.Err()
	}

	// Stats by message too; ex.Stats() gives the same without a round trip.
	reply, err := system.Root.RequestFuture(ex.PID(), &messages.StatsQuery{}, 5*time.Second).Result()
	if err != nil {
		return err
	}
	if st, ok := reply.(messages.Stats); ok {
		fmt.Fprintf(w, "stats: %d accepted, %d completed, %d failed\n", st.Accepted, st.Completed, st.Failed)
	}
	return nil
}

// user is an actor of your own that submits prompts to the executor and
// follows each request by the messages it gets back.
type user struct {
	executor *actor.PID
	prompts  []string
	newCall  func(prompt string) messages.Call
	secrets  []string
	w        io.Writer
	done     chan<- struct{} // closed once every request has ended

	names map[uuid.UUID]string // each request's prompt, by the ID chosen at submit
	ended int
}

// Receive implements actor.Actor.
func (u *user) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		u.names = make(map[uuid.UUID]string, len(u.prompts))
		for _, prompt := range u.prompts {
			id := uuid.New()
			u.names[id] = prompt
			// Request, not Send: the executor replies to the sender.
			ctx.Request(u.executor, &messages.Submit{ID: id, Request: messages.Request{
				Call:    u.newCall(prompt),
				Secrets: u.secrets, // scrubbed from the errors the snapshots carry
			}})
		}
	case messages.Event:
		fmt.Fprintf(u.w, "%-17q #%d %s\n", u.names[m.ID], m.Seq, m.Status)
		if m.Status.Terminal() {
			u.report(m)
		}
	case *messages.Rejected:
		fmt.Fprintf(u.w, "%-17q rejected: %v\n", u.names[m.ID], m.Err)
		u.end()
	}
}

// report prints a request's result from its terminal snapshot.
func (u *user) report(ev messages.Event) {
	if resp, ok := ev.Response(); ok && ev.Status == messages.StatusCompleted {
		fmt.Fprintf(u.w, "%-17q => %q (%d tokens)\n", u.names[ev.ID], resp.Value, ev.Tokens.Actual)
	} else {
		fmt.Fprintf(u.w, "%-17q => %s: %v\n", u.names[ev.ID], ev.Status, ev.Err())
	}
	u.end()
}

func (u *user) end() {
	if u.ended++; u.ended == len(u.prompts) {
		close(u.done)
	}
}

// chatCall returns a call that asks the chat-completions endpoint under
// baseURL to answer prompt. Each attempt sends the request anew, under the
// context the executor gives it.
func chatCall(client *http.Client, baseURL, apiKey, prompt string) messages.Call {
	body, _ := json.Marshal(map[string]any{
		"model":      "gpt-4o-mini",
		"max_tokens": 8,
		"messages":   []map[string]string{{"role": "user", "content": prompt}},
	})
	return messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/chat/completions", bytes.NewReader(body))
		if err != nil {
			return messages.Result{}, err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return messages.Result{}, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		res := messages.Result{StatusCode: resp.StatusCode, Header: resp.Header, Body: raw}
		if err != nil {
			return res, err
		}
		if resp.StatusCode != http.StatusOK {
			return res, fmt.Errorf("chat completions: %s", resp.Status)
		}
		var reply struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(raw, &reply); err != nil || len(reply.Choices) == 0 {
			return res, fmt.Errorf("chat completions: unexpected reply %.60q", raw)
		}
		res.Value = reply.Choices[0].Message.Content
		res.Usage = &messages.Usage{ // reported to the executor's token bucket
			InputTokens:  reply.Usage.PromptTokens,
			OutputTokens: reply.Usage.CompletionTokens,
			TotalTokens:  reply.Usage.TotalTokens,
		}
		return res, nil
	})
}
