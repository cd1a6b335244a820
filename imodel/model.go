package imodel

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// ErrClosed is returned by calls on a closed Model.
var ErrClosed = errors.New("imodel: model closed")

// Executor runs a model's requests within its limits. *runtime.Executor
// implements it; a router over several executors, a test double, or an
// executor shared by several models slots in, as a RoundTripper does under
// an http.Client: the model decides what to send (policy), the executor
// when and how (mechanism).
type Executor interface {
	// Submit accepts r, or refuses it with an error, and returns its
	// handle; the request's snapshots and outcome come through the handle.
	Submit(ctx context.Context, r messages.Request) (*runtime.Handle, error)
	// PauseUntil grants no new permit before t. A model calls it when a
	// provider's rate-limit headers say its budget is nearly spent.
	PauseUntil(t time.Time)
}

// Model is one model endpoint bound to an executor. Its methods are safe for
// concurrent use. Close it when done to release its connections.
type Model struct {
	ex        Executor
	cfg       *resolved
	client    *http.Client
	ownClient bool
	logger    *slog.Logger
	adaptive  bool
	closed    atomic.Bool
	// tokenBurst, when the executor says it, is the most tokens one
	// request may cost (0: no token limit).
	tokenBurst func() int
	counts     statusCounts
	prices     *Prices
	cache      Cache
	cacheMode  CacheMode
}

// Option configures a Model.
type Option func(*Model)

// WithHTTPClient makes the model use c instead of a client of its own
// (Close then leaves c alone).
func WithHTTPClient(c *http.Client) Option {
	return func(m *Model) { m.client, m.ownClient = c, false }
}

// WithLogger sends the model's debug logs (one line per attempt, never a
// key) to l.
func WithLogger(l *slog.Logger) Option { return func(m *Model) { m.logger = l } }

// WithPrices makes the model price its requests with p instead of
// DefaultPrices: LoadPrices gives the embedded table with a file's
// entries on top. A request to a model p has no price for carries no
// Pricing: its cost is unknown, never $0.
func WithPrices(p *Prices) Option { return func(m *Model) { m.prices = p } }

// WithoutAdaptiveLimits stops the model from pausing the executor when the
// provider's rate-limit headers say the budget is nearly spent. A 429 still
// pauses it.
func WithoutAdaptiveLimits() Option { return func(m *Model) { m.adaptive = false } }

// New returns a Model for cfg whose calls run on ex. It validates cfg (a
// *messages.ConfigError names the field) and reads the API key from the
// environment if cfg does not hold one.
//
// When ex says how many tokens one request may cost at most (an Executor
// with a TokenBurst method, as *runtime.Executor has), the model refuses a
// request whose texts are so long that their length alone proves it costs
// more, without counting its tokens: with the *messages.TokenLimitError
// the executor would give it, whose Tokens is then that lower bound
// (AtLeast). Counting 30 MB of text takes about a second and a gigabyte.
//
// Unless WithHTTPClient gives one, the model makes its own client, whose
// transport (NewTransport) keeps an idle connection for each call ex runs
// at once, when ex says how many: an Executor with a Config method that
// returns a runtime.Config, as *runtime.Executor has, says it by its
// Concurrency. For another Executor that runs many calls at once, give
// &http.Client{Transport: NewTransport(n)}.
func New(ex Executor, cfg EndpointConfig, opts ...Option) (*Model, error) {
	if p, isRuntime := ex.(*runtime.Executor); ex == nil || isRuntime && p == nil {
		return nil, badConfig("executor", "nil executor")
	}
	r, err := cfg.resolve(os.Getenv)
	if err != nil {
		return nil, err
	}
	m := &Model{ex: ex, cfg: r, adaptive: true, ownClient: true}
	if b, ok := ex.(interface{ TokenBurst() int }); ok {
		m.tokenBurst = b.TokenBurst
	}
	for _, o := range opts {
		o(m)
	}
	if m.prices == nil {
		m.prices = DefaultPrices()
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.client == nil {
		t := NewTransport(concurrencyOf(ex))
		if r.InsecureSkipVerify {
			m.logger.Warn("imodel: TLS certificate verification is off", slog.String("model", r.Name), slog.String("base_url", r.BaseURL))
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // an explicit opt-out, logged
		}
		m.client = &http.Client{Transport: t}
		m.ownClient = true
	}
	return m, nil
}

// concurrencyOf is the number of calls ex runs at once, if it says; else 0.
func concurrencyOf(ex Executor) int {
	if c, ok := ex.(interface{ Config() runtime.Config }); ok {
		return c.Config().Concurrency
	}
	return 0
}

// NewTransport returns the transport a Model builds for an executor of the
// given concurrency, for a caller that passes its own client (WithHTTPClient)
// and wants the same settings. It is tuned for many concurrent calls to one
// host: the idle pool holds a connection per caller, so a steady load reuses
// connections instead of dialling; HTTP/2 is used where the server offers it.
func NewTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, concurrency),
		MaxIdleConnsPerHost:   max(2, concurrency),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Name returns the model's name.
func (m *Model) Name() string { return m.cfg.Name }

// Provider returns the model's provider.
func (m *Model) Provider() Provider { return m.cfg.Provider }

// Close releases the model's idle connections. Calls after Close fail with
// ErrClosed; calls already submitted go on.
func (m *Model) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	if m.ownClient {
		m.client.CloseIdleConnections()
	}
	return nil
}

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	fields      map[string]any
	tokens      int
	hasTokens   bool
	metadata    map[string]string
	headers     map[string]string
	timeout     time.Duration
	maxAttempts int
}

// WithField sets a request field, over the payload and the defaults.
func WithField(name string, value any) CallOption {
	return func(o *callOptions) {
		if o.fields == nil {
			o.fields = map[string]any{}
		}
		o.fields[name] = value
	}
}

// WithTokens gives the request's API-token cost instead of the estimate.
func WithTokens(n int) CallOption { return func(o *callOptions) { o.tokens, o.hasTokens = n, true } }

// WithMetadata attaches metadata that every snapshot of the request carries.
func WithMetadata(md map[string]string) CallOption {
	return func(o *callOptions) { o.metadata = maps.Clone(md) }
}

// WithHeader sets a header for this call.
func WithHeader(name, value string) CallOption {
	return func(o *callOptions) {
		if o.headers == nil {
			o.headers = map[string]string{}
		}
		o.headers[name] = value
	}
}

// WithTimeout bounds each attempt of this call.
func WithTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.timeout = d } }

// WithMaxAttempts sets this call's total attempts, over
// EndpointConfig.MaxAttempts.
func WithMaxAttempts(n int) CallOption { return func(o *callOptions) { o.maxAttempts = n } }

// Response is the outcome of Invoke: the request's terminal snapshot and,
// when there was one, the HTTP response.
type Response struct {
	Event      messages.Event
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Decode unmarshals the response body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("imodel: decoding response: %w", err)
	}
	return nil
}

// Invoke sends payload to the model's endpoint and waits for the outcome.
// Fields merge in this order, later winning: the config's Defaults (and
// Model), payload, then WithField options. It returns the response with the
// terminal snapshot, and the request's error if it did not complete
// (an *APIError, messages.ErrTimeout, messages.ErrCancelled, ...). If ctx
// ends first, the request is cancelled.
func (m *Model) Invoke(ctx context.Context, payload map[string]any, opts ...CallOption) (*Response, error) {
	h, err := m.submit(ctx, m.invokeOp(payload), opts)
	if err != nil {
		return nil, err
	}
	ev := awaitEnd(h)
	resp := &Response{Event: ev}
	if r, ok := ev.Response(); ok {
		resp.StatusCode, resp.Header, resp.Body = r.StatusCode, r.Header, r.Body
	}
	return resp, ev.Err()
}

// awaitEnd waits for the request's terminal snapshot. It always comes: the
// submit context's end cancels the request.
func awaitEnd(h *runtime.Handle) messages.Event {
	<-h.Done()
	return h.Latest()
}

// Submit sends payload to the model's endpoint without waiting, and returns
// the request's handle; see Invoke for the merging of fields.
func (m *Model) Submit(ctx context.Context, payload map[string]any, opts ...CallOption) (*runtime.Handle, error) {
	return m.submit(ctx, m.invokeOp(payload), opts)
}

// NewRequest builds the executor request that Submit would submit, for an
// actor that drives the executor by messages (messages.Submit): its Call
// makes the HTTP request with the model's client, credentials and retries,
// and its snapshots carry the same redacted description. A request whose
// size alone proves it over the executor's token burst is refused here,
// as Submit refuses it (see New).
func (m *Model) NewRequest(payload map[string]any, opts ...CallOption) (messages.Request, error) {
	return m.request(m.invokeOp(payload), opts)
}

// operation is one call of a model as its exported methods describe it:
// where it goes, with what, and how its reply is read. Each method makes
// one, request builds the executor's request from it, and submit submits
// that: the only two steps every call goes through.
type operation struct {
	method, path string
	payload      map[string]any
	// decode reads a success body; unused when stream is set.
	decode decodeFunc
	// stream, for a streamed chat, receives the reply's text as it comes.
	stream *Stream
}

// invokeOp is the operation of Invoke, Submit and NewRequest: the
// endpoint's method and path, any JSON body.
func (m *Model) invokeOp(payload map[string]any) operation {
	return operation{method: m.cfg.Method, path: m.cfg.Path, payload: payload, decode: decodeGeneric}
}

// submit builds op's request and hands it to the executor, with its reply
// when the model's cache holds one it may serve.
func (m *Model) submit(ctx context.Context, op operation, opts []CallOption) (*runtime.Handle, error) {
	r, err := m.request(op, opts)
	if err != nil {
		return nil, err
	}
	if hc, ok := r.Call.(*httpCall); ok && hc.cacheServe {
		r.Cached = m.cached(hc)
	}
	return m.ex.Submit(ctx, r)
}

// request builds the executor's request of op: the HTTP request with its
// merged fields, headers and credentials, the call that sends it, and the
// request's tokens, price, attempts, timeout and retry policy. WithTokens
// replaces the token estimate only: the estimated cost is always the
// body's.
func (m *Model) request(op operation, opts []CallOption) (messages.Request, error) {
	if m.closed.Load() {
		return messages.Request{}, ErrClosed
	}
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	fields := m.cfg.fields(op.payload, o.fields)
	path, err := fillPath(op.path, fields)
	if err != nil {
		return messages.Request{}, err
	}
	// path is escaped (fillPath escapes the values it puts in): join it to
	// the base's escaped path, so that it is not escaped twice.
	u := *m.cfg.base
	u.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + path
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return messages.Request{}, fmt.Errorf("%w: path %q: %w", messages.ErrInvalidRequest, path, err)
	}
	body, err := requestBody(op.method, fields)
	if err != nil {
		return messages.Request{}, err
	}
	if !hasBody(op.method) && len(fields) > 0 {
		// After the base's own query (Azure's api-version), if it has one.
		u.RawQuery = strings.TrimPrefix(u.RawQuery+"&"+query(fields), "&")
	}
	// Given WithTokens, the request is charged what it says, and its
	// body is counted only for its cost.
	limit := 0
	if m.tokenBurst != nil && !o.hasTokens {
		limit = m.tokenBurst()
	}
	est := m.cfg.estimate(path, body, m.prices, limit)
	if est.atLeast {
		return messages.Request{}, &messages.TokenLimitError{Tokens: est.Tokens(), Burst: limit, AtLeast: true}
	}
	tokens := est.Tokens()
	if o.hasTokens {
		tokens = o.tokens
	}
	header := m.header(o.headers, body != nil)
	maxAttempts := o.maxAttempts // the chain of EndpointConfig.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = m.cfg.MaxAttempts
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = m.cfg.Timeout
	}
	// A credential header given for this call is scrubbed like the key.
	secrets := m.cfg.secrets()
	if len(o.headers) > 0 {
		secrets = slices.Concat(secrets, credentialValues(o.headers))
	}
	hc := &httpCall{m: m, method: op.method, url: u.String(), header: header, body: body, decode: op.decode, secrets: secrets}
	var call messages.Call = hc
	if op.stream != nil {
		call = &streamCall{httpCall: hc, stream: op.stream}
	} else if m.cache != nil {
		// A streamed reply is neither stored nor served: its chunks go
		// to the caller as they come.
		hc.cacheKey = cacheKey(m.cfg.Provider, op.method, messages.Scrub(hc.url, secrets), body)
		hc.cacheServe = m.cacheMode == CacheAll || deterministic(path, fields)
	}
	var pricing messages.Pricing
	if est.Priced {
		pricing = est.Price
	}
	return messages.Request{
		Call:          call,
		Tokens:        tokens,
		Pricing:       pricing,
		EstimatedCost: est.Cost(),
		Endpoint:      messages.Endpoint{Method: op.method, URL: hc.url, Header: header, Payload: body},
		Metadata:      o.metadata,
		Timeout:       timeout,
		MaxAttempts:   maxAttempts,
		Retry:         m.cfg.Retry,
		Secrets:       secrets,
	}, nil
}

// fields merges a request's fields, later winning: the config's Model and
// Defaults, the payload, then the call's WithField options.
func (r *resolved) fields(payload, options map[string]any) map[string]any {
	fields := make(map[string]any, len(r.Defaults)+len(payload)+len(options)+1)
	if r.Model != "" {
		fields["model"] = r.Model
	}
	maps.Copy(fields, r.Defaults)
	maps.Copy(fields, payload)
	maps.Copy(fields, options)
	return fields
}

// header builds the request headers: defaults, then the call's, then
// credentials and the provider's required headers.
func (m *Model) header(extra map[string]string, jsonBody bool) http.Header {
	h := make(http.Header, len(m.cfg.Headers)+len(extra)+3)
	for k, v := range m.cfg.Headers {
		h.Set(k, v)
	}
	for k, v := range extra {
		h.Set(k, v)
	}
	if jsonBody {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Accept", "application/json")
	if m.cfg.apiKey != "" {
		if name, value := m.cfg.Auth.header(m.cfg.apiKey); name != "" {
			h.Set(name, value)
		}
	}
	if m.cfg.Provider == Anthropic {
		h.Set("Anthropic-Version", m.cfg.AnthropicVersion)
	}
	return h
}

// fillPath replaces each {name} in path by the field of that name, which it
// removes from fields.
func fillPath(path string, fields map[string]any) (string, error) {
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			return path, nil
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("%w: unclosed { in path %q", messages.ErrInvalidRequest, path)
		}
		name := path[i+1 : i+j]
		v, ok := fields[name]
		if !ok {
			return "", fmt.Errorf("%w: path parameter {%s} has no field", messages.ErrInvalidRequest, name)
		}
		delete(fields, name)
		path = path[:i] + url.PathEscape(fmt.Sprint(v)) + path[i+j+1:]
	}
}

// query encodes fields as URL query parameters, in a stable order; values
// that are not strings or numbers are sent as JSON.
func query(fields map[string]any) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	q := url.Values{}
	for _, k := range keys {
		switch v := fields[k].(type) {
		case string:
			q.Set(k, v)
		case fmt.Stringer:
			q.Set(k, v.String())
		case int, int64, float64, bool, json.Number:
			q.Set(k, fmt.Sprint(v))
		default:
			b, _ := json.Marshal(v)
			q.Set(k, string(bytes.TrimSpace(b)))
		}
	}
	return q.Encode()
}
