package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/batch"
)

// batchFlags are the settings of the batch command; a config file may give
// any of them under the flag's name, and a flag on the command line wins.
type batchFlags struct {
	in, out, config          string
	provider, url, endpoint  string
	model, apiKeyEnv         string
	rpm, tpm, burst          int
	concurrency, maxAttempts int
	queue                    int
	timeout, grace, every    time.Duration
	ordered, verbose         bool
	metricsAddr              string
	budget, budgetListen     string
	budgetMembers            int
	budgetTLS                budget.TLSFiles
	budgetSecretEnv          string
}

func newBatchCmd(e env) *cobra.Command {
	f := &batchFlags{}
	cmd := &cobra.Command{
		Use:   "batch",
		Short: "Run a JSONL file of requests through a model API at its limits",
		Long: `batch reads one request body per line (JSONL), runs them at the provider's
rate limits, and writes one JSONL result per request as each ends.

Each input line is the JSON body of one request, with two optional members that
are not sent: "metadata" (copied to the result untouched) and "id". Each result
line has the request's index (its 0-based line number), id, status, response or
error, attempts, tokens estimated and actual, timings and metadata.

Results are appended to --out and each line is written whole: a rerun of the same
command skips requests that already have a final result, so an interrupted or
crashed run is finished by running it again. Ctrl-C lets calls in flight finish
(within --grace), writes them, and exits with status 130.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBatch(cmd, e, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.in, "in", "", "input JSONL file (default: standard input)")
	fl.StringVar(&f.out, "out", "", "results JSONL file, appended to and resumed from (default: standard output)")
	fl.StringVar(&f.config, "config", "", "YAML file with any of these flags' settings, by flag name")
	fl.StringVar(&f.provider, "provider", "openai", "openai, anthropic, openai-compatible or generic")
	fl.StringVar(&f.url, "url", "", "API base URL (default: the provider's)")
	fl.StringVar(&f.endpoint, "endpoint", "", "endpoint path under the base URL (default: the provider's chat endpoint)")
	fl.StringVar(&f.model, "model", "", "model for requests that do not name one")
	fl.StringVar(&f.apiKeyEnv, "api-key-env", "", "environment variable holding the API key (default: OPENAI_API_KEY or ANTHROPIC_API_KEY)")
	fl.IntVar(&f.rpm, "rpm", 500, "requests per minute allowed")
	fl.IntVar(&f.tpm, "tpm", 0, "API tokens per minute allowed (0: no token limit)")
	fl.IntVar(&f.burst, "burst", 0, "requests that may start at once (0: one second's worth of --rpm)")
	fl.IntVar(&f.concurrency, "concurrency", 32, "calls in flight at most")
	fl.IntVar(&f.maxAttempts, "max-attempts", 5, "attempts per request, the first included")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "timeout of each attempt")
	fl.IntVar(&f.queue, "queue", 1000, "requests read ahead of the callers")
	fl.BoolVar(&f.ordered, "ordered", false, "write results in input order instead of completion order")
	fl.DurationVar(&f.grace, "grace", 30*time.Second, "on Ctrl-C, how long calls in flight may finish")
	fl.DurationVar(&f.every, "progress-every", 5*time.Second, "interval of progress lines when stderr is not a terminal")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9090)")
	fl.BoolVar(&f.verbose, "verbose", false, "log each attempt to stderr (API keys are never logged)")
	fl.StringVar(&f.budget, "budget", "", "share the rate limits with other processes through the budget service at this host:port (lionactor budget serve)")
	fl.IntVar(&f.budgetMembers, "budget-members", 2, "processes sharing the --budget; while the service is unreachable each keeps to --rpm and --tpm divided by this, so set it to the number of processes")
	fl.StringVar(&f.budgetListen, "budget-listen", "", "host:port, reachable from the budget service, where this process receives its answers (default: a free loopback port, enough for a service on this host)")
	fl.StringVar(&f.budgetTLS.Cert, "budget-tls-cert", "", "PEM certificate of this process for the --budget service's mutual TLS (with --budget-tls-key and --budget-tls-ca)")
	fl.StringVar(&f.budgetTLS.Key, "budget-tls-key", "", "PEM private key of --budget-tls-cert")
	fl.StringVar(&f.budgetTLS.CA, "budget-tls-ca", "", "PEM certificate of the CA that signed the budget service's certificate")
	fl.StringVar(&f.budgetSecretEnv, "budget-secret-env", "", "environment variable holding the secret shared with the --budget service (its --secret-env)")
	return cmd
}

// applyConfigFile sets, from the YAML file, every flag not set on the
// command line.
func applyConfigFile(fl *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("reading config: %v", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(data, &settings); err != nil {
		return usagef("config %s: %v", path, err)
	}
	for name, value := range settings {
		flag := fl.Lookup(name)
		if flag == nil || name == "config" {
			return usagef("config %s: unknown setting %q", path, name)
		}
		if flag.Changed {
			continue
		}
		if err := flag.Value.Set(fmt.Sprint(value)); err != nil {
			return usagef("config %s: %s: %v", path, name, err)
		}
	}
	return nil
}

// endpointConfig builds the model endpoint, reading the API key from the
// environment. A missing key is a usage error: nothing can be sent.
func (f *batchFlags) endpointConfig(getenv func(string) string) (imodel.EndpointConfig, error) {
	ep := imodel.EndpointConfig{Provider: imodel.Provider(f.provider), BaseURL: f.url, Path: f.endpoint, Model: f.model}
	keyEnv := f.apiKeyEnv
	if keyEnv == "" {
		keyEnv = defaultKeyEnv[ep.Provider]
	}
	if keyEnv == "" {
		return ep, nil // a server that needs no key
	}
	ep.APIKey = strings.TrimSpace(getenv(keyEnv))
	if ep.APIKey == "" {
		return ep, usagef("missing API key: set %s (or name another variable with --api-key-env)", keyEnv)
	}
	return ep, nil
}

// defaultKeyEnv names the variable holding each provider's key.
var defaultKeyEnv = map[imodel.Provider]string{
	imodel.OpenAI:    "OPENAI_API_KEY",
	imodel.Anthropic: "ANTHROPIC_API_KEY",
}

func runBatch(cmd *cobra.Command, e env, f *batchFlags) error {
	if f.config != "" {
		if err := applyConfigFile(cmd.Flags(), f.config); err != nil {
			return err
		}
	}
	ep, err := f.endpointConfig(e.getenv)
	if err != nil {
		return err
	}
	secret, err := secretFromEnv(e.getenv, "--budget-secret-env", f.budgetSecretEnv)
	if err != nil {
		return err
	}
	cfg := batch.Config{
		Endpoint: ep, RPM: f.rpm, TPM: f.tpm, Burst: f.burst, Concurrency: f.concurrency,
		MaxAttempts: f.maxAttempts, Timeout: f.timeout, Queue: f.queue, Ordered: f.ordered,
		Grace: f.grace, MetricsAddr: f.metricsAddr,
		Budget: f.budget, BudgetMembers: f.budgetMembers, BudgetListen: f.budgetListen,
		BudgetTLS: f.budgetTLS, BudgetSecret: secret,
	}
	switch {
	case f.verbose:
		cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case f.budget != "":
		// Quiet but for the shared budget's notices: when this process
		// falls back to its share of the limits, and when it rejoins.
		cfg.Logger = slog.New(prefixFilter{slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}), budgetNoticePrefix})
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}

	in := batch.Input{R: e.stdin}
	if f.in != "" && f.in != "-" {
		file, err := os.Open(f.in)
		if err != nil {
			return usagef("input: %v", err)
		}
		defer file.Close()
		if in.Total, err = countRequests(file); err != nil {
			return usagef("input: %v", err)
		}
		in.R = file
	}
	var out io.Writer = e.stdout
	if f.out != "" && f.out != "-" {
		file, err := openResults(f.out, &in)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}

	var progress batch.Reporter = &batch.Lines{W: e.stderr, Every: f.every}
	if e.isTerminal(e.stderr) {
		progress = &batch.Bar{W: e.stderr}
	}
	sum, err := batch.Run(cmd.Context(), cfg, in, out, progress)
	if sum != nil {
		sum.Snapshot().Write(e.stderr)
	}
	switch {
	case errors.Is(err, batch.ErrInterrupted):
		return exitError{exitInterrupted, fmt.Errorf("interrupted: %d requests remain; rerun the same command to finish them", sum.Snapshot().Remaining())}
	case err != nil:
		var ce *imodel.ConfigError
		if errors.As(err, &ce) {
			return usageError{err}
		}
		return err
	}
	return nil
}

// countRequests counts the non-blank lines of file, for the progress bar,
// and rewinds it.
func countRequests(file *os.File) (int, error) {
	n := 0
	sc := bufio.NewReaderSize(file, 1<<16)
	for {
		line, err := sc.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	_, err := file.Seek(0, io.SeekStart)
	return n, err
}

// openResults opens the results file for appending, after reading which
// requests it already holds a final result for.
func openResults(path string, in *batch.Input) (*os.File, error) {
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, usagef("output: %v", err)
	}
	done, needsNewline, err := batch.ReadDone(file)
	if err != nil {
		file.Close()
		return nil, usagef("output: %v", err)
	}
	in.Skip = done
	if _, err := file.Seek(0, io.SeekEnd); err != nil {
		file.Close()
		return nil, err
	}
	if needsNewline {
		// A line cut short by a crash: end it so the next result starts a
		// line of its own (the cut line is ignored on resume).
		if _, err := file.Write([]byte("\n")); err != nil {
			file.Close()
			return nil, err
		}
	}
	return file, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
