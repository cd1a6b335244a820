package batchapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
)

// Config configures a run. The zero Config is valid: batches within the
// provider's limits, polled every 30 s, no journal.
type Config struct {
	// Journal is the file in which the run records the batches it creates,
	// as it creates them, so that a run interrupted or crashed is resumed:
	// a later Run with the same Journal polls the batches recorded there
	// that have not settled instead of creating (and paying for) them
	// again. "" records nothing: the batches of an interrupted run are
	// then out of a later run's reach.
	Journal string

	// Poll is how often each batch is asked how it stands; 0 means 30 s.
	Poll time.Duration

	// CompletionWindow is the time a batch has to end, which both
	// providers fix at 24 hours; 0 means that.
	CompletionWindow time.Duration

	// MaxRequests and MaxBytes bound one batch; 0 means the provider's
	// limits (OpenAI: 50,000 requests and 200 MB; Anthropic: 100,000
	// requests and 256 MB), and larger values are refused.
	MaxRequests, MaxBytes int

	// EnqueuedTokens is the most estimated tokens of one model that the
	// run keeps in batches not yet ended, the provider's enqueued-token
	// limit (OpenAI's batch queue limit, by tier); 0 means no limit. A
	// batch waits for earlier ones to end until it fits, and a request
	// estimated at more than this fails with kind "too_many_tokens".
	EnqueuedTokens int

	// MaxAttempts bounds the batches a request goes through: a request
	// whose batch ended without its answer (the window expired, the batch
	// failed, or the answer is an error a call would retry) goes into a
	// new batch until it has been in this many; 0 means 3.
	MaxAttempts int

	// FallbackOnline sends such requests online instead, through the
	// model's executor and its limits, at most OnlineWindow at a time.
	FallbackOnline bool
	// OnlineWindow bounds the requests submitted online at once; 0 means
	// 256.
	OnlineWindow int

	// CancelRemote cancels, when the run is interrupted, the batches it
	// leaves running at the provider. Otherwise they go on (and are paid
	// for), and a later run with the same Journal collects their answers.
	CancelRemote bool
	// OnInterrupt, if set and CancelRemote is not, is asked when the run
	// is interrupted with batches running whether to cancel them (an
	// interactive program's prompt). It runs on the goroutine that called
	// Run.
	OnInterrupt func(running int) (cancel bool)

	// Grace bounds how long an interrupted run waits for what is in
	// flight: a batch being created, the cancels, requests sent online.
	// 0 means 30 s.
	Grace time.Duration

	// Durable, if set, reports whether the outcomes of the requests with
	// the given keys, delivered earlier, are kept where a crash leaves
	// them (written, and synced to disk). A batch is recorded settled in
	// the journal only once the outcomes it delivered are durable: until
	// then a run that resumes the journal polls it again and delivers them
	// again. Nil means that they are durable once delivered. It is called
	// on the goroutine that called Run; an error, Run returns when the run
	// has ended, and nothing is recorded settled after it.
	Durable func(keys []string) (bool, error)

	// Progress, if set, is told the run's Stats whenever they change (a
	// batch created, resumed, ended, ...), on the goroutine that called
	// Run.
	Progress func(Stats)

	// HTTPClient makes the requests to the batch API; nil means a client
	// of the run's own.
	HTTPClient *http.Client
	// Logger receives the run's notices (a poll that failed, a batch
	// found again); nil means quiet.
	Logger *slog.Logger
}

// Limits are the provider's bounds on one batch: (50,000 requests, 200 MB)
// for OpenAI, (100,000 requests, 256 MB) for Anthropic, and (0, 0) for a
// provider without a batch API here.
func Limits(p imodel.Provider) (requests, bytes int) {
	switch p {
	case imodel.OpenAI:
		return wire.OpenAIBatchMaxRequests, wire.OpenAIBatchMaxBytes
	case imodel.Anthropic:
		return wire.AnthropicBatchMaxRequests, wire.AnthropicBatchMaxBytes
	}
	return 0, 0
}

// Defaults of Config.
const (
	DefaultPoll         = 30 * time.Second
	DefaultMaxAttempts  = 3
	DefaultOnlineWindow = 256
	DefaultGrace        = 30 * time.Second
	// CompletionWindow24h is the only completion window the providers
	// offer.
	CompletionWindow24h = 24 * time.Hour
)

// Validate reports the first invalid setting as a *messages.ConfigError
// naming its field.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &messages.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.Poll < 0:
		return bad("Poll", "must not be negative")
	case c.CompletionWindow != 0 && c.CompletionWindow != CompletionWindow24h:
		return bad("CompletionWindow", fmt.Sprintf("the providers offer a 24h window only, not %v", c.CompletionWindow))
	case c.MaxRequests < 0:
		return bad("MaxRequests", "must not be negative")
	case c.MaxBytes < 0:
		return bad("MaxBytes", "must not be negative")
	case c.EnqueuedTokens < 0:
		return bad("EnqueuedTokens", "must not be negative")
	case c.MaxAttempts < 0:
		return bad("MaxAttempts", "must not be negative")
	case c.OnlineWindow < 0:
		return bad("OnlineWindow", "must not be negative")
	case c.Grace < 0:
		return bad("Grace", "must not be negative")
	}
	return nil
}

// ValidateFor reports, as Validate does, an invalid setting for a model of
// provider p, whose limits bound MaxRequests and MaxBytes.
func (c Config) ValidateFor(p imodel.Provider) error {
	if err := c.Validate(); err != nil {
		return err
	}
	maxRequests, maxBytes := Limits(p)
	switch {
	case maxRequests == 0:
		return &UnsupportedProviderError{Provider: p}
	case c.MaxRequests > maxRequests:
		return &messages.ConfigError{Field: "MaxRequests", Reason: fmt.Sprintf("%s takes at most %d requests in a batch", p, maxRequests)}
	case c.MaxBytes > maxBytes:
		return &messages.ConfigError{Field: "MaxBytes", Reason: fmt.Sprintf("%s takes at most %d bytes in a batch", p, maxBytes)}
	}
	return nil
}

// withDefaults returns c, valid for provider p, with its zero settings
// given their defaults.
func (c Config) withDefaults(p imodel.Provider) (Config, error) {
	if err := c.ValidateFor(p); err != nil {
		return c, err
	}
	maxRequests, maxBytes := Limits(p)
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxRequests, maxRequests)
	def(&c.MaxBytes, maxBytes)
	def(&c.MaxAttempts, DefaultMaxAttempts)
	def(&c.OnlineWindow, DefaultOnlineWindow)
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// ErrUnsupportedProvider is wrapped by [UnsupportedProviderError].
var ErrUnsupportedProvider = errors.New("batchapi: provider has no batch API here")

// UnsupportedProviderError reports a model whose provider has no batch API
// that lionactor speaks: only OpenAI and Anthropic do.
type UnsupportedProviderError struct{ Provider imodel.Provider }

// Error names the provider.
func (e *UnsupportedProviderError) Error() string {
	return fmt.Sprintf("batchapi: provider %q has no batch API here; use openai or anthropic", e.Provider)
}

// Unwrap returns [ErrUnsupportedProvider].
func (e *UnsupportedProviderError) Unwrap() error { return ErrUnsupportedProvider }

// ErrForeignBatches is wrapped by [ForeignBatchesError].
var ErrForeignBatches = errors.New("batchapi: the journal holds batches of another endpoint")

// ForeignBatchesError reports a journal whose unsettled batches were made
// at another provider or base URL than the model's: this run could not
// reach them, and would create their requests again.
type ForeignBatchesError struct {
	Journal           string
	Provider, BaseURL string // where the batches are
	Batches           int
}

// Error says where the batches are and what to do.
func (e *ForeignBatchesError) Error() string {
	return fmt.Sprintf("batchapi: %s: %d unsettled batches were made at %s (%s), not at this model's endpoint; run them with that endpoint, or remove the journal to abandon them",
		e.Journal, e.Batches, e.BaseURL, e.Provider)
}

// Unwrap returns [ErrForeignBatches].
func (e *ForeignBatchesError) Unwrap() error { return ErrForeignBatches }
