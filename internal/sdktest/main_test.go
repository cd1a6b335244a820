package sdktest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/simulator"
)

// TestMain checks that no test leaves a goroutine behind: the SDKs'
// connections and streams must end with the tests that opened them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Test keys: made up, accepted only by the simulator.
const (
	openAIKey    = "sk-test-sdk-openai-7d2c"
	anthropicKey = "sk-ant-test-sdk-4b9e"
	azureKey     = "azure-test-sdk-1f6a"
	chatModel    = "gpt-4o-mini"
	claudeModel  = "claude-sonnet-4-5"
	embedModel   = "text-embedding-3-small"
)

// recorded is one request as the simulator received it.
type recorded struct {
	Path, Query string
	Header      http.Header
	Body        []byte
}

// sim is a simulator on the loopback interface that records the requests it
// receives, with an HTTP client for the SDKs whose connections are closed
// when the test ends.
type sim struct {
	*simulator.Server
	URL    string // the root; OpenAI's API is under URL+"/v1"
	Client *http.Client

	mu   sync.Mutex
	reqs []recorded
}

// startSim starts a simulator for cfg, accepting the test keys, until the
// test ends. A response to a request that carries one of the simulator's
// fault hooks also carries retry-after-ms: 1 unless the simulator sets its
// own, so that retries of a status that names no delay take a millisecond
// instead of the SDKs' half-second backoff.
func startSim(t *testing.T, cfg simulator.Config) *sim {
	t.Helper()
	cfg.Keys = append(cfg.Keys, openAIKey, anthropicKey, azureKey)
	s, err := simulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &sim{Server: s}
	h := s.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		e.mu.Lock()
		e.reqs = append(e.reqs, recorded{Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
		e.mu.Unlock()
		if r.Header.Get(simulator.HeaderShouldRetry)+r.Header.Get(simulator.HeaderFault) != "" {
			w.Header().Set("retry-after-ms", "1")
		}
		h.ServeHTTP(w, r)
	}))
	tr := &http.Transport{}
	e.URL, e.Client = ts.URL, &http.Client{Transport: tr}
	t.Cleanup(func() {
		s.Close()
		ts.Close()
		tr.CloseIdleConnections()
	})
	return e
}

// requests returns the requests received so far.
func (e *sim) requests() []recorded {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reqs)
}
