package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: the server's
// listeners, connections and delays must all end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a started Server with a client of its own.
type testServer struct {
	*Server
	t      testing.TB
	url    string
	client *http.Client
}

// start starts a server for cfg on the loopback interface and closes it,
// and the client's idle connections, when the test ends.
func start(t testing.TB, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return startServer(t, s)
}

// startServer starts s, which a test may have adjusted after New.
func startServer(t testing.TB, s *Server) *testServer {
	t.Helper()
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		tr.CloseIdleConnections()
	})
	return &testServer{Server: s, t: t, url: url, client: &http.Client{Transport: tr}}
}

// request describes one request to the server.
type request struct {
	path    string
	key     string // sent in the provider's header unless noKey
	noKey   bool
	body    any // encoded as JSON unless it is a string or []byte
	headers map[string]string
	ctx     context.Context
}

// response is a response read in full.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error // from the round trip or from reading the body
}

// do sends req and reads the whole response.
func (ts *testServer) do(req request) response {
	ts.t.Helper()
	var body []byte
	switch b := req.body.(type) {
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			ts.t.Fatalf("encoding the request: %v", err)
		}
	}
	ctx := req.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+req.path, bytes.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	key := req.key
	if key == "" {
		key = "sk-test"
	}
	if req.path == "/v1/messages" {
		hr.Header.Set("anthropic-version", "2023-06-01")
		if !req.noKey {
			hr.Header.Set("x-api-key", key)
		}
	} else if !req.noKey {
		hr.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range req.headers {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	resp, err := ts.client.Do(hr)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// decode decodes the body of r into v, failing the test if it cannot.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if r.err != nil {
		t.Fatalf("response error: %v", r.err)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %T from %d %s: %v", v, r.status, r.body, err)
	}
	return v
}

// fakeClock is a settable clock for the rate-limit arithmetic.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// chatBody returns a chat request for one user message.
func chatBody(model, text string, extra map[string]any) map[string]any {
	b := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": text}},
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// messagesBody returns an Anthropic request for one user message.
func messagesBody(model, text string, maxTokens int, extra map[string]any) map[string]any {
	b := map[string]any{
		"model":      model,
		"max_tokens": maxTokens,
		"messages":   []map[string]any{{"role": "user", "content": text}},
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}
