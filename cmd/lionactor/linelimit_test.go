package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// --max-line-bytes must be positive: 0 or less is refused before anything
// is read or sent, naming the flag, whether given on the command line or
// in a config file, for a run or a dry run.
func TestBatchMaxLineBytesMustBePositive(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in, out := writeRequests(t, dir, 2), filepath.Join(dir, "out.jsonl")
	config := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(config, []byte("max-line-bytes: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-line-bytes", "0"}, "--max-line-bytes: must be positive, got 0\n"},
		{[]string{"--max-line-bytes", "-5"}, "--max-line-bytes: must be positive, got -5\n"},
		{[]string{"--max-line-bytes", "0", "--dry-run"}, "--max-line-bytes: must be positive, got 0\n"},
		{[]string{"--config", config}, "--max-line-bytes: must be positive, got 0\n"},
	} {
		c := newCLI()
		args := append([]string{"batch", in, "--out", out, "--url", base, "--model", testModel}, tc.args...)
		if code := c.run(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tc.args, code, exitUsage)
		}
		if got := c.stderr.String(); got != "lionactor: "+tc.want {
			t.Errorf("%q: stderr %q, want %q", tc.args, got, "lionactor: "+tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the results file was created")
	}
	if n := sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests were sent", n)
	}
}

// A line longer than --max-line-bytes among good ones: the run writes its
// FAILED line_too_long result naming the line and the limit and completes
// the others; the dry run before it names the line with the same reason.
func TestBatchLineTooLong(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	long := fmt.Sprintf(`{"id":"long","messages":[{"role":"user","content":%q}]}`, strings.Repeat("a", 2000))
	in, out := filepath.Join(dir, "requests.jsonl"), filepath.Join(dir, "results.jsonl")
	lines := strings.Join([]string{requestLine(0), long, requestLine(2), requestLine(3)}, "\n") + "\n"
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"batch", in, "--out", out, "--url", base, "--model", testModel, "--max-line-bytes", "1000"}
	reason := fmt.Sprintf("%d bytes, more than --max-line-bytes (1000)", len(long))

	c := newCLI()
	if code := c.run(t, context.Background(), append(args, "--dry-run")...); code != exitOK {
		t.Fatalf("dry run: exit %d", code)
	}
	if want := "  line 2: line_too_long: " + reason + "\n"; !strings.Contains(c.stdout.String(), want) {
		t.Errorf("the dry run lacks %q:\n%s", want, c.stdout.String())
	}

	c = newCLI()
	if code := c.run(t, context.Background(), args...); code != exitOK {
		t.Fatalf("run: exit %d", code)
	}
	results := readResults(t, out)
	if len(results) != 4 {
		t.Fatalf("%d results, want 4", len(results))
	}
	for _, r := range results {
		switch {
		case r.Index == 1:
			if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "line_too_long" || r.Error.Message != "line 2: "+reason {
				t.Errorf("the long line: %s %+v, want FAILED line_too_long %q", r.Status, r.Error, "line 2: "+reason)
			}
		case r.Status != "COMPLETED":
			t.Errorf("index %d: %s %+v", r.Index, r.Status, r.Error)
		}
	}
	if want := "requests: 3 completed, 0 failed, 1 invalid input"; !strings.Contains(c.stderr.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, c.stderr.String())
	}
}
