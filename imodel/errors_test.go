package imodel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// fakeServer serves fixed answers on the loopback interface, for replies
// the simulator never gives.
func fakeServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// apiError returns err's *APIError, failing the test without one.
func apiError(t *testing.T, err error) *APIError {
	t.Helper()
	api, ok := errors.AsType[*APIError](err)
	if !ok {
		t.Fatalf("error %v (%T) is no *APIError", err, err)
	}
	return api
}

// checkFailed checks a request that ended FAILED after attempts attempts
// with an error matching sentinel, of the given kind.
func checkFailed(t *testing.T, ev messages.Event, err error, sentinel error, kind string, attempts int) {
	t.Helper()
	if ev.Status != messages.StatusFailed || ev.Attempt != attempts {
		t.Errorf("ended %v after %d attempts, want FAILED after %d", ev.Status, ev.Attempt, attempts)
	}
	if !errors.Is(err, sentinel) || !errors.Is(ev.Err(), sentinel) {
		t.Errorf("error %v does not match %v", err, sentinel)
	}
	info, ok := ev.Failure()
	if !ok || info.Kind != kind || info.Message != err.Error() {
		t.Errorf("snapshot error %+v, want kind %q", info, kind)
	}
}

func TestRateLimitIsWaitedOutAndPausesTheBudget(t *testing.T) {
	const retryAfter = 400 * time.Millisecond
	e := startSim(t, simulator.Config{FaultRetryAfter: retryAfter})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, openAIConfig(e))

	h, err := m.Submit(ctx, chatPayloadOf("limited"), fault("429", 1, "rate-1")...)
	if err != nil {
		t.Fatal(err)
	}
	var retry messages.Event
	for ev := range h.Events() {
		if ev.Status == messages.StatusQueued && ev.Attempt == 1 {
			retry = ev // the 429 came back; attempt 2 is scheduled
			break
		}
	}
	if retry.Status == 0 {
		t.Fatal("no retry snapshot")
	}
	pauseEnd := waitPaused(t, ex)
	// Submitted during the pause, another request waits for its end.
	other, err := m.Submit(ctx, chatPayloadOf("bystander"))
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(h)
	otherEnd, _ := other.Wait(ctx)

	log := retry.Log()
	retryAt, note := log[len(log)-1].At, log[len(log)-1].Message
	if !strings.Contains(note, "after attempt 1 failed: imodel: openai 429 rate_limit_exceeded") {
		t.Errorf("retry note %q", note)
	}
	starts := callStarts(evs)
	final := evs[len(evs)-1]
	if final.Status != messages.StatusCompleted || final.Attempt != 2 {
		t.Fatalf("ended %v after %d attempts, want COMPLETED after 2", final.Status, final.Attempt)
	}
	if wait := starts[2].Sub(retryAt); wait < retryAfter {
		t.Errorf("attempt 2 started %v after the 429, want at least %v", wait, retryAfter)
	}
	if pauseEnd.Before(starts[1].Add(retryAfter-clockSlack)) || pauseEnd.After(retryAt.Add(retryAfter+clockSlack)) {
		t.Errorf("paused until %v; the 429 arrived between %v and %v", pauseEnd, starts[1], retryAt)
	}
	if otherEnd.Status != messages.StatusCompleted || otherEnd.Timings().CallStarted.Before(pauseEnd.Add(-clockSlack)) {
		t.Errorf("the other request started at %v, before the pause ended at %v", otherEnd.Timings().CallStarted, pauseEnd)
	}
	if st := e.Stats(); st.ByStatus[429] != 1 || st.ByStatus[200] != 2 {
		t.Errorf("simulator saw %v", st.ByStatus)
	}
	if ex.Stats().Retries != 1 {
		t.Errorf("executor stats %+v", ex.Stats())
	}
}

func TestRateLimitError(t *testing.T) {
	e, _, m, an := setup(t, simulator.Config{FaultRetryAfter: 250 * time.Millisecond}, nil)
	before := time.Now()
	resp, err := m.Invoke(ctx, chatPayloadOf("x"), append(fault("429", 0, ""), WithMaxAttempts(1))...)
	checkFailed(t, resp.Event, err, ErrRateLimited, "rate_limited", 1)
	api := apiError(t, err)
	if api.StatusCode != 429 || api.Type != wire.TypeRequests || api.Code != wire.CodeRateLimitExceeded ||
		api.RetryAfterDelay != 250*time.Millisecond || api.RetryAfter() != api.RetryAfterDelay || !api.Retryable() {
		t.Errorf("APIError %+v", api)
	}
	if p := api.PauseUntil(); p.Before(before.Add(250*time.Millisecond)) || p.After(time.Now().Add(250*time.Millisecond)) {
		t.Errorf("PauseUntil %v", p)
	}
	want := "imodel: openai 429 rate_limit_exceeded: Rate limit reached for gpt-4o-mini. Please try again in 250ms."
	if api.Error() != want {
		t.Errorf("message %q, want %q", api.Error(), want)
	}
	info, _ := resp.Event.Failure()
	wantDetails := map[string]string{"provider": "openai", "status": "429", "type": "requests", "code": "rate_limit_exceeded", "retry_after_ms": "250"}
	if fmt.Sprint(info.Details) != fmt.Sprint(wantDetails) || fmt.Sprint(api.Details()) != fmt.Sprint(wantDetails) {
		t.Errorf("details %v, want %v", info.Details, wantDetails)
	}
	if r, ok := resp.Event.Response(); !ok || r.StatusCode != 429 || resp.StatusCode != 429 || len(resp.Body) == 0 {
		t.Errorf("the 429 response is not kept: %+v", r)
	}

	// Anthropic: retry-after in whole seconds, at least one.
	_, err = an.Chat(ctx, hello("x", 1), append(fault("429", 0, ""), WithMaxAttempts(1))...)
	api = apiError(t, err)
	if api.StatusCode != 429 || api.Type != wire.AnthropicRateLimitError || api.Code != "" || api.RetryAfterDelay != time.Second ||
		!errors.Is(err, ErrRateLimited) || api.Details()["type"] != wire.AnthropicRateLimitError {
		t.Errorf("Anthropic APIError %+v", api)
	}
	if !strings.HasPrefix(api.Error(), "imodel: anthropic 429 rate_limit_error: ") {
		t.Errorf("message %q", api.Error())
	}
	if n := e.Stats().Requests; n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestQuotaIsNotRetried(t *testing.T) {
	e, _, oa, an := setup(t, simulator.Config{}, nil)
	resp, err := oa.Chat(ctx, hello("x", 1), fault("quota", 0, "")...)
	checkFailed(t, resp.Event, err, ErrQuotaExhausted, "quota_exhausted", 1)
	api := apiError(t, err)
	if api.StatusCode != 429 || api.Code != wire.CodeInsufficientQuota || api.Retryable() || !api.PauseUntil().IsZero() {
		t.Errorf("APIError %+v", api)
	}
	// Anthropic refuses an account out of credit with a 400.
	resp, err = an.Chat(ctx, hello("x", 1), fault("quota", 0, "")...)
	checkFailed(t, resp.Event, err, ErrQuotaExhausted, "quota_exhausted", 1)
	if api := apiError(t, err); api.StatusCode != 400 || api.Type != wire.AnthropicInvalidRequestError || errors.Is(err, ErrBadRequest) {
		t.Errorf("Anthropic APIError %+v", api)
	}
	if n := e.Stats().Requests; n != 2 {
		t.Errorf("%d requests, want 2: a quota error was retried", n)
	}
}

func TestServerErrorsAreRetried(t *testing.T) {
	e, ex, oa, an := setup(t, simulator.Config{}, nil)
	for _, m := range []*Model{oa, an} {
		for _, code := range []string{"500", "503", "529"} {
			id := string(m.Provider()) + "-" + code
			resp, err := m.Chat(ctx, hello("retry me", 2), fault(code, 1, id)...)
			if err != nil || resp.Event.Status != messages.StatusCompleted || resp.Event.Attempt != 2 {
				t.Errorf("%s: %v after %d attempts: %v", id, resp.Event.Status, resp.Event.Attempt, err)
				continue
			}
			checkReply(t, resp.Text, 2, m.cfg.Model)
			var notes []string
			for _, tr := range resp.Event.Log() {
				notes = append(notes, tr.Message)
			}
			if joined := strings.Join(notes, "|"); !strings.Contains(joined, "after attempt 1 failed: imodel: "+string(m.Provider())+" "+code) {
				t.Errorf("%s: log %q", id, joined)
			}
		}
	}
	st := e.Stats()
	if st.ByStatus[500] != 2 || st.ByStatus[503] != 2 || st.ByStatus[529] != 2 || st.ByStatus[200] != 6 {
		t.Errorf("simulator saw %v", st.ByStatus)
	}
	if ex.Stats().Retries != 6 {
		t.Errorf("%d retries, want 6", ex.Stats().Retries)
	}

	// Without a fault limit every attempt fails: the last error is kept.
	resp, err := oa.Chat(ctx, hello("x", 1), fault("503", 0, "")...)
	checkFailed(t, resp.Event, err, ErrServer, "server", 3)
	if api := apiError(t, err); api.StatusCode != 503 || api.Type != wire.TypeServerError || !api.Retryable() {
		t.Errorf("APIError %+v", api)
	}
	resp, err = an.Chat(ctx, hello("x", 1), append(fault("529", 0, ""), WithMaxAttempts(1))...)
	checkFailed(t, resp.Event, err, ErrServer, "server", 1)
	if api := apiError(t, err); api.StatusCode != 529 || api.Type != wire.AnthropicOverloadedError {
		t.Errorf("APIError %+v", api)
	}
}

func TestMalformedResponse(t *testing.T) {
	e, _, oa, an := setup(t, simulator.Config{}, nil)
	cfg := openAIConfig(e)
	cfg.Model = embedModel
	em := newModel(t, oa.ex, cfg)
	calls := map[string]func() (messages.Event, error){
		"openai chat": func() (messages.Event, error) {
			r, err := oa.Chat(ctx, hello("x", 1), fault("malformed", 0, "")...)
			return r.Event, err
		},
		"anthropic chat": func() (messages.Event, error) {
			r, err := an.Chat(ctx, hello("x", 1), fault("malformed", 0, "")...)
			return r.Event, err
		},
		"invoke": func() (messages.Event, error) {
			r, err := oa.Invoke(ctx, chatPayloadOf("x"), fault("malformed", 0, "")...)
			return r.Event, err
		},
		"embed": func() (messages.Event, error) {
			r, err := em.Embed(ctx, []string{"x"}, fault("malformed", 0, "")...)
			return r.Event, err
		},
	}
	for name, call := range calls {
		ev, err := call()
		checkFailed(t, ev, err, ErrMalformedResponse, "malformed_response", 1)
		api := apiError(t, err)
		if r, ok := ev.Response(); api.StatusCode != 200 || api.Retryable() || !ok || r.StatusCode != 200 || len(r.Body) == 0 {
			t.Errorf("%s: APIError %+v, response %v", name, api, ok)
		}
	}
	if n := e.Stats().Requests; n != int64(len(calls)) {
		t.Errorf("%d requests, want %d: a malformed response was retried", n, len(calls))
	}
}

func TestMalformedReplies(t *testing.T) {
	// Valid JSON that is no reply of the endpoint.
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/messages":
			w.Write([]byte(`{"type":"completion","content":[]}`))
		case "/v1/chat/completions":
			w.Write([]byte(`{"id":"x","choices":[]}`))
		case "/v1/embeddings":
			w.Write([]byte(`{"data":[{"index":3,"embedding":[1]}],"usage":{"prompt_tokens":1,"total_tokens":1}}`))
		}
	})
	ex := startExecutor(t, nil)
	oa := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: ts.URL + "/v1", APIKey: testKey})
	an := newModel(t, ex, EndpointConfig{Provider: Anthropic, BaseURL: ts.URL + "/v1", APIKey: testAntKey})
	for name, err := range map[string]error{
		"messages":   func() error { _, err := an.Chat(ctx, hello("x", 1)); return err }(),
		"chat":       func() error { _, err := oa.Chat(ctx, hello("x", 1)); return err }(),
		"embeddings": func() error { _, err := oa.Embed(ctx, []string{"x"}); return err }(),
	} {
		if !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%s: %v, want ErrMalformedResponse", name, err)
		}
	}
}

func TestReplyWithoutUsage(t *testing.T) {
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"id":"c1","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`))
	})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: ts.URL, APIKey: testKey, Model: "m"})
	resp, err := m.Chat(ctx, hello("x", 1))
	if err != nil || resp.Text != "hi" || resp.Usage != (messages.Usage{}) || resp.Event.Tokens.HasActual {
		t.Errorf("reply %+v, tokens %+v, %v", resp, resp.Event.Tokens, err)
	}
}

func TestResponseTooLarge(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	for _, cfg := range []EndpointConfig{openAIConfig(e), anthropicConfig(e)} {
		cfg.MaxResponseBytes = 64
		m := newModel(t, ex, cfg)
		resp, err := m.Chat(ctx, hello("x", 4))
		checkFailed(t, resp.Event, err, ErrResponseTooLarge, "response_too_large", 1)
		if api := apiError(t, err); api.Retryable() || !strings.Contains(err.Error(), "more than 64 bytes") {
			t.Errorf("%s: %v", cfg.Provider, err)
		}
	}
}

func TestConnectionReset(t *testing.T) {
	e, _, oa, an := setup(t, simulator.Config{}, nil)
	for _, m := range []*Model{oa, an} {
		resp, err := m.Chat(ctx, hello("x", 1), fault("reset", 0, "")...)
		checkFailed(t, resp.Event, err, ErrConnection, "connection", fastAttempts)
		if api := apiError(t, err); api.StatusCode != 0 || !api.Retryable() {
			t.Errorf("APIError %+v", api)
		}
		if _, ok := resp.Event.Response(); ok {
			t.Error("a response without one")
		}
	}
	if st := e.Stats(); st.Resets != 2*int64(fastAttempts) {
		t.Errorf("%d resets, want %d", st.Resets, 2*fastAttempts)
	}

	// A body cut short is a broken connection too, and retried.
	resp, err := oa.Chat(ctx, hello("x", 2), fault("truncate", 1, "cut-1")...)
	if err != nil || resp.Event.Attempt != 2 {
		t.Errorf("truncated body: %v after %d attempts", err, resp.Event.Attempt)
	}
}

func TestTimeout(t *testing.T) {
	e, _, oa, _ := setup(t, simulator.Config{}, nil)
	const timeout = 100 * time.Millisecond
	start := time.Now()
	resp, err := oa.Chat(ctx, hello("x", 1), append(fault("slow", 0, ""), WithTimeout(timeout), WithMaxAttempts(2))...)
	checkFailed(t, resp.Event, err, messages.ErrTimeout, "timeout", 2)
	if !errors.Is(err, messages.ErrTimeout) {
		t.Errorf("%v is not messages.ErrTimeout", err)
	}
	if took := time.Since(start); took < 2*timeout {
		t.Errorf("two attempts of %v took %v", timeout, took)
	}

	// The config's Timeout applies when the call sets none.
	cfg := openAIConfig(e)
	cfg.Timeout, cfg.MaxAttempts = timeout, 1
	m := newModel(t, oa.ex, cfg)
	resp, err = m.Chat(ctx, hello("x", 1), fault("slow", 0, "")...)
	checkFailed(t, resp.Event, err, messages.ErrTimeout, "timeout", 1)

	// A body that stalls after the headers times out too.
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"id":`))
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	stall := newModel(t, oa.ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Timeout: timeout, MaxAttempts: 1})
	r, err := stall.Invoke(ctx, nil)
	checkFailed(t, r.Event, err, messages.ErrTimeout, "timeout", 1)
	if api := apiError(t, err); api.StatusCode != 0 || !errors.Is(err, ErrConnection) {
		t.Errorf("APIError %+v", api)
	}
}

func TestAuthFailureIsNotRetried(t *testing.T) {
	e := startSim(t, simulator.Config{Keys: []string{testKey, testAntKey}})
	ex := startExecutor(t, nil)
	for _, cfg := range []EndpointConfig{openAIConfig(e), anthropicConfig(e)} {
		cfg.APIKey = "sk-test-rejected-7c1d"
		m := newModel(t, ex, cfg)
		resp, err := m.Chat(ctx, hello("x", 1))
		checkFailed(t, resp.Event, err, ErrAuth, "auth", 1)
		api := apiError(t, err)
		wantType, wantCode := wire.TypeInvalidRequest, "invalid_api_key"
		if cfg.Provider == Anthropic {
			wantType, wantCode = wire.AnthropicAuthenticationError, ""
		}
		if api.StatusCode != 401 || api.Type != wantType || api.Code != wantCode || api.Retryable() {
			t.Errorf("%s: APIError %+v", cfg.Provider, api)
		}
	}
	if n := e.Stats().Requests; n != 2 {
		t.Errorf("%d requests, want 2: an auth failure was retried", n)
	}
}

func TestBadRequest(t *testing.T) {
	e, _, oa, an := setup(t, simulator.Config{}, nil)
	resp, err := oa.Invoke(ctx, map[string]any{"messages": []any{}})
	checkFailed(t, resp.Event, err, ErrBadRequest, "bad_request", 1)
	api := apiError(t, err)
	if api.StatusCode != 400 || api.Type != wire.TypeInvalidRequest || api.Kind() != "bad_request" || api.Retryable() {
		t.Errorf("APIError %+v", api)
	}
	want := map[string]string{"provider": "openai", "status": "400", "type": wire.TypeInvalidRequest}
	if fmt.Sprint(api.Details()) != fmt.Sprint(want) {
		t.Errorf("details %v, want %v", api.Details(), want)
	}
	// Anthropic requires max_tokens.
	resp, err = an.Invoke(ctx, map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}})
	checkFailed(t, resp.Event, err, ErrBadRequest, "bad_request", 1)
	if api := apiError(t, err); api.StatusCode != 400 || api.Type != wire.AnthropicInvalidRequestError || !strings.Contains(api.Message, "max_tokens") {
		t.Errorf("Anthropic APIError %+v", api)
	}
	if n := e.Stats().Requests; n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestCancelledByContext(t *testing.T) {
	_, _, oa, _ := setup(t, simulator.Config{}, nil)
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	h, err := oa.Submit(c, chatPayloadOf("x"), WithHeader(simulator.HeaderLatency, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	for ev := range h.Events() {
		if ev.Status == messages.StatusCalling {
			cancel()
		}
	}
	ev := h.Latest()
	if ev.Status != messages.StatusCancelled || !errors.Is(ev.Err(), messages.ErrCancelled) {
		t.Errorf("ended %v: %v", ev.Status, ev.Err())
	}
	if _, err := oa.Chat(c, hello("x", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Chat with a done context: %v", err)
	}
}

func TestStatusErrorReadsResets(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`)

	// No retry-after: the exhausted budget's reset says when.
	h := http.Header{}
	h.Set("x-ratelimit-limit-requests", "100")
	h.Set("x-ratelimit-remaining-requests", "0")
	h.Set("x-ratelimit-reset-requests", "2s")
	h.Set("x-ratelimit-limit-tokens", "1000")
	h.Set("x-ratelimit-remaining-tokens", "500")
	h.Set("x-ratelimit-reset-tokens", "30s")
	e := statusError(OpenAI, 429, h, body, now)
	if e.RetryAfterDelay != 2*time.Second || !e.ResetAt.Equal(now.Add(2*time.Second)) {
		t.Errorf("requests exhausted: delay %v reset %v", e.RetryAfterDelay, e.ResetAt)
	}
	// The token budget is the one exhausted, and resets later.
	h.Set("x-ratelimit-remaining-tokens", "0")
	e = statusError(OpenAI, 429, h, body, now)
	if e.RetryAfterDelay != 30*time.Second || !e.PauseUntil().Equal(now.Add(30*time.Second)) {
		t.Errorf("tokens exhausted: delay %v reset %v", e.RetryAfterDelay, e.ResetAt)
	}
	// Anthropic's RFC 3339 resets.
	ah := http.Header{}
	ah.Set("anthropic-ratelimit-requests-limit", "50")
	ah.Set("anthropic-ratelimit-requests-remaining", "0")
	ah.Set("anthropic-ratelimit-requests-reset", now.Add(5*time.Second).Format(time.RFC3339))
	e = statusError(Anthropic, 429, ah, []byte(`{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}`), now)
	if e.RetryAfterDelay != 5*time.Second || e.Type != wire.AnthropicRateLimitError || e.Message != "slow" {
		t.Errorf("Anthropic: %+v", e)
	}
	// Without any hint there is no delay; other statuses never pause.
	if e := statusError(OpenAI, 429, http.Header{}, nil, now); e.RetryAfterDelay != 0 || !e.ResetAt.Equal(now) || e.Message != "Too Many Requests" {
		t.Errorf("bare 429: %+v", e)
	}
	for status, want := range map[int]error{401: ErrAuth, 403: ErrAuth, 404: ErrBadRequest, 408: ErrServer, 409: ErrServer, 422: ErrBadRequest, 502: ErrServer} {
		e := statusError(OpenAI, status, http.Header{"Retry-After": {"3"}}, nil, now)
		if !errors.Is(e, want) || !e.PauseUntil().IsZero() || e.RetryAfterDelay != 3*time.Second {
			t.Errorf("%d: %v (%s), pause %v", status, e, e.Kind(), e.PauseUntil())
		}
	}
}

func TestErrorClassification(t *testing.T) {
	cause := errors.New("boom")
	e := transportError(OpenAI, ErrConnection, cause)
	if e.Error() != "imodel: openai: boom" || !errors.Is(e, cause) || !errors.Is(e, ErrConnection) {
		t.Errorf("transport error %q", e)
	}
	kinds := map[error]string{
		ErrRateLimited: "rate_limited", ErrQuotaExhausted: "quota_exhausted", ErrAuth: "auth", ErrBadRequest: "bad_request",
		ErrServer: "server", ErrConnection: "connection", ErrMalformedResponse: "malformed_response",
		ErrResponseTooLarge: "response_too_large", ErrStreamBroken: "stream_broken", cause: "error",
	}
	for sentinel, kind := range kinds {
		if got := (&APIError{kind: sentinel}).Kind(); got != kind {
			t.Errorf("Kind of %v: %q, want %q", sentinel, got, kind)
		}
	}
	for err, want := range map[error]bool{
		transportError(OpenAI, ErrServer, nil):         true,
		transportError(OpenAI, ErrBadRequest, nil):     false,
		fmt.Errorf("wrapped: %w", messages.ErrTimeout): true,
		fmt.Errorf("%w: %w", messages.ErrCancelled, e): false,
		fmt.Errorf("%w: %w", messages.ErrStopped, e):   false,
		cause: false,
	} {
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestShouldRetryHeader checks that the provider's x-should-retry header
// overrides the rule by status, as in the official SDKs: "true" retries a
// status never retried otherwise, "false" forbids retrying one that is,
// and any other value is ignored.
func TestShouldRetryHeader(t *testing.T) {
	e, ex, oa, an := setup(t, simulator.Config{FaultRetryAfter: time.Millisecond}, nil)
	shouldRetry := func(v string) CallOption { return WithHeader(simulator.HeaderShouldRetry, v) }
	badRequest := map[string]any{"messages": []any{}} // 400: no messages

	// A 400 is never retried, unless the provider says so.
	resp, err := oa.Invoke(ctx, badRequest, shouldRetry("true"))
	checkFailed(t, resp.Event, err, ErrBadRequest, "bad_request", fastAttempts)
	api := apiError(t, err)
	if !api.Retryable() || api.Details()["should_retry"] != "true" {
		t.Errorf("400 with x-should-retry true: Retryable %v, details %v", api.Retryable(), api.Details())
	}
	if info, _ := resp.Event.Failure(); info.Details["should_retry"] != "true" {
		t.Errorf("the snapshot does not say why the 400 was retried: %+v", info)
	}
	// A 503, a 429 and a 529 are retried, unless the provider forbids it.
	for _, tc := range []struct {
		m        *Model
		fault    string
		sentinel error
		kind     string
	}{
		{oa, "503", ErrServer, "server"},
		{oa, "429", ErrRateLimited, "rate_limited"},
		{an, "529", ErrServer, "server"},
	} {
		resp, err := tc.m.Chat(ctx, hello("x", 1), append(fault(tc.fault, 0, ""), shouldRetry("false"))...)
		checkFailed(t, resp.Event, err, tc.sentinel, tc.kind, 1)
		if api := apiError(t, err); api.Retryable() || api.Details()["should_retry"] != "false" {
			t.Errorf("%s with x-should-retry false: Retryable %v, details %v", tc.fault, api.Retryable(), api.Details())
		}
	}
	if n, want := e.Stats().Requests, int64(fastAttempts+3); n != want {
		t.Errorf("the simulator saw %d requests, want %d", n, want)
	}

	// A 401 that the provider says to retry, and then succeeds; a value
	// other than true or false is ignored; a body cut short is a
	// connection error, not retried when the provider said false.
	var calls atomic.Int32
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.Header.Get("X-Case") {
		case "auth":
			if n == 1 {
				w.Header().Set("x-should-retry", "true")
				http.Error(w, `{"error":{"message":"token expired","type":"invalid_request_error"}}`, http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"ok":true}`))
		case "upper":
			w.Header().Set("x-should-retry", "TRUE")
			http.Error(w, `{"error":{"message":"no"}}`, http.StatusBadRequest)
		case "dropped":
			w.Header().Set("x-should-retry", "false")
			w.Header().Set("Content-Length", "100")
			w.Write([]byte(`{"cut`))
		}
	})
	m := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: ts.URL, APIKey: testKey, MaxAttempts: fastAttempts, Retry: fastRetry})
	for _, tc := range []struct {
		name     string
		sentinel error // nil: completed
		kind     string
		attempts int
	}{
		{"auth", nil, "", 2},
		{"upper", ErrBadRequest, "bad_request", 1},
		{"dropped", ErrConnection, "connection", 1},
	} {
		calls.Store(0)
		resp, err := m.Invoke(ctx, map[string]any{"x": 1}, WithHeader("X-Case", tc.name))
		if tc.sentinel == nil {
			if err != nil || resp.Event.Attempt != tc.attempts {
				t.Errorf("%s: %v after %d attempts, want COMPLETED after %d", tc.name, err, resp.Event.Attempt, tc.attempts)
			}
			continue
		}
		checkFailed(t, resp.Event, err, tc.sentinel, tc.kind, tc.attempts)
	}
}
