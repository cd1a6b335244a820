package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/internal/bench"
)

func newBenchCmd(e env) *cobra.Command {
	var (
		o        bench.Options
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure lionactor beside hand-written and library alternatives",
		Long: `bench runs five workloads against in-process simulators on 127.0.0.1 and
prints one table, each figure beside the same figure of a baseline measured in
the same run (runs of the subjects alternate; the median of 5 is shown, 3 with
--quick):

  1 pipeline  no-op calls through the executor, a hand-written semaphore +
              rate.Limiter loop, and failsafe-go (bulkhead + rate limiter)
  2 http      chat requests through imodel, and through bare net/http
  3 latency   open-loop load at --rate against a 20 ms simulator: the
              latency the executor adds
  4 rate      a request and a token limit enforced by both the executor and
              the simulator: the share of each limit reached, and 429s
  5 memory    requests queued behind a closed gate: heap per request,
              goroutines, and the time to drain

The full run takes a few minutes; --quick takes under a minute. The targets are
printed beside the figures and never fail the command: it exits non-zero only
when a workload errors or loses a request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			o.Progress = e.stderr
			rep, runErr := bench.Run(cmd.Context(), o)
			if rep == nil {
				return runErr
			}
			if err := rep.WriteTable(e.stdout); err != nil {
				return err
			}
			if jsonPath != "" {
				if err := writeReportJSON(jsonPath, rep); err != nil {
					return err
				}
			}
			if runErr != nil {
				return exitError{code: exitFailure, err: runErr}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.Quick, "quick", false, "run reduced sizes (under a minute in all)")
	fl.StringVar(&jsonPath, "json", "", "also write the figures as JSON to this file")
	fl.IntVar(&o.LatencyRate, "rate", bench.DefaultLatencyRate, "requests per second of the latency workload")
	fl.Float64Var(&o.Scale, "scale", 1, "multiply every request count and duration")
	fl.IntVar(&o.Reps, "reps", 0, "runs per subject (0: 5, or 3 with --quick)")
	fl.StringSliceVar(&o.Only, "only", nil, "run only these workloads (pipeline, http, latency, rate, memory)")
	for _, hidden := range []string{"scale", "reps", "only"} {
		_ = fl.MarkHidden(hidden)
	}
	return cmd
}

// writeReportJSON writes rep to path.
func writeReportJSON(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the JSON report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("writing the JSON report: %w", err)
	}
	return f.Close()
}
