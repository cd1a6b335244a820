package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

const testAnthropicKey = "sk-ant-test-cli-0001"

// apiArgs are the arguments of a run of in through provider p's batch API
// of the simulator at base, into out.
func apiArgs(p, base, in, out string, extra ...string) []string {
	args := []string{"batch", "--via", "batch-api", "--provider", p, "--in", in, "--out", out, "--url", base, "--poll", "2ms"}
	if p == "anthropic" {
		args = append(args, "--model", "claude-sonnet-4-5")
	} else {
		args = append(args, "--model", testModel)
	}
	return append(args, extra...)
}

// apiCLI is a command with both providers' keys.
func apiCLI() *cli {
	c := newCLI()
	c.env["ANTHROPIC_API_KEY"] = testAnthropicKey
	return c
}

// createSignal is a simulator handler's wrapper that tells of each batch
// created.
func createSignal(created chan<- struct{}) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusWriter{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			if r.Method == http.MethodPost && (r.URL.Path == "/v1/batches" || r.URL.Path == "/v1/messages/batches") && rec.status == http.StatusOK {
				created <- struct{}{}
			}
		})
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	w.status = s
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func simBatchCount(sim *simtest.Recording) int64 {
	st := sim.Stats().Batches
	return st.OpenAIBatches + st.AnthropicBatches
}

func TestBatchViaBatchAPI(t *testing.T) {
	for _, p := range []string{"openai", "anthropic"} {
		t.Run(p, func(t *testing.T) {
			sim := simtest.StartRecording(t, simulator.Config{Seed: 3}, nil)
			dir := t.TempDir()
			const n = 1000
			in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
			c := apiCLI()
			if code := c.run(t, context.Background(), apiArgs(p, sim.URL+"/v1", in, out, "--batch-max-requests", "300", "--ordered")...); code != exitOK {
				t.Fatalf("exit %d", code)
			}
			results := readResults(t, out)
			checkEachOnce(t, results, n)
			batches := map[string]bool{}
			for i, r := range results {
				if r.Index != i {
					t.Fatalf("line %d has index %d: not in input order", i, r.Index)
				}
				if r.ProviderBatch == nil {
					t.Fatalf("index %d names no provider batch", r.Index)
				}
				batches[r.ProviderBatch.ID] = true
			}
			if len(batches) != 4 || simBatchCount(sim) != 4 {
				t.Errorf("%d batches answered, %d created", len(batches), simBatchCount(sim))
			}
			stderr := c.stderr.String()
			if s := parseSummary(t, stderr); s != (summaryCounts{completed: n, new: n}) {
				t.Errorf("summary %+v", s)
			}
			if !strings.Contains(stderr, "provider batches: 4 created, 0 resumed, 4 ended; 0 requests redone in a new batch, 0 sent online") {
				t.Errorf("no line of the provider batches in:\n%s", stderr)
			}
			journal, err := os.ReadFile(out + journalSuffix)
			if err != nil || bytes.Count(journal, []byte(`"event":"settled"`)) != 4 {
				t.Errorf("journal (%v):\n%.2000s", err, journal)
			}
			for _, key := range []string{testKey, testAnthropicKey} {
				if bytes.Contains(journal, []byte(key)) || strings.Contains(stderr, key) {
					t.Error("the key shows in the journal or on stderr")
				}
			}

			// Again: everything is done; nothing is created or written.
			before, _ := os.ReadFile(out)
			c = apiCLI()
			if code := c.run(t, context.Background(), apiArgs(p, sim.URL+"/v1", in, out)...); code != exitOK {
				t.Fatalf("rerun: exit %d", code)
			}
			after, _ := os.ReadFile(out)
			if !bytes.Equal(before, after) || simBatchCount(sim) != 4 {
				t.Errorf("the rerun wrote %d bytes, the simulator has %d batches", len(after)-len(before), simBatchCount(sim))
			}
		})
	}
}

func TestBatchViaBatchAPIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	in, out := writeRequests(t, dir, 3), filepath.Join(dir, "results.jsonl")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"batch", "--via", "bulk", "--in", in, "--out", out}, `--via: online or batch-api, not "bulk"`},
		{[]string{"batch", "--poll", "1s", "--in", in, "--out", out}, "--poll: only with --via batch-api"},
		{[]string{"batch", "--fallback-online", "--in", in, "--out", out}, "--fallback-online: only with --via batch-api"},
		{[]string{"batch", "--via", "batch-api", "--in", in}, "--via batch-api: needs --out FILE"},
		{[]string{"batch", "--via", "batch-api", "--in", in, "--out", "-"}, "--via batch-api: needs --out FILE"},
		{[]string{"batch", "--via", "batch-api", "--provider", "openai-compatible", "--url", "http://127.0.0.1:1/v1", "--in", in, "--out", out},
			"--provider: openai-compatible has no batch API here"},
		{[]string{"batch", "--via", "batch-api", "--batch-max-requests", "60000", "--in", in, "--out", out}, "--batch-max-requests: openai takes at most 50000 requests in a batch"},
		{[]string{"batch", "--via", "batch-api", "--completion-window", "1h", "--in", in, "--out", out}, "--completion-window: the providers offer a 24h window only"},
		{[]string{"batch", "--via", "batch-api", "--poll", "-1s", "--in", in, "--out", out}, "--poll: must not be negative"},
	} {
		c := newCLI()
		if code := c.run(t, context.Background(), tc.args...); code != exitUsage || !strings.Contains(c.stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args[1:5], code, c.stderr.String(), exitUsage, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused run created the results file")
	}
}

// Ctrl-C after the batches were created leaves them running and says so;
// the rerun collects them and creates none.
func TestBatchViaBatchAPIInterruptAndResume(t *testing.T) {
	for _, p := range []string{"openai", "anthropic"} {
		t.Run(p, func(t *testing.T) {
			created := make(chan struct{}, 100)
			sim := simtest.StartRecording(t, simulator.Config{Seed: 3, BatchDelay: time.Hour}, createSignal(created))
			dir := t.TempDir()
			const n = 300
			in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
			args := apiArgs(p, sim.URL+"/v1", in, out, "--batch-max-requests", "100")
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				for range 3 {
					<-created
				}
				cancel()
			}()
			c := apiCLI()
			if code := c.run(t, ctx, args...); code != exitInterrupted {
				t.Fatalf("exit %d", code)
			}
			stderr := c.stderr.String()
			if remaining(t, stderr) != n || !strings.Contains(stderr, "3 provider batches go on at the provider (a rerun collects them; --cancel-remote cancels them on an interrupt)") {
				t.Errorf("stderr:\n%s", stderr)
			}
			if strings.Contains(stderr, "Cancel them") {
				t.Error("asked without a terminal")
			}

			sim.AdvanceBatches(time.Hour)
			c = apiCLI()
			if code := c.run(t, context.Background(), args...); code != exitOK {
				t.Fatalf("rerun: exit %d", code)
			}
			checkEachOnce(t, readResults(t, out), n)
			if got := simBatchCount(sim); got != 3 {
				t.Errorf("%d batches created in all, want the first run's 3", got)
			}
			if !strings.Contains(c.stderr.String(), "provider batches: 0 created, 3 resumed, 3 ended") {
				t.Errorf("rerun stderr:\n%s", c.stderr.String())
			}
		})
	}
}

// Ctrl-C on a terminal asks whether to cancel the batches; --cancel-remote
// cancels them without asking.
func TestBatchViaBatchAPICancelOnInterrupt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		terminal bool
		answer   string
		extra    []string
		cancels  int64
	}{
		{"asked yes", true, "y\n", nil, 2},
		{"asked no", true, "n\n", nil, 0},
		{"no answer to read", true, "", nil, 0},
		{"cancel-remote", false, "", []string{"--cancel-remote"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			created := make(chan struct{}, 100)
			sim := simtest.StartRecording(t, simulator.Config{BatchDelay: time.Hour}, createSignal(created))
			dir := t.TempDir()
			in, out := writeRequests(t, dir, 20), filepath.Join(dir, "results.jsonl")
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-created
				<-created
				cancel()
			}()
			c := apiCLI()
			c.terminal = tc.terminal
			c.stdin = strings.NewReader(tc.answer)
			if code := c.run(t, ctx, apiArgs("openai", sim.URL+"/v1", in, out, append([]string{"--batch-max-requests", "10"}, tc.extra...)...)...); code != exitInterrupted {
				t.Fatalf("exit %d", code)
			}
			stderr := c.stderr.String()
			if asked := strings.Contains(stderr, "2 provider batches are still running"); asked != tc.terminal {
				t.Errorf("asked %v, on a terminal %v:\n%s", asked, tc.terminal, stderr)
			}
			if got := sim.Stats().Batches.Cancels; got != tc.cancels {
				t.Errorf("%d batches cancelled, want %d", got, tc.cancels)
			}
			if tc.cancels > 0 && !strings.Contains(stderr, "2 provider batches were asked to cancel") {
				t.Errorf("stderr:\n%s", stderr)
			}
		})
	}
}

// No answer within the wait leaves the batches running.
func TestAskToCancelWaits(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	var out bytes.Buffer
	if askToCancel(pr, &out, time.Millisecond)(3) {
		t.Error("no answer cancelled")
	}
	if !strings.Contains(out.String(), "3 provider batches are still running") || !strings.Contains(out.String(), "no answer: the batches go on") {
		t.Errorf("prompt:\n%s", out.String())
	}
	if !askToCancel(strings.NewReader("YES\n"), io.Discard, time.Second)(1) {
		t.Error("yes did not cancel")
	}
	if interruptedBatches(batch.Snapshot{}) != "" {
		t.Error("an online run's interrupt speaks of batches")
	}
}

// TestEndToEndBatchAPIKilledAndResumed runs the built binary through the
// batch API, kills it (SIGKILL: no cleanup) once its batches are created,
// and runs it again: the rerun polls the batches the killed process
// created, and creates none.
func TestEndToEndBatchAPIKilledAndResumed(t *testing.T) {
	bin := buildBinary(t)
	created := make(chan struct{}, 100)
	sim := simtest.StartRecording(t, simulator.Config{Seed: 3, BatchDelay: time.Hour}, createSignal(created))
	dir := t.TempDir()
	const n = 2000
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	args := apiArgs("openai", sim.URL+"/v1", in, out, "--batch-max-requests", "500")
	command := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+testKey)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		return cmd, &stderr
	}
	cmd, stderr := command()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		select {
		case <-created:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the batches were not created:\n%s", stderr)
		}
	}
	// The journal records each batch once it is created: wait for the
	// fourth record before the kill, as a crash just after it would.
	runtimetest.WaitFor(t, 30*time.Second, "the journal's records", func() bool {
		data, _ := os.ReadFile(out + journalSuffix)
		return bytes.Count(data, []byte(`"event":"created"`)) == 4
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) {
		t.Fatalf("killed run: %v", err)
	}
	if got := simBatchCount(sim); got != 4 {
		t.Fatalf("%d batches created before the kill", got)
	}

	sim.AdvanceBatches(time.Hour)
	cmd, stderr = command()
	if err := cmd.Run(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr)
	}
	t.Logf("rerun:\n%s", stderr)
	checkEachOnce(t, readResults(t, out), n)
	if got := simBatchCount(sim); got != 4 {
		t.Errorf("%d batches created in all, want the killed run's 4", got)
	}
	if !strings.Contains(stderr.String(), "provider batches: 0 created, 4 resumed, 4 ended") {
		t.Errorf("rerun stderr:\n%s", stderr)
	}
}

// The demo runs its requests through the simulator's batch API with --via
// batch-api.
func TestDemoViaBatchAPI(t *testing.T) {
	delay := demoBatchDelay
	demoBatchDelay = 0 // the simulator's batches end as they are created
	defer func() { demoBatchDelay = delay }()
	dir := t.TempDir()
	c := newCLI()
	if code := c.run(t, context.Background(), "demo", "--via", "batch-api", "--requests", "30", "--dir", dir); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, filepath.Join(dir, "results.jsonl"))
	if len(results) != 30 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if r.Status != "COMPLETED" || r.ProviderBatch == nil {
			t.Fatalf("index %d: %+v", r.Index, r)
		}
	}
	if !strings.Contains(c.stderr.String(), "provider batches: 1 created, 0 resumed, 1 ended") {
		t.Errorf("stderr:\n%s", c.stderr.String())
	}
	c = newCLI()
	if code := c.run(t, context.Background(), "demo", "--via", "bulk", "--dir", dir); code != exitUsage {
		t.Errorf("--via bulk: exit %d", code)
	}
}
