package messages

import (
	"context"
	"net/http"
	"time"
)

// Call performs one attempt of a request. The runtime runs it off the actor
// goroutines with a context that is cancelled when the request is cancelled,
// times out, or the executor stops immediately; a Call must honour ctx.
// attempt counts from 1.
//
// A Call knows nothing of actors: the runtime is indifferent to whether it
// speaks HTTP, gRPC or runs a local function.
type Call interface {
	Do(ctx context.Context, attempt int) (Result, error)
}

// CallFunc adapts a function to [Call].
type CallFunc func(ctx context.Context, attempt int) (Result, error)

// Do calls f(ctx, attempt).
func (f CallFunc) Do(ctx context.Context, attempt int) (Result, error) { return f(ctx, attempt) }

// Result is what a successful call returns. All fields are optional. The
// runtime copies Header and Body into the request's snapshots; Value is shared
// as it is and must not be modified once returned.
type Result struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// Value is the decoded response, for callers that want a typed result.
	Value any
	// Usage is the API tokens the call really consumed, when known. The
	// executor reconciles its token bucket with it: it refunds what was
	// over-estimated and charges what was under-estimated. The request's
	// Pricing turns it into the call's cost.
	Usage *Usage
}

// Usage counts the API tokens a call consumed. InputTokens and
// OutputTokens are totals; the other counts break them down, as the
// providers report them, for pricing: a cached input token or a reasoning
// token is counted once, in its total and in its detail.
type Usage struct {
	// InputTokens counts every input token of the call, those read from
	// or written to the provider's prompt cache included (OpenAI's
	// prompt_tokens; Anthropic's input_tokens plus its two cache counts).
	InputTokens int `json:"input_tokens"`
	// OutputTokens counts every output token, reasoning included
	// (OpenAI's completion_tokens, Anthropic's output_tokens): both
	// providers bill reasoning as output.
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
	// CachedInputTokens of InputTokens were read from the provider's
	// prompt cache (OpenAI's prompt_tokens_details.cached_tokens,
	// Anthropic's cache_read_input_tokens), billed at the cached-input
	// price.
	CachedInputTokens int `json:"cached_input_tokens,omitempty"`
	// CacheWriteTokens of InputTokens were written to the prompt cache
	// (Anthropic's cache_creation_input_tokens), billed at the
	// cache-write price.
	CacheWriteTokens int `json:"cache_write_tokens,omitempty"`
	// ReasoningTokens of OutputTokens were the model's reasoning, not
	// part of the reply's text (OpenAI's
	// completion_tokens_details.reasoning_tokens).
	ReasoningTokens int `json:"reasoning_tokens,omitempty"`
}

// Pricing turns what a call consumed into what it costs. imodel's Price
// implements it from a provider's price list.
type Pricing interface {
	// Cost returns what u costs, in US dollars.
	Cost(u Usage) float64
}

// RetryPolicy decides whether a failed attempt is tried again.
type RetryPolicy interface {
	// Backoff is asked after attempt (from 1) failed with err, and only while
	// attempts remain. It returns the delay before the next attempt and
	// whether to retry at all.
	Backoff(attempt int, err error) (delay time.Duration, retry bool)
}

// Endpoint describes what a request calls, for its snapshots. It is purely
// descriptive: the [Call] does the work.
type Endpoint struct {
	Method string
	URL    string
	// Header is copied, and the values of credential headers
	// (Authorization, X-Api-Key, ...) are replaced by [Redacted].
	Header http.Header
	// Payload is the request body, copied.
	Payload []byte
}

// Request is one unit of work submitted to an executor. Only Call is
// required.
type Request struct {
	// Call performs each attempt.
	Call Call
	// Tokens is the request's estimated cost in API tokens, charged to the
	// token bucket before the call. It must not exceed the bucket's burst.
	Tokens int
	// Endpoint describes the call in the snapshots.
	Endpoint Endpoint
	// Metadata is copied into every snapshot as it is.
	Metadata map[string]string
	// Timeout bounds each attempt; zero means the executor's default.
	Timeout time.Duration
	// MaxAttempts is the total number of attempts allowed (first try
	// included); zero means the executor's default.
	MaxAttempts int
	// Retry decides retries; nil means the executor's default policy.
	Retry RetryPolicy
	// Secrets are strings, such as API keys, that are scrubbed from every
	// error message and response the snapshots carry.
	Secrets []string

	// Pricing prices the usage each attempt reports into the snapshots'
	// cost (Event.Cost, its Actual); EstimatedCost is the most the request
	// is expected to cost, in US dollars, before its call (its Estimated),
	// which is what a spend cap reserves for it. A request without Pricing
	// has no known price: its snapshots say so (Priced is false), never
	// that it was free, and an executor with a spend cap refuses it.
	Pricing       Pricing
	EstimatedCost float64

	// Cached, if set, is the request's reply already known, such as a
	// reply to the same request stored by an earlier run: Submit completes
	// the request with it at once, without queueing it, taking a permit or
	// calling. Its snapshots are PENDING then COMPLETED, with Cached set
	// and a cost of 0. Requests submitted by message (messages.Submit)
	// are always called.
	Cached *Result
}
