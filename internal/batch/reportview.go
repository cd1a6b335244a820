package batch

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file turns a run's timeline into the report's page: the geometry of
// its charts is worked out here, so that the template only places what it
// is given and the page needs no script.

//go:embed report.html.tmpl
var reportTemplate string

var reportPage = template.Must(template.New("report").Parse(reportTemplate))

func renderReport(w io.Writer, v reportView) error {
	if err := reportPage.Execute(w, v); err != nil {
		return fmt.Errorf("batch: writing report: %w", err)
	}
	return nil
}

// The charts' size and the room around their plots, in SVG units.
const (
	chartW, chartH                               = 960, 250
	padLeft, padRight, padTop, padBottom         = 70, 24, 30, 40
	plotX0, plotX1, plotY0, plotY1               = padLeft, chartW - padRight, padTop, chartH - padBottom
	maxBars                                      = 300 // more seconds than this are shown in groups
	avgWindow                                    = 10  // seconds of the trailing average lines
	latencyBins                                  = 40
	plotW                                float64 = plotX1 - plotX0
	plotH                                float64 = plotY1 - plotY0
)

// reportView is what the page shows; the *View types below are its parts,
// with every coordinate already formatted.
type reportView struct {
	Title   string
	Started string
	Facts   []fact // what was run, with which limits
	Tiles   []tile // the figures to read first
	Table   []fact // the summary table
	Charts  []chartView
	// Deployments break a run over several deployments down by deployment.
	Deployments []deploymentRow
}

type fact struct{ Name, Value, Note string }

type tile struct{ Label, Value, Note, Class string }

type chartView struct {
	ID, Title, Note string
	W, H            int
	// Seconds is the number of seconds of the run shown, and Group how
	// many are drawn as one bar; 0 for a chart that is not over time.
	Seconds, Group int
	Legend         []legendItem
	XTicks, YTicks []tickView
	Series         []seriesView
	Limits         []limitView
	Axis           axisView
}

type legendItem struct{ Class, Label string }

type tickView struct {
	X, Y  string // the label's position
	Line  lineView
	Label string
}

type lineView struct{ X1, Y1, X2, Y2 string }

type axisView struct {
	X, Y             lineView
	XLabelX, XLabelY string
	YLabelX, YLabelY string
	XLabel, YLabel   string
}

type seriesView struct {
	Name, Kind, Class string
	Points            int    // data points: bars, marks or line vertices
	Total             string // what the series counts in all, if it counts
	Bars              []barView
	Path              string // for lines
	Marks             []markView
}

type barView struct{ X, Y, W, H, Tip string }

type markView struct{ Path, Tip string }

type limitView struct {
	Line           lineView
	LabelX, LabelY string
	Anchor         string
	Value, Label   string
	Class          string
}

// f formats an SVG coordinate.
func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// view builds the page of the timeline.
func (tl timeline) view() reportView {
	t := tl.totals
	info := tl.info
	v := reportView{
		Title:   "lionactor batch report",
		Started: tl.start.UTC().Format("2006-01-02 15:04:05 MST"),
	}
	limit := func(n int, unit string) string {
		if n <= 0 {
			return "none"
		}
		return count(int64(n)) + unit
	}
	for _, fa := range []fact{
		{Name: "provider", Value: info.Provider}, {Name: "model", Value: info.Model}, {Name: "host", Value: info.Host},
		{Name: "request limit", Value: limit(info.RPM, " per minute") + burst(info.Burst)},
		{Name: "token limit", Value: limit(info.TPM, " per minute")},
		{Name: "concurrency cap", Value: limit(info.Concurrency, " calls")},
	} {
		if fa.Value != "" {
			v.Facts = append(v.Facts, fa)
		}
	}

	callRate, tokenRate := t.callRate(), t.tokenRate()
	perSecond, bound := float64(info.RPM)/60, info.windowBound()
	boundNote := fmt.Sprintf("at most %d allowed: %s per second, burst %d", bound, rate(perSecond), max(info.Burst, 1))
	v.Tiles = []tile{
		{Label: "calls per minute", Value: count(int64(math.Round(callRate))), Note: ofLimit(callRate, info.RPM)},
		{Label: "busiest second", Value: plural(t.maxInWindow, "call", "calls"), Note: boundNote, Class: warnIf(t.maxInWindow > bound)},
		{Label: "tokens per minute", Value: count(int64(math.Round(tokenRate))), Note: ofLimit(tokenRate, info.TPM)},
		{Label: "peak calls in flight", Value: count(int64(t.peak)), Note: "cap " + count(int64(info.Concurrency))},
		{Label: "answered 429", Value: count(int64(t.limited)), Note: plural(t.retries, "retry", "retries"), Class: warnIf(t.limited > 0)},
		{Label: "call latency p50", Value: duration(tl.lat.quantile(0.5)), Note: "p99 " + duration(tl.lat.quantile(0.99))},
	}

	failures := "none"
	if len(t.failedBy) > 0 {
		kinds := make([]string, 0, len(t.failedBy))
		for k := range t.failedBy {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for i, k := range kinds {
			kinds[i] = fmt.Sprintf("%s %d", k, t.failedBy[k])
		}
		failures = strings.Join(kinds, ", ")
	}
	tokensNote := "no request reported usage"
	if t.reported > 0 {
		tokensNote = fmt.Sprintf("%s estimated for them (%+.1f%%)", count(t.estimatedReported),
			100*float64(t.actual-t.estimatedReported)/float64(max(t.estimatedReported, 1)))
	}
	v.Table = []fact{
		{Name: "requests", Value: fmt.Sprintf("%s completed, %s failed, %s cancelled", count(int64(t.completed)), count(int64(t.failed)), count(int64(t.cancelled))),
			Note: "cancelled requests have no result and remain for a rerun"},
		{Name: "failures by kind", Value: failures},
		{Name: "calls", Value: fmt.Sprintf("%s started, %s, %s answered 429", count(int64(t.started)), plural(t.retries, "retry", "retries"), count(int64(t.limited))),
			Note: "every attempt is a call"},
		{Name: "call rate", Value: count(int64(math.Round(callRate))) + " per minute" + limitOf(info.RPM),
			Note: ofLimit(callRate, info.RPM) + "; from the first call started to the last"},
		{Name: "most calls started in one second", Value: count(int64(t.maxInWindow)), Note: boundNote + "; in any window of one second, not only the seconds of the chart"},
		{Name: "tokens", Value: count(int64(math.Round(tokenRate))) + " per minute" + limitOf(info.TPM),
			Note: ofLimit(tokenRate, info.TPM) + "; " + count(t.tokens) + " in all, as the limiter counts them"},
		{Name: "tokens reported", Value: fmt.Sprintf("%s by %s requests", count(t.actual), count(int64(t.reported))), Note: tokensNote},
		{Name: "calls in flight", Value: fmt.Sprintf("peak %s, cap %s", count(int64(t.peak)), count(int64(info.Concurrency)))},
		{Name: "call latency", Value: fmt.Sprintf("p50 %s, p95 %s, p99 %s, max %s", duration(tl.lat.quantile(0.5)), duration(tl.lat.quantile(0.95)),
			duration(tl.lat.quantile(0.99)), duration(tl.lat.max)), Note: fmt.Sprintf("of %s completed calls; mean %s", count(tl.lat.n), duration(tl.lat.mean()))},
		{Name: "wall time", Value: duration(tl.wall)},
	}
	costTiles, costTable := t.costReport(tl.wall)
	v.Tiles = append(v.Tiles, costTiles...)
	v.Table = append(v.Table[:len(v.Table)-1], append(costTable, v.Table[len(v.Table)-1])...)
	v.Table = append(v.Table, t.batchFacts()...)

	v.Charts = []chartView{tl.requestsChart(), tl.tokensChart(), tl.inFlightChart(), tl.latencyChart()}
	v.Deployments = tl.deploymentRows()
	return v
}

// limitOf names a limit after a figure: ", limit 1,200"; "" for none.
func limitOf(n int) string {
	if n <= 0 {
		return ""
	}
	return ", limit " + count(int64(n))
}

func burst(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", burst %d", n)
}

func warnIf(b bool) string {
	if b {
		return "warn"
	}
	return ""
}

// ofLimit says what share of limit the rate is.
func ofLimit(rate float64, limit int) string {
	if limit <= 0 {
		return "no limit"
	}
	return fmt.Sprintf("%.1f%% of the limit", 100*rate/float64(limit))
}

// count formats n, never negative, with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rate formats a per-second figure: whole when it is, else to a tenth.
func rate(r float64) string {
	if r == math.Trunc(r) {
		return count(int64(r))
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// duration formats d with three significant digits at most.
func duration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	case d >= 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + " µs"
}

// clock formats s seconds from the run's start: "45s" in a run shorter
// than a minute, "0:45" or "2:30" in a longer one, "1:02:30" past an hour.
func (tl timeline) clock(s int) string {
	switch {
	case tl.wall < time.Minute:
		return strconv.Itoa(s) + "s"
	case tl.wall < time.Hour:
		return fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

// axes is a time chart's frame: x from 0 to the wall time, y from 0 to top.
type axes struct {
	wall  float64 // seconds shown
	top   float64
	group int // seconds per bar
	n     int // bars
}

func (a axes) x(sec float64) float64 { return plotX0 + sec/a.wall*plotW }
func (a axes) y(v float64) float64   { return plotY1 - v/a.top*plotH }

// timeAxes frames the timeline for a chart whose values reach peak and
// whose limit is limit (0: none).
func (tl timeline) timeAxes(peak, limit float64) axes {
	wall := max(tl.wall.Seconds(), 1)
	n := len(tl.secs)
	group := max(1, (n+maxBars-1)/maxBars)
	_, top := niceScale(max(peak, limit*1.1, 1))
	return axes{wall: wall, top: top, group: group, n: (n + group - 1) / group}
}

// niceScale returns a tick step of 1, 2, 2.5 or 5 times a power of ten
// that divides [0, v] in about five, and the axis top, a multiple of it.
func niceScale(v float64) (step, top float64) {
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * p
		if step >= raw {
			break
		}
	}
	top = math.Ceil(v/step) * step
	if top < v*1.05 {
		top += step
	}
	return step, top
}

// frame draws the axes, grid and ticks of a time chart.
func (tl timeline) frame(c *chartView, a axes, yLabel string, yFormat func(float64) string) {
	c.W, c.H = chartW, chartH
	c.Seconds, c.Group = len(tl.secs), a.group
	step, _ := niceScale(a.top / 1.05)
	for v := 0.0; v <= a.top+step/1000; v += step {
		y := a.y(v)
		c.YTicks = append(c.YTicks, tickView{X: f(plotX0 - 8), Y: f(y + 4), Label: yFormat(v),
			Line: lineView{f(plotX0), f(y), f(plotX1), f(y)}})
	}
	var xstep int
	for _, s := range []int{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400} {
		xstep = s
		if a.wall/float64(s) <= 12 {
			break
		}
	}
	for s := 0; float64(s) <= a.wall; s += xstep {
		x := a.x(float64(s))
		c.XTicks = append(c.XTicks, tickView{X: f(x), Y: f(plotY1 + 18), Label: tl.clock(s),
			Line: lineView{f(x), f(plotY0), f(x), f(plotY1)}})
	}
	c.Axis = axisView{
		X: lineView{f(plotX0), f(plotY1), f(plotX1), f(plotY1)}, Y: lineView{f(plotX0), f(plotY0), f(plotX0), f(plotY1)},
		XLabelX: f(plotX1), XLabelY: f(chartH - 4), XLabel: "time since the run started",
		YLabelX: f(4), YLabelY: f(plotY0 - 12), YLabel: yLabel,
	}
}

// bars draws one bar per group of seconds, of value(first, n): the
// figure of seconds [first, first+n).
func (tl timeline) bars(a axes, name, class string, value func(first, n int) float64, tip func(first, n int, v float64) string) seriesView {
	s := seriesView{Name: name, Kind: "bars", Class: class}
	for i := 0; i < len(tl.secs); i += a.group {
		n := min(a.group, len(tl.secs)-i)
		v := value(i, n)
		x0, x1 := a.x(float64(i)), a.x(min(float64(i+n), a.wall))
		w := max(x1-x0-1, 0.5) // a hairline gap between bars
		y := a.y(v)
		s.Bars = append(s.Bars, barView{X: f(x0), Y: f(y), W: f(w), H: f(plotY1 - y), Tip: tip(i, n, v)})
	}
	s.Points = len(s.Bars)
	return s
}

// trailing draws the average over the last avgWindow whole seconds of
// per(i), at the end of each whole second.
func (tl timeline) trailing(a axes, name, class string, per func(i int) float64) seriesView {
	whole := min(len(tl.secs), int(tl.wall/time.Second))
	var pts []string
	sum := 0.0
	for i := range whole {
		sum += per(i)
		if i >= avgWindow {
			sum -= per(i - avgWindow)
		}
		if (i+1)%a.group != 0 && i != whole-1 {
			continue
		}
		avg := sum / float64(min(i+1, avgWindow))
		pts = append(pts, f(a.x(float64(i+1)))+" "+f(a.y(avg)))
	}
	if len(pts) < 2 {
		pts = nil // a run of less than two seconds has no line to draw
	}
	return seriesView{Name: name, Kind: "line", Class: class, Points: len(pts), Path: linePath(pts)}
}

func linePath(pts []string) string {
	if len(pts) == 0 {
		return ""
	}
	return "M" + strings.Join(pts, " L")
}

// limitLine draws a horizontal limit at v.
func limitLine(a axes, v float64, label string) limitView {
	y := a.y(v)
	return limitView{Line: lineView{f(plotX0), f(y), f(plotX1), f(y)}, LabelX: f(plotX1 - 4), LabelY: f(y - 5),
		Anchor: "end", Value: strconv.FormatFloat(v, 'f', -1, 64), Label: label, Class: "limit"}
}

// span names seconds [first, first+n) in a tooltip.
func (tl timeline) span(first, n int) string {
	if n == 1 {
		return "second " + tl.clock(first) + "–" + tl.clock(first+1)
	}
	return "seconds " + tl.clock(first) + "–" + tl.clock(first+n)
}

// sum adds a figure of seconds [first, first+n).
func (tl timeline) sum(first, n int, fig func(*second) float64) float64 {
	total := 0.0
	for i := first; i < first+n; i++ {
		total += fig(&tl.secs[i])
	}
	return total
}

func (tl timeline) requestsChart() chartView {
	started := func(s *second) float64 { return float64(s.started) }
	peak := 0.0
	for i := range tl.secs {
		peak = max(peak, started(&tl.secs[i]))
	}
	limit := float64(tl.info.RPM) / 60
	a := tl.timeAxes(peak, limit)
	c := chartView{ID: "chart-requests", Title: "Calls started per second",
		Note: "Each attempt counts, retries included: the provider counts them all. The line is the average of the last 10 seconds."}
	if a.group > 1 {
		c.Note += fmt.Sprintf(" Each bar is %d seconds: its height is their mean, its tooltip their busiest.", a.group)
	}
	tl.frame(&c, a, "calls / s", rate)
	bars := tl.bars(a, "started", "started", func(i, n int) float64 { return tl.sum(i, n, started) / float64(n) },
		func(i, n int, v float64) string {
			if n == 1 {
				return fmt.Sprintf("%s: %s started", tl.span(i, n), plural(int(v), "call", "calls"))
			}
			most := 0.0
			for j := i; j < i+n; j++ {
				most = max(most, started(&tl.secs[j]))
			}
			return fmt.Sprintf("%s: %.1f calls started per second, at most %s", tl.span(i, n), v, rate(most))
		})
	bars.Total = strconv.FormatInt(int64(tl.sum(0, len(tl.secs), started)), 10)
	c.Series = append(c.Series, bars,
		tl.trailing(a, "started-avg", "avg", func(i int) float64 { return started(&tl.secs[i]) }),
		tl.marks(a, "retries", "retry", plotY0+18, func(s *second) int { return int(s.retries) }, "retried"),
		tl.marks(a, "429", "rate-limited", plotY0+6, func(s *second) int { return int(s.limited) }, "answered 429"),
	)
	c.Limits = []limitView{limitLine(a, limit, fmt.Sprintf("limit %s/s (%s/min)", rate(limit), count(int64(tl.info.RPM))))}
	c.Legend = []legendItem{{"started", "calls started"}, {"avg", "10 s average"}, {"limit", "request limit"},
		{"rate-limited", "answered 429"}, {"retry", "retried"}}
	return c
}

// marks draws a marker over each group of seconds where fig is not 0.
func (tl timeline) marks(a axes, name, class string, y float64, fig func(*second) int, what string) seriesView {
	s := seriesView{Name: name, Kind: "marks", Class: class}
	total := 0
	for i := 0; i < len(tl.secs); i += a.group {
		n := min(a.group, len(tl.secs)-i)
		k := 0
		for j := i; j < i+n; j++ {
			k += fig(&tl.secs[j])
		}
		if k == 0 {
			continue
		}
		x := a.x(float64(i) + float64(n)/2)
		var path string
		if class == "rate-limited" {
			path = fmt.Sprintf("M%s %s L%s %s L%s %s Z", f(x-5), f(y-5), f(x+5), f(y-5), f(x), f(y+4))
		} else {
			path = fmt.Sprintf("M%s %s a4 4 0 1 0 8 0 a4 4 0 1 0 -8 0", f(x-4), f(y))
		}
		s.Marks = append(s.Marks, markView{Path: path, Tip: fmt.Sprintf("%s: %d %s", tl.span(i, n), k, what)})
		total += k
	}
	s.Points, s.Total = len(s.Marks), strconv.Itoa(total)
	return s
}

func (tl timeline) tokensChart() chartView {
	tokens := func(s *second) float64 { return float64(s.tokens) * 60 }
	estimated := func(s *second) float64 { return float64(s.estimated) * 60 }
	peak := 0.0
	for i := range tl.secs {
		peak = max(peak, tokens(&tl.secs[i]), estimated(&tl.secs[i]))
	}
	limit := float64(tl.info.TPM)
	a := tl.timeAxes(peak, limit)
	c := chartView{ID: "chart-tokens", Title: "API tokens per minute",
		Note: "Each second's tokens at a per-minute pace, by the second their call started: what the provider reported, or the estimate for a call that reported none, as the limiter counts them. The lines are averages of the last 10 seconds."}
	tl.frame(&c, a, "tokens / min", func(v float64) string { return count(int64(v)) })
	bars := tl.bars(a, "tokens", "tokens", func(i, n int) float64 { return tl.sum(i, n, tokens) / float64(n) },
		func(i, n int, v float64) string {
			return fmt.Sprintf("%s: %s tokens per minute", tl.span(i, n), count(int64(v)))
		})
	bars.Total = strconv.FormatInt(int64(tl.sum(0, len(tl.secs), func(s *second) float64 { return float64(s.tokens) })), 10)
	c.Series = append(c.Series, bars,
		tl.trailing(a, "tokens-avg", "avg", func(i int) float64 { return tokens(&tl.secs[i]) }),
		tl.trailing(a, "estimated-avg", "estimated", func(i int) float64 { return estimated(&tl.secs[i]) }),
	)
	c.Legend = []legendItem{{"tokens", "tokens"}, {"avg", "10 s average"}, {"estimated", "estimated, 10 s average"}}
	if limit > 0 {
		c.Limits = []limitView{limitLine(a, limit, "limit "+count(int64(limit))+"/min")}
		c.Legend = append(c.Legend, legendItem{"limit", "token limit"})
	} else {
		c.Note += " The run had no token limit."
	}
	return c
}

func (tl timeline) inFlightChart() chartView {
	peakOf := func(s *second) float64 { return float64(s.peak) }
	top := 0.0
	for i := range tl.secs {
		top = max(top, peakOf(&tl.secs[i]))
	}
	limit := float64(tl.info.Concurrency)
	a := tl.timeAxes(top, limit)
	c := chartView{ID: "chart-inflight", Title: "Calls in flight",
		Note: "The area is the mean number of calls in flight in each second, the line the most at once."}
	tl.frame(&c, a, "calls", rate)
	// The mean of the last second is over the part of it the run lasted.
	length := func(i int) float64 { return min(tl.wall.Seconds()-float64(i), 1) }
	mean := tl.bars(a, "mean", "mean", func(i, n int) float64 {
		busy, secs := 0.0, 0.0
		for j := i; j < i+n; j++ {
			busy += tl.secs[j].busy.Seconds()
			secs += max(length(j), 1e-9)
		}
		return busy / secs
	}, func(i, n int, v float64) string {
		return fmt.Sprintf("%s: %.1f in flight on average", tl.span(i, n), v)
	})
	var pts []string
	for i := 0; i < len(tl.secs); i += a.group {
		n := min(a.group, len(tl.secs)-i)
		p := 0.0
		for j := i; j < i+n; j++ {
			p = max(p, peakOf(&tl.secs[j]))
		}
		y := f(a.y(p))
		pts = append(pts, f(a.x(float64(i)))+" "+y, f(a.x(min(float64(i+n), a.wall)))+" "+y)
	}
	peak := seriesView{Name: "peak", Kind: "line", Class: "peak", Points: len(pts), Path: linePath(pts)}
	c.Series = []seriesView{mean, peak}
	c.Limits = []limitView{limitLine(a, limit, "cap "+count(int64(limit)))}
	c.Legend = []legendItem{{"mean", "mean in flight"}, {"peak", "most at once"}, {"limit", "concurrency cap"}}
	return c
}

func (tl timeline) latencyChart() chartView {
	h := tl.lat
	c := chartView{ID: "chart-latency", Title: "Call latency",
		Note: fmt.Sprintf("How long the last attempt of each completed request took, %s calls, on a logarithmic scale.", count(h.n)),
		W:    chartW, H: chartH}
	// The fine buckets that hold samples, grouped into at most latencyBins.
	lo, hi := 0, len(h.counts)-1
	for lo < len(h.counts) && h.counts[lo] == 0 {
		lo++
	}
	for hi >= 0 && h.counts[hi] == 0 {
		hi--
	}
	if h.n == 0 || lo > hi {
		lo, hi = histBucket(10*time.Millisecond), histBucket(10*time.Millisecond)
	}
	per := max(1, (hi-lo+1+latencyBins-1)/latencyBins)
	// The axis spans whole display bins, with one empty bin either side.
	first := max(lo-per, 0)
	last := hi + per
	logLo, logHi := math.Log(float64(histLower(first))), math.Log(float64(histLower(last+1)))
	x := func(d time.Duration) float64 {
		return plotX0 + (math.Log(float64(max(d, 1)))-logLo)/(logHi-logLo)*plotW
	}
	var most int64
	type bin struct {
		from, to time.Duration
		n        int64
	}
	var bins []bin
	for i := lo; i <= hi; i += per {
		b := bin{from: histLower(i), to: histLower(i + per)}
		for j := i; j < min(i+per, len(h.counts)); j++ {
			b.n += h.counts[j]
		}
		most = max(most, b.n)
		bins = append(bins, b)
	}
	step, top := niceScale(max(float64(most), 1))
	if step < 1 { // whole calls
		step, top = 1, math.Ceil(top)
	}
	y := func(v float64) float64 { return plotY1 - v/top*plotH }
	s := seriesView{Name: "latency", Kind: "bars", Class: "latency"}
	var total int64
	for _, b := range bins {
		if b.n == 0 {
			continue
		}
		x0, x1 := x(b.from), x(b.to)
		s.Bars = append(s.Bars, barView{X: f(x0), Y: f(y(float64(b.n))), W: f(max(x1-x0-1, 0.5)), H: f(plotY1 - y(float64(b.n))),
			Tip: fmt.Sprintf("%s–%s: %s", duration(b.from), duration(b.to), plural(int(b.n), "call", "calls"))})
		total += b.n
	}
	s.Points, s.Total = len(s.Bars), strconv.FormatInt(total, 10)
	c.Series = []seriesView{s}
	for v := 0.0; v <= top+step/1000; v += step {
		c.YTicks = append(c.YTicks, tickView{X: f(plotX0 - 8), Y: f(y(v) + 4), Label: count(int64(v)),
			Line: lineView{f(plotX0), f(y(v)), f(plotX1), f(y(v))}})
	}
	from, to := histLower(first), histLower(last+1)
	for _, d := range durationTicks(from, to) {
		c.XTicks = append(c.XTicks, tickView{X: f(x(d)), Y: f(plotY1 + 18), Label: duration(d),
			Line: lineView{f(x(d)), f(plotY0), f(x(d)), f(plotY1)}})
	}
	if h.n > 0 {
		for i, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}} {
			d := h.quantile(q.q)
			xq := x(d)
			// Labels right of the line, or left of it in the plot's right half.
			lx, anchor := xq+4, "start"
			if xq > plotX0+plotW/2 {
				lx, anchor = xq-4, "end"
			}
			c.Limits = append(c.Limits, limitView{Line: lineView{f(xq), f(plotY0), f(xq), f(plotY1)},
				LabelX: f(lx), LabelY: f(plotY0 + 12 + 14*float64(i)), Anchor: anchor,
				Value: strconv.FormatInt(d.Microseconds(), 10), Label: q.name + " " + duration(d), Class: "quantile"})
		}
	}
	c.Axis = axisView{
		X: lineView{f(plotX0), f(plotY1), f(plotX1), f(plotY1)}, Y: lineView{f(plotX0), f(plotY0), f(plotX0), f(plotY1)},
		XLabelX: f(plotX1), XLabelY: f(chartH - 4), XLabel: "call duration (log scale)",
		YLabelX: f(4), YLabelY: f(plotY0 - 12), YLabel: "calls",
	}
	c.Legend = []legendItem{{"latency", "completed calls"}, {"quantile", "p50, p95, p99"}}
	return c
}

// durationTicks are the ticks of a logarithmic axis from lo to hi: 1, 2
// and 5 times the powers of ten in it; more multiples when that makes
// fewer than four ticks (a narrow range), only the powers when it makes
// more than a dozen (a wide one).
func durationTicks(lo, hi time.Duration) []time.Duration {
	ticks := func(multiples ...time.Duration) []time.Duration {
		var out []time.Duration
		for p := time.Duration(1); p <= hi; p *= 10 {
			for _, m := range multiples {
				if d := m * p; d >= lo && d <= hi {
					out = append(out, d)
				}
			}
		}
		return out
	}
	t := ticks(1, 2, 5)
	switch {
	case len(t) > 12:
		t = ticks(1)
	case len(t) < 4:
		if t = ticks(1, 2, 3, 5); len(t) < 4 {
			t = ticks(1, 2, 3, 4, 5, 6, 7, 8, 9)
		}
	}
	return t
}

// plural says n of a thing.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return count(int64(n)) + " " + many
}
