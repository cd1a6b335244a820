package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/runtime"
)

// TestMain checks that no run leaves a goroutine behind: the executor, the
// model's connections, the metrics server and the progress bar must all end
// with Run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "sk-test-batch-0001"

// testConfig is a fast configuration against the simulator at baseURL:
// generous limits and short retry backoffs.
func testConfig(baseURL string) Config {
	return Config{
		Endpoint: imodel.EndpointConfig{
			Provider: imodel.OpenAI, BaseURL: baseURL, APIKey: testKey, Model: "gpt-4o-mini",
			Retry: runtime.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, Retryable: imodel.Retryable},
		},
		RPM: 600_000, Concurrency: 16, MaxAttempts: 3, Timeout: 10 * time.Second,
		Queue: 64, Grace: 10 * time.Second,
	}
}

// request is one input line as the tests write it.
func request(i int) map[string]any {
	return map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": fmt.Sprintf("Say hello to number %d.", i)}},
		"max_tokens": 8,
		"id":         fmt.Sprintf("req-%04d", i),
		"metadata": map[string]any{
			"row": i,
			"nested": map[string]any{
				"tags": []any{"a", fmt.Sprint(i)},
				"deep": map[string]any{"ratio": 1.5, "ok": i%2 == 0, "none": nil},
			},
			// Beyond float64 precision: must come back digit for digit.
			"big": json.Number("12345678901234567890"),
		},
	}
}

func requestLine(t testing.TB, i int) string {
	t.Helper()
	b, err := json.Marshal(request(i))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonl returns n request lines, each ending in a newline.
func jsonl(t testing.TB, n int) string {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		sb.WriteString(requestLine(t, i))
		sb.WriteByte('\n')
	}
	return sb.String()
}

// parseResults parses every line of out into a Result; a line that does not
// parse fails the test.
func parseResults(t testing.TB, out []byte) []Result {
	t.Helper()
	var res []Result
	for n, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[len(line)-1] != '\n' {
			t.Fatalf("result line %d does not end in a newline: %q", n+1, line)
		}
		var r Result
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("result line %d does not parse: %v\n%s", n+1, err, line)
		}
		res = append(res, r)
	}
	return res
}

// byIndex maps results by index, failing the test on a duplicate.
func byIndex(t testing.TB, results []Result) map[int]Result {
	t.Helper()
	m := make(map[int]Result, len(results))
	for _, r := range results {
		if _, dup := m[r.Index]; dup {
			t.Fatalf("index %d has more than one result", r.Index)
		}
		m[r.Index] = r
	}
	return m
}

// wantIndices checks that results hold exactly the indices want, once each.
func wantIndices(t testing.TB, results []Result, want []int) map[int]Result {
	t.Helper()
	m := byIndex(t, results)
	if len(m) != len(want) {
		t.Errorf("got %d results, want %d", len(m), len(want))
	}
	for _, i := range want {
		if _, ok := m[i]; !ok {
			t.Errorf("index %d has no result", i)
		}
	}
	return m
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// sameJSON reports whether a and b are the same JSON value, numbers compared
// by their text.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	decode := func(b []byte) any {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, b)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// identities gives the identity of each line of input, blank lines being
// the zero identity, as Run gives them.
func identities(t testing.TB, input string) []identity {
	t.Helper()
	d := newIdentifier()
	var ids []identity
	for index, line := range strings.SplitAfter(input, "\n") {
		if strings.TrimSpace(line) == "" {
			ids = append(ids, identity{})
			continue
		}
		p, _ := parseLine([]byte(line))
		id, err := d.identify(index, []byte(line), p)
		if err != nil {
			t.Fatalf("line %d: %v", index+1, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// resultLines are the result lines a run writes for the lines at indices
// of input, each with the given status.
func resultLines(t testing.TB, input, status string, indices ...int) string {
	t.Helper()
	ids := identities(t, input)
	var sb strings.Builder
	for _, i := range indices {
		res := &Result{Index: i, Key: ids[i].key, ContentHash: ids[i].hash, ID: ids[i].id, Status: status}
		if status == "FAILED" {
			res.Error = &ResultError{Kind: "server", Message: "earlier failure"}
		}
		sb.Write(encode(res))
	}
	return sb.String()
}

// readPrior reads results as ReadPrior does, failing the test on an error.
func readPrior(t testing.TB, results string) *Prior {
	t.Helper()
	p, _, err := ReadPrior(strings.NewReader(results))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runInput runs cfg on input and returns the parsed results, the raw output,
// the summary and Run's error.
func runInput(t testing.TB, ctx context.Context, cfg Config, in Input, progress Reporter) ([]Result, []byte, *Summary, error) {
	t.Helper()
	var out bytes.Buffer
	sum, err := Run(ctx, cfg, in, &out, progress)
	return parseResults(t, out.Bytes()), out.Bytes(), sum, err
}

// lineWriter is an output that calls onLine after each line it is given,
// with the count so far. Run writes from one goroutine, but the test reads
// the output after Run returns, so it still locks.
type lineWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	lines  int
	onLine func(n int)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, _ := w.buf.Write(p)
	w.lines += bytes.Count(p, []byte("\n"))
	lines := w.lines
	w.mu.Unlock()
	if w.onLine != nil {
		w.onLine(lines)
	}
	return n, nil
}

func (w *lineWriter) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// newLocalClient is an HTTP client whose idle connections are closed when
// the test ends.
func newLocalClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
