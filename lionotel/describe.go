package lionotel

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/lionactor/lionactor/messages"
)

// Metadata keys by which a request may name its GenAI provider, operation
// and model itself, over what the Tracer infers from its endpoint.
const (
	ProviderMetadata  = "gen_ai.provider.name"
	OperationMetadata = "gen_ai.operation.name"
	ModelMetadata     = "gen_ai.request.model"
)

// description is what a request's PENDING snapshot says about the call,
// read once per request.
type description struct {
	http       bool // the request describes an HTTP endpoint
	method     string
	address    string
	port       int
	provider   string
	operation  string
	model      string
	maxTokens  *int
	temp, topP *float64
}

// describe reads the endpoint (scrubbed of secrets by the snapshot), the
// GenAI fields of a JSON body, and the metadata overrides.
func describe(ev messages.Event) description {
	ep := ev.Endpoint()
	var d description
	if u, err := url.Parse(ep.URL); err == nil && u.Host != "" {
		d.http = true
		d.method = strings.ToUpper(ep.Method)
		if d.method == "" {
			d.method = "GET"
		}
		d.address = u.Hostname()
		d.port = port(u)
		d.operation = operationOf(u.Path)
		if d.operation != "" {
			d.provider = providerOf(d.address, u.Path, ep.Header.Get("Anthropic-Version") != "")
		}
	}
	if len(ep.Payload) > 0 {
		var body struct {
			Model               string   `json:"model"`
			MaxTokens           *int     `json:"max_tokens"`
			MaxCompletionTokens *int     `json:"max_completion_tokens"`
			Temperature         *float64 `json:"temperature"`
			TopP                *float64 `json:"top_p"`
		}
		if json.Unmarshal(ep.Payload, &body) == nil {
			d.model, d.temp, d.topP = body.Model, body.Temperature, body.TopP
			d.maxTokens = body.MaxTokens
			if body.MaxCompletionTokens != nil {
				d.maxTokens = body.MaxCompletionTokens
			}
		}
	}
	md := ev.Metadata()
	if v := md[OperationMetadata]; v != "" {
		d.operation = v
	}
	if v := md[ProviderMetadata]; v != "" {
		d.provider = v
	}
	if v := md[ModelMetadata]; v != "" {
		d.model = v
	}
	return d
}

// genAI reports whether the request is a GenAI operation: the conventions
// require its operation and provider.
func (d description) genAI() bool { return d.operation != "" && d.provider != "" }

// spanName is "{operation} {model}" for a GenAI request.
func (d description) spanName() string {
	switch {
	case !d.genAI():
		return "lionactor.request"
	case d.model == "":
		return d.operation
	}
	return d.operation + " " + d.model
}

func (d description) requestAttrs() []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if d.genAI() {
		attrs = append(attrs, semconv.GenAIOperationNameKey.String(d.operation), semconv.GenAIProviderNameKey.String(d.provider))
		if d.model != "" {
			attrs = append(attrs, semconv.GenAIRequestModel(d.model))
		}
		if d.maxTokens != nil {
			attrs = append(attrs, semconv.GenAIRequestMaxTokens(*d.maxTokens))
		}
		if d.temp != nil {
			attrs = append(attrs, semconv.GenAIRequestTemperature(*d.temp))
		}
		if d.topP != nil {
			attrs = append(attrs, semconv.GenAIRequestTopP(*d.topP))
		}
	}
	if d.http {
		attrs = append(attrs, semconv.ServerAddress(d.address), semconv.ServerPort(d.port))
	}
	return attrs
}

func (d description) attemptAttrs() []attribute.KeyValue {
	if !d.http {
		return nil
	}
	return []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(d.method), semconv.ServerAddress(d.address), semconv.ServerPort(d.port)}
}

func port(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// operationOf names the GenAI operation of an endpoint path, or "".
func operationOf(path string) string {
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"), strings.HasSuffix(path, "/messages"):
		return semconv.GenAIOperationNameChat.Value.AsString()
	case strings.HasSuffix(path, "/embeddings"):
		return semconv.GenAIOperationNameEmbeddings.Value.AsString()
	case strings.HasSuffix(path, "/completions"):
		return semconv.GenAIOperationNameTextCompletion.Value.AsString()
	}
	return ""
}

// providers are the hosts whose provider the conventions name.
var providers = map[string]attribute.KeyValue{
	"api.openai.com":    semconv.GenAIProviderNameOpenAI,
	"api.anthropic.com": semconv.GenAIProviderNameAnthropic,
	"api.groq.com":      semconv.GenAIProviderNameGroq,
	"api.deepseek.com":  semconv.GenAIProviderNameDeepseek,
	"api.mistral.ai":    semconv.GenAIProviderNameMistralAI,
	"api.x.ai":          semconv.GenAIProviderNameXAI,
	"api.perplexity.ai": semconv.GenAIProviderNamePerplexity,
}

// providerOf is the conventions' best guess at the provider: the host's if
// it is known, else the API's dialect (Anthropic's messages, or OpenAI's,
// which most other servers speak).
func providerOf(host, path string, anthropicHeader bool) string {
	host = strings.ToLower(host)
	if p, ok := providers[host]; ok {
		return p.Value.AsString()
	}
	switch {
	case strings.HasSuffix(host, ".openai.azure.com"):
		return semconv.GenAIProviderNameAzureAIOpenAI.Value.AsString()
	case anthropicHeader || strings.HasSuffix(strings.TrimSuffix(path, "/"), "/messages"):
		return semconv.GenAIProviderNameAnthropic.Value.AsString()
	}
	return semconv.GenAIProviderNameOpenAI.Value.AsString()
}

// reply is what a response body says of the model and its usage.
type reply struct {
	id, model     string
	finishReasons []string
	usage         *messages.Usage
}

// attrs are the reply's attributes for a request of operation op (an
// embedding has no output tokens).
func (r *reply) attrs(op string) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if r.model != "" {
		attrs = append(attrs, semconv.GenAIResponseModel(r.model))
	}
	if r.id != "" {
		attrs = append(attrs, semconv.GenAIResponseID(r.id))
	}
	if len(r.finishReasons) > 0 {
		attrs = append(attrs, semconv.GenAIResponseFinishReasons(r.finishReasons...))
	}
	if r.usage != nil {
		attrs = append(attrs, semconv.GenAIUsageInputTokens(r.usage.InputTokens))
		if op != semconv.GenAIOperationNameEmbeddings.Value.AsString() {
			attrs = append(attrs, semconv.GenAIUsageOutputTokens(r.usage.OutputTokens))
		}
	}
	return attrs
}

func usageOf(u messages.Usage) *messages.Usage {
	if u == (messages.Usage{}) {
		return nil
	}
	return &u
}

// parseReply reads an OpenAI or Anthropic response body (chat, completion,
// embeddings, messages); nil if it has none of their fields.
func parseReply(body []byte) *reply {
	var b struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		StopReason string `json:"stop_reason"`
		Usage      *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			InputTokens      int `json:"input_tokens"`
			OutputTokens     int `json:"output_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(body, &b) != nil {
		return nil
	}
	rep := &reply{id: b.ID, model: b.Model}
	for _, c := range b.Choices {
		if c.FinishReason != "" {
			rep.finishReasons = append(rep.finishReasons, c.FinishReason)
		}
	}
	if b.StopReason != "" {
		rep.finishReasons = append(rep.finishReasons, b.StopReason)
	}
	if u := b.Usage; u != nil {
		rep.usage = &messages.Usage{InputTokens: u.PromptTokens + u.InputTokens, OutputTokens: u.CompletionTokens + u.OutputTokens}
	}
	if rep.id == "" && rep.model == "" && rep.usage == nil && len(rep.finishReasons) == 0 {
		return nil
	}
	return rep
}
