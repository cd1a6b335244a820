package batch

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

var update = flag.Bool("update", false, "rewrite the golden files of the report tests")

// renderHTML renders the recorder's report as of end.
func renderHTML(t *testing.T, r *Recorder, end time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf, end); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	return buf.Bytes()
}

// parseHTML parses a report as a browser would.
func parseHTML(t *testing.T, page []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parsing the report: %v", err)
	}
	return doc
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// findAll returns the elements under n for which match holds, in order.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && match(c) {
			out = append(out, c)
		}
	}
	return out
}

// series returns the element of the named series of a chart.
func series(t *testing.T, doc *html.Node, chart, name string) *html.Node {
	t.Helper()
	charts := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == chart })
	if len(charts) != 1 {
		t.Fatalf("%d elements with id %s", len(charts), chart)
	}
	s := findAll(charts[0], func(n *html.Node) bool { return attr(n, "data-series") == name })
	if len(s) != 1 {
		t.Fatalf("chart %s has %d series %q", chart, len(s), name)
	}
	return s[0]
}

func intAttr(t *testing.T, n *html.Node, key string) int {
	t.Helper()
	v, err := strconv.Atoi(attr(n, key))
	if err != nil {
		t.Fatalf("<%s> %s=%q: %v", n.Data, key, attr(n, key), err)
	}
	return v
}

func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// outline is the report's structure without its coordinates: every
// element with its id, class and data attributes, and the text of those
// that show figures. It changes when what the report says changes, not
// when a bar moves by a pixel.
func outline(doc *html.Node) string {
	var b strings.Builder
	var walk func(n *html.Node, depth int)
	walk = func(n *html.Node, depth int) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			if c.Data == "style" || c.Data == "head" {
				fmt.Fprintf(&b, "%s<%s>\n", strings.Repeat("  ", depth), c.Data)
				continue
			}
			fmt.Fprintf(&b, "%s<%s", strings.Repeat("  ", depth), c.Data)
			for _, a := range c.Attr {
				if a.Key == "id" || a.Key == "class" || strings.HasPrefix(a.Key, "data-") {
					fmt.Fprintf(&b, " %s=%q", a.Key, a.Val)
				}
			}
			b.WriteString(">")
			switch c.Data {
			case "h1", "h2", "p", "li", "th", "td", "title", "text", "div":
				if c.Data != "div" || c.FirstChild != nil && c.FirstChild == c.LastChild && c.FirstChild.Type == html.TextNode {
					fmt.Fprintf(&b, " %s", text(c))
				}
			}
			b.WriteString("\n")
			walk(c, depth+1)
		}
	}
	walk(doc, 0)
	return b.String()
}

// TestReportGolden compares the structure and figures of the scenario's
// report with testdata/report.golden (go test -run TestReportGolden
// -update rewrites it).
func TestReportGolden(t *testing.T) {
	page := renderHTML(t, scenario(), at(3.2))
	got := outline(parseHTML(t, page))
	path := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("the report's outline differs from %s (run with -update if the change is meant):\n%s", path, firstDiff(string(want), got))
	}
}

// firstDiff shows the first line where two texts differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant %s\n got %s", i+1, wl, gl)
		}
	}
	return ""
}

// TestReportCharts checks the scenario's charts element by element: one
// bar per second, the limits where the run's limits are, 429s and retries
// marked in the seconds they happened.
func TestReportCharts(t *testing.T) {
	doc := parseHTML(t, renderHTML(t, scenario(), at(3.2)))
	for _, id := range []string{"chart-requests", "chart-tokens", "chart-inflight", "chart-latency"} {
		svg := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == id })
		if len(svg) != 1 || svg[0].Data != "svg" {
			t.Fatalf("no <svg id=%s>", id)
		}
	}
	started := series(t, doc, "chart-requests", "started")
	if intAttr(t, started, "data-points") != 4 || intAttr(t, started, "data-total") != 5 {
		t.Errorf("started: %d bars totalling %d, want 4 seconds and 5 calls", intAttr(t, started, "data-points"), intAttr(t, started, "data-total"))
	}
	rects := findAll(started, func(n *html.Node) bool { return n.Data == "rect" })
	for i, want := range []string{"2 calls started", "2 calls started", "1 call started", "0 calls started"} {
		if got := text(rects[i]); !strings.Contains(got, want) {
			t.Errorf("bar %d: tooltip %q, want %q", i, got, want)
		}
	}
	limited := series(t, doc, "chart-requests", "429")
	if intAttr(t, limited, "data-points") != 2 || intAttr(t, limited, "data-total") != 2 {
		t.Errorf("429 marks: %s in %s seconds, want 2 in 2", attr(limited, "data-total"), attr(limited, "data-points"))
	}
	if tips := text(limited); !strings.Contains(tips, "second 0s–1s: 1 answered 429") || !strings.Contains(tips, "second 2s–3s: 1 answered 429") {
		t.Errorf("429 marks say %q", tips)
	}
	if retries := series(t, doc, "chart-requests", "retries"); intAttr(t, retries, "data-total") != 1 {
		t.Errorf("retry marks total %s, want 1", attr(retries, "data-total"))
	}
	// Whole seconds 1, 2 and 3 end before the run's 3.2 s.
	if avg := series(t, doc, "chart-requests", "started-avg"); intAttr(t, avg, "data-points") != 3 {
		t.Errorf("average line: %s points, want 3", attr(avg, "data-points"))
	}
	if tok := series(t, doc, "chart-tokens", "tokens"); intAttr(t, tok, "data-total") != 135 {
		t.Errorf("token bars total %s tokens, want 135", attr(tok, "data-total"))
	}
	if lat := series(t, doc, "chart-latency", "latency"); intAttr(t, lat, "data-total") != 2 || intAttr(t, lat, "data-points") != 2 {
		t.Errorf("latency bars: %s calls in %s bars, want 2 in 2", attr(lat, "data-total"), attr(lat, "data-points"))
	}

	limits := map[string]string{}
	for _, g := range findAll(doc, func(n *html.Node) bool { return attr(n, "class") == "limit" && n.Data == "g" }) {
		chart := g.Parent.Parent // g in svg in section
		for c := range chart.Descendants() {
			if c.Data == "svg" {
				limits[attr(c, "id")] = attr(g, "data-value")
			}
		}
	}
	want := map[string]string{"chart-requests": "2", "chart-tokens": "6000", "chart-inflight": "4"}
	for id, v := range want {
		if limits[id] != v {
			t.Errorf("%s: limit line at %q, want %s (limits drawn: %v)", id, limits[id], v, limits)
		}
	}
	if q := findAll(doc, func(n *html.Node) bool { return attr(n, "class") == "quantile" }); len(q) != 3 {
		t.Errorf("%d quantile lines, want p50, p95 and p99", len(q))
	}
}

// TestReportWithoutTokenLimit: the token chart says there is no limit and
// draws none.
func TestReportWithoutTokenLimit(t *testing.T) {
	r := play(ReportInfo{RPM: 60, Concurrency: 1}, newScript(3, at(0)).call(0.1).complete(0.2, 3))
	page := renderHTML(t, r, at(1))
	doc := parseHTML(t, page)
	tokens := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "chart-tokens" })[0]
	if l := findAll(tokens, func(n *html.Node) bool { return attr(n, "class") == "limit" }); len(l) != 0 {
		t.Errorf("a token limit line is drawn for a run without one")
	}
	if !bytes.Contains(page, []byte("The run had no token limit.")) || !bytes.Contains(page, []byte("no limit")) || bytes.Contains(page, []byte("limit none")) {
		t.Error("the report does not say there was no token limit")
	}
	// One second has no trailing average to draw.
	if avg := series(t, doc, "chart-requests", "started-avg"); intAttr(t, avg, "data-points") != 0 || attr(avg, "d") != "" {
		t.Errorf("a one-second run draws an average line %q", attr(avg, "d"))
	}
}

// TestReportGroupsLongRuns: a run of an hour is drawn in at most maxBars
// bars per chart, each the mean of its seconds, and the page stays small.
func TestReportGroupsLongRuns(t *testing.T) {
	var scripts []*script
	for s := range 3600 {
		scripts = append(scripts, newScript(5, at(0)).call(float64(s)+0.5).complete(float64(s)+0.7, 5))
	}
	scripts = append(scripts, newScript(5, at(0)).call(1800.1).retry(1800.2, err429).call(1800.3).complete(1800.4, 5))
	page := renderHTML(t, play(ReportInfo{RPM: 120, Concurrency: 2}, scripts...), at(3599.9))
	doc := parseHTML(t, page)
	started := series(t, doc, "chart-requests", "started")
	if n := intAttr(t, started, "data-points"); n != 300 {
		t.Errorf("%d bars for an hour, want 300 of 12 s", n)
	}
	svg := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "chart-requests" })[0]
	if intAttr(t, svg, "data-group") != 12 || intAttr(t, svg, "data-seconds") != 3600 {
		t.Errorf("group %s, seconds %s; want 12 and 3600", attr(svg, "data-group"), attr(svg, "data-seconds"))
	}
	// The busiest group is 1800–1812 s: 14 calls, 3 of them in its first
	// second (the retried request's two and the second's own).
	if tips := text(started); !strings.Contains(tips, "seconds 30:00–30:12: 1.2 calls started per second, at most 3") {
		t.Errorf("the grouped bars do not name their busiest second: %.300s", tips)
	}
	if limited := series(t, doc, "chart-requests", "429"); intAttr(t, limited, "data-total") != 1 {
		t.Errorf("the 429 in a grouped bar is lost: %s", attr(limited, "data-total"))
	}
	if len(page) > 200_000 {
		t.Errorf("the report of an hour is %d bytes", len(page))
	}
}

// TestReportNamesNoSecret runs a batch whose key and headers carry
// secrets, with 429s on the way, and checks that its report shows none of
// them while its figures agree with the summary and the simulator.
func TestReportNamesNoSecret(t *testing.T) {
	const headerSecret = "hdr-secret-7d1c9e"
	sim, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{RateLimit: 0.3}, FaultRetryAfter: 5 * time.Millisecond, Seed: 3})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(base)
	cfg.Endpoint.Headers = map[string]string{"X-Gateway-Token": headerSecret, "X-Team": headerSecret}
	cfg.MaxAttempts, cfg.TPM = 15, 1_000_000
	var report bytes.Buffer
	cfg.Report = &report
	const n = 60
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantIndices(t, results, seq(0, n))
	page := report.Bytes()
	for _, secret := range []string{testKey, headerSecret, "X-Gateway-Token", "Bearer"} {
		if bytes.Contains(page, []byte(secret)) {
			t.Errorf("the report contains %q", secret)
		}
	}
	if !bytes.Contains(page, []byte(u.Host)) {
		t.Errorf("the report does not name the host %s", u.Host)
	}

	doc := parseHTML(t, page)
	s := sum.Snapshot()
	limited := series(t, doc, "chart-requests", "429")
	if got := intAttr(t, limited, "data-total"); got == 0 || int64(got) != s.RateLimited || int64(got) != sim.Stats().ByStatus[429] {
		t.Errorf("the report marks %d 429s; the summary counts %d, the simulator sent %d (want > 0, all equal)", got, s.RateLimited, sim.Stats().ByStatus[429])
	}
	if got := intAttr(t, series(t, doc, "chart-requests", "retries"), "data-total"); got != s.Retries {
		t.Errorf("the report marks %d retries; the summary counts %d", got, s.Retries)
	}
	if got := intAttr(t, series(t, doc, "chart-requests", "started"), "data-total"); got != n+s.Retries {
		t.Errorf("the report counts %d calls started, want %d requests + %d retries", got, n, s.Retries)
	}
	if got := intAttr(t, series(t, doc, "chart-latency", "latency"), "data-total"); got != s.Completed {
		t.Errorf("the latency chart counts %d calls; %d completed", got, s.Completed)
	}
}

// TestRunWritesReportWhenInterrupted: an interrupted run still writes its
// report, with what it did up to the interrupt.
func TestRunWritesReportWhenInterrupted(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Latency: 10 * time.Millisecond})
	cfg := testConfig(base)
	cfg.Concurrency, cfg.Queue = 4, 16
	var report bytes.Buffer
	cfg.Report = &report
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{onLine: func(lines int) {
		if lines >= 10 {
			cancel()
		}
	}}
	const n = 200
	sum, err := Run(ctx, cfg, Input{R: strings.NewReader(jsonl(t, n)), Total: n}, out, nil)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run: %v, want ErrInterrupted", err)
	}
	s := sum.Snapshot()
	doc := parseHTML(t, report.Bytes())
	table := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "summary" })
	if len(table) != 1 {
		t.Fatal("the interrupted run's report has no summary table")
	}
	want := fmt.Sprintf("%d completed, 0 failed, %d cancelled", s.Completed, s.Cancelled)
	if got := text(table[0]); !strings.Contains(got, want) {
		t.Errorf("summary table %q, want %q", got, want)
	}
	if got := intAttr(t, series(t, doc, "chart-latency", "latency"), "data-total"); got != s.Completed || got >= n {
		t.Errorf("the latency chart counts %d calls; %d completed of %d", got, s.Completed, n)
	}
}

// TestRunReportWriteError: a report that cannot be written fails the run,
// after the results are written.
func TestRunReportWriteError(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.Report = &failWriter{}
	results, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, 3))}, nil)
	if err == nil || !strings.Contains(err.Error(), "report") {
		t.Fatalf("Run: %v, want an error writing the report", err)
	}
	wantIndices(t, results, seq(0, 3))
}

// TestReportFlagsABusySecond: a second with more calls started than the
// limits allow is shown as a warning; one within them is not.
func TestReportFlagsABusySecond(t *testing.T) {
	tile := func(r *Recorder) (class, content string) {
		doc := parseHTML(t, renderHTML(t, r, at(2)))
		for _, n := range findAll(doc, func(n *html.Node) bool { return strings.HasPrefix(attr(n, "class"), "tile ") }) {
			if strings.Contains(text(n), "busiest second") {
				return attr(n, "class"), text(n)
			}
		}
		t.Fatal("no busiest-second tile")
		return "", ""
	}
	info := ReportInfo{RPM: 60, Burst: 1, Concurrency: 4} // 1 per second and a burst of 1: 2 in any second
	within := play(info, newScript(1, at(0)).call(0.1).complete(0.2, 1), newScript(1, at(0)).call(1.0).complete(1.1, 1))
	if class, text := tile(within); class != "tile " || !strings.Contains(text, "2 calls") || !strings.Contains(text, "at most 2 allowed") {
		t.Errorf("within the bound: tile %q %q", class, text)
	}
	over := play(info, newScript(1, at(0)).call(0.1).complete(0.2, 1), newScript(1, at(0)).call(0.5).complete(0.6, 1),
		newScript(1, at(0)).call(0.9).complete(1.0, 1))
	if class, text := tile(over); class != "tile warn" || !strings.Contains(text, "3 calls") {
		t.Errorf("over the bound: tile %q %q", class, text)
	}
}

func TestReportFormats(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(1234567), "1,234,567"},
		{duration(850 * time.Microsecond), "850 µs"}, {duration(2500 * time.Microsecond), "2.5 ms"},
		{duration(63 * time.Millisecond), "63 ms"}, {duration(1234 * time.Millisecond), "1.23 s"},
		{duration(95 * time.Second), "1m35s"},
		{rate(20), "20"}, {rate(8.333), "8.3"},
		{timeline{wall: 30 * time.Second}.clock(45), "45s"},
		{timeline{wall: 10 * time.Minute}.clock(150), "2:30"},
		{timeline{wall: 2 * time.Hour}.clock(3750), "1:02:30"},
		{fmt.Sprint(durationTicks(time.Millisecond, time.Second)), "[1ms 2ms 5ms 10ms 20ms 50ms 100ms 200ms 500ms 1s]"},
		{fmt.Sprint(durationTicks(30*time.Millisecond, 100*time.Millisecond)), "[30ms 40ms 50ms 60ms 70ms 80ms 90ms 100ms]"},
		{fmt.Sprint(durationTicks(time.Microsecond, time.Hour)), "[1µs 10µs 100µs 1ms 10ms 100ms 1s 10s 1m40s 16m40s]"},
		{fmt.Sprint(durationTicks(20*time.Millisecond, 70*time.Millisecond)), "[20ms 30ms 40ms 50ms 60ms 70ms]"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
