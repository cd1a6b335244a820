package imodel

import (
	"net/http"

	"github.com/lionactor/lionactor/messages"
)

// BaseURL returns the model's API root with the provider's default applied,
// such as "https://api.openai.com/v1". It never carries credentials: a
// base URL with a user part is refused by New.
func (m *Model) BaseURL() string { return m.cfg.BaseURL }

// ReadResponse reads a provider's answer to one of the model's requests
// that came by another way than a call of the model, such as a line of the
// results of a provider's batch, as a call reads its response: for a
// success status, the result with the usage the body reports; for an error
// status, the *APIError a call would fail with, of the same kind, retry
// advice and details; for a success body that is not JSON, an error
// matching ErrMalformedResponse. header may be nil.
func (m *Model) ReadResponse(status int, header http.Header, body []byte) (messages.Result, error) {
	return m.read(messages.Result{StatusCode: status, Header: header}, body, decodeGeneric)
}
