package batch

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// This file is what a run's requests cost: the cost of each result line,
// the run's spend in its summary, progress, metrics and report, and the
// spend cap (Config.MaxCost) that stops a run.

// ErrSpendCap is returned by Run when the spend cap (Config.MaxCost) stopped
// it: what the results file's requests cost, with the estimated cost of the
// next request, would have passed it. Every request admitted before ran to
// its end and has its line; the Summary says how many remain. A rerun with
// a higher cap continues where the run stopped.
var ErrSpendCap = errors.New("batch: stopped at the spend cap")

// ResultCost is what a request cost, in US dollars: Estimated before its
// call (its input and max output tokens at the model's prices), Actual
// from the usage the provider reported (null when it reported none). Both
// are null, and PriceUnknown true, for a model the price table does not
// have: its cost is unknown, not $0.
type ResultCost struct {
	Estimated    *float64 `json:"estimated"`
	Actual       *float64 `json:"actual"`
	PriceUnknown bool     `json:"price_unknown,omitempty"`
}

// resultCost is the cost of a result line of the request that ended with
// ev.
func resultCost(ev *messages.Event) *ResultCost {
	c := ev.Cost()
	if !c.Priced {
		return &ResultCost{PriceUnknown: true}
	}
	out := &ResultCost{Estimated: &c.Estimated}
	if c.HasActual {
		out.Actual = &c.Actual
	}
	return out
}

// modelOf names the model a line's request goes to, as the price table
// knows it: its "model", or the endpoint's model, or Azure's deployment.
func (c Config) modelOf(body map[string]any) string {
	if m, ok := body["model"].(string); ok && m != "" {
		return m
	}
	if c.Endpoint.Model != "" {
		return c.Endpoint.Model
	}
	return c.Endpoint.Deployment
}

// maxUnpriced is how many models of unknown price the summary names.
const maxUnpriced = 5

// costed counts what the request of model that ended with ev cost: its
// price, or that it has none, and whether the cache answered it.
func (m *Summary) costed(ev *messages.Event, model string) {
	if ev.Status == messages.StatusCancelled {
		return // no line; it remains for a rerun
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.s
	switch {
	case ev.Cached():
		s.Cached++
	case !ev.Cost().Priced:
		s.PriceUnknown++
		if !slices.Contains(s.UnpricedModels, model) && len(s.UnpricedModels) < maxUnpriced {
			s.UnpricedModels = append(s.UnpricedModels, model)
		}
	default:
		s.Priced++
		s.CostEstimated += ev.Cost().Estimated
		s.CostActual += ev.Cost().Actual
		if m.costByModel == nil {
			m.costByModel = map[string]float64{}
		}
		m.costByModel[model] += ev.Cost().Actual
	}
}

// CostByModel returns what the ended requests cost by the usage they
// reported, by model, in US dollars.
func (m *Summary) CostByModel() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.costByModel)
}

// Spent is what the results file's requests cost: those of this run and,
// counted against a spend cap, those of earlier runs.
func (s Snapshot) Spent() float64 { return s.SpentBefore + s.CostActual }

// SpendRate is what this run's requests cost per minute of its wall time.
func (s Snapshot) SpendRate() float64 {
	d := s.Elapsed()
	if d <= 0 {
		return 0
	}
	return s.CostActual / d.Minutes()
}

// usd formats an amount of US dollars with the digits a small one needs.
func usd(x float64) string {
	switch {
	case x >= 10:
		return fmt.Sprintf("$%.2f", x)
	case x >= 0.1:
		return fmt.Sprintf("$%.4f", x)
	}
	return fmt.Sprintf("$%.6f", x)
}

// costLines are the summary's lines on cost, the cache and the spend cap;
// none for a run with nothing of either.
func costLines(s Snapshot) []string {
	var lines []string
	if s.Priced > 0 {
		line := fmt.Sprintf("cost: %s actual (estimated at most %s) for %s, %s/min", usd(s.CostActual), usd(s.CostEstimated), requests(s.Priced), usd(s.SpendRate()))
		if s.PricesDate != "" {
			line += "; prices of " + s.PricesDate
		}
		lines = append(lines, line)
	}
	if s.PriceUnknown > 0 {
		models := strings.Join(s.UnpricedModels, ", ")
		if models == "" {
			models = "no model named"
		}
		lines = append(lines, fmt.Sprintf("cost: price unknown for %s (%s): not counted; give their prices with --prices", requests(s.PriceUnknown), models))
	}
	if s.Cached > 0 {
		lines = append(lines, fmt.Sprintf("cache: %s answered from the cache, at no cost", requests(s.Cached)))
	}
	if s.SpendLimit > 0 {
		line := fmt.Sprintf("spend cap: %s of %s spent", usd(s.Spent()), usd(s.SpendLimit))
		if s.SpentBefore > 0 {
			line += fmt.Sprintf(" (%s of it before this run)", usd(s.SpentBefore))
		}
		if s.SpendCapped {
			line += fmt.Sprintf("; stopped: %d requests remain, a rerun with a higher --max-cost continues", s.Remaining())
		}
		lines = append(lines, line)
	}
	return lines
}

// spendPart is the progress line's account of spend; "" until a priced
// request has ended.
func spendPart(s Snapshot) string {
	if s.Priced == 0 {
		return ""
	}
	return fmt.Sprintf(", %s spent (%s/min)", usd(s.CostActual), usd(s.SpendRate()))
}

// costMetrics serves the run's spend: lionactor_cost_usd_total by model,
// the cache's hits, and with a spend cap its limit and what is committed.
type costMetrics struct {
	r         *runner
	cost      *prometheus.Desc
	hits      *prometheus.Desc
	limit     *prometheus.Desc
	committed *prometheus.Desc
}

func newCostMetrics(r *runner) *costMetrics {
	return &costMetrics{
		r:         r,
		cost:      prometheus.NewDesc("lionactor_cost_usd_total", "What the ended requests cost by the usage the provider reported, in US dollars.", []string{"model"}, nil),
		hits:      prometheus.NewDesc("lionactor_cache_hits_total", "Requests answered from the cache, at no cost.", nil, nil),
		limit:     prometheus.NewDesc("lionactor_spend_cap_usd", "The spend cap (--max-cost), in US dollars.", nil, nil),
		committed: prometheus.NewDesc("lionactor_spend_committed_usd", "The estimated cost of the requests admitted and not ended, in US dollars.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *costMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cost
	ch <- c.hits
	if c.r.spendCap != nil {
		ch <- c.limit
		ch <- c.committed
	}
}

// Collect implements prometheus.Collector.
func (c *costMetrics) Collect(ch chan<- prometheus.Metric) {
	byModel := c.r.sum.CostByModel()
	for _, model := range slices.Sorted(maps.Keys(byModel)) {
		ch <- prometheus.MustNewConstMetric(c.cost, prometheus.CounterValue, byModel[model], model)
	}
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(c.r.sum.Snapshot().Cached))
	if sc := c.r.spendCap; sc != nil {
		st := sc.Stats()
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, st.Limit)
		ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, st.Committed)
	}
}

// costOptions are the models' options for the run's prices and cache.
func (c Config) costOptions() []imodel.Option {
	var opts []imodel.Option
	if c.Prices != nil {
		opts = append(opts, imodel.WithPrices(c.Prices))
	}
	if c.Cache != nil {
		opts = append(opts, imodel.WithCache(c.Cache, c.CacheMode))
	}
	return opts
}

// prices is the run's price table.
func (c Config) prices() *imodel.Prices {
	if c.Prices != nil {
		return c.Prices
	}
	return imodel.DefaultPrices()
}

// costReport is what the run report says of cost: what the priced requests
// cost and at what rate, those of unknown price, and the cache's answers.
func (t reportTotals) costReport(wall time.Duration) (tiles []tile, table []fact) {
	if t.priced > 0 {
		rate := 0.0
		if wall > 0 {
			rate = t.costActual / wall.Minutes()
		}
		tiles = append(tiles, tile{Label: "spent", Value: usd(t.costActual), Note: usd(rate) + " a minute"})
		table = append(table, fact{Name: "cost", Value: fmt.Sprintf("%s, %s a minute", usd(t.costActual), usd(rate)),
			Note: fmt.Sprintf("by the usage %s requests reported; estimated at most %s before their calls", count(int64(t.priced)), usd(t.costEstimated))})
	}
	if t.unpriced > 0 {
		table = append(table, fact{Name: "price unknown", Value: plural(t.unpriced, "request", "requests"), Note: "not counted in the cost: give their prices with --prices"})
	}
	if t.cached > 0 {
		table = append(table, fact{Name: "answered from the cache", Value: plural(t.cached, "request", "requests"), Note: "no call, no cost; counted as completed, not in the latency"})
	}
	return tiles, table
}

// costed adds what a request that ended with ev cost to the report's
// totals.
func (t *reportTotals) costed(ev messages.Event) {
	switch {
	case ev.Status == messages.StatusCancelled:
	case ev.Cached():
		t.cached++
	case ev.Cost().Priced:
		t.priced++
		t.costActual += ev.Cost().Actual
		t.costEstimated += ev.Cost().Estimated
	default:
		t.unpriced++
	}
}
