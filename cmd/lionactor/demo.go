package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/simulator"
)

// The demo's limits: an OpenAI-like tier that a few hundred requests
// saturate, so the limiter visibly sets the pace.
const (
	demoRPM      = 1200
	demoTPM      = 150_000
	demoRequests = 300
	demoKey      = "sk-demo-not-a-real-key"
	demoLatency  = 60 * time.Millisecond
)

func newDemoCmd(e env) *cobra.Command {
	var (
		requests int
		dir      string
		via      string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a batch against the built-in simulator (offline, no key needed)",
		Long: `demo starts the simulator in-process with an OpenAI-like limit, writes a few
hundred sample chat requests to a JSONL file, runs them through batch at the
limit with the progress display, and prints the summary and where the results
and the HTML report of the run are. It needs no network and no API key, and
takes about 15 seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := demoBatchAPI(via, ""); err != nil {
				return err
			}
			sim, err := simulator.New(simulator.Config{
				RequestsPerMinute: demoRPM, TokensPerMinute: demoTPM,
				Latency: demoLatency, LatencyJitter: 40 * time.Millisecond,
				CompletionTokens: 60, Seed: 7, BatchDelay: demoBatchDelay,
			})
			if err != nil {
				return err
			}
			base, err := sim.Start("127.0.0.1:0")
			if err != nil {
				return err
			}
			defer sim.Close()
			if dir == "" {
				if dir, err = os.MkdirTemp("", "lionactor-demo-"); err != nil {
					return err
				}
			} else if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--dir: %w", err)
			}
			inPath, outPath := filepath.Join(dir, "requests.jsonl"), filepath.Join(dir, "results.jsonl")
			if err := writeSampleRequests(inPath, requests); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "simulator at %s/v1 enforcing %d requests/min and %d tokens/min\n", base, demoRPM, demoTPM)
			fmt.Fprintf(e.stderr, "running %d chat requests from %s\n", requests, inPath)

			in, err := os.Open(inPath)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.Create(outPath)
			if err != nil {
				return err
			}
			defer out.Close()
			var progress batch.Reporter = &batch.Lines{W: e.stderr, Every: 2 * time.Second}
			if e.isTerminal(e.stderr) {
				progress = &batch.Bar{W: e.stderr}
			}
			cfg := batch.Config{
				Endpoint: imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: base + "/v1", APIKey: demoKey, Model: "gpt-4o-mini"},
				RPM:      demoRPM, TPM: demoTPM, Concurrency: 32, MaxAttempts: 3, Timeout: 30 * time.Second,
				Queue: 500, Grace: 5 * time.Second,
			}
			if cfg.BatchAPI, err = demoBatchAPI(via, outPath); err != nil {
				return err
			}
			report, err := openReport("report", filepath.Join(dir, "report.html"), &cfg)
			if err != nil {
				return err
			}
			if err := forecastDemo(e.stderr, cfg, in); err != nil {
				return err
			}
			sum, err := batch.Run(cmd.Context(), cfg, batch.Input{R: in, Total: requests}, out, progress)
			if sum != nil {
				sum.Snapshot().Write(e.stderr)
			}
			err = errors.Join(err, report.finish())
			if errors.Is(err, batch.ErrInterrupted) {
				return exitError{exitInterrupted, err}
			}
			if err != nil {
				return err
			}
			st := sim.Stats()
			fmt.Fprintf(e.stderr, "simulator: %d requests served, %d answered 429\n", st.Requests, st.RateLimited)
			fmt.Fprintf(e.stdout, "results: %s\n", outPath)
			report.announce(e.stdout)
			return nil
		},
	}
	cmd.Flags().IntVar(&requests, "requests", demoRequests, "number of sample requests")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the request and result files (default: a new temporary one)")
	cmd.Flags().StringVar(&via, "via", viaOnline, "online, or batch-api: the same requests through the simulator's batch API, whose batches take "+demoBatchDelay.String())
	return cmd
}

// forecastDemo prints what a dry run says the demo's requests will cost and
// take, for the summary's figures to be compared with, and rewinds in.
func forecastDemo(w io.Writer, cfg batch.Config, in *os.File) error {
	f, err := batch.DryRun(cfg, batch.Input{R: in}, batch.DryRunOptions{CallLatency: demoLatency})
	if err != nil {
		return err
	}
	d, bound := f.WallTime()
	when := fmt.Sprintf("about %v at the %s limit", d.Round(100*time.Millisecond), bound)
	if f.BatchAPI {
		when = "at the batch price, as long as the batches take"
	}
	fmt.Fprintf(w, "forecast (--dry-run): %d requests, %d + %d tokens, $%.6f to $%.6f, likely $%.6f; %s\n",
		f.Sent, f.InputTokens, f.OutputTokens, f.CostInput, f.CostMax, f.CostLikely, when)
	_, err = in.Seek(0, io.SeekStart)
	return err
}

// writeSampleRequests writes n varied chat requests, each with metadata.
func writeSampleRequests(path string, n int) error {
	topics := []string{"actors", "rate limits", "token buckets", "supervision", "backpressure", "retries", "streaming", "queues"}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for i := range n {
		topic := topics[i%len(topics)]
		req := map[string]any{
			"messages": []map[string]string{
				{"role": "system", "content": "You answer in one short paragraph."},
				{"role": "user", "content": fmt.Sprintf("Explain %s to a new engineer, example %d.", topic, i)},
			},
			"max_tokens": 64,
			"metadata":   map[string]any{"row": i, "topic": topic},
		}
		if err := enc.Encode(req); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
