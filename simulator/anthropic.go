package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// messages serves POST /v1/messages.
func (c *call) messages() {
	var req wire.MessagesRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, "There was an error parsing the body of your request: it is not valid JSON.")
		return
	}
	switch {
	case req.Model == "":
		c.fail(http.StatusBadRequest, kindInvalidRequest, "model: Field required")
		return
	case len(req.Messages) == 0:
		c.fail(http.StatusBadRequest, kindInvalidRequest, "messages: Field required")
		return
	case req.MaxTokens < 1:
		c.fail(http.StatusBadRequest, kindInvalidRequest, "max_tokens: Field required and must be at least 1")
		return
	}

	// Anthropic's tokenizer is not public; the OpenAI estimate with the
	// system prompt as a first message stands in for it.
	counter := tokens.ForModel(req.Model)
	msgs := make([]tokens.Message, 0, len(req.Messages)+1)
	marked := make([]bool, 0, len(req.Messages)+1) // holds a cache_control block
	var prompt strings.Builder
	if !req.System.IsZero() {
		msgs = append(msgs, tokens.Message{Role: "system", Text: req.System.String()})
		marked = append(marked, hasCacheControl(req.System))
		prompt.WriteString("system\x00" + req.System.String() + "\x00")
	}
	for _, m := range req.Messages {
		text := m.Content.String()
		msgs = append(msgs, tokens.Message{Role: m.Role, Text: text, Images: m.Content.ImageCount()})
		marked = append(marked, hasCacheControl(m.Content))
		prompt.WriteString(m.Role + "\x00" + text + "\x00")
	}
	inputTokens := counter.ChatPrompt(msgs)
	est := estimate{model: req.Model, cost: inputTokens + req.MaxTokens}
	// Anthropic's input_tokens leave out what is read from or written to
	// its cache.
	cacheRead, cacheWrite := c.anthropicCached(counter, req.Model, msgs, marked)
	uncached := inputTokens - cacheRead - cacheWrite

	length, stop := c.s.cfg.CompletionTokens, "end_turn"
	if req.MaxTokens < length {
		length, stop = req.MaxTokens, "max_tokens"
	}
	pieces := replyPieces(seededRand(c.s.cfg.Seed, req.Model, prompt.String(), "0"), length)
	text := strings.Join(pieces, "")
	usage := wire.AnthropicUsage{InputTokens: uncached, OutputTokens: counter.Count(text)}
	if cacheRead > 0 || cacheWrite > 0 {
		usage.CacheReadInputTokens, usage.CacheCreationInputTokens = &cacheRead, &cacheWrite
	}
	id := fmt.Sprintf("msg_sim%012d", c.seq)

	c.respond(est, func(f fault) {
		resp := wire.MessagesResponse{
			ID:         id,
			Type:       wire.TypeMessage,
			Role:       "assistant",
			Model:      req.Model,
			Content:    []wire.ContentBlock{{Type: wire.BlockText, Text: text}},
			StopReason: &stop,
			Usage:      usage,
		}
		if !req.Stream {
			c.writeBody(resp, f)
			return
		}
		ev := func(e wire.AnthropicStreamEvent) []byte { return event(e.Type, marshal(e)) }
		start := resp
		start.Content, start.StopReason = []wire.ContentBlock{}, nil
		start.Usage = usage
		start.Usage.OutputTokens = 1
		events := [][]byte{
			ev(wire.AnthropicStreamEvent{Type: wire.EventMessageStart, Message: &start}),
			ev(wire.AnthropicStreamEvent{Type: wire.EventContentBlockStart, ContentBlock: &wire.ContentBlock{Type: wire.BlockText}}),
			ev(wire.AnthropicStreamEvent{Type: wire.EventPing}),
		}
		for _, p := range pieces {
			events = append(events, ev(wire.AnthropicStreamEvent{
				Type:  wire.EventContentBlockDelta,
				Delta: &wire.AnthropicDelta{Type: wire.DeltaText, Text: p},
			}))
		}
		events = append(events,
			ev(wire.AnthropicStreamEvent{Type: wire.EventContentBlockStop}),
			ev(wire.AnthropicStreamEvent{
				Type:  wire.EventMessageDelta,
				Delta: &wire.AnthropicDelta{StopReason: &stop},
				// Only the count that changed: input_tokens 0 here would
				// overwrite message_start's count in a client.
				Usage: &wire.DeltaUsage{OutputTokens: usage.OutputTokens},
			}),
			ev(wire.AnthropicStreamEvent{Type: wire.EventMessageStop}),
		)
		c.startStream().send(events, f)
	})
}
