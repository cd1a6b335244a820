package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchRun runs the command line args with its own buffers and returns the
// exit code, stdout and stderr.
func benchRun(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := env{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv:     func(string) string { return "" },
		isTerminal: func(io.Writer) bool { return false },
	}
	code := run(ctx, e, args)
	return code, stdout.String(), stderr.String()
}

func benchContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestBenchQuick runs every workload at the tiniest sizes and checks the
// exit code, the table and the JSON file.
func TestBenchQuick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.json")
	code, stdout, stderr := benchRun(t, benchContext(t), "bench", "--quick", "--scale", "0.001", "--reps", "1", "--rate", "400", "--json", path)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"WORKLOAD", "METRIC", "LIONACTOR", "BASELINE", "RATIO", "TARGET",
		"1 pipeline", "2 http", "3 latency", "4 rate", "5 memory", "hand loop", "bare net/http"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "bench: memory: done") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Rows []struct {
			Workload string  `json:"workload"`
			Ratio    float64 `json:"ratio"`
		} `json:"rows"`
		Sizes struct {
			Quick bool `json:"quick"`
		} `json:"sizes"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) == 0 || !rep.Sizes.Quick {
		t.Errorf("JSON report %s", data)
	}
}

// TestBenchOnly runs one workload and checks that the table holds it alone.
func TestBenchOnly(t *testing.T) {
	code, stdout, stderr := benchRun(t, benchContext(t), "bench", "--quick", "--scale", "0.001", "--reps", "1", "--only", "pipeline")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "1 pipeline") || strings.Contains(stdout, "2 http") || strings.Contains(stdout, "5 memory") {
		t.Errorf("table:\n%s", stdout)
	}
}

// TestBenchFails checks the exit code when a workload cannot finish: the
// table is still printed, with the error.
func TestBenchFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, stdout, stderr := benchRun(t, ctx, "bench", "--quick", "--scale", "0.001", "--reps", "1", "--only", "memory")
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitFailure, stdout, stderr)
	}
	if !strings.Contains(stdout, "ERROR memory:") || !strings.Contains(stderr, "lionactor:") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--scale", "-1"},
		{"bench", "--reps", "-2"},
		{"bench", "--rate", "-1"},
		{"bench", "--only", "warp"},
		{"bench", "--nope"},
		{"bench", "extra"},
	} {
		if code, stdout, stderr := benchRun(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s\n%s", args, code, exitUsage, stdout, stderr)
		}
	}
}

// TestBenchJSONUnwritable checks that a JSON file that cannot be written
// fails the command after the table.
func TestBenchJSONUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "bench.json")
	code, stdout, stderr := benchRun(t, benchContext(t), "bench", "--quick", "--scale", "0.001", "--reps", "1", "--only", "pipeline", "--json", path)
	if code != exitFailure || !strings.Contains(stdout, "1 pipeline") || !strings.Contains(stderr, "JSON report") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
