package simtest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const chat = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`

// post sends a chat request to url with a client whose connections are
// closed when the test ends.
func post(t *testing.T, url string) *http.Response {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(chat))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-test-simtest")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestStart(t *testing.T) {
	sim, base := Start(t, simulator.Config{Seed: 1})
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/v1") {
		t.Errorf("base URL %q, want http://127.0.0.1:PORT/v1", base)
	}
	if resp := post(t, base+"/chat/completions"); resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
	if n := sim.Stats().Requests; n != 1 {
		t.Errorf("the simulator counted %d requests, want 1", n)
	}
}

func TestStartRecording(t *testing.T) {
	rec := StartRecording(t, simulator.Config{Seed: 1}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Wrapped", "yes")
			h.ServeHTTP(w, r)
		})
	})
	if len(rec.Requests()) != 0 {
		t.Fatal("requests recorded before any was sent")
	}
	resp := post(t, rec.URL+"/v1/chat/completions?x=1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Wrapped") != "yes" {
		t.Errorf("status %d, X-Wrapped %q", resp.StatusCode, resp.Header.Get("X-Wrapped"))
	}
	got := rec.Last(t)
	if got.Method != http.MethodPost || got.Path != "/v1/chat/completions" || got.Query != "x=1" ||
		got.Header.Get("Content-Type") != "application/json" || string(got.Body) != chat {
		t.Errorf("recorded %+v", got)
	}
	if f := got.Fields(t); f["model"] != "gpt-4o-mini" || f["max_tokens"] != 2.0 {
		t.Errorf("fields %v", f)
	}
	if n := rec.Stats().Requests; n != 1 || len(rec.Requests()) != 1 {
		t.Errorf("the simulator counted %d requests, the recording %d; want 1", n, len(rec.Requests()))
	}
}
