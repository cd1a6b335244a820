// Supervise shows what the executor does when a call panics: its
// supervisor restarts the caller actor that ran the call, the request is
// accounted for (tried again while its attempts last, then FAILED with
// messages.ErrCallerCrashed) and every other request carries on. Here model
// chats share the executor with a call that panics on its first attempt
// only and one that always panics. It prints each request's outcome, then
// the executor's stats with its caller restarts.
//
// It starts the built-in simulator, so it runs offline and without a key:
//
//	go run ./examples/supervise
//
// To call a real OpenAI-compatible API instead, give its base URL and put
// the key in OPENAI_API_KEY:
//
//	go run ./examples/supervise -url https://api.openai.com/v1
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
		fmt.Fprintln(os.Stderr, "supervise:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	flags := flag.NewFlagSet("supervise", flag.ContinueOnError)
	baseURL := flags.String("url", "", "base URL of an OpenAI-compatible API (default: start the simulator)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	apiKey := "" // empty: imodel reads OPENAI_API_KEY
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

	cfg := runtime.DefaultConfig()
	cfg.Concurrency = 2
	cfg.MaxAttempts = 2 // a request whose caller crashed is tried once more
	cfg.Retry = runtime.Backoff{Initial: 20 * time.Millisecond}
	ex, err := runtime.Start(cfg)
	if err != nil {
		return err
	}
	defer ex.Stop(context.Background())

	model, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: *baseURL, APIKey: apiKey, Model: "gpt-4o-mini"})
	if err != nil {
		return err
	}
	defer model.Close()

	flaky := messages.CallFunc(func(_ context.Context, attempt int) (messages.Result, error) {
		if attempt == 1 {
			panic("flaky: the first attempt blew up")
		}
		return messages.Result{Body: []byte(`"fine on a later attempt"`)}, nil
	})
	broken := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		panic("broken: every attempt blows up")
	})

	type job struct {
		name string
		h    *runtime.Handle
	}
	var jobs []job
	for _, r := range []struct {
		name string
		call messages.Call
	}{{"flaky", flaky}, {"broken", broken}} {
		h, err := ex.Submit(ctx, messages.Request{Call: r.call})
		if err != nil {
			return err
		}
		jobs = append(jobs, job{r.name, h})
	}
	for i := range 4 {
		h, err := model.Submit(ctx, map[string]any{
			"messages":   []map[string]string{{"role": "user", "content": fmt.Sprintf("Say %d.", i+1)}},
			"max_tokens": 8,
		})
		if err != nil {
			return err
		}
		jobs = append(jobs, job{fmt.Sprintf("chat %d", i+1), h})
	}

	for _, j := range jobs {
		ev, err := j.h.Wait(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%-7s %-9s after %d attempt(s)", j.name, ev.Status, ev.Attempt)
		if errors.Is(ev.Err(), messages.ErrCallerCrashed) {
			fmt.Fprintf(w, ": the caller crashed (%v)", ev.Err())
		} else if ev.Err() != nil {
			fmt.Fprintf(w, ": %v", ev.Err())
		}
		fmt.Fprintln(w)
	}

	st := ex.Stats()
	fmt.Fprintf(w, "stats: %d completed, %d failed, %d retries, %d caller restarts\n",
		st.Completed, st.Failed, st.Retries, st.Restarts)
	return nil
}
