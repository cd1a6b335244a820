// Package tokens counts tokens offline the way OpenAI's models see them, so
// that a request's cost can be estimated before it is sent and a rate limiter
// can reserve the right share of a tokens-per-minute budget.
//
// The vocabularies are embedded in the binary (github.com/tiktoken-go/tokenizer);
// nothing is downloaded at run time. Each encoding is loaded once per process,
// on first use, because loading one costs tens of milliseconds.
//
// The chat estimate follows the formula of OpenAI's own rate-limit aware
// example client (api_request_parallel_processor.py in the openai-cookbook):
// it is an estimate for admission, not the exact count the service bills, and
// callers reconcile it with the usage reported in the response.
package tokens

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tiktoken-go/tokenizer"
)

// Encoding names, as reported by [Counter.Encoding].
const (
	// O200kBase is the encoding of gpt-4o, gpt-4.1, gpt-5 and the o-series
	// reasoning models. It is also the default for model names this package
	// does not know, because new OpenAI models use it.
	O200kBase = "o200k_base"

	// Cl100kBase is the encoding of gpt-4, gpt-3.5-turbo and the
	// text-embedding-3 and text-embedding-ada-002 embedding models.
	Cl100kBase = "cl100k_base"
)

// ImageTokens is the flat number of tokens charged per image in a chat
// message. It is what OpenAI bills for a 1024×1024 image at high detail:
// 85 base tokens plus 4 tiles of 512×512 pixels at 170 tokens each. The real
// cost depends on the image's size and detail level, which a request only
// carries inside the image itself; a fixed, typical high-detail cost keeps the
// estimate cheap and errs towards reserving too much rather than too little.
const ImageTokens = 765

// DefaultMaxTokens is the completion length to reserve for a chat request
// that does not set max_tokens (or max_completion_tokens). The estimate is
// reconciled with the usage the response reports, so the value only bounds
// how far a burst of such requests can overshoot or under-use the token
// budget before reconciliation: 256 covers a typical chat reply, whereas the
// 15 used by OpenAI's example client is shorter than most replies and lets a
// burst overshoot the token limit, and the model's full context length would
// reserve so much that few requests could be admitted at once.
const DefaultMaxTokens = 256

// A Counter counts tokens with one encoding. It is safe for concurrent use
// by multiple goroutines. Obtain one from [ForModel]; the zero Counter has
// no vocabulary. Counters for the same encoding share one loaded
// vocabulary.
type Counter struct {
	codec    tokenizer.Codec
	encoding string
	// maxTokenBytes is the length of the encoding's longest token, which
	// bounds the count by the length of the text (see MinCount); 0 when
	// unknown.
	maxTokenBytes int
	kept          keptCounts
}

// keptCounts remembers the counts of the texts a batch repeats: long ones
// (a system prompt, a shared document), which cost the most to count
// again, and short ones (roles, names), which every message has. It holds
// at most keptBytes of text; past that it starts afresh, so that a stream
// of texts seen once costs one reset now and then.
type keptCounts struct {
	counts sync.Map // string → int
	bytes  atomic.Int64
}

const (
	// longTextBytes is the least length of a text whose count is kept;
	// shortTextBytes the most length of one kept too: roles and names,
	// which every message repeats, and cost a tokenizer pass each.
	longTextBytes  = 512
	shortTextBytes = 16
	// keptBytes bounds the text kept, per encoding.
	keptBytes = 64 << 20
)

func (k *keptCounts) get(text string) (int, bool) {
	n, ok := k.counts.Load(text)
	if !ok {
		return 0, false
	}
	return n.(int), true
}

func (k *keptCounts) put(text string, n int) {
	if k.bytes.Add(int64(len(text))) > keptBytes {
		k.counts.Clear()
		k.bytes.Store(int64(len(text)))
	}
	k.counts.Store(text, n)
}

// codecs holds one lazily loaded codec per encoding, with the length in
// bytes of the encoding's longest token. Both longest tokens are runs of
// 128 spaces; TestMaxTokenBytes reads the vocabularies to check the
// lengths against the tokenizer module in go.mod.
var codecs = map[string]*lazyCodec{
	O200kBase:  {enc: tokenizer.O200kBase, maxTokenBytes: 128},
	Cl100kBase: {enc: tokenizer.Cl100kBase, maxTokenBytes: 128},
}

type lazyCodec struct {
	enc           tokenizer.Encoding
	maxTokenBytes int
	once          sync.Once
	counter       *Counter
}

func (l *lazyCodec) get() *Counter {
	l.once.Do(func() {
		c, err := tokenizer.Get(l.enc)
		if err != nil {
			// Both encodings are embedded in the tokenizer module, so
			// this is a programming error, not a run-time condition.
			panic("tokens: loading " + string(l.enc) + ": " + err.Error())
		}
		// Go strings may hold invalid UTF-8, which Python's tiktoken
		// never sees; replacing it with U+FFFD counts such text as
		// tiktoken counts the decoded string, instead of dropping bytes.
		// The mode is set before the codec is shared and never again.
		c.SetErrorMode(tokenizer.ErrorModeReplace)
		l.counter = &Counter{codec: c, encoding: string(l.enc), maxTokenBytes: l.maxTokenBytes}
	})
	return l.counter
}

// ForModel returns the Counter for the encoding that the named model uses.
// Model names are matched by family prefix, so dated snapshots such as
// "gpt-4o-2024-08-06" and fine-tuned names such as "ft:gpt-4o-mini:org::id"
// resolve like their base model. Unknown names, including other providers'
// models such as Claude, whose tokenizers are not public, get o200k_base as
// an approximation.
func ForModel(model string) *Counter {
	return codecs[EncodingForModel(model)].get()
}

// EncodingForModel returns the name of the encoding that [ForModel] uses for
// model, without loading it.
func EncodingForModel(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	// Fine-tuned models are named "ft:<base>:<org>:<suffix>:<id>".
	if rest, ok := strings.CutPrefix(m, "ft:"); ok {
		m, _, _ = strings.Cut(rest, ":")
	}
	switch {
	case isFamily(m, "gpt-4"), // gpt-4, gpt-4-0613, gpt-4-turbo; not gpt-4o or gpt-4.1
		strings.HasPrefix(m, "gpt-3.5"),
		strings.HasPrefix(m, "gpt-35"), // Azure's spelling
		strings.HasPrefix(m, "text-embedding-3-"),
		isFamily(m, "text-embedding-ada-002"):
		return Cl100kBase
	default:
		return O200kBase
	}
}

// isFamily reports whether m is base itself or base followed by a
// dash-separated suffix, so that "gpt-4-turbo" is in the family "gpt-4"
// while "gpt-4o" is not.
func isFamily(m, base string) bool {
	rest, ok := strings.CutPrefix(m, base)
	return ok && (rest == "" || rest[0] == '-')
}

// Encoding returns the name of the counter's encoding, such as "o200k_base".
func (c *Counter) Encoding() string { return c.encoding }

// Count returns the number of tokens in text. Special-token text such as
// "<|endoftext|>" is counted as ordinary text, as OpenAI does for user input.
//
// The counts of long texts (512 bytes and more) are kept, up to 64 MiB of
// text, so that a text a batch repeats, such as its system prompt, is
// tokenized once; so are those of texts of 16 bytes or less, such as the
// roles of chat messages.
func (c *Counter) Count(text string) int {
	if text == "" {
		return 0
	}
	if len(text) >= longTextBytes || len(text) <= shortTextBytes {
		if n, ok := c.kept.get(text); ok {
			return n
		}
		n := c.count(text)
		c.kept.put(text, n)
		return n
	}
	return c.count(text)
}

// MinCount returns a lower bound of Count(text) from the length of text
// alone, without tokenizing it: ⌈len(text) / 128⌉, 128 bytes being the
// length of the longest token of either encoding. It costs nothing
// whatever the length, so that a text whose length alone proves it is
// over a token limit can be refused without the seconds and the memory
// that counting megabytes takes.
//
// It is a bound because every token of a count is a piece of the text:
// the tokens of Count(text) put end to end are text itself, or, where
// text holds invalid UTF-8, text with each invalid sequence of one to
// three bytes replaced by the three bytes of U+FFFD, never shorter. (When
// the tokenizer fails, Count's own fallback of 4 bytes a token is above
// it too.)
func (c *Counter) MinCount(text string) int {
	if c.maxTokenBytes == 0 {
		return 0
	}
	return (len(text) + c.maxTokenBytes - 1) / c.maxTokenBytes
}

// count tokenizes text.
func (c *Counter) count(text string) int {
	n, err := c.codec.Count(text)
	if err != nil {
		// The codec only fails when its regular expression does (it has no
		// match timeout and checks no UTF-8 in its default mode). Fall back
		// to OpenAI's rule of thumb of about 4 bytes per token, rather than
		// making every caller handle an error it cannot act on.
		return (len(text) + 3) / 4
	}
	return n
}

// A Message is the part of a chat message that costs prompt tokens.
type Message struct {
	Role   string // "system", "user", "assistant", "tool", ...
	Name   string // optional participant name; empty when absent
	Text   string // the text content, all text parts concatenated
	Images int    // number of image parts, each costing ImageTokens
}

// ChatPrompt returns the estimated number of prompt tokens of a chat
// request with the given messages: for each message 4 tokens of framing plus
// the tokens of its role, text and name, one fewer when a name is present
// (the name replaces the role in the model's input); plus 2 for the primer of
// the reply; plus ImageTokens per image.
func (c *Counter) ChatPrompt(msgs []Message) int {
	total := 2 // every reply is primed with <im_start>assistant
	for _, m := range msgs {
		total += 4 // <im_start>{role/name}\n{content}<im_end>\n
		total += c.Count(m.Role) + c.Count(m.Text)
		if m.Name != "" {
			total += c.Count(m.Name) - 1
		}
		total += m.Images * ImageTokens
	}
	return total
}

// ChatRequest returns the estimated token cost of a chat request as a rate
// limiter counts it: the prompt (see [Counter.ChatPrompt]) plus n replies
// of maxTokens each. n ≤ 0 means 1, the API's default; maxTokens ≤ 0 means
// the request set no limit and DefaultMaxTokens is reserved.
func (c *Counter) ChatRequest(msgs []Message, n, maxTokens int) int {
	return c.ChatPrompt(msgs) + ReplyTokens(n, maxTokens)
}

// ReplyTokens is the reply part of [Counter.ChatRequest]: n replies of
// maxTokens each, n ≤ 0 meaning 1 and maxTokens ≤ 0 meaning
// DefaultMaxTokens.
func ReplyTokens(n, maxTokens int) int {
	if n <= 0 {
		n = 1
	}
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	return n * maxTokens
}

// Embedding returns the number of tokens of an embeddings request with the
// given inputs: the sum of their counts, with no per-input overhead.
func (c *Counter) Embedding(inputs []string) int {
	total := 0
	for _, s := range inputs {
		total += c.Count(s)
	}
	return total
}
