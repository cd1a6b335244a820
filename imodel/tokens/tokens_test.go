package tokens

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tiktoken-go/tokenizer"
)

func TestEncodingForModel(t *testing.T) {
	cases := map[string]string{
		"gpt-4o":                        O200kBase,
		"gpt-4o-mini":                   O200kBase,
		"gpt-4o-2024-08-06":             O200kBase,
		"chatgpt-4o-latest":             O200kBase,
		"gpt-4.1":                       O200kBase,
		"gpt-4.1-nano":                  O200kBase,
		"gpt-5":                         O200kBase,
		"gpt-5-mini":                    O200kBase,
		"o1":                            O200kBase,
		"o1-mini":                       O200kBase,
		"o3":                            O200kBase,
		"o4-mini":                       O200kBase,
		"ft:gpt-4o-mini:acme::abc123":   O200kBase,
		"claude-3-5-sonnet-latest":      O200kBase, // unknown: default
		"":                              O200kBase,
		"gpt-4":                         Cl100kBase,
		"GPT-4":                         Cl100kBase,
		"gpt-4-0613":                    Cl100kBase,
		"gpt-4-turbo":                   Cl100kBase,
		"gpt-3.5-turbo":                 Cl100kBase,
		"gpt-3.5-turbo-0125":            Cl100kBase,
		"gpt-35-turbo":                  Cl100kBase,
		"ft:gpt-3.5-turbo:acme::abc123": Cl100kBase,
		"text-embedding-3-small":        Cl100kBase,
		"text-embedding-3-large":        Cl100kBase,
		"text-embedding-ada-002":        Cl100kBase,
		"text-embedding-ada-0021":       O200kBase, // not the ada family
	}
	for model, want := range cases {
		if got := EncodingForModel(model); got != want {
			t.Errorf("EncodingForModel(%q) = %q, want %q", model, got, want)
		}
		if got := ForModel(model).Encoding(); got != want {
			t.Errorf("ForModel(%q).Encoding() = %q, want %q", model, got, want)
		}
	}
}

func TestForModelSharesOneCounterPerEncoding(t *testing.T) {
	if ForModel("gpt-4o") != ForModel("o3-mini") {
		t.Error("two o200k_base models got different counters; the vocabulary must be loaded once")
	}
	if ForModel("gpt-4") != ForModel("text-embedding-3-small") {
		t.Error("two cl100k_base models got different counters; the vocabulary must be loaded once")
	}
	if ForModel("gpt-4") == ForModel("gpt-4o") {
		t.Error("cl100k_base and o200k_base share a counter")
	}
}

// The expected counts were computed once with the tokenizer; the ones for
// "tiktoken is great!", "antidisestablishmentarianism", "2 + 2 = 4" and
// "お誕生日おめでとう" are also the values published in OpenAI's cookbook
// ("How to count tokens with tiktoken").
func TestCount(t *testing.T) {
	cases := []struct {
		text          string
		o200k, cl100k int
	}{
		{"", 0, 0},
		{"hello world", 2, 2},
		{"Hello, world!", 4, 4},
		{"tiktoken is great!", 6, 6},
		{"antidisestablishmentarianism", 6, 6},
		{"2 + 2 = 4", 7, 7},
		{"お誕生日おめでとう", 8, 9},
		{"日本語のテキスト", 6, 8},
		{"The quick brown fox jumps over the lazy dog.", 10, 10},
		{"<|endoftext|>", 7, 7}, // counted as text, not as the special token
	}
	o, c := ForModel("gpt-4o"), ForModel("gpt-4")
	for _, tc := range cases {
		if got := o.Count(tc.text); got != tc.o200k {
			t.Errorf("o200k_base Count(%q) = %d, want %d", tc.text, got, tc.o200k)
		}
		if got := c.Count(tc.text); got != tc.cl100k {
			t.Errorf("cl100k_base Count(%q) = %d, want %d", tc.text, got, tc.cl100k)
		}
	}
}

func TestCountInvalidUTF8CountsReplacementCharacters(t *testing.T) {
	c := ForModel("gpt-4o")
	if got, want := c.Count("\xff\xfe abc"), c.Count("\ufffd\ufffd abc"); got != want || got == 0 {
		t.Errorf("Count of invalid UTF-8 = %d, want %d (as with U+FFFD)", got, want)
	}
}

// failingCodec fails every Count; the embedded nil Codec supplies the
// other methods, which Counter never calls.
type failingCodec struct{ tokenizer.Codec }

func (failingCodec) Count(string) (int, error) { return 0, errors.New("regexp timeout") }

func TestCountFallsBackToFourBytesPerToken(t *testing.T) {
	c := &Counter{codec: failingCodec{}, encoding: "broken"}
	cases := map[string]int{"": 0, "a": 1, "abcd": 1, "abcde": 2, strings.Repeat("x", 400): 100}
	for text, want := range cases {
		if got := c.Count(text); got != want {
			t.Errorf("fallback Count(%d bytes) = %d, want %d", len(text), got, want)
		}
	}
}

func TestChatPrompt(t *testing.T) {
	c := ForModel("gpt-4o")
	system := Message{Role: "system", Text: "You are a helpful assistant."}              // 4 + 1 + 6
	user := Message{Role: "user", Name: "alice", Text: "What is the capital of France?"} // 4 + 1 + 7 + 1 - 1
	cases := []struct {
		name string
		msgs []Message
		want int
	}{
		{"no messages", nil, 2},
		{"one message", []Message{system}, 2 + 11},
		{"with name", []Message{system, user}, 2 + 11 + 12},
		{"empty message", []Message{{}}, 2 + 4},
		{"images", []Message{{Role: "user", Text: "hello world", Images: 2}}, 2 + 4 + 1 + 2 + 2*ImageTokens},
	}
	for _, tc := range cases {
		if got := c.ChatPrompt(tc.msgs); got != tc.want {
			t.Errorf("%s: ChatPrompt = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestChatRequest(t *testing.T) {
	c := ForModel("gpt-4o")
	msgs := []Message{{Role: "user", Text: "hello world"}} // prompt 2 + 4 + 1 + 2 = 9
	cases := []struct {
		n, maxTokens, want int
	}{
		{1, 100, 109},
		{3, 100, 309},
		{0, 100, 109},  // n defaults to 1
		{-2, 100, 109}, // likewise
		{1, 0, 9 + DefaultMaxTokens},
		{2, -1, 9 + 2*DefaultMaxTokens},
	}
	for _, tc := range cases {
		if got := c.ChatRequest(msgs, tc.n, tc.maxTokens); got != tc.want {
			t.Errorf("ChatRequest(n=%d, maxTokens=%d) = %d, want %d", tc.n, tc.maxTokens, got, tc.want)
		}
	}
}

func TestEmbedding(t *testing.T) {
	c := ForModel("text-embedding-3-small")
	if got := c.Embedding(nil); got != 0 {
		t.Errorf("Embedding(nil) = %d, want 0", got)
	}
	got := c.Embedding([]string{"hello world", "The quick brown fox jumps over the lazy dog.", ""})
	if got != 12 {
		t.Errorf("Embedding = %d, want 12 (2 + 10 + 0, no per-input overhead)", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	texts := []string{"hello world", "お誕生日おめでとう", "The quick brown fox jumps over the lazy dog.", strings.Repeat("lorem ipsum ", 200)}
	models := []string{"gpt-4o", "gpt-4", "o3", "gpt-3.5-turbo"}
	want := make(map[[2]int]int)
	for i, m := range models {
		for j, s := range texts {
			want[[2]int{i, j}] = ForModel(m).Count(s)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 16 {
		wg.Go(func() {
			for k := range 20 {
				i, j := (g+k)%len(models), k%len(texts)
				c := ForModel(models[i])
				if got := c.Count(texts[j]); got != want[[2]int{i, j}] {
					errs <- models[i]
					return
				}
				c.ChatPrompt([]Message{{Role: "user", Text: texts[j]}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for m := range errs {
		t.Errorf("concurrent Count with %s disagreed with the serial count", m)
	}
}

// countingCodec counts the texts it tokenizes, at a token per byte.
type countingCodec struct {
	tokenizer.Codec
	mu    sync.Mutex
	calls int
}

func (c *countingCodec) Count(s string) (int, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return len(s), nil
}

// A long text a batch repeats is tokenized once, and so is a short one
// such as a role; texts between each time; the texts kept are bounded.
func TestLongTextsAreCountedOnce(t *testing.T) {
	codec := &countingCodec{}
	c := &Counter{codec: codec, encoding: "counting"}
	long := strings.Repeat("system prompt ", 100)
	middle := strings.Repeat("m", shortTextBytes+1)
	for range 50 {
		if c.Count(long) != len(long) || c.Count("user") != 4 || c.Count(middle) != len(middle) {
			t.Fatal("wrong count")
		}
	}
	if codec.calls != 1+1+50 {
		t.Errorf("%d tokenizations, want 1 of the long text, 1 of the role and 50 of the middle one", codec.calls)
	}
	// Past the bound, the kept counts start afresh: memory stays bounded.
	big := strings.Repeat("x", keptBytes/2+1)
	c.Count(big)
	c.Count(big + "y")
	if n := c.kept.bytes.Load(); n > keptBytes {
		t.Errorf("%d bytes kept, bound %d", n, keptBytes)
	}
	before := codec.calls
	c.Count(long)
	if codec.calls != before+1 {
		t.Error("the long text is still kept after a reset")
	}
	// The real tokenizer gives the same count, kept or not.
	real := ForModel("gpt-4o-mini")
	first, again := real.Count(long), real.Count(long)
	if first != again || first != real.count(long) {
		t.Errorf("counts %d, %d, %d", first, again, real.count(long))
	}
}

// TestMaxTokenBytes reads every token of both vocabularies: the longest is
// as long as the counters assume, so that MinCount is a lower bound (no
// token is longer) and no looser than it must be (one is that long).
func TestMaxTokenBytes(t *testing.T) {
	for name, l := range codecs {
		// A codec of its own, in the tokenizer's default error mode:
		// Decode gives each token's bytes as they are, even those that
		// are pieces of a UTF-8 sequence.
		codec, err := tokenizer.Get(l.enc)
		if err != nil {
			t.Fatal(err)
		}
		longest, tokens := 0, 0
		for id := range uint(300_000) {
			s, err := codec.Decode([]uint{id})
			if err != nil {
				continue // no token has this id
			}
			tokens++
			longest = max(longest, len(s))
		}
		if tokens < 100_000 {
			t.Fatalf("%s: read %d tokens; the vocabulary has more", name, tokens)
		}
		if longest != l.maxTokenBytes {
			t.Errorf("%s: the longest token has %d bytes, the counter assumes %d", name, longest, l.maxTokenBytes)
		}
		if got := counterOf(t, name).maxTokenBytes; got != l.maxTokenBytes {
			t.Errorf("%s: counter has maxTokenBytes %d, want %d", name, got, l.maxTokenBytes)
		}
	}
}

// counterOf is the counter of the encoding called name.
func counterOf(t *testing.T, name string) *Counter {
	t.Helper()
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		if c := ForModel(model); c.Encoding() == name {
			return c
		}
	}
	t.Fatalf("no model of encoding %s", name)
	return nil
}

// MinCount is never above Count, whatever the text: prose, the runs of
// spaces and dashes the longest tokens are made of (where it is reached),
// other scripts, invalid UTF-8, and the Counter's fallback.
func TestMinCountIsALowerBound(t *testing.T) {
	texts := []string{
		"",
		"a",
		strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2000),
		strings.Repeat(" ", 128*50),
		strings.Repeat("-", 10_000),
		strings.Repeat("お誕生日おめでとう", 500),
		strings.Repeat("\xff\xfe\xc3", 3000), // invalid UTF-8: each sequence becomes U+FFFD
		strings.Repeat("\x00", 4096),
	}
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		c := ForModel(model)
		for _, text := range texts {
			if lo, n := c.MinCount(text), c.Count(text); lo > n {
				t.Errorf("%s: MinCount = %d above Count = %d for %d bytes starting %.20q", c.Encoding(), lo, n, len(text), text)
			}
		}
		spaces := strings.Repeat(" ", 128*50)
		if lo, n := c.MinCount(spaces), c.Count(spaces); lo != n || lo != 50 {
			t.Errorf("%s: 50 runs of 128 spaces: MinCount %d, Count %d, want 50 and 50 (the bound is reached)", c.Encoding(), lo, n)
		}
	}
	fallback := &Counter{codec: failingCodec{}, encoding: "broken", maxTokenBytes: 128}
	if text := strings.Repeat("x", 1000); fallback.MinCount(text) > fallback.Count(text) {
		t.Error("MinCount above the fallback count")
	}
	if got := (&Counter{codec: failingCodec{}}).MinCount("abc"); got != 0 {
		t.Errorf("MinCount without a known longest token = %d, want 0", got)
	}
}
