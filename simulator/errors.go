package simulator

import (
	"github.com/lionactor/lionactor/internal/wire"
)

// errKind is a kind of error response, which each provider formats its own
// way.
type errKind int

const (
	kindInvalidRequest errKind = iota
	kindAuthMissing
	kindAuthInvalid
	kindTooLarge
	kindQuota
	kindRateLimit
	kindServer
	kindUnavailable
	kindOverloaded
)

// fail answers status with an error body of kind in the provider's format.
func (c *call) fail(status int, kind errKind, msg string) {
	c.failParam(status, kind, "", msg)
}

// failParam is fail for an error about the request member param, which
// OpenAI names in its body.
func (c *call) failParam(status int, kind errKind, param, msg string) {
	if c.p == anthropic {
		c.writeJSON(status, wire.NewAnthropicErrorBody(anthropicErrorType(kind), msg))
		return
	}
	var body wire.OpenAIErrorBody
	switch kind {
	case kindQuota:
		body = wire.NewOpenAIQuotaBody()
	case kindAuthInvalid:
		body = wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, "invalid_api_key", msg)
	case kindServer, kindUnavailable:
		body = wire.NewOpenAIErrorBody(wire.TypeServerError, "", msg)
	case kindOverloaded:
		body = wire.NewOpenAIErrorBody(wire.AnthropicOverloadedError, "", msg)
	default:
		body = wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, "", msg)
	}
	if param != "" {
		body.Error.Param = &param
	}
	c.writeJSON(status, body)
}

// anthropicErrorType maps an error kind to Anthropic's error type.
func anthropicErrorType(kind errKind) string {
	switch kind {
	case kindAuthMissing, kindAuthInvalid:
		return wire.AnthropicAuthenticationError
	case kindTooLarge:
		return wire.AnthropicRequestTooLarge
	case kindRateLimit:
		return wire.AnthropicRateLimitError
	case kindServer, kindUnavailable:
		return wire.AnthropicAPIError
	case kindOverloaded:
		return wire.AnthropicOverloadedError
	default:
		return wire.AnthropicInvalidRequestError
	}
}
