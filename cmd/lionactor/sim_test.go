package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var baseURLRE = regexp.MustCompile(`^simulator listening; base URL for clients: (http://127\.0\.0\.1:\d+/v1)$`)

func TestSimServesUntilCancelled(t *testing.T) {
	srv := startServer(t, "sim", "--addr", "127.0.0.1:0", "--rpm", "100", "--keys", "sk-test-cli-0001,sk-test-cli-0002", "--latency", "1ms")
	c, lines := srv.c, srv.lines
	first, ok := <-lines
	m := baseURLRE.FindStringSubmatch(first)
	if !ok || m == nil {
		t.Fatalf("first line %q does not give the base URL (stderr %s)", first, c.stderr.String())
	}
	base := m[1]
	if hint := <-lines; !strings.Contains(hint, "lionactor batch --url "+base+" --rpm 100") {
		t.Errorf("hint line %q", hint)
	}
	root := strings.TrimSuffix(base, "/v1")
	if hint := <-lines; !strings.Contains(hint, "Azure OpenAI: lionactor batch --provider azure --url "+root+" --deployment NAME --api-version") {
		t.Errorf("Azure hint line %q", hint)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(key string) int {
		req, _ := http.NewRequest("POST", base+"/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request to the simulator: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send(testKey); code != 200 {
		t.Errorf("a listed key got %d", code)
	}
	if code := send("sk-test-cli-9999"); code != 401 {
		t.Errorf("an unlisted key got %d, want 401", code)
	}
	// The Azure paths of the hint answer a listed key in api-key.
	req, _ := http.NewRequest("POST", root+"/openai/deployments/d/chat/completions?api-version=2024-10-21", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	req.Header.Set("api-key", testKey)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("Azure request: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()

	rest := srv.stop(t)
	if len(rest) != 1 || rest[0] != "served 3 requests (0 rate limited)" {
		t.Errorf("last lines %q", rest)
	}
	if c.stderr.String() != "" {
		t.Errorf("stderr %q", c.stderr.String())
	}
}

func TestSimServesBatches(t *testing.T) {
	srv := startServer(t, "sim", "--addr", "127.0.0.1:0", "--keys", testKey, "--batch-delay", "1h")
	m := baseURLRE.FindStringSubmatch(<-srv.lines)
	if m == nil {
		t.Fatalf("no base URL (stderr %s)", srv.c.stderr.String())
	}
	<-srv.lines // the hint
	<-srv.lines // the Azure hint
	base := m[1]
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(method, path, contentType string, body io.Reader) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, body)
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", contentType)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d, %v: %v", method, path, resp.StatusCode, err, v)
		}
		return v
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	for _, id := range []string{"a", "b"} {
		fmt.Fprintf(fw, `{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}`+"\n", id)
	}
	mw.Close()
	file := send("POST", "/files", mw.FormDataContentType(), &buf)
	created := send("POST", "/batches", "application/json", strings.NewReader(
		fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, file["id"])))
	// With an hour's delay the batch is still being validated.
	got := send("GET", "/batches/"+created["id"].(string), "", nil)
	if got["status"] != "validating" || got["in_progress_at"] != nil {
		t.Errorf("batch %v", got)
	}
	tr.CloseIdleConnections()
	rest := srv.stop(t)
	want := []string{"served 3 requests (0 rate limited)", "batches created: 1 OpenAI, 0 Anthropic (2 requests); files uploaded: 1"}
	if !slices.Equal(rest, want) {
		t.Errorf("last lines %q, want %q", rest, want)
	}
}

func TestSimUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--addr", "127.0.0.1:notaport"}, "notaport"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--fail-500", "1.5"}, "--fail-500: must be in [0, 1], got 1.5"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--latency", "1ms", "--jitter", "1s"}, "--jitter: must not exceed Latency"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--rpm", "-1"}, "--rpm: must not be negative, got -1"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--reasoning-tokens", "-3"}, "--reasoning-tokens: must not be negative, got -3"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--rpm", "10", "--request-burst", "20"}, "--request-burst: must not exceed RequestsPerMinute (10)"}, // a burst above its limit
		{[]string{"sim", "--addr", "127.0.0.1:0", "--token-burst", "5"}, "--token-burst: "},                                                           // a burst without a limit
		{[]string{"sim", "--fail-500", "often"}, "invalid argument"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--batch-delay", "-1s"}, "--batch-delay: must not be negative"},
		{[]string{"sim", "--addr", "127.0.0.1:0", "--batch-fail-500", "0.7", "--batch-expire", "0.7"}, "invalid config: BatchFaults: "},
	} {
		c := newCLI()
		if code := c.run(t, context.Background(), tt.args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		if c.stdout.String() != "" {
			t.Errorf("%q: printed %q", tt.args, c.stdout.String())
		}
		if !strings.HasPrefix(c.stderr.String(), "lionactor: ") || !strings.Contains(c.stderr.String(), tt.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tt.args, tt.want, c.stderr.String())
		}
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	c := newCLI()
	c.env = map[string]string{} // the demo needs no key
	start := time.Now()
	if code := c.run(t, context.Background(), "demo", "--requests", "40", "--dir", dir); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	t.Logf("demo took %v", time.Since(start))
	outPath, reportPath := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "report.html")
	if got := c.stdout.String(); got != "results: "+outPath+"\nreport: "+reportPath+"\n" {
		t.Errorf("stdout %q", got)
	}
	if page, err := os.ReadFile(reportPath); err != nil || !strings.Contains(string(page), `id="chart-requests"`) {
		t.Errorf("report: %v\n%.300s", err, page)
	}
	results := readResults(t, outPath)
	seen := map[int]bool{}
	for _, r := range results {
		if r.Status != "COMPLETED" || seen[r.Index] || r.Index < 0 || r.Index >= 40 {
			t.Fatalf("result %+v", r)
		}
		seen[r.Index] = true
	}
	if len(seen) != 40 {
		t.Errorf("%d results, want 40", len(seen))
	}
	stderr := c.stderr.String()
	for _, want := range []string{
		"enforcing 1200 requests/min and 150000 tokens/min",
		"running 40 chat requests from " + filepath.Join(dir, "requests.jsonl"),
		"requests: 40 completed, 0 failed, 0 invalid input, 0 remaining; 0 done before, 40 new",
		"simulator: 40 requests served, 0 answered 429",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	// The sample requests are valid JSONL with metadata.
	data, err := os.ReadFile(filepath.Join(dir, "requests.jsonl"))
	if err != nil || strings.Count(string(data), "\n") != 40 || !strings.Contains(string(data), `"metadata":{"row":39`) {
		t.Errorf("requests file: %v\n%.300s", err, data)
	}
}

func TestDemoInterrupted(t *testing.T) {
	dir := t.TempDir()
	c := newCLI()
	c.terminal = true
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := c.run(t, ctx, "demo", "--requests", "10", "--dir", dir); code == exitOK {
		t.Errorf("an interrupted demo exits 0")
	}
	if !strings.Contains(c.stderr.String(), "interrupted") {
		t.Errorf("stderr %q", c.stderr.String())
	}
}

func TestDemoBadDir(t *testing.T) {
	c := newCLI()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := c.run(t, context.Background(), "demo", "--requests", "1", "--dir", file); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
}

func TestDemoDefaultDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the demo makes its directory
	c := newCLI()
	if code := c.run(t, context.Background(), "demo", "--requests", "5"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	first, _, _ := strings.Cut(c.stdout.String(), "\n")
	path, ok := strings.CutPrefix(first, "results: ")
	if !ok || !strings.HasPrefix(path, filepath.Join(tmp, "lionactor-demo-")) {
		t.Fatalf("stdout %q, want a results file under %s", c.stdout.String(), tmp)
	}
	if got := len(readResults(t, path)); got != 5 {
		t.Errorf("%d results, want 5", got)
	}
}

// --key-limits serves several keys, each at its own limits, and shows
// them (by their last four characters only) on start and at the end.
func TestSimKeyLimits(t *testing.T) {
	srv := startServer(t, "sim", "--addr", "127.0.0.1:0", "--key-limits", "sk-sim-key-aaaa=2,sk-sim-key-bbbb=3:90000", "--keys", testKey)
	m := baseURLRE.FindStringSubmatch(<-srv.lines)
	if m == nil {
		t.Fatal("no base URL")
	}
	base := m[1]
	var lines []string
	for range 4 {
		lines = append(lines, <-srv.lines)
	}
	if lines[2] != "  key …aaaa: 2 requests/min" || lines[3] != "  key …bbbb: 3 requests/min, 90000 tokens/min" {
		t.Errorf("start lines %q", lines)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(key string) int {
		req, _ := http.NewRequest("POST", base+"/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var got []int
	for range 3 {
		got = append(got, send("sk-sim-key-aaaa"))
	}
	got = append(got, send("sk-sim-key-bbbb"), send(testKey), send("sk-unknown-0000"))
	if !slices.Equal(got, []int{200, 200, 429, 200, 200, 401}) {
		t.Errorf("statuses %v", got)
	}
	tr.CloseIdleConnections()
	rest := srv.stop(t)
	want := []string{"served 6 requests (1 rate limited)", "  key …aaaa: 3 requests (1 rate limited)", "  key …bbbb: 1 requests (0 rate limited)"}
	if !slices.Equal(rest, want) {
		t.Errorf("last lines %q, want %q", rest, want)
	}
	if out := srv.c.stderr.String() + strings.Join(lines, "\n") + strings.Join(rest, "\n"); strings.Contains(out, "sk-sim-key") {
		t.Errorf("a key is shown whole: %s", out)
	}
}

func TestSimKeyLimitsErrors(t *testing.T) {
	for _, c := range []struct{ value, want string }{
		{"sk-a", "--key-limits: item 1: want KEY=RPM[:TPM]"},
		{"sk-abcd=1,sk-abcd=2", "--key-limits: item 2: the key …abcd is given twice"},
		{"sk-a=x", `--key-limits: item 1: RPM "x" is not a number`},
		{"sk-a=5:-1", `--key-limits: item 1: TPM "-1" is not a number`},
		{"sk-a=5 --request-burst 6", "--key-limits: must not exceed RequestsPerMinute (5), got 6"},
	} {
		cli := newCLI()
		value, more, _ := strings.Cut(c.value, " ")
		args := append([]string{"sim", "--key-limits", value}, strings.Fields(more)...)
		if code := cli.run(t, context.Background(), args...); code != exitUsage || !strings.Contains(cli.stderr.String(), c.want) {
			t.Errorf("--key-limits %s: exit %d, stderr %q", c.value, code, cli.stderr.String())
		}
	}
}
