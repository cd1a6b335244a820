package sdktest

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/simulator"
)

// anthropicClient is anthropic-sdk-go's client of the simulator, with the
// key given as the SDK sends it (Authorization: Bearer), nothing read from
// the environment, and no retries unless opts say otherwise.
func anthropicClient(e *sim, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithoutEnvironmentDefaults(), option.WithBaseURL(e.URL), option.WithAPIKey(anthropicKey),
		option.WithHTTPClient(e.Client), option.WithMaxRetries(0),
	}, opts...)...)
}

// messageParams asks for a reply of at most maxTokens to one user message.
func messageParams(text string, maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     claudeModel,
		MaxTokens: maxTokens,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

// inputTokens is the input count the simulator gives messageParams.
func inputTokens(text string) int64 {
	return int64(tokens.ForModel(claudeModel).ChatPrompt([]tokens.Message{{Role: "system", Text: "Be brief."}, {Role: "user", Text: text}}))
}

// TestAnthropicMessage: the SDK's key, sent as a bearer token, is
// accepted, and a message decodes with its stop reason and usage.
func TestAnthropicMessage(t *testing.T) {
	e := startSim(t, simulator.Config{})
	c := anthropicClient(e)
	msg, err := c.Messages.New(ctx, messageParams("Hello from anthropic-sdk-go", 6))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text == "" || msg.StopReason != anthropic.StopReasonMaxTokens ||
		msg.Model != claudeModel || !strings.HasPrefix(msg.ID, "msg_") {
		t.Errorf("message %s", msg.RawJSON())
	}
	if in := inputTokens("Hello from anthropic-sdk-go"); msg.Usage.InputTokens != in || msg.Usage.OutputTokens != 6 {
		t.Errorf("usage %d in, %d out; want %d, 6", msg.Usage.InputTokens, msg.Usage.OutputTokens, in)
	}
	r := e.Requests()[0]
	if r.Header.Get("Authorization") != "Bearer "+anthropicKey || r.Header.Get("X-Api-Key") != "" || r.Header.Get("Anthropic-Version") == "" {
		t.Errorf("the SDK sent Authorization %q, X-Api-Key %q, anthropic-version %q", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.Header.Get("Anthropic-Version"))
	}
	// A key the simulator does not accept is refused as the provider does.
	other := anthropicClient(e, option.WithAPIKey("sk-ant-test-unknown"))
	_, err = other.Messages.New(ctx, messageParams("x", 1))
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type() != anthropic.ErrorTypeAuthenticationError {
		t.Errorf("unknown key: %v", err)
	}
}

// TestAnthropicStreamAccumulated: a streamed message accumulated with the
// SDK's Message.Accumulate gives the text and the usage, input tokens
// included, of the same request unstreamed.
func TestAnthropicStreamAccumulated(t *testing.T) {
	e := startSim(t, simulator.Config{})
	c := anthropicClient(e)
	params := messageParams("Stream to anthropic-sdk-go", 8)
	whole, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	stream := c.Messages.NewStreaming(ctx, params)
	defer stream.Close()
	var msg anthropic.Message
	events := 0
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatalf("event %d: %v", events, err)
		}
		events++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if events < 6 || len(msg.Content) != 1 || msg.Content[0].Text != whole.Content[0].Text || msg.StopReason != whole.StopReason {
		t.Errorf("accumulated %s from %d events, want %q (stop %q)", msg.RawJSON(), events, whole.Content[0].Text, whole.StopReason)
	}
	if msg.Usage.InputTokens != whole.Usage.InputTokens || msg.Usage.OutputTokens != whole.Usage.OutputTokens {
		t.Errorf("accumulated usage %d in, %d out; want %d in, %d out", msg.Usage.InputTokens, msg.Usage.OutputTokens, whole.Usage.InputTokens, whole.Usage.OutputTokens)
	}
}

// TestAnthropicRateLimitError: a 429 from an exhausted request budget is the
// SDK's typed *anthropic.Error of type rate_limit_error, with the request's
// id and the retry-after header; with the SDK's retries off, it is the only
// attempt.
func TestAnthropicRateLimitError(t *testing.T) {
	e := startSim(t, simulator.Config{RequestsPerMinute: 1})
	c := anthropicClient(e)
	if _, err := c.Messages.New(ctx, messageParams("first", 2)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Messages.New(ctx, messageParams("second", 2))
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T), want an *anthropic.Error", err, err)
	}
	if apiErr.StatusCode != 429 || apiErr.Type() != anthropic.ErrorTypeRateLimitError || !strings.HasPrefix(apiErr.RequestID, "req_") ||
		!strings.Contains(apiErr.Message, "exceed the rate limit") {
		t.Errorf("error %d %q %q %q", apiErr.StatusCode, apiErr.Type(), apiErr.RequestID, apiErr.Message)
	}
	secs, err := strconv.Atoi(apiErr.Response.Header.Get("retry-after"))
	if err != nil || secs < 55 || secs > 60 {
		t.Errorf("retry-after %q: want about a minute", apiErr.Response.Header.Get("retry-after"))
	}
	if st := e.Stats(); st.Requests != 2 || st.RateLimited != 1 {
		t.Errorf("the simulator saw %d requests, %d rate limited; want 2 and 1", st.Requests, st.RateLimited)
	}
}
