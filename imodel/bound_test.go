package imodel

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// hugeText is about n bytes of English-like prose, different for each seed,
// so that no count kept of an earlier text answers for it.
func hugeText(n, seed int) string {
	const words = "the quick brown fox jumps over the lazy dog while a request of thirty megabytes waits to be refused "
	var b strings.Builder
	b.Grow(n + len(words))
	b.WriteString(strconv.Itoa(seed))
	for b.Len() < n {
		b.WriteString(words)
	}
	return b.String()
}

// limitedModel is a model of an unreachable endpoint on an executor whose
// token bucket holds burst tokens: what it refuses, it refuses at submit.
func limitedModel(t testing.TB, burst int) (*Model, *runtime.Executor) {
	t.Helper()
	ex := startExecutor(t, func(c *runtime.Config) { c.TokensPerInterval = burst })
	return newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: "http://127.0.0.1:1/v1", APIKey: testKey, Model: openAIModel}), ex
}

// A request whose text is longer than 128 bytes for each token of the
// executor's burst is refused without being tokenized: its error is the
// executor's TokenLimitError, whose Tokens is the bound from the text's
// length (one token per 128 bytes, and the reply), far below the count.
func TestRequestOverTheBurstByItsSizeIsNotCounted(t *testing.T) {
	m, ex := limitedModel(t, 1000)
	text := hugeText(1<<20, 1)
	bound := (len(text)+127)/128 + 8 // the reply's max_tokens: 8
	counted := tokens.ForModel(openAIModel).Count(text)
	if counted <= bound {
		t.Fatalf("the text counts %d tokens, not more than its bound %d: the test proves nothing", counted, bound)
	}
	for name, submit := range map[string]func() error{
		"Submit":     func() error { _, err := m.Submit(ctx, chatPayloadOf(text)); return err },
		"Invoke":     func() error { _, err := m.Invoke(ctx, chatPayloadOf(text)); return err },
		"NewRequest": func() error { _, err := m.NewRequest(chatPayloadOf(text)); return err },
		"Chat": func() error {
			_, err := m.Chat(ctx, ChatRequest{Messages: []Message{{Role: "user", Content: text}}, MaxTokens: 8})
			return err
		},
	} {
		err := submit()
		var tle *messages.TokenLimitError
		if !errors.As(err, &tle) || !errors.Is(err, messages.ErrTokensExceedBurst) {
			t.Fatalf("%s: %v, want a *messages.TokenLimitError", name, err)
		}
		if *tle != (messages.TokenLimitError{Tokens: bound, Burst: 1000, AtLeast: true}) {
			t.Errorf("%s: %+v, want the bound %d of the text's length (it counts %d), the burst 1000, AtLeast", name, *tle, bound, counted)
		}
	}
	if s := ex.Stats(); s.Accepted != 0 {
		t.Errorf("the executor accepted %d requests", s.Accepted)
	}
}

// The work of refusing a request by its size does not grow with it:
// tokenizing allocates for every token, millions for these texts, the
// bound a fixed few (the body's encoding and decoding).
func TestRefusingByTheSizeIsBoundedWork(t *testing.T) {
	m, _ := limitedModel(t, 1000)
	allocs := func(n int) float64 {
		payload := chatPayloadOf(hugeText(n, n))
		return testing.AllocsPerRun(2, func() {
			if _, err := m.NewRequest(payload); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	small, large := allocs(1<<20), allocs(8<<20)
	t.Logf("allocations: %.0f for 1 MiB, %.0f for 8 MiB", small, large)
	if large > small+10 || large > 100 {
		t.Errorf("refusing 1 MiB took %.0f allocations, 8 MiB %.0f: they must not grow with the text", small, large)
	}
}

// Under the bound, a request is counted as always: one whose text is
// short enough to fit by its length, but whose tokens do not, gets the
// executor's TokenLimitError with the count; one that fits is accepted.
func TestRequestUnderTheBoundIsCounted(t *testing.T) {
	m, _ := limitedModel(t, 1000)
	text := hugeText(20_000, 2) // at most 157 tokens by its length; about 4,000 counted
	counted := tokens.ForModel(openAIModel).ChatPrompt([]tokens.Message{{Role: "user", Text: text}}) + 8
	if r, err := m.NewRequest(chatPayloadOf(text)); err != nil || r.Tokens != counted || counted <= 1000 {
		t.Fatalf("NewRequest: %d tokens, %v; want the count %d, over 1000", r.Tokens, err, counted)
	}
	_, err := m.Submit(ctx, chatPayloadOf(text))
	var tle *messages.TokenLimitError
	if !errors.As(err, &tle) {
		t.Fatalf("Submit: %v, want a *messages.TokenLimitError", err)
	}
	if *tle != (messages.TokenLimitError{Tokens: counted, Burst: 1000}) {
		t.Errorf("%+v, want the count %d, the burst 1000, not AtLeast", *tle, counted)
	}
	r, err := m.NewRequest(chatPayloadOf("a short one"))
	if err != nil || r.Tokens == 0 {
		t.Errorf("a request that fits: %d tokens, %v", r.Tokens, err)
	}
}

// A request given its tokens (WithTokens) is charged what it says: its
// size refuses nothing. On an executor that does not say its burst, or
// has no token limit, every request is counted.
func TestTheBoundNeedsTheExecutorsBurst(t *testing.T) {
	text := hugeText(200_000, 3)
	want := tokens.ForModel(openAIModel).ChatPrompt([]tokens.Message{{Role: "user", Text: text}}) + 8
	m, _ := limitedModel(t, 1000)
	if r, err := m.NewRequest(chatPayloadOf(text), WithTokens(10)); err != nil || r.Tokens != 10 {
		t.Errorf("WithTokens(10): %d tokens, %v", r.Tokens, err)
	}
	unlimited := newModel(t, startExecutor(t, nil), EndpointConfig{Provider: OpenAI, BaseURL: "http://127.0.0.1:1/v1", APIKey: testKey, Model: openAIModel})
	own := newModel(t, &recordingExecutor{}, EndpointConfig{Provider: OpenAI, BaseURL: "http://127.0.0.1:1/v1", APIKey: testKey, Model: openAIModel})
	for name, m := range map[string]*Model{"no token limit": unlimited, "an executor of its own": own} {
		if r, err := m.NewRequest(chatPayloadOf(text)); err != nil || r.Tokens != want {
			t.Errorf("%s: %d tokens, %v; want the count %d", name, r.Tokens, err, want)
		}
	}
}

// The bound reads the texts each endpoint counts: the messages of an
// Anthropic request and its system prompt, the inputs of an embeddings
// request; and the replies a chat reserves count in full.
func TestTheBoundOfEachEndpoint(t *testing.T) {
	text := strings.Repeat("x", 128*100)
	cases := []struct {
		name     string
		p        Provider
		path     string
		body     string
		limit    int
		atLeast  bool
		inputMin int
	}{
		{"anthropic messages", Anthropic, "/messages", `{"system":"` + text + `","messages":[{"role":"user","content":"` + text + `"}],"max_tokens":10}`, 199, true, 200},
		{"anthropic at its bound", Anthropic, "/messages", `{"system":"` + text + `","messages":[{"role":"user","content":"` + text + `"}],"max_tokens":10}`, 210, false, 0},
		{"embeddings", OpenAI, "/embeddings", `{"input":["` + text + `","` + text + `"]}`, 199, true, 200},
		{"embeddings under", OpenAI, "/embeddings", `{"input":["` + text + `"]}`, 199, false, 0},
		{"replies alone", OpenAI, "/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":500,"n":3}`, 1000, true, 1},
		{"no limit", OpenAI, "/chat/completions", `{"messages":[{"role":"user","content":"` + text + `"}]}`, 0, false, 0},
	}
	for _, tc := range cases {
		e := countBody(tc.p, tc.path, []byte(tc.body), "gpt-4o", tc.limit)
		if e.atLeast != tc.atLeast {
			t.Errorf("%s: atLeast %v, want %v (%+v)", tc.name, e.atLeast, tc.atLeast, e)
			continue
		}
		if tc.atLeast && (e.InputTokens != tc.inputMin || e.Tokens() <= tc.limit) {
			t.Errorf("%s: %d input tokens, %d in all, want the bound %d, over %d", tc.name, e.InputTokens, e.Tokens(), tc.inputMin, tc.limit)
		}
		if !tc.atLeast && e.Tokens() != countBody(tc.p, tc.path, []byte(tc.body), "gpt-4o", 0).Tokens() {
			t.Errorf("%s: under the bound, not the count", tc.name)
		}
	}
}

// A router refuses by the size what none of its deployments could take,
// with the TokenLimitError of the largest bucket, as for a counted
// request.
func TestRouterRefusesByTheSize(t *testing.T) {
	keys := []key{{"small", "gpt-4o-mini", OpenAI, "sk-router-small", 600}, {"large", "gpt-4o-mini", OpenAI, "sk-router-large", 600}}
	r, _ := routerOf(t, "http://127.0.0.1:1/v1", keys, func(c *runtime.RouterConfig) {
		c.Deployments[0].Config.TokensPerInterval, c.Deployments[0].Config.TokenInterval = 1000, time.Minute
		c.Deployments[1].Config.TokensPerInterval, c.Deployments[1].Config.TokenInterval = 5000, time.Minute
	})
	text := hugeText(1<<20, 4)
	_, err := r.Submit(ctx, chatPayloadOf(text))
	var tle *messages.TokenLimitError
	if !errors.As(err, &tle) {
		t.Fatalf("Submit: %v, want a *messages.TokenLimitError", err)
	}
	if want := (messages.TokenLimitError{Tokens: (len(text)+127)/128 + 8, Burst: 5000, AtLeast: true}); *tle != want {
		t.Errorf("%+v, want %+v", *tle, want)
	}
}

// BenchmarkRefuseOversizedRequest is the cost of refusing a 30 MB chat
// request to an executor whose token bucket holds 100,000 tokens.
func BenchmarkRefuseOversizedRequest(b *testing.B) {
	m, _ := limitedModel(b, 100_000)
	b.ReportAllocs()
	for i := range b.N {
		b.StopTimer()
		payload := chatPayloadOf(hugeText(30<<20, i))
		b.StartTimer()
		_, err := m.Submit(ctx, payload)
		var tle *messages.TokenLimitError
		if !errors.As(err, &tle) {
			b.Fatalf("Submit: %v, want a *messages.TokenLimitError", err)
		}
	}
}
