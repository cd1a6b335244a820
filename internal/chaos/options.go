// Package chaos drives many model requests through an executor and the
// imodel client against the provider simulator with every fault on at once,
// panics callers at random, and checks the runtime's invariants from both
// sides: every submitted request ends exactly once with gap-free snapshots,
// requests whose faults are retryable within their attempts complete, and
// the simulator never sees more concurrency or more requests per window
// than the executor's limits allow.
//
// Run is deterministic in what it plans (the kind of each request, its
// forced faults, its panics) for a given seed; the simulator's random
// faults follow the order in which attempts arrive, which scheduling
// decides. A Report records the seed, so that a failing run can be replayed
// with the same plan.
package chaos

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// Faults sets the probability, per attempt, of each fault the simulator
// injects at random. The rates must sum to at most 1.
type Faults struct {
	RateLimit   float64 // 429 with retry-after headers
	ServerError float64 // 500
	Unavailable float64 // 503
	Overloaded  float64 // 529
	Reset       float64 // the connection closed without a response
	Slow        float64 // the response held past the attempt's timeout
	Malformed   float64 // a 200 whose body, or first stream event, is not JSON
	Truncate    float64 // the body or stream cut mid-way
}

// DefaultFaults turns every fault on, about one attempt in four failing.
// Rate limits are rare because each 429 from the Anthropic endpoint pauses
// the whole executor for its one-second retry-after.
func DefaultFaults() Faults {
	return Faults{
		RateLimit:   0.005,
		ServerError: 0.04,
		Unavailable: 0.03,
		Overloaded:  0.03,
		Reset:       0.03,
		Slow:        0.005,
		Malformed:   0.02,
		Truncate:    0.03,
	}
}

func (f Faults) rates() []float64 {
	return []float64{f.RateLimit, f.ServerError, f.Unavailable, f.Overloaded, f.Reset, f.Slow, f.Malformed, f.Truncate}
}

// Mix weighs the kinds of request a run sends; only the ratios matter.
type Mix struct {
	OpenAIChat      float64
	AnthropicChat   float64
	Embeddings      float64
	OpenAIStream    float64
	AnthropicStream float64
}

// DefaultMix sends every kind: 30% OpenAI chat, 25% Anthropic chat, 20%
// embeddings, 15% OpenAI streams and 10% Anthropic streams.
func DefaultMix() Mix {
	return Mix{OpenAIChat: 30, AnthropicChat: 25, Embeddings: 20, OpenAIStream: 15, AnthropicStream: 10}
}

func (m Mix) weights() []float64 {
	return []float64{m.OpenAIChat, m.AnthropicChat, m.Embeddings, m.OpenAIStream, m.AnthropicStream}
}

// StopMode says whether, and how, a run stops its executor in the middle.
type StopMode int

// The stop modes.
const (
	// NoStop lets every request run to its end; the executor is stopped
	// gracefully afterwards.
	NoStop StopMode = iota
	// Graceful calls Executor.Stop once StopAfter requests were submitted.
	Graceful
	// Immediate calls Executor.StopNow once StopAfter requests were
	// submitted.
	Immediate
)

func (m StopMode) String() string {
	switch m {
	case NoStop:
		return "none"
	case Graceful:
		return "graceful"
	case Immediate:
		return "immediate"
	}
	return fmt.Sprintf("StopMode(%d)", int(m))
}

// Options configure a Run. The zero value of a field means its default.
type Options struct {
	// Seed fixes the plan of the run; 0 picks one from the clock. The
	// Report records the seed used.
	Seed int64
	// Requests is the number of requests to drive; default 2000.
	Requests int
	// Faults are the simulator's random faults; the zero value means
	// DefaultFaults. Set NoFaults to run without any.
	Faults   Faults
	NoFaults bool
	// PanicRate is the probability that an attempt of a chat or embeddings
	// request panics inside its caller (streams never do); 0 means none.
	PanicRate float64
	// ForcedRate is the share of requests (outside any panic) that carry a
	// forced fault through the simulator's test headers, a given number of
	// times, so that their outcome is known in advance; 0 means none.
	ForcedRate float64
	// Mix weighs the kinds of request; the zero value means DefaultMix.
	Mix Mix

	// Concurrency is the executor's callers; default 16.
	Concurrency int
	// RequestsPerSecond and RequestBurst are the executor's request limit;
	// defaults 200 and 10.
	RequestsPerSecond int
	RequestBurst      int
	// MaxAttempts is the attempts per request; default 4.
	MaxAttempts int
	// Timeout bounds each attempt; default 1 s.
	Timeout time.Duration
	// MaxRestarts caller restarts are allowed within RestartWindow;
	// defaults 100000 and 10 s (a storm only when asked for).
	MaxRestarts   int
	RestartWindow time.Duration

	// Window is how many requests the driver keeps live at once; default
	// 8 × Concurrency.
	Window int
	// Latency is the simulator's latency, jittered by half of it; default
	// 2 ms.
	Latency time.Duration
	// StreamLatency is the latency of every stream attempt (the header
	// X-Sim-Latency), so that streams are open when a stop comes; default
	// 150 ms.
	StreamLatency time.Duration
	// ArrivalSkew is the jitter allowed between the executor granting a
	// permit and the simulator seeing the request, when arrivals are
	// checked against the request limit; default 200 ms.
	ArrivalSkew time.Duration

	// Stop and StopAfter stop the executor in the middle of the run, once
	// StopAfter requests were submitted (default half of Requests).
	Stop      StopMode
	StopAfter int
	// StopTimeout bounds a stop; default 60 s.
	StopTimeout time.Duration

	// Observer, if set, also receives every snapshot, as the executor's
	// Observer does.
	Observer func(messages.Event)
	// Logger receives the executor's, the models' and the simulator-side
	// logs of the run; nil means quiet.
	Logger *slog.Logger
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano()
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&o.Requests, 2000)
	setInt(&o.Concurrency, 16)
	setInt(&o.RequestsPerSecond, 200)
	setInt(&o.RequestBurst, 10)
	setInt(&o.MaxAttempts, 4)
	setInt(&o.MaxRestarts, 100000)
	setInt(&o.Window, 8*o.Concurrency)
	setInt(&o.StopAfter, o.Requests/2)
	setDur(&o.Timeout, time.Second)
	setDur(&o.RestartWindow, 10*time.Second)
	setDur(&o.Latency, 2*time.Millisecond)
	setDur(&o.StreamLatency, 150*time.Millisecond)
	setDur(&o.ArrivalSkew, 200*time.Millisecond)
	setDur(&o.StopTimeout, time.Minute)
	if o.Faults == (Faults{}) && !o.NoFaults {
		o.Faults = DefaultFaults()
	}
	if o.NoFaults {
		o.Faults = Faults{}
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix()
	}
	bad := func(field, reason string) error {
		return &messages.ConfigError{Field: "chaos." + field, Reason: reason}
	}
	probability := func(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 1 }
	sum := 0.0
	for _, r := range o.Faults.rates() {
		if !probability(r) {
			return o, bad("Faults", "rates must be in [0, 1]")
		}
		sum += r
	}
	// Weights that are all zero are the zero Mix, which means DefaultMix.
	for _, w := range o.Mix.weights() {
		if math.IsNaN(w) || w < 0 || math.IsInf(w, 0) {
			return o, bad("Mix", "weights must be finite and not negative")
		}
	}
	switch {
	case sum > 1+1e-9:
		return o, bad("Faults", "rates must sum to at most 1")
	case !probability(o.PanicRate):
		return o, bad("PanicRate", "must be in [0, 1]")
	case !probability(o.ForcedRate):
		return o, bad("ForcedRate", "must be in [0, 1]")
	case o.Requests < 0, o.Concurrency < 0, o.RequestsPerSecond < 0, o.RequestBurst < 0,
		o.MaxAttempts < 0, o.MaxRestarts < 0, o.Window < 0, o.StopAfter < 0:
		return o, bad("Options", "counts must not be negative")
	case o.Timeout < 0, o.RestartWindow < 0, o.Latency < 0, o.StreamLatency < 0, o.ArrivalSkew < 0, o.StopTimeout < 0:
		return o, bad("Options", "durations must not be negative")
	case o.Stop < NoStop || o.Stop > Immediate:
		return o, bad("Stop", "unknown stop mode")
	case o.MaxAttempts > 30:
		return o, bad("MaxAttempts", "at most 30")
	}
	return o, nil
}
