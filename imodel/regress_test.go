package imodel

import (
	"errors"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestEmbeddingsWithoutAVectorAreMalformed(t *testing.T) {
	for _, body := range []string{
		`{"data":[{"index":0}]}`,
		`{"data":[{"index":0},{"index":0,"embedding":[2]}]}`,
		`{"data":[{"index":0,"embedding":null}]}`,
	} {
		if v, _, err := decodeEmbeddings(OpenAI, []byte(body)); err == nil {
			t.Errorf("decodeEmbeddings(%s) = %+v, want an error", body, v)
		}
	}
}

func TestConfigErrorsDoNotQuoteTheValue(t *testing.T) {
	const key = "sk-test-pasted-into-url-0001"
	for _, cfg := range []EndpointConfig{
		{Provider: OpenAICompatible, BaseURL: "api.example.test/v1?key=" + key},
		{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1/v1", Path: "v1?key=" + key},
	} {
		_, err := cfg.resolve(func(string) string { return "" })
		if !errors.Is(err, messages.ErrInvalidConfig) || strings.Contains(err.Error(), key) {
			t.Errorf("resolve = %v", err)
		}
	}
}
