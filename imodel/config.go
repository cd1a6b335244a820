package imodel

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Provider names the API dialect an endpoint speaks.
type Provider string

// The providers.
const (
	// OpenAI is api.openai.com: chat completions and embeddings.
	OpenAI Provider = "openai"
	// Anthropic is api.anthropic.com: messages.
	Anthropic Provider = "anthropic"
	// OpenAICompatible is any server speaking OpenAI's API (Groq, vLLM,
	// Ollama, OpenRouter, ...). BaseURL is required.
	OpenAICompatible Provider = "openai-compatible"
	// Azure is Azure OpenAI: OpenAI's chat completions and embeddings,
	// served under a resource's model deployments. BaseURL (the resource's
	// endpoint, such as "https://RESOURCE.openai.azure.com"), Deployment and
	// APIVersion are required; the key is sent as "api-key: KEY" and read
	// from AZURE_OPENAI_API_KEY by default.
	Azure Provider = "azure"
	// Generic is any JSON HTTP endpoint. BaseURL is required; nothing is
	// assumed about the body or the usage.
	Generic Provider = "generic"
)

// facts are what lionactor knows of a provider, written once: what a
// config that leaves them out gets, what the calls use, and what
// Provider's methods and the command read.
type facts struct {
	baseURL string     // the default BaseURL; "" when it is required
	keyEnv  string     // the variable the key is read from; "" when none is
	auth    AuthScheme // how the key is sent
	// chatPath and embeddingsPath are the endpoints of Chat and Stream,
	// and of Embed, under the base URL; "" when the provider has none.
	// chatPath is the default Path of Invoke.
	chatPath, embeddingsPath string
}

var providers = map[Provider]facts{
	OpenAI: {baseURL: "https://api.openai.com/v1", keyEnv: "OPENAI_API_KEY", auth: AuthBearer,
		chatPath: "/chat/completions", embeddingsPath: "/embeddings"},
	Anthropic: {baseURL: "https://api.anthropic.com/v1", keyEnv: "ANTHROPIC_API_KEY", auth: AuthAPIKeyHeader,
		chatPath: "/messages"},
	OpenAICompatible: {auth: AuthBearer, chatPath: "/chat/completions", embeddingsPath: "/embeddings"},
	Azure: {keyEnv: "AZURE_OPENAI_API_KEY", auth: AuthAzureAPIKey,
		chatPath: "/chat/completions", embeddingsPath: "/embeddings"},
	Generic: {auth: AuthNone},
}

// azureDeployments is the path under an Azure OpenAI resource's endpoint
// of its deployments, each of which serves the OpenAI API under its name.
const azureDeployments = "/openai/deployments/"

// DefaultBaseURL is the base URL of a config of provider p that gives
// none: https://api.openai.com/v1 for OpenAI and
// https://api.anthropic.com/v1 for Anthropic; "" for the others, whose
// BaseURL is required.
func (p Provider) DefaultBaseURL() string { return providers[p].baseURL }

// DefaultKeyEnv names the environment variable the API key of provider p
// is read from when a config gives neither APIKey nor APIKeyEnv:
// OPENAI_API_KEY, ANTHROPIC_API_KEY or AZURE_OPENAI_API_KEY; "" for
// OpenAICompatible and Generic, which send no key unless given one.
func (p Provider) DefaultKeyEnv() string { return providers[p].keyEnv }

// AuthScheme says how the API key is sent.
type AuthScheme string

// The authentication schemes.
const (
	// AuthBearer sends "Authorization: Bearer KEY" (OpenAI and compatibles).
	AuthBearer AuthScheme = "bearer"
	// AuthAPIKeyHeader sends "x-api-key: KEY" (Anthropic).
	AuthAPIKeyHeader AuthScheme = "x-api-key"
	// AuthAzureAPIKey sends "api-key: KEY" (Azure OpenAI).
	AuthAzureAPIKey AuthScheme = "api-key"
	// AuthNone sends no credential.
	AuthNone AuthScheme = "none"
)

// header is the header the scheme sends key in, with its value; "" for
// AuthNone.
func (a AuthScheme) header(key string) (name, value string) {
	switch a {
	case AuthBearer:
		return "Authorization", "Bearer " + key
	case AuthAPIKeyHeader:
		return "X-Api-Key", key
	case AuthAzureAPIKey:
		return "Api-Key", key
	}
	return "", ""
}

// DefaultMaxResponseBytes caps a response body unless the config says
// otherwise: far above any real completion, far below what would hurt.
const DefaultMaxResponseBytes = 32 << 20

// DefaultAnthropicVersion is sent as the anthropic-version header.
const DefaultAnthropicVersion = "2023-06-01"

// EndpointConfig describes one model endpoint. Only Provider is required
// for OpenAI and Anthropic (Azure needs BaseURL, Deployment and
// APIVersion too); the rest has defaults per provider.
type EndpointConfig struct {
	// Name labels the model in logs and snapshots; default the provider.
	Name     string
	Provider Provider
	// BaseURL is the API root, such as "https://api.openai.com/v1".
	BaseURL string
	// Path is the endpoint under BaseURL that Invoke calls, such as
	// "/chat/completions". A {name} segment is filled from the payload's
	// field of that name, which is then left out of the body.
	Path string
	// Method is the HTTP method of Invoke; default POST. POST, PUT and
	// PATCH send the payload as a JSON body, others as query parameters.
	Method string
	// Model is the default "model" field of requests.
	Model string

	// Deployment is the Azure OpenAI deployment that serves the requests:
	// they go to BaseURL + "/openai/deployments/" + Deployment + Path.
	// Required for Azure, refused for other providers.
	Deployment string
	// APIVersion is Azure OpenAI's api-version query parameter, such as
	// "2024-10-21". Required for Azure, refused for other providers.
	APIVersion string

	// Auth says how the key is sent; default by provider.
	Auth AuthScheme
	// APIKey is the credential. Leave it empty to read APIKeyEnv.
	APIKey string
	// APIKeyEnv names the environment variable holding the key; default
	// OPENAI_API_KEY, ANTHROPIC_API_KEY or AZURE_OPENAI_API_KEY by provider.
	APIKeyEnv string

	// Headers are sent with every request, for a gateway or a proxy. The
	// values of those whose names look secret (messages.IsCredentialHeader:
	// Authorization, X-Gateway-Key, ...) are scrubbed from everything shown,
	// like the key.
	Headers map[string]string
	// Defaults are request fields used when the payload does not set them.
	Defaults map[string]any

	// Timeout bounds each attempt; 0 means the executor's default.
	Timeout time.Duration
	// MaxAttempts counts every attempt of a request, the first included;
	// 0 means 3, and 1 disables retries. One chain decides a request's
	// attempts, each link written once: WithMaxAttempts on the call, else
	// this field; only a request that sets none (one not built by a Model)
	// falls back to the executor's runtime.Config.MaxAttempts.
	MaxAttempts int
	// Retry decides whether a failed attempt is tried again, and after
	// what delay. Nil means runtime.Backoff{Initial: 500 * time.Millisecond,
	// Max: 30 * time.Second, Retryable: Retryable}: rate limits, server
	// and connection errors and timeouts are retried with full-jitter
	// exponential backoff, never undercutting the provider's retry-after.
	// A policy of other delays keeps that classification with
	// runtime.Backoff{Initial: ..., Retryable: imodel.Retryable}.
	Retry messages.RetryPolicy
	// MaxResponseBytes caps each response body; default
	// DefaultMaxResponseBytes. A larger body fails the attempt.
	MaxResponseBytes int64
	// AnthropicVersion is the anthropic-version header; default
	// DefaultAnthropicVersion.
	AnthropicVersion string
	// InsecureSkipVerify turns off TLS certificate verification, for a test
	// server with a self-signed certificate only. New logs a warning when it
	// is set. It has no effect with WithHTTPClient.
	InsecureSkipVerify bool
}

// LimitScope names what the provider counts this endpoint's requests
// against its rate limits with: the base URL (its scheme, host and path,
// without a query or fragment, which could carry a secret), since a
// provider counts a key's requests across its endpoints; on Azure, which
// limits each deployment apart, the deployment's URL. Processes that use
// one key at one scope share its limits: budget.KeyFor(c.LimitScope(),
// key) names their shared budget. It does not validate c.
func (c EndpointConfig) LimitScope() string {
	base := or(c.BaseURL, c.Provider.DefaultBaseURL())
	scope := string(c.Provider)
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		scope = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/")
	}
	if c.Provider == Azure {
		scope += azureDeployments + url.PathEscape(c.Deployment)
	}
	return scope
}

// badConfig reports an invalid EndpointConfig field as a
// *messages.ConfigError, which matches messages.ErrInvalidConfig.
func badConfig(field, format string, args ...any) error {
	return &messages.ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// resolved is an EndpointConfig with every default applied and the key read.
type resolved struct {
	EndpointConfig
	base         *url.URL
	apiKey       string
	secretValues []string // see secrets
}

// resolveWithoutKey validates c and fills its defaults as resolve does,
// for what sends nothing (an Estimator): a missing key is no error, and
// none is read from the environment.
func (c EndpointConfig) resolveWithoutKey() (*resolved, error) {
	if c.APIKey == "" && c.Auth != AuthNone {
		c.Auth = AuthNone
	}
	return c.resolve(func(string) string { return "" })
}

// resolve validates c and fills its defaults. getenv reads the environment.
func (c EndpointConfig) resolve(getenv func(string) string) (*resolved, error) {
	r := &resolved{EndpointConfig: c}
	f, known := providers[c.Provider]
	switch {
	case c.Provider == "":
		return nil, badConfig("Provider", "required (openai, anthropic, azure, openai-compatible or generic)")
	case !known:
		return nil, badConfig("Provider", "unknown provider %q", c.Provider)
	}
	r.BaseURL = or(c.BaseURL, f.baseURL)
	r.Path = or(c.Path, f.chatPath)
	r.Auth = AuthScheme(or(string(c.Auth), string(f.auth)))
	r.APIKeyEnv = or(c.APIKeyEnv, f.keyEnv)
	if c.Provider == Anthropic {
		r.AnthropicVersion = or(c.AnthropicVersion, DefaultAnthropicVersion)
	}
	r.Name = or(c.Name, string(c.Provider))
	r.Method = strings.ToUpper(or(c.Method, http.MethodPost))
	if r.BaseURL == "" {
		return nil, badConfig("BaseURL", "required for provider %s", c.Provider)
	}
	u, err := url.Parse(r.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, badConfig("BaseURL", "must be an absolute http or https URL") // the value is not quoted: a key pasted into it would leak
	}
	if u.User != nil {
		return nil, badConfig("BaseURL", "must not carry credentials")
	}
	if err := r.azureBase(u); err != nil {
		return nil, err
	}
	r.base = u
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		return nil, badConfig("Path", "must start with /") // not quoted, like BaseURL
	}
	if !validMethod(r.Method) {
		return nil, badConfig("Method", "unsupported method %q", r.Method)
	}
	switch r.Auth {
	case AuthBearer, AuthAPIKeyHeader, AuthAzureAPIKey, AuthNone:
	default:
		return nil, badConfig("Auth", "unknown scheme %q", r.Auth)
	}
	r.apiKey = c.APIKey
	if r.apiKey == "" && r.APIKeyEnv != "" {
		r.apiKey = strings.TrimSpace(getenv(r.APIKeyEnv))
	}
	// The hosted providers, those with a key variable of their own, refuse
	// every request without a key: say so now.
	if r.Auth != AuthNone && r.apiKey == "" && f.keyEnv != "" {
		return nil, badConfig("APIKey", "no API key: set APIKey or the environment variable %s", r.APIKeyEnv)
	}
	if strings.ContainsAny(r.apiKey, "\r\n") {
		return nil, badConfig("APIKey", "contains a line break")
	}
	keyHeader := r.keyHeader()
	for k, v := range c.Headers {
		switch {
		case keyHeader != "" && strings.EqualFold(k, keyHeader):
			// The key would silently replace it.
			return nil, badConfig("Headers", "%s carries the API key; give the key or the header, not both", keyHeader)
		case k == "":
			return nil, badConfig("Headers", "empty header name")
		case strings.ContainsAny(k, " \t\r\n:"):
			// Not quoted: a value pasted into the name would show.
			return nil, badConfig("Headers", "a header name contains a space, a colon or a line break")
		case strings.ContainsAny(v, "\r\n"):
			return nil, badConfig("Headers", "the value of header %s contains a line break", k)
		}
	}
	switch {
	case c.Timeout < 0:
		return nil, badConfig("Timeout", "must not be negative")
	case c.MaxAttempts < 0:
		return nil, badConfig("MaxAttempts", "must not be negative")
	case negativeBackoff(c.Retry):
		return nil, badConfig("Retry", "backoff bounds must not be negative")
	case c.MaxResponseBytes < 0:
		return nil, badConfig("MaxResponseBytes", "must not be negative")
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = defaultMaxAttempts
	}
	if r.Retry == nil {
		r.Retry = runtime.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Retryable: Retryable}
	}
	if r.MaxResponseBytes == 0 {
		r.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if r.apiKey != "" {
		r.secretValues = []string{r.apiKey}
	}
	r.secretValues = append(r.secretValues, credentialValues(c.Headers)...)
	return r, nil
}

// defaultMaxAttempts is EndpointConfig.MaxAttempts when it is 0.
const defaultMaxAttempts = 3

// negativeBackoff reports a runtime.Backoff with a negative bound, which
// it would silently read as its default.
func negativeBackoff(p messages.RetryPolicy) bool {
	var b runtime.Backoff
	switch p := p.(type) {
	case runtime.Backoff:
		b = p
	case *runtime.Backoff:
		if p == nil {
			return false
		}
		b = *p
	default:
		return false
	}
	return b.Initial < 0 || b.Max < 0
}

// keyHeader is the header the API key is sent in, or "" when none is sent.
func (r *resolved) keyHeader() string {
	if r.apiKey == "" {
		return ""
	}
	name, _ := r.Auth.header(r.apiKey)
	return name
}

// azureBase checks the Azure fields and, for Azure, turns the resource's
// endpoint u into the deployment's base: the deployment path under it and
// the api-version in its query, which every request then carries.
func (r *resolved) azureBase(u *url.URL) error {
	if r.Provider != Azure {
		switch {
		case r.Deployment != "":
			return badConfig("Deployment", "only for provider azure")
		case r.APIVersion != "":
			return badConfig("APIVersion", "only for provider azure")
		}
		return nil
	}
	switch {
	case strings.TrimSpace(r.Deployment) == "":
		return badConfig("Deployment", "required for provider azure: the name of the model deployment")
	case strings.TrimSpace(r.APIVersion) == "":
		return badConfig("APIVersion", "required for provider azure, such as 2024-10-21")
	case strings.ContainsAny(r.Deployment, "/?#") || strings.ContainsFunc(r.Deployment, unicode.IsControl):
		return badConfig("Deployment", "must be a deployment name, without / ? # or control characters")
	case strings.ContainsFunc(r.APIVersion, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }):
		return badConfig("APIVersion", "must not contain spaces or control characters")
	}
	root := strings.TrimSuffix(u.EscapedPath(), "/")
	u.RawPath = root + azureDeployments + url.PathEscape(r.Deployment)
	u.Path, _ = url.PathUnescape(u.RawPath) // escaped just above: it unescapes
	q := u.Query()
	q.Set("api-version", r.APIVersion)
	u.RawQuery = q.Encode()
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return true
	}
	return false
}

// hasBody reports whether the method sends its payload as a JSON body.
func hasBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// secrets lists what must be scrubbed from everything shown: the key, and
// the values of the credential headers among Headers. The slice is shared:
// do not modify it.
func (r *resolved) secrets() []string { return r.secretValues }

// credentialValues returns the values of the credential headers of h, by
// messages.IsCredentialHeader, to be scrubbed like the key.
func credentialValues(h map[string]string) []string {
	if len(h) == 0 {
		return nil
	}
	hh := make(http.Header, len(h))
	for k, v := range h {
		hh[k] = []string{v}
	}
	return messages.CredentialValues(hh)
}
