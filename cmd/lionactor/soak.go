package main

import (
	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/internal/soak"
)

func newSoakCmd(e env) *cobra.Command {
	var o soak.Options
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run a steady faulty load for a while and check that nothing leaks",
		Long: `soak starts the provider simulator in process on 127.0.0.1 with faults on,
and drives a steady load of chat, embeddings and streamed requests through the
executor at its limits, with callers panicking at random, for --duration.

Every --every it prints one line: the time elapsed, the heap after a GC, the
goroutines, the open file descriptors (-1 where they cannot be counted), the
requests submitted and ended by status, and those in flight. At the end it
checks that every submitted request ended exactly once and none was lost, and
that the floors of the heap, the goroutines (net of the requests in flight)
and the file descriptors over the last third of the samples stayed within
bounds of those over the first third (after a warm-up of a tenth of the run):
heap at most 2× + 16 MiB, goroutines and descriptors at most 50 more. It exits non-zero if a check fails, naming it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			o.Out = e.stdout
			rep, runErr := soak.Run(cmd.Context(), o)
			if rep.Checks == nil && runErr != nil {
				return runErr
			}
			if err := rep.WriteSummary(e.stdout); err != nil {
				return err
			}
			if runErr != nil {
				return exitError{code: exitInterrupted, err: runErr}
			}
			if err := rep.Err(); err != nil {
				return exitError{code: exitFailure, err: err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&o.Duration, "duration", 10*60e9, "how long the load runs")
	fl.DurationVar(&o.Every, "every", 10e9, "interval between samples")
	fl.IntVar(&o.RequestsPerSecond, "limit", 100, "the executor's request limit, per second")
	fl.IntVar(&o.Rate, "rate", 0, "requests submitted per second (0: half of --limit, so that attempts with retries and 429 pauses run close to the limit)")
	fl.IntVar(&o.Concurrency, "concurrency", 16, "the executor's callers")
	fl.Int64Var(&o.Seed, "seed", 0, "seed of the simulator's faults (0: from the clock)")
	return cmd
}
