package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// --provider openai-compatible sends the key in OPENAI_API_KEY, as --help
// says; without one it refuses to run, unless an empty --api-key-env says the
// server takes none.
func TestBatchOpenAICompatibleKey(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Keys: []string{testKey}})
	var (
		mu   sync.Mutex
		auth []string // the Authorization header of each request
	)
	// Records what the client sent; without a key, it stands in for a
	// server that needs none by adding the simulator's.
	url := front(t, base, func(_ http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+testKey)
		}
		return true
	})
	dir := t.TempDir()
	in := writeRequests(t, dir, 3)
	args := func(out string, extra ...string) []string {
		return append([]string{"batch", "--in", in, "--out", filepath.Join(dir, out), "--provider", "openai-compatible", "--url", url, "--model", testModel}, extra...)
	}

	c := newCLI()
	if code := c.run(t, context.Background(), args("key.jsonl")...); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	mu.Lock()
	for _, a := range auth {
		if a != "Bearer "+testKey {
			t.Errorf("Authorization %q, want the key from OPENAI_API_KEY", a)
		}
	}
	auth = nil
	mu.Unlock()
	checkEachOnce(t, readResults(t, filepath.Join(dir, "key.jsonl")), 3)

	c = newCLI()
	delete(c.env, "OPENAI_API_KEY")
	if code := c.run(t, context.Background(), args("none.jsonl")...); code != exitUsage {
		t.Errorf("without a key: exit %d, want %d", code, exitUsage)
	}
	if want := "lionactor: missing API key: set OPENAI_API_KEY (or name another variable with --api-key-env, or give --api-key-env '' for a server that takes none)\n"; c.stderr.String() != want {
		t.Errorf("stderr %q, want %q", c.stderr.String(), want)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.jsonl")); err == nil {
		t.Errorf("the results file was created")
	}

	for _, how := range [][]string{{"--api-key-env", ""}, {"--api-key-env="}} {
		c = newCLI()
		out := "explicit" + how[0] + ".jsonl"
		if code := c.run(t, context.Background(), args(out, how...)...); code != exitOK {
			t.Fatalf("%q: exit %d", how, code)
		}
		checkEachOnce(t, readResults(t, filepath.Join(dir, out)), 3)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) != 6 || strings.Join(auth, "") != "" {
		t.Errorf("with --api-key-env '': Authorization headers %q, want none of 6", auth)
	}
	if sim.Stats().Requests != 9 {
		t.Errorf("%d requests reached the simulator, want 9", sim.Stats().Requests)
	}
}

// A configuration error names the flag the user typed, once, and is a
// usage error.
func TestBatchErrorsNameTheFlag(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeRequests(t, dir, 2)
	config := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(config, []byte("provider: bedrock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--provider", "bedrock", "--url", base}, `--provider: unknown provider "bedrock"`},
		{[]string{"--config", config, "--url", base}, `--provider: unknown provider "bedrock"`},
		{[]string{"--provider", "openai-compatible"}, "--url: required for provider openai-compatible"},
		{[]string{"--provider", "generic"}, "--url: required for provider generic"},
		{[]string{"--url", "ftp://127.0.0.1/v1"}, "--url: must be an absolute http or https URL"},
		{[]string{"--url", base, "--endpoint", "chat"}, "--endpoint: must start with /"},
		{[]string{"--url", base, "--rpm", "0"}, "--rpm: must be positive"},
		{[]string{"--url", base, "--burst", "-1"}, "--burst: must not be negative"},
		{[]string{"--url", base, "--budget", "nowhere", "--budget-members", "2"}, "--budget: "},
		{[]string{"--url", base, "--retry-failed=auth,"}, "--retry-failed: an empty error kind"},
	}
	for _, tt := range tests {
		c := newCLI()
		args := append([]string{"batch", "--in", in, "--out", filepath.Join(dir, "out.jsonl"), "--model", testModel}, tt.args...)
		if code := c.run(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		stderr := c.stderr.String()
		if !strings.HasPrefix(stderr, "lionactor: "+tt.want) || strings.Count(stderr, "lionactor") != 1 || strings.Contains(stderr, "invalid config") {
			t.Errorf("%q: stderr %q, want \"lionactor: %s...\" alone", tt.args, stderr, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.jsonl")); err == nil {
		t.Errorf("the results file was created")
	}
	if sim.Stats().Requests != 0 {
		t.Errorf("%d requests were sent", sim.Stats().Requests)
	}
}

// The input file may be given as the argument, as with --in; both at once
// must name the same file.
func TestBatchInputArgument(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeRequests(t, dir, 5)
	t.Chdir(dir)
	for k, args := range [][]string{
		{"requests.jsonl"},
		{"requests.jsonl", "--in", "./requests.jsonl"},
		{"--in", in, in},
	} {
		c := newCLI()
		out := filepath.Join(dir, "out.jsonl")
		os.Remove(out)
		all := append(append([]string{"batch"}, args...), "--out", out, "--url", base, "--model", testModel)
		if code := c.run(t, context.Background(), all...); code != exitOK {
			t.Fatalf("%d %q: exit %d", k, args, code)
		}
		checkEachOnce(t, readResults(t, out), 5)
	}
	if sim.Stats().Requests != 15 {
		t.Errorf("%d requests, want 15", sim.Stats().Requests)
	}
}

// A field no batch flag sets is still told once, as a configuration error.
func TestNamingFlagsUnmappedField(t *testing.T) {
	fl := newBatchCmd(newCLI().environ()).Flags()
	ce := &messages.ConfigError{Field: "MaxResponseBytes", Reason: "must not be negative"}
	err := namingFlags(fl, batchFlagOf, fmt.Errorf("starting: %w", ce))
	var got *messages.ConfigError
	if err.Error() != "invalid config: MaxResponseBytes: must not be negative" || !errors.As(err, &got) || got != ce || !errors.As(err, new(usageError)) {
		t.Errorf("namingFlags = %v", err)
	}
	other := errors.New("boom")
	if err := namingFlags(fl, batchFlagOf, other); err != other {
		t.Errorf("namingFlags(%v) = %v, want it unchanged", other, err)
	}
}

// An interrupt while standard input is still being read ends the command
// at once: nothing was sent.
func TestBatchInterruptedReadingStandardInput(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() }) // lets the copy, still reading, end
	c := newCLI()
	c.stdin = pr
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		pw.Write([]byte(requestLine(0) + "\n")) // the command is reading
		cancel()
	}()
	if code := c.run(t, ctx, "batch", "--url", base, "--model", testModel); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	if want := "lionactor: interrupted while reading standard input; nothing was sent\n"; c.stderr.String() != want {
		t.Errorf("stderr %q, want %q", c.stderr.String(), want)
	}
	if sim.Stats().Requests != 0 {
		t.Errorf("%d requests sent", sim.Stats().Requests)
	}
}
