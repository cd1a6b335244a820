package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func newSimCmd(e env) *cobra.Command {
	var (
		addr, keys, keyLimits string
		cfg                   simulator.Config
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Serve a local simulator of the OpenAI, Anthropic and Azure OpenAI APIs",
		Long: `sim serves chat completions, embeddings and messages (streamed or not) the way
the providers do, and Azure OpenAI's deployment paths (/openai/deployments/NAME/...
with an api-version and an api-key header): rate limits per API key with their headers and 429 bodies,
usage counted with the same tokenizer, configurable latency, and faults injected
at the rates given. It also serves the providers' batch APIs (OpenAI's files and
batches, Anthropic's message batches): each request in a batch is answered as it
would be online, outside the rate limits, and a batch ends --batch-delay after it
was created. Point a client (or lionactor batch --url) at the printed base URL.
It runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys != "" {
				cfg.Keys = strings.Split(keys, ",")
			}
			order, err := parseKeyLimits(keyLimits, &cfg)
			if err != nil {
				return err
			}
			sim, err := simulator.New(cfg)
			var ce *messages.ConfigError
			if errors.As(err, &ce) && strings.HasPrefix(ce.Field, "KeyLimits[") {
				return usagef("--key-limits: %s", ce.Reason) // a key's limits, or the bursts every key takes
			}
			if err != nil {
				return namingFlags(cmd.Flags(), simFlagOf, err)
			}
			base, err := sim.Start(addr)
			if err != nil {
				return usageError{err}
			}
			defer sim.Close()
			fmt.Fprintf(e.stdout, "simulator listening; base URL for clients: %s/v1\n", base)
			if cfg.RequestsPerMinute > 0 {
				fmt.Fprintf(e.stdout, "  lionactor batch --url %s/v1 --rpm %d ...\n", base, cfg.RequestsPerMinute)
			} else {
				fmt.Fprintf(e.stdout, "  lionactor batch --url %s/v1 ...\n", base)
			}
			fmt.Fprintf(e.stdout, "  Azure OpenAI: lionactor batch --provider azure --url %s --deployment NAME --api-version 2024-10-21 ...\n", base)
			for _, k := range order {
				fmt.Fprintf(e.stdout, "  key %s: %s\n", keyHint(k), limitsText(cfg.KeyLimits[k]))
			}
			<-cmd.Context().Done()
			st := sim.Stats()
			fmt.Fprintf(e.stdout, "served %d requests (%d rate limited)\n", st.Requests, st.RateLimited)
			for _, k := range order {
				ks := st.ByKey[k]
				fmt.Fprintf(e.stdout, "  key %s: %d requests (%d rate limited)\n", keyHint(k), ks.Requests, ks.RateLimited)
			}
			if b := st.Batches; b.OpenAIBatches+b.AnthropicBatches > 0 {
				fmt.Fprintf(e.stdout, "batches created: %d OpenAI, %d Anthropic (%d requests); files uploaded: %d\n",
					b.OpenAIBatches, b.AnthropicBatches, b.Requests, b.FilesUploaded)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:8787", "address to listen on")
	fl.IntVar(&cfg.RequestsPerMinute, "rpm", 0, "requests per minute allowed per API key (0: unlimited)")
	fl.IntVar(&cfg.TokensPerMinute, "tpm", 0, "tokens per minute allowed per API key (0: unlimited)")
	fl.IntVar(&cfg.RequestBurst, "request-burst", 0, "requests a key may send at once after a quiet spell (0: the whole --rpm, as the providers do)")
	fl.IntVar(&cfg.TokenBurst, "token-burst", 0, "tokens a key may spend at once after a quiet spell (0: the whole --tpm)")
	fl.DurationVar(&cfg.Latency, "latency", 0, "latency of each response")
	fl.DurationVar(&cfg.LatencyJitter, "jitter", 0, "uniform jitter around --latency")
	fl.Int64Var(&cfg.Seed, "seed", 1, "seed of latency and fault draws")
	fl.IntVar(&cfg.CompletionTokens, "completion-tokens", 0, "tokens in each generated reply (0: default)")
	fl.IntVar(&cfg.ReasoningTokens, "reasoning-tokens", 0, "tokens a reasoning model (o-series, gpt-5) spends reasoning before each reply, billed as output (0: default)")
	fl.StringVar(&keys, "keys", "", "comma-separated API keys accepted (default: any)")
	fl.StringVar(&keyLimits, "key-limits", "", "API keys with limits of their own, in place of --rpm and --tpm, as KEY=RPM[:TPM], comma-separated (sk-a=600,sk-b=1200:90000): one simulator for several keys of one provider; each is accepted, and --request-burst and --token-burst hold for each")
	fl.Float64Var(&cfg.Faults.ServerError, "fail-500", 0, "rate of 500 answers")
	fl.Float64Var(&cfg.Faults.Unavailable, "fail-503", 0, "rate of 503 answers")
	fl.Float64Var(&cfg.Faults.Overloaded, "fail-529", 0, "rate of 529 (overloaded) answers")
	fl.Float64Var(&cfg.Faults.RateLimit, "fail-429", 0, "rate of injected 429 answers")
	fl.Float64Var(&cfg.Faults.Reset, "fail-reset", 0, "rate of connections reset without an answer")
	fl.Float64Var(&cfg.Faults.Malformed, "fail-malformed", 0, "rate of malformed JSON answers")
	fl.Float64Var(&cfg.Faults.Truncate, "fail-truncate", 0, "rate of truncated answers and streams")
	fl.Float64Var(&cfg.Faults.Slow, "fail-slow", 0, "rate of answers held for --slow-delay")
	fl.DurationVar(&cfg.SlowDelay, "slow-delay", time.Minute, "how long a slow answer is held")
	fl.DurationVar(&cfg.BatchDelay, "batch-delay", 0, "how long a batch takes from its creation to its end (0: it ends at once)")
	fl.Float64Var(&cfg.BatchFaults.ServerError, "batch-fail-500", 0, "rate of requests in batches answered with a server error")
	fl.Float64Var(&cfg.BatchFaults.Expired, "batch-expire", 0, "rate of requests in batches left expired")
	fl.Float64Var(&cfg.BatchFaults.Failed, "batch-fail", 0, "rate of OpenAI batches failing validation")
	fl.IntVar(&cfg.BatchEnqueuedTokens, "batch-enqueued-tokens", 0, "input tokens a key may have in OpenAI batches not yet ended, per model (0: unlimited)")
	return cmd
}

// parseKeyLimits reads --key-limits into cfg.KeyLimits, and returns the
// keys in the order given.
func parseKeyLimits(v string, cfg *simulator.Config) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var order []string
	cfg.KeyLimits = map[string]simulator.Limits{}
	for i, item := range strings.Split(v, ",") {
		key, limits, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || key == "" {
			return nil, usagef("--key-limits: item %d: want KEY=RPM[:TPM]", i+1)
		}
		if _, dup := cfg.KeyLimits[key]; dup {
			return nil, usagef("--key-limits: item %d: the key %s is given twice", i+1, keyHint(key))
		}
		rpm, tpm, hasTPM := strings.Cut(limits, ":")
		var l simulator.Limits
		var err error
		if l.RequestsPerMinute, err = strconv.Atoi(rpm); err != nil || l.RequestsPerMinute < 0 {
			return nil, usagef("--key-limits: item %d: RPM %q is not a number of requests a minute", i+1, rpm)
		}
		if hasTPM {
			if l.TokensPerMinute, err = strconv.Atoi(tpm); err != nil || l.TokensPerMinute < 0 {
				return nil, usagef("--key-limits: item %d: TPM %q is not a number of tokens a minute", i+1, tpm)
			}
		}
		// --request-burst and --token-burst hold for every key.
		l.RequestBurst, l.TokenBurst = cfg.RequestBurst, cfg.TokenBurst
		cfg.KeyLimits[key] = l
		order = append(order, key)
	}
	// Without --rpm (--tpm) for the other keys, the bursts are the listed
	// keys' alone.
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestBurst = 0
	}
	if cfg.TokensPerMinute == 0 {
		cfg.TokenBurst = 0
	}
	return order, nil
}

// keyHint shows a key by its last four characters, as the providers'
// dashboards do, never whole.
func keyHint(key string) string {
	if len(key) <= 4 {
		return "…"
	}
	return "…" + key[len(key)-4:]
}

// limitsText says a key's limits.
func limitsText(l simulator.Limits) string {
	s := "unlimited requests"
	if l.RequestsPerMinute > 0 {
		s = fmt.Sprintf("%d requests/min", l.RequestsPerMinute)
	}
	if l.TokensPerMinute > 0 {
		s += fmt.Sprintf(", %d tokens/min", l.TokensPerMinute)
	}
	return s
}
