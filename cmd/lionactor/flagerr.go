package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/lionactor/lionactor/messages"
)

// batchFlagOf names the batch flag that sets each configuration field the
// library reports by its Go name, so that an error names what the user
// typed. Flag names are the command's: the packages it calls speak of
// their fields.
var batchFlagOf = map[string]string{
	// batch.Config (its Timeout, MaxAttempts and Concurrency are named as
	// the endpoint's and the executor's, below)
	"RPM":            "rpm",
	"TPM":            "tpm",
	"Burst":          "burst",
	"Queue":          "queue",
	"MaxLineBytes":   "max-line-bytes",
	"Grace":          "grace",
	"RetryKinds":     "retry-failed",
	"Budget":         "budget",
	"BudgetMembers":  "budget-members",
	"BudgetListen":   "budget-listen",
	"BudgetSecret":   "budget-secret-env",
	"BudgetTLS.Cert": "budget-tls-cert",
	"BudgetTLS.Key":  "budget-tls-key",
	"BudgetTLS.CA":   "budget-tls-ca",
	"MaxCost":        "max-cost",
	"Cache":          "cache-dir",
	"OutputShare":    "output-share",
	"CallLatency":    "call-latency",
	// imodel.EndpointConfig
	"Provider":    "provider",
	"BaseURL":     "url",
	"Path":        "endpoint",
	"Model":       "model",
	"APIKey":      "api-key-env",
	"Deployment":  "deployment",
	"APIVersion":  "api-version",
	"Headers":     "header",
	"Timeout":     "timeout",
	"MaxAttempts": "max-attempts",
	// runtime.Config, as batch fills it
	"Concurrency":         "concurrency",
	"QueueCapacity":       "queue",
	"RequestsPerInterval": "rpm",
	"RequestBurst":        "burst",
	"TokensPerInterval":   "tpm",
	"CallTimeout":         "timeout",
	// budget.MemberConfig, as batch fills it
	"SharedBudget.Address":         "budget",
	"SharedBudget.ExpectedMembers": "budget-members",
	"SharedBudget.ListenAddr":      "budget-listen",
	// batchapi.Config, as batch.Config.BatchAPI
	"BatchAPI":                  "via",
	"BatchAPI.Poll":             "poll",
	"BatchAPI.CompletionWindow": "completion-window",
	"BatchAPI.MaxRequests":      "batch-max-requests",
	"BatchAPI.MaxBytes":         "batch-max-bytes",
	"BatchAPI.EnqueuedTokens":   "batch-enqueued-tokens",
}

// simFlagOf names the sim flag that sets each simulator.Config field.
var simFlagOf = map[string]string{
	"RequestsPerMinute":       "rpm",
	"TokensPerMinute":         "tpm",
	"RequestBurst":            "request-burst",
	"TokenBurst":              "token-burst",
	"Latency":                 "latency",
	"LatencyJitter":           "jitter",
	"CompletionTokens":        "completion-tokens",
	"ReasoningTokens":         "reasoning-tokens",
	"Faults.ServerError":      "fail-500",
	"Faults.Unavailable":      "fail-503",
	"Faults.Overloaded":       "fail-529",
	"Faults.RateLimit":        "fail-429",
	"Faults.Reset":            "fail-reset",
	"Faults.Malformed":        "fail-malformed",
	"Faults.Truncate":         "fail-truncate",
	"Faults.Slow":             "fail-slow",
	"SlowDelay":               "slow-delay",
	"BatchDelay":              "batch-delay",
	"BatchFaults.ServerError": "batch-fail-500",
	"BatchFaults.Expired":     "batch-expire",
	"BatchFaults.Failed":      "batch-fail",
	"BatchEnqueuedTokens":     "batch-enqueued-tokens",
}

// flagError is a configuration error told by the flag that set the field:
// "--url: must be an absolute http or https URL".
type flagError struct {
	flag string // "--url", or "" when no flag sets the field
	err  *messages.ConfigError
}

func (e *flagError) Error() string {
	if e.flag == "" {
		return "invalid config: " + e.err.Field + ": " + e.err.Reason
	}
	return e.flag + ": " + e.err.Reason
}

func (e *flagError) Unwrap() error { return e.err }

// namingFlags returns err, if it is a *messages.ConfigError, as a usage
// error naming the flag of fl that sets its field; any other error as it is.
func namingFlags(fl *pflag.FlagSet, of map[string]string, err error) error {
	var ce *messages.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	fe := &flagError{err: ce}
	name, ok := of[ce.Field]
	if !ok {
		name = ce.Field
	}
	if fl.Lookup(name) != nil {
		fe.flag = "--" + name
	}
	return usageError{fe}
}
