package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// MessagesRequest is the body of a POST to Anthropic's /v1/messages.
//
// Members that MessagesRequest does not model are kept in Extra when
// decoding and written back when encoding, so that a request relayed
// through this type loses nothing.
type MessagesRequest struct {
	Model    string             `json:"model"`
	Messages []AnthropicMessage `json:"messages"`

	// System is the system prompt, a string or text blocks; it is left out
	// when empty.
	System AnthropicContent `json:"system,omitzero"`

	// MaxTokens is required by the API; it bounds the reply and so the
	// output tokens the request may cost.
	MaxTokens     int                `json:"max_tokens"`
	StopSequences []string           `json:"stop_sequences,omitempty"`
	Stream        bool               `json:"stream,omitempty"`
	Temperature   *float64           `json:"temperature,omitempty"`
	TopP          *float64           `json:"top_p,omitempty"`
	TopK          *int               `json:"top_k,omitempty"`
	Metadata      *AnthropicMetadata `json:"metadata,omitempty"`

	// Extra holds the members of the request object that no other field
	// models, each as its raw JSON value. Keys that name a modelled member
	// are ignored when encoding.
	Extra map[string]json.RawMessage `json:"-"`
}

// messagesRequestFields is MessagesRequest without its methods, for the
// default encoding of its modelled fields.
type messagesRequestFields MessagesRequest

// MarshalJSON encodes r with the members of r.Extra after its own.
func (r MessagesRequest) MarshalJSON() ([]byte, error) {
	return marshalWithExtra(messagesRequestFields(r), r.Extra)
}

// UnmarshalJSON decodes data into r, keeping unmodelled members in r.Extra.
func (r *MessagesRequest) UnmarshalJSON(data []byte) error {
	var f messagesRequestFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	extra, err := unmarshalExtra(data, reflect.TypeFor[messagesRequestFields]())
	if err != nil {
		return err
	}
	f.Extra = extra
	*r = MessagesRequest(f)
	return nil
}

// AnthropicMetadata describes the request for Anthropic's abuse detection.
type AnthropicMetadata struct {
	// UserID is an opaque identifier of the end user.
	UserID string `json:"user_id,omitempty"`
}

// AnthropicMessage is one turn of a Messages conversation.
type AnthropicMessage struct {
	// Role is "user" or "assistant".
	Role    string           `json:"role"`
	Content AnthropicContent `json:"content"`
}

// AnthropicContent is the content of an AnthropicMessage or the system
// prompt, which the API takes either as one string or as an array of
// blocks. Blocks nil means the string form.
type AnthropicContent struct {
	Text   string
	Blocks []ContentBlock
}

// AnthropicText returns the string form of a content.
func AnthropicText(s string) AnthropicContent { return AnthropicContent{Text: s} }

// IsZero reports whether c is the empty string form, which an optional
// member such as MessagesRequest.System leaves out.
func (c AnthropicContent) IsZero() bool { return c.Text == "" && c.Blocks == nil }

// MarshalJSON encodes c as a JSON string when c.Blocks is nil and as the
// array of blocks otherwise.
func (c AnthropicContent) MarshalJSON() ([]byte, error) {
	if c.Blocks == nil {
		return json.Marshal(c.Text)
	}
	return json.Marshal(c.Blocks)
}

// UnmarshalJSON accepts a string, an array of blocks, or null, which leaves
// c empty.
func (c *AnthropicContent) UnmarshalJSON(data []byte) error {
	*c = AnthropicContent{}
	switch {
	case isNull(data):
		return nil
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, &c.Text)
	}
	var blocks []ContentBlock
	if err := json.Unmarshal(data, &blocks); err != nil {
		return fmt.Errorf("wire: content must be a string or an array of blocks: %w", err)
	}
	if blocks == nil {
		blocks = []ContentBlock{}
	}
	c.Blocks = blocks
	return nil
}

// String returns the text of c: c.Text in string form, else the text of
// its text blocks joined by newlines.
func (c AnthropicContent) String() string {
	if c.Blocks == nil {
		return c.Text
	}
	var texts []string
	for _, b := range c.Blocks {
		if b.Type == BlockText {
			texts = append(texts, b.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// ImageCount reports the number of image blocks in c, which a token
// estimate prices apart from text.
func (c AnthropicContent) ImageCount() int {
	n := 0
	for _, b := range c.Blocks {
		if b.Type == BlockImage {
			n++
		}
	}
	return n
}

// Types of a ContentBlock.
const (
	BlockText       = "text"
	BlockImage      = "image"
	BlockToolUse    = "tool_use"
	BlockToolResult = "tool_result"
)

// ContentBlock is one block of an AnthropicContent or of a
// MessagesResponse. Which fields are set depends on Type.
type ContentBlock struct {
	Type string `json:"type"`

	// Text is the text of a "text" block; it is always encoded for that
	// type, even when empty, as the first block of a stream has it.
	Text string `json:"text,omitempty"`

	// Source is the image of an "image" block.
	Source *ImageSource `json:"source,omitempty"`

	// ID, Name and Input describe a "tool_use" block; Input is the tool's
	// arguments, kept raw.
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`

	// ToolUseID and Content describe a "tool_result" block; Content is a
	// string or blocks, kept raw.
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`

	// CacheControl marks a prompt-caching breakpoint, kept raw.
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// MarshalJSON encodes b, always with a text member for a "text" block.
func (b ContentBlock) MarshalJSON() ([]byte, error) {
	type fields ContentBlock
	if b.Type != BlockText {
		return json.Marshal(fields(b))
	}
	return json.Marshal(struct {
		fields
		Text string `json:"text"`
	}{fields(b), b.Text})
}

// ImageSource is the image of an "image" block: base64 data with its media
// type, or a URL.
type ImageSource struct {
	// Type is "base64" or "url".
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Object type of a MessagesResponse.
const TypeMessage = "message"

// MessagesResponse is the body of a successful, non-streamed Messages
// request, and the message of a "message_start" event.
type MessagesResponse struct {
	ID string `json:"id"`
	// Type is always TypeMessage.
	Type    string         `json:"type"`
	Role    string         `json:"role"`
	Model   string         `json:"model"`
	Content []ContentBlock `json:"content"`

	// StopReason is "end_turn", "max_tokens", "stop_sequence", "tool_use",
	// "pause_turn" or "refusal"; it is nil in a "message_start" event.
	StopReason *string `json:"stop_reason"`

	// StopSequence is the stop sequence that ended the reply, if one did.
	StopSequence *string        `json:"stop_sequence"`
	Usage        AnthropicUsage `json:"usage"`
}

// AnthropicUsage is the token accounting of a Messages request. Anthropic
// limits input and output tokens separately, so they are not summed.
type AnthropicUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`

	// The cache counts are nil when the API sends null or leaves them out.
	CacheCreationInputTokens *int `json:"cache_creation_input_tokens,omitempty"`
	CacheReadInputTokens     *int `json:"cache_read_input_tokens,omitempty"`
}

// AnthropicErrorBody is the body of every Anthropic error response, and
// the form of an "error" event in a stream.
type AnthropicErrorBody struct {
	// Type is always "error".
	Type  string         `json:"type"`
	Error AnthropicError `json:"error"`

	// RequestID identifies the request to Anthropic's support, when sent.
	RequestID string `json:"request_id,omitempty"`
}

// AnthropicError describes a failed Anthropic request. It implements error
// so that a client can return it as is.
type AnthropicError struct {
	// Type is one of the Anthropic error types, such as
	// AnthropicRateLimitError.
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Error returns the type and the message.
func (e AnthropicError) Error() string {
	if e.Type == "" {
		return "anthropic: " + e.Message
	}
	return "anthropic: " + e.Type + ": " + e.Message
}

// Types of Anthropic errors, with the HTTP status that carries each.
const (
	AnthropicInvalidRequestError = "invalid_request_error" // 400
	AnthropicAuthenticationError = "authentication_error"  // 401
	AnthropicPermissionError     = "permission_error"      // 403
	AnthropicNotFoundError       = "not_found_error"       // 404
	AnthropicRequestTooLarge     = "request_too_large"     // 413
	AnthropicRateLimitError      = "rate_limit_error"      // 429
	AnthropicAPIError            = "api_error"             // 500
	AnthropicOverloadedError     = "overloaded_error"      // 529
)

// StatusOverloaded is the non-standard HTTP status with which Anthropic
// reports that it is overloaded as a whole, as opposed to a 429, which is
// about the caller's own limits.
const StatusOverloaded = 529

// NewAnthropicErrorBody returns an error body of the given error type and
// message.
func NewAnthropicErrorBody(typ, msg string) AnthropicErrorBody {
	return AnthropicErrorBody{Type: "error", Error: AnthropicError{Type: typ, Message: msg}}
}

// NewAnthropicRateLimitBody returns the body of a 429 for an exhausted
// budget, such as "input tokens per minute".
func NewAnthropicRateLimitBody(budget string) AnthropicErrorBody {
	return NewAnthropicErrorBody(AnthropicRateLimitError,
		"This request would exceed the rate limit for your organization of "+budget+
			". Please reduce the prompt length or the maximum tokens requested, or try again later.")
}

// NewAnthropicOverloadedBody returns the body of a 529.
func NewAnthropicOverloadedBody() AnthropicErrorBody {
	return NewAnthropicErrorBody(AnthropicOverloadedError, "Overloaded")
}

// Types of AnthropicStreamEvent.
const (
	EventMessageStart      = "message_start"
	EventContentBlockStart = "content_block_start"
	EventContentBlockDelta = "content_block_delta"
	EventContentBlockStop  = "content_block_stop"
	EventMessageDelta      = "message_delta"
	EventMessageStop       = "message_stop"
	EventPing              = "ping"
	EventError             = "error"
)

// AnthropicStreamEvent is the data of one server-sent event of a streamed
// Messages request; the SSE event name repeats Type. Which fields are set
// depends on Type:
//
//   - message_start: Message, with empty content and the input usage
//   - content_block_start: Index and ContentBlock
//   - content_block_delta: Index and Delta (a "text_delta" or
//     "input_json_delta")
//   - content_block_stop: Index
//   - message_delta: Delta (stop reason) and Usage (cumulative counts)
//   - message_stop, ping: nothing
//   - error: Error
type AnthropicStreamEvent struct {
	Type         string            `json:"type"`
	Message      *MessagesResponse `json:"message,omitempty"`
	Index        int               `json:"index"`
	ContentBlock *ContentBlock     `json:"content_block,omitempty"`
	Delta        *AnthropicDelta   `json:"delta,omitempty"`
	Usage        *DeltaUsage       `json:"usage,omitempty"`
	Error        *AnthropicError   `json:"error,omitempty"`
}

// DeltaUsage is the usage of a message_delta event. Its counts are totals
// for the whole message so far, which a client sets over what it has (the
// official SDKs do), so only the counts the event reports are sent: a
// count left out keeps the value of message_start, while one sent as 0
// would overwrite it. The output count is always sent.
type DeltaUsage struct {
	InputTokens              *int `json:"input_tokens,omitempty"`
	OutputTokens             int  `json:"output_tokens"`
	CacheCreationInputTokens *int `json:"cache_creation_input_tokens,omitempty"`
	CacheReadInputTokens     *int `json:"cache_read_input_tokens,omitempty"`
}

// MarshalJSON encodes ev with an index member only for the content_block_*
// types, which are the ones that have it.
func (ev AnthropicStreamEvent) MarshalJSON() ([]byte, error) {
	type fields AnthropicStreamEvent
	if strings.HasPrefix(ev.Type, "content_block_") {
		return json.Marshal(fields(ev))
	}
	return json.Marshal(struct {
		fields
		Index *int `json:"index,omitempty"`
	}{fields: fields(ev)})
}

// Types of AnthropicDelta in a content_block_delta event.
const (
	DeltaText      = "text_delta"
	DeltaInputJSON = "input_json_delta"
)

// AnthropicDelta is the delta of a content_block_delta or message_delta
// event.
type AnthropicDelta struct {
	// Type is set in a content_block_delta: DeltaText or DeltaInputJSON.
	Type        string `json:"type,omitempty"`
	Text        string `json:"text,omitempty"`
	PartialJSON string `json:"partial_json,omitempty"`

	// StopReason and StopSequence are set in a message_delta.
	StopReason   *string `json:"stop_reason,omitempty"`
	StopSequence *string `json:"stop_sequence,omitempty"`
}
