package imodel

import (
	"errors"
	"net/http"
	"testing"

	"github.com/lionactor/lionactor/runtime"
)

// ReadResponse reads an answer that came by another way than a call as a
// call reads its response.
func TestReadResponseReadsAsACall(t *testing.T) {
	ex, err := runtime.Start(runtime.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ex.StopNow(ctx)
	for _, p := range []Provider{OpenAI, Anthropic} {
		m, err := New(ex, EndpointConfig{Provider: p, APIKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if want := p.DefaultBaseURL(); m.BaseURL() != want {
			t.Errorf("%s: BaseURL %q, want %q", p, m.BaseURL(), want)
		}
		res, err := m.ReadResponse(http.StatusOK, nil, []byte(`{"usage":{"prompt_tokens":3,"completion_tokens":4,"input_tokens":0}}`))
		if err != nil || res.Usage == nil || res.Usage.TotalTokens != 7 || res.StatusCode != 200 {
			t.Errorf("%s: success: %+v, %v", p, res, err)
		}
		for _, tc := range []struct {
			status int
			body   string
			is     error
			retry  bool
		}{
			{429, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`, ErrRateLimited, true},
			{400, `{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`, ErrBadRequest, false},
			{529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, ErrServer, true},
			{200, `not json`, ErrMalformedResponse, false},
		} {
			res, err := m.ReadResponse(tc.status, nil, []byte(tc.body))
			var api *APIError
			if !errors.Is(err, tc.is) || !errors.As(err, &api) || Retryable(err) != tc.retry || string(res.Body) != tc.body {
				t.Errorf("%s %d: %v (retryable %v), body %q", p, tc.status, err, Retryable(err), res.Body)
			}
		}
	}
}
