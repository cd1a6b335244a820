package batch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/lionotel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Config configures a batch run.
type Config struct {
	// Endpoint is the model endpoint; its API key must already be set.
	Endpoint imodel.EndpointConfig
	// RPM and TPM are the provider's limits per minute; TPM 0 means none.
	RPM, TPM int
	// Burst is how many requests may start at once; 0 means 1, which
	// starts requests 60/RPM seconds apart from the first, so that no
	// window of one second sees more than ⌈RPM/60⌉ + 1 of them, as a
	// provider enforcing its per-minute limit per second requires.
	Burst       int
	Concurrency int
	// MaxAttempts is every request's attempts, the first included: the
	// run gives it to the model as Endpoint.MaxAttempts.
	MaxAttempts int
	// Timeout bounds each attempt; 0 means none.
	Timeout time.Duration
	// Queue bounds the requests read ahead of the callers.
	Queue int
	// MaxLineBytes is the longest input line read, its newline left out;
	// 0 means DefaultMaxLineBytes. A longer line is never held whole: it
	// fails (kind "line_too_long") and the rest of the input runs.
	MaxLineBytes int
	// Ordered writes results in input order instead of completion order.
	Ordered bool

	// RetryFailed reruns the requests whose last result is FAILED with an
	// error of one of RetryKinds (as result lines name them: "auth",
	// "rate_limited", "server", ...), or of any kind when RetryKinds is
	// empty. The new result is appended; the last line of a request is its
	// result.
	RetryFailed bool
	RetryKinds  []string
	// RerunChanged reruns the requests whose id has a result for other
	// content than the line holds now. Otherwise they are skipped, and the
	// summary names them.
	RerunChanged bool
	// Grace is how long an interrupted run lets in-flight calls finish.
	Grace time.Duration
	// MetricsAddr, if set, serves Prometheus metrics there while running.
	MetricsAddr string
	// Logger receives debug logs; nil means quiet.
	Logger *slog.Logger
	// Report, if set, receives the run's HTML report (see Recorder) when
	// Run returns, whether the run finished or was interrupted.
	Report io.Writer

	// client, if set, replaces the model's own HTTP client (tests: an
	// in-memory transport under fake time).
	client *http.Client

	// Budget, if set, is where a shared budget is: the host:port of a
	// budget service (lionactor budget serve), or the URL of a Redis server
	// (see budget.MemberConfig.Address). The run then takes its rate
	// permits from the budget it shares with every process using the same
	// API key at the same endpoint, instead of keeping to RPM and TPM on
	// its own.
	Budget string
	// BudgetMembers is how many processes share the budget. While the
	// service cannot be reached, the run keeps to RPM and TPM divided by
	// it. At least 1 when Budget is set.
	BudgetMembers int
	// BudgetListen is where the run listens for the budget service's
	// answers; "" means a free port on the loopback interface, which only a
	// service on the same host can reach.
	BudgetListen string
	// BudgetTLS, if set, makes the run talk to the budget service over
	// mutual TLS; BudgetSecret, if set, is the secret it shares with the
	// service. See budget.MemberConfig.
	BudgetTLS    budget.TLSFiles
	BudgetSecret budget.Secret

	// Tracer, if set, traces every request of the run, each a child of the
	// span in the context given to Run.
	Tracer *lionotel.Tracer

	// BatchAPI, if set, runs the requests through the provider's batch API
	// instead of online (see viaapi.go): its MaxAttempts, Grace and Logger
	// are the run's; requests its batches do not answer go online through
	// the limits above with FallbackOnline.
	BatchAPI *batchapi.Config
	// Prices prices the requests; nil means imodel.DefaultPrices.
	Prices *imodel.Prices
	// MaxCost, if above 0, is the spend cap in US dollars of the results
	// file: what its earlier lines cost (Input.Prior) counts against it.
	// The run admits a request only while what was spent, with the
	// estimated cost of the requests in flight and of this one, stays
	// within it; once one does not fit and nothing in flight could make
	// room, it stops admitting, lets what it admitted finish, and returns
	// ErrSpendCap. Requests of unknown price fail (kind "price_unknown").
	MaxCost float64
	// Cache, if set, answers the requests whose reply it holds (by
	// CacheMode) without a call, and stores the reply of every request
	// sent (imodel.WithCache).
	Cache     imodel.Cache
	CacheMode imodel.CacheMode
	// Deployments, if set, run the file over several deployments through a
	// router (see router.go): each line's "model" names the group of
	// deployments that serves it, each deployment at its own limits, with
	// load balancing, breakers and fallback. Endpoint, RPM and TPM are then
	// unused; Burst and Concurrency are the deployments' defaults.
	Deployments []Deployment
	// Fallbacks lists, for a model, the models whose deployments take its
	// lines, in order, once all of its own have failed them.
	Fallbacks map[string][]string
}

// burst is the request bucket's capacity: Burst, or 1.
func (c Config) burst() int { return max(c.Burst, 1) }

// maxLineBytes is the longest input line read: MaxLineBytes, or
// DefaultMaxLineBytes.
func (c Config) maxLineBytes() int {
	if c.MaxLineBytes == 0 {
		return DefaultMaxLineBytes
	}
	return c.MaxLineBytes
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Validate reports the first invalid setting as a *messages.ConfigError
// naming its field ("RPM", "BudgetTLS.Cert", ...).
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &messages.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.RPM <= 0 && !c.routed():
		return bad("RPM", "must be positive")
	case c.TPM < 0:
		return bad("TPM", "must not be negative")
	case c.Burst < 0:
		return bad("Burst", "must not be negative")
	case c.Concurrency <= 0:
		return bad("Concurrency", "must be positive")
	case c.MaxAttempts <= 0:
		return bad("MaxAttempts", "must be positive")
	case c.Timeout < 0:
		return bad("Timeout", "must not be negative")
	case c.Queue <= 0:
		return bad("Queue", "must be positive")
	case c.MaxLineBytes < 0:
		return bad("MaxLineBytes", "must be positive")
	case c.Grace < 0:
		return bad("Grace", "must not be negative")
	case c.BudgetMembers < 0:
		return bad("BudgetMembers", "must be at least 1")
	case !(c.MaxCost >= 0) || math.IsInf(c.MaxCost, 1):
		return bad("MaxCost", "must be an amount of US dollars (0: no cap)")
	case len(c.RetryKinds) > 0 && !c.RetryFailed:
		return bad("RetryKinds", "error kinds given without RetryFailed")
	case slices.Contains(c.RetryKinds, ""):
		return bad("RetryKinds", "an empty error kind")
	case len(c.Fallbacks) > 0 && !c.routed():
		return bad("Fallbacks", "fallbacks need Deployments")
	}
	if err := c.validateDeployments(); err != nil {
		return err
	}
	if err := c.validateBatchAPI(); err != nil {
		return err
	}
	if c.Budget == "" {
		return nil
	}
	if err := budget.CheckAddress(c.Budget, false); err != nil {
		return bad("Budget", err.Error())
	}
	if c.BudgetMembers < 1 {
		return bad("BudgetMembers", "must be at least 1")
	}
	if c.BudgetListen != "" {
		if err := budget.CheckAddress(c.BudgetListen, true); err != nil {
			return bad("BudgetListen", err.Error())
		}
	}
	if n := len(c.BudgetSecret); n > 0 && n < budget.MinSecretLen {
		return bad("BudgetSecret", fmt.Sprintf("the secret must be at least %d bytes, got %d", budget.MinSecretLen, n))
	}
	if c.BudgetTLS.Enabled() {
		if _, err := c.BudgetTLS.RemoteOptions(); err != nil {
			var ce *messages.ConfigError
			if errors.As(err, &ce) {
				return bad("BudgetTLS."+ce.Field, ce.Reason)
			}
			return err
		}
	}
	return c.checkMember()
}

// budgetKey names the run's shared budget: the endpoint's limit scope (a
// run naming the provider's default base URL and one relying on it share
// it) and a hash of the API key, never the key itself.
func (c Config) budgetKey() string {
	return budget.KeyFor(c.Endpoint.LimitScope(), c.Endpoint.APIKey)
}

// executorConfig turns the limits into the executor's: the request bucket
// refills at RPM per minute from a burst of Burst (1 by default: an even
// pace), the token bucket holds a full minute, as the providers' do, so any
// request the provider accepts fits.
func (c Config) executorConfig(observer func(messages.Event)) runtime.Config {
	rc := runtime.DefaultConfig()
	rc.RequestsPerInterval, rc.RequestInterval = c.RPM, time.Minute
	rc.RequestBurst = c.burst()
	if c.TPM > 0 {
		rc.TokensPerInterval, rc.TokenInterval = c.TPM, time.Minute
	}
	rc.Concurrency = c.Concurrency
	// The runner's own window bounds what is in the queue: the queue holds
	// room for the whole window, so that it never refuses a request (a
	// request that just ended frees its window slot before its caller has
	// taken the next one from the queue).
	rc.QueueCapacity = c.Queue + c.Concurrency
	rc.CallTimeout = c.Timeout
	rc.Observer = observer
	rc.Logger = c.Logger
	if c.Tracer != nil {
		c.Tracer.Instrument(&rc)
	}
	if c.Budget != "" {
		rc.SharedBudget = c.memberConfig()
	}
	return rc
}
