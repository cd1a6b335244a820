package imodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Sentinel errors of model calls. An [*APIError] matches the one its status
// names under errors.Is. An attempt that runs past its timeout fails with
// messages.ErrTimeout, and is retried.
var (
	// ErrRateLimited: 429, the provider's rate limit; retried after its delay.
	ErrRateLimited = errors.New("imodel: rate limited")
	// ErrQuotaExhausted: 429 insufficient_quota (or Anthropic's credit
	// message); waiting does not help, so it is never retried.
	ErrQuotaExhausted = errors.New("imodel: quota exhausted")
	// ErrAuth: 401 or 403.
	ErrAuth = errors.New("imodel: authentication failed")
	// ErrBadRequest: any other 4xx but 408 and 409; never retried.
	ErrBadRequest = errors.New("imodel: bad request")
	// ErrServer: 5xx, 408, 409, and 529 (overloaded); retried.
	ErrServer = errors.New("imodel: server error")
	// ErrConnection: the connection failed or broke; retried.
	ErrConnection = errors.New("imodel: connection error")
	// ErrMalformedResponse: a success status with a body that does not
	// decode; not retried.
	ErrMalformedResponse = errors.New("imodel: malformed response")
	// ErrResponseTooLarge: the body exceeded MaxResponseBytes.
	ErrResponseTooLarge = errors.New("imodel: response too large")
	// ErrStreamBroken: a stream ended before its end marker; the partial
	// text is kept.
	ErrStreamBroken = errors.New("imodel: stream broken")
)

// APIError is a failed model call: an error status from the provider, or a
// response that could not be read. Use errors.As to reach it; its sentinel
// (ErrRateLimited, ErrAuth, ...) matches under errors.Is.
type APIError struct {
	Provider   Provider
	StatusCode int    // 0 when there was no response
	Type       string // the provider's error type, e.g. "rate_limit_error"
	Code       string // the provider's error code, e.g. "rate_limit_exceeded"
	Message    string // the provider's message, or what went wrong
	// RetryAfterDelay is the server's minimum delay before a retry, from
	// retry-after-ms, retry-after or a rate-limit reset; 0 if none.
	RetryAfterDelay time.Duration
	// ResetAt, for a rate limit, is when the provider's budget allows
	// requests again; the executor pauses until then.
	ResetAt time.Time

	kind error
	err  error
	// shouldRetry is the provider's x-should-retry header, when it sent
	// "true" or "false": its word overrides the rule by status.
	shouldRetry    bool
	hasShouldRetry bool
}

// Error implements error. It never contains the API key.
func (e *APIError) Error() string {
	s := "imodel: " + string(e.Provider)
	if e.StatusCode != 0 {
		s += " " + strconv.Itoa(e.StatusCode)
	}
	if c := e.Code; c != "" {
		s += " " + c
	} else if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns the sentinel and the underlying error, if any.
func (e *APIError) Unwrap() []error {
	if e.err != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.kind}
}

// Kind names the error's class, for snapshots: "rate_limited",
// "quota_exhausted", "auth", "bad_request", "server", "connection",
// "timeout" (a connection cut by the attempt's timeout),
// "malformed_response", "response_too_large", "stream_broken".
func (e *APIError) Kind() string {
	switch e.kind {
	case ErrRateLimited:
		return "rate_limited"
	case ErrQuotaExhausted:
		return "quota_exhausted"
	case ErrAuth:
		return "auth"
	case ErrBadRequest:
		return "bad_request"
	case ErrServer:
		return "server"
	case ErrConnection:
		if errors.Is(e.err, messages.ErrTimeout) || errors.Is(e.err, context.DeadlineExceeded) {
			return "timeout"
		}
		return "connection"
	case ErrMalformedResponse:
		return "malformed_response"
	case ErrResponseTooLarge:
		return "response_too_large"
	case ErrStreamBroken:
		return "stream_broken"
	}
	return "error"
}

// Details gives the facts a snapshot shows beside the message.
func (e *APIError) Details() map[string]string {
	d := map[string]string{"provider": string(e.Provider)}
	if e.StatusCode != 0 {
		d["status"] = strconv.Itoa(e.StatusCode)
	}
	if e.Type != "" {
		d["type"] = e.Type
	}
	if e.Code != "" {
		d["code"] = e.Code
	}
	if e.RetryAfterDelay > 0 {
		d["retry_after_ms"] = strconv.FormatInt(e.RetryAfterDelay.Milliseconds(), 10)
	}
	if e.hasShouldRetry {
		d["should_retry"] = strconv.FormatBool(e.shouldRetry)
	}
	return d
}

// RetryAfter is the server's minimum delay before a retry.
func (e *APIError) RetryAfter() time.Duration { return e.RetryAfterDelay }

// PauseUntil is when the shared budget may be used again after a rate
// limit; the zero time for other errors.
func (e *APIError) PauseUntil() time.Time {
	if e.kind != ErrRateLimited {
		return time.Time{}
	}
	return e.ResetAt
}

// Retryable reports whether another attempt may succeed. The provider's
// x-should-retry header, when it says "true" or "false", decides, as it
// does in the official SDKs: true retries even a status that is never
// retried otherwise (a 400, a 401), false forbids retrying a 429 or a 5xx.
// Without it, rate limits, server errors and connection errors are retried.
func (e *APIError) Retryable() bool {
	if e.hasShouldRetry {
		return e.shouldRetry
	}
	switch e.kind {
	case ErrRateLimited, ErrServer, ErrConnection:
		return true
	}
	return false
}

// Verdict says what the error says of the deployment that returned it,
// for a router (runtime.Router): a rate limit is busy (the deployment is
// paused; another may take the request); an account out of quota or a key
// refused is down (the deployment is out); a server or connection error,
// an overload, a timeout or a malformed reply is unhealthy; a request the
// provider refused as bad, a reply too large, or a stream that broke
// after its text was sent are the request's own, fatal wherever it goes.
func (e *APIError) Verdict() runtime.Verdict {
	switch e.kind {
	case ErrRateLimited:
		return runtime.VerdictBusy
	case ErrQuotaExhausted, ErrAuth:
		return runtime.VerdictDown
	case ErrServer, ErrConnection, ErrMalformedResponse:
		return runtime.VerdictUnhealthy
	}
	return runtime.VerdictFatal
}

// Retryable reports whether a model call that failed with err may succeed
// if tried again: a timeout, or an *APIError whose Retryable method says so
// (a rate limit, a server or connection error, or the provider's
// x-should-retry); never a cancelled request or a stopped executor. It is
// the classification of EndpointConfig.Retry's default policy, for a
// runtime.Backoff of other delays.
func Retryable(err error) bool {
	if errors.Is(err, messages.ErrCancelled) || errors.Is(err, messages.ErrStopped) {
		return false
	}
	var api *APIError
	if errors.As(err, &api) {
		return api.Retryable()
	}
	return errors.Is(err, messages.ErrTimeout)
}

// statusError builds the error of a response with an error status, reading
// the provider's error body and retry headers.
func statusError(p Provider, status int, h http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{Provider: p, StatusCode: status}
	e.Type, e.Code, e.Message = parseErrorBody(p, body)
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	switch {
	case status == http.StatusTooManyRequests && (e.Code == wire.CodeInsufficientQuota || e.Type == wire.CodeInsufficientQuota):
		e.kind = ErrQuotaExhausted
	case p == Anthropic && status == http.StatusBadRequest && strings.Contains(strings.ToLower(e.Message), "credit balance"):
		// Anthropic refuses an account out of credit with a 400.
		e.kind = ErrQuotaExhausted
	case status == http.StatusTooManyRequests:
		e.kind = ErrRateLimited
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.kind = ErrAuth
	case status == http.StatusRequestTimeout || status == http.StatusConflict || status >= 500:
		e.kind = ErrServer
	default:
		e.kind = ErrBadRequest
	}
	if d, ok := wire.ParseRetryAfter(h, now); ok {
		e.RetryAfterDelay = d
	}
	e.shouldRetry, e.hasShouldRetry = shouldRetryHeader(h)
	if e.kind == ErrRateLimited {
		e.ResetAt = now.Add(e.RetryAfterDelay)
		if e.RetryAfterDelay == 0 {
			// No retry-after: the exhausted budget's reset says when.
			if rl, ok := parseRateLimit(p, h, now); ok {
				reset := rl.Requests.Reset
				if rl.Tokens.HasReset && rl.Tokens.Reset.After(reset) && (rl.Tokens.HasRemaining && rl.Tokens.Remaining == 0) {
					reset = rl.Tokens.Reset
				}
				if reset.After(now) {
					e.ResetAt, e.RetryAfterDelay = reset, reset.Sub(now)
				}
			}
		}
	}
	return e
}

// shouldRetryHeader reads the x-should-retry header by which OpenAI and
// Anthropic tell a client whether to retry; ok is false unless it is
// exactly "true" or "false", the only values the official SDKs act on.
func shouldRetryHeader(h http.Header) (retry, ok bool) {
	switch h.Get("X-Should-Retry") {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// droppedBody is the error of a response whose body could not be read: a
// connection error, retried unless the provider's x-should-retry said
// "false", as Anthropic's SDK treats it.
func droppedBody(p Provider, h http.Header, err error) *APIError {
	e := transportError(p, ErrConnection, err)
	if retry, ok := shouldRetryHeader(h); ok && !retry {
		e.shouldRetry, e.hasShouldRetry = false, true
	}
	return e
}

// parseErrorBody reads type, code and message from either provider's error
// body; it returns empty strings for a body it does not recognise.
func parseErrorBody(p Provider, body []byte) (typ, code, msg string) {
	if p == Anthropic {
		var b wire.AnthropicErrorBody
		if json.Unmarshal(body, &b) == nil && b.Error.Type != "" {
			return b.Error.Type, "", b.Error.Message
		}
	}
	var o wire.OpenAIErrorBody
	if json.Unmarshal(body, &o) == nil && (o.Error.Message != "" || o.Error.Type != "") {
		return o.Error.Type, o.Error.CodeString(), o.Error.Message
	}
	return "", "", ""
}

// transportError wraps a failure to get or read a response.
func transportError(p Provider, kind error, err error) *APIError {
	return &APIError{Provider: p, kind: kind, err: err}
}

func malformed(p Provider, status int, format string, args ...any) *APIError {
	return &APIError{Provider: p, StatusCode: status, kind: ErrMalformedResponse, Message: fmt.Sprintf(format, args...)}
}
