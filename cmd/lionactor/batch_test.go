package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

func TestBatchThousandRequests(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{RequestsPerMinute: 60_000})
	dir := t.TempDir()
	const n = 1000
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	args := []string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "60000", "--concurrency", "64"}

	c := newCLI()
	if code := c.run(t, context.Background(), args...); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	var estimated, actual int
	for _, r := range results {
		estimated += r.Tokens.Estimated
		if r.Tokens.Actual == nil {
			t.Fatalf("index %d has no actual tokens", r.Index)
		}
		actual += *r.Tokens.Actual
	}
	stderr := c.stderr.String()
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: n, new: n}) {
		t.Errorf("summary %+v, want %d completed and nothing else", s, n)
	}
	if want := fmt.Sprintf("tokens: %d estimated, %d actual", estimated, actual); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q", want)
	}
	if want := fmt.Sprintf("progress: %d/%d done (%d ok, 0 failed, 0 invalid)", n, n, n); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks the final progress line %q", want)
	}
	if c.stdout.String() != "" {
		t.Errorf("stdout %q, want nothing (results go to --out)", c.stdout.String())
	}
	st := sim.Stats()
	if st.Requests != n || st.RateLimited != 0 {
		t.Errorf("simulator served %d requests, %d rate limited", st.Requests, st.RateLimited)
	}

	// Run again: everything is done, nothing is sent, nothing is appended.
	before, _ := os.ReadFile(out)
	c = newCLI()
	if code := c.run(t, context.Background(), args...); code != exitOK {
		t.Fatalf("rerun: exit %d", code)
	}
	after, _ := os.ReadFile(out)
	if string(after) != string(before) {
		t.Errorf("a rerun of a finished batch changed the results file")
	}
	if s := parseSummary(t, c.stderr.String()); s != (summaryCounts{skipped: n}) {
		t.Errorf("rerun summary %+v, want %d skipped", s, n)
	}
	if sim.Stats().Requests != n {
		t.Errorf("the rerun sent requests")
	}
}

func TestBatchOrdered(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 8 * time.Millisecond, LatencyJitter: 7 * time.Millisecond, Seed: 11})
	dir := t.TempDir()
	const n = 120
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000", "--concurrency", "16", "--ordered"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	for k, r := range results {
		if r.Index != k {
			t.Fatalf("line %d holds index %d", k, r.Index)
		}
	}
}

func TestBatchStdinToStdout(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	const n = 30
	var sb strings.Builder
	for i := range n {
		sb.WriteString(requestLine(i) + "\n")
	}
	c := newCLI()
	c.stdin = strings.NewReader(sb.String())
	if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel, "--rpm", "600000", "--progress-every", "1h"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	checkEachOnce(t, results, n)
	if s := parseSummary(t, c.stderr.String()); s != (summaryCounts{completed: n, new: n}) {
		t.Errorf("summary %+v", s)
	}
	// Standard input is read to its end before the run: its total is known.
	if !strings.Contains(c.stderr.String(), fmt.Sprintf("progress: %d/%d done", n, n)) {
		t.Errorf("stderr lacks the final progress line")
	}
	if sim.Stats().Requests != n {
		t.Errorf("simulator got %d requests", sim.Stats().Requests)
	}

	// "-" names standard input and output too.
	c = newCLI()
	c.stdin = strings.NewReader(requestLine(0) + "\n")
	if code := c.run(t, context.Background(), "batch", "--in", "-", "--out", "-", "--url", base, "--model", testModel); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ = parseResults(t, []byte(c.stdout.String()), false)
	checkEachOnce(t, results, 1)
}

func TestBatchConfigFile(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 8 * time.Millisecond, LatencyJitter: 7 * time.Millisecond, Seed: 4})
	dir := t.TempDir()
	const n = 60
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	config := filepath.Join(dir, "batch.yaml")
	// rpm 0 is invalid: the run works only because --rpm on the command
	// line wins. The rest comes from the file: in, out, url, ordered, a key
	// variable of its own, durations.
	yaml := fmt.Sprintf("in: %s\nout: %s\nurl: %s\nmodel: gpt-4o-mini\nrpm: 0\nconcurrency: 16\nordered: true\napi-key-env: MY_KEY\ntimeout: 20s\ngrace: 1m\nmax-attempts: 2\n", in, out, base)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	c.env = map[string]string{"MY_KEY": testKey}
	if code := c.run(t, context.Background(), "batch", "--config", config, "--rpm", "600000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	for k, r := range results {
		if r.Index != k {
			t.Fatalf("ordered: true in the config was not applied: line %d holds index %d", k, r.Index)
		}
	}

	// Without the flag, the file's rpm 0 applies and is refused.
	c = newCLI()
	c.env = map[string]string{"MY_KEY": testKey}
	if code := c.run(t, context.Background(), "batch", "--config", config); code != exitUsage {
		t.Errorf("config rpm 0: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(c.stderr.String(), "rpm") {
		t.Errorf("stderr does not name rpm: %s", c.stderr.String())
	}
}

func TestBatchConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "rpm: 100\nspeed: fast\n", `unknown setting "speed"`},
		{"config inside config", "config: other.yaml\n", `unknown setting "config"`},
		{"bad value", "rpm: lots\n", "rpm"},
		{"bad duration", "timeout: 30\n", "timeout"},
		{"not YAML", "rpm: [1, 2\n", "config"},
		{"not a mapping", "- rpm\n- 100\n", "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{})
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c := newCLI()
			c.stdin = strings.NewReader(requestLine(0) + "\n")
			if code := c.run(t, context.Background(), "batch", "--config", path, "--url", base, "--model", testModel); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(c.stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, c.stderr.String())
			}
			if sim.Stats().Requests != 0 {
				t.Errorf("requests were sent")
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		c := newCLI()
		if code := c.run(t, context.Background(), "batch", "--config", filepath.Join(dir, "none.yaml")); code != exitUsage {
			t.Errorf("exit %d, want %d", code, exitUsage)
		}
		if !strings.Contains(c.stderr.String(), "reading config") {
			t.Errorf("stderr: %s", c.stderr.String())
		}
	})
}

func TestBatchMissingAPIKey(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "OPENAI_API_KEY"},
		{[]string{"--provider", "openai"}, "OPENAI_API_KEY"},
		{[]string{"--provider", "anthropic"}, "ANTHROPIC_API_KEY"},
		{[]string{"--api-key-env", "TEAM_KEY"}, "TEAM_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{})
			dir := t.TempDir()
			in, out := writeRequests(t, dir, 5), filepath.Join(dir, "results.jsonl")
			c := newCLI()
			// The other provider's key, and a blank one, do not count.
			c.env = map[string]string{"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "  "}
			if tt.want == "OPENAI_API_KEY" {
				c.env["ANTHROPIC_API_KEY"] = testKey
			}
			args := append([]string{"batch", "--in", in, "--out", out, "--url", base}, tt.args...)
			if code := c.run(t, context.Background(), args...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if msg := c.stderr.String(); !strings.Contains(msg, "missing API key") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr does not name %s: %s", tt.want, msg)
			}
			if st := sim.Stats(); st.Requests != 0 {
				t.Errorf("%d requests were sent", st.Requests)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the results file was created: %v", err)
			}
		})
	}
}

func TestBatchUsageErrors(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeRequests(t, dir, 3)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing input", []string{"--in", filepath.Join(dir, "none.jsonl")}, "input:"},
		{"input is a directory", []string{"--in", dir}, "input:"},
		{"output is a directory", []string{"--in", in, "--out", dir}, "output:"},
		{"rpm zero", []string{"--in", in, "--rpm", "0"}, "rpm: must be positive"},
		{"negative tpm", []string{"--in", in, "--tpm", "-1"}, "tpm"},
		{"concurrency zero", []string{"--in", in, "--concurrency", "0"}, "concurrency"},
		{"max attempts zero", []string{"--in", in, "--max-attempts", "0"}, "max-attempts"},
		{"queue zero", []string{"--in", in, "--queue", "0"}, "queue"},
		{"negative grace", []string{"--in", in, "--grace", "-1s"}, "grace"},
		{"bad flag value", []string{"--in", in, "--rpm", "fast"}, "invalid argument"},
		{"bad duration", []string{"--in", in, "--timeout", "soon"}, "invalid argument"},
		{"unknown flag", []string{"--in", in, "--turbo"}, "unknown flag"},
		{"two arguments", []string{in, in}, "accepts at most 1 arg"},
		{"argument and another --in", []string{in, "--in", filepath.Join(dir, "other.jsonl")}, "two inputs"},
		{"unknown provider", []string{"--in", in, "--provider", "acme"}, `--provider: unknown provider "acme"`},
		{"bad url", []string{"--in", in, "--url", "not a url"}, "--url: must be an absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			args := append([]string{"batch"}, tt.args...)
			if !slices.Contains(args, "--url") {
				args = append(args, "--url", base, "--model", testModel)
			}
			if code := c.run(t, context.Background(), args...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(c.stderr.String(), tt.want) || !strings.HasPrefix(c.stderr.String(), "lionactor: ") {
				t.Errorf("stderr lacks %q:\n%s", tt.want, c.stderr.String())
			}
		})
	}
	if st := sim.Stats(); st.Requests != 0 {
		t.Errorf("%d requests were sent", st.Requests)
	}
}

// TestRootUsage: every error cobra finds in the arguments exits 2, the
// usage code, by the commands' own argument checks; the help exits 0.
func TestRootUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "lionactor"`},
		{[]string{"bach"}, "Did you mean this?\n\tbatch\n"},
		{[]string{"--turbo"}, "unknown flag: --turbo"},
		{[]string{"sim", "extra"}, `unknown command "extra" for "lionactor sim"`},
		{[]string{"budget", "extra"}, `unknown command "extra" for "lionactor budget"`},
		{[]string{"batch", "a.jsonl", "b.jsonl"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"completion", "bash", "extra"}, `unknown command "extra" for "lionactor completion bash"`},
		{[]string{"demo", "--requests", "x"}, `invalid argument "x" for "--requests"`},
	} {
		c := newCLI()
		if code := c.run(t, context.Background(), tt.args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		if !strings.HasPrefix(c.stderr.String(), "lionactor: ") || !strings.Contains(c.stderr.String(), tt.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tt.args, tt.want, c.stderr.String())
		}
	}
	for _, args := range [][]string{nil, {"--help"}, {"batch", "--help"}} {
		c := newCLI()
		if code := c.run(t, context.Background(), args...); code != exitOK {
			t.Errorf("%q: exit %d, want 0", args, code)
		}
		if !strings.Contains(c.stdout.String(), "Usage:") {
			t.Errorf("%q: no usage on stdout: %q", args, c.stdout.String())
		}
	}
}

func TestBatchNeverShowsTheKey(t *testing.T) {
	t.Run("faults, verbose", func(t *testing.T) {
		_, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{ServerError: 0.3, RateLimit: 0.2, Malformed: 0.1}, FaultRetryAfter: 5 * time.Millisecond, Seed: 8})
		var sb strings.Builder
		for i := range 40 {
			sb.WriteString(requestLine(i) + "\n")
		}
		c := newCLI()
		c.stdin = strings.NewReader(sb.String())
		if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel, "--rpm", "600000", "--max-attempts", "2", "--verbose", "--progress-every", "0s"); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		results, _ := parseResults(t, []byte(c.stdout.String()), false)
		if len(results) != 40 {
			t.Fatalf("%d results", len(results))
		}
		failed := 0
		for _, r := range results {
			if r.Status == "FAILED" {
				failed++
			}
		}
		if failed == 0 || !strings.Contains(c.stderr.String(), "imodel: attempt") {
			t.Fatalf("the run did not exercise failures (%d) and logs", failed)
		}
		for name, out := range map[string]string{"stdout": c.stdout.String(), "stderr": c.stderr.String()} {
			if strings.Contains(out, testKey) || strings.Contains(out, "cli-0001") {
				t.Errorf("the API key appears on %s", name)
			}
		}
	})
	t.Run("rejected key", func(t *testing.T) {
		_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-test-cli-other"}})
		c := newCLI()
		c.stdin = strings.NewReader(requestLine(0) + "\n" + requestLine(1) + "\n")
		if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel, "--verbose"); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		results, _ := parseResults(t, []byte(c.stdout.String()), false)
		if len(results) != 2 || results[0].Status != "FAILED" || results[0].Error == nil || results[0].Error.Kind != "auth" {
			t.Fatalf("results %+v, want 2 FAILED auth", results)
		}
		for name, out := range map[string]string{"stdout": c.stdout.String(), "stderr": c.stderr.String()} {
			if strings.Contains(out, testKey) {
				t.Errorf("the API key appears on %s", name)
			}
		}
	})
}

func TestBatchAnthropic(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	const n = 20
	var sb strings.Builder
	for i := range n {
		sb.WriteString(requestLine(i) + "\n")
	}
	c := newCLI()
	c.env = map[string]string{"ANTHROPIC_API_KEY": testKey}
	c.stdin = strings.NewReader(sb.String())
	if code := c.run(t, context.Background(), "batch", "--provider", "anthropic", "--url", base, "--model", "claude-3-5-haiku-latest", "--rpm", "60000", "--tpm", "100000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	checkEachOnce(t, results, n)
	if !strings.Contains(string(results[0].Response), `"type":"message"`) {
		t.Errorf("not an Anthropic message: %s", results[0].Response)
	}
	if st := sim.Stats(); st.ByKey[testKey].Requests != n {
		t.Errorf("simulator stats %+v", st.ByKey)
	}
}

func TestBatchResumesAfterCrash(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	const n = 50
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	// An earlier run wrote indices 0 and 1, a CANCELLED line for 2 (which
	// batch never writes, but a rerun must redo it), and was cut short in
	// the middle of index 3's line.
	prior := `{"index":0,"id":"row-0","status":"COMPLETED","attempts":1,"tokens":{"estimated":1},"timings":{"created":"2025-01-01T00:00:00Z","queue_ms":0,"permit_ms":0,"call_ms":0,"total_ms":0},"metadata":{"row":0,"batch":{"name":"cli","part":0}}}
{"index":1,"id":"row-1","status":"COMPLETED","attempts":1,"tokens":{"estimated":1},"timings":{"created":"2025-01-01T00:00:00Z","queue_ms":0,"permit_ms":0,"call_ms":0,"total_ms":0},"metadata":{"row":1,"batch":{"name":"cli","part":1}}}
{"index":2,"status":"CANCELLED"}
{"index":3,"id":"row-3","status":"COMPL`
	if err := os.WriteFile(out, []byte(prior), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	data, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(data), prior+"\n") {
		t.Errorf("the cut line was not ended with a newline before appending")
	}
	results, bad := parseResults(t, data, true)
	if bad != 1 {
		t.Errorf("%d unparsable lines, want only the cut one", bad)
	}
	var final []int
	for _, r := range results {
		if r.Status != "CANCELLED" {
			final = append(final, r.Index)
		}
	}
	slices.Sort(final)
	if want := seqInts(0, n); !slices.Equal(final, want) {
		t.Errorf("final results for %v, want each of 0..%d once", final, n-1)
	}
	if s := parseSummary(t, c.stderr.String()); s != (summaryCounts{completed: n - 2, skipped: 2, new: n - 2}) {
		t.Errorf("summary %+v", s)
	}
	if st := sim.Stats(); st.Requests != n-2 {
		t.Errorf("simulator got %d requests, want %d", st.Requests, n-2)
	}
}

func seqInts(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

var remainRE = regexp.MustCompile(`(?m)^lionactor: interrupted: (\d+) requests remain; rerun the same command to finish them$`)

// remaining reads N from the "interrupted: N requests remain" line.
func remaining(t *testing.T, stderr string) int {
	t.Helper()
	m := remainRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no interrupted line in stderr:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestBatchInterruptAndRerun(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Latency: 10 * time.Millisecond})
	dir := t.TempDir()
	const n = 400
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	args := []string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000", "--concurrency", "8", "--queue", "50", "--progress-every", "0s"}

	// Interrupt once 40 results are in: with --progress-every 0 each result
	// prints a progress line.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCLI()
	c.stderr.onWrite = func(all string) {
		if strings.Count(all, "progress: ") >= 40 {
			cancel()
		}
	}
	if code := c.run(t, ctx, args...); code != exitInterrupted {
		t.Fatalf("exit %d, want %d", code, exitInterrupted)
	}
	left := remaining(t, c.stderr.String())
	first := readResults(t, out)
	if len(first)+left != n || len(first) < 40 {
		t.Errorf("%d written + %d remaining != %d", len(first), left, n)
	}
	if s := parseSummary(t, c.stderr.String()); s.remaining != left || s.completed != len(first) {
		t.Errorf("summary %+v; %d written, %d remaining", s, len(first), left)
	}

	c = newCLI()
	if code := c.run(t, context.Background(), args...); code != exitOK {
		t.Fatalf("rerun: exit %d", code)
	}
	all := readResults(t, out)
	checkEachOnce(t, all, n)
	if second := len(all) - len(first); second != left {
		t.Errorf("the rerun wrote %d results; the first run said %d remain", second, left)
	}
	if s := parseSummary(t, c.stderr.String()); s != (summaryCounts{completed: left, skipped: len(first), new: left}) {
		t.Errorf("rerun summary %+v", s)
	}
	if int(sim.Stats().Requests) < n {
		t.Errorf("simulator served %d requests for %d lines", sim.Stats().Requests, n)
	}
}

func TestBatchTerminalProgressAndMetrics(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	const n = 30
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	c := newCLI()
	c.terminal = true // a progress bar instead of lines
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--metrics-addr", "127.0.0.1:0", "--burst", "5", "--rpm", "600000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	checkEachOnce(t, readResults(t, out), n)
	if strings.Contains(c.stderr.String(), "progress: ") {
		t.Errorf("a terminal got progress lines")
	}
	if s := parseSummary(t, c.stderr.String()); s.completed != n {
		t.Errorf("summary %+v", s)
	}
}

func TestBatchMetricsAddressInUse(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	c := newCLI()
	c.stdin = strings.NewReader(requestLine(0) + "\n")
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/v1")
	if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel, "--metrics-addr", addr); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestBatchOutputFails(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	c := newCLI()
	c.stdin = strings.NewReader(requestLine(0) + "\n" + requestLine(1) + "\n")
	e := c.environ()
	e.stdout = brokenWriter{}
	code := run(context.Background(), e, []string{"batch", "--url", base})
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(c.stderr.String(), "broken pipe") {
		t.Errorf("stderr: %s", c.stderr.String())
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&syncBuffer{}) {
		t.Errorf("a file or a buffer is taken for a terminal")
	}
}
