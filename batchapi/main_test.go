package batchapi

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestMain checks that no run leaves a goroutine behind: its actors, its
// requests to the provider and its online requests all end with Run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	openAIKey    = "sk-test-batchapi-0001"
	anthropicKey = "sk-ant-test-batchapi-0001"
	// poll is the tests' poll interval: the batch clock is the
	// simulator's, moved by AdvanceBatches, so polls only need to be
	// frequent.
	poll = 2 * time.Millisecond
)

// env is a simulator, a model of one provider on it, and the HTTP client
// of the batch API, which counts what it sends and can steer the
// simulator's answers.
type env struct {
	sim    *simtest.Recording
	model  *imodel.Model
	ex     *runtime.Executor
	client *http.Client
	hooks  *hooks
	dir    string
}

// start starts a simulator for cfg and a model of provider p on it.
func start(t *testing.T, p imodel.Provider, cfg simulator.Config) *env {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = 7
	}
	if cfg.CompletionTokens == 0 {
		cfg.CompletionTokens = 5
	}
	sim := simtest.StartRecording(t, cfg, nil)
	rc := runtime.DefaultConfig()
	rc.RequestsPerInterval = runtime.Unlimited
	ex, err := runtime.Start(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ex.StopNow(c)
	})
	ep := imodel.EndpointConfig{Provider: p, BaseURL: sim.URL + "/v1", APIKey: openAIKey, Model: "gpt-4o-mini",
		Retry: runtime.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Retryable: imodel.Retryable}}
	if p == imodel.Anthropic {
		ep.APIKey, ep.Model = anthropicKey, "claude-sonnet-4-5"
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	model, err := imodel.New(ex, ep, imodel.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { model.Close() })
	h := &hooks{base: tr, created: make(chan struct{}, 1000), attempts: make(chan struct{}, 1000)}
	return &env{sim: sim, model: model, ex: ex, client: &http.Client{Transport: h}, hooks: h, dir: t.TempDir()}
}

// config is a run's configuration for the tests: fast polls, a journal in
// the test's directory.
func (e *env) config() Config {
	return Config{Journal: filepath.Join(e.dir, "journal.jsonl"), Poll: poll, HTTPClient: e.client, Grace: 5 * time.Second}
}

// hooks is the batch API's transport in the tests: it tells of every batch
// created, and can make the simulator lose the answer to a create.
type hooks struct {
	base     http.RoundTripper
	created  chan struct{} // a value for each create answered with success
	attempts chan struct{} // a value for each create tried

	// rewrite, if set, may replace the answer to a request.
	rewrite func(r *http.Request, resp *http.Response) *http.Response
	// fault, if set, names a simulator fault for a request, or "".
	fault func(r *http.Request) string

	mu sync.Mutex
	// loseCreates makes the simulator drop the connection after that
	// many creates have taken effect, as if their answers were lost.
	loseCreates int
	// failCreates makes that many creates fail before they reach the
	// simulator.
	failCreates int
	creates     int // create requests sent
}

func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/v1/batches") || strings.HasSuffix(r.URL.Path, "/v1/messages/batches"))
}

func (h *hooks) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	rewrite, fault := h.rewrite, h.fault
	h.mu.Unlock()
	if fault != nil {
		if f := fault(r); f != "" {
			r = r.Clone(r.Context())
			r.Header.Set(simulator.HeaderFault, f)
		}
	}
	if !isCreate(r) {
		resp, err := h.base.RoundTrip(r)
		if err == nil && rewrite != nil {
			resp = rewrite(r, resp)
		}
		return resp, err
	}
	h.attempts <- struct{}{}
	h.mu.Lock()
	h.creates++
	lose := h.loseCreates > 0
	if lose {
		h.loseCreates--
	}
	fail := !lose && h.failCreates > 0
	if fail {
		h.failCreates--
	}
	n := h.creates
	h.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("test: the connection failed before the create was sent")
	}
	if lose {
		r = r.Clone(r.Context())
		r.Header.Set(simulator.HeaderFault, "reset")
		r.Header.Set(simulator.HeaderFaultTimes, "1")
		r.Header.Set(simulator.HeaderRequestID, fmt.Sprintf("lost-create-%d", n))
	}
	resp, err := h.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		h.created <- struct{}{}
	}
	return resp, err
}

// waitCreated waits for n batches to be created, and then interrupts the
// run with cancel; it runs on a goroutine of its own, so it reports a
// failure with t.Error.
func (h *hooks) waitCreated(t *testing.T, n int, cancel context.CancelFunc) {
	defer cancel()
	for i := range n {
		select {
		case <-h.created:
		case <-time.After(20 * time.Second):
			t.Errorf("%d of %d batches created within 20 s", i, n)
			return
		}
	}
}

// chat is request i: a short chat with a key of its own.
func chat(i int) Request {
	return Request{
		Key: fmt.Sprintf("id:q-%05d", i),
		Payload: map[string]any{
			"messages":   []any{map[string]any{"role": "user", "content": fmt.Sprintf("Say hello to number %d.", i)}},
			"max_tokens": 5,
		},
		Line: i + 1,
	}
}

func chats(n int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = chat(i)
	}
	return reqs
}

// batchesCreated is how many batches of provider p the simulator created.
func batchesCreated(sim *simtest.Recording, p imodel.Provider) int64 {
	st := sim.Stats().Batches
	if p == imodel.Anthropic {
		return st.AnthropicBatches
	}
	return st.OpenAIBatches
}

// collect runs requests and returns the outcomes by key, failing the test
// on a key delivered twice.
func collect(t *testing.T, ctx context.Context, e *env, cfg Config, reqs []Request) (map[string]Outcome, Stats, error) {
	t.Helper()
	got := map[string]Outcome{}
	seq := func(yield func(Request) bool) {
		for _, q := range reqs {
			if !yield(q) {
				return
			}
		}
	}
	st, err := Run(ctx, e.model, cfg, seq, func(o Outcome) {
		if _, dup := got[o.Key]; dup {
			t.Errorf("key %s delivered twice", o.Key)
		}
		got[o.Key] = o
	})
	return got, st, err
}

// checkCompleted checks that every request of reqs completed once, with
// usage.
func checkCompleted(t *testing.T, got map[string]Outcome, reqs []Request) {
	t.Helper()
	if len(got) != len(reqs) {
		t.Errorf("%d outcomes for %d requests", len(got), len(reqs))
	}
	bad := 0
	for _, q := range reqs {
		o, ok := got[q.Key]
		switch {
		case !ok:
			t.Errorf("%s: no outcome", q.Key)
		case o.Event.Status != messages.StatusCompleted:
			info, _ := o.Event.Failure()
			t.Errorf("%s: %v (%s: %s)", q.Key, o.Event.Status, info.Kind, info.Message)
		case !o.Event.Tokens.HasActual || o.Event.Tokens.Actual <= 0:
			t.Errorf("%s: no usage: %+v", q.Key, o.Event.Tokens)
		default:
			continue
		}
		if bad++; bad > 5 {
			t.Fatal("more than 5 bad outcomes")
		}
	}
}

var bg = context.Background()

// providers are the providers every end-to-end test runs against.
var providers = []imodel.Provider{imodel.OpenAI, imodel.Anthropic}
