package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Object names that OpenAI puts in the "object" member of its responses.
const (
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
	ObjectList                = "list"
	ObjectEmbedding           = "embedding"
)

// ChatRequest is the body of a POST to OpenAI's /v1/chat/completions.
//
// Members that ChatRequest does not model are kept in Extra when decoding
// and written back when encoding, so that a request relayed through this
// type loses nothing.
type ChatRequest struct {
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages"`

	// MaxTokens is the older name of the completion limit; newer models
	// accept only MaxCompletionTokens. Either bounds the reply, so a token
	// budget must read both.
	MaxTokens           *int `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int `json:"max_completion_tokens,omitempty"`

	// N is the number of choices to generate; nil means 1.
	N           *int          `json:"n,omitempty"`
	Temperature *float64      `json:"temperature,omitempty"`
	TopP        *float64      `json:"top_p,omitempty"`
	Stop        StopSequences `json:"stop,omitempty"`

	// Stream asks for server-sent events of ChatChunk values.
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	User          string         `json:"user,omitempty"`

	// Extra holds the members of the request object that no other field
	// models, each as its raw JSON value. Keys that name a modelled member
	// are ignored when encoding.
	Extra map[string]json.RawMessage `json:"-"`
}

// chatRequestFields is ChatRequest without its methods, for the default
// encoding of its modelled fields.
type chatRequestFields ChatRequest

// MarshalJSON encodes r with the members of r.Extra after its own.
func (r ChatRequest) MarshalJSON() ([]byte, error) {
	return marshalWithExtra(chatRequestFields(r), r.Extra)
}

// UnmarshalJSON decodes data into r, keeping unmodelled members in r.Extra.
func (r *ChatRequest) UnmarshalJSON(data []byte) error {
	var f chatRequestFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	extra, err := unmarshalExtra(data, reflect.TypeFor[chatRequestFields]())
	if err != nil {
		return err
	}
	f.Extra = extra
	*r = ChatRequest(f)
	return nil
}

// StreamOptions tunes a streamed chat completion.
type StreamOptions struct {
	// IncludeUsage asks for one last chunk, with no choices, that carries
	// the usage of the whole request; without it a stream reports no usage.
	IncludeUsage bool `json:"include_usage"`
}

// StopSequences is the "stop" member of a ChatRequest. The API takes
// either one string or an array of strings; both decode into the slice,
// which always encodes as an array.
type StopSequences []string

// UnmarshalJSON accepts a string, an array of strings, or null.
func (s *StopSequences) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		*s = nil
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*s = StopSequences{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return fmt.Errorf("wire: stop must be a string or an array of strings: %w", err)
	}
	*s = many
	return nil
}

// ChatMessage is one message of a chat conversation, in a request or as the
// message of a ChatChoice.
type ChatMessage struct {
	// Role is "system", "developer", "user", "assistant" or "tool".
	Role string `json:"role"`

	// Content is always encoded; a null content, as an assistant message
	// that only calls tools has, decodes as the empty string.
	Content Content `json:"content"`

	// Refusal is set on an assistant message when the model declined.
	Refusal *string `json:"refusal,omitempty"`
	Name    string  `json:"name,omitempty"`

	// ToolCallID names the call that a "tool" message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`

	// ToolCalls is kept raw: the runtime relays tool calls and never
	// interprets them.
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// Content is the content of a ChatMessage, which the API takes either as
// one string or as an array of typed parts. Parts nil means the string form.
type Content struct {
	Text  string
	Parts []ContentPart
}

// TextContent returns the string form of a message content.
func TextContent(s string) Content { return Content{Text: s} }

// MarshalJSON encodes c as a JSON string when c.Parts is nil and as the
// array of parts otherwise.
func (c Content) MarshalJSON() ([]byte, error) {
	if c.Parts == nil {
		return json.Marshal(c.Text)
	}
	return json.Marshal(c.Parts)
}

// UnmarshalJSON accepts a string, an array of parts, or null, which leaves
// c empty.
func (c *Content) UnmarshalJSON(data []byte) error {
	*c = Content{}
	switch {
	case isNull(data):
		return nil
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, &c.Text)
	}
	var parts []ContentPart
	if err := json.Unmarshal(data, &parts); err != nil {
		return fmt.Errorf("wire: content must be a string or an array of parts: %w", err)
	}
	if parts == nil {
		parts = []ContentPart{}
	}
	c.Parts = parts
	return nil
}

// String returns the text of c: c.Text in string form, else the text of
// its text parts joined by newlines, which is how the model reads them.
func (c Content) String() string {
	if c.Parts == nil {
		return c.Text
	}
	var texts []string
	for _, p := range c.Parts {
		if p.Type == PartText {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// ImageCount reports the number of image parts in c. Images are priced in
// tokens by size and detail rather than by text, so a token estimate
// counts them apart.
func (c Content) ImageCount() int {
	n := 0
	for _, p := range c.Parts {
		if p.Type == PartImageURL {
			n++
		}
	}
	return n
}

// Types of a ContentPart.
const (
	PartText     = "text"
	PartImageURL = "image_url"
)

// ContentPart is one element of the array form of a Content.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL locates the image of an "image_url" part, by web address or as
// a data: URL.
type ImageURL struct {
	URL string `json:"url"`

	// Detail is "low", "high" or "auto"; it sets how many tokens the image
	// costs.
	Detail string `json:"detail,omitempty"`
}

// ChatResponse is the body of a successful, non-streamed chat completion.
type ChatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []ChatChoice `json:"choices"`
	Usage             *Usage       `json:"usage,omitempty"`
	ServiceTier       string       `json:"service_tier,omitempty"`
	SystemFingerprint string       `json:"system_fingerprint,omitempty"`
}

// ChatChoice is one generated reply of a ChatResponse.
type ChatChoice struct {
	Index   int         `json:"index"`
	Message ChatMessage `json:"message"`

	// FinishReason is "stop", "length", "tool_calls", "content_filter" or
	// "function_call".
	FinishReason string `json:"finish_reason"`

	// Logprobs is kept raw because only callers that asked for it read it.
	Logprobs json.RawMessage `json:"logprobs"`
}

// Usage is the token accounting of a chat completion, which is what the
// provider charges to the rate limit once the request is done.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails breaks down Usage.PromptTokens.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	AudioTokens  int `json:"audio_tokens"`
}

// CompletionTokensDetails breaks down Usage.CompletionTokens.
type CompletionTokensDetails struct {
	ReasoningTokens          int `json:"reasoning_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

// ChatChunk is the data of one server-sent event of a streamed chat
// completion. The stream ends with an event whose data is "[DONE]", which
// is not a ChatChunk.
type ChatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
	Choices           []ChunkChoice `json:"choices"`

	// Usage is set only on the last chunk, whose Choices is empty, and
	// only when StreamOptions.IncludeUsage was asked for.
	Usage *Usage `json:"usage,omitempty"`
}

// StreamDone is the data of the event that ends an OpenAI stream.
const StreamDone = "[DONE]"

// ChunkChoice is the increment of one choice carried by a ChatChunk.
type ChunkChoice struct {
	Index int        `json:"index"`
	Delta ChunkDelta `json:"delta"`

	// FinishReason is nil until the choice's last chunk.
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
}

// ChunkDelta is what a chunk adds to a choice's message; the first delta
// carries the role, later ones pieces of the content.
type ChunkDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   string          `json:"content,omitempty"`
	Refusal   *string         `json:"refusal,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// EmbeddingRequest is the body of a POST to OpenAI's /v1/embeddings.
type EmbeddingRequest struct {
	Model string         `json:"model"`
	Input EmbeddingInput `json:"input"`

	// EncodingFormat is "float" (the default) or "base64"; Embedding
	// decodes either.
	EncodingFormat string `json:"encoding_format,omitempty"`
	Dimensions     *int   `json:"dimensions,omitempty"`
	User           string `json:"user,omitempty"`
}

// EmbeddingInput is the "input" of an EmbeddingRequest, which the API takes
// as a string, an array of strings, an array of token ids, or an array of
// arrays of token ids. Exactly one of Texts and Tokens is non-nil after
// decoding.
type EmbeddingInput struct {
	Texts []string

	// Tokens holds inputs already tokenized; each element is one input.
	Tokens [][]int

	// Single records that the input was one string (or one array of token
	// ids) rather than an array of them, so that it encodes back the same
	// way; it has effect only when there is exactly one input.
	Single bool
}

// TextInput returns the input of a request that embeds the one text s.
func TextInput(s string) EmbeddingInput {
	return EmbeddingInput{Texts: []string{s}, Single: true}
}

// Len reports the number of inputs, which is the number of embeddings the
// response carries.
func (in EmbeddingInput) Len() int {
	if in.Tokens != nil {
		return len(in.Tokens)
	}
	return len(in.Texts)
}

// MarshalJSON encodes in in the form it was decoded from.
func (in EmbeddingInput) MarshalJSON() ([]byte, error) {
	if in.Tokens != nil {
		if in.Single && len(in.Tokens) == 1 {
			return json.Marshal(in.Tokens[0])
		}
		return json.Marshal(in.Tokens)
	}
	if in.Single && len(in.Texts) == 1 {
		return json.Marshal(in.Texts[0])
	}
	if in.Texts == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(in.Texts)
}

// UnmarshalJSON accepts every form the API takes. An empty array decodes
// as no texts.
func (in *EmbeddingInput) UnmarshalJSON(data []byte) error {
	*in = EmbeddingInput{}
	if isNull(data) {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*in = TextInput(s)
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return fmt.Errorf("wire: embedding input must be a string or an array: %w", err)
	}
	if len(elems) == 0 {
		in.Texts = []string{}
		return nil
	}
	switch elems[0][0] {
	case '"':
		return json.Unmarshal(data, &in.Texts)
	case '[':
		return json.Unmarshal(data, &in.Tokens)
	}
	var ids []int
	if err := json.Unmarshal(data, &ids); err != nil {
		return fmt.Errorf("wire: embedding input: %w", err)
	}
	in.Tokens, in.Single = [][]int{ids}, true
	return nil
}

// EmbeddingResponse is the body of a successful embeddings request.
type EmbeddingResponse struct {
	Object string         `json:"object"`
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// Embedding is the vector of one input of an EmbeddingRequest.
type Embedding struct {
	Object string `json:"object"`

	// Index is the position of the input in the request.
	Index int `json:"index"`

	// Embedding is decoded from either encoding format; it always encodes
	// as an array of numbers.
	Embedding []float64 `json:"embedding"`
}

// UnmarshalJSON decodes e, accepting the vector as an array of numbers or
// as the base64 of little-endian float32 values, which is what
// "encoding_format": "base64" returns.
func (e *Embedding) UnmarshalJSON(data []byte) error {
	type fields Embedding
	var raw struct {
		fields
		Embedding json.RawMessage `json:"embedding"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*e = Embedding(raw.fields)
	e.Embedding = nil
	if len(raw.Embedding) == 0 || isNull(raw.Embedding) {
		return nil
	}
	if raw.Embedding[0] != '"' {
		return json.Unmarshal(raw.Embedding, &e.Embedding)
	}
	var s string
	if err := json.Unmarshal(raw.Embedding, &s); err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("wire: base64 embedding: %w", err)
	}
	if len(b)%4 != 0 {
		return fmt.Errorf("wire: base64 embedding of %d bytes is not a whole number of float32 values", len(b))
	}
	e.Embedding = make([]float64, len(b)/4)
	for i := range e.Embedding {
		e.Embedding[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return nil
}

// EmbeddingUsage is the token accounting of an embeddings request.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// OpenAIErrorBody is the body of every OpenAI error response.
type OpenAIErrorBody struct {
	Error OpenAIError `json:"error"`
}

// OpenAIError describes a failed OpenAI request. It implements error so
// that a client can return it as is.
type OpenAIError struct {
	Message string `json:"message"`

	// Type is a broad class, such as "invalid_request_error", or for a
	// rate limit the exhausted budget, "requests" or "tokens".
	Type string `json:"type"`

	// Param names the request member at fault, if any.
	Param *string `json:"param"`

	// Code is a machine-readable reason such as "rate_limit_exceeded".
	// The API sends a string or null; a number is accepted and kept in its
	// decimal form, since some proxies send one.
	Code *string `json:"code"`
}

// UnmarshalJSON decodes e, accepting a code that is a number.
func (e *OpenAIError) UnmarshalJSON(data []byte) error {
	type fields OpenAIError
	var raw struct {
		fields
		Code json.RawMessage `json:"code"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*e = OpenAIError(raw.fields)
	e.Code = nil
	code := bytes.TrimSpace(raw.Code)
	switch {
	case len(code) == 0 || isNull(code):
	case code[0] == '"':
		var s string
		if err := json.Unmarshal(code, &s); err != nil {
			return err
		}
		e.Code = &s
	default:
		var n json.Number
		if err := json.Unmarshal(code, &n); err != nil {
			return fmt.Errorf("wire: error code must be a string or a number: %w", err)
		}
		s := n.String()
		e.Code = &s
	}
	return nil
}

// Error returns the message, prefixed by the code or else the type.
func (e OpenAIError) Error() string {
	kind := e.Type
	if e.Code != nil && *e.Code != "" {
		kind = *e.Code
	}
	if kind == "" {
		return "openai: " + e.Message
	}
	return "openai: " + kind + ": " + e.Message
}

// CodeString returns the code, or "" when there is none.
func (e OpenAIError) CodeString() string {
	if e.Code == nil {
		return ""
	}
	return *e.Code
}

// QuotaExhausted reports whether e says that the account is out of credit.
// OpenAI answers such requests with status 429 like a rate limit, but
// waiting does not help, so a client must not retry them.
func (e OpenAIError) QuotaExhausted() bool {
	return e.CodeString() == CodeInsufficientQuota || e.Type == CodeInsufficientQuota
}

// Codes and types of OpenAI errors that a client acts on.
const (
	// CodeRateLimitExceeded is the code of a 429 that waiting resolves.
	CodeRateLimitExceeded = "rate_limit_exceeded"
	// CodeInsufficientQuota is the code, and type, of a 429 that waiting
	// does not resolve.
	CodeInsufficientQuota = "insufficient_quota"

	TypeInvalidRequest = "invalid_request_error"
	TypeServerError    = "server_error"
	// TypeRequests and TypeTokens are the types of a rate-limit error,
	// naming the budget that ran out.
	TypeRequests = "requests"
	TypeTokens   = "tokens"
)

// NewOpenAIErrorBody returns an error body with the given type, code and
// message; an empty code encodes as null, as the API sends it.
func NewOpenAIErrorBody(typ, code, msg string) OpenAIErrorBody {
	e := OpenAIError{Message: msg, Type: typ}
	if code != "" {
		e.Code = &code
	}
	return OpenAIErrorBody{Error: e}
}

// NewOpenAIRateLimitBody returns the body of a 429 for an exhausted
// budget: budget is TypeRequests or TypeTokens. The message follows the
// API's, which names the limit and how long to wait.
func NewOpenAIRateLimitBody(model, budget string, limit, used, requested int, wait string) OpenAIErrorBody {
	unit := "requests per min (RPM)"
	if budget == TypeTokens {
		unit = "tokens per min (TPM)"
	}
	msg := "Rate limit reached for " + model + " on " + unit +
		": Limit " + strconv.Itoa(limit) + ", Used " + strconv.Itoa(used) +
		", Requested " + strconv.Itoa(requested) + ". Please try again in " + wait + "."
	return NewOpenAIErrorBody(budget, CodeRateLimitExceeded, msg)
}

// NewOpenAIQuotaBody returns the body of the 429 that OpenAI sends when the
// account has no credit left.
func NewOpenAIQuotaBody() OpenAIErrorBody {
	return NewOpenAIErrorBody(CodeInsufficientQuota, CodeInsufficientQuota,
		"You exceeded your current quota, please check your plan and billing details.")
}

// isNull reports whether data is the JSON literal null.
func isNull(data []byte) bool {
	return string(bytes.TrimSpace(data)) == "null"
}
