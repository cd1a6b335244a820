package simulator

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// Defaults for the zero values of Config fields.
const (
	// DefaultCompletionTokens is the length of a generated reply when
	// Config.CompletionTokens is zero: long enough for a stream to have
	// several chunks, short enough to keep tests fast.
	DefaultCompletionTokens = 16

	// DefaultReasoningTokens is how many tokens a reasoning model (OpenAI's
	// o-series and gpt-5) spends reasoning before each reply when
	// Config.ReasoningTokens is zero.
	DefaultReasoningTokens = 32

	// DefaultEmbeddingDims is the length of an embedding vector when
	// Config.EmbeddingDims is zero and the request asks for none. Real
	// models return 256 to 3072 values; 8 keeps test output readable.
	DefaultEmbeddingDims = 8

	// DefaultMaxBodyBytes is the largest request body accepted when
	// Config.MaxBodyBytes is zero.
	DefaultMaxBodyBytes = 16 << 20

	// DefaultSlowDelay is how long a "slow" fault holds its response when
	// Config.SlowDelay is zero. It is meant to exceed a client's timeout;
	// Close ends the wait at once, so tests do not pay for it.
	DefaultSlowDelay = time.Minute

	// DefaultFaultRetryAfter is the wait that an injected 429 advertises
	// when Config.FaultRetryAfter is zero.
	DefaultFaultRetryAfter = 100 * time.Millisecond
)

// Faults sets the probability, each in [0, 1], that a request meets each
// kind of failure. One uniform draw per request picks at most one fault,
// so the rates must sum to at most 1. Draws come from the server's seeded
// random source, so a given sequence of requests meets the same faults on
// every run.
type Faults struct {
	// ServerError answers 500 with the provider's server error body.
	ServerError float64
	// Unavailable answers 503.
	Unavailable float64
	// Overloaded answers 529 with an overloaded_error body, as Anthropic
	// does when its service as a whole is overloaded.
	Overloaded float64
	// Reset closes the TCP connection without sending a response.
	Reset float64
	// Malformed answers 200 with a body, or a stream event, that is not
	// valid JSON.
	Malformed float64
	// Truncate cuts the response mid-way: a stream stops inside an event
	// without its end marker, and a plain body stops mid-JSON, shorter
	// than its Content-Length, and the connection is closed.
	Truncate float64
	// Slow holds the response for Config.SlowDelay before sending it, to
	// exercise the client's timeout.
	Slow float64
	// RateLimit answers 429 with retry headers although the request is
	// within its limits, as the providers sometimes do under load.
	RateLimit float64
}

// A Config configures a Server. The zero value is a server without rate
// limits, latency or faults that accepts any API key.
type Config struct {
	// RequestsPerMinute and TokensPerMinute are the limits enforced per
	// API key; 0 means unlimited. Each is a token bucket that refills
	// continuously at limit/60 per second, which is how the providers
	// describe their limits.
	RequestsPerMinute int
	TokensPerMinute   int

	// RequestBurst and TokenBurst are the capacities of the request and
	// token buckets: how much a key may spend at once after a quiet spell.
	// 0 means the per-minute limit, which is what the providers do. A burst
	// must not exceed its limit (and so needs one). The rate-limit headers
	// still report the per-minute limit as the limit, the bucket's level as
	// what remains, and the time until the bucket is full as the reset.
	RequestBurst int
	TokenBurst   int

	// Latency is added before every admitted response, and LatencyJitter
	// varies it uniformly within ±LatencyJitter using the seeded random
	// source. LatencyJitter must not exceed Latency.
	Latency       time.Duration
	LatencyJitter time.Duration

	// Faults sets how often requests fail, and how.
	Faults Faults

	// SlowDelay is the hold of a "slow" fault; 0 means DefaultSlowDelay.
	SlowDelay time.Duration

	// FaultRetryAfter is the wait that an injected 429 advertises in its
	// retry-after headers; 0 means DefaultFaultRetryAfter.
	FaultRetryAfter time.Duration

	// Seed seeds the random source of faults and jitter, and the words
	// and embedding values generated.
	Seed int64

	// CompletionTokens is the length, in tokens, of every generated reply,
	// unless the request's max_tokens is smaller; 0 means
	// DefaultCompletionTokens.
	CompletionTokens int

	// ReasoningTokens is how many tokens a reasoning model (OpenAI's
	// o-series and gpt-5) spends reasoning before each reply, within the
	// request's max_completion_tokens, leaving a token for the reply:
	// counted in completion_tokens and reported as
	// completion_tokens_details.reasoning_tokens, as OpenAI bills them. 0
	// means DefaultReasoningTokens.
	ReasoningTokens int

	// Keys, when non-empty, lists the API keys accepted; other keys get
	// 401. When empty, any non-empty key is accepted.
	Keys []string

	// QuotaExhaustedKeys lists keys that are accepted but whose account is
	// out of credit: OpenAI endpoints answer them 429 with code
	// insufficient_quota, and Anthropic's answers 400 about the credit
	// balance, as the providers do. They need not be listed in Keys.
	QuotaExhaustedKeys []string

	// KeyLimits gives API keys limits of their own, in place of
	// RequestsPerMinute, TokensPerMinute and their bursts: one server then
	// stands for several keys (or organisations) of one provider, each at
	// its own limits. The keys listed are accepted; they need not be listed
	// in Keys.
	KeyLimits map[string]Limits

	// EmbeddingDims is the length of embedding vectors for requests that
	// ask for no dimensions; 0 means DefaultEmbeddingDims.
	EmbeddingDims int

	// MaxBodyBytes is the largest request body accepted; larger ones get
	// 413. 0 means DefaultMaxBodyBytes. Batch uploads have the providers'
	// limits instead.
	MaxBodyBytes int64

	// BatchDelay is how long a batch of either provider takes from its
	// creation to its end, on the clock of the batch APIs, which
	// Server.AdvanceBatches moves forward without waiting; 0 ends a batch
	// as soon as it is created. A delay past the 24-hour completion
	// window makes batches expire with part of their requests unexecuted.
	BatchDelay time.Duration

	// BatchFaults sets how often requests inside batches, and whole
	// batches, fail.
	BatchFaults BatchFaults

	// BatchEnqueuedTokens is the most input tokens that one API key may
	// have in OpenAI batches not yet ended, per model; a batch that would
	// pass it fails validation with token_limit_exceeded, as OpenAI's
	// batch queue limit does. 0 means unlimited.
	BatchEnqueuedTokens int
}

// Limits are one API key's rate limits (see Config.KeyLimits); each field
// means what Config's field of the same name means, 0 unlimited or, for a
// burst, the whole per-minute limit.
type Limits struct {
	RequestsPerMinute int
	TokensPerMinute   int
	RequestBurst      int
	TokenBurst        int
}

// validate checks l, whose fields are named under prefix.
func (l Limits) validate(prefix string) error {
	for _, f := range []struct {
		name         string
		v, limit     int
		limitName    string
		checksLimits bool
	}{
		{"RequestsPerMinute", l.RequestsPerMinute, 0, "", false},
		{"TokensPerMinute", l.TokensPerMinute, 0, "", false},
		{"RequestBurst", l.RequestBurst, l.RequestsPerMinute, "RequestsPerMinute", true},
		{"TokenBurst", l.TokenBurst, l.TokensPerMinute, "TokensPerMinute", true},
	} {
		switch {
		case f.v < 0:
			return badConfig(prefix+f.name, f.v, "must not be negative")
		case f.checksLimits && f.v > f.limit:
			return badConfig(prefix+f.name, f.v, fmt.Sprintf("must not exceed %s (%d)", f.limitName, f.limit))
		}
	}
	return nil
}

// validate checks f's rates, whose fields are named under prefix.
func (f Faults) validate(prefix string) error {
	sum := 0.0
	for _, r := range f.rates() {
		if math.IsNaN(r.rate) || r.rate < 0 || r.rate > 1 {
			return badConfig(prefix+r.field, r.rate, "must be in [0, 1]")
		}
		sum += r.rate
	}
	if sum > 1+1e-9 {
		return badConfig(strings.TrimSuffix(prefix, "."), sum, "rates must sum to at most 1, since a request meets at most one fault")
	}
	return nil
}

// badConfig reports an invalid Config field: its path, such as
// "Faults.Reset", what it must be, and the value given.
func badConfig(field string, value any, rule string) error {
	return &messages.ConfigError{Field: field, Reason: fmt.Sprintf("%s, got %v", rule, value)}
}

// validate checks c and returns it with defaults filled in.
func (c Config) validate() (Config, error) {
	nonNegInt := []struct {
		name string
		v    int64
	}{
		{"RequestsPerMinute", int64(c.RequestsPerMinute)},
		{"TokensPerMinute", int64(c.TokensPerMinute)},
		{"RequestBurst", int64(c.RequestBurst)},
		{"TokenBurst", int64(c.TokenBurst)},
		{"CompletionTokens", int64(c.CompletionTokens)},
		{"ReasoningTokens", int64(c.ReasoningTokens)},
		{"EmbeddingDims", int64(c.EmbeddingDims)},
		{"MaxBodyBytes", c.MaxBodyBytes},
	}
	for _, f := range nonNegInt {
		if f.v < 0 {
			return c, badConfig(f.name, f.v, "must not be negative")
		}
	}
	bursts := []struct {
		name, limitName string
		burst, limit    int
	}{
		{"RequestBurst", "RequestsPerMinute", c.RequestBurst, c.RequestsPerMinute},
		{"TokenBurst", "TokensPerMinute", c.TokenBurst, c.TokensPerMinute},
	}
	for _, f := range bursts {
		if f.burst > f.limit {
			return c, badConfig(f.name, f.burst, fmt.Sprintf("must not exceed %s (%d)", f.limitName, f.limit))
		}
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"Latency", c.Latency},
		{"LatencyJitter", c.LatencyJitter},
		{"SlowDelay", c.SlowDelay},
		{"FaultRetryAfter", c.FaultRetryAfter},
	}
	for _, f := range durations {
		if f.v < 0 {
			return c, badConfig(f.name, f.v, "must not be negative")
		}
	}
	if c.LatencyJitter > c.Latency {
		return c, badConfig("LatencyJitter", c.LatencyJitter, "must not exceed Latency, so that no delay is negative")
	}
	if err := c.Faults.validate("Faults."); err != nil {
		return c, err
	}
	for _, k := range slices.Sorted(maps.Keys(c.KeyLimits)) {
		if k == "" {
			return c, badConfig("KeyLimits", `""`, "a key must not be empty")
		}
		if err := c.KeyLimits[k].validate(fmt.Sprintf("KeyLimits[%q].", k)); err != nil {
			return c, err
		}
	}
	for i, k := range c.Keys {
		if k == "" {
			return c, badConfig(fmt.Sprintf("Keys[%d]", i), `""`, "must not be empty")
		}
	}
	for i, k := range c.QuotaExhaustedKeys {
		if k == "" {
			return c, badConfig(fmt.Sprintf("QuotaExhaustedKeys[%d]", i), `""`, "must not be empty")
		}
	}
	if err := c.validateBatch(); err != nil {
		return c, err
	}
	if c.CompletionTokens == 0 {
		c.CompletionTokens = DefaultCompletionTokens
	}
	if c.ReasoningTokens == 0 {
		c.ReasoningTokens = DefaultReasoningTokens
	}
	if c.EmbeddingDims == 0 {
		c.EmbeddingDims = DefaultEmbeddingDims
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = DefaultSlowDelay
	}
	if c.FaultRetryAfter == 0 {
		c.FaultRetryAfter = DefaultFaultRetryAfter
	}
	return c, nil
}

// faultRate is one kind of fault with its configured probability.
type faultRate struct {
	field string
	kind  fault
	rate  float64
}

// rates returns the faults in the fixed order in which a draw picks them.
func (f Faults) rates() []faultRate {
	return []faultRate{
		{"ServerError", faultServerError, f.ServerError},
		{"Unavailable", faultUnavailable, f.Unavailable},
		{"Overloaded", faultOverloaded, f.Overloaded},
		{"Reset", faultReset, f.Reset},
		{"Malformed", faultMalformed, f.Malformed},
		{"Truncate", faultTruncate, f.Truncate},
		{"Slow", faultSlow, f.Slow},
		{"RateLimit", faultRateLimit, f.RateLimit},
	}
}
