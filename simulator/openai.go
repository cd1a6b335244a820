package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// badJSON is OpenAI's message for a body that is not valid JSON.
const badJSON = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"

// systemFingerprint identifies the simulated backend in chat responses.
const systemFingerprint = "fp_simulator"

// chat serves POST /v1/chat/completions.
func (c *call) chat() {
	var req wire.ChatRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, badJSON)
		return
	}
	if req.Model == "" {
		req.Model = c.deployment // Azure: the deployment names the model
	}
	switch {
	case req.Model == "":
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "model", "you must provide a model parameter")
		return
	case len(req.Messages) == 0:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "messages", "[] is too short - 'messages'")
		return
	case req.N != nil && (*req.N < 1 || *req.N > 128):
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "n",
			fmt.Sprintf("%d is not in the range [1, 128] - 'n'", *req.N))
		return
	}
	maxTokens, param := 0, ""
	switch {
	case req.MaxCompletionTokens != nil:
		maxTokens, param = *req.MaxCompletionTokens, "max_completion_tokens"
	case req.MaxTokens != nil:
		maxTokens, param = *req.MaxTokens, "max_tokens"
	}
	if param != "" && maxTokens < 1 {
		c.failParam(http.StatusBadRequest, kindInvalidRequest, param,
			fmt.Sprintf("Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", param, maxTokens))
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}

	counter := tokens.ForModel(req.Model)
	msgs := make([]tokens.Message, len(req.Messages))
	var prompt strings.Builder
	for i, m := range req.Messages {
		text := m.Content.String()
		msgs[i] = tokens.Message{Role: m.Role, Name: m.Name, Text: text, Images: m.Content.ImageCount()}
		prompt.WriteString(m.Role + "\x00" + text + "\x00")
	}
	promptTokens := counter.ChatPrompt(msgs)
	est := estimate{model: req.Model, cost: counter.ChatRequest(msgs, n, maxTokens)}

	// A reasoning model reasons first, within max_tokens, then replies in
	// what is left.
	reasoning := c.s.reasoning(req.Model, maxTokens)
	length, finish := c.s.cfg.CompletionTokens, "stop"
	if maxTokens > 0 && maxTokens-reasoning < length {
		length, finish = maxTokens-reasoning, "length"
	}
	replies := make([][]string, n)
	completionTokens := 0
	for i := range replies {
		r := seededRand(c.s.cfg.Seed, req.Model, prompt.String(), fmt.Sprint(i))
		replies[i] = replyPieces(r, length)
		completionTokens += counter.Count(strings.Join(replies[i], "")) + reasoning
	}
	usage := &wire.Usage{
		PromptTokens:     promptTokens,
		CompletionTokens: completionTokens,
		TotalTokens:      promptTokens + completionTokens,
	}
	if cached := c.openAICached(counter, req.Model, msgs, promptTokens); cached > 0 {
		usage.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: cached}
	}
	if reasoning > 0 {
		usage.CompletionTokensDetails = &wire.CompletionTokensDetails{ReasoningTokens: n * reasoning}
	}
	id := fmt.Sprintf("chatcmpl-sim%012d", c.seq)
	created := c.s.now().Unix()

	c.respond(est, func(f fault) {
		if !req.Stream {
			resp := wire.ChatResponse{
				ID:                id,
				Object:            wire.ObjectChatCompletion,
				Created:           created,
				Model:             req.Model,
				Usage:             usage,
				SystemFingerprint: systemFingerprint,
			}
			for i, pieces := range replies {
				resp.Choices = append(resp.Choices, wire.ChatChoice{
					Index:        i,
					Message:      wire.ChatMessage{Role: "assistant", Content: wire.TextContent(strings.Join(pieces, ""))},
					FinishReason: finish,
				})
			}
			c.writeBody(resp, f)
			return
		}
		chunk := func(choices []wire.ChunkChoice, u *wire.Usage) []byte {
			return event("", marshal(wire.ChatChunk{
				ID:                id,
				Object:            wire.ObjectChatCompletionChunk,
				Created:           created,
				Model:             req.Model,
				SystemFingerprint: systemFingerprint,
				Choices:           choices,
				Usage:             u,
			}))
		}
		var events [][]byte
		for i, pieces := range replies {
			events = append(events, chunk([]wire.ChunkChoice{{Index: i, Delta: wire.ChunkDelta{Role: "assistant"}}}, nil))
			for _, p := range pieces {
				events = append(events, chunk([]wire.ChunkChoice{{Index: i, Delta: wire.ChunkDelta{Content: p}}}, nil))
			}
			events = append(events, chunk([]wire.ChunkChoice{{Index: i, FinishReason: &finish}}, nil))
		}
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			events = append(events, chunk([]wire.ChunkChoice{}, usage))
		}
		events = append(events, event("", []byte(wire.StreamDone)))
		c.startStream().send(events, f)
	})
}

// embeddings serves POST /v1/embeddings.
func (c *call) embeddings() {
	var req wire.EmbeddingRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, badJSON)
		return
	}
	if req.Model == "" {
		req.Model = c.deployment // Azure: the deployment names the model
	}
	dims := c.s.cfg.EmbeddingDims
	if req.Dimensions != nil {
		dims = *req.Dimensions
	}
	switch {
	case req.Model == "":
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "model", "you must provide a model parameter")
		return
	case req.Input.Len() == 0 || slicesContainsEmpty(req.Input):
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "input",
			"'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
		return
	case dims < 1:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "dimensions",
			fmt.Sprintf("Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got %d instead.", dims))
		return
	}
	// Inputs given as token IDs are embedded by their decimal form.
	inputs, cost := req.Input.Texts, 0
	if req.Input.Tokens != nil {
		inputs = make([]string, len(req.Input.Tokens))
		for i, ids := range req.Input.Tokens {
			inputs[i] = fmt.Sprint(ids)
			cost += len(ids)
		}
	} else {
		cost = tokens.ForModel(req.Model).Embedding(inputs)
	}
	resp := wire.EmbeddingResponse{
		Object: wire.ObjectList,
		Model:  req.Model,
		Usage:  wire.EmbeddingUsage{PromptTokens: cost, TotalTokens: cost},
	}
	for i, in := range inputs {
		resp.Data = append(resp.Data, wire.Embedding{
			Object:    wire.ObjectEmbedding,
			Index:     i,
			Embedding: embedding(seededRand(c.s.cfg.Seed, req.Model, in), dims),
		})
	}
	c.respond(estimate{model: req.Model, cost: cost}, func(f fault) {
		c.writeBody(resp, f)
	})
}

// slicesContainsEmpty reports whether any input is empty, which OpenAI
// rejects.
func slicesContainsEmpty(in wire.EmbeddingInput) bool {
	for _, t := range in.Texts {
		if t == "" {
			return true
		}
	}
	for _, ids := range in.Tokens {
		if len(ids) == 0 {
			return true
		}
	}
	return false
}
