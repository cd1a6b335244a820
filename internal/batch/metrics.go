package batch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lionactor/lionactor/messages"
)

// serveMetrics serves Prometheus metrics of the run on MetricsAddr, from a
// registry of its own (never the default one), and returns the function
// that stops the server.
func (r *runner) serveMetrics() (stop func(), err error) {
	if r.cfg.MetricsAddr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lionactor", Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "lionactor", Name: name, Help: help}, f))
	}
	gauge("queue_depth", "Requests waiting in the queue or for a retry.", func() float64 { return float64(r.eng.Queued()) })
	gauge("in_flight", "Requests holding a caller.", func() float64 { return float64(r.eng.InFlight()) })
	counter("completed_total", "Requests completed.", func() float64 { return float64(r.sum.Snapshot().Completed) })
	counter("failed_total", "Requests failed, including invalid input lines.", func() float64 {
		s := r.sum.Snapshot()
		return float64(s.Failed + s.InvalidInput)
	})
	counter("retries_total", "Attempts after a first.", func() float64 { return float64(r.sum.Snapshot().Retries) })
	counter("tokens_estimated_total", "API tokens estimated for ended requests.", func() float64 { return float64(r.sum.Snapshot().TokensEstimated) })
	counter("tokens_actual_total", "API tokens the provider reported.", func() float64 { return float64(r.sum.Snapshot().TokensActual) })
	counter("rate_limited_total", "429 responses.", func() float64 { return float64(r.eng.RateLimited()) })
	if r.cfg.routed() {
		r.deploymentMetrics(reg)
	} else if r.cfg.Budget != "" {
		ex := r.eng.(*single).ex
		shared := func(f func(messages.SharedStats) int64) func() float64 {
			return func() float64 { return float64(f(ex.Stats().Shared)) }
		}
		gauge("budget_joined", "1 while the shared budget's service grants the leases, 0 while the run keeps to its local share.",
			shared(func(s messages.SharedStats) int64 {
				if s.Mode == messages.SharedJoined {
					return 1
				}
				return 0
			}))
		gauge("budget_held_requests", "Requests in unexpired leases, not yet spent.", shared(func(s messages.SharedStats) int64 { return s.HeldRequests }))
		gauge("budget_held_tokens", "API tokens in unexpired leases, not yet spent.", shared(func(s messages.SharedStats) int64 { return s.HeldTokens }))
		counter("budget_leases_total", "Leases received.", shared(func(s messages.SharedStats) int64 { return s.Leases }))
		counter("budget_leased_requests_total", "Requests in the leases received.", shared(func(s messages.SharedStats) int64 { return s.LeasedRequests }))
		counter("budget_returned_leases_total", "Leases given back with something unspent.", shared(func(s messages.SharedStats) int64 { return s.Returned }))
		counter("budget_returned_requests_total", "Requests given back unspent.", shared(func(s messages.SharedStats) int64 { return s.ReturnedRequests }))
		counter("budget_fallbacks_total", "Times the run fell back to its local share.", shared(func(s messages.SharedStats) int64 { return s.Fallbacks }))
		counter("budget_rejoins_total", "Times the run rejoined the service.", shared(func(s messages.SharedStats) int64 { return s.Rejoins }))
	}
	reg.MustRegister(newCostMetrics(r))
	r.sum.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "lionactor", Name: "call_duration_seconds", Help: "Duration of completed calls.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
	reg.MustRegister(r.sum.latency)

	ln, err := net.Listen("tcp", r.cfg.MetricsAddr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.cfg.logger().Error("batch: metrics server", "error", err)
		}
	}()
	r.metricsAddr = ln.Addr().String()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
