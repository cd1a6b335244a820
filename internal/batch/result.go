package batch

import (
	"encoding/json"
	"time"
)

// Result is one line of the results file.
type Result struct {
	// Index is the request's 0-based line number in this run's input.
	Index int `json:"index"`
	// Key is the request's identity, which a rerun matches results by:
	// "id:" and the line's "id" when it has one, else its ContentHash and
	// its occurrence among identical lines, as in "sha256:…#1".
	Key string `json:"key"`
	// ContentHash is "sha256:" and the hex SHA-256 of the canonical content
	// the result answers: the line without its "id", keys sorted, no spaces.
	ContentHash string `json:"content_hash"`
	// ID is the input line's "id", as given.
	ID json.RawMessage `json:"id,omitempty"`
	// RequestID is the executor's ID of the request.
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status"`
	// Response is the provider's reply body (JSON), for a completed request.
	Response json.RawMessage `json:"response,omitempty"`
	Error    *ResultError    `json:"error,omitempty"`
	Attempts int             `json:"attempts"`
	// Deployment names the deployment that served the request, or that
	// its last attempt went to, in a run over several (Config.Deployments).
	Deployment string `json:"deployment,omitempty"`
	// Cached says the reply came from the cache (Config.Cache), without a
	// call, at no cost.
	Cached bool         `json:"cached,omitempty"`
	Tokens ResultTokens `json:"tokens"`
	// CostUSD is what the request cost; none for a line that was never
	// sent.
	CostUSD *ResultCost   `json:"cost_usd,omitempty"`
	Timings ResultTimings `json:"timings"`
	// Metadata is the input line's "metadata", untouched.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// ProviderBatch names the provider batch that answered the request,
	// in a run through the batch API.
	ProviderBatch *ResultBatch `json:"provider_batch,omitempty"`
}

// ResultBatch names the provider batch that answered a request, and the
// request in it.
type ResultBatch struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
}

// ResultError says why a request failed.
type ResultError struct {
	Kind    string            `json:"kind"`
	Message string            `json:"message"`
	Status  int               `json:"status,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// ResultTokens are a request's API tokens.
type ResultTokens struct {
	Estimated int  `json:"estimated"`
	Actual    *int `json:"actual,omitempty"`
}

// ResultTimings are a request's times, in milliseconds since it was created.
type ResultTimings struct {
	Created time.Time `json:"created"`
	QueueMS float64   `json:"queue_ms"`
	WaitMS  float64   `json:"permit_ms"`
	CallMS  float64   `json:"call_ms"`
	TotalMS float64   `json:"total_ms"`
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
