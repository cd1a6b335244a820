package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// buildBinary builds the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "lionactor")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// The same flags as the test build: its compiled packages are reused
		// (and the binary's run is checked for races too).
		args = append(args, "-race")
	}
	build := exec.Command(gotool, append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// countLines counts the newlines in the file at path (0 if it is absent).
func countLines(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(data, []byte("\n"))
}

// TestEndToEndInterruptAndResume runs the built binary as a user would:
// Ctrl-C in the middle of a batch, then the same command again.
func TestEndToEndInterruptAndResume(t *testing.T) {
	bin := buildBinary(t)
	sim, base := simtest.Start(t, simulator.Config{RequestsPerMinute: 60_000, Latency: 20 * time.Millisecond, LatencyJitter: 10 * time.Millisecond})
	dir := t.TempDir()
	const n = 2000 // about two seconds at 1000 requests per second
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	args := []string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "60000", "--concurrency", "32"}
	command := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+testKey)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		return cmd, &stderr
	}

	cmd, stderr := command()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	runtimetest.WaitFor(t, 30*time.Second, "the first results", func() bool { return countLines(out) >= 300 })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	t.Logf("first run: %v after %v\n%s", err, time.Since(start), stderr)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted run: %v, want exit status %d", err, exitInterrupted)
	}
	left := remaining(t, stderr.String())
	first := readResults(t, out)
	if left == 0 || len(first)+left != n {
		t.Errorf("%d written and %d remaining of %d", len(first), left, n)
	}

	cmd, stderr = command()
	if err := cmd.Run(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr)
	}
	t.Logf("second run:\n%s", stderr)
	all := readResults(t, out)
	checkEachOnce(t, all, n) // no index twice across the two runs
	if second := len(all) - len(first); second != left {
		t.Errorf("the rerun wrote %d results; the interrupted run said %d remain", second, left)
	}
	if s := parseSummary(t, stderr.String()); s != (summaryCounts{completed: left, skipped: len(first), new: left}) {
		t.Errorf("rerun summary %+v", s)
	}
	if st := sim.Stats(); st.RateLimited != 0 {
		t.Errorf("the simulator answered %d requests 429", st.RateLimited)
	}
}
