package batchapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// api makes the HTTP requests of a provider's batch API with the model's
// credentials and headers.
type api struct {
	model   *imodel.Model
	client  *http.Client
	base    string      // the model's base URL, without a trailing slash
	header  http.Header // the model's headers: credentials, version, gateway headers
	secrets []string    // scrubbed from every error
}

// newAPI reads what the batch API needs from the model: its base URL and
// the headers and secrets of a request it would make.
func newAPI(m *imodel.Model, client *http.Client) (*api, error) {
	probe, err := m.NewRequest(map[string]any{})
	if err != nil {
		return nil, err
	}
	h := probe.Endpoint.Header.Clone()
	h.Del("Content-Type")
	return &api{model: m, client: client, base: strings.TrimSuffix(m.BaseURL(), "/"), header: h, secrets: probe.Secrets}, nil
}

// maxAnswerBytes caps the answers read whole (batch objects, lists); result
// files are read as streams.
const maxAnswerBytes = 32 << 20

// send makes one request to path under the base URL and returns the
// response for a success status. An error status is the *imodel.APIError a
// model call would get for it; a failure to connect is a *callError.
func (a *api) send(ctx context.Context, method, path, contentType string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, a.scrub(fmt.Errorf("%w: %w", messages.ErrInvalidRequest, err))
	}
	req.Header = a.header.Clone()
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
		req.ContentLength = size
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, a.scrub(&callError{op: method + " " + path, err: err})
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	_, err = a.model.ReadResponse(resp.StatusCode, resp.Header, b)
	if err == nil { // a status the model does not call an error
		err = fmt.Errorf("batchapi: %s %s: status %d", method, path, resp.StatusCode)
	}
	return nil, a.scrub(err)
}

// call sends a JSON request (in may be nil, or JSON bytes) and decodes
// the JSON answer into out.
func (a *api) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	var size int64
	contentType := ""
	if in != nil {
		b, raw := in.([]byte) // JSON already
		if !raw {
			var err error
			if b, err = json.Marshal(in); err != nil {
				return err
			}
		}
		body, size, contentType = bytes.NewReader(b), int64(len(b)), "application/json"
	}
	resp, err := a.send(ctx, method, path, contentType, body, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return a.scrub(&callError{op: method + " " + path, err: err})
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("batchapi: %s %s: the answer does not decode: %w", method, path, err)
	}
	return nil
}

// scrub removes the credentials from err.
func (a *api) scrub(err error) error { return messages.ScrubError(err, a.secrets) }

// callError is a request to the batch API that got no answer: the
// connection failed or broke.
type callError struct {
	op  string
	err error
}

func (e *callError) Error() string { return "batchapi: " + e.op + ": " + e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// Kind names the error's class in snapshots, as imodel names a connection
// error.
func (e *callError) Kind() string {
	if errors.Is(e.err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "connection"
}

// transient reports whether a request to the batch API that failed with
// err may succeed if made again: a rate limit, a server error or a broken
// connection, as for a model call; never a cancelled context.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ce *callError
	if errors.As(err, &ce) {
		return true
	}
	return imodel.Retryable(err)
}

// ambiguous reports whether a request that failed with err may still have
// taken effect at the provider: its answer was lost, or the provider failed
// while handling it.
func ambiguous(err error) bool {
	var ce *callError
	if errors.As(err, &ce) {
		return true
	}
	var ae *imodel.APIError
	return errors.As(err, &ae) && ae.StatusCode >= 500
}
