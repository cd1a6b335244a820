package sdktest

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/simtest"
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

// sim is a simulator on the loopback interface that records the requests it
// receives, with an HTTP client for the SDKs whose connections are closed
// when the test ends.
type sim struct {
	*simtest.Recording
	Client *http.Client
}

// startSim starts a simulator for cfg, accepting the test keys, until the
// test ends. A response to a request that carries one of the simulator's
// fault hooks also carries retry-after-ms: 1 unless the simulator sets its
// own, so that retries of a status that names no delay take a millisecond
// instead of the SDKs' half-second backoff.
func startSim(t *testing.T, cfg simulator.Config) *sim {
	t.Helper()
	cfg.Keys = append(cfg.Keys, openAIKey, anthropicKey, azureKey)
	rec := simtest.StartRecording(t, cfg, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(simulator.HeaderShouldRetry)+r.Header.Get(simulator.HeaderFault) != "" {
				w.Header().Set("retry-after-ms", "1")
			}
			h.ServeHTTP(w, r)
		})
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &sim{Recording: rec, Client: &http.Client{Transport: tr}}
}
