package simulator

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// The providers' prompt caches, as the simulator plays them, so that the
// cached-input counts of a usage can be tested offline.
//
// OpenAI caches every prompt of at least 1,024 tokens by itself: a later
// prompt that starts the same way has the shared start, in steps of 128
// tokens from the first 1,024, read from the cache (usage
// prompt_tokens_details.cached_tokens, within prompt_tokens). The simulator
// shares starts whole messages at a time.
//
// Anthropic caches what a request marks: the prompt up to its last block
// with a cache_control (system blocks first, then messages), if that is at
// least 1,024 tokens. The first request writes it (usage
// cache_creation_input_tokens), later ones read it
// (cache_read_input_tokens); input_tokens counts the rest only.
//
// Either cache is per API key and model, and forgets nothing until it holds
// promptCacheEntries prefixes, when it starts afresh. Requests inside a
// batch neither read nor fill it.
const (
	promptCacheMin     = 1024
	promptCacheStep    = 128
	promptCacheEntries = 1 << 16
)

// promptCache holds the hashes of the prompt prefixes seen.
type promptCache struct {
	mu   sync.Mutex
	seen map[[16]byte]struct{}
}

// prefixKey names a prefix of messages of key's model: the hash of the
// key, the model and the prefix's text.
func prefixKey(key, model string, prefix []tokens.Message) [16]byte {
	h := sha256.New()
	var n [8]byte
	write := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(key)
	write(model)
	for _, m := range prefix {
		write(m.Role)
		write(m.Name)
		write(m.Text)
	}
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// lookupAdd reports which of keys (prefixes, shortest first) were seen,
// as the index of the longest one (-1 for none), and records them all.
func (pc *promptCache) lookupAdd(keys [][16]byte) int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.seen == nil || len(pc.seen)+len(keys) > promptCacheEntries {
		pc.seen = make(map[[16]byte]struct{})
	}
	longest := -1
	for i, k := range keys {
		if _, ok := pc.seen[k]; ok {
			longest = i
		}
		pc.seen[k] = struct{}{}
	}
	return longest
}

// messageTokens is what one message adds to tokens.Counter.ChatPrompt.
func messageTokens(c *tokens.Counter, m tokens.Message) int {
	return c.ChatPrompt([]tokens.Message{m}) - c.ChatPrompt(nil)
}

// openAICached returns how many tokens of a prompt of promptTokens, made
// of msgs, OpenAI would read from its cache, and records the prompt.
func (c *call) openAICached(counter *tokens.Counter, model string, msgs []tokens.Message, promptTokens int) int {
	if c.item || promptTokens < promptCacheMin {
		return 0
	}
	keys := make([][16]byte, len(msgs))
	ends := make([]int, len(msgs)) // tokens from the prompt's start to the end of each message
	total := counter.ChatPrompt(nil)
	for i, m := range msgs {
		keys[i] = prefixKey(c.key, model, msgs[:i+1])
		total += messageTokens(counter, m)
		ends[i] = total
	}
	longest := c.s.prompts.lookupAdd(keys)
	if longest < 0 {
		return 0
	}
	shared := min(ends[longest], promptTokens)
	if shared < promptCacheMin {
		return 0
	}
	return promptCacheMin + (shared-promptCacheMin)/promptCacheStep*promptCacheStep
}

// anthropicCached returns the tokens of msgs (the system prompt first, if
// any, then the messages) that Anthropic would read from its cache and
// write to it, given which of them hold a cache_control block, and records
// the cached prefix.
func (c *call) anthropicCached(counter *tokens.Counter, model string, msgs []tokens.Message, marked []bool) (read, write int) {
	last := -1
	for i, m := range marked {
		if m {
			last = i
		}
	}
	if c.item || last < 0 {
		return 0, 0
	}
	prefix := counter.ChatPrompt(msgs[:last+1])
	if prefix < promptCacheMin {
		return 0, 0
	}
	if c.s.prompts.lookupAdd([][16]byte{prefixKey(c.key, model, msgs[:last+1])}) == 0 {
		return prefix, 0
	}
	return 0, prefix
}

// hasCacheControl reports whether content has a block marked for caching.
func hasCacheControl(content wire.AnthropicContent) bool {
	for _, b := range content.Blocks {
		if len(b.CacheControl) > 0 {
			return true
		}
	}
	return false
}

// reasoningModel reports whether model reasons before it replies, as
// OpenAI's o-series and gpt-5 models do (their chat variants do not).
func reasoningModel(model string) bool {
	m := strings.ToLower(model)
	for _, p := range []string{"o1", "o3", "o4"} {
		if m == p || strings.HasPrefix(m, p+"-") {
			return true
		}
	}
	return strings.HasPrefix(m, "gpt-5") && !strings.Contains(m, "chat")
}

// reasoning returns how many reasoning tokens a reasoning model spends
// before a reply, within maxTokens (0: no limit), leaving room for one
// token of reply.
func (s *Server) reasoning(model string, maxTokens int) int {
	if !reasoningModel(model) {
		return 0
	}
	r := s.cfg.ReasoningTokens
	if maxTokens > 0 {
		r = min(r, maxTokens-1)
	}
	return max(r, 0)
}
