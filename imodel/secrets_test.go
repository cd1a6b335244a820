package imodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestKeysNeverShown runs both providers with known keys through success,
// every kind of failure and streams, and then looks for the keys in every
// snapshot, error and log line.
func TestKeysNeverShown(t *testing.T) {
	const (
		openAIKey   = "sk-test-SECRET-openai-5e1f0c3d9b7a"
		claudeKey   = "sk-test-SECRET-anthropic-2a8c4e6f1b3d"
		rejectedKey = "sk-test-SECRET-rejected-9f8e7d6c5b4a"
	)
	keys := []string{openAIKey, claudeKey, rejectedKey}
	logs := &runtimetest.Buffer{}
	logger := debugLogger(logs)
	log := &eventLog{}
	var errs []error
	// Registered first, so that it runs after the executor has stopped and
	// logged all it will.
	t.Cleanup(func() {
		out := logs.String()
		if !strings.Contains(out, "imodel: attempt") || !strings.Contains(out, "status=401") {
			t.Errorf("the debug log lacks the attempts:\n%s", out)
		}
		for _, k := range keys {
			if strings.Contains(out, k) {
				t.Errorf("the log shows a key:\n%s", out)
			}
		}
	})

	e := startSim(t, simulator.Config{Keys: []string{openAIKey, claudeKey}, FaultRetryAfter: 20 * time.Millisecond,
		RequestsPerMinute: 100000, TokensPerMinute: 10000000})
	ex := startExecutor(t, func(c *runtime.Config) { c.Observer, c.Logger = log.observe, logger })
	oaCfg, anCfg := openAIConfig(e), anthropicConfig(e)
	oaCfg.APIKey, anCfg.APIKey = openAIKey, claudeKey
	oaCfg.MaxAttempts, anCfg.MaxAttempts = 2, 2

	for _, cfg := range []EndpointConfig{oaCfg, anCfg} {
		m := newModel(t, ex, cfg, WithLogger(logger))
		small := cfg
		small.MaxResponseBytes = 64
		tiny := newModel(t, ex, small, WithLogger(logger))
		bad := cfg
		bad.APIKey = rejectedKey
		rejected := newModel(t, ex, bad, WithLogger(logger))
		id := string(cfg.Provider)
		keep := func(err error) {
			if err != nil {
				errs = append(errs, err)
			}
		}
		chat := func(m *Model, opts ...CallOption) error {
			_, err := m.Chat(ctx, hello("secret test", 3), opts...)
			keep(err)
			return err
		}
		stream := func(opts ...CallOption) error {
			s, err := m.Stream(ctx, hello("secret stream", 6), opts...)
			if err != nil {
				return err
			}
			readAll(s)
			_, err = s.Wait(ctx)
			keep(err)
			return err
		}

		// Success, including a prompt that quotes the key.
		if err := chat(m); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Chat(ctx, hello("my key is "+cfg.APIKey, 2)); err != nil {
			t.Fatal(err)
		}
		if err := stream(); err != nil {
			t.Fatal(err)
		}
		// Retried, then successful.
		for _, f := range []string{"429", "500", "503", "529", "reset"} {
			if err := chat(m, fault(f, 1, id+"-"+f)...); err != nil {
				t.Errorf("%s %s: %v", id, f, err)
			}
		}
		// Failures.
		failures := map[string]error{
			"quota":     chat(m, fault("quota", 0, "")...),
			"429":       chat(m, append(fault("429", 0, ""), WithMaxAttempts(1))...),
			"500":       chat(m, fault("500", 0, "")...),
			"malformed": chat(m, fault("malformed", 0, "")...),
			"reset":     chat(m, fault("reset", 0, "")...),
			"timeout":   chat(m, append(fault("slow", 0, ""), WithTimeout(50*time.Millisecond))...),
			"too large": chat(tiny),
			"auth":      chat(rejected),
			"stream":    stream(fault("truncate", 0, "")...),
			"bad stream": func() error {
				s, err := rejected.Stream(ctx, hello("x", 2))
				if err != nil {
					return err
				}
				_, err = s.Wait(ctx)
				keep(err)
				return err
			}(),
			"bad request": func() error {
				_, err := m.Invoke(ctx, map[string]any{"messages": []any{}, "note": cfg.APIKey})
				keep(err)
				return err
			}(),
		}
		for name, err := range failures {
			if err == nil {
				t.Errorf("%s %s: no error", id, name)
			}
		}
		if cfg.Provider == OpenAI {
			_, err := m.Embed(ctx, []string{"x"}, append(fault("500", 0, ""), WithField("model", embedModel))...)
			keep(err)
		}
	}

	events := log.all()
	if len(events) < 100 {
		t.Fatalf("only %d snapshots", len(events))
	}
	redacted := 0
	for _, ev := range events {
		var shown []string
		b, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, string(b))
		ep := ev.Endpoint()
		shown = append(shown, ep.URL, string(ep.Payload), fmt.Sprint(ep.Header))
		if v := ep.Header.Get("Authorization") + ep.Header.Get("X-Api-Key"); v != "" {
			if v != messages.Redacted {
				t.Errorf("credential header shown as %q", v)
			}
			if strings.Contains(string(b), `["`+messages.Redacted+`"]`) {
				redacted++
			}
		}
		if r, ok := ev.Response(); ok {
			shown = append(shown, fmt.Sprint(r.Header), string(r.Body), fmt.Sprintf("%+v", r.Value))
		}
		if info, ok := ev.Failure(); ok {
			shown = append(shown, info.Message, fmt.Sprint(info.Details))
		}
		for _, tr := range ev.Log() {
			shown = append(shown, tr.Message)
		}
		if err := ev.Err(); err != nil {
			shown = append(shown, err.Error(), fmt.Sprintf("%+v", err))
		}
		for _, s := range shown {
			for _, k := range keys {
				if strings.Contains(s, k) {
					t.Errorf("snapshot %v (seq %d) shows a key: %s", ev.Status, ev.Seq, s)
				}
			}
		}
	}
	if redacted != len(events) {
		t.Errorf("%d of %d snapshots show %s credentials", redacted, len(events), messages.Redacted)
	}
	if len(errs) < 20 {
		t.Errorf("only %d errors", len(errs))
	}
	for _, err := range errs {
		for _, k := range keys {
			if strings.Contains(err.Error(), k) || strings.Contains(fmt.Sprintf("%+v", err), k) {
				t.Errorf("error shows a key: %v", err)
			}
		}
		if api, ok := errors.AsType[*APIError](err); ok {
			if s := fmt.Sprint(api.Details()) + api.Message; strings.Contains(s, "sk-test-SECRET") {
				t.Errorf("APIError shows a key: %s", s)
			}
		}
	}
	// The kinds of failure the test went through.
	kinds := map[string]bool{}
	for _, ev := range events {
		if info, ok := ev.Failure(); ok && ev.Status == messages.StatusFailed {
			kinds[info.Kind] = true
		}
	}
	for _, k := range []string{"quota_exhausted", "rate_limited", "server", "malformed_response", "connection", "timeout", "response_too_large", "auth", "stream_broken", "bad_request"} {
		if !kinds[k] {
			t.Errorf("no failure of kind %s", k)
		}
	}
}

// TestCredentialHeadersNeverShown sends credentials in headers a gateway
// needs, from the config and for one call, to a server that echoes every
// request header into its replies and errors; the credentials' values must
// show nowhere, and the other headers' values must show as sent.
func TestCredentialHeadersNeverShown(t *testing.T) {
	const (
		gatewayKey = "gw-SECRET-key-3c9a1e7f"
		callToken  = "SECRET-call-token-8b2d4f6a"
		title      = "my-batch-title"
	)
	secrets := []string{gatewayKey, callToken}
	echo := func(r *http.Request) string {
		var b strings.Builder
		for k, vs := range r.Header {
			fmt.Fprintf(&b, "%s=%s;", k, strings.Join(vs, ","))
		}
		return b.String()
	}
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "seen: " + echo(r), "type": "invalid_request_error"}})
		if r.Header.Get("X-Case") == "ok" {
			w.Header().Set("X-Echo", echo(r))
			body, _ = json.Marshal(map[string]any{"echo": echo(r)})
		} else {
			w.WriteHeader(http.StatusBadRequest)
		}
		w.Write(body)
	})
	logs := &runtimetest.Buffer{}
	log := &eventLog{}
	ex := startExecutor(t, func(c *runtime.Config) { c.Observer = log.observe })
	m := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Auth: AuthNone, MaxAttempts: 1,
		Headers: map[string]string{"X-Gateway-Key": gatewayKey, "X-Title": title}}, WithLogger(debugLogger(logs)))

	var errs []error
	for _, c := range []string{"ok", "fail"} {
		resp, err := m.Invoke(ctx, map[string]any{"x": 1}, WithHeader("X-Case", c), WithHeader("Authorization", "Bearer "+callToken))
		if (err == nil) != (c == "ok") {
			t.Fatalf("%s: %v", c, err)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if c == "ok" && !strings.Contains(string(resp.Body), "X-Title="+title) {
			t.Errorf("the reply lacks the headers sent: %s", resp.Body)
		}
	}
	var shown []string
	for _, ev := range log.all() {
		b, _ := ev.MarshalJSON()
		ep := ev.Endpoint()
		shown = append(shown, string(b), fmt.Sprint(ep.Header))
		if ep.Header.Get("X-Gateway-Key") != messages.Redacted || ep.Header.Get("Authorization") != messages.Redacted || ep.Header.Get("X-Title") != title {
			t.Errorf("snapshot headers %v", ep.Header)
		}
		if r, ok := ev.Response(); ok {
			shown = append(shown, fmt.Sprint(r.Header), string(r.Body))
		}
		if info, ok := ev.Failure(); ok {
			shown = append(shown, info.Message)
		}
	}
	for _, err := range errs {
		shown = append(shown, err.Error())
	}
	ex.StopNow(ctx) // every log line is written
	shown = append(shown, logs.String())
	if !strings.Contains(logs.String(), "seen: ") {
		t.Errorf("the log lacks the failed attempt:\n%s", logs.String())
	}
	for _, s := range shown {
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("shows a credential header's value: %s", s)
			}
		}
	}
}
