package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/internal/batch"
)

// noKey stands for the API key in a dry run's endpoint, which sends
// nothing: no key is read from the environment, and none is needed.
const noKey = "dry-run: no key"

// runDryRun forecasts the run the flags describe (batch --dry-run): it reads
// the whole input, and the results file if there is one to skip what is
// done, and prints the forecast on standard output. It sends nothing, needs
// no key and writes no file.
func runDryRun(cmd *cobra.Command, e env, f *batchFlags) error {
	fl := cmd.Flags()
	cfg, rf, err := f.batchConfig(fl, func(string) string { return noKey })
	if err != nil {
		return err
	}
	cfg.Endpoint.APIKey = ""
	if f.api.via == viaBatchAPI {
		// Priced at the batch price; nothing is created, so no journal.
		cfg.BatchAPI = &batchapi.Config{CompletionWindow: f.api.completionWindow}
	}
	if err := f.cost.apply(&cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return namingFlags(fl, batchFlagOf, rf.naming(err))
	}
	input, closeInput, err := openInput(cmd.Context(), f.in, e.stdin)
	if err != nil {
		return err
	}
	defer closeInput()
	in := batch.Input{R: input}
	if f.out != "" && f.out != "-" {
		file, err := os.Open(f.out)
		switch {
		case err == nil:
			defer file.Close()
			if in.Prior, _, err = batch.ReadPrior(file); err != nil {
				return usagef("output: %v", err)
			}
		case !os.IsNotExist(err):
			return usagef("output: %v", err)
		}
	}
	forecast, err := batch.DryRun(cfg, in, batch.DryRunOptions{OutputShare: f.cost.outputShare, CallLatency: f.cost.callLatency})
	if err != nil {
		return namingFlags(fl, batchFlagOf, err)
	}
	forecast.Write(e.stdout)
	if f.cost.cacheDir != "" {
		fmt.Fprintln(e.stdout, "(--cache-dir: the requests the cache would answer are counted as sent)")
	}
	if forecast.DuplicateID != nil {
		// The run refuses such an input before sending anything: so
		// does its dry run, after saying what it found.
		return usagef("input: %v", forecast.DuplicateID)
	}
	return nil
}
