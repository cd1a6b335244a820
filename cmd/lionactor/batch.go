package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	queue, maxLineBytes      int
	timeout, grace, every    time.Duration
	ordered, verbose         bool
	metricsAddr              string
	report                   string
	budget, budgetListen     string
	budgetMembers            int
	deployment, apiVersion   string
	headers                  headerFlag
	otlpEndpoint             string
	retryFailed              string
	rerunChanged             bool
	budgetTLS                budget.TLSFiles
	budgetSecretEnv          string
	api                      batchAPIFlags
	cost                     costFlags // prices, spend cap, cache, dry run (cost.go)
}

func newBatchCmd(e env) *cobra.Command {
	f := &batchFlags{}
	cmd := &cobra.Command{
		Use:   "batch [requests.jsonl]",
		Short: "Run a JSONL file of requests through a model API at its limits",
		Long: `batch reads one request body per line (JSONL), runs them at the provider's
rate limits, and writes one JSONL result per request as each ends. The input is
the file named as the argument or by --in, else standard input (read to its end
first).

Each input line is the JSON body of one request, with two optional members that
are not sent: "metadata" (copied to the result untouched) and "id". Each result
line has the request's key, index (its 0-based line number in this run), id,
content hash, status, response or error, attempts, tokens estimated and actual,
timings and metadata.

A request's key is its id, or for a line without one the hash of its content with
its occurrence among identical lines. Results are appended to --out and each
line is written whole: a rerun skips the requests whose key already has a final
result, wherever their lines are now, so an interrupted or crashed run is
finished by running it again, and lines added to the input run on their own.
Two lines with the same id are refused. --retry-failed reruns failed requests;
--rerun-changed reruns those whose id has a result for other content. Ctrl-C
lets calls in flight finish (within --grace), writes them, and exits with
status 130.

Each result line says what its request cost ("cost_usd"), at the prices of
the embedded table or --prices. --max-cost stops admitting before the results
file's spend would pass it, lets what was admitted finish, and exits with
status 3; a rerun with a higher cap continues. --cache-dir answers requests
whose reply is stored without a call. --dry-run sends nothing and says what
the input would cost and how long it would take.

Several keys, models and providers: a --config file with "deployments" (each a
name, the model it serves, provider, url, upstream_model, api_key_env, rpm, tpm,
burst, concurrency, weight, and for Azure deployment and api_version) runs the
file over all of them: each line's "model" selects the deployments that serve
it, load goes where budget is left, a failing deployment is taken out by its
breaker, and "fallbacks" ({model: [models]}) name where a model's lines go once
its own deployments have failed them. Each result line names its "deployment";
the summary, the metrics and the report break the run down by deployment.

--via batch-api sends the requests through the provider's batch API (OpenAI's
Batch API, Anthropic's Message Batches) at about half the price, with answers
within 24 hours: the same input, results, resume and --ordered. The batches
created are recorded next to --out (FILE.batches.jsonl), so that a rerun after
an interrupt or a crash collects them instead of creating them again; Ctrl-C
leaves them running (on a terminal it asks), --cancel-remote cancels them.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBatch(cmd, e, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.in, "in", "", "input JSONL file, or give it as the argument (default: standard input)")
	fl.StringVar(&f.out, "out", "", "results JSONL file, appended to and resumed from (default: standard output)")
	fl.StringVar(&f.config, "config", "", "YAML file with any of these flags' settings, by flag name, and the deployments of a run over several keys, models or providers (deployments:, fallbacks:)")
	fl.StringVar(&f.provider, "provider", "openai", "openai, anthropic, azure, openai-compatible or generic")
	fl.StringVar(&f.url, "url", "", "API base URL (default: the provider's)")
	fl.StringVar(&f.endpoint, "endpoint", "", "endpoint path under the base URL (default: the provider's chat endpoint)")
	fl.StringVar(&f.model, "model", "", "model for requests that do not name one")
	fl.StringVar(&f.apiKeyEnv, "api-key-env", "", "environment variable holding the API key (default: OPENAI_API_KEY for openai and openai-compatible, ANTHROPIC_API_KEY for anthropic, AZURE_OPENAI_API_KEY for azure, none for generic); '' sends no key")
	fl.StringVar(&f.deployment, "deployment", "", "Azure OpenAI deployment (--provider azure, with --url https://RESOURCE.openai.azure.com)")
	fl.StringVar(&f.apiVersion, "api-version", "", "Azure OpenAI api-version, such as 2024-10-21 (--provider azure)")
	fl.Var(&f.headers, "header", "header sent with every request, as `'Name: value'`; repeat for more (gateways, proxies); a value whose name looks secret (Authorization, *key*, *token*, ...) is never shown")
	fl.IntVar(&f.rpm, "rpm", 500, "requests per minute allowed; requests start evenly paced, so that no second sees more than ⌈rpm/60⌉ + --burst")
	fl.IntVar(&f.tpm, "tpm", 0, "API tokens per minute allowed (0: no token limit)")
	fl.IntVar(&f.burst, "burst", 1, "requests that may start at once; 1 paces them evenly from the first, as a provider enforcing --rpm per second requires")
	fl.IntVar(&f.concurrency, "concurrency", 32, "calls in flight at most")
	fl.IntVar(&f.maxAttempts, "max-attempts", 5, "attempts per request, the first included")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "timeout of each attempt")
	fl.IntVar(&f.queue, "queue", 1000, "requests read ahead of the callers")
	fl.IntVar(&f.maxLineBytes, "max-line-bytes", batch.DefaultMaxLineBytes, "longest input line read, in bytes; a longer one is not held in memory but fails (error kind line_too_long) and the others run")
	fl.BoolVar(&f.ordered, "ordered", false, "write results in input order instead of completion order")
	fl.DurationVar(&f.grace, "grace", 30*time.Second, "on Ctrl-C, how long calls in flight may finish")
	fl.DurationVar(&f.every, "progress-every", 5*time.Second, "interval of progress lines when stderr is not a terminal")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9090)")
	fl.StringVar(&f.report, "report", "", "write an HTML report of the run to this file when it ends: rates, tokens and calls in flight against the limits over time, 429s, latency, summary")
	fl.BoolVar(&f.verbose, "verbose", false, "log each attempt to stderr (API keys are never logged)")
	fl.StringVar(&f.budget, "budget", "", "share the rate limits with other processes through the budget service at this host:port (lionactor budget serve), or through the Redis server at this URL (redis://user:password@host:6379/0, rediss:// for TLS, unix://, ?master_name= for Sentinel)")
	fl.IntVar(&f.budgetMembers, "budget-members", 2, "processes sharing the --budget; while it is unreachable each keeps to --rpm and --tpm divided by this, so set it to the number of processes")
	fl.StringVar(&f.retryFailed, "retry-failed", "", "rerun the requests whose last result is FAILED; --retry-failed=KIND,... only those failed with these error kinds, as result lines name them (auth, rate_limited, server, timeout, ...)")
	fl.Lookup("retry-failed").NoOptDefVal = retryAll
	fl.BoolVar(&f.rerunChanged, "rerun-changed", false, "rerun the requests whose id has a result for other content than the line holds now (by default they are skipped and named in the summary)")
	fl.StringVar(&f.budgetListen, "budget-listen", "", "host:port, reachable from the budget service, where this process receives its answers (default: a free loopback port, enough for a service on this host)")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces of the run over OTLP/HTTP to this collector URL (e.g. http://127.0.0.1:4318); the OTEL_EXPORTER_OTLP_* variables also apply")
	fl.StringVar(&f.budgetTLS.Cert, "budget-tls-cert", "", "PEM certificate of this process for the --budget service's mutual TLS (with --budget-tls-key and --budget-tls-ca)")
	fl.StringVar(&f.budgetTLS.Key, "budget-tls-key", "", "PEM private key of --budget-tls-cert")
	fl.StringVar(&f.budgetTLS.CA, "budget-tls-ca", "", "PEM certificate of the CA that signed the budget service's certificate")
	fl.StringVar(&f.budgetSecretEnv, "budget-secret-env", "", "environment variable holding the secret shared with the --budget service (its --secret-env)")
	f.api.register(fl)
	f.cost.register(fl)
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
		if slices.Contains(routerSettings, name) {
			continue // readRouterFile reads them
		}
		flag := fl.Lookup(name)
		if flag == nil || name == "config" {
			return usagef("config %s: unknown setting %q", path, name)
		}
		if flag.Changed {
			continue
		}
		if items, ok := listSetting(value); ok {
			if sv, repeatable := flag.Value.(pflag.SliceValue); repeatable {
				if err := sv.Replace(items); err != nil {
					return usagef("config %s: %s: %v", path, name, err)
				}
				// Replace does not mark the flag given, as Set would.
				flag.Changed = true
				continue
			}
			if _, mapping := value.(map[string]any); mapping || flag.Value.Type() != "string" {
				return usagef("config %s: %s: takes one value, not a list", path, name)
			}
			value = strings.Join(items, ",") // retry-failed: [auth, server]
		}
		// Set, not flag.Value.Set: a setting from the file counts as given,
		// as on the command line (api-key-env: "" asks for no key).
		if err := fl.Set(name, fmt.Sprint(value)); err != nil {
			return usagef("config %s: %s: %v", path, name, err)
		}
	}
	return nil
}

// listSetting returns the values of a config setting given as a YAML list,
// or as a mapping (header: {Name: value}), as a repeatable flag takes them.
func listSetting(value any) ([]string, bool) {
	switch v := value.(type) {
	case []any:
		items := make([]string, len(v))
		for i, x := range v {
			items[i] = fmt.Sprint(x)
		}
		return items, true
	case map[string]any:
		items := make([]string, 0, len(v))
		for k, x := range v {
			items = append(items, k+": "+fmt.Sprint(x))
		}
		slices.Sort(items)
		return items, true
	}
	return nil, false
}

// retryAll is --retry-failed without kinds: every kind.
const retryAll = "all"

// retryKinds reads --retry-failed: off, every kind, or the kinds listed.
func (f *batchFlags) retryKinds() (retry bool, kinds []string) {
	switch v := strings.TrimSpace(f.retryFailed); v {
	case "", "false":
		return false, nil
	case retryAll, "true": // "true" from a config file's retry-failed: true
		return true, nil
	default:
		for _, k := range strings.Split(v, ",") {
			kinds = append(kinds, strings.TrimSpace(k))
		}
		return true, kinds
	}
}

// endpointConfig builds the model endpoint, reading the API key from the
// environment. A missing key is a usage error: nothing can be sent. An
// explicit empty --api-key-env asks for no key at all.
func (f *batchFlags) endpointConfig(fl *pflag.FlagSet, getenv func(string) string) (imodel.EndpointConfig, error) {
	ep := imodel.EndpointConfig{Provider: imodel.Provider(f.provider), BaseURL: f.url, Path: f.endpoint, Model: f.model,
		Deployment: f.deployment, APIVersion: f.apiVersion}
	headers, err := f.headers.parse()
	if err != nil {
		return ep, err
	}
	ep.Headers = headers
	key, keyEnv, none := apiKey(ep.Provider, f.apiKeyEnv, fl.Changed("api-key-env"), getenv)
	switch {
	case none:
		ep.Auth = imodel.AuthNone
	case keyEnv != "" && key == "":
		return ep, usagef("missing API key: set %s (or name another variable with --api-key-env, or give --api-key-env '' for a server that takes none)", keyEnv)
	}
	ep.APIKey = key
	return ep, nil
}

// batchConfig is the batch.Config the flags describe, as a run and its dry
// run both need it: the endpoint, or the deployments of a --config file
// (returned too, to name their fields in errors), the limits, what to
// rerun. getenv reads the API keys. The endpoint is not validated here:
// a dry run has no key to validate.
func (f *batchFlags) batchConfig(fl *pflag.FlagSet, getenv func(string) string) (batch.Config, *routerFile, error) {
	rf, err := readRouterFile(f.config, getenv)
	if err != nil {
		return batch.Config{}, nil, err
	}
	var ep imodel.EndpointConfig
	if rf != nil {
		if err := rf.checkFlags(fl); err != nil {
			return batch.Config{}, nil, err
		}
	} else if ep, err = f.endpointConfig(fl, getenv); err != nil {
		return batch.Config{}, nil, err
	}
	retry, kinds := f.retryKinds()
	cfg := batch.Config{
		Endpoint: ep, RPM: f.rpm, TPM: f.tpm, Burst: f.burst, Concurrency: f.concurrency,
		MaxAttempts: f.maxAttempts, Timeout: f.timeout, Queue: f.queue, Ordered: f.ordered,
		MaxLineBytes: f.maxLineBytes, Grace: f.grace,
		RetryFailed: retry, RetryKinds: kinds, RerunChanged: f.rerunChanged,
	}
	if rf != nil {
		cfg.Deployments, cfg.Fallbacks = rf.deployments, rf.fallbacks
	}
	return cfg, rf, nil
}

func runBatch(cmd *cobra.Command, e env, f *batchFlags, args []string) error {
	fl := cmd.Flags()
	if f.config != "" {
		if err := applyConfigFile(fl, f.config); err != nil {
			return err
		}
	}
	if len(args) == 1 {
		if f.in != "" && filepath.Clean(f.in) != filepath.Clean(args[0]) {
			return usagef("two inputs: %s and --in %s; give one", args[0], f.in)
		}
		f.in = args[0]
	}
	if f.maxLineBytes <= 0 {
		// Not batch.Config's 0, which means the default: a limit of no
		// bytes would refuse every line.
		return usagef("--max-line-bytes: must be positive, got %d", f.maxLineBytes)
	}
	if f.cost.dryRun {
		return runDryRun(cmd, e, f)
	}
	cfg, rf, err := f.batchConfig(fl, e.getenv)
	if err != nil {
		return err
	}
	if rf == nil {
		if err := cfg.Endpoint.Validate(); err != nil {
			return namingFlags(fl, batchFlagOf, err)
		}
	}
	if cfg.BudgetSecret, err = secretFromEnv(e.getenv, "--budget-secret-env", f.budgetSecretEnv); err != nil {
		return err
	}
	cfg.MetricsAddr = f.metricsAddr
	cfg.Budget, cfg.BudgetMembers, cfg.BudgetListen, cfg.BudgetTLS = f.budget, f.budgetMembers, f.budgetListen, f.budgetTLS
	if err := f.cost.apply(&cfg); err != nil {
		return err
	}
	if cfg.BatchAPI, err = f.api.config(fl, f.out, e); err != nil {
		return err
	}
	switch {
	case f.verbose:
		cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case f.budget != "":
		// Quiet but for the shared budget's notices: when this process
		// falls back to its share of the limits, and when it rejoins.
		cfg.Logger = slog.New(componentFilter{Handler: slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}), component: budgetComponent})
	}
	logRedisTo(cfg.Logger)
	if err := cfg.Validate(); err != nil {
		return namingFlags(fl, batchFlagOf, rf.naming(err))
	}

	input, closeInput, err := openInput(cmd.Context(), f.in, e.stdin)
	if err != nil {
		return err
	}
	defer closeInput()
	in := batch.Input{R: input}
	// The first of two passes: the count for progress, and duplicate ids
	// refused before anything is sent.
	if in.Total, err = batch.Scan(input, cfg.MaxLineBytes); err != nil {
		return usagef("input: %v", err)
	}
	if _, err := input.Seek(0, io.SeekStart); err != nil {
		return usagef("input: %v", err)
	}
	var out io.Writer = e.stdout
	if f.out != "" && f.out != "-" {
		file, err := openResults(f.out, &in)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
		if n := in.Prior.Legacy(); n > 0 {
			fmt.Fprintf(e.stderr, "lionactor: %s: %d results from before results had keys: those with an id are matched by id, the others by line number as then\n", f.out, n)
		}
	}
	if notice := unmatchedKinds(cfg.RetryKinds, in.Prior); notice != "" {
		fmt.Fprintln(e.stderr, "lionactor: --retry-failed:", notice)
	}

	report, err := openReport("--report", f.report, &cfg)
	if err != nil {
		return err
	}

	var progress batch.Reporter = &batch.Lines{W: e.stderr, Every: f.every}
	if e.isTerminal(e.stderr) {
		progress = &batch.Bar{W: e.stderr}
	}
	traces, ctx, err := startTracing(cmd.Context(), f.otlpEndpoint, e.getenv)
	if err != nil {
		return err
	}
	if traces != nil {
		cfg.Tracer = traces.tracer
	}
	sum, err := batch.Run(ctx, cfg, in, out, progress)
	if sum != nil {
		sum.Snapshot().Write(e.stderr)
	}
	err = errors.Join(err, report.finish())
	report.announce(e.stderr)
	traces.stop(sum, err, e.stderr)
	switch {
	case errors.Is(err, batch.ErrInterrupted):
		s := sum.Snapshot()
		return exitError{exitInterrupted, fmt.Errorf("interrupted: %d requests remain; rerun the same command to finish them%s", s.Remaining(), interruptedBatches(s))}
	case errors.Is(err, batch.ErrSpendCap):
		return spendCapExit(sum)
	case err != nil:
		return namingFlags(fl, batchFlagOf, err)
	}
	return nil
}

// unmatchedKinds says which kinds given to --retry-failed no FAILED result
// has, as a typo would, and which kinds they have; "" if all match.
func unmatchedKinds(kinds []string, prior *batch.Prior) string {
	failed := prior.FailedKinds()
	var missing []string
	for _, k := range kinds {
		if failed[k] == 0 {
			missing = append(missing, strconv.Quote(k))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	have := make([]string, 0, len(failed))
	for _, k := range slices.Sorted(maps.Keys(failed)) {
		have = append(have, fmt.Sprintf("%s (%d)", k, failed[k]))
	}
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return fmt.Sprintf("no request's last result failed with kind %s; the failed ones have: %s", strings.Join(missing, ", "), list)
}

// openInput opens the input for the run's two passes: the file at path, or
// standard input copied to a temporary file (it can be read only once).
// The returned function closes it and removes the copy.
func openInput(ctx context.Context, path string, stdin io.Reader) (*os.File, func(), error) {
	if path != "" && path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return nil, nil, usagef("input: %v", err)
		}
		return file, func() { file.Close() }, nil
	}
	spool, err := os.CreateTemp("", "lionactor-batch-*.jsonl") // 0600: it holds the prompts
	if err != nil {
		return nil, nil, fmt.Errorf("input: copying standard input: %w", err)
	}
	remove := func() {
		spool.Close()
		os.Remove(spool.Name())
	}
	// An interrupt must not wait for an input that never ends; the copy
	// then ends with the process.
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(spool, stdin)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		_, err = spool.Seek(0, io.SeekStart)
	}
	if err != nil {
		remove()
		if ctx.Err() != nil {
			return nil, nil, exitError{exitInterrupted, fmt.Errorf("interrupted while reading standard input; nothing was sent")}
		}
		return nil, nil, usagef("input: %v", err)
	}
	return spool, remove, nil
}

// openResults opens the results file for appending, after reading which
// requests it already holds a final result for.
func openResults(path string, in *batch.Input) (*os.File, error) {
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, usagef("output: %v", err)
	}
	prior, needsNewline, err := batch.ReadPrior(file)
	if err != nil {
		file.Close()
		return nil, usagef("output: %v", err)
	}
	in.Prior = prior
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
