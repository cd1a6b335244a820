package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func TestRunCompletesEveryRequestOnce(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	const n = 120
	in := jsonl(t, n)
	results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader(in), Total: n}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, n))

	var estimated, actual int64
	requestIDs := map[string]bool{}
	for i := range n {
		r := got[i]
		if r.Status != "COMPLETED" {
			t.Fatalf("index %d: status %s, error %+v", i, r.Status, r.Error)
		}
		if r.Error != nil {
			t.Errorf("index %d: completed with an error %+v", i, r.Error)
		}
		if want := fmt.Sprintf(`"req-%04d"`, i); string(r.ID) != want {
			t.Errorf("index %d: id %s, want %s", i, r.ID, want)
		}
		wantMD, _ := json.Marshal(request(i)["metadata"])
		if !sameJSON(t, r.Metadata, wantMD) {
			t.Errorf("index %d: metadata %s, want %s", i, r.Metadata, wantMD)
		}
		if !bytes.Contains(r.Metadata, []byte("12345678901234567890")) {
			t.Errorf("index %d: metadata lost the big number's digits: %s", i, r.Metadata)
		}
		if r.RequestID == "" || requestIDs[r.RequestID] {
			t.Errorf("index %d: request_id %q empty or repeated", i, r.RequestID)
		}
		requestIDs[r.RequestID] = true
		if r.Attempts != 1 {
			t.Errorf("index %d: %d attempts, want 1", i, r.Attempts)
		}
		var reply struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(r.Response, &reply); err != nil || len(reply.Choices) != 1 || reply.Choices[0].Message.Content == "" {
			t.Errorf("index %d: response is not a chat completion (%v): %s", i, err, r.Response)
		}
		if bytes.Contains(r.Response, []byte(`"metadata"`)) {
			t.Errorf("index %d: the response echoes metadata, which must not be sent", i)
		}
		if r.Tokens.Estimated <= 0 {
			t.Errorf("index %d: estimated tokens %d", i, r.Tokens.Estimated)
		}
		if r.Tokens.Actual == nil || *r.Tokens.Actual <= 0 {
			t.Errorf("index %d: actual tokens %v", i, r.Tokens.Actual)
		} else {
			actual += int64(*r.Tokens.Actual)
		}
		estimated += int64(r.Tokens.Estimated)
		tm := r.Timings
		if tm.Created.IsZero() || tm.QueueMS < 0 || tm.WaitMS < 0 || tm.CallMS < 0 || tm.TotalMS < tm.CallMS {
			t.Errorf("index %d: bad timings %+v", i, tm)
		}
	}

	s := sum.Snapshot()
	if s.Completed != n || s.Failed != 0 || s.InvalidInput != 0 || s.Cancelled != 0 || s.Read != n || s.Total != n {
		t.Errorf("summary %+v, want %d completed of %d read", s, n, n)
	}
	if s.Remaining() != 0 || s.Done() != n {
		t.Errorf("remaining %d, done %d; want 0 and %d", s.Remaining(), s.Done(), n)
	}
	if s.TokensEstimated != estimated || s.TokensActual != actual {
		t.Errorf("summary tokens %d estimated, %d actual; the file says %d and %d", s.TokensEstimated, s.TokensActual, estimated, actual)
	}
	if s.P50 <= 0 || s.P50 > s.P95 || s.P95 > s.P99 {
		t.Errorf("latency percentiles p50 %v p95 %v p99 %v", s.P50, s.P95, s.P99)
	}
	if !s.End.After(s.Start) {
		t.Errorf("end %v not after start %v", s.End, s.Start)
	}
	if st := sim.Stats(); st.Requests != n {
		t.Errorf("simulator served %d requests, want %d", st.Requests, n)
	}
}

// A request that ends frees its window slot before its caller takes the next
// request from the queue: with a queue as small as it gets, the executor must
// still never refuse one.
func TestRunSmallQueueNeverRefuses(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.Queue, cfg.Concurrency = 1, 8
	const n = 300
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, n))
	for i := range n {
		if got[i].Status != "COMPLETED" {
			t.Fatalf("index %d: %s %+v", i, got[i].Status, got[i].Error)
		}
	}
	if s := sum.Snapshot(); s.Completed != n || s.Cancelled != 0 {
		t.Errorf("summary %+v", s)
	}
}

// Every request read must end with a line: a context that can never end
// (whose Done channel is nil) is no interrupt.
func TestRunBackgroundContextCancelsNothing(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 5 * time.Millisecond})
	cfg := testConfig(base)
	cfg.Concurrency, cfg.Queue = 4, 200
	const n = 200
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantIndices(t, results, seq(0, n))
	if s := sum.Snapshot(); s.Completed != n || s.Cancelled != 0 || s.Remaining() != 0 {
		t.Errorf("summary: %d completed, %d cancelled, %d remaining; want %d, 0, 0", s.Completed, s.Cancelled, s.Remaining(), n)
	}
}

func TestRunOrdered(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 10 * time.Millisecond, LatencyJitter: 9 * time.Millisecond, Seed: 3})
	const n = 80
	// Blank lines and a bad line among the requests: they must not hold up
	// the order, and the bad line's result takes its place.
	var sb strings.Builder
	want := []int{}
	for i := range n {
		switch {
		case i%17 == 5:
			sb.WriteString("\n")
		case i == 40:
			sb.WriteString("not json\n")
			want = append(want, i)
		default:
			sb.WriteString(requestLine(t, i) + "\n")
			want = append(want, i)
		}
	}
	run := func(ordered bool) []Result {
		cfg := testConfig(base)
		cfg.Concurrency, cfg.Ordered = 16, ordered
		results, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(sb.String())}, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		wantIndices(t, results, want)
		return results
	}
	results := run(true)
	for k, r := range results {
		if r.Index != want[k] {
			t.Fatalf("ordered line %d has index %d, want %d", k, r.Index, want[k])
		}
	}
	if results[slices.Index(want, 40)].Status != "FAILED" {
		t.Errorf("line 41 is not FAILED: %+v", results[slices.Index(want, 40)])
	}
	// The same run unordered comes back in completion order, which the
	// latency jitter shuffles: the ordered check above is not vacuous.
	unordered := run(false)
	if slices.IsSortedFunc(unordered, func(a, b Result) int { return a.Index - b.Index }) {
		t.Errorf("unordered results came back in input order: the jitter did not shuffle them")
	}
}

func TestRunBlankAndMalformedLines(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	lines := []string{
		"",                        // 0 blank
		requestLine(t, 1),         // 1
		"   \t",                   // 2 blank
		"not json",                // 3
		"[1, 2, 3]",               // 4 an array
		`{"a": 1} {"b": 2}`,       // 5 two values
		requestLine(t, 6),         // 6
		"null",                    // 7
		requestLine(t, 8) + "}",   // 8 a stray brace after the object
		`"just a string"`,         // 9
		"\r",                      // 10 blank (CRLF file)
		requestLine(t, 11) + "\r", // 11 CRLF ending
		"",                        // 12 blank
		requestLine(t, 13),        // 13, with no final newline
	}
	input := strings.Join(lines, "\n")
	results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	valid := []int{1, 6, 11, 13}
	invalid := map[int]string{3: "not a JSON object", 4: "not a JSON object", 5: "more than one JSON value", 7: "not a JSON object", 8: "more than one JSON value", 9: "not a JSON object"}
	got := wantIndices(t, results, append(slices.Clone(valid), slices.Collect(maps.Keys(invalid))...))
	for _, i := range valid {
		r := got[i]
		if r.Status != "COMPLETED" || string(r.ID) != fmt.Sprintf(`"req-%04d"`, i) {
			t.Errorf("index %d: %s id %s, error %+v", i, r.Status, r.ID, r.Error)
		}
	}
	for i, reason := range invalid {
		r := got[i]
		if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "invalid_input" {
			t.Errorf("index %d: %s %+v, want FAILED invalid_input", i, r.Status, r.Error)
			continue
		}
		if prefix := fmt.Sprintf("line %d: ", i+1); !strings.HasPrefix(r.Error.Message, prefix) || !strings.Contains(r.Error.Message, reason) {
			t.Errorf("index %d: message %q, want %q... %q", i, r.Error.Message, prefix, reason)
		}
		if r.RequestID != "" || r.Attempts != 0 || r.Response != nil {
			t.Errorf("index %d: an input failure has request details: %+v", i, r)
		}
	}
	s := sum.Snapshot()
	if s.Read != len(valid)+len(invalid) || s.Completed != len(valid) || s.InvalidInput != len(invalid) || s.Failed != 0 || s.Remaining() != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunTooManyTokens(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.TPM = 5000 // the token bucket holds a minute: 5000 tokens at most per request
	huge := request(2)
	huge["max_tokens"] = 9000
	b, _ := json.Marshal(huge)
	input := requestLine(t, 0) + "\n" + requestLine(t, 1) + "\n" + string(b) + "\n" + requestLine(t, 3) + "\n"
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, 4))
	r := got[2]
	if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "too_many_tokens" {
		t.Fatalf("index 2: %s %+v, want FAILED too_many_tokens", r.Status, r.Error)
	}
	for _, want := range []string{"line 3: ", "exceed the token limit of 5000 a minute (TPM)", "could never run"} {
		if !strings.Contains(r.Error.Message, want) {
			t.Errorf("message %q lacks %q", r.Error.Message, want)
		}
	}
	// The line parsed: its result keeps its id and metadata.
	wantMD, _ := json.Marshal(huge["metadata"])
	if string(r.ID) != `"req-0002"` || !sameJSON(t, r.Metadata, wantMD) {
		t.Errorf("index 2: id %s metadata %s, want the line's", r.ID, r.Metadata)
	}
	for _, i := range []int{0, 1, 3} {
		if got[i].Status != "COMPLETED" {
			t.Errorf("index %d: %s %+v", i, got[i].Status, got[i].Error)
		}
	}
	if s := sum.Snapshot(); s.InvalidInput != 1 || s.Completed != 3 || s.TPMLimit != 5000 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunSkipsDoneIndices(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	const n = 40
	skip := map[int]bool{0: true, 3: true, 17: true, 38: true, 39: true}
	input := jsonl(t, n)
	// A result for a request no longer in the input changes nothing.
	prior := readPrior(t, resultLines(t, input, "COMPLETED", 0, 3, 17, 38, 39)+
		string(encode(&Result{Index: 12, Key: "id:gone", ContentHash: "sha256:00", Status: "COMPLETED"})))
	results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader(input), Prior: prior, Total: n}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var want []int
	for i := range n {
		if !skip[i] {
			want = append(want, i)
		}
	}
	wantIndices(t, results, want)
	s := sum.Snapshot()
	if s.Skipped != 5 || s.New != n-5 || s.Completed != n-5 || s.Read != n || s.Remaining() != 0 {
		t.Errorf("summary %+v, want 5 skipped, %d completed, 0 remaining", s, n-5)
	}
	if st := sim.Stats(); st.Requests != int64(n-5) {
		t.Errorf("simulator got %d requests, want %d", st.Requests, n-5)
	}
}

// interruptAndResume cancels a run once `after` lines are written, checks
// what it left, and finishes with a second run that skips what the first
// wrote.
func TestRunInterruptAndResume(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			_, base := simtest.Start(t, simulator.Config{Latency: 10 * time.Millisecond, LatencyJitter: 5 * time.Millisecond})
			const n, after = 300, 25
			cfg := testConfig(base)
			cfg.Concurrency, cfg.Queue, cfg.Ordered = 8, 40, ordered
			input := jsonl(t, n)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cancelled time.Time // written by Run's goroutine, which calls Write
			out := &lineWriter{onLine: func(lines int) {
				if lines >= after && cancelled.IsZero() {
					cancelled = time.Now()
					cancel()
				}
			}}
			sum, err := Run(ctx, cfg, Input{R: strings.NewReader(input), Total: n}, out, nil)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run: %v, want ErrInterrupted", err)
			}
			// Calls in flight take 15 ms at most: the run ends long before
			// the grace period.
			if d := time.Since(cancelled); d > cfg.Grace/2 {
				t.Errorf("the interrupted run took %v to end", d)
			}
			first := parseResults(t, out.Bytes())
			byIndex(t, first)
			if len(first) < after || len(first) >= n {
				t.Fatalf("the interrupted run wrote %d lines", len(first))
			}
			for _, r := range first {
				if r.Status != "COMPLETED" {
					t.Errorf("index %d: %s %+v (an interrupt must not write CANCELLED lines)", r.Index, r.Status, r.Error)
				}
			}
			s := sum.Snapshot()
			if s.Remaining() != n-len(first) {
				t.Errorf("remaining %d, want %d inputs - %d written", s.Remaining(), n, len(first))
			}
			if s.Done() != len(first) {
				t.Errorf("summary says %d done, the file has %d", s.Done(), len(first))
			}

			done, needsNewline, err := ReadPrior(bytes.NewReader(out.Bytes()))
			if err != nil || needsNewline || done.Len() != len(first) {
				t.Fatalf("ReadPrior: %d done, needsNewline %v, %v", done.Len(), needsNewline, err)
			}
			second, _, sum2, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input), Prior: done, Total: n}, nil)
			if err != nil {
				t.Fatalf("second Run: %v", err)
			}
			if len(second) != s.Remaining() {
				t.Errorf("the rerun wrote %d lines; the first run said %d remain", len(second), s.Remaining())
			}
			wantIndices(t, append(first, second...), seq(0, n))
			if s2 := sum2.Snapshot(); s2.Skipped != len(first) || s2.Completed != n-len(first) || s2.Remaining() != 0 {
				t.Errorf("second summary %+v", s2)
			}
		})
	}
}

// lineByLineReader hands out one line per Read, and calls onAsk when the reader
// asks for line number `at` (0-based), before handing it out.
type lineByLineReader struct {
	lines []string
	next  int
	at    int
	onAsk func()
}

func (r *lineByLineReader) Read(p []byte) (int, error) {
	if r.next == r.at {
		r.onAsk()
	}
	if r.next >= len(r.lines) {
		return 0, io.EOF
	}
	if len(p) < len(r.lines[r.next]) {
		return 0, errors.New("lineByLineReader: buffer too small")
	}
	n := copy(p, r.lines[r.next])
	r.next++
	return n, nil
}

// An interrupt that finds the reader waiting for a window slot must count
// the lines after the waiting one, skipping those done before, so that the
// remaining count is exact when resuming.
func TestRunInterruptWhileWaitingForRoom(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 500 * time.Millisecond})
	cfg := testConfig(base)
	cfg.Queue, cfg.Concurrency = 1, 1 // a window of two requests
	const n = 10
	skip := []int{6, 7, 8, 9}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Lines 0 and 1 fill the window (the slow simulator keeps them there):
	// the reader gets line 2 with the run already interrupted, and finds
	// no room.
	lr := &lineByLineReader{at: 2, onAsk: cancel}
	for i := range n {
		lr.lines = append(lr.lines, requestLine(t, i)+"\n")
	}
	prior := readPrior(t, resultLines(t, strings.Join(lr.lines, ""), "COMPLETED", skip...))
	var out bytes.Buffer
	sum, err := Run(ctx, cfg, Input{R: lr, Prior: prior}, &out, nil)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run: %v, want ErrInterrupted", err)
	}
	first := parseResults(t, out.Bytes())
	s := sum.Snapshot()
	if want := n - len(skip) - len(first); s.Remaining() != want {
		t.Errorf("remaining %d, want %d (%d inputs, %d done before, %d written); summary %+v", s.Remaining(), want, n, len(skip), len(first), s)
	}
	if s.Read != 3 {
		t.Errorf("read %d lines before the interrupt, want 3", s.Read)
	}
	// The lines left unread are judged too: the summary's counts are
	// those of the whole input.
	if s.Skipped != len(skip) || s.New != n-len(skip) {
		t.Errorf("%d done before, %d new; want %d and %d", s.Skipped, s.New, len(skip), n-len(skip))
	}
}

func TestRunRetriesServerErrors(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{ServerError: 0.2, Unavailable: 0.1}, Seed: 42})
	cfg := testConfig(base)
	cfg.MaxAttempts = 15 // 0.3^15: no request runs out of attempts
	const n = 150
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, n))
	retries := 0
	for i := range n {
		if got[i].Status != "COMPLETED" {
			t.Errorf("index %d: %s %+v", i, got[i].Status, got[i].Error)
		}
		retries += got[i].Attempts - 1
	}
	s := sum.Snapshot()
	if s.Retries == 0 || s.Retries != retries {
		t.Errorf("summary counts %d retries; the file's attempts say %d (want > 0)", s.Retries, retries)
	}
	st := sim.Stats()
	if errs := st.ByStatus[500] + st.ByStatus[503]; errs != int64(retries) {
		t.Errorf("the simulator answered %d errors; %d retries were counted", errs, retries)
	}
	if s.Completed != n || s.Failed != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunRecordsFailures(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{ServerError: 1}})
	cfg := testConfig(base)
	cfg.MaxAttempts = 2
	const n = 12
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, n))
	for i := range n {
		r := got[i]
		if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "server" || r.Error.Status != 500 || r.Attempts != 2 {
			t.Fatalf("index %d: %s attempts %d error %+v; want FAILED server 500 after 2 attempts", i, r.Status, r.Attempts, r.Error)
		}
		if r.Response != nil {
			t.Errorf("index %d: a failed request has a response %s", i, r.Response)
		}
		if r.Error.Details["status"] != "500" || !strings.Contains(r.Error.Message, "500") {
			t.Errorf("index %d: error %+v", i, r.Error)
		}
		if string(r.ID) != fmt.Sprintf(`"req-%04d"`, i) || r.Metadata == nil {
			t.Errorf("index %d: a failed request lost its id or metadata", i)
		}
	}
	s := sum.Snapshot()
	if s.Failed != n || s.Completed != 0 || s.Retries != n || s.Remaining() != 0 || s.P50 != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunCountsRateLimited(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{RateLimit: 0.3}, FaultRetryAfter: 5 * time.Millisecond, Seed: 9})
	cfg := testConfig(base)
	cfg.MaxAttempts = 15
	const n = 80
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, n))
	for i := range n {
		if got[i].Status != "COMPLETED" {
			t.Errorf("index %d: %s %+v", i, got[i].Status, got[i].Error)
		}
	}
	s := sum.Snapshot()
	st := sim.Stats()
	if s.RateLimited == 0 || s.RateLimited != st.ByStatus[429] {
		t.Errorf("summary counts %d 429s; the simulator sent %d (want > 0)", s.RateLimited, st.ByStatus[429])
	}
	if int64(s.Retries) != s.RateLimited {
		t.Errorf("%d retries for %d 429s", s.Retries, s.RateLimited)
	}
}

// metricsProbe is a Reporter that scrapes the run's metrics once, while it
// runs, after `after` results.
type metricsProbe struct {
	r      *runner
	after  int
	scrape func(addr string) string
	body   string
	addr   string
}

func (p *metricsProbe) Start(*Summary) { p.addr = p.r.metricsAddr }
func (p *metricsProbe) Update(m *Summary) {
	if p.body == "" && m.Snapshot().Done() >= p.after {
		p.body = p.scrape(p.addr)
	}
}
func (p *metricsProbe) Stop(*Summary) {}

func TestRunServesMetrics(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 2 * time.Millisecond})
	cfg := testConfig(base)
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.TPM = 1_000_000
	const n = 40
	client := newLocalClient(t)
	scrape := func(addr string) string {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics: %v", err)
			return "failed"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET /metrics: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	var out bytes.Buffer
	r := newRunner(cfg, Input{R: strings.NewReader(jsonl(t, n))}, &out, nil)
	probe := &metricsProbe{r: r, after: 10, scrape: scrape}
	r.progress = probe
	sum, err := r.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if probe.addr == "" || strings.HasSuffix(probe.addr, ":0") {
		t.Fatalf("metrics address %q", probe.addr)
	}
	for _, want := range []string{
		"lionactor_completed_total", "lionactor_failed_total 0", "lionactor_retries_total 0",
		"lionactor_queue_depth", "lionactor_in_flight", "lionactor_tokens_estimated_total",
		"lionactor_tokens_actual_total", "lionactor_rate_limited_total 0", "lionactor_call_duration_seconds_count",
	} {
		if !strings.Contains(probe.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, probe.body)
		}
	}
	var completed float64
	for _, line := range strings.Split(probe.body, "\n") {
		if v, ok := strings.CutPrefix(line, "lionactor_completed_total "); ok {
			fmt.Sscan(v, &completed)
		}
	}
	if completed < 10 || completed > n {
		t.Errorf("lionactor_completed_total %v mid-run, want between 10 and %d", completed, n)
	}
	if s := sum.Snapshot(); s.Completed != n {
		t.Errorf("summary %+v", s)
	}
	// The server stops with the run.
	if _, err := client.Get("http://" + probe.addr + "/metrics"); err == nil {
		t.Errorf("metrics still served after the run")
	}
}

func TestRunSetupErrors(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	tests := []struct {
		name  string
		cfg   func(*Config)
		check func(error) bool
	}{
		{"invalid config", func(c *Config) { c.Concurrency = 0 }, func(err error) bool {
			var ce *messages.ConfigError
			return errors.As(err, &ce) && ce.Field == "Concurrency"
		}},
		{"no provider", func(c *Config) { c.Endpoint.Provider = "" }, func(err error) bool {
			var ce *messages.ConfigError
			return errors.As(err, &ce) && ce.Field == "Provider"
		}},
		{"bad base URL", func(c *Config) { c.Endpoint.BaseURL = "ftp://127.0.0.1/" }, func(err error) bool {
			return errors.Is(err, messages.ErrInvalidConfig)
		}},
		{"metrics address taken", func(c *Config) { c.MetricsAddr = strings.TrimPrefix(strings.TrimSuffix(base, "/v1"), "http://") },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "address already in use") }},
		{"bad metrics address", func(c *Config) { c.MetricsAddr = "127.0.0.1:notaport" },
			func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(base)
			tt.cfg(&cfg)
			var out bytes.Buffer
			sum, err := Run(context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, 3))}, &out, &Lines{W: io.Discard})
			if !tt.check(err) {
				t.Errorf("Run: %v", err)
			}
			if sum != nil || out.Len() != 0 {
				t.Errorf("a run that could not start returned %v and wrote %q", sum, out.String())
			}
		})
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

func TestRunWriteError(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	const n = 30
	sum, err := Run(context.Background(), testConfig(base), Input{R: strings.NewReader(jsonl(t, n))}, &failWriter{after: 3}, nil)
	if err == nil || !strings.Contains(err.Error(), "writing results") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run: %v, want a write error", err)
	}
	// The run still saw every request to its end.
	if s := sum.Snapshot(); s.Completed != n {
		t.Errorf("summary %+v", s)
	}
}

func TestRunReadError(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	boom := errors.New("device gone")
	in := io.MultiReader(strings.NewReader(jsonl(t, 5)), iotest.ErrReader(boom))
	results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: in}, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "reading input") {
		t.Fatalf("Run: %v, want the read error", err)
	}
	// What was read before the error still ran.
	wantIndices(t, results, seq(0, 5))
	if s := sum.Snapshot(); s.Completed != 5 {
		t.Errorf("summary %+v", s)
	}
}

// countingReporter counts the calls a run makes.
type countingReporter struct{ starts, updates, stops int }

func (c *countingReporter) Start(*Summary)  { c.starts++ }
func (c *countingReporter) Update(*Summary) { c.updates++ }
func (c *countingReporter) Stop(*Summary)   { c.stops++ }

func TestRunEmptyInput(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	rep := &countingReporter{}
	results, out, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader("\n\n  \n")}, rep)
	if err != nil || len(results) != 0 || len(out) != 0 {
		t.Fatalf("Run: %v, output %q", err, out)
	}
	if s := sum.Snapshot(); s.Read != 0 || s.Done() != 0 || s.Remaining() != 0 {
		t.Errorf("summary %+v", s)
	}
	if rep.starts != 1 || rep.stops != 1 {
		t.Errorf("reporter started %d and stopped %d times", rep.starts, rep.stops)
	}
	if sim.Stats().Requests != 0 {
		t.Errorf("requests were sent")
	}
}
