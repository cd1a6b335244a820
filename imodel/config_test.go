package imodel

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

func TestConfigErrorsNameTheirField(t *testing.T) {
	ok := EndpointConfig{Provider: OpenAI, APIKey: testKey}
	with := func(f func(*EndpointConfig)) EndpointConfig {
		c := ok
		f(&c)
		return c
	}
	cases := []struct {
		name  string
		cfg   EndpointConfig
		field string
	}{
		{"no provider", EndpointConfig{}, "Provider"},
		{"unknown provider", EndpointConfig{Provider: "cohere"}, "Provider"},
		{"compatible without base URL", EndpointConfig{Provider: OpenAICompatible}, "BaseURL"},
		{"generic without base URL", EndpointConfig{Provider: Generic}, "BaseURL"},
		{"relative base URL", with(func(c *EndpointConfig) { c.BaseURL = "api.openai.com/v1" }), "BaseURL"},
		{"ftp base URL", with(func(c *EndpointConfig) { c.BaseURL = "ftp://example.com/v1" }), "BaseURL"},
		{"base URL without host", with(func(c *EndpointConfig) { c.BaseURL = "http:///v1" }), "BaseURL"},
		{"unparsable base URL", with(func(c *EndpointConfig) { c.BaseURL = "http://[::1" }), "BaseURL"},
		{"credentials in base URL", with(func(c *EndpointConfig) { c.BaseURL = "https://user:pw@example.com/v1" }), "BaseURL"},
		{"relative path", with(func(c *EndpointConfig) { c.Path = "chat/completions" }), "Path"},
		{"bad method", with(func(c *EndpointConfig) { c.Method = "CONNECT" }), "Method"},
		{"bad auth", with(func(c *EndpointConfig) { c.Auth = "basic" }), "Auth"},
		{"no OpenAI key", EndpointConfig{Provider: OpenAI, APIKeyEnv: "IMODEL_TEST_UNSET_KEY"}, "APIKey"},
		{"no Anthropic key", EndpointConfig{Provider: Anthropic, APIKeyEnv: "IMODEL_TEST_UNSET_KEY"}, "APIKey"},
		{"key with a line break", with(func(c *EndpointConfig) { c.APIKey = "sk-test-a\nX-Evil: 1" }), "APIKey"},
		{"empty header name", with(func(c *EndpointConfig) { c.Headers = map[string]string{"": "x"} }), "Headers"},
		{"header name with a space", with(func(c *EndpointConfig) { c.Headers = map[string]string{"X Bad": "x"} }), "Headers"},
		{"header name with a colon", with(func(c *EndpointConfig) { c.Headers = map[string]string{"X-A:b": "x"} }), "Headers"},
		{"header value pasted into the name", with(func(c *EndpointConfig) { c.Headers = map[string]string{"Authorization: Bearer sk-test-a1b2": ""} }), "Headers"},
		{"the key's header given too", with(func(c *EndpointConfig) { c.Headers = map[string]string{"authorization": "Bearer gw-token"} }), "Headers"},
		{"header value with a line break", with(func(c *EndpointConfig) { c.Headers = map[string]string{"X-A": "sk-test-a\r\nX-Evil: 1"} }), "Headers"},
		{"negative timeout", with(func(c *EndpointConfig) { c.Timeout = -time.Second }), "Timeout"},
		{"negative attempts", with(func(c *EndpointConfig) { c.MaxAttempts = -1 }), "MaxAttempts"},
		{"negative initial backoff", with(func(c *EndpointConfig) { c.Retry = runtime.Backoff{Initial: -time.Second} }), "Retry"},
		{"negative max backoff", with(func(c *EndpointConfig) { c.Retry = &runtime.Backoff{Max: -time.Second} }), "Retry"},
		{"negative body cap", with(func(c *EndpointConfig) { c.MaxResponseBytes = -1 }), "MaxResponseBytes"},
	}
	ex := startExecutor(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.resolve(func(string) string { return "" })
			checkConfigError(t, err, tc.field)
			m, err := New(ex, tc.cfg)
			if m != nil {
				t.Error("New returned a model for an invalid config")
			}
			checkConfigError(t, err, tc.field)
			if strings.Contains(err.Error(), "sk-test-a") {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

func checkConfigError(t *testing.T, err error, field string) {
	t.Helper()
	var ce *messages.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *messages.ConfigError", err, err)
	}
	if ce.Field != field {
		t.Errorf("field %q, want %q (%v)", ce.Field, field, err)
	}
	if !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("%v does not match messages.ErrInvalidConfig", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("message %q does not name %s", err, field)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "  sk-test-from-env-openai \n")
	t.Setenv("ANTHROPIC_API_KEY", "sk-test-from-env-anthropic")
	t.Setenv("IMODEL_TEST_KEY", "sk-test-from-custom-env")
	ex := startExecutor(t, nil)
	cases := []struct {
		cfg                   EndpointConfig
		base, path, env, key  string
		auth                  AuthScheme
		wantHeader, wantValue string
	}{
		{EndpointConfig{Provider: OpenAI}, "https://api.openai.com/v1", "/chat/completions", "OPENAI_API_KEY",
			"sk-test-from-env-openai", AuthBearer, "Authorization", "Bearer sk-test-from-env-openai"},
		{EndpointConfig{Provider: Anthropic}, "https://api.anthropic.com/v1", "/messages", "ANTHROPIC_API_KEY",
			"sk-test-from-env-anthropic", AuthAPIKeyHeader, "X-Api-Key", "sk-test-from-env-anthropic"},
		{EndpointConfig{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1:1/v1"}, "http://127.0.0.1:1/v1", "/chat/completions", "",
			"", AuthBearer, "Authorization", ""},
		{EndpointConfig{Provider: Generic, BaseURL: "http://127.0.0.1:1", APIKey: "sk-test-unsent"}, "http://127.0.0.1:1", "", "",
			"sk-test-unsent", AuthNone, "Authorization", ""},
		// An explicit key wins over the environment; a named variable is read.
		{EndpointConfig{Provider: OpenAI, APIKey: "sk-test-explicit"}, "https://api.openai.com/v1", "/chat/completions", "OPENAI_API_KEY",
			"sk-test-explicit", AuthBearer, "Authorization", "Bearer sk-test-explicit"},
		{EndpointConfig{Provider: OpenAICompatible, BaseURL: "https://example.com/v1", APIKeyEnv: "IMODEL_TEST_KEY"}, "https://example.com/v1", "/chat/completions", "IMODEL_TEST_KEY",
			"sk-test-from-custom-env", AuthBearer, "Authorization", "Bearer sk-test-from-custom-env"},
	}
	for _, tc := range cases {
		t.Run(string(tc.cfg.Provider), func(t *testing.T) {
			m, err := New(ex, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r := m.cfg
			if r.BaseURL != tc.base || r.Path != tc.path || r.APIKeyEnv != tc.env || r.apiKey != tc.key || r.Auth != tc.auth {
				t.Errorf("resolved base %q path %q env %q key %q auth %q; want %q %q %q %q %q",
					r.BaseURL, r.Path, r.APIKeyEnv, r.apiKey, r.Auth, tc.base, tc.path, tc.env, tc.key, tc.auth)
			}
			if m.Name() != string(tc.cfg.Provider) || m.Provider() != tc.cfg.Provider {
				t.Errorf("name %q provider %q", m.Name(), m.Provider())
			}
			if r.Method != http.MethodPost || r.MaxAttempts != 3 || r.MaxResponseBytes != DefaultMaxResponseBytes {
				t.Errorf("method %q attempts %d cap %d", r.Method, r.MaxAttempts, r.MaxResponseBytes)
			}
			h := m.header(nil, true)
			if got := h.Get(tc.wantHeader); got != tc.wantValue {
				t.Errorf("%s: %q, want %q", tc.wantHeader, got, tc.wantValue)
			}
			if tc.cfg.Provider == Anthropic && h.Get("Anthropic-Version") != DefaultAnthropicVersion {
				t.Errorf("anthropic-version %q", h.Get("Anthropic-Version"))
			}
			if tc.cfg.Provider != Anthropic && h.Get("Anthropic-Version") != "" {
				t.Error("anthropic-version sent to another provider")
			}
			if len(m.cfg.secrets()) != min(1, len(tc.key)) {
				t.Errorf("secrets %d", len(m.cfg.secrets()))
			}
		})
	}

	// Explicit settings are kept.
	m := newModel(t, ex, EndpointConfig{Provider: Anthropic, Name: "claude", APIKey: "sk-test-x", Method: "put",
		AnthropicVersion: "2024-01-01", MaxAttempts: 1, MaxResponseBytes: 10, Auth: AuthBearer,
		Headers: map[string]string{"X-Team": "a"}})
	if m.Name() != "claude" || m.cfg.Method != http.MethodPut || m.cfg.AnthropicVersion != "2024-01-01" ||
		m.cfg.MaxAttempts != 1 || m.cfg.MaxResponseBytes != 10 {
		t.Errorf("resolved %+v", m.cfg.EndpointConfig)
	}
	h := m.header(map[string]string{"X-Call": "b"}, false)
	if h.Get("Authorization") != "Bearer sk-test-x" || h.Get("X-Api-Key") != "" || h.Get("X-Team") != "a" ||
		h.Get("X-Call") != "b" || h.Get("Content-Type") != "" || h.Get("Accept") != "application/json" {
		t.Errorf("headers %v", h)
	}
}

// TestAttemptsAndRetryChain checks the one chain that decides a request's
// attempts (WithMaxAttempts, then EndpointConfig.MaxAttempts, then 3) and
// that the endpoint's retry policy, or the default one, reaches the request.
func TestAttemptsAndRetryChain(t *testing.T) {
	ex := startExecutor(t, nil)
	payload := map[string]any{"messages": []any{}}
	own := fixedDelay(time.Second)
	for _, tc := range []struct {
		name     string
		cfg      EndpointConfig
		opts     []CallOption
		attempts int
	}{
		{"defaults", EndpointConfig{}, nil, 3},
		{"endpoint", EndpointConfig{MaxAttempts: 5, Retry: own}, nil, 5},
		{"call over endpoint", EndpointConfig{MaxAttempts: 5}, []CallOption{WithMaxAttempts(2)}, 2},
		{"call over default", EndpointConfig{}, []CallOption{WithMaxAttempts(1)}, 1},
	} {
		cfg := tc.cfg
		cfg.Provider, cfg.APIKey = OpenAI, testKey
		req, err := newModel(t, ex, cfg).NewRequest(payload, tc.opts...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if req.MaxAttempts != tc.attempts {
			t.Errorf("%s: %d attempts, want %d", tc.name, req.MaxAttempts, tc.attempts)
		}
		if cfg.Retry != nil {
			if req.Retry != cfg.Retry {
				t.Errorf("%s: retry policy %#v, want the endpoint's", tc.name, req.Retry)
			}
			continue
		}
		b, ok := req.Retry.(runtime.Backoff)
		if !ok || b.Initial != 500*time.Millisecond || b.Max != 30*time.Second || b.Retryable == nil {
			t.Fatalf("%s: default retry policy %#v", tc.name, req.Retry)
		}
		if !b.Retryable(messages.ErrTimeout) || b.Retryable(messages.ErrCancelled) || !b.Retryable(statusError(OpenAI, 503, http.Header{}, nil, time.Now())) {
			t.Errorf("%s: the default policy does not classify as Retryable does", tc.name)
		}
	}
}

// fixedDelay is a retry policy of its own: always retry, after itself.
type fixedDelay time.Duration

func (d fixedDelay) Backoff(int, error) (time.Duration, bool) { return time.Duration(d), true }

// TestProviderFacts checks that what Provider's methods say is what a
// config gets, and how LimitScope names a key's scope.
func TestProviderFacts(t *testing.T) {
	for _, tc := range []struct {
		p                    Provider
		base, keyEnv         string
		chat, embed          bool
		baseURL, resolvedURL string
	}{
		{OpenAI, "https://api.openai.com/v1", "OPENAI_API_KEY", true, true, "", "https://api.openai.com/v1"},
		{Anthropic, "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", true, false, "", "https://api.anthropic.com/v1"},
		{Azure, "", "AZURE_OPENAI_API_KEY", true, true, "https://r.openai.azure.com", "https://r.openai.azure.com"},
		{OpenAICompatible, "", "", true, true, "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"},
		{Generic, "", "", false, false, "http://127.0.0.1:1", "http://127.0.0.1:1"},
		{"acme", "", "", false, false, "", ""},
	} {
		if got := tc.p.DefaultBaseURL(); got != tc.base {
			t.Errorf("%s: DefaultBaseURL %q, want %q", tc.p, got, tc.base)
		}
		if got := tc.p.DefaultKeyEnv(); got != tc.keyEnv {
			t.Errorf("%s: DefaultKeyEnv %q, want %q", tc.p, got, tc.keyEnv)
		}
		if tc.p == "acme" {
			continue
		}
		cfg := EndpointConfig{Provider: tc.p, BaseURL: tc.baseURL, APIKey: testKey}
		if tc.p == Azure {
			cfg.Deployment, cfg.APIVersion = "d", "2024-10-21"
		}
		r, err := cfg.resolve(func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: %v", tc.p, err)
		}
		if r.BaseURL != tc.resolvedURL || r.APIKeyEnv != tc.keyEnv {
			t.Errorf("%s: resolved base %q key variable %q", tc.p, r.BaseURL, r.APIKeyEnv)
		}
		m := &Model{cfg: r}
		if _, err := m.chatPath(); (err == nil) != tc.chat {
			t.Errorf("%s: chat path error %v, want chat %v", tc.p, err, tc.chat)
		}
		if has := providers[tc.p].embeddingsPath != ""; has != tc.embed {
			t.Errorf("%s: embeddings %v, want %v", tc.p, has, tc.embed)
		}
	}
	for _, tc := range []struct {
		cfg  EndpointConfig
		want string
	}{
		{EndpointConfig{Provider: OpenAI}, "https://api.openai.com/v1"},
		{EndpointConfig{Provider: OpenAI, BaseURL: "HTTPS://API.OpenAI.com/v1/?key=secret"}, "https://api.openai.com/v1"},
		{EndpointConfig{Provider: Azure, BaseURL: "https://r.openai.azure.com/", Deployment: "my dep"}, "https://r.openai.azure.com/openai/deployments/my%20dep"},
		{EndpointConfig{Provider: Generic}, "generic"},
	} {
		if got := tc.cfg.LimitScope(); got != tc.want {
			t.Errorf("LimitScope(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}
