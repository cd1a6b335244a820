package imodel

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
)

// RequestEstimate is what a request is expected to consume, counted before
// it is sent: the same count the executor's token bucket is charged with,
// and the cost a spend cap reserves.
type RequestEstimate struct {
	// Model is the model the request names, or the endpoint's default (on
	// Azure, the deployment's name when the request names none).
	Model string
	// InputTokens counts the prompt (for chat, OpenAI's formula: per
	// message 4 + its fields, +2 for the reply; for embeddings, the
	// inputs), with the model's tokenizer, or o200k_base for a model whose
	// tokenizer is not public, such as Claude's.
	InputTokens int
	// OutputTokens is the most the replies may use: n × max_tokens (or
	// max_completion_tokens). A chat request that sets no limit is counted
	// at tokens.DefaultMaxTokens, the reservation, not a bound: see
	// MaxTokensSet. Embeddings have none.
	OutputTokens int
	// MaxTokensSet says the request bounds its reply itself.
	MaxTokensSet bool
	// CacheWrites says the request marks part of its prompt for the
	// provider's cache (Anthropic's cache_control), which the provider may
	// bill at the cache-write price, above the input price.
	CacheWrites bool
	// Price is the model's price, when Priced.
	Price  Price
	Priced bool

	// atLeast says InputTokens is only a lower bound, from the length of
	// the texts: they were not tokenized, the request being refused for
	// its size (see countBody).
	atLeast bool
}

// Tokens is the request's estimated API tokens, input and output: what the
// executor's token bucket is charged before the call.
func (e RequestEstimate) Tokens() int { return e.InputTokens + e.OutputTokens }

// Cost is the most the request is expected to cost, in US dollars: its
// input and its output tokens at the model's prices, none read from the
// prompt cache, all written to it when the request asks for that
// (CacheWrites); 0 when the price is unknown (Priced says which).
func (e RequestEstimate) Cost() float64 {
	if !e.Priced {
		return 0
	}
	u := messages.Usage{InputTokens: e.InputTokens, OutputTokens: e.OutputTokens}
	if e.CacheWrites && e.Price.CacheWrite > e.Price.Input {
		u.CacheWriteTokens = e.InputTokens
	}
	return e.Price.Cost(u)
}

// Estimate returns the API tokens the model would charge a request with this
// payload, as Invoke estimates them before queueing it: for chat, OpenAI's
// own count (per message 4 + its fields, +2 for the reply, + n × max
// tokens); for embeddings, the sum over the inputs; for Anthropic messages,
// the input plus max_tokens; 0 for other endpoints.
func (m *Model) Estimate(payload map[string]any) int {
	body, err := json.Marshal(m.cfg.fields(payload, nil))
	if err != nil {
		return 0
	}
	return m.cfg.estimate(m.cfg.Path, body, m.prices, 0).Tokens()
}

// Estimator counts and prices requests to an endpoint exactly as a Model of
// it does before sending them, without a key, an executor or a network: what
// a dry run needs. Its methods are safe for concurrent use.
type Estimator struct {
	cfg    *resolved
	prices *Prices
}

// NewEstimator returns an estimator of the requests of cfg, priced by
// prices (nil: DefaultPrices). cfg is validated as New validates it, except
// that it needs no API key.
func NewEstimator(cfg EndpointConfig, prices *Prices) (*Estimator, error) {
	r, err := cfg.resolveWithoutKey()
	if err != nil {
		return nil, err
	}
	if prices == nil {
		prices = DefaultPrices()
	}
	return &Estimator{cfg: r, prices: prices}, nil
}

// Estimate returns the estimate of a request with this payload to the
// endpoint's path (what Invoke, Submit and a batch send), with its fields
// merged as Invoke merges them. It fails, with messages.ErrInvalidRequest,
// only where Invoke would refuse the payload before sending it.
func (e *Estimator) Estimate(payload map[string]any) (RequestEstimate, error) {
	fields := e.cfg.fields(payload, nil)
	path, err := fillPath(e.cfg.Path, fields)
	if err != nil {
		return RequestEstimate{}, err
	}
	body, err := requestBody(e.cfg.Method, fields)
	if err != nil {
		return RequestEstimate{}, err
	}
	return e.cfg.estimate(path, body, e.prices, 0), nil
}

// Price returns the price of model at the estimator's provider, and
// whether there is one.
func (e *Estimator) Price(model string) (Price, bool) { return e.prices.Lookup(e.cfg.Provider, model) }

// estimate counts a request body to path, and prices it. A body that names
// no model is counted, and priced, as the Azure deployment's name, which is
// usually the model's. It never fails: an endpoint or body it does not
// understand counts 0 tokens, as a generic call does, and the caller can
// give the count with WithTokens. With a limit above 0, a request whose
// texts are long enough to prove it costs more tokens than limit is not
// counted: see countBody.
func (r *resolved) estimate(path string, body []byte, prices *Prices, limit int) RequestEstimate {
	e := countBody(r.Provider, path, body, or(r.Model, r.Deployment), limit)
	e.Price, e.Priced = prices.Lookup(r.Provider, e.Model)
	return e
}

// countBody counts a request body's tokens by what the endpoint is, with
// the tokenizer of the body's model, or else of defaultModel.
//
// With limit above 0, the texts are first measured, not tokenized: when
// their lengths alone give more tokens than limit (tokens.Counter.MinCount:
// no token is longer than 128 bytes), the estimate has that lower bound as
// its input tokens and atLeast set, and the texts are never tokenized.
// Tokenizing costs about a second and a gigabyte of allocations for 30 MB
// of text; the bound costs nothing.
func countBody(p Provider, path string, body []byte, defaultModel string, limit int) RequestEstimate {
	switch {
	case p == Anthropic && strings.HasSuffix(path, "/messages"):
		var r messagesCount
		if json.Unmarshal(body, &r) != nil {
			return RequestEstimate{Model: defaultModel}
		}
		model := or(r.Model, defaultModel)
		c := tokens.ForModel(model)
		msgs := make([]tokens.Message, 0, len(r.Messages)+1)
		if s := r.System.String(); s != "" {
			msgs = append(msgs, tokens.Message{Role: "system", Text: s})
		}
		for _, msg := range r.Messages {
			msgs = append(msgs, tokens.Message{Role: msg.Role, Text: msg.Content.String(), Images: msg.Content.ImageCount()})
		}
		est := chatEstimate(model, c, msgs, 1, r.MaxTokens, limit)
		est.CacheWrites = marksCache(r.System) || slices.ContainsFunc(r.Messages, func(m messageCount) bool { return marksCache(m.Content) })
		return est
	case p == Generic:
		return RequestEstimate{Model: modelOf(body, defaultModel)}
	case strings.HasSuffix(path, "/chat/completions"):
		var r chatCount
		if json.Unmarshal(body, &r) != nil {
			return RequestEstimate{Model: defaultModel}
		}
		model := or(r.Model, defaultModel)
		c := tokens.ForModel(model)
		msgs := make([]tokens.Message, len(r.Messages))
		for i, msg := range r.Messages {
			msgs[i] = tokens.Message{Role: msg.Role, Name: msg.Name, Text: msg.Content.String(), Images: msg.Content.ImageCount()}
		}
		n, maxTokens := 1, 0
		if r.N != nil {
			n = *r.N
		}
		if r.MaxCompletionTokens != nil {
			maxTokens = *r.MaxCompletionTokens
		} else if r.MaxTokens != nil {
			maxTokens = *r.MaxTokens
		}
		return chatEstimate(model, c, msgs, n, maxTokens, limit)
	case strings.HasSuffix(path, "/embeddings"):
		var r wire.EmbeddingRequest
		if json.Unmarshal(body, &r) != nil {
			return RequestEstimate{Model: defaultModel}
		}
		model := or(r.Model, defaultModel)
		c := tokens.ForModel(model)
		e := RequestEstimate{Model: model, MaxTokensSet: true}
		if lo := minTokens(c, r.Input.Texts, func(s string) string { return s }); limit > 0 && lo > limit {
			e.InputTokens, e.atLeast = lo, true
			return e
		}
		e.InputTokens = c.Embedding(r.Input.Texts)
		return e
	}
	return RequestEstimate{Model: modelOf(body, defaultModel)}
}

// chatCount is what an estimate reads of a chat completion request
// (wire.ChatRequest), decoded without the members it leaves out.
type chatCount struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string       `json:"role"`
		Name    string       `json:"name"`
		Content wire.Content `json:"content"`
	} `json:"messages"`
	N                   *int `json:"n"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
}

// messagesCount is what an estimate reads of an Anthropic messages request
// (wire.MessagesRequest).
type messagesCount struct {
	Model     string                `json:"model"`
	System    wire.AnthropicContent `json:"system"`
	Messages  []messageCount        `json:"messages"`
	MaxTokens int                   `json:"max_tokens"`
}

type messageCount struct {
	Role    string                `json:"role"`
	Content wire.AnthropicContent `json:"content"`
}

// chatEstimate is tokens.Counter.ChatRequest's count, the prompt and the
// replies apart; or, when the texts' lengths alone prove the request costs
// more than limit (above 0), the replies and the texts' lower bound, with
// atLeast set, without tokenizing them.
func chatEstimate(model string, c *tokens.Counter, msgs []tokens.Message, n, maxTokens, limit int) RequestEstimate {
	e := RequestEstimate{Model: model, OutputTokens: tokens.ReplyTokens(n, maxTokens), MaxTokensSet: maxTokens > 0}
	// The framing, roles, names and images ChatPrompt adds only add to
	// the texts' tokens.
	if lo := minTokens(c, msgs, func(m tokens.Message) string { return m.Text }); limit > 0 && lo+e.OutputTokens > limit {
		e.InputTokens, e.atLeast = lo, true
		return e
	}
	e.InputTokens = c.ChatPrompt(msgs)
	return e
}

// minTokens is the least number of tokens c can count in the texts of
// items, from their lengths alone.
func minTokens[T any](c *tokens.Counter, items []T, text func(T) string) int {
	n := 0
	for _, it := range items {
		n += c.MinCount(text(it))
	}
	return n
}

// marksCache reports whether content has a block marked for the prompt
// cache.
func marksCache(content wire.AnthropicContent) bool {
	return slices.ContainsFunc(content.Blocks, func(b wire.ContentBlock) bool { return len(b.CacheControl) > 0 })
}

// modelOf reads the "model" field of a JSON body, or returns defaultModel.
func modelOf(body []byte, defaultModel string) string {
	var r struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &r) != nil {
		return defaultModel
	}
	return or(r.Model, defaultModel)
}

// requestBody is the JSON body of a request of method with fields; nil for
// a method that sends its fields as a query.
func requestBody(method string, fields map[string]any) ([]byte, error) {
	if !hasBody(method) {
		return nil, nil
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not JSON: %w", messages.ErrInvalidRequest, err)
	}
	return body, nil
}
