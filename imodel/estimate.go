package imodel

import (
	"encoding/json"
	"strings"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// Estimate returns the API tokens the model would charge a request with this
// payload, as Invoke estimates them before queueing it: for chat, OpenAI's
// own count (per message 4 + its fields, +2 for the reply, + n × max
// tokens); for embeddings, the sum over the inputs; for Anthropic messages,
// the input plus max_tokens; 0 for other endpoints.
func (m *Model) Estimate(payload map[string]any) int {
	body, err := json.Marshal(m.fields(payload, nil))
	if err != nil {
		return 0
	}
	return m.estimate(m.cfg.Path, body)
}

// estimate is the model's estimate of a request body to path. A body that
// names no model is counted for the Azure deployment's name, which is
// usually the model's.
func (m *Model) estimate(path string, body []byte) int {
	return estimate(m.cfg.Provider, path, body, m.cfg.Deployment)
}

// estimate counts a request body's tokens by what the endpoint is, with the
// tokenizer of the body's model, or else of defaultModel. It never fails:
// an endpoint or body it does not understand costs 0, the same as a generic
// call, and the caller can give the count with WithTokens.
func estimate(p Provider, path string, body []byte, defaultModel string) int {
	switch {
	case p == Anthropic && strings.HasSuffix(path, "/messages"):
		var r wire.MessagesRequest
		if json.Unmarshal(body, &r) != nil {
			return 0
		}
		c := tokens.ForModel(or(r.Model, defaultModel))
		msgs := make([]tokens.Message, 0, len(r.Messages)+1)
		if s := r.System.String(); s != "" {
			msgs = append(msgs, tokens.Message{Role: "system", Text: s})
		}
		for _, msg := range r.Messages {
			msgs = append(msgs, tokens.Message{Role: msg.Role, Text: msg.Content.String(), Images: msg.Content.ImageCount()})
		}
		return c.ChatRequest(msgs, 1, r.MaxTokens)
	case p == Generic:
		return 0
	case strings.HasSuffix(path, "/chat/completions"):
		var r wire.ChatRequest
		if json.Unmarshal(body, &r) != nil {
			return 0
		}
		c := tokens.ForModel(or(r.Model, defaultModel))
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
		return c.ChatRequest(msgs, n, maxTokens)
	case strings.HasSuffix(path, "/embeddings"):
		var r wire.EmbeddingRequest
		if json.Unmarshal(body, &r) != nil {
			return 0
		}
		return tokens.ForModel(or(r.Model, defaultModel)).Embedding(r.Input.Texts)
	}
	return 0
}
