package imodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lionactor/lionactor/internal/wire"
)

// ErrNotPortable is returned for a chat body that cannot be put in another
// provider's dialect: it uses what that provider has no equivalent of
// (tools, images, several choices, a response format, ...). A router does
// not send such a request to a deployment of that provider.
var ErrNotPortable = errors.New("imodel: request not portable to this provider")

// dialect is the form of chat body a provider reads.
type dialect uint8

const (
	anyJSON          dialect = iota // generic: any JSON, nothing assumed
	openAIDialect                   // chat completions: OpenAI, Azure, compatibles
	anthropicDialect                // messages
)

func (p Provider) dialect() dialect {
	switch p {
	case Anthropic:
		return anthropicDialect
	case OpenAI, Azure, OpenAICompatible:
		return openAIDialect
	}
	return anyJSON
}

// Members of a chat body with no equivalent in the other dialect, which
// change what the reply is: a body that has one is not translated.
var (
	openAIOnly = []string{"tools", "tool_choice", "functions", "function_call", "parallel_tool_calls",
		"response_format", "logprobs", "top_logprobs", "audio", "modalities", "prediction"}
	anthropicOnly = []string{"tools", "tool_choice", "thinking", "mcp_servers", "container"}
)

// portableChat reads a chat body of dialect from into the ChatRequest both
// dialects share: the system prompt, the text of the messages, the reply's
// bound, temperature, top_p and stop sequences. Members that only tune a
// provider's own behaviour (a seed, a user id, penalties, top_k,
// metadata) are left out; a body that uses what the other dialect cannot
// say fails with ErrNotPortable. Its Model is left empty.
func portableChat(payload map[string]any, from dialect) (ChatRequest, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return ChatRequest{}, err
	}
	notPortable := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrNotPortable, fmt.Sprintf(format, args...))
	}
	var out ChatRequest
	switch from {
	case openAIDialect:
		var r wire.ChatRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return ChatRequest{}, notPortable("not a chat completion: %v", err)
		}
		if k := firstKey(r.Extra, openAIOnly); k != "" {
			return ChatRequest{}, notPortable("%s", k)
		}
		if r.N != nil && *r.N != 1 {
			return ChatRequest{}, notPortable("n of %d", *r.N)
		}
		var system []string
		for i, m := range r.Messages {
			if m.ToolCalls != nil || m.ToolCallID != "" || m.Content.ImageCount() > 0 || !textParts(m.Content) {
				return ChatRequest{}, notPortable("message %d is not text", i)
			}
			switch m.Role {
			case "system", "developer":
				system = append(system, m.Content.String())
			case "user", "assistant":
				out.Messages = append(out.Messages, Message{Role: m.Role, Content: m.Content.String(), Name: m.Name})
			default:
				return ChatRequest{}, notPortable("message %d has role %q", i, m.Role)
			}
		}
		out.System = strings.Join(system, "\n\n")
		if r.MaxCompletionTokens != nil {
			out.MaxTokens = *r.MaxCompletionTokens
		} else if r.MaxTokens != nil {
			out.MaxTokens = *r.MaxTokens
		}
		out.Temperature, out.Stop = r.Temperature, r.Stop
		if r.TopP != nil {
			out.Extra = map[string]any{"top_p": *r.TopP}
		}
	case anthropicDialect:
		var r wire.MessagesRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return ChatRequest{}, notPortable("not a messages request: %v", err)
		}
		if k := firstKey(r.Extra, anthropicOnly); k != "" {
			return ChatRequest{}, notPortable("%s", k)
		}
		if !textBlocks(r.System) {
			return ChatRequest{}, notPortable("the system prompt is not text")
		}
		out.System = r.System.String()
		for i, m := range r.Messages {
			if !textBlocks(m.Content) {
				return ChatRequest{}, notPortable("message %d is not text", i)
			}
			out.Messages = append(out.Messages, Message{Role: m.Role, Content: m.Content.String()})
		}
		out.MaxTokens, out.Temperature, out.Stop = r.MaxTokens, r.Temperature, r.StopSequences
		if r.TopP != nil {
			out.Extra = map[string]any{"top_p": *r.TopP}
		}
	default:
		return ChatRequest{}, notPortable("not a chat dialect")
	}
	return out, nil
}

func firstKey(m map[string]json.RawMessage, keys []string) string {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return k
		}
	}
	return ""
}

func textParts(c wire.Content) bool {
	return !slices.ContainsFunc(c.Parts, func(p wire.ContentPart) bool { return p.Type != wire.PartText })
}

func textBlocks(c wire.AnthropicContent) bool {
	return !slices.ContainsFunc(c.Blocks, func(b wire.ContentBlock) bool { return b.Type != wire.BlockText })
}
