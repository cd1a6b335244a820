package tokens

import (
	"strings"
	"testing"
)

// benchText is prose of about n bytes, new each run so that the long-text
// cache does not answer.
func benchText(n, salt int) string {
	var b strings.Builder
	words := []string{"The", "limiter", "grants", "permits", "in", "order,", "and", "every", "request", "ends", "once."}
	for i := 0; b.Len() < n; i++ {
		b.WriteString(words[(i+salt)%len(words)])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

// BenchmarkCountPerKB is the tokenizer's cost per kilobyte of prose, each
// text seen once (the cost the long-text cache saves on a repeat).
func BenchmarkCountPerKB(b *testing.B) {
	c := ForModel("gpt-4o-mini")
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = benchText(1024, i)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.count(texts[i%len(texts)])
	}
}

// BenchmarkCountRepeated is a 4 KB system prompt counted again, as a
// batch repeats it: the long-text cache answers.
func BenchmarkCountRepeated(b *testing.B) {
	c := ForModel("gpt-4o-mini")
	text := benchText(4096, 0)
	c.Count(text)
	b.ReportAllocs()
	for b.Loop() {
		c.Count(text)
	}
}

// BenchmarkChatPromptShort is a short chat's prompt: two messages of a
// few words, the roles included.
func BenchmarkChatPromptShort(b *testing.B) {
	c := ForModel("gpt-4o-mini")
	msgs := []Message{{Role: "system", Text: "You are terse."}, {Role: "user", Text: "Say hello to the limiter."}}
	b.ReportAllocs()
	for b.Loop() {
		c.ChatPrompt(msgs)
	}
}
