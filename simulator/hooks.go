package simulator

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Request headers that tests send to steer one request. They override the
// random choices of the Config so that a test can produce a given outcome
// without depending on a seed.
const (
	// HeaderFault forces a fault on the request. Its values are "500",
	// "503", "529" (server error, unavailable, overloaded), "429" (an
	// injected rate limit), "reset", "malformed", "truncate", "slow", and
	// "quota" (the answer an account out of credit gets).
	HeaderFault = "X-Sim-Fault"

	// HeaderFaultTimes limits HeaderFault to the first N requests that
	// carry the same HeaderRequestID, so that later attempts succeed: a
	// test can show that a client's retry gets through. Without a request
	// ID every request carrying HeaderFault meets the fault.
	HeaderFaultTimes = "X-Sim-Fault-Times"

	// HeaderRequestID names the logical request that a client's attempts
	// belong to, for HeaderFaultTimes; a client sends the same value on
	// every retry of one request.
	HeaderRequestID = "X-Sim-Request-Id"

	// HeaderLatency sets the request's latency, as a Go duration such as
	// "20ms", in place of Config.Latency and its jitter.
	HeaderLatency = "X-Sim-Latency"

	// HeaderShouldRetry, "true" or "false", makes an error response to the
	// request carry the providers' x-should-retry header with that value,
	// by which a provider overrides a client's rule for what to retry.
	HeaderShouldRetry = "X-Sim-Should-Retry"
)

// fault is a kind of failure a request can meet.
type fault int

const (
	faultNone fault = iota
	faultServerError
	faultUnavailable
	faultOverloaded
	faultReset
	faultMalformed
	faultTruncate
	faultSlow
	faultRateLimit
	faultQuota
)

// faultNames maps the values of HeaderFault to faults.
var faultNames = map[string]fault{
	"500":       faultServerError,
	"503":       faultUnavailable,
	"529":       faultOverloaded,
	"reset":     faultReset,
	"malformed": faultMalformed,
	"truncate":  faultTruncate,
	"slow":      faultSlow,
	"429":       faultRateLimit,
	"quota":     faultQuota,
}

// hooks are the test headers of one request.
type hooks struct {
	fault      fault
	times      int // 0: every request
	requestID  string
	latency    time.Duration
	hasLatency bool
	// shouldRetry is the x-should-retry value of an error response, or "".
	shouldRetry string
}

// parseHooks reads the test headers of h; an error names the header.
func parseHooks(h http.Header) (hooks, error) {
	var k hooks
	if v := h.Get(HeaderFault); v != "" {
		f, ok := faultNames[v]
		if !ok {
			return k, fmt.Errorf("simulator: unknown %s value %q", HeaderFault, v)
		}
		k.fault = f
	}
	if v := h.Get(HeaderFaultTimes); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return k, fmt.Errorf("simulator: %s must be a positive integer, not %q", HeaderFaultTimes, v)
		}
		k.times = n
	}
	k.requestID = h.Get(HeaderRequestID)
	if v := h.Get(HeaderLatency); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return k, fmt.Errorf("simulator: %s must be a non-negative Go duration, not %q", HeaderLatency, v)
		}
		k.latency, k.hasLatency = d, true
	}
	switch v := h.Get(HeaderShouldRetry); v {
	case "", "true", "false":
		k.shouldRetry = v
	default:
		return k, fmt.Errorf("simulator: %s must be true or false, not %q", HeaderShouldRetry, v)
	}
	return k, nil
}
