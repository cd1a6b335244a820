package sdktest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/simulator"
)

var ctx = context.Background()

// openAIClient is openai-go's client of the simulator, without retries
// unless opts say otherwise.
func openAIClient(e *sim, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(e.URL + "/v1/"), option.WithAPIKey(openAIKey),
		option.WithHTTPClient(e.Client), option.WithMaxRetries(0),
	}, opts...)...)
}

// chatParams asks for a reply of at most maxTokens to one user message.
func chatParams(text string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     chatModel,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage(text)},
		MaxTokens: openai.Int(maxTokens),
	}
}

// promptTokens is the prompt count the simulator (and OpenAI) gives
// chatParams' messages.
func promptTokens(text string) int64 {
	return int64(tokens.ForModel(chatModel).ChatPrompt([]tokens.Message{{Role: "system", Text: "Be brief."}, {Role: "user", Text: text}}))
}

// TestOpenAIChat: a chat completion decodes, with the reply cut at
// max_tokens and OpenAI's usage counts.
func TestOpenAIChat(t *testing.T) {
	e := startSim(t, simulator.Config{})
	c := openAIClient(e)
	resp, err := c.Chat.Completions.New(ctx, chatParams("Hello from openai-go", 7))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" || resp.Choices[0].FinishReason != "length" ||
		resp.Model != chatModel || !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" {
		t.Errorf("reply %s", resp.RawJSON())
	}
	p := promptTokens("Hello from openai-go")
	if u := resp.Usage; u.PromptTokens != p || u.CompletionTokens != 7 || u.TotalTokens != p+7 {
		t.Errorf("usage %+v, want %d + 7", u, p)
	}
	if got := e.Requests()[0].Header.Get("Authorization"); got != "Bearer "+openAIKey {
		t.Errorf("Authorization %q", got)
	}
}

// TestOpenAIStreamAccumulated: a stream with include_usage, accumulated
// by openai-go's ChatCompletionAccumulator, gives the text and the usage of
// the same request unstreamed.
func TestOpenAIStreamAccumulated(t *testing.T) {
	e := startSim(t, simulator.Config{})
	c := openAIClient(e)
	params := chatParams("Stream to openai-go", 9)
	whole, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var deltas []string
	for stream.Next() {
		chunk := stream.Current()
		if !acc.AddChunk(chunk) {
			t.Fatalf("chunk not accumulated: %s", chunk.RawJSON())
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			deltas = append(deltas, chunk.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(deltas) < 2 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != whole.Choices[0].Message.Content ||
		strings.Join(deltas, "") != whole.Choices[0].Message.Content || acc.Choices[0].FinishReason != "length" {
		t.Errorf("accumulated %q in %d deltas (finish %q), want %q", acc.Choices[0].Message.Content, len(deltas), acc.Choices[0].FinishReason, whole.Choices[0].Message.Content)
	}
	if u := acc.Usage; u.PromptTokens != whole.Usage.PromptTokens || u.CompletionTokens != 9 || u.TotalTokens != whole.Usage.TotalTokens {
		t.Errorf("accumulated usage %+v, want %+v", u, whole.Usage)
	}
}

// TestOpenAIEmbeddings: embeddings of several inputs, in order, with their
// usage.
func TestOpenAIEmbeddings(t *testing.T) {
	e := startSim(t, simulator.Config{EmbeddingDims: 5})
	c := openAIClient(e)
	inputs := []string{"first input", "second", "é"}
	resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: embedModel,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := int64(tokens.ForModel(embedModel).Embedding(inputs))
	if len(resp.Data) != 3 || resp.Model != embedModel || resp.Usage.PromptTokens != n || resp.Usage.TotalTokens != n {
		t.Fatalf("reply %s, want 3 vectors and %d tokens", resp.RawJSON(), n)
	}
	for i, d := range resp.Data {
		if d.Index != int64(i) || len(d.Embedding) != 5 {
			t.Errorf("vector %d: index %d, %d values", i, d.Index, len(d.Embedding))
		}
	}
	// One input, as a string: the same vector as in the batch.
	one, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: embedModel, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("second")}})
	if err != nil || len(one.Data) != 1 || !slicesEqual(one.Data[0].Embedding, resp.Data[1].Embedding) {
		t.Errorf("single input: %v %v", one, err)
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOpenAIRateLimitError: a 429 from an exhausted request budget is
// openai-go's typed *openai.Error, with OpenAI's code and type and the
// retry-after headers; with the SDK's retries off, it is the only attempt.
func TestOpenAIRateLimitError(t *testing.T) {
	e := startSim(t, simulator.Config{RequestsPerMinute: 1}) // the second request waits a minute
	c := openAIClient(e)
	if _, err := c.Chat.Completions.New(ctx, chatParams("first", 2)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Chat.Completions.New(ctx, chatParams("second", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T), want an *openai.Error", err, err)
	}
	if apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" ||
		!strings.Contains(apiErr.Message, "Rate limit reached for "+chatModel+" on requests per min (RPM): Limit 1") {
		t.Errorf("error %d %q %q %q", apiErr.StatusCode, apiErr.Code, apiErr.Type, apiErr.Message)
	}
	secs, err := strconv.Atoi(apiErr.Response.Header.Get("retry-after"))
	ms, msErr := strconv.Atoi(apiErr.Response.Header.Get("retry-after-ms"))
	if err != nil || msErr != nil || secs < 55 || secs > 60 || ms > secs*1000 || ms < (secs-1)*1000 {
		t.Errorf("retry-after %q, retry-after-ms %q: want about a minute", apiErr.Response.Header.Get("retry-after"), apiErr.Response.Header.Get("retry-after-ms"))
	}
	if st := e.Stats(); st.Requests != 2 || st.RateLimited != 1 {
		t.Errorf("the simulator saw %d requests, %d rate limited; want 2 and 1", st.Requests, st.RateLimited)
	}
}
