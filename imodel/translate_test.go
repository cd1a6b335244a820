package imodel

import (
	"errors"
	"reflect"
	"testing"
)

// The portable part of a chat reads the same from either dialect; what
// one dialect cannot say fails with ErrNotPortable.
func TestPortableChat(t *testing.T) {
	temp, topP := 0.3, 0.9
	want := ChatRequest{
		System:      "be brief\n\nand kind",
		Messages:    []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}, {Role: "user", Content: "again"}},
		MaxTokens:   50,
		Temperature: &temp,
		Stop:        []string{"END"},
		Extra:       map[string]any{"top_p": topP},
	}
	openai := map[string]any{
		"model": "gpt-4o", "max_completion_tokens": 50, "temperature": temp, "top_p": topP, "stop": "END", "seed": 7, "user": "u1",
		"messages": []any{
			map[string]any{"role": "system", "content": "be brief"},
			map[string]any{"role": "developer", "content": []any{map[string]any{"type": "text", "text": "and kind"}}},
			map[string]any{"role": "user", "content": "hi"},
			map[string]any{"role": "assistant", "content": "hello"},
			map[string]any{"role": "user", "content": "again"},
		},
	}
	anthropic := map[string]any{
		"model": "claude", "max_tokens": 50, "temperature": temp, "top_p": topP, "top_k": 5, "stop_sequences": []any{"END"},
		"system": []any{map[string]any{"type": "text", "text": "be brief\n\nand kind"}},
		"messages": []any{
			map[string]any{"role": "user", "content": "hi"},
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "text", "text": "hello"}}},
			map[string]any{"role": "user", "content": "again"},
		},
	}
	for name, c := range map[string]struct {
		payload map[string]any
		from    dialect
	}{"openai": {openai, openAIDialect}, "anthropic": {anthropic, anthropicDialect}} {
		got, err := portableChat(c.payload, c.from)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v\nwant %+v", name, got, err, want)
		}
	}
	msg := func(m map[string]any) []any { return []any{m} }
	for name, c := range map[string]struct {
		payload map[string]any
		from    dialect
	}{
		"openai tools":         {map[string]any{"tools": []any{}, "messages": msg(map[string]any{"role": "user", "content": "x"})}, openAIDialect},
		"openai n":             {map[string]any{"n": 2, "messages": msg(map[string]any{"role": "user", "content": "x"})}, openAIDialect},
		"openai image":         {map[string]any{"messages": msg(map[string]any{"role": "user", "content": []any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": "u"}}}})}, openAIDialect},
		"openai tool message":  {map[string]any{"messages": msg(map[string]any{"role": "tool", "content": "x", "tool_call_id": "c"})}, openAIDialect},
		"openai odd role":      {map[string]any{"messages": msg(map[string]any{"role": "critic", "content": "x"})}, openAIDialect},
		"openai not a chat":    {map[string]any{"messages": "x"}, openAIDialect},
		"anthropic thinking":   {map[string]any{"thinking": map[string]any{}, "messages": msg(map[string]any{"role": "user", "content": "x"})}, anthropicDialect},
		"anthropic image":      {map[string]any{"messages": msg(map[string]any{"role": "user", "content": []any{map[string]any{"type": "image"}}})}, anthropicDialect},
		"anthropic system":     {map[string]any{"system": []any{map[string]any{"type": "image"}}, "messages": []any{}}, anthropicDialect},
		"anthropic not a chat": {map[string]any{"messages": 3}, anthropicDialect},
		"no dialect":           {map[string]any{"messages": []any{}}, anyJSON},
		"not JSON":             {map[string]any{"messages": make(chan int)}, openAIDialect},
	} {
		if _, err := portableChat(c.payload, c.from); err == nil || (name != "not JSON" && !errors.Is(err, ErrNotPortable)) {
			t.Errorf("%s: %v, want ErrNotPortable", name, err)
		}
	}
	for p, d := range map[Provider]dialect{OpenAI: openAIDialect, Azure: openAIDialect, OpenAICompatible: openAIDialect, Anthropic: anthropicDialect, Generic: anyJSON} {
		if p.dialect() != d {
			t.Errorf("%s: dialect %d, want %d", p, p.dialect(), d)
		}
	}
}
