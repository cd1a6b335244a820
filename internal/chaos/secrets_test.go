package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// secretKey is the key that must never be shown.
const secretKey = "sk-test-SECRET-4f1d2c"

// debugLogger logs everything, at debug level, to buf.
func debugLogger(buf *runtimetest.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// snapshots collects every snapshot an executor publishes.
type snapshots struct {
	mu  sync.Mutex
	evs []messages.Event
}

func (s *snapshots) observe(ev messages.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.mu.Unlock()
}

func (s *snapshots) all() []messages.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]messages.Event(nil), s.evs...)
}

// shown lists every text a snapshot shows: its JSON, its request, its
// response, its error and its log.
func shown(t *testing.T, ev messages.Event) []string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	out := []string{string(b)}
	ep := ev.Endpoint()
	out = append(out, ep.URL, fmt.Sprint(ep.Header), string(ep.Payload))
	if resp, ok := ev.Response(); ok {
		out = append(out, fmt.Sprint(resp.Header), string(resp.Body), fmt.Sprintf("%+v", resp.Value))
	}
	if info, ok := ev.Failure(); ok {
		out = append(out, info.Message, fmt.Sprint(info.Details))
	}
	if err := ev.Err(); err != nil {
		out = append(out, err.Error(), fmt.Sprintf("%+v", err))
	}
	for _, tr := range ev.Log() {
		out = append(out, tr.Message)
	}
	out = append(out, fmt.Sprint(ev.Metadata()))
	return out
}

// noSecret fails t if the key appears in any of texts.
func noSecret(t *testing.T, where string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, secretKey) {
			t.Errorf("%s shows the key: %q", where, s)
		}
	}
}

// echoKey is a provider that repeats the key it was sent, as a provider's
// "incorrect API key" message does: in an error body, in a response header,
// and in a successful reply.
func echoKey(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" {
		key = r.Header.Get("X-Api-Key")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Echo", "key="+key)
	if r.Header.Get("X-Echo-Status") == "200" {
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"your key is %s"},"finish_reason":"stop"}]}`, key)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s.","type":"invalid_request_error","code":"invalid_api_key"}}`, key)
}

// startExecutor starts an executor, stopped when the test ends.
func startExecutor(t *testing.T, cfg runtime.Config) *runtime.Executor {
	t.Helper()
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ex.StopNow(context.Background()); err != nil {
			t.Errorf("StopNow: %v", err)
		}
	})
	return ex
}

func newModel(t *testing.T, ex *runtime.Executor, cfg imodel.EndpointConfig, opts ...imodel.Option) *imodel.Model {
	t.Helper()
	m, err := imodel.New(ex, cfg, opts...)
	if err != nil {
		t.Fatalf("imodel.New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestSecretsNeverShown runs OpenAI and Anthropic models holding a known key
// through success and every failure (each simulator fault, a 401 from a
// server that wants another key, a provider that echoes the key back, a
// timeout), plain calls and streams, with debug logging on, and a batch run
// with its debug log: the key is in no snapshot, error, log line or result.
func TestSecretsNeverShown(t *testing.T) {
	var logs runtimetest.Buffer
	logger := debugLogger(&logs)
	var snaps snapshots
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.Concurrency = 8
	cfg.Observer = snaps.observe
	cfg.Logger = logger
	ex := startExecutor(t, cfg)

	_, sim := simtest.Start(t, simulator.Config{Seed: 7, Keys: []string{secretKey}, SlowDelay: time.Minute})
	_, other := simtest.Start(t, simulator.Config{Seed: 7, Keys: []string{"sk-test-another-key-9a8b"}})
	echo := httptest.NewServer(http.HandlerFunc(echoKey))
	t.Cleanup(echo.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	retry := runtime.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond, Retryable: imodel.Retryable}
	faults := []string{"", "500", "503", "529", "429", "reset", "malformed", "truncate", "slow", "quota"}
	var errs []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	record := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			mu.Unlock()
		}
	}
	for _, p := range []imodel.Provider{imodel.OpenAI, imodel.Anthropic} {
		for _, base := range []string{sim, other, echo.URL} {
			m := newModel(t, ex, imodel.EndpointConfig{Provider: p, BaseURL: base, APIKey: secretKey,
				Model: "model-x", MaxAttempts: 2, Retry: retry, Timeout: 200 * time.Millisecond}, imodel.WithLogger(logger))
			for _, fault := range faults {
				if base != sim && fault != "" {
					continue
				}
				var opts []imodel.CallOption
				if fault != "" {
					opts = append(opts, imodel.WithHeader(simulator.HeaderFault, fault))
				}
				req := imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "hello " + fault}}, MaxTokens: 8}
				wg.Go(func() {
					cr, err := m.Chat(ctx, req, opts...)
					record(err)
					if cr != nil {
						noSecret(t, "chat reply", cr.Text, cr.ID)
					}
				})
				wg.Go(func() {
					s, err := m.Stream(ctx, req, opts...)
					if err != nil {
						record(err)
						return
					}
					for c := range s.Chunks() {
						noSecret(t, "stream chunk", c)
					}
					cr, err := s.Wait(ctx)
					record(err)
					noSecret(t, "stream reply", cr.Text)
				})
				wg.Go(func() {
					resp, err := m.Invoke(ctx, map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}}, "max_tokens": 8},
						append(opts, imodel.WithHeader("X-Echo-Status", "200"))...)
					record(err)
					if resp != nil {
						noSecret(t, "Invoke response", string(resp.Body), fmt.Sprint(resp.Header))
					}
				})
			}
		}
	}
	wg.Wait()
	noSecret(t, "an error", errs...)

	evs := snaps.all()
	kinds := map[string]bool{}
	redacted := map[string]bool{}
	for _, ev := range evs {
		noSecret(t, fmt.Sprintf("snapshot %v of %s", ev.Status, ev.ID), shown(t, ev)...)
		if info, ok := ev.Failure(); ok {
			kinds[info.Kind] = true
		}
		// Where the key was, the snapshots show it redacted: the checks
		// above had something to find.
		h := ev.Endpoint().Header
		redacted["Authorization"] = redacted["Authorization"] || h.Get("Authorization") == messages.Redacted
		redacted["X-Api-Key"] = redacted["X-Api-Key"] || h.Get("X-Api-Key") == messages.Redacted
		if resp, ok := ev.Response(); ok {
			redacted["X-Echo"] = redacted["X-Echo"] || resp.Header.Get("X-Echo") == "key="+messages.Redacted
			redacted["body"] = redacted["body"] || bytes.Contains(resp.Body, []byte("provided: "+messages.Redacted))
		}
	}
	for _, where := range []string{"Authorization", "X-Api-Key", "X-Echo", "body"} {
		if !redacted[where] {
			t.Errorf("no snapshot shows the key redacted in %s", where)
		}
	}
	// Every failure kind was met, so the check above covered each.
	for _, k := range []string{"server", "rate_limited", "connection", "malformed_response", "stream_broken", "timeout", "quota_exhausted", "auth"} {
		if !kinds[k] {
			t.Errorf("no request failed with %s; kinds seen: %v", k, kinds)
		}
	}
	if !strings.Contains(logs.String(), "imodel: attempt") {
		t.Error("the debug log has no attempt lines: the check saw nothing")
	}

	// A batch run, with its debug log and its results.
	var out bytes.Buffer
	var batchLogs runtimetest.Buffer
	blog := debugLogger(&batchLogs)
	input := `{"messages":[{"role":"user","content":"a"}],"max_tokens":4}` + "\n" +
		`{"messages":[{"role":"user","content":"b"}],"max_tokens":4,"id":"x"}` + "\n" + "not json\n"
	for _, ep := range []imodel.EndpointConfig{
		{Provider: imodel.OpenAI, BaseURL: sim, APIKey: secretKey, Model: "gpt-4o-mini"},
		{Provider: imodel.OpenAI, BaseURL: sim, APIKey: secretKey, Model: "gpt-4o-mini", Headers: map[string]string{simulator.HeaderFault: "500"}},
		{Provider: imodel.OpenAI, BaseURL: other, APIKey: secretKey, Model: "gpt-4o-mini"},
		{Provider: imodel.OpenAI, BaseURL: echo.URL, APIKey: secretKey, Model: "gpt-4o-mini"},
		{Provider: imodel.OpenAI, BaseURL: echo.URL, APIKey: secretKey, Model: "gpt-4o-mini", Headers: map[string]string{"X-Echo-Status": "200"}},
		{Provider: imodel.Anthropic, BaseURL: echo.URL, APIKey: secretKey, Model: "claude"},
	} {
		sum, err := batch.Run(ctx, batch.Config{Endpoint: ep, RPM: 600000, Concurrency: 2, MaxAttempts: 2, Queue: 4,
			Grace: 5 * time.Second, Logger: blog}, batch.Input{R: strings.NewReader(input)}, &out, nil)
		record(err)
		if sum != nil {
			var w bytes.Buffer
			sum.Snapshot().Write(&w)
			noSecret(t, "batch summary", w.String())
		}
	}
	noSecret(t, "a batch error", errs...)
	noSecret(t, "a batch result", out.String())
	noSecret(t, "the batch log", batchLogs.String())
	noSecret(t, "the log", logs.String())
	if n := strings.Count(out.String(), "\n"); n != 18 {
		t.Errorf("%d batch result lines, want 18:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), messages.Redacted) {
		t.Errorf("no batch result shows %s where the echoed key was:\n%s", messages.Redacted, out.String())
	}
}

// TestResponseBodyCapped sends Invoke and Stream to a server whose body
// never ends: each is cut at MaxResponseBytes with ErrResponseTooLarge, not
// retried, and the server sees the client go away.
func TestResponseBodyCapped(t *testing.T) {
	endless := &Endless{MaxDuration: 20 * time.Second}
	srv := httptest.NewServer(endless)
	t.Cleanup(srv.Close)
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	ex := startExecutor(t, cfg)
	const limit = 64 << 10
	m := newModel(t, ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: srv.URL, APIKey: secretKey,
		Model: "m", MaxResponseBytes: limit, MaxAttempts: 3,
		Retry: runtime.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Retryable: imodel.Retryable}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "more"}}}

	resp, err := m.Invoke(ctx, map[string]any{"messages": []map[string]string{{"role": "user", "content": "more"}}})
	if !errors.Is(err, imodel.ErrResponseTooLarge) {
		t.Fatalf("Invoke: %v, want ErrResponseTooLarge", err)
	}
	if resp.Event.Attempt != 1 || len(resp.Body) > limit {
		t.Errorf("Invoke: %d attempts, body of %d bytes", resp.Event.Attempt, len(resp.Body))
	}

	s, err := m.Stream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Wait(ctx)
	if !errors.Is(err, imodel.ErrResponseTooLarge) {
		t.Fatalf("Stream: %v, want ErrResponseTooLarge", err)
	}
	if cr.Event.Attempt != 1 || cr.Text == "" || len(cr.Text) > limit {
		t.Errorf("Stream: %d attempts, partial text of %d bytes", cr.Event.Attempt, len(cr.Text))
	}
	m.Close()
	srv.CloseClientConnections()
	srv.Close() // waits for the handlers
	if endless.Served() != 2 || endless.ClientGone() != 2 || endless.ReachedLimit() != 0 {
		t.Errorf("endless server: %d served, %d ended by the client, %d at its own bounds",
			endless.Served(), endless.ClientGone(), endless.ReachedLimit())
	}
}

// TestTLSVerifiedByDefault: a server with a self-signed certificate is
// refused with a certificate error, unless InsecureSkipVerify is set, which
// logs a warning.
func TestTLSVerifiedByDefault(t *testing.T) {
	sim, err := simulator.New(simulator.Config{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sim.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	t.Cleanup(func() { sim.Close(); srv.Close() })
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("test server at %s, want 127.0.0.1", srv.URL)
	}
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	ex := startExecutor(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "hi"}}, MaxTokens: 4}
	ep := imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: srv.URL + "/v1", APIKey: secretKey, Model: "gpt-4o-mini",
		MaxAttempts: 1}

	var logs runtimetest.Buffer
	strict := newModel(t, ex, ep, imodel.WithLogger(debugLogger(&logs)))
	_, err = strict.Chat(ctx, req)
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if !errors.As(err, &verify) || !errors.As(err, &unknown) || !errors.Is(err, imodel.ErrConnection) {
		t.Fatalf("Chat over TLS with an unknown CA: %v, want a certificate verification error", err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a verifying model logged a warning:\n%s", logs.String())
	}

	ep.InsecureSkipVerify = true
	insecure := newModel(t, ex, ep, imodel.WithLogger(debugLogger(&logs)))
	cr, err := insecure.Chat(ctx, req)
	if err != nil || cr.Text == "" {
		t.Fatalf("Chat with InsecureSkipVerify: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "TLS certificate verification is off") {
		t.Errorf("InsecureSkipVerify logged no warning:\n%s", logs.String())
	}
	noSecret(t, "the log", logs.String())
	insecure.Close()
	strict.Close()
}

// TestRequestURLsValidated: a base URL that is not absolute http or https
// is a *messages.ConfigError naming BaseURL, for a model and for a batch run, and
// the error does not show the key.
func TestRequestURLsValidated(t *testing.T) {
	cfg := runtime.DefaultConfig()
	ex := startExecutor(t, cfg)
	for _, base := range []string{"ftp://127.0.0.1/v1", "file:///etc/passwd", "javascript:alert(1)", "127.0.0.1:8080/v1",
		"//127.0.0.1/v1", "http:///v1", "https://" + secretKey + "@127.0.0.1/v1", "unix:///tmp/sock", "http://[::1"} {
		for _, p := range []imodel.Provider{imodel.OpenAI, imodel.Anthropic, imodel.OpenAICompatible, imodel.Generic} {
			m, err := imodel.New(ex, imodel.EndpointConfig{Provider: p, BaseURL: base, APIKey: secretKey})
			var ce *messages.ConfigError
			if m != nil || !errors.As(err, &ce) || ce.Field != "BaseURL" || !errors.Is(err, messages.ErrInvalidConfig) {
				t.Errorf("%s %q: model %v, error %v; want a *messages.ConfigError for BaseURL", p, base, m != nil, err)
			}
			if err != nil {
				noSecret(t, "a config error", err.Error())
			}
		}
		_, err := batch.Run(context.Background(), batch.Config{
			Endpoint: imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: base, APIKey: secretKey},
			RPM:      60, Concurrency: 1, MaxAttempts: 1, Queue: 1,
		}, batch.Input{R: strings.NewReader("{}\n")}, &bytes.Buffer{}, nil)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != "BaseURL" {
			t.Errorf("batch.Run with base URL %q: %v, want a *messages.ConfigError for BaseURL", base, err)
		}
		if err != nil {
			noSecret(t, "a batch config error", err.Error())
		}
	}
}
