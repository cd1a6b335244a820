package sdktest

import (
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/lionactor/lionactor/simulator"
)

// longSystem is a system prompt long enough for the providers' prompt
// caches (over 1,024 tokens).
var longSystem = "You grade answers." + strings.Repeat(" Be strict and fair about every point.", 200)

// TestOpenAIUsageDetails: openai-go reads the simulator's cached and
// reasoning counts where OpenAI puts them.
func TestOpenAIUsageDetails(t *testing.T) {
	e := startSim(t, simulator.Config{ReasoningTokens: 12})
	c := openAIClient(e)
	params := func(model, user string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model:               model,
			Messages:            []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(longSystem), openai.UserMessage(user)},
			MaxCompletionTokens: openai.Int(40),
		}
	}
	if _, err := c.Chat.Completions.New(ctx, params("o4-mini", "First.")); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Chat.Completions.New(ctx, params("o4-mini", "Second."))
	if err != nil {
		t.Fatal(err)
	}
	u := resp.Usage
	if u.PromptTokensDetails.CachedTokens < 1024 || u.PromptTokensDetails.CachedTokens > u.PromptTokens {
		t.Errorf("cached tokens %d of %d prompt tokens, want the shared system prompt", u.PromptTokensDetails.CachedTokens, u.PromptTokens)
	}
	if u.CompletionTokensDetails.ReasoningTokens != 12 || u.CompletionTokens <= 12 {
		t.Errorf("reasoning %d of %d completion tokens, want 12 of more", u.CompletionTokensDetails.ReasoningTokens, u.CompletionTokens)
	}
}

// TestAnthropicUsageDetails: anthropic-sdk-go reads the simulator's cache
// writes and reads.
func TestAnthropicUsageDetails(t *testing.T) {
	e := startSim(t, simulator.Config{})
	c := anthropicClient(e)
	params := func(user string) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{
			Model:     claudeModel,
			MaxTokens: 20,
			System:    []anthropic.TextBlockParam{{Text: longSystem, CacheControl: anthropic.NewCacheControlEphemeralParam()}},
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(user))},
		}
	}
	first, err := c.Messages.New(ctx, params("First."))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Messages.New(ctx, params("Second."))
	if err != nil {
		t.Fatal(err)
	}
	if w := first.Usage.CacheCreationInputTokens; w < 1024 || first.Usage.CacheReadInputTokens != 0 {
		t.Errorf("first: %d written, %d read; want the system prompt written", w, first.Usage.CacheReadInputTokens)
	}
	if r := second.Usage.CacheReadInputTokens; r != first.Usage.CacheCreationInputTokens || second.Usage.CacheCreationInputTokens != 0 {
		t.Errorf("second: %d read, %d written; want %d read", r, second.Usage.CacheCreationInputTokens, first.Usage.CacheCreationInputTokens)
	}
}
