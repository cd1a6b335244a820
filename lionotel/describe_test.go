package lionotel

import (
	"reflect"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestProviderAndOperationOfAnEndpoint(t *testing.T) {
	cases := []struct {
		host, path      string
		anthropicHeader bool
		op, provider    string
	}{
		{"api.openai.com", "/v1/chat/completions", false, "chat", "openai"},
		{"api.anthropic.com", "/v1/messages", true, "chat", "anthropic"},
		{"127.0.0.1", "/v1/messages", false, "chat", "anthropic"},
		{"gateway.local", "/v1/chat/completions", true, "chat", "anthropic"},
		{"my-res.openai.azure.com", "/openai/deployments/d/chat/completions", false, "chat", "azure.ai.openai"},
		{"API.GROQ.COM", "/openai/v1/chat/completions/", false, "chat", "groq"},
		{"api.mistral.ai", "/v1/embeddings", false, "embeddings", "mistral_ai"},
		{"localhost", "/v1/completions", false, "text_completion", "openai"},
		{"localhost", "/v1/models", false, "", ""},
	}
	for _, c := range cases {
		op := operationOf(c.path)
		provider := ""
		if op != "" {
			provider = providerOf(c.host, c.path, c.anthropicHeader)
		}
		if op != c.op || provider != c.provider {
			t.Errorf("%s%s: operation %q provider %q, want %q %q", c.host, c.path, op, provider, c.op, c.provider)
		}
	}
}

func TestParseReply(t *testing.T) {
	cases := []struct {
		body string
		want *reply
	}{
		{`{"id":"chatcmpl-1","model":"gpt-4o-mini-2024","choices":[{"finish_reason":"stop"},{"finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`,
			&reply{id: "chatcmpl-1", model: "gpt-4o-mini-2024", finishReasons: []string{"stop", "length"}, usage: &messages.Usage{InputTokens: 9, OutputTokens: 3}}},
		{`{"id":"msg_1","model":"claude-x","stop_reason":"end_turn","usage":{"input_tokens":7,"output_tokens":2}}`,
			&reply{id: "msg_1", model: "claude-x", finishReasons: []string{"end_turn"}, usage: &messages.Usage{InputTokens: 7, OutputTokens: 2}}},
		{`{"object":"list","data":[{"embedding":[0.1]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}`,
			&reply{model: "text-embedding-3-small", usage: &messages.Usage{InputTokens: 4}}},
		{`{"error":{"message":"slow down"}}`, nil},
		{`[1,2]`, nil},
		{`{"id":`, nil},
	}
	for _, c := range cases {
		if got := parseReply([]byte(c.body)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseReply(%s) = %+v, want %+v", c.body, got, c.want)
		}
	}
}
