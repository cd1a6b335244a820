package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestHeaderFlagParse(t *testing.T) {
	const secret = "sk-SECRET-hdr-9a8b7c"
	ok := func(args ...string) map[string]string {
		t.Helper()
		h := &headerFlag{}
		for _, a := range args {
			if err := h.Set(a); err != nil {
				t.Fatalf("Set(%q): %v", a, err)
			}
		}
		m, err := h.parse()
		if err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return m
	}
	got := ok("X-Title:  my batch ", "authorization: Bearer "+secret, "X-Empty:", "X-Tab: a\tb")
	want := map[string]string{"X-Title": "my batch", "Authorization": "Bearer " + secret, "X-Empty": "", "X-Tab": "a\tb"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	if m := ok(); m != nil {
		t.Errorf("no --header: %v", m)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no colon", []string{"X-Ok: 1", "Authorization Bearer " + secret}, "value 2 of 2"},
		{"space in the name", []string{"X Api Key: " + secret}, "header name"},
		{"empty name", []string{": " + secret}, "header name"},
		{"line break in the value", []string{"X-Api-Key: " + secret + "\r\nX-Evil: 1"}, "control character"},
		{"twice", []string{"x-api-key: a-" + secret, "X-API-KEY: b-" + secret}, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &headerFlag{}
			for _, a := range tc.args {
				h.Set(a)
			}
			_, err := h.parse()
			if err == nil {
				t.Fatal("no error")
			}
			if _, usage := err.(usageError); !usage || !strings.Contains(err.Error(), "--header") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q (%T), want a usage error naming --header and %q", err, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the value: %v", err)
			}
		})
	}

	// What pflag and cobra show of the flag (help, errors) hides
	// credentials, and anything that is not a header at all.
	h := &headerFlag{}
	for _, a := range []string{"X-Title: shown", "X-Gateway-Key: " + secret, "Authorization " + secret} {
		h.Set(a)
	}
	s := h.String()
	if strings.Contains(s, secret) || !strings.Contains(s, "X-Title: shown") || !strings.Contains(s, "X-Gateway-Key: "+messages.Redacted) {
		t.Errorf("String() = %q", s)
	}
	if h.Type() != "header" || len(h.GetSlice()) != 3 || (&headerFlag{}).String() != "" {
		t.Errorf("Type %q, GetSlice %q", h.Type(), h.GetSlice())
	}
	h.Replace([]string{"X-A: 1"})
	h.Append("X-B: 2")
	if m, err := h.parse(); err != nil || len(m) != 2 {
		t.Errorf("after Replace and Append: %v %v", m, err)
	}
}

// echoGateway is an OpenAI-compatible server that records the headers it
// receives and echoes them: into the reply of a good request, and into the
// error message of a request whose prompt says "fail".
type echoGateway struct {
	mu   sync.Mutex
	seen []http.Header
}

func (g *echoGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.seen = append(g.seen, r.Header.Clone())
	g.mu.Unlock()
	var names []string
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	var echo strings.Builder
	for _, k := range names {
		fmt.Fprintf(&echo, "%s=%s; ", k, r.Header.Get(k))
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(string(body), "fail") {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": "rejected; you sent " + echo.String(), "type": "invalid_request_error"}})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-echo", "object": "chat.completion", "model": "echo",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": echo.String()}}},
		"usage":   map[string]any{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
	})
}

func (g *echoGateway) headers() []http.Header {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]http.Header(nil), g.seen...)
}

// TestBatchHeaders sends --header values to a gateway that echoes them
// back: every request carries them, and the values of the credential ones
// appear nowhere the command writes (results, progress, summary, logs),
// while the others do.
func TestBatchHeaders(t *testing.T) {
	const (
		gatewayKey = "gw-SECRET-key-0c1d2e3f"
		authToken  = "SECRET-auth-token-4a5b6c"
		title      = "lionactor-header-test"
	)
	g := &echoGateway{}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	input := `{"id":"ok","messages":[{"role":"user","content":"hello"}]}` + "\n" +
		`{"id":"bad","messages":[{"role":"user","content":"please fail"}]}` + "\n"
	c := newCLI()
	c.stdin = strings.NewReader(input)
	code := c.run(t, context.Background(), "batch", "--provider", "openai-compatible", "--url", ts.URL, "--api-key-env", "OPENAI_API_KEY",
		"--header", "X-Gateway-Key: "+gatewayKey, "--header", "X-Auth-Token: "+authToken, "--header", "X-Title: "+title,
		"--model", "echo", "--max-attempts", "1", "--verbose", "--progress-every", "0s")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	seen := g.headers()
	if len(seen) != 2 {
		t.Fatalf("the gateway saw %d requests", len(seen))
	}
	for _, h := range seen {
		if h.Get("X-Gateway-Key") != gatewayKey || h.Get("X-Auth-Token") != authToken || h.Get("X-Title") != title || h.Get("Authorization") != "Bearer "+testKey {
			t.Errorf("the gateway got %v", h)
		}
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	if len(results) != 2 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		line, _ := json.Marshal(r)
		switch string(r.ID) {
		case `"ok"`:
			if r.Status != "COMPLETED" || !strings.Contains(string(line), "X-Title="+title) || !strings.Contains(string(line), "X-Gateway-Key="+messages.Redacted) {
				t.Errorf("completed result %s", line)
			}
		case `"bad"`:
			if r.Status != "FAILED" || r.Error == nil || !strings.Contains(r.Error.Message, "X-Auth-Token="+messages.Redacted) {
				t.Errorf("failed result %s", line)
			}
		}
	}
	if !strings.Contains(c.stderr.String(), "imodel: attempt") {
		t.Errorf("no attempt was logged:\n%s", c.stderr.String())
	}
	for name, out := range map[string]string{"stdout": c.stdout.String(), "stderr": c.stderr.String()} {
		for _, secret := range []string{gatewayKey, authToken, testKey} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a credential header's value", name)
			}
		}
	}
}

// TestBatchHeaderErrors: a bad --header, in any of its forms, stops the run
// before anything is sent, naming the flag and never showing the value.
func TestBatchHeaderErrors(t *testing.T) {
	const secret = "sk-SECRET-cli-hdr-77aa"
	g := &echoGateway{}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no colon", []string{"--header", "Authorization Bearer " + secret}, "--header"},
		{"bad name", []string{"--header", "X Key: " + secret}, "--header"},
		// The key is sent as Authorization: a header of that name would be
		// replaced without a word.
		{"the key's header", []string{"--api-key-env", "OPENAI_API_KEY", "--header", "Authorization: Bearer " + secret}, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI()
			c.stdin = strings.NewReader(requestLine(0) + "\n")
			args := append([]string{"batch", "--provider", "openai-compatible", "--url", ts.URL, "--model", "m"}, tc.args...)
			if code := c.run(t, context.Background(), args...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if msg := c.stderr.String(); !strings.Contains(strings.ToLower(msg), tc.want) || strings.Contains(msg, secret) {
				t.Errorf("stderr %q: want %q named and the value hidden", msg, tc.want)
			}
		})
	}
	// In the config file, by the flag's name: a list, or a mapping.
	for _, tc := range []struct{ name, yaml string }{
		{"list", "header:\n  - 'X-Title: from yaml'\n  - 'X-Gateway-Key: " + secret + "'\n"},
		{"mapping", "header:\n  X-Title: from yaml\n  X-Gateway-Key: " + secret + "\n"},
	} {
		t.Run("config "+tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			before := len(g.headers())
			c := newCLI()
			c.stdin = strings.NewReader(requestLine(0) + "\n")
			if code := c.run(t, context.Background(), "batch", "--config", path, "--provider", "openai-compatible", "--url", ts.URL, "--model", "m"); code != exitOK {
				t.Fatalf("exit %d", code)
			}
			seen := g.headers()
			if len(seen) != before+1 || seen[before].Get("X-Title") != "from yaml" || seen[before].Get("X-Gateway-Key") != secret {
				t.Errorf("the gateway got %v", seen[len(seen)-1])
			}
			if strings.Contains(c.stdout.String()+c.stderr.String(), secret) {
				t.Error("the output shows the gateway key")
			}
		})
	}
	t.Run("config list for a single flag", func(t *testing.T) {
		path := filepath.Join(dir, "rpm-list.yaml")
		if err := os.WriteFile(path, []byte("rpm: [1, 2]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := newCLI()
		if code := c.run(t, context.Background(), "batch", "--config", path, "--url", ts.URL); code != exitUsage || !strings.Contains(c.stderr.String(), "rpm: takes one value") {
			t.Errorf("exit %d, stderr %s", code, c.stderr.String())
		}
	})
	if n := len(g.headers()); n != 2 {
		t.Errorf("the gateway saw %d requests, want only the 2 of the config runs", n)
	}
}
