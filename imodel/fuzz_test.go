package imodel

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// fuzzProviders are the provider values the fuzzers pick from by a byte;
// the last ones are invalid on purpose.
var fuzzProviders = []Provider{OpenAI, Anthropic, OpenAICompatible, Generic, Azure, "", "cohere"}

// fuzzExecutor starts one executor for a whole fuzz target: New needs one
// but never runs anything on it here.
func fuzzExecutor(f *testing.F) *runtime.Executor {
	cfg := runtime.DefaultConfig()
	cfg.Concurrency = 2
	ex, err := runtime.Start(cfg)
	if err != nil {
		f.Fatalf("runtime.Start: %v", err)
	}
	f.Cleanup(func() {
		if err := ex.StopNow(context.Background()); err != nil {
			f.Errorf("StopNow: %v", err)
		}
	})
	return ex
}

// FuzzEndpointConfig builds an EndpointConfig from arbitrary values: New
// never panics, and either returns a model whose requests go to an
// absolute http or https URL, or a *messages.ConfigError matching ErrInvalidConfig.
func FuzzEndpointConfig(f *testing.F) {
	f.Add(uint8(0), "gpt", "https://api.openai.com/v1", "/chat/completions", "POST", "gpt-4o", "", "sk-test-fuzz-1", "", "X-Team", "a", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(1), "", "", "", "", "claude", "x-api-key", "sk-test-fuzz-2", "", "", "", int64(time.Second), 3, int64(time.Millisecond), int64(time.Second), int64(1<<20), "2023-06-01", false)
	f.Add(uint8(2), "vllm", "http://127.0.0.1:8000/v1", "/models/{model}/generate", "get", "m", "bearer", "", "", "", "", int64(0), 1, int64(0), int64(0), int64(0), "", true)
	f.Add(uint8(3), "", "ftp://example.com/v1", "/x", "POST", "", "none", "", "", "", "", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(3), "", "http:///v1", "x", "CONNECT", "", "basic", "k", "", "X Bad", "v", int64(-1), -1, int64(-1), int64(-1), int64(-1), "", false)
	f.Add(uint8(0), "", "https://user:pw@example.com", "", "", "", "", "sk\r\nX-Evil: 1", "", "", "", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(4), "", "javascript:alert(1)", "", "", "", "", "", "", "", "", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(5), "", "file:///etc/passwd", "", "", "", "", "", "IMODEL_FUZZ_UNSET", "", "", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(3), "g", "HTTPS://Example.COM:443/a/b/", "/{a}/{b", "DELETE", "", "", "", "", "", "", int64(0), 0, int64(0), int64(0), int64(0), "", false)
	f.Add(uint8(4), "gpt-4o prod", "https://res.openai.azure.com/", "", "GET", "", "", "azure-fuzz-key", "", "X-Title", "t", int64(0), 0, int64(0), int64(0), int64(0), "2024-10-21", false)
	ex := fuzzExecutor(f)
	f.Fuzz(func(t *testing.T, provider uint8, name, baseURL, path, method, model, auth, key, keyEnv, hdrName, hdrValue string,
		timeout int64, attempts int, initial, maxBackoff, maxBytes int64, version string, insecure bool) {
		cfg := EndpointConfig{
			Name:               name,
			Provider:           fuzzProviders[int(provider)%len(fuzzProviders)],
			BaseURL:            baseURL,
			Path:               path,
			Method:             method,
			Model:              model,
			Auth:               AuthScheme(auth),
			APIKey:             key,
			APIKeyEnv:          keyEnv,
			Timeout:            time.Duration(timeout),
			MaxAttempts:        attempts,
			Retry:              runtime.Backoff{Initial: time.Duration(initial), Max: time.Duration(maxBackoff), Retryable: Retryable},
			MaxResponseBytes:   maxBytes,
			AnthropicVersion:   version,
			InsecureSkipVerify: insecure,
		}
		if hdrName != "" || hdrValue != "" {
			cfg.Headers = map[string]string{hdrName: hdrValue}
		}
		if cfg.Provider == Azure {
			// The fields Azure needs, from strings the others use.
			cfg.Deployment, cfg.APIVersion, cfg.AnthropicVersion = name, version, ""
		}
		m, err := New(ex, cfg)
		if err != nil {
			var ce *messages.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, messages.ErrInvalidConfig) {
				t.Fatalf("New: %v (%T), want a *messages.ConfigError", err, err)
			}
			if m != nil {
				t.Fatal("New returned both a model and an error")
			}
			if len(key) >= 4 && strings.Contains(err.Error(), key) {
				t.Fatalf("config error shows the key: %v", err)
			}
			return
		}
		defer m.Close()
		u, perr := url.Parse(m.cfg.BaseURL)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			t.Fatalf("New accepted base URL %q", m.cfg.BaseURL)
		}
		if m.cfg.MaxResponseBytes <= 0 || m.cfg.MaxAttempts <= 0 {
			t.Fatalf("defaults not applied: cap %d, attempts %d", m.cfg.MaxResponseBytes, m.cfg.MaxAttempts)
		}
		// The request New's model builds goes where the base URL says.
		r, err := m.NewRequest(map[string]any{"model": model, "a": "1"})
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidRequest) {
				t.Fatalf("NewRequest: %v, want ErrInvalidRequest", err)
			}
			return
		}
		ru, err := url.Parse(r.Endpoint.URL)
		if err != nil || ru.Scheme != u.Scheme || ru.Host != u.Host {
			t.Fatalf("request URL %q does not follow base URL %q: %v", r.Endpoint.URL, m.cfg.BaseURL, err)
		}
		for k, vs := range r.Endpoint.Header {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") && messages.IsCredentialHeader(k) {
					t.Fatalf("credential header %s carries a line break", k)
				}
			}
		}
	})
}

// FuzzDecodeResponse feeds arbitrary bodies to the success decoders: none
// panics, and a success gives a usable value.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(uint8(0), []byte(`{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`))
	f.Add(uint8(0), []byte(`{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"}]}}]}`))
	f.Add(uint8(0), []byte(`{"choices":[]}`))
	f.Add(uint8(1), []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"},{"type":"tool_use"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`))
	f.Add(uint8(1), []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	f.Add(uint8(0), []byte(`{"object":"list","model":"e","data":[{"index":1,"embedding":[0.5]},{"index":0,"embedding":"AACAPw=="}],"usage":{"prompt_tokens":2,"total_tokens":2}}`))
	f.Add(uint8(0), []byte(`{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}`))
	f.Add(uint8(0), []byte(`{"data":[{"index":-1}]}`))
	f.Add(uint8(2), []byte(`[1,2,3]`))
	f.Add(uint8(2), []byte(`{"usage":{"input_tokens":1e400}}`))
	f.Add(uint8(3), []byte(" \n\t"))
	f.Add(uint8(0), []byte(`{"choices":[{"message":{"content":"x"}}],"usage":null,`))
	f.Add(uint8(0), []byte(`null`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		p := fuzzProviders[int(which)%4]

		if v, usage, err := decodeChat(p, body); err == nil {
			cr, ok := v.(*ChatResponse)
			if !ok || cr == nil {
				t.Fatalf("decodeChat(%s) succeeded with %T", p, v)
			}
			if usage != nil && *usage != cr.Usage {
				t.Fatalf("decodeChat usage %+v differs from the reply's %+v", *usage, cr.Usage)
			}
		} else if v != nil || usage != nil {
			t.Fatalf("decodeChat failed (%v) but returned %v, %v", err, v, usage)
		}

		if v, usage, err := decodeEmbeddings(p, body); err == nil {
			er, ok := v.(*EmbedResponse)
			if !ok || er == nil || usage == nil {
				t.Fatalf("decodeEmbeddings succeeded with %T, usage %v", v, usage)
			}
			var raw struct {
				Data []json.RawMessage `json:"data"`
			}
			if json.Unmarshal(body, &raw) == nil && len(raw.Data) != len(er.Vectors) {
				t.Fatalf("%d vectors for %d data entries", len(er.Vectors), len(raw.Data))
			}
		} else if v != nil || usage != nil {
			t.Fatalf("decodeEmbeddings failed (%v) but returned %v, %v", err, v, usage)
		}

		// The generic decoder leaves the body to the caller (its value is
		// always nil): a success means the body is JSON or blank.
		if _, usage, err := decodeGeneric(p, body); err == nil {
			if len(strings.TrimSpace(string(body))) > 0 && !json.Valid(body) {
				t.Fatalf("decodeGeneric accepted invalid JSON %q", body)
			}
		} else if usage != nil {
			t.Fatalf("decodeGeneric failed (%v) with usage", err)
		}
	})
}
