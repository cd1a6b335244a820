package imodel

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

const (
	testAzureKey     = "azure-test-imodel-6b2f9e1d"
	azureDeployment  = "gpt-4o-mini-prod"
	azureAPIVersion  = "2024-10-21"
	azureDeployPath  = "/openai/deployments/" + azureDeployment
	azureQueryString = "api-version=" + azureAPIVersion
)

// azureConfig is an Azure OpenAI endpoint on the simulator: the resource's
// root is the simulator's root.
func azureConfig(e *simEnv) EndpointConfig {
	return EndpointConfig{Provider: Azure, BaseURL: e.URL, APIKey: testAzureKey, Deployment: azureDeployment,
		APIVersion: azureAPIVersion, MaxAttempts: fastAttempts, Retry: fastRetry}
}

func TestAzureConfig(t *testing.T) {
	t.Setenv("AZURE_OPENAI_API_KEY", "azure-test-from-env")
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: Azure, BaseURL: "https://res.openai.azure.com/", Deployment: "my dep", APIVersion: "2025-04-01-preview"})
	r := m.cfg
	if r.Path != "/chat/completions" || r.Auth != AuthAzureAPIKey || r.APIKeyEnv != "AZURE_OPENAI_API_KEY" || r.apiKey != "azure-test-from-env" {
		t.Errorf("resolved path %q auth %q env %q key %q", r.Path, r.Auth, r.APIKeyEnv, r.apiKey)
	}
	if got := r.base.String(); got != "https://res.openai.azure.com/openai/deployments/my%20dep?api-version=2025-04-01-preview" {
		t.Errorf("base %s", got)
	}
	h := m.header(nil, true)
	if h.Get("Api-Key") != "azure-test-from-env" || h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
		t.Errorf("headers %v", h)
	}
	if m.Name() != "azure" || m.Provider() != Azure {
		t.Errorf("name %q provider %q", m.Name(), m.Provider())
	}
	// Entra ID tokens go as a bearer token instead.
	m = newModel(t, ex, EndpointConfig{Provider: Azure, BaseURL: "https://res.openai.azure.com", Deployment: "d", APIVersion: "v1", APIKey: "entra-token-x", Auth: AuthBearer})
	if h := m.header(nil, true); h.Get("Authorization") != "Bearer entra-token-x" || h.Get("Api-Key") != "" {
		t.Errorf("bearer headers %v", h)
	}
}

func TestAzureConfigErrors(t *testing.T) {
	ok := EndpointConfig{Provider: Azure, BaseURL: "https://res.openai.azure.com", APIKey: testAzureKey, Deployment: "d", APIVersion: azureAPIVersion}
	with := func(f func(*EndpointConfig)) EndpointConfig {
		c := ok
		f(&c)
		return c
	}
	ex := startExecutor(t, nil)
	for _, tc := range []struct {
		name  string
		cfg   EndpointConfig
		field string
	}{
		{"no base URL", with(func(c *EndpointConfig) { c.BaseURL = "" }), "BaseURL"},
		{"no deployment", with(func(c *EndpointConfig) { c.Deployment = "" }), "Deployment"},
		{"blank deployment", with(func(c *EndpointConfig) { c.Deployment = "  " }), "Deployment"},
		{"deployment with a slash", with(func(c *EndpointConfig) { c.Deployment = "a/../b" }), "Deployment"},
		{"deployment with a query", with(func(c *EndpointConfig) { c.Deployment = "a?x=1" }), "Deployment"},
		{"no api version", with(func(c *EndpointConfig) { c.APIVersion = "" }), "APIVersion"},
		{"api version with a space", with(func(c *EndpointConfig) { c.APIVersion = "2024-10-21 x" }), "APIVersion"},
		{"no key", with(func(c *EndpointConfig) { c.APIKey, c.APIKeyEnv = "", "IMODEL_TEST_UNSET_KEY" }), "APIKey"},
		{"the key's header given too", with(func(c *EndpointConfig) { c.Headers = map[string]string{"Api-Key": "other"} }), "Headers"},
		{"deployment on OpenAI", EndpointConfig{Provider: OpenAI, APIKey: testKey, Deployment: "d"}, "Deployment"},
		{"api version on Anthropic", EndpointConfig{Provider: Anthropic, APIKey: testAntKey, APIVersion: "v"}, "APIVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(ex, tc.cfg)
			if m != nil {
				t.Error("New returned a model for an invalid config")
			}
			checkConfigError(t, err, tc.field)
		})
	}
}

func TestAzureChatEmbedStream(t *testing.T) {
	log := &eventLog{}
	e := startSim(t, simulator.Config{Keys: []string{testAzureKey}, EmbeddingDims: 3})
	ex := startExecutor(t, func(c *runtime.Config) { c.Observer = log.observe })
	m := newModel(t, ex, azureConfig(e))

	// Chat: the deployment's path and version, the key in api-key, no
	// model in the body; the estimate counts for the deployment's name.
	resp, err := m.Chat(ctx, hello("Hello Azure", 6))
	if err != nil {
		t.Fatal(err)
	}
	checkReply(t, resp.Text, 6, azureDeployment)
	prompt := tokens.ForModel(azureDeployment).ChatPrompt([]tokens.Message{{Role: "user", Text: "Hello Azure"}})
	if resp.Usage != (messages.Usage{InputTokens: prompt, OutputTokens: 6, TotalTokens: prompt + 6}) || resp.Model != azureDeployment {
		t.Errorf("reply %+v", resp)
	}
	if resp.Event.Tokens != (messages.Tokens{Estimated: prompt + 6, Actual: prompt + 6, HasActual: true}) {
		t.Errorf("tokens %+v", resp.Event.Tokens)
	}
	got := e.Last(t)
	if got.Path != azureDeployPath+"/chat/completions" || got.Query != azureQueryString ||
		got.Header.Get("Api-Key") != testAzureKey || got.Header.Get("Authorization") != "" {
		t.Errorf("request %s?%s %v", got.Path, got.Query, got.Header)
	}
	if _, hasModel := got.Fields(t)["model"]; hasModel {
		t.Errorf("body names a model: %s", got.Body)
	}
	ep := resp.Event.Endpoint()
	if ep.URL != e.URL+azureDeployPath+"/chat/completions?"+azureQueryString || ep.Header.Get("Api-Key") != messages.Redacted {
		t.Errorf("endpoint %s %v", ep.URL, ep.Header)
	}

	// Embeddings.
	emb, err := m.Embed(ctx, []string{"a b", "c"})
	if err != nil || len(emb.Vectors) != 2 || len(emb.Vectors[0]) != 3 {
		t.Fatalf("embed: %+v, %v", emb, err)
	}
	n := tokens.ForModel(azureDeployment).Embedding([]string{"a b", "c"})
	if emb.Event.Tokens != (messages.Tokens{Estimated: n, Actual: n, HasActual: true}) {
		t.Errorf("embed tokens %+v", emb.Event.Tokens)
	}
	if got := e.Last(t); got.Path != azureDeployPath+"/embeddings" || got.Query != azureQueryString {
		t.Errorf("embed request %s?%s", got.Path, got.Query)
	}

	// A stream, with its usage.
	s, err := m.Stream(ctx, hello("stream", 5))
	if err != nil {
		t.Fatal(err)
	}
	chunks := readAll(s)
	sr, err := s.Wait(ctx)
	if err != nil || len(chunks) != 5 || strings.Join(chunks, "") != sr.Text || sr.Usage.OutputTokens != 5 || !sr.Event.Tokens.HasActual {
		t.Errorf("stream: %q %+v %v", chunks, sr, err)
	}

	// Invoke with the default path, and a GET whose fields join the
	// api-version in the query.
	if r, err := m.Invoke(ctx, chatPayloadOf("raw")); err != nil || r.StatusCode != 200 {
		t.Errorf("invoke: %v", err)
	}
	get := newModel(t, ex, EndpointConfig{Provider: Azure, BaseURL: e.URL, APIKey: testAzureKey, Deployment: azureDeployment,
		APIVersion: azureAPIVersion, Method: http.MethodGet, Path: "/chat/completions", MaxAttempts: 1})
	r, err := get.Invoke(ctx, map[string]any{"q": "x y"})
	if got := e.Last(t); got.Query != azureQueryString+"&q=x+y" {
		t.Errorf("GET query %q (%v, %v)", got.Query, r.StatusCode, err)
	}
}

func TestAzureRefusalsAndRateLimits(t *testing.T) {
	e := startSim(t, simulator.Config{Keys: []string{testAzureKey}, FaultRetryAfter: 5 * time.Millisecond})
	ex := startExecutor(t, nil)

	// A rate limit is read as OpenAI's: retried after the server's delay.
	m := newModel(t, ex, azureConfig(e))
	resp, err := m.Chat(ctx, hello("x", 2), fault("429", 1, "azure-429")...)
	if err != nil || resp.Event.Attempt != 2 {
		t.Fatalf("429 then success: %v after %d attempts", err, resp.Event.Attempt)
	}
	resp, err = m.Chat(ctx, hello("x", 2), append(fault("429", 0, ""), WithMaxAttempts(1))...)
	checkFailed(t, resp.Event, err, ErrRateLimited, "rate_limited", 1)
	if api := apiError(t, err); api.Code != "429" || api.RetryAfterDelay != 5*time.Millisecond || !strings.Contains(api.Message, "Azure OpenAI API version "+azureAPIVersion) {
		t.Errorf("APIError %+v", api)
	}

	// A wrong key, and a missing version, are Azure's own answers.
	bad := azureConfig(e)
	bad.APIKey = "azure-test-wrong-key"
	resp, err = newModel(t, ex, bad).Chat(ctx, hello("x", 1))
	checkFailed(t, resp.Event, err, ErrAuth, "auth", 1)
	if api := apiError(t, err); api.Code != "401" || !strings.Contains(api.Message, "invalid subscription key") {
		t.Errorf("APIError %+v", api)
	}
	if strings.Contains(err.Error(), "azure-test-wrong-key") {
		t.Errorf("the error shows the key: %v", err)
	}
	// Without the version (a path given by hand, no query): 404.
	raw := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: e.URL + azureDeployPath, APIKey: testAzureKey,
		Auth: AuthAzureAPIKey, MaxAttempts: 1})
	resp, err = raw.Chat(ctx, hello("x", 1))
	checkFailed(t, resp.Event, err, ErrBadRequest, "bad_request", 1)
	if api := apiError(t, err); api.StatusCode != 404 || api.Message != "Resource not found" {
		t.Errorf("APIError %+v", api)
	}
}
