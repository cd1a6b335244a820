package imodel

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// The token limit of the accounting tests: a day's interval, so that the
// bucket refills by about one token a second and a test's spending shows.
const (
	tokenLimit    = 100_000
	tokenInterval = 24 * time.Hour
)

func tokenLimited(c *runtime.Config) {
	c.TokensPerInterval, c.TokenInterval = tokenLimit, tokenInterval
}

// refillSince bounds what the bucket regained since start, plus rounding.
func refillSince(start time.Time) float64 {
	return time.Since(start).Seconds()*tokenLimit/tokenInterval.Seconds() + 1
}

func TestTokenReconciliation(t *testing.T) {
	_, ex, oa, an := setup(t, simulator.Config{}, tokenLimited)
	budget := func() float64 {
		barrier(t, ex) // the limiter has applied every adjustment so far
		return ex.Stats().TokensAvailable
	}
	for _, m := range []*Model{oa, an} {
		t.Run(string(m.Provider()), func(t *testing.T) {
			// An over-estimate: 1000 reply tokens reserved, 16 used. The
			// estimate is charged while the call runs and the rest refunded.
			start, before := time.Now(), budget()
			h, err := m.Submit(ctx, map[string]any{
				"messages": []map[string]any{{"role": "user", "content": "over"}}, "max_tokens": 1000,
			}, WithHeader(simulator.HeaderLatency, "100ms"))
			if err != nil {
				t.Fatal(err)
			}
			var calling messages.Event
			for ev := range h.Events() {
				if ev.Status == messages.StatusCalling {
					calling = ev
					break
				}
			}
			during := budget()
			ev, _ := h.Wait(ctx)
			after := budget()
			est, actual := calling.Tokens.Estimated, ev.Tokens.Actual
			if ev.Status != messages.StatusCompleted || !ev.Tokens.HasActual || ev.Tokens.Estimated != est || actual >= est-900 {
				t.Fatalf("ended %v with tokens %+v", ev.Status, ev.Tokens)
			}
			slack := refillSince(start)
			if spent := before - during; math.Abs(spent-float64(est)) > slack {
				t.Errorf("during the call %.1f tokens spent, want the estimate %d", spent, est)
			}
			if spent := before - after; math.Abs(spent-float64(actual)) > slack {
				t.Errorf("over-estimate: %.1f tokens spent in the end, want the actual %d (estimate %d)", spent, actual, est)
			}
			t.Logf("over-estimate: estimated %d, used %d; budget %.0f → %.0f during → %.0f after", est, actual, before, during, after)

			// An under-estimate: the call claims 5 tokens and uses more;
			// the difference is charged.
			start, before = time.Now(), budget()
			resp, err := m.Invoke(ctx, map[string]any{
				"messages": []map[string]any{{"role": "user", "content": "under"}}, "max_tokens": 16,
			}, WithTokens(5))
			if err != nil {
				t.Fatal(err)
			}
			after = budget()
			actual = resp.Event.Tokens.Actual
			if resp.Event.Tokens.Estimated != 5 || actual <= 5 {
				t.Fatalf("tokens %+v", resp.Event.Tokens)
			}
			if spent := before - after; math.Abs(spent-float64(actual)) > refillSince(start) {
				t.Errorf("under-estimate: %.1f tokens spent, want the actual %d (estimate 5)", spent, actual)
			}
		})
	}

	// A request that could never fit in the bucket is refused at once.
	if _, err := oa.Chat(ctx, hello("huge", tokenLimit+1)); !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Errorf("request above the bucket: %v", err)
	}
	if _, err := oa.Chat(ctx, hello("huge", 10), WithTokens(-1)); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("negative tokens: %v", err)
	}
}

// estimatePrompts are varied chat requests for measuring the estimate.
func estimatePrompts() []ChatRequest {
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 120)
	user := func(s string) []Message { return []Message{{Role: "user", Content: s}} }
	return []ChatRequest{
		{Messages: user("Hi"), MaxTokens: 5},
		{Messages: user(long), MaxTokens: 50},
		{Messages: []Message{{Role: "user", Content: "Who am I?", Name: "alice"}}, MaxTokens: 5},
		{System: "You are a helpful assistant.", Messages: user("Summarise the plot of Hamlet in one line.")},
		{System: "Answer in French.", Messages: []Message{
			{Role: "user", Content: "What is the capital of Spain?"},
			{Role: "assistant", Content: "Madrid."},
			{Role: "user", Content: "And of Italy?"},
			{Role: "assistant", Content: "Rome."},
			{Role: "user", Content: "And of Portugal?"},
		}, MaxTokens: 10},
		{Messages: user("こんにちは世界、お元気ですか？"), MaxTokens: 20},
		{Messages: user("🚀🔥 emoji test 🎉✨ with 👩‍💻 sequences"), MaxTokens: 20},
		{Messages: user("func main() {\n\tfmt.Println(\"hello\")\n\tfor i := 0; i < 10; i++ {\n\t\tx[i] = i * i\n\t}\n}"), MaxTokens: 64},
		{Messages: user(`{"name": "lionactor", "version": [1, 2, 3], "nested": {"ok": true, "n": null}}`), MaxTokens: 32},
		{Messages: user("3.14159 2.71828 1.41421 1234567890 0x1F 1e-9 -42"), MaxTokens: 8},
		{Messages: user("   lots    of\t\twhitespace   \n\n\n   here   "), MaxTokens: 8},
		{Messages: []Message{
			{Role: "user", Content: "I like tea.", Name: "bob"},
			{Role: "user", Content: "I like coffee.", Name: "carol_2"},
			{Role: "user", Content: "What do we have in common?", Name: "dave"},
		}, MaxTokens: 30},
		{Messages: user(strings.Repeat("antidisestablishmentarianism ", 200)), MaxTokens: 100},
		{Messages: user("Der schnelle braune Fuchs. Быстрая коричневая лиса. 快速的棕色狐狸。"), MaxTokens: 16},
		{Messages: user("See https://example.com/path?query=1&x=y#frag and mailto:someone@example.org"), MaxTokens: 16},
		{Messages: user("Special text <|endoftext|> and <|im_start|> stays ordinary."), MaxTokens: 16},
		{System: "", Messages: user("No system prompt at all.")},
		{Messages: user("line one\nline two\r\nline three\n\n\nline six"), MaxTokens: 12},
		{Messages: user("| a | b |\n|---|---|\n| 1 | 2 |\n\n**bold** _it_ `code`"), MaxTokens: 12},
		{System: "Continue the text.", Messages: []Message{
			{Role: "user", Content: "Once upon a time"},
			{Role: "assistant", Content: "there was a"},
		}, MaxTokens: 40},
	}
}

// TestEstimateAccuracy measures the estimate of the prompt against the
// prompt tokens the simulator reports. The estimate adds the reply's
// max_tokens; that part is left out of the comparison.
func TestEstimateAccuracy(t *testing.T) {
	_, _, oa, an := setup(t, simulator.Config{}, nil)
	prompts := estimatePrompts()
	if len(prompts) != 20 {
		t.Fatalf("%d prompts", len(prompts))
	}
	for _, m := range []*Model{oa, an} {
		var sumAbs, sumRel, maxAbs, maxRel float64
		for i, req := range prompts {
			resp, err := m.Chat(ctx, req)
			if err != nil {
				t.Fatalf("prompt %d: %v", i, err)
			}
			reply := req.MaxTokens
			if reply == 0 {
				reply = tokens.DefaultMaxTokens
			}
			est := resp.Event.Tokens.Estimated - reply
			actual := resp.Usage.InputTokens
			diff := math.Abs(float64(est - actual))
			rel := diff / float64(actual)
			sumAbs, sumRel = sumAbs+diff, sumRel+rel
			maxAbs, maxRel = math.Max(maxAbs, diff), math.Max(maxRel, rel)
			if rel > 0.1 {
				t.Errorf("%s prompt %d: estimated %d prompt tokens, the simulator counted %d", m.Provider(), i, est, actual)
			}
		}
		n := float64(len(prompts))
		t.Logf("%s: prompt-token estimate vs actual over %d prompts: mean error %.2f tokens (%.2f%%), max %.0f tokens (%.2f%%)",
			m.Provider(), len(prompts), sumAbs/n, 100*sumRel/n, maxAbs, 100*maxRel)
	}
}

func TestEstimateFormula(t *testing.T) {
	// The estimate follows OpenAI's rule: 4 tokens of framing per message
	// plus its fields, 2 for the reply primer, plus n × max_tokens.
	c := tokens.ForModel(openAIModel)
	msgs := []tokens.Message{{Role: "user", Text: "Hi"}}
	want := 2 + 4 + c.Count("user") + c.Count("Hi")
	if got := c.ChatPrompt(msgs); got != want {
		t.Errorf("prompt %d, want %d", got, want)
	}
	got := countBody(OpenAI, "/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"max_tokens":10,"n":2}`), "", 0)
	if got.Tokens() != want+20 || got.InputTokens != want || got.OutputTokens != 20 || !got.MaxTokensSet || got.Model != "gpt-4o-mini" {
		t.Errorf("estimate %+v, want %d input and 20 output", got, want)
	}
	if got := countBody(Anthropic, "/messages", []byte(`{`), "claude-x", 0); got.Tokens() != 0 || got.Model != "claude-x" {
		t.Errorf("unreadable body: %+v", got)
	}
	if got := countBody(OpenAI, "/embeddings", []byte(`{"input":"one two"}`), "", 0); got.Tokens() != c.Count("one two") || got.OutputTokens != 0 {
		t.Errorf("single input: %+v", got)
	}
	if got := countBody(OpenAI, "/chat/completions", []byte(`{"messages":[{"role":"user","content":"Hi"}]}`), "gpt-4o", 0); got.OutputTokens != tokens.DefaultMaxTokens || got.MaxTokensSet {
		t.Errorf("no max_tokens: %+v, want the default reservation, not a bound", got)
	}
}
