package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// provider is the API whose formats an endpoint speaks.
type provider int

const (
	openAI provider = iota
	anthropic
	// azure is Azure OpenAI: OpenAI's bodies under a deployment's path,
	// with an api-version query, an api-key header and Azure's own answers
	// to a missing version, a bad key and a rate limit.
	azure
)

// azureAPIVersion is the form of an api-version: a date, with a suffix for
// a preview ("2024-10-21", "2025-04-01-preview").
var azureAPIVersion = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-[a-z]+)?$`)

// call is one request to an API endpoint on its way through the server.
type call struct {
	s     *Server
	w     *recorder
	r     *http.Request
	p     provider
	key   string
	hooks hooks
	seq   uint64
	// deployment is the Azure deployment in the path, or "".
	deployment string
	body       []byte
	limit      *limitState // the key's limits, once known

	// item marks a request inside a batch: it is answered as online but
	// outside the online limits, latency and faults (see batch.go).
	item bool

	done     func() // records the end of the request in Stats
	finished bool
}

// finish records the end of the request, once. It runs before the last
// bytes of a response leave the server, so that a client that has read a
// response and sends its next request is not seen with both in flight.
func (c *call) finish() {
	if !c.finished {
		c.finished = true
		c.w.end(false)
		c.done()
	}
}

// recorder counts the status of a response in Stats as the status is
// written, before the client can see the response, so that a client that
// has its response finds it counted.
type recorder struct {
	http.ResponseWriter
	s      *Server
	status int
	ended  bool // counted as a reset or an abandoned request
}

func (r *recorder) WriteHeader(status int) {
	r.count(status)
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.count(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

// count records status, once.
func (r *recorder) count(status int) {
	if r.status == 0 && !r.ended {
		r.status = status
		r.s.countEnd(status, false)
	}
}

// end records a request that got no response, as a reset when reset is
// set, unless a status was recorded.
func (r *recorder) end(reset bool) {
	if r.status == 0 && !r.ended {
		r.ended = true
		r.s.countEnd(0, reset)
	}
}

// Unwrap lets http.ResponseController reach the Flusher and Hijacker.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// endpoint returns the handler of one API endpoint: it checks the method,
// the API key, the test hooks and the body, and then runs serve, which
// decodes the body, prices it and answers through c.respond.
func (s *Server) endpoint(p provider, serve func(*call)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, w: &recorder{ResponseWriter: w, s: s}, r: r, p: p, seq: s.nextID(), done: s.arrive()}
		// net/http sends a buffered body, and the end of a chunked one,
		// only after the handler returns, so finishing in a deferred call
		// precedes what the client sees last.
		defer c.finish()
		c.w.Header().Set(c.requestIDHeader(), c.requestID())

		if p == azure && !c.azureRoute() {
			return
		}
		if r.Method != http.MethodPost {
			c.w.Header().Set("Allow", http.MethodPost)
			c.fail(http.StatusMethodNotAllowed, kindInvalidRequest,
				"Method "+r.Method+" is not allowed on "+r.URL.Path+"; use POST.")
			return
		}
		if !c.admit() {
			return
		}
		var err error
		c.body, err = io.ReadAll(http.MaxBytesReader(c.w, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			if errors.As(err, new(*http.MaxBytesError)) {
				c.fail(http.StatusRequestEntityTooLarge, kindTooLarge,
					fmt.Sprintf("Request body exceeds the maximum size of %d bytes.", s.cfg.MaxBodyBytes))
			}
			return // the client went away mid-body
		}
		serve(c)
	})
}

// azureRoute reads the deployment and checks the api-version, which Azure
// requires on every request: without one the route is not found.
func (c *call) azureRoute() bool {
	c.deployment = c.r.PathValue("deployment")
	v := c.r.URL.Query().Get("api-version")
	switch {
	case v == "":
		c.azureError(http.StatusNotFound, "Resource not found")
		return false
	case !azureAPIVersion.MatchString(v):
		c.azureError(http.StatusBadRequest, "API version not supported")
		return false
	}
	return true
}

// admit checks what every endpoint checks before it reads a body: the
// key, the test hooks and Anthropic's version header. When one fails it
// answers the request itself and returns false.
func (c *call) admit() bool {
	if !c.authenticate() {
		return false
	}
	var err error
	if c.hooks, err = parseHooks(c.r.Header); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, err.Error())
		return false
	}
	if c.p == anthropic && c.r.Header.Get("anthropic-version") == "" {
		c.fail(http.StatusBadRequest, kindInvalidRequest, "anthropic-version: header is required")
		return false
	}
	return true
}

// authenticate checks the API key and answers 401 when it is missing or
// not accepted. Anthropic takes its key as x-api-key or, as its SDKs send
// it, as a bearer token.
func (c *call) authenticate() bool {
	switch c.p {
	case azure:
		c.key = strings.TrimSpace(c.r.Header.Get("api-key"))
		if c.key == "" {
			c.azureError(http.StatusUnauthorized, "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")
			return false
		}
	case openAI:
		auth := c.r.Header.Get("Authorization")
		key, ok := strings.CutPrefix(auth, "Bearer ")
		c.key = strings.TrimSpace(key)
		if !ok || c.key == "" {
			c.key = ""
			c.fail(http.StatusUnauthorized, kindAuthMissing,
				"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
			return false
		}
	default:
		c.key = c.r.Header.Get("x-api-key")
		if c.key == "" {
			if bearer, ok := strings.CutPrefix(c.r.Header.Get("Authorization"), "Bearer "); ok {
				c.key = strings.TrimSpace(bearer)
			}
		}
		if c.key == "" {
			c.fail(http.StatusUnauthorized, kindAuthMissing, "x-api-key header is required")
			return false
		}
	}
	if c.s.keys != nil && !c.s.keys[c.key] && !c.s.quota[c.key] {
		c.key = ""
		switch c.p {
		case azure:
			c.azureError(http.StatusUnauthorized, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
		case openAI:
			c.fail(http.StatusUnauthorized, kindAuthInvalid, "Incorrect API key provided.")
		default:
			c.fail(http.StatusUnauthorized, kindAuthInvalid, "invalid x-api-key")
		}
		return false
	}
	c.s.countKey(c.key)
	return true
}

// estimate is what serve tells respond about a decoded request.
type estimate struct {
	model string
	cost  int // tokens charged at admission
}

// respond runs the common part of every valid request: quota, injected
// rate limits, admission, latency and faults; then it calls write, which
// writes the successful response, streamed or not, applying the
// malformed and truncate faults it is given.
func (c *call) respond(est estimate, write func(f fault)) {
	if c.item {
		write(faultNone)
		return
	}
	s := c.s
	f := s.chooseFault(c.hooks, c.key)
	if f == faultQuota || s.quota[c.key] {
		c.refuseQuota()
		return
	}
	if f == faultRateLimit {
		c.retryAfter(s.cfg.FaultRetryAfter)
		c.injectedRateLimit(est, s.cfg.FaultRetryAfter)
		return
	}
	a := s.admit(c.key, c.deployment, est.cost)
	c.limit = &a.state
	if !a.ok {
		if a.wait >= 0 {
			c.retryAfter(a.wait)
		}
		c.rateLimited(est, a.budget, a.wait)
		return
	}
	if !s.pause(c.r.Context(), s.latency(c.hooks)) {
		c.abandon()
	}
	if c.failFault(f) {
		return
	}
	switch f {
	case faultReset:
		c.reset()
		return
	case faultSlow:
		if !s.pause(c.r.Context(), s.cfg.SlowDelay) {
			c.abandon()
		}
	}
	write(f)
}

// refuseQuota answers a key whose account is out of credit, as each
// provider does.
func (c *call) refuseQuota() {
	if c.p != anthropic {
		c.fail(http.StatusTooManyRequests, kindQuota,
			"You exceeded your current quota, please check your plan and billing details.")
		return
	}
	c.fail(http.StatusBadRequest, kindInvalidRequest,
		"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.")
}

// failFault answers the server-side faults (500, 503, 529) and reports
// whether f was one of them.
func (c *call) failFault(f fault) bool {
	switch f {
	case faultServerError:
		c.fail(http.StatusInternalServerError, kindServer,
			"The server had an error while processing your request. Sorry about that!")
	case faultUnavailable:
		c.fail(http.StatusServiceUnavailable, kindUnavailable,
			"The server is overloaded or not ready yet.")
	case faultOverloaded:
		c.fail(wire.StatusOverloaded, kindOverloaded, "Overloaded")
	default:
		return false
	}
	return true
}

// abandon ends a request whose client went away or whose server is
// closing during a delay. It drops the connection: returning would make
// net/http send an empty 200.
func (c *call) abandon() {
	c.finish()
	panic(http.ErrAbortHandler)
}

// retryAfter sets the retry headers of a 429 that waiting for d resolves.
func (c *call) retryAfter(d time.Duration) {
	h := c.w.Header()
	secs := int64(math.Ceil(d.Seconds()))
	if c.p != anthropic {
		h.Set("retry-after-ms", strconv.FormatInt(d.Milliseconds(), 10))
	}
	h.Set("retry-after", strconv.FormatInt(max(secs, 1), 10))
}

// rateLimited answers 429 for the exhausted budget; wait < 0 means the
// request exceeds the budget's capacity and waiting will not help.
func (c *call) rateLimited(est estimate, budget string, wait time.Duration) {
	limit, burst, requested := c.s.cfg.RequestsPerMinute, c.s.cfg.RequestBurst, 1
	if budget == "tokens" {
		limit, burst, requested = c.s.cfg.TokensPerMinute, c.s.cfg.TokenBurst, est.cost
	}
	// A burst below the limit is what a request too large exceeds.
	ofBurst := ""
	if burst > 0 && burst < limit {
		ofBurst = fmt.Sprintf(" (burst %d)", burst)
	}
	switch c.p {
	case azure:
		c.azureRateLimit(budget, wait)
		return
	case anthropic:
		var msg string
		if wait < 0 {
			msg = fmt.Sprintf("Prompt is too long for your rate limit of %d tokens per minute%s: requested %d.", limit, ofBurst, requested)
		} else {
			msg = wire.NewAnthropicRateLimitBody(fmt.Sprintf("%d %s per minute", limit, budget)).Error.Message
		}
		c.fail(http.StatusTooManyRequests, kindRateLimit, msg)
		return
	}
	used := 0
	if b := c.limitState().budget(budget); b != nil {
		used = b.capacity - b.remaining
	}
	var body wire.OpenAIErrorBody
	if wait < 0 {
		body = wire.NewOpenAIErrorBody(wire.TypeTokens, wire.CodeRateLimitExceeded, fmt.Sprintf(
			"Request too large for %s on tokens per min (TPM): Limit %d%s, Requested %d. The input or output tokens must be reduced in order to run successfully.",
			est.model, limit, ofBurst, requested))
	} else {
		body = wire.NewOpenAIRateLimitBody(est.model, budget, limit, used, requested, wait.String())
	}
	c.writeJSON(http.StatusTooManyRequests, body)
}

// injectedRateLimit answers 429 as a provider shedding load does: within
// the caller's limits, with a short retry-after.
func (c *call) injectedRateLimit(est estimate, wait time.Duration) {
	switch c.p {
	case azure:
		c.azureRateLimit("requests", wait)
		return
	case anthropic:
		c.fail(http.StatusTooManyRequests, kindRateLimit,
			"Your request was rate-limited because the service is under high load. Please try again later.")
		return
	}
	c.writeJSON(http.StatusTooManyRequests, wire.NewOpenAIErrorBody(wire.TypeRequests, wire.CodeRateLimitExceeded,
		"Rate limit reached for "+est.model+". Please try again in "+wait.String()+"."))
}

// budget returns the state of the named budget, or nil when unlimited.
func (st *limitState) budget(name string) *budgetState {
	if name == "tokens" {
		return st.tokens
	}
	return st.requests
}

// reset closes the connection without a response.
func (c *call) reset() {
	c.w.end(true) // before the client can see the connection close
	c.finish()
	conn, _, err := http.NewResponseController(c.w).Hijack()
	if err != nil {
		// Not a hijackable connection (HTTP/2, or a recorder in a test
		// of the Handler): abort the response instead, which also
		// leaves the client without one.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// truncate sends the first half of body, under a Content-Length for all of
// it, and then drops the connection, as a failing proxy would.
func (c *call) truncate(body []byte) {
	c.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(body[:len(body)/2])
	http.NewResponseController(c.w).Flush()
	panic(http.ErrAbortHandler)
}

// malformed returns body made invalid JSON by a trailing comma before its
// closing brace: complete, unlike a truncated body, but not parseable.
func malformed(body []byte) []byte {
	b := append([]byte(nil), body[:len(body)-1]...)
	return append(b, ",}"...)
}

// writeBody writes a successful JSON response, applying the malformed and
// truncate faults.
func (c *call) writeBody(v any, f fault) {
	body := marshal(v)
	c.setRateHeaders()
	switch f {
	case faultTruncate:
		c.truncate(body)
	case faultMalformed:
		body = malformed(body)
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(body)
}

// writeJSON writes v with status, with the rate-limit headers of the key,
// and on an error the x-should-retry header the request's hooks ask for.
func (c *call) writeJSON(status int, v any) {
	body := marshal(v)
	c.setRateHeaders()
	if status >= 400 && c.hooks.shouldRetry != "" {
		c.w.Header().Set("x-should-retry", c.hooks.shouldRetry)
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	c.w.Write(body)
}

// setRateHeaders sets the provider's rate-limit headers, for an accepted
// key, on every response. An unlimited budget has no headers, as a client
// cannot read "unlimited" from them.
func (c *call) setRateHeaders() {
	if c.key == "" {
		return
	}
	c.limitState()
	h := c.w.Header()
	set := func(name string, b *budgetState) {
		if b == nil {
			return
		}
		switch c.p {
		case azure:
			// Azure reports what remains, and nothing else.
			h.Set("x-ratelimit-remaining-"+name, strconv.Itoa(b.remaining))
			return
		case openAI:
			h.Set("x-ratelimit-limit-"+name, strconv.Itoa(b.limit))
			h.Set("x-ratelimit-remaining-"+name, strconv.Itoa(b.remaining))
			h.Set("x-ratelimit-reset-"+name, b.reset.String())
			return
		}
		// RFC 3339 has whole seconds; round up, so that the budget is
		// full by the time given.
		reset := c.limit.at.Add(b.reset + time.Second - 1).Truncate(time.Second)
		h.Set("anthropic-ratelimit-"+name+"-limit", strconv.Itoa(b.limit))
		h.Set("anthropic-ratelimit-"+name+"-remaining", strconv.Itoa(b.remaining))
		h.Set("anthropic-ratelimit-"+name+"-reset", reset.UTC().Format(time.RFC3339))
	}
	set("requests", c.limit.requests)
	set("tokens", c.limit.tokens)
}

// limitState returns the state of the key's limits: as admission left
// them, or else as they are now.
func (c *call) limitState() *limitState {
	if c.limit == nil {
		st := c.s.peek(c.key, c.deployment)
		c.limit = &st
	}
	return c.limit
}

// requestIDHeader is the header in which the provider names a request.
func (c *call) requestIDHeader() string {
	if c.p != anthropic {
		return "x-request-id"
	}
	return "request-id"
}

// requestID is the ID of this request; both providers start theirs with
// "req_".
func (c *call) requestID() string { return requestID(c.seq) }

// sse writes server-sent events and flushes each.
type sse struct {
	c  *call
	rc *http.ResponseController
}

// startStream writes the headers of a stream.
func (c *call) startStream() *sse {
	c.setRateHeaders()
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	return &sse{c: c, rc: http.NewResponseController(c.w)}
}

// event encodes one event; name is empty for OpenAI, which sends none.
func event(name string, data []byte) []byte {
	var b []byte
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// send writes events, applying the stream faults: malformed spoils the
// first event's JSON; truncate stops inside the middle event and drops
// the connection. It stops early when the client is gone.
func (st *sse) send(events [][]byte, f fault) {
	cut := -1
	if f == faultTruncate {
		cut = len(events) / 2
	}
	for i, ev := range events {
		if f == faultMalformed && i == 0 {
			ev = malformedEvent(ev)
		}
		if i == cut {
			st.c.w.Write(ev[:len(ev)/2])
			st.rc.Flush()
			panic(http.ErrAbortHandler)
		}
		if _, err := st.c.w.Write(ev); err != nil {
			return
		}
		if i == len(events)-1 {
			break // sent after the handler returns; see finish
		}
		if err := st.rc.Flush(); err != nil {
			return
		}
	}
}

// malformedEvent spoils the JSON data of an encoded event.
func malformedEvent(ev []byte) []byte {
	i := strings.LastIndexByte(string(ev), '}')
	out := append([]byte(nil), ev[:i]...)
	out = append(out, ",}"...)
	return append(out, ev[i+1:]...)
}

// marshal encodes a wire value.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // wire types always encode
	}
	return b
}
