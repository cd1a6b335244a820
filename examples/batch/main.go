// Batch runs many chat requests at once through one executor, which paces
// them to a request-rate limit and a concurrency cap: submit them all and
// collect the replies as they end. It prints a progress line every tenth
// of the way, then a summary: requests by final status, retries, wall time
// and the rate achieved against the limit. The simulator fails some
// requests with a 503, which the model retries.
//
// It starts the built-in simulator, so it runs offline and without a key:
//
//	go run ./examples/batch
//	go run ./examples/batch -n 500 -rate 250 -concurrency 32
//
// To call a real OpenAI-compatible API instead, give its base URL and put
// the key in OPENAI_API_KEY (and mind the bill):
//
//	go run ./examples/batch -n 20 -rate 2 -url https://api.openai.com/v1
package main

import (
	"context"
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
		fmt.Fprintln(os.Stderr, "batch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	flags := flag.NewFlagSet("batch", flag.ContinueOnError)
	n := flags.Int("n", 200, "number of chat requests")
	limit := flags.Int("rate", 200, "request limit, per second")
	concurrency := flags.Int("concurrency", 16, "most calls at once")
	baseURL := flags.String("url", "", "base URL of an OpenAI-compatible API (default: start the simulator)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *n <= 0 {
		return fmt.Errorf("-n must be positive, got %d", *n)
	}

	apiKey := "" // empty: imodel reads OPENAI_API_KEY
	if *baseURL == "" {
		sim, err := simulator.New(simulator.Config{
			Latency:       20 * time.Millisecond,
			LatencyJitter: 10 * time.Millisecond,
			Faults:        simulator.Faults{Unavailable: 0.05}, // 1 in 20 answered 503
		})
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
	cfg.Concurrency = *concurrency
	cfg.RequestsPerInterval, cfg.RequestInterval = *limit, time.Second
	cfg.RequestBurst = 1   // an even pace from the start
	cfg.WaitForRoom = true // a batch larger than the queue waits instead of failing
	ex, err := runtime.Start(cfg)
	if err != nil {
		return err
	}
	defer ex.Stop(context.Background())

	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider:    imodel.OpenAI,
		BaseURL:     *baseURL,
		APIKey:      apiKey,
		Model:       "gpt-4o-mini",
		MaxAttempts: 3,
		Retry:       runtime.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Retryable: imodel.Retryable},
	})
	if err != nil {
		return err
	}
	defer model.Close()

	// Submit everything: Chat blocks until its request ends, so each runs
	// in a goroutine of its own, and the executor decides when each calls.
	start := time.Now()
	replies := make(chan *imodel.ChatResponse)
	for i := range *n {
		go func() {
			reply, _ := model.Chat(ctx, imodel.ChatRequest{
				Messages:  []imodel.Message{{Role: "user", Content: fmt.Sprintf("Summarise item %d.", i)}},
				MaxTokens: 16,
			})
			replies <- reply // nil if the executor refused the request
		}()
	}

	// Collect the replies as they end.
	byStatus := map[messages.RequestStatus]int{}
	refused, tokens := 0, 0
	step := max(*n/10, 1)
	for done := 1; done <= *n; done++ {
		reply := <-replies
		if reply == nil {
			refused++
		} else {
			byStatus[reply.Event.Status]++
			tokens += reply.Usage.TotalTokens
		}
		if done%step == 0 || done == *n {
			st := ex.Stats()
			fmt.Fprintf(w, "progress: %d/%d ended, %d in flight, %d queued\n", done, *n, st.InFlight, st.Queued)
		}
	}
	elapsed := time.Since(start)

	st := ex.Stats()
	calls := st.Accepted + st.Retries
	fmt.Fprintf(w, "%d requests in %v:", *n, elapsed.Round(time.Millisecond))
	for _, s := range []messages.RequestStatus{messages.StatusCompleted, messages.StatusFailed, messages.StatusCancelled} {
		fmt.Fprintf(w, " %d %s,", byStatus[s], s)
	}
	fmt.Fprintf(w, " %d refused\n", refused)
	fmt.Fprintf(w, "%d calls (%d retries), %d tokens\n", calls, st.Retries, tokens)
	fmt.Fprintf(w, "rate: %.1f calls/s, limit %d/s\n", float64(calls)/elapsed.Seconds(), *limit)
	return ctx.Err() // interrupted: what was left ended CANCELLED
}
