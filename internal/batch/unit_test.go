package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// dump shows what a Prior holds, for comparison: "key K" or "index N" to
// "COMPLETED", "FAILED kind", each with the content hash it answered.
func dump(p *Prior) map[string]string {
	m := map[string]string{}
	show := func(r priorResult) string {
		s := "COMPLETED"
		if r.failed {
			s = "FAILED " + r.kind
		}
		return s + " " + r.hash
	}
	for k, r := range p.byKey {
		m["key "+k] = show(r)
	}
	for i, r := range p.byIndex {
		m[fmt.Sprint("index ", i)] = show(r)
	}
	return m
}

func TestReadPrior(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		want         map[string]string
		legacy       int
		needsNewline bool
	}{
		{"empty", "", map[string]string{}, 0, false},
		{"keyed results",
			`{"index":0,"key":"id:a","content_hash":"sha256:1","status":"COMPLETED"}` + "\n" +
				`{"index":4,"key":"sha256:2#1","content_hash":"sha256:2","status":"FAILED","error":{"kind":"auth","message":"no"}}` + "\n",
			map[string]string{"key id:a": "COMPLETED sha256:1", "key sha256:2#1": "FAILED auth sha256:2"}, 0, false},
		{"the last final line of a key wins",
			`{"index":0,"key":"id:a","content_hash":"sha256:1","status":"FAILED","error":{"kind":"server"}}` + "\n" +
				`{"index":7,"key":"id:a","content_hash":"sha256:1","status":"COMPLETED"}` + "\n" +
				`{"index":1,"key":"id:b","content_hash":"sha256:3","status":"COMPLETED"}` + "\n" +
				`{"index":1,"key":"id:b","content_hash":"sha256:3","status":"FAILED","error":{"kind":"rate_limited"}}` + "\n" +
				`{"index":1,"key":"id:b","content_hash":"sha256:3","status":"CANCELLED"}` + "\n",
			map[string]string{"key id:a": "COMPLETED sha256:1", "key id:b": "FAILED rate_limited sha256:3"}, 0, false},
		{"cancelled and live statuses do not count",
			`{"index":1,"key":"id:x","status":"CANCELLED"}` + "\n" + `{"index":2,"key":"id:y","status":"QUEUED"}` + "\n" +
				`{"index":3,"key":"id:z","status":"completed"}` + "\n" + `{"index":5,"key":"id:w","status":"COMPLETED"}` + "\n",
			map[string]string{"key id:w": "COMPLETED "}, 0, false},
		{"garbage, blank lines and arrays are ignored",
			"garbage\n\n" + `{"status":"COMPLETED"}` + "\n" + `[{"index":7,"status":"COMPLETED"}]` + "\n" +
				`{"index":"8","status":"COMPLETED"}` + "\n" + `{"index":9,"key":"id:k","status":"FAILED"}` + "\n",
			map[string]string{"key id:k": "FAILED  "}, 0, false},
		{"results written before keys: by id, else by index",
			`{"index":0,"id":"a","status":"COMPLETED"}` + "\n" + `{"index":1,"id":7,"status":"FAILED","error":{"kind":"auth"}}` + "\n" +
				`{"index":2,"status":"COMPLETED"}` + "\n" + `{"index":3,"id":null,"status":"COMPLETED"}` + "\n" +
				`{"index":4,"id":{"b":1,"a":[2]},"status":"COMPLETED"}` + "\n",
			map[string]string{"key id:a": "COMPLETED ", "key id:7": "FAILED auth ", "index 2": "COMPLETED ", "index 3": "COMPLETED ",
				`key id:{"a":[2],"b":1}`: "COMPLETED "}, 5, false},
		{"a line cut short", `{"index":0,"key":"id:a","status":"COMPLETED"}` + "\n" + `{"index":1,"key":"id:b","sta`,
			map[string]string{"key id:a": "COMPLETED "}, 0, true},
		{"a whole last line without its newline", `{"index":0,"key":"id:a","status":"COMPLETED"}`,
			map[string]string{"key id:a": "COMPLETED "}, 0, true},
		{"CRLF lines", `{"index":2,"key":"id:c","status":"COMPLETED"}` + "\r\n", map[string]string{"key id:c": "COMPLETED "}, 0, false},
		{"a result line as Run writes it", string(encode(&Result{Index: 12, Key: "sha256:9#2", ContentHash: "sha256:9", Status: "COMPLETED", Attempts: 1})),
			map[string]string{"key sha256:9#2": "COMPLETED sha256:9"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, nl, err := ReadPrior(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(p); !maps.Equal(got, tt.want) || nl != tt.needsNewline || p.Legacy() != tt.legacy {
				t.Errorf("ReadPrior = %v, %v, %d legacy; want %v, %v, %d", got, nl, p.Legacy(), tt.want, tt.needsNewline, tt.legacy)
			}
			if p.Len() != len(tt.want) {
				t.Errorf("Len %d, want %d", p.Len(), len(tt.want))
			}
		})
	}
}

func TestReadPriorReadError(t *testing.T) {
	boom := errors.New("boom")
	in := io.MultiReader(strings.NewReader(`{"index":0,"key":"id:a","status":"COMPLETED"}`+"\n"), iotest.ErrReader(boom))
	p, _, err := ReadPrior(in)
	if !errors.Is(err, boom) || p != nil {
		t.Errorf("ReadPrior = %v, %v; want nil, boom", p, err)
	}
}

func TestPriorFailedKinds(t *testing.T) {
	p := readPrior(t, `{"index":0,"key":"id:a","status":"FAILED","error":{"kind":"auth"}}`+"\n"+
		`{"index":1,"key":"id:b","status":"FAILED","error":{"kind":"auth"}}`+"\n"+
		`{"index":2,"status":"FAILED","error":{"kind":"server"}}`+"\n"+
		`{"index":3,"key":"id:c","status":"COMPLETED"}`+"\n"+
		`{"index":4,"key":"id:d","status":"FAILED","error":{"kind":"server"}}`+"\n"+
		`{"index":4,"key":"id:d","status":"COMPLETED"}`+"\n")
	if got, want := p.FailedKinds(), map[string]int{"auth": 2, "server": 1}; !maps.Equal(got, want) {
		t.Errorf("FailedKinds = %v, want %v", got, want)
	}
	var none *Prior
	if none.Len() != 0 || none.Legacy() != 0 || len(none.FailedKinds()) != 0 {
		t.Errorf("a nil Prior is not empty")
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	valid := Config{RPM: 1, Concurrency: 1, MaxAttempts: 1, Queue: 1}
	if err := valid.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	tests := []struct {
		field string
		set   func(*Config)
	}{
		{"RPM", func(c *Config) { c.RPM = 0 }},
		{"RPM", func(c *Config) { c.RPM = -5 }},
		{"TPM", func(c *Config) { c.TPM = -1 }},
		{"Burst", func(c *Config) { c.Burst = -1 }},
		{"Concurrency", func(c *Config) { c.Concurrency = 0 }},
		{"MaxAttempts", func(c *Config) { c.MaxAttempts = 0 }},
		{"Timeout", func(c *Config) { c.Timeout = -time.Second }},
		{"Queue", func(c *Config) { c.Queue = 0 }},
		{"MaxLineBytes", func(c *Config) { c.MaxLineBytes = -1 }},
		{"Grace", func(c *Config) { c.Grace = -time.Second }},
	}
	for _, tt := range tests {
		c := valid
		tt.set(&c)
		err := c.Validate()
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, messages.ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want a ConfigError for %q", tt.field, err, tt.field)
			continue
		}
		if !strings.Contains(err.Error(), tt.field) || ce.Reason == "" {
			t.Errorf("%s: message %q", tt.field, err)
		}
	}
}

func TestExecutorConfig(t *testing.T) {
	c := Config{RPM: 3000, TPM: 90_000, Concurrency: 7, MaxAttempts: 4, Timeout: time.Second, Queue: 20}
	rc := c.executorConfig(nil)
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	if rc.RequestsPerInterval != 3000 || rc.RequestInterval != time.Minute || rc.RequestBurst != 1 {
		t.Errorf("request limit %d per %v, burst %d; want 3000 per minute, burst 1", rc.RequestsPerInterval, rc.RequestInterval, rc.RequestBurst)
	}
	if rc.TokensPerInterval != 90_000 || rc.TokenInterval != time.Minute {
		t.Errorf("token limit %d per %v", rc.TokensPerInterval, rc.TokenInterval)
	}
	if rc.Concurrency != 7 || rc.CallTimeout != time.Second {
		t.Errorf("executor config %+v", rc)
	}
	if rc.QueueCapacity < c.Queue+c.Concurrency {
		t.Errorf("queue capacity %d is smaller than the runner's window %d", rc.QueueCapacity, c.Queue+c.Concurrency)
	}
	// A burst of its own wins; without one, a small RPM gets a burst of one too.
	c.Burst = 5
	if rc := c.executorConfig(nil); rc.RequestBurst != 5 {
		t.Errorf("burst %d, want 5", rc.RequestBurst)
	}
	c.Burst, c.RPM, c.TPM = 0, 10, 0
	if rc := c.executorConfig(nil); rc.RequestBurst != 1 || rc.TokensPerInterval != 0 {
		t.Errorf("burst %d tokens %d, want 1 and no token limit", rc.RequestBurst, rc.TokensPerInterval)
	}
}

func TestPercentile(t *testing.T) {
	var hundred []float64
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, float64(i))
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		sorted []float64
		p      float64
		want   time.Duration
	}{
		{nil, 0.5, 0},
		{[]float64{7.5}, 0.5, ms(7.5)},
		{[]float64{7.5}, 0.99, ms(7.5)},
		{[]float64{1, 2, 3, 4}, 0.5, ms(2)},
		{[]float64{1, 2, 3, 4}, 0.51, ms(3)},
		{[]float64{1, 2, 3, 4}, 0.99, ms(4)},
		{hundred, 0.5, ms(50)},
		{hundred, 0.95, ms(95)},
		{hundred, 0.99, ms(99)},
		{hundred, 0, ms(1)},
		{hundred, 1, ms(100)},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
		}
	}
}

func TestOrderer(t *testing.T) {
	line := func(i int) []byte { return []byte(fmt.Sprintf("line %d\n", i)) }
	str := func(lines [][]byte) string { return string(bytes.Join(lines, nil)) }

	t.Run("unordered", func(t *testing.T) {
		o := newOrderer(false)
		if got := str(o.add(3, line(3))); got != "line 3\n" {
			t.Errorf("add = %q", got)
		}
		if got := o.skip(0); got != nil {
			t.Errorf("skip = %q", got)
		}
		if got := o.rest(); got != nil {
			t.Errorf("rest = %q", got)
		}
	})
	t.Run("ordered", func(t *testing.T) {
		o := newOrderer(true)
		steps := []struct {
			add  int // -1: skip
			skip int
			want string
		}{
			{add: 2, want: ""},
			{add: -1, skip: 1, want: ""},
			{add: 0, want: "line 0\nline 2\n"}, // 1 produces no line
			{add: 4, want: ""},
			{add: -1, skip: 3, want: "line 4\n"},
			{add: 5, want: "line 5\n"},
			{add: 7, want: ""},
			{add: 9, want: ""},
			{add: -1, skip: 8, want: ""},
		}
		for k, s := range steps {
			var got [][]byte
			if s.add >= 0 {
				got = o.add(s.add, line(s.add))
			} else {
				got = o.skip(s.skip)
			}
			if str(got) != s.want {
				t.Fatalf("step %d: released %q, want %q", k, str(got), s.want)
			}
		}
		// 6 never came (an interrupted run): the rest goes out in order.
		if got := str(o.rest()); got != "line 7\nline 9\n" {
			t.Errorf("rest = %q", got)
		}
	})
}

// fixedSnapshot is a snapshot whose rates do not depend on the clock.
func fixedSnapshot() Snapshot {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return Snapshot{
		RPMLimit: 600, TPMLimit: 10_000, Burst: 1, Total: 10,
		Read: 7, Skipped: 2, New: 5, Completed: 2, Failed: 1, InvalidInput: 1,
		Retries: 3, RateLimited: 2, TokensEstimated: 400, TokensActual: 300, Reported: 2, ReportedEstimated: 250,
		Calls: 7, FirstCall: start.Add(time.Second), LastCall: start.Add(31 * time.Second),
		P50: 12 * time.Millisecond, P95: 40400 * time.Microsecond, P99: 51 * time.Millisecond,
		Start: start, End: start.Add(time.Minute),
	}
}

func TestSnapshotArithmetic(t *testing.T) {
	s := fixedSnapshot()
	if s.Done() != 4 {
		t.Errorf("Done = %d", s.Done())
	}
	if s.ToDo() != 5 || s.Remaining() != 1 { // 5 new - 4 done
		t.Errorf("ToDo = %d, Remaining = %d", s.ToDo(), s.Remaining())
	}
	s.RetriedFailed, s.Changed = 3, 2
	if s.Remaining() != 4 {
		t.Errorf("Remaining with 3 failed before retried and 2 changed, not rerun = %d", s.Remaining())
	}
	s.ChangedRerun = true
	if s.Remaining() != 6 {
		t.Errorf("Remaining with the 2 changed rerun = %d", s.Remaining())
	}
	// 6 calls after the first over the 30 s from the first start to the
	// last; 300 tokens over those 30 s.
	if s.Elapsed() != time.Minute || s.CallSpan() != 30*time.Second || s.RPM() != 12 || s.TPM() != 600 {
		t.Errorf("elapsed %v call span %v rpm %v tpm %v", s.Elapsed(), s.CallSpan(), s.RPM(), s.TPM())
	}
	s.End = time.Time{}
	s.Start = time.Now().Add(-time.Second)
	if e := s.Elapsed(); e < time.Second || e > time.Hour {
		t.Errorf("a running snapshot's elapsed time is %v", e)
	}
	s.LastCall = s.FirstCall
	if s.RPM() != 0 || s.TPM() != 0 {
		t.Errorf("rate over no time: %v, %v", s.RPM(), s.TPM())
	}
}

// The achieved rate of a run that kept to its limit is never above it,
// whatever its burst; a run at the limit reads the limit.
func TestSnapshotRPMWithABurst(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	// 300 calls at 1200/min with a burst of 20: 20 at once, then one each
	// 50 ms, the last 280 × 50 ms = 14 s after the first.
	s := Snapshot{RPMLimit: 1200, Burst: 20, Calls: 300, FirstCall: start, LastCall: start.Add(14 * time.Second)}
	if got := s.RPM(); got != 1200 {
		t.Errorf("RPM = %v, want the limit 1200 (counting calls over the span would say %.0f)", got, 299/(14.0/60))
	}
	// The same with the default burst of 1: 299 intervals of 50 ms.
	s.Burst, s.LastCall = 1, start.Add(14950*time.Millisecond)
	if got := s.RPM(); math.Abs(got-1200) > 1e-9 {
		t.Errorf("RPM = %v, want 1200", got)
	}
	// Until more calls than the burst have started, the rate is unknown.
	s.Burst, s.Calls = 20, 20
	if got := s.RPM(); got != 0 {
		t.Errorf("RPM with every call in the burst = %v, want 0 (unknown)", got)
	}
}

func TestSnapshotWrite(t *testing.T) {
	var buf bytes.Buffer
	fixedSnapshot().Write(&buf)
	want := `requests: 2 completed, 1 failed, 1 invalid input, 1 remaining; 2 done before, 5 new
retries: 3; 429 responses: 2
tokens: 250 estimated, 300 actual (+20.0%) over the 2 requests that reported usage; 1 more reported none (150 estimated)
rate: 12 requests/min (limit 600, 2.0%), 600 tokens/min (limit 10000, 6.0%) over 30s of calls
call latency: p50 12ms, p95 40ms, p99 51ms
wall time: 1m0s
`
	if buf.String() != want {
		t.Errorf("Write:\n%s\nwant:\n%s", buf.String(), want)
	}

	// No token limit and no tokens: no tokens/min part and no division by zero.
	s := fixedSnapshot()
	s.TPMLimit, s.TokensEstimated, s.TokensActual, s.Reported, s.ReportedEstimated = 0, 0, 0, 0, 0
	buf.Reset()
	s.Write(&buf)
	if out := buf.String(); strings.Contains(out, "tokens/min") || !strings.Contains(out, "tokens: 0 estimated, 0 actual (+0.0%) over the 0 requests") || strings.Contains(out, "NaN") {
		t.Errorf("Write without a token limit:\n%s", out)
	}

	// Reruns, changed requests, calls under a millisecond.
	s = fixedSnapshot()
	s.RetriedFailed, s.Changed, s.ChangedIDs = 3, 12, []string{`"a"`, "7", `"c"`, `"d"`, `"e"`, `"f"`, `"g"`, `"h"`, `"i"`, `"j"`}
	s.P50, s.P95, s.P99 = 850400*time.Nanosecond, 999*time.Microsecond, 1200*time.Microsecond
	buf.Reset()
	s.Write(&buf)
	for _, want := range []string{
		"requests: 2 completed, 1 failed, 1 invalid input, 4 remaining; 2 done before, 5 new, 3 failed before and retried\n",
		`changed since their result: 12, not rerun (--rerun-changed reruns them): "a", 7, "c", "d", "e", "f", "g", "h", "i", "j" and 2 more` + "\n",
		"call latency: p50 850µs, p95 999µs, p99 1ms\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("Write lacks %q:\n%s", want, buf.String())
		}
	}
	s.ChangedRerun, s.Changed, s.ChangedIDs = true, 1, []string{`"a"`}
	buf.Reset()
	s.Write(&buf)
	for _, want := range []string{", 1 changed and rerun\n", `changed since their result: 1, rerun: "a"` + "\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("Write lacks %q:\n%s", want, buf.String())
		}
	}

	// A span under a second is shown to the millisecond, not as 0s.
	s = fixedSnapshot()
	s.LastCall = s.FirstCall.Add(2500 * time.Microsecond)
	buf.Reset()
	s.Write(&buf)
	if want := "(limit 600, 24000.0%), 7200000 tokens/min (limit 10000, 72000.0%) over 3ms of calls\n"; !strings.Contains(buf.String(), want) {
		t.Errorf("Write lacks %q:\n%s", want, buf.String())
	}

	// Nothing completed, one call: no latency, no rate yet.
	s = fixedSnapshot()
	s.Completed, s.Calls, s.LastCall = 0, 1, s.FirstCall
	buf.Reset()
	s.Write(&buf)
	for _, want := range []string{"call latency: - (no call completed)\n", "rate: - requests/min (limit 600), - tokens/min (limit 10000)\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("Write lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestProgressLine(t *testing.T) {
	s := fixedSnapshot()
	// 4 done of 10-2 to do; 15 s per request over the minute, 4 left.
	want := "progress: 4/8 done (2 ok, 1 failed, 1 invalid), 3 retries, 12 rpm / 600, 600 tpm / 10000, ETA 1m0s"
	if got := progressLine(s); got != want {
		t.Errorf("progressLine:\n%s\nwant\n%s", got, want)
	}
	s.Total, s.TPMLimit = 0, 0
	want = "progress: 4/? done (2 ok, 1 failed, 1 invalid), 3 retries, 12 rpm / 600, ETA -"
	if got := progressLine(s); got != want {
		t.Errorf("progressLine without a total:\n%s\nwant\n%s", got, want)
	}
	s.Calls = 1
	want = "progress: 4/? done (2 ok, 1 failed, 1 invalid), 3 retries, - rpm / 600, ETA -"
	if got := progressLine(s); got != want {
		t.Errorf("progressLine after one call:\n%s\nwant\n%s", got, want)
	}
	s = fixedSnapshot()
	s.Completed, s.Failed, s.InvalidInput = 0, 0, 0
	if got := eta(s); got != "-" {
		t.Errorf("eta with nothing done = %q", got)
	}
	s = fixedSnapshot()
	s.Total = 6 // all done
	if got := eta(s); got != "-" {
		t.Errorf("eta with nothing left = %q", got)
	}
}

func TestLinesReporter(t *testing.T) {
	m := newSummary(Config{RPM: 600, TPM: 10_000})
	m.update(func(s *Snapshot) { *s = fixedSnapshot() })
	var buf bytes.Buffer
	l := &Lines{W: &buf, Every: time.Hour}
	l.Start(m)
	l.Update(m)
	l.Update(m)
	if buf.Len() != 0 {
		t.Errorf("printed before Every passed: %q", buf.String())
	}
	l.Stop(m)
	if got := buf.String(); got != progressLine(fixedSnapshot())+"\n" {
		t.Errorf("Stop printed %q", got)
	}

	buf.Reset()
	l = &Lines{W: &buf}
	l.Start(m)
	l.Update(m)
	l.Update(m)
	if n := strings.Count(buf.String(), "progress: "); n != 2 {
		t.Errorf("with Every 0, two updates printed %d lines: %q", n, buf.String())
	}
}

func TestLinesReporterDuringRun(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	const n = 25
	var buf bytes.Buffer
	cfg := testConfig(base)
	cfg.TPM = 1_000_000
	results, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n) + "\n"), Total: n}, &Lines{W: &buf})
	if err != nil {
		t.Fatal(err)
	}
	wantIndices(t, results, seq(0, n))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	// One line per result at least (Every is 0), and the last one from Stop.
	if len(lines) < n+1 {
		t.Errorf("%d progress lines for %d results", len(lines), n)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "progress: ") || !strings.Contains(l, "tpm / 1000000") {
			t.Errorf("progress line %q", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, fmt.Sprintf("progress: %d/%d done (%d ok, 0 failed, 0 invalid), 0 retries, ", n, n, n)) || !strings.HasSuffix(last, "ETA -") {
		t.Errorf("last progress line %q", last)
	}
}

func TestBarReporter(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	for _, total := range []int{0, 20} {
		t.Run(fmt.Sprintf("total=%d", total), func(t *testing.T) {
			// mpb draws only on a terminal (where the command uses Bar): here
			// the test checks the bar's state.
			bar := &Bar{W: io.Discard}
			results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader(jsonl(t, 20)), Total: total}, bar)
			if err != nil {
				t.Fatal(err)
			}
			wantIndices(t, results, seq(0, 20))
			if !bar.bar.Completed() || bar.bar.Current() != 20 {
				t.Errorf("bar at %d, completed %v; want 20, true", bar.bar.Current(), bar.bar.Completed())
			}
			if s := sum.Snapshot(); s.Completed != 20 {
				t.Errorf("summary %+v", s)
			}
		})
	}
}

// The summary a run prints agrees with the results file it wrote.
func TestSummaryMatchesResultsFile(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{ServerError: 0.25, RateLimit: 0.1}, FaultRetryAfter: 5 * time.Millisecond, Seed: 5})
	cfg := testConfig(base)
	cfg.MaxAttempts = 2 // some requests fail for good
	cfg.TPM = 1_000_000
	const n = 100
	var sb strings.Builder
	var skip []int
	for i := range n {
		switch {
		case i%10 == 9:
			sb.WriteString("{broken\n")
		default:
			sb.WriteString(requestLine(t, i) + "\n")
		}
		if i%25 == 0 {
			skip = append(skip, i)
		}
	}
	prior := readPrior(t, resultLines(t, sb.String(), "COMPLETED", skip...))
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(sb.String()), Prior: prior, Total: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var completed, failed, invalid, retries, reported, unreported int
	var estimated, actual, unreportedEstimated int64
	for _, r := range results {
		switch {
		case r.Status == "COMPLETED":
			completed++
		case r.Error != nil && r.Error.Kind == "invalid_input":
			invalid++
		case r.Status == "FAILED":
			failed++
		}
		retries += max(r.Attempts-1, 0)
		switch {
		case r.Tokens.Actual != nil:
			// The estimate is compared with the actual count over the
			// requests that reported usage only.
			reported++
			estimated += int64(r.Tokens.Estimated)
			actual += int64(*r.Tokens.Actual)
		case r.Error == nil || r.Error.Kind != "invalid_input":
			unreported++
			unreportedEstimated += int64(r.Tokens.Estimated)
		}
	}
	if completed+failed+invalid != n-len(skip) || failed == 0 || invalid != 10 {
		t.Fatalf("results: %d completed, %d failed, %d invalid of %d", completed, failed, invalid, n-len(skip))
	}

	var buf bytes.Buffer
	sum.Snapshot().Write(&buf)
	var c, f, inv, rem, sk, nw, re, rep, unrep int
	var rl, est, act, unrepEst int64
	var pct float64
	out := buf.String()
	if _, err := fmt.Sscanf(out, "requests: %d completed, %d failed, %d invalid input, %d remaining; %d done before, %d new\nretries: %d; 429 responses: %d\n"+
		"tokens: %d estimated, %d actual (%f%%) over the %d requests that reported usage; %d more reported none (%d estimated)",
		&c, &f, &inv, &rem, &sk, &nw, &re, &rl, &est, &act, &pct, &rep, &unrep, &unrepEst); err != nil {
		t.Fatalf("summary does not parse (%v):\n%s", err, out)
	}
	if c != completed || f != failed || inv != invalid || sk != len(skip) || nw != n-len(skip) || rem != 0 || re != retries {
		t.Errorf("summary says %d/%d/%d/%d done before/%d new/%d remaining/%d retries; the file says %d/%d/%d/%d/%d/0/%d\n%s",
			c, f, inv, sk, nw, rem, re, completed, failed, invalid, len(skip), n-len(skip), retries, out)
	}
	if est != estimated || act != actual || rep != reported || unrep != unreported || unrepEst != unreportedEstimated || unreported == 0 {
		t.Errorf("summary tokens %d/%d over %d, %d more (%d); file %d/%d over %d, %d more (%d)",
			est, act, rep, unrep, unrepEst, estimated, actual, reported, unreported, unreportedEstimated)
	}
	if st := sim.Stats(); rl != st.ByStatus[429] || rl == 0 {
		t.Errorf("summary 429s %d, simulator sent %d", rl, st.ByStatus[429])
	}
	if s := sum.Snapshot(); s.P99 <= 0 || math.IsNaN(s.RPM()) {
		t.Errorf("summary %+v", s)
	}
}
