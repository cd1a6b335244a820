package simulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// longSystem is a system prompt of well over 1,024 tokens, as batches of
// one instruction repeat it.
var longSystem = "You grade answers." + strings.Repeat(" Be strict and fair about every point.", 200)

func chatWithSystem(model, system, user string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]any{
		{"role": "system", "content": system}, {"role": "user", "content": user},
	}}
}

// cachedOf rounds a shared prefix to what OpenAI reads from its cache.
func cachedOf(shared int) int { return 1024 + (shared-1024)/128*128 }

func TestOpenAIPromptCacheCountsTheSharedStart(t *testing.T) {
	ts := start(t, Config{})
	c := tokens.ForModel("gpt-4o-mini")
	sysTokens := c.ChatPrompt([]tokens.Message{{Role: "system", Text: longSystem}})
	usage := func(key, user string) wire.Usage {
		t.Helper()
		r := ts.do(request{path: "/v1/chat/completions", key: key, body: chatWithSystem("gpt-4o-mini", longSystem, user)})
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return *decode[wire.ChatResponse](t, r).Usage
	}
	cached := func(u wire.Usage) int {
		if u.PromptTokensDetails == nil {
			return 0
		}
		return u.PromptTokensDetails.CachedTokens
	}

	first := usage("sk-a", "Grade: 2 + 2 = 4.")
	if cached(first) != 0 {
		t.Errorf("first request: %d cached tokens, want none", cached(first))
	}
	// Another question under the same system prompt: the system message
	// is read from the cache, in steps of 128 tokens from 1,024.
	second := usage("sk-a", "Grade: the sky is green.")
	if want := cachedOf(sysTokens); cached(second) != want {
		t.Errorf("same system prompt: %d cached tokens, want %d of the %d the system message takes", cached(second), want, sysTokens)
	}
	if second.PromptTokens != first.PromptTokens-c.Count("Grade: 2 + 2 = 4.")+c.Count("Grade: the sky is green.") {
		t.Errorf("prompt tokens %d: the cached ones are counted in them", second.PromptTokens)
	}
	// The same prompt again: all of it, to the step below its length.
	third := usage("sk-a", "Grade: the sky is green.")
	if want := cachedOf(second.PromptTokens); cached(third) != want {
		t.Errorf("the same prompt: %d cached, want %d", cached(third), want)
	}
	// Another key has a cache of its own.
	if other := usage("sk-b", "Grade: the sky is green."); cached(other) != 0 {
		t.Errorf("another key: %d cached", cached(other))
	}
	// A prompt under 1,024 tokens is never cached.
	short := func() int {
		r := ts.do(request{path: "/v1/chat/completions", key: "sk-a", body: chatWithSystem("gpt-4o-mini", "Be brief.", "Hi")})
		return cached(*decode[wire.ChatResponse](t, r).Usage)
	}
	short()
	if n := short(); n != 0 {
		t.Errorf("short prompt: %d cached", n)
	}
}

func TestReasoningModelsBillReasoningAsOutput(t *testing.T) {
	ts := start(t, Config{CompletionTokens: 10, ReasoningTokens: 20})
	cases := []struct {
		model              string
		extra              map[string]any
		reasoning, visible int
		finish             string
	}{
		{"o4-mini", map[string]any{"max_completion_tokens": 100}, 20, 10, "stop"},
		{"gpt-5-mini", nil, 20, 10, "stop"},
		{"o3", map[string]any{"max_completion_tokens": 25}, 20, 5, "length"},
		{"o1-2024-12-17", map[string]any{"max_completion_tokens": 8}, 7, 1, "length"},
		{"gpt-4o-mini", map[string]any{"max_tokens": 100}, 0, 10, "stop"},
		{"gpt-5-chat-latest", nil, 0, 10, "stop"},
	}
	for _, tc := range cases {
		r := ts.do(request{path: "/v1/chat/completions", body: chatBody(tc.model, "Think first.", tc.extra)})
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tc.model, r.status, r.body)
		}
		resp := decode[wire.ChatResponse](t, r)
		u := resp.Usage
		text := resp.Choices[0].Message.Content.String()
		if got := tokens.ForModel(tc.model).Count(text); got != tc.visible || resp.Choices[0].FinishReason != tc.finish {
			t.Errorf("%s: reply of %d tokens, finish %q; want %d, %q", tc.model, got, resp.Choices[0].FinishReason, tc.visible, tc.finish)
		}
		gotReasoning := 0
		if u.CompletionTokensDetails != nil {
			gotReasoning = u.CompletionTokensDetails.ReasoningTokens
		}
		if gotReasoning != tc.reasoning || u.CompletionTokens != tc.visible+tc.reasoning || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Errorf("%s: usage %+v reasoning %d; want %d reasoning within %d completion tokens", tc.model, *u, gotReasoning, tc.reasoning, tc.visible+tc.reasoning)
		}
	}
}

func TestAnthropicPromptCacheWritesThenReads(t *testing.T) {
	ts := start(t, Config{})
	c := tokens.ForModel("claude-sonnet-4-5")
	system := []map[string]any{{"type": "text", "text": longSystem, "cache_control": map[string]string{"type": "ephemeral"}}}
	body := func(user string, stream bool) map[string]any {
		return messagesBody("claude-sonnet-4-5", user, 20, map[string]any{"system": system, "stream": stream})
	}
	prefix := c.ChatPrompt([]tokens.Message{{Role: "system", Text: longSystem}})
	total := func(user string) int {
		return c.ChatPrompt([]tokens.Message{{Role: "system", Text: longSystem}, {Role: "user", Text: user}})
	}
	get := func(user string) wire.AnthropicUsage {
		t.Helper()
		r := ts.do(request{path: "/v1/messages", body: body(user, false)})
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return decode[wire.MessagesResponse](t, r).Usage
	}
	deref := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	first := get("Grade: 2 + 2 = 4.")
	if deref(first.CacheCreationInputTokens) != prefix || deref(first.CacheReadInputTokens) != 0 || first.InputTokens != total("Grade: 2 + 2 = 4.")-prefix {
		t.Errorf("first request: %d input, %d written, %d read; want %d, %d, 0", first.InputTokens,
			deref(first.CacheCreationInputTokens), deref(first.CacheReadInputTokens), total("Grade: 2 + 2 = 4.")-prefix, prefix)
	}
	second := get("Grade: the sky is green.")
	if deref(second.CacheReadInputTokens) != prefix || deref(second.CacheCreationInputTokens) != 0 || second.InputTokens != total("Grade: the sky is green.")-prefix {
		t.Errorf("second request: %d input, %d written, %d read; want %d read", second.InputTokens,
			deref(second.CacheCreationInputTokens), deref(second.CacheReadInputTokens), prefix)
	}
	// A stream reports them in message_start.
	r := ts.do(request{path: "/v1/messages", body: body("Grade: streamed.", true)})
	events, err := streamEvents(t, r.body)
	if err != nil || len(events) == 0 {
		t.Fatalf("stream: %v", err)
	}
	var start wire.AnthropicStreamEvent
	if err := json.Unmarshal([]byte(events[0].Data), &start); err != nil || start.Message == nil {
		t.Fatalf("first event %s: %v", events[0].Data, err)
	}
	if u := start.Message.Usage; deref(u.CacheReadInputTokens) != prefix || u.InputTokens != total("Grade: streamed.")-prefix {
		t.Errorf("message_start usage %+v, want %d read", u, prefix)
	}
	// Without a cache_control block nothing is cached.
	plain := ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "Grade: plain.", 20, map[string]any{"system": longSystem})})
	if u := decode[wire.MessagesResponse](t, plain).Usage; u.CacheReadInputTokens != nil || u.CacheCreationInputTokens != nil {
		t.Errorf("unmarked prompt: %+v", u)
	}
}
