package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/batch"
)

// TestMain checks that no command leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testKey   = "sk-test-cli-0001"
	testModel = "gpt-4o-mini"
)

// syncBuffer is a buffer safe for the concurrent writes of a run (progress,
// logs and the summary may come from different goroutines).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// onWrite, if set, sees what the buffer holds after each write.
	onWrite func(all string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	all := b.buf.String()
	f := b.onWrite
	b.mu.Unlock()
	if f != nil {
		f(all)
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cli is one in-process invocation of the command.
type cli struct {
	stdin          io.Reader
	stdout, stderr *syncBuffer
	env            map[string]string
	terminal       bool
}

func newCLI() *cli {
	return &cli{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: &syncBuffer{}, env: map[string]string{"OPENAI_API_KEY": testKey}}
}

func (c *cli) environ() env {
	return env{
		stdin: c.stdin, stdout: c.stdout, stderr: c.stderr,
		getenv:     func(k string) string { return c.env[k] },
		isTerminal: func(io.Writer) bool { return c.terminal },
	}
}

// run runs args and returns the exit code.
func (c *cli) run(t *testing.T, ctx context.Context, args ...string) int {
	t.Helper()
	code := run(ctx, c.environ(), args)
	t.Logf("lionactor %s: exit %d\nstderr:\n%s", strings.Join(args, " "), code, c.stderr.String())
	return code
}

// requestLine is input line i: a small chat request with an id and metadata.
func requestLine(i int) string {
	b, _ := json.Marshal(map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": fmt.Sprintf("Count to %d.", i%7)}},
		"max_tokens": 6,
		"id":         fmt.Sprintf("row-%d", i),
		"metadata":   map[string]any{"row": i, "batch": map[string]any{"name": "cli", "part": i % 3}},
	})
	return string(b)
}

// writeRequests writes n request lines to a new file in dir.
func writeRequests(t *testing.T, dir string, n int) string {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		sb.WriteString(requestLine(i))
		sb.WriteByte('\n')
	}
	path := filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseResults parses each line of data into a Result; a line that does not
// parse fails the test unless lenient, when it is counted and skipped.
func parseResults(t *testing.T, data []byte, lenient bool) (results []batch.Result, bad int) {
	t.Helper()
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r batch.Result
		if err := json.Unmarshal(line, &r); err != nil {
			if !lenient {
				t.Fatalf("result line %d does not parse: %v\n%s", n+1, err, line)
			}
			bad++
			continue
		}
		results = append(results, r)
	}
	return results, bad
}

func readResults(t *testing.T, path string) []batch.Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("%s does not end in a newline", path)
	}
	res, _ := parseResults(t, data, false)
	return res
}

// checkEachOnce checks that results hold every index below n exactly once,
// each COMPLETED with the id and metadata of its line.
func checkEachOnce(t *testing.T, results []batch.Result, n int) {
	t.Helper()
	seen := make(map[int]bool, n)
	for _, r := range results {
		if r.Index < 0 || r.Index >= n {
			t.Fatalf("index %d out of range", r.Index)
		}
		if seen[r.Index] {
			t.Fatalf("index %d has more than one result", r.Index)
		}
		seen[r.Index] = true
		if r.Status != "COMPLETED" {
			t.Fatalf("index %d: %s %+v", r.Index, r.Status, r.Error)
		}
		if want := fmt.Sprintf(`"row-%d"`, r.Index); string(r.ID) != want {
			t.Fatalf("index %d: id %s, want %s", r.Index, r.ID, want)
		}
		if want := fmt.Sprintf("id:row-%d", r.Index); r.Key != want || !hashRE.MatchString(r.ContentHash) {
			t.Fatalf("index %d: key %q content_hash %q, want %q and a SHA-256", r.Index, r.Key, r.ContentHash, want)
		}
		var md struct {
			Row   int `json:"row"`
			Batch struct {
				Name string `json:"name"`
				Part int    `json:"part"`
			} `json:"batch"`
		}
		if err := json.Unmarshal(r.Metadata, &md); err != nil || md.Row != r.Index || md.Batch.Name != "cli" || md.Batch.Part != r.Index%3 {
			t.Fatalf("index %d: metadata %s", r.Index, r.Metadata)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct indices, want %d", len(seen), n)
	}
}

var hashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// summaryCounts reads the counts from the summary's first line: results
// of this run, then how the input's requests stood before it.
type summaryCounts struct{ completed, failed, invalid, remaining, skipped, new int }

func parseSummary(t *testing.T, stderr string) summaryCounts {
	t.Helper()
	i := strings.LastIndex(stderr, "requests: ")
	if i < 0 {
		t.Fatalf("no summary in stderr:\n%s", stderr)
	}
	var s summaryCounts
	if _, err := fmt.Sscanf(stderr[i:], "requests: %d completed, %d failed, %d invalid input, %d remaining; %d done before, %d new",
		&s.completed, &s.failed, &s.invalid, &s.remaining, &s.skipped, &s.new); err != nil {
		t.Fatalf("summary does not parse: %v\n%s", err, stderr[i:])
	}
	return s
}

// server is a serving command (sim, budget serve) running in the test until
// stop, with its standard output read line by line.
type server struct {
	c      *cli
	lines  chan string
	exit   chan int
	cancel context.CancelFunc
}

// startServer runs args until stop.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	pr, pw := io.Pipe()
	s := &server{c: newCLI(), lines: make(chan string), exit: make(chan int, 1)}
	e := s.c.environ()
	e.stdout = pw
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	t.Cleanup(cancel)
	go func() {
		code := run(ctx, e, args)
		pw.Close()
		s.exit <- code
	}()
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// stop interrupts the command and returns the lines it printed after those
// already read, failing the test unless it exits 0.
func (s *server) stop(t *testing.T) []string {
	t.Helper()
	s.cancel()
	var rest []string
	for l := range s.lines {
		rest = append(rest, l)
	}
	if code := <-s.exit; code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, s.c.stderr.String())
	}
	return rest
}
