package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// The workloads, by the names that Options.Only takes.
const (
	WorkloadPipeline = "pipeline"
	WorkloadHTTP     = "http"
	WorkloadLatency  = "latency"
	WorkloadRate     = "rate"
	WorkloadMemory   = "memory"
)

// Workloads lists every workload in the order they run.
var Workloads = []string{WorkloadPipeline, WorkloadHTTP, WorkloadLatency, WorkloadRate, WorkloadMemory}

// Fixed settings of the workloads.
const (
	// Concurrency is the cap on calls in flight for the pipeline, HTTP and
	// memory workloads, for the executor and its baselines alike.
	Concurrency = 64
	// LatencyConcurrency is the executor's callers in the latency workload:
	// far more than the open-loop load keeps busy, so that it never queues.
	LatencyConcurrency = 256
	// DefaultLatencyRate is the open-loop rate of the latency workload.
	DefaultLatencyRate = 2000
	// SimulatedLatency is the simulator's fixed latency in that workload.
	SimulatedLatency = 20 * time.Millisecond

	// RateLimit is the request limit of the rate workload, per second.
	RateLimit = 100
	// RateExecutorBurst is the executor's request burst there, and (times
	// the mean request cost) its token burst.
	RateExecutorBurst = 10
	// RateSimulatorBurst is the simulator's request burst, and (times the
	// mean cost) its token burst: larger than the executor's so that the
	// loopback and scheduling jitter between a permit and the request's
	// arrival is absorbed. The difference, 20 requests, is 200 ms at the
	// limit.
	RateSimulatorBurst = 30

	// submitBatch is how many handles a submitter holds before it waits
	// for them all.
	submitBatch = 256
)

// Options selects the sizes of a run.
type Options struct {
	// Quick runs the reduced sizes, under a minute in all.
	Quick bool
	// Scale multiplies every request count and duration; 0 means 1.
	Scale float64
	// Reps is the number of runs of each subject, whose median is
	// reported; 0 means 5, or 3 when Quick.
	Reps int
	// LatencyRate is the latency workload's rate in requests per second;
	// 0 means DefaultLatencyRate.
	LatencyRate int
	// Only, when non-empty, names the workloads to run.
	Only []string
	// Progress, when set, receives a line as each workload starts and ends.
	Progress io.Writer
}

// Sizes are the resolved sizes of a run.
type Sizes struct {
	Quick           bool    `json:"quick"`
	Scale           float64 `json:"scale"`
	Reps            int     `json:"reps"`
	PipelineCalls   int     `json:"pipeline_calls"`
	HTTPRequests    int     `json:"http_requests"`
	LatencyRate     int     `json:"latency_rate"`
	LatencySeconds  float64 `json:"latency_seconds"`
	RateSeconds     float64 `json:"rate_seconds"`
	MemoryRequests  int     `json:"memory_requests"`
	Concurrency     int     `json:"concurrency"`
	LatencyCallers  int     `json:"latency_callers"`
	SimulatedDelayS float64 `json:"simulated_latency_seconds"`
}

// Validate reports an option out of range.
func (o Options) Validate() error {
	switch {
	case o.Scale < 0 || math.IsNaN(o.Scale) || math.IsInf(o.Scale, 0):
		return fmt.Errorf("scale must be positive, got %v", o.Scale)
	case o.Reps < 0:
		return fmt.Errorf("reps must not be negative, got %d", o.Reps)
	case o.LatencyRate < 0:
		return fmt.Errorf("rate must not be negative, got %d", o.LatencyRate)
	}
	for _, w := range o.Only {
		if !slices.Contains(Workloads, w) {
			return fmt.Errorf("unknown workload %q (want one of %s)", w, strings.Join(Workloads, ", "))
		}
	}
	return nil
}

// Sizes resolves the options into the sizes of each workload.
func (o Options) Sizes() Sizes {
	scale := o.Scale
	if scale == 0 {
		scale = 1
	}
	s := Sizes{
		Quick: o.Quick, Scale: scale, Reps: o.Reps, LatencyRate: o.LatencyRate,
		PipelineCalls: 200_000, HTTPRequests: 20_000, LatencySeconds: 10, RateSeconds: 30, MemoryRequests: 100_000,
		Concurrency: Concurrency, LatencyCallers: LatencyConcurrency, SimulatedDelayS: SimulatedLatency.Seconds(),
	}
	if o.Quick {
		s.PipelineCalls, s.HTTPRequests, s.LatencySeconds, s.RateSeconds, s.MemoryRequests = 50_000, 5_000, 2, 10, 20_000
	}
	if s.Reps == 0 {
		s.Reps = 5
		if o.Quick {
			s.Reps = 3
		}
	}
	if s.LatencyRate == 0 {
		s.LatencyRate = DefaultLatencyRate
	}
	count := func(n, least int) int { return max(least, int(math.Round(float64(n)*scale))) }
	s.PipelineCalls = count(s.PipelineCalls, 1)
	s.HTTPRequests = count(s.HTTPRequests, 1)
	s.MemoryRequests = count(s.MemoryRequests, 2*Concurrency)
	s.LatencySeconds = max(s.LatencySeconds*scale, 0.01)
	s.RateSeconds = max(s.RateSeconds*scale, 0.05)
	return s
}

func (s Sizes) latencyDuration() time.Duration { return seconds(s.LatencySeconds) }
func (s Sizes) rateDuration() time.Duration    { return seconds(s.RateSeconds) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// runs reports whether workload w is selected.
func (o Options) runs(w string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, w) }
