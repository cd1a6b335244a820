package main

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// TestBatchReport: --report writes the report and says where; the report
// names no key.
func TestBatchReport(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in, out, report := writeRequests(t, dir, 20), filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "run.html")
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel,
		"--rpm", "60000", "--report", report); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(c.stderr.String(), "report: "+report+"\n") {
		t.Errorf("stderr does not say where the report is:\n%s", c.stderr.String())
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="chart-requests"`, `id="chart-tokens"`, `id="chart-inflight"`, `id="chart-latency"`, `id="summary"`,
		"20 completed, 0 failed, 0 cancelled", "60,000 per minute"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte(testKey)) {
		t.Error("the report contains the API key")
	}
}

// TestBatchReportUnwritable: a report path that cannot be written is a
// usage error that names the flag, before anything is sent.
func TestBatchReportUnwritable(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeRequests(t, dir, 3)
	c := newCLI()
	code := c.run(t, context.Background(), "batch", "--in", in, "--url", base, "--model", testModel,
		"--report", filepath.Join(dir, "missing", "run.html"))
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	if msg := c.stderr.String(); !strings.Contains(msg, "--report") || !strings.Contains(msg, "no such file or directory") {
		t.Errorf("stderr %q: want the flag and the reason", msg)
	}
	if n := sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestBatchReportNotLeftEmpty: a run refused before it starts leaves no
// empty report behind.
func TestBatchReportNotLeftEmpty(t *testing.T) {
	dir := t.TempDir()
	in, report := writeRequests(t, dir, 3), filepath.Join(dir, "run.html")
	c := newCLI()
	c.env["COMPAT_KEY"] = testKey
	// Validated by the model endpoint, when the run starts: a generic
	// endpoint needs a URL.
	if code := c.run(t, context.Background(), "batch", "--in", in, "--provider", "generic", "--api-key-env", "COMPAT_KEY", "--report", report); code == exitOK {
		t.Fatalf("a generic endpoint without a URL ran")
	}
	if _, err := os.Stat(report); !os.IsNotExist(err) {
		t.Errorf("the report of a run that never started is left: %v", err)
	}
}

// chromium returns the path of a headless browser for the report tests.
// Where none is installed the test is skipped, unless it runs in CI
// (LIONACTOR_CI set), where a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("LIONACTOR_CI") != "" {
		t.Fatal("chromium is not installed, and LIONACTOR_CI is set: CI must install it (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); set LIONACTOR_CI to make this a failure")
	return ""
}

// browserPage is what the browser says about a loaded report.
type browserPage struct {
	Charts map[string]browserChart `json:"charts"`
	Tiles  []string                `json:"tiles"`
	Rows   int                     `json:"rows"`
	// Resources counts the elements that could fetch something.
	Resources int `json:"resources"`
}

type browserChart struct {
	Width   float64                  `json:"width"`
	Height  float64                  `json:"height"`
	Seconds int                      `json:"seconds"`
	Series  map[string]browserSeries `json:"series"`
	Limits  []browserLimit           `json:"limits"`
}

type browserSeries struct {
	Points int     `json:"points"`
	Total  float64 `json:"total"`  // -1: the series counts nothing
	Shapes int     `json:"shapes"` // bars or marks, or a line's vertices
	Drawn  int     `json:"drawn"`  // of those, the ones the browser laid out with a size
}

type browserLimit struct {
	Class  string  `json:"class"`
	Value  float64 `json:"value"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
	Stroke string  `json:"stroke"`
	Label  string  `json:"label"`
	Y      float64 `json:"y"` // the line's position in the chart, 0 at its top
}

// inspectReport runs in the page and reads each chart as the browser laid
// it out.
const inspectReport = `(() => {
	const out = {charts: {}, tiles: [], rows: 0, resources: 0};
	for (const svg of document.querySelectorAll("svg.chart")) {
		const box = svg.getBoundingClientRect();
		const c = {width: box.width, height: box.height, seconds: +svg.dataset.seconds, series: {}, limits: []};
		for (const s of svg.querySelectorAll("[data-series]")) {
			// A group's shapes are its children; a line's, its vertices.
			const sized = e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; };
			let shapes, drawn;
			if (s.tagName === "g") {
				shapes = s.children.length;
				drawn = [...s.children].filter(sized).length;
			} else {
				shapes = (s.getAttribute("d").match(/[ML]/g) || []).length;
				drawn = sized(s) ? shapes : 0;
			}
			c.series[s.dataset.series] = {
				points: +s.dataset.points, shapes: shapes, drawn: drawn,
				total: s.dataset.total === undefined ? -1 : +s.dataset.total,
			};
		}
		for (const g of svg.querySelectorAll("g.limit, g.quantile")) {
			const line = g.querySelector("line");
			const lb = line.getBoundingClientRect();
			c.limits.push({
				class: g.getAttribute("class"), value: +g.dataset.value, width: lb.width, height: lb.height,
				stroke: getComputedStyle(line).stroke, label: g.querySelector("text").textContent, y: lb.top - box.top,
			});
		}
		out.charts[svg.id] = c;
	}
	out.tiles = [...document.querySelectorAll("#tiles .tile")].map(t => t.innerText.replace(/\s+/g, " "));
	out.rows = document.querySelectorAll("#summary tr").length;
	out.resources = document.querySelectorAll("script, link, img, iframe, object, embed, image, use").length;
	return out;
})()`

// TestReportInBrowser runs a small batch with 429s on the way, loads its
// report in headless Chromium, checks that every chart rendered with
// plausible series and its limit lines, with no console error, exception
// or network request, and takes a screenshot.
func TestReportInBrowser(t *testing.T) {
	browser := chromium(t)
	began := time.Now()

	sim, base := simtest.Start(t, simulator.Config{Latency: 20 * time.Millisecond, LatencyJitter: 10 * time.Millisecond,
		Faults: simulator.Faults{RateLimit: 0.1}, FaultRetryAfter: 5 * time.Millisecond, Seed: 11})
	dir := t.TempDir()
	const n = 100 // two to four seconds at 1,800 requests per minute
	in, out, report := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "run.html")
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel,
		"--rpm", "1800", "--tpm", "400000", "--concurrency", "8", "--max-attempts", "20", "--report", report); code != exitOK {
		t.Fatalf("batch: exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	retries := 0
	for _, r := range results {
		retries += r.Attempts - 1
	}
	limited := sim.Stats().ByStatus[429]
	if limited == 0 {
		t.Fatal("the simulator sent no 429: the test cannot see them marked")
	}
	ran := time.Now()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()

	var (
		mu       sync.Mutex
		problems []string // console errors, exceptions, log errors
		fetched  []string // every URL the page asked for
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				problems = append(problems, fmt.Sprintf("console.%s %v", ev.Type, ev.Args))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				problems = append(problems, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			fetched = append(fetched, ev.Request.URL)
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	started := time.Now()

	pageURL := (&url.URL{Scheme: "file", Path: report}).String()
	actx, cancelActions := context.WithTimeout(ctx, 60*time.Second)
	defer cancelActions()
	if err := chromedp.Do(actx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS("#chart-latency"))); err != nil {
		t.Fatalf("loading the report: %v", err)
	}
	pg, err := chromedp.Run(actx, chromedp.Evaluate[browserPage](inspectReport))
	if err != nil {
		t.Fatalf("inspecting the report: %v", err)
	}
	shot, err := chromedp.Run(actx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotPath := filepath.Join(t.TempDir(), "report.png")
	if err := os.WriteFile(shotPath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	inspected := time.Now()
	t.Logf("batch %v, chromium start %v, load, inspection and screenshot %v; screenshot %s",
		ran.Sub(began).Round(time.Millisecond), started.Sub(ran).Round(time.Millisecond), inspected.Sub(started).Round(time.Millisecond), shotPath)

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(problems, "\n"))
	}
	for _, u := range fetched {
		if u != pageURL {
			t.Errorf("the page fetched %s: a report must be self-contained", u)
		}
	}
	if pg.Resources != 0 {
		t.Errorf("the page has %d elements that could fetch something", pg.Resources)
	}

	for _, id := range []string{"chart-requests", "chart-tokens", "chart-inflight", "chart-latency"} {
		ch, ok := pg.Charts[id]
		if !ok {
			t.Fatalf("no chart %s; the page has %v", id, pg.Charts)
		}
		if ch.Width < 500 || ch.Height < 100 {
			t.Errorf("%s is laid out at %.0f×%.0f", id, ch.Width, ch.Height)
		}
		for name, s := range ch.Series {
			if s.Shapes != s.Points || s.Drawn != s.Shapes {
				t.Errorf("%s series %s: %d points, %d shapes, %d drawn with a size", id, name, s.Points, s.Shapes, s.Drawn)
			}
		}
	}

	// Calls started: one bar per second of a run of a few seconds, all the
	// attempts in them, the 429s and retries marked.
	req := pg.Charts["chart-requests"]
	started429, retried := req.Series["429"], req.Series["retries"]
	bars := req.Series["started"]
	if bars.Points != req.Seconds || bars.Points < 2 || bars.Points > 10 {
		t.Errorf("calls started: %d bars for a run of %d seconds (want 2 to 10)", bars.Points, req.Seconds)
	}
	if int(bars.Total) != n+retries {
		t.Errorf("calls started total %v, want %d requests + %d retries", bars.Total, n, retries)
	}
	if int64(started429.Total) != limited || started429.Points == 0 {
		t.Errorf("429 marks: %v in %d places; the simulator sent %d", started429.Total, started429.Points, limited)
	}
	if int(retried.Total) != retries {
		t.Errorf("retry marks total %v, want %d", retried.Total, retries)
	}
	if avg := req.Series["started-avg"]; avg.Points < 2 || avg.Points > req.Seconds {
		t.Errorf("the average line has %d points over %d seconds", avg.Points, req.Seconds)
	}
	if lat := pg.Charts["chart-latency"].Series["latency"]; int(lat.Total) != n || lat.Points < 2 {
		t.Errorf("latency histogram: %v calls in %d bars, want %d calls in several", lat.Total, lat.Points, n)
	}

	// The limit lines are drawn across their plots, in red, where their
	// values are.
	wantLimits := map[string]float64{"chart-requests": 30, "chart-tokens": 400000, "chart-inflight": 8}
	for id, v := range wantLimits {
		ch := pg.Charts[id]
		var found bool
		for _, l := range ch.Limits {
			if l.Class != "limit" {
				continue
			}
			found = true
			if l.Value != v {
				t.Errorf("%s: limit line at %v, want %v", id, l.Value, v)
			}
			if l.Width < ch.Width/2 || l.Height > 3 || l.Y <= 0 || l.Y >= ch.Height {
				t.Errorf("%s: limit line %.0f wide, %.0f high, at %.0f of %.0f: not a line across the plot", id, l.Width, l.Height, l.Y, ch.Height)
			}
			if l.Stroke != "rgb(207, 34, 46)" {
				t.Errorf("%s: limit line stroke %q, want the limit red", id, l.Stroke)
			}
		}
		if !found {
			t.Errorf("%s has no limit line", id)
		}
	}
	var quantiles int
	for _, l := range pg.Charts["chart-latency"].Limits {
		if l.Class == "quantile" && l.Height > 50 && strings.HasPrefix(l.Label, "p") {
			quantiles++
		}
	}
	if quantiles != 3 {
		t.Errorf("%d quantile lines drawn, want p50, p95, p99", quantiles)
	}
	// The six figures of the limits, then what the run spent.
	if len(pg.Tiles) != 7 || !strings.Contains(pg.Tiles[4], fmt.Sprint(limited)) || !strings.HasPrefix(pg.Tiles[6], "spent $") || pg.Rows < 8 {
		t.Errorf("tiles %q, %d summary rows", pg.Tiles, pg.Rows)
	}
	checkScreenshot(t, shot)
}

// checkScreenshot checks that the screenshot is a whole page with
// something drawn on it: several colours, among them the limit red.
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 900 || b.Dy() < 1500 {
		t.Errorf("screenshot %dx%d: not the whole report", b.Dx(), b.Dy())
	}
	colours := map[color.RGBA]bool{}
	red := false
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), 255}
			colours[c] = true
			if c.R > 180 && c.G < 80 && c.B < 80 {
				red = true
			}
		}
	}
	if len(colours) < 20 || !red {
		t.Errorf("the screenshot has %d colours, red %v: the charts did not render", len(colours), red)
	}
}
