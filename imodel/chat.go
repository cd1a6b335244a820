package imodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Message is one turn of a chat.
type Message struct {
	Role    string `json:"role"` // "user", "assistant" (or "system" for OpenAI)
	Content string `json:"content"`
	Name    string `json:"name,omitempty"`
}

// ChatRequest is a chat request in one form for both providers: Chat maps it
// to OpenAI's chat completions or Anthropic's messages.
type ChatRequest struct {
	// Model overrides the endpoint's default model.
	Model string
	// System is the system prompt: OpenAI's first "system" message,
	// Anthropic's "system" field.
	System   string
	Messages []Message
	// MaxTokens bounds the reply; 0 means tokens.DefaultMaxTokens for
	// Anthropic, which requires it, and the provider's default otherwise.
	MaxTokens   int
	Temperature *float64
	Stop        []string
	// Extra holds provider-specific fields, set over the mapped ones.
	Extra map[string]any
}

// ChatResponse is a chat reply in one form for both providers.
type ChatResponse struct {
	ID           string
	Model        string
	Text         string
	FinishReason string // OpenAI's finish_reason or Anthropic's stop_reason
	Usage        messages.Usage
	// Event is the request's terminal snapshot.
	Event messages.Event
}

// EmbedResponse is the outcome of Embed.
type EmbedResponse struct {
	Model   string
	Vectors [][]float64 // one per input, in input order
	Usage   messages.Usage
	Event   messages.Event
}

// ErrUnsupported is returned for a call the provider does not offer, such as
// embeddings from Anthropic or chat from a generic endpoint.
var ErrUnsupported = errors.New("imodel: not supported by this provider")

// chatPath is the chat endpoint of the provider.
func (m *Model) chatPath() (string, error) {
	if p := providers[m.cfg.Provider].chatPath; p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%w: chat on %s", ErrUnsupported, m.cfg.Provider)
}

// chatPayload maps a ChatRequest to the provider's body, as a field map so
// that defaults and options merge as they do for Invoke.
func (m *Model) chatPayload(r ChatRequest, stream bool) (map[string]any, error) {
	model := r.Model
	if model == "" {
		model = m.cfg.Model
	}
	var body any
	if m.cfg.Provider == Anthropic {
		req := wire.MessagesRequest{Model: model, System: wire.AnthropicText(r.System), MaxTokens: r.MaxTokens,
			Temperature: r.Temperature, StopSequences: r.Stop, Stream: stream}
		if req.MaxTokens == 0 {
			req.MaxTokens = tokens.DefaultMaxTokens
		}
		for _, msg := range r.Messages {
			req.Messages = append(req.Messages, wire.AnthropicMessage{Role: msg.Role, Content: wire.AnthropicText(msg.Content)})
		}
		body = req
	} else {
		req := wire.ChatRequest{Model: model, Temperature: r.Temperature, Stop: r.Stop, Stream: stream}
		if r.MaxTokens > 0 {
			req.MaxTokens = &r.MaxTokens
		}
		if stream {
			req.StreamOptions = &wire.StreamOptions{IncludeUsage: true}
		}
		if r.System != "" {
			req.Messages = append(req.Messages, wire.ChatMessage{Role: "system", Content: wire.TextContent(r.System)})
		}
		for _, msg := range r.Messages {
			req.Messages = append(req.Messages, wire.ChatMessage{Role: msg.Role, Content: wire.TextContent(msg.Content), Name: msg.Name})
		}
		body = req
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	if model == "" {
		delete(fields, "model") // let the endpoint's defaults decide
	}
	maps.Copy(fields, r.Extra)
	return fields, nil
}

// Chat sends a chat request and waits for the reply. It returns a nil
// response only when the request was refused at submit; a request that
// failed later comes with its response (the terminal snapshot) and error.
func (m *Model) Chat(ctx context.Context, r ChatRequest, opts ...CallOption) (*ChatResponse, error) {
	h, err := m.SubmitChat(ctx, r, opts...)
	if err != nil {
		return nil, err
	}
	return ChatResult(awaitEnd(h))
}

// SubmitChat sends a chat request without waiting, and returns its handle;
// ChatResult reads the reply from its terminal snapshot.
func (m *Model) SubmitChat(ctx context.Context, r ChatRequest, opts ...CallOption) (*runtime.Handle, error) {
	op, err := m.chatOp(r, nil)
	if err != nil {
		return nil, err
	}
	return m.submit(ctx, op, opts)
}

// NewChatRequest builds the executor request of a chat, for an actor that
// drives the executor by messages; ChatResult reads its terminal snapshot.
func (m *Model) NewChatRequest(r ChatRequest, opts ...CallOption) (messages.Request, error) {
	op, err := m.chatOp(r, nil)
	if err != nil {
		return messages.Request{}, err
	}
	return m.request(op, opts)
}

// chatOp is the operation of a chat: the provider's chat endpoint, r
// mapped to its body, its reply decoded into a ChatResponse; streamed
// into s when s is not nil.
func (m *Model) chatOp(r ChatRequest, s *Stream) (operation, error) {
	path, err := m.chatPath()
	if err != nil {
		return operation{}, err
	}
	payload, err := m.chatPayload(r, s != nil)
	if err != nil {
		return operation{}, err
	}
	return operation{method: http.MethodPost, path: path, payload: payload, decode: decodeChat, stream: s}, nil
}

// ChatResult reads a chat reply from a request's terminal snapshot, with the
// request's error if it did not complete.
func ChatResult(ev messages.Event) (*ChatResponse, error) {
	out := &ChatResponse{Event: ev}
	if resp, ok := ev.Response(); ok {
		if cr, ok := resp.Value.(*ChatResponse); ok {
			out.ID, out.Model, out.Text, out.FinishReason, out.Usage = cr.ID, cr.Model, cr.Text, cr.FinishReason, cr.Usage
		}
	}
	return out, ev.Err()
}

// decodeChat reads either provider's chat reply into a ChatResponse.
func decodeChat(p Provider, body []byte) (any, *messages.Usage, error) {
	out := &ChatResponse{}
	if p == Anthropic {
		var r wire.MessagesResponse
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, nil, err
		}
		if r.Type != wire.TypeMessage {
			return nil, nil, fmt.Errorf("not a message: type %q", r.Type)
		}
		var text strings.Builder
		for _, b := range r.Content {
			if b.Type == "text" {
				text.WriteString(b.Text)
			}
		}
		out.ID, out.Model, out.Text = r.ID, r.Model, text.String()
		if r.StopReason != nil {
			out.FinishReason = *r.StopReason
		}
		out.Usage = anthropicUsage(r.Usage)
		return out, &out.Usage, nil
	}
	var r wire.ChatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, err
	}
	if len(r.Choices) == 0 {
		return nil, nil, errors.New("no choices in the reply")
	}
	out.ID, out.Model = r.ID, r.Model
	out.Text = r.Choices[0].Message.Content.String()
	out.FinishReason = r.Choices[0].FinishReason
	if r.Usage == nil {
		return out, nil, nil
	}
	out.Usage = openAIUsage(r.Usage)
	return out, &out.Usage, nil
}

// Embed returns one embedding vector per input (OpenAI, Azure and
// compatibles).
func (m *Model) Embed(ctx context.Context, inputs []string, opts ...CallOption) (*EmbedResponse, error) {
	op, err := m.embedOp(inputs)
	if err != nil {
		return nil, err
	}
	h, err := m.submit(ctx, op, opts)
	if err != nil {
		return nil, err
	}
	return embedResult(awaitEnd(h))
}

// embedResult reads the vectors from an embedding's terminal snapshot,
// with the request's error if it did not complete.
func embedResult(ev messages.Event) (*EmbedResponse, error) {
	out := &EmbedResponse{Event: ev}
	if resp, ok := ev.Response(); ok {
		if er, ok := resp.Value.(*EmbedResponse); ok {
			out.Model, out.Vectors, out.Usage = er.Model, er.Vectors, er.Usage
		}
	}
	return out, ev.Err()
}

// embedOp is the operation of Embed: the provider's embeddings endpoint,
// its reply decoded into an EmbedResponse.
func (m *Model) embedOp(inputs []string) (operation, error) {
	path := providers[m.cfg.Provider].embeddingsPath
	if path == "" {
		return operation{}, fmt.Errorf("%w: embeddings on %s", ErrUnsupported, m.cfg.Provider)
	}
	if len(inputs) == 0 {
		return operation{}, fmt.Errorf("%w: no inputs to embed", messages.ErrInvalidRequest)
	}
	return operation{method: http.MethodPost, path: path, payload: map[string]any{"input": inputs}, decode: decodeEmbeddings}, nil
}

func decodeEmbeddings(_ Provider, body []byte) (any, *messages.Usage, error) {
	var r wire.EmbeddingResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, err
	}
	out := &EmbedResponse{Model: r.Model, Vectors: make([][]float64, len(r.Data))}
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(r.Data) || out.Vectors[d.Index] != nil {
			return nil, nil, fmt.Errorf("embedding index %d out of place", d.Index)
		}
		if d.Embedding == nil {
			return nil, nil, fmt.Errorf("embedding %d has no vector", d.Index)
		}
		out.Vectors[d.Index] = d.Embedding
	}
	out.Usage = messages.Usage{InputTokens: r.Usage.PromptTokens, TotalTokens: r.Usage.TotalTokens}
	return out, &out.Usage, nil
}
