package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/internal/batch"
)

// batchAPIFlags are the batch command's flags of a run through the
// provider's batch API (--via batch-api).
type batchAPIFlags struct {
	via              string
	completionWindow time.Duration
	poll             time.Duration
	fallbackOnline   bool
	cancelRemote     bool
	maxRequests      int
	maxBytes         int
	enqueuedTokens   int
}

// The values of --via.
const (
	viaOnline   = "online"
	viaBatchAPI = "batch-api"
)

// apiOnlyFlags are the flags that only a run through the batch API takes.
var apiOnlyFlags = []string{"completion-window", "poll", "fallback-online", "cancel-remote",
	"batch-max-requests", "batch-max-bytes", "batch-enqueued-tokens"}

func (f *batchAPIFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.via, "via", viaOnline, "online, or batch-api: through the provider's batch API (OpenAI's Batch API, Anthropic's Message Batches), about half the price, answers within 24 hours")
	fl.DurationVar(&f.completionWindow, "completion-window", batchapi.CompletionWindow24h, "--via batch-api: the time each provider batch has to end (the providers offer 24h only)")
	fl.DurationVar(&f.poll, "poll", batchapi.DefaultPoll, "--via batch-api: how often each provider batch is asked how it stands")
	fl.BoolVar(&f.fallbackOnline, "fallback-online", false, "--via batch-api: send the requests whose batch expired or failed online, within --rpm, --tpm and --concurrency, instead of in a new batch")
	fl.BoolVar(&f.cancelRemote, "cancel-remote", false, "--via batch-api: on Ctrl-C, cancel the provider batches still running (by default they go on, and a rerun collects them)")
	fl.IntVar(&f.maxRequests, "batch-max-requests", 0, "--via batch-api: requests in one provider batch at most (0: the provider's limit, 50,000 for OpenAI, 100,000 for Anthropic)")
	fl.IntVar(&f.maxBytes, "batch-max-bytes", 0, "--via batch-api: bytes in one provider batch at most (0: the provider's limit, 200 MB for OpenAI, 256 MB for Anthropic)")
	fl.IntVar(&f.enqueuedTokens, "batch-enqueued-tokens", 0, "--via batch-api: estimated tokens of one model in provider batches not yet ended at most, your enqueued-token limit at the provider (0: no limit)")
}

// journalSuffix names the journal of a results file: the provider batches
// of a run through the batch API, recorded next to its results.
const journalSuffix = ".batches.jsonl"

// config returns the run's batch API settings: nil for an online run. The
// journal is kept next to the results file, so a run through the batch API
// needs one.
func (f *batchAPIFlags) config(fl *pflag.FlagSet, out string, e env) (*batchapi.Config, error) {
	switch f.via {
	case viaOnline:
		for _, name := range apiOnlyFlags {
			if fl.Changed(name) {
				return nil, usagef("--%s: only with --via %s", name, viaBatchAPI)
			}
		}
		return nil, nil
	case viaBatchAPI:
	default:
		return nil, usagef("--via: %s or %s, not %q", viaOnline, viaBatchAPI, f.via)
	}
	if out == "" || out == "-" {
		return nil, usagef("--via %s: needs --out FILE: the provider batches are recorded next to it (FILE%s), so that a rerun collects them instead of paying for them again", viaBatchAPI, journalSuffix)
	}
	cfg := &batchapi.Config{
		Journal: out + journalSuffix, Poll: f.poll, CompletionWindow: f.completionWindow,
		MaxRequests: f.maxRequests, MaxBytes: f.maxBytes, EnqueuedTokens: f.enqueuedTokens,
		FallbackOnline: f.fallbackOnline, CancelRemote: f.cancelRemote,
	}
	if !f.cancelRemote && e.isTerminal(e.stderr) {
		cfg.OnInterrupt = askToCancel(e.stdin, e.stderr, promptWait)
	}
	return cfg, nil
}

// promptWait is how long the question on an interrupt waits for an answer.
const promptWait = 30 * time.Second

// askToCancel asks, on an interrupt, whether to cancel the provider batches
// left running; no answer within wait (or none to read) leaves them. Only a
// terminal is asked: elsewhere no one would answer, and the batches are
// left running unless --cancel-remote says otherwise.
func askToCancel(in io.Reader, out io.Writer, wait time.Duration) func(running int) bool {
	return func(running int) bool {
		fmt.Fprintf(out, "\nlionactor: %d provider batches are still running; they go on (and are paid for) unless cancelled, and a rerun collects their answers.\nCancel them at the provider? [y/N] ", running)
		answer := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(in).ReadString('\n')
			answer <- strings.ToLower(strings.TrimSpace(line))
		}()
		select {
		case a := <-answer:
			return a == "y" || a == "yes"
		case <-time.After(wait):
			fmt.Fprintln(out, "\nlionactor: no answer: the batches go on")
			return false
		}
	}
}

// interruptedBatches says on a line of its own, for an interrupted run
// through the batch API, what became of its provider batches; "" for an
// online run.
func interruptedBatches(s batch.Snapshot) string {
	b := s.Batches
	switch {
	case b == nil || b.Running == 0:
		return ""
	case b.Cancelled > 0:
		return fmt.Sprintf("\nlionactor: %d provider batches were asked to cancel (a rerun collects what they answered)", b.Cancelled)
	}
	return fmt.Sprintf("\nlionactor: %d provider batches go on at the provider (a rerun collects them; --cancel-remote cancels them on an interrupt)", b.Running)
}

// demoBatchDelay is how long the demo's simulated provider batches take
// (a test makes them end at once).
var demoBatchDelay = 3 * time.Second

// demoBatchAPI is the batch API setting of the demo's run: nil for
// online.
func demoBatchAPI(via, out string) (*batchapi.Config, error) {
	switch via {
	case viaOnline:
		return nil, nil
	case viaBatchAPI:
		return &batchapi.Config{Journal: out + journalSuffix, Poll: max(demoBatchDelay/6, time.Millisecond)}, nil
	}
	return nil, usagef("--via: %s or %s, not %q", viaOnline, viaBatchAPI, via)
}
