package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// This file holds what the batch APIs of both providers share: the store
// of files and batches, the clock-driven life of a batch, the answering of
// the requests inside a batch, and the HTTP plumbing of the batch routes.
// batches_openai.go and batches_anthropic.go speak each provider's format.

// Bounds on what the batch APIs of a Server hold, so that its memory stays
// bounded however long it runs.
const (
	// MaxBatchBytes bounds the bytes held by the batch APIs: uploaded
	// files, the answers of batches not yet ended, and result files. An
	// upload or a batch that would pass it is refused until files or
	// batches are deleted. The result files of a batch are written when it
	// ends even if they pass the bound, by at most their JSONL framing.
	MaxBatchBytes = 1 << 30

	// MaxBatchObjects bounds the number of uploaded files and the number
	// of batches a Server holds; an upload or a batch beyond it is refused
	// in the same way. OpenAI batches cannot be deleted, so a Server
	// accepts at most this many over its life.
	MaxBatchObjects = 10_000
)

// maxBatchErrors bounds the validation errors listed in a failed batch.
const maxBatchErrors = 100

// BatchFaults sets the probability, each in [0, 1], that a request inside a
// batch, or a whole batch, fails. Draws come from the server's seeded
// random source, as for Faults.
type BatchFaults struct {
	// ServerError answers a request with the provider's server error:
	// for OpenAI a line with status 500 in the error file, for Anthropic
	// an "errored" result of type api_error.
	ServerError float64

	// Expired leaves a request unexecuted when its batch ends, as when
	// the completion window runs out: a batch_expired line in OpenAI's
	// error file, an "expired" result for Anthropic. An OpenAI batch with
	// an expired request ends "expired" rather than "completed".
	Expired float64

	// Failed makes an OpenAI batch fail validation as a whole: it ends
	// "failed" with a reason in its errors and executes nothing. Anthropic
	// validates a batch when it is created and has no failed state, so
	// its batches are not affected.
	Failed float64
}

// validateBatch checks the batch fields of c.
func (c Config) validateBatch() error {
	if c.BatchDelay < 0 {
		return badConfig("BatchDelay", c.BatchDelay, "must not be negative")
	}
	if c.BatchEnqueuedTokens < 0 {
		return badConfig("BatchEnqueuedTokens", c.BatchEnqueuedTokens, "must not be negative")
	}
	f := c.BatchFaults
	for _, r := range []struct {
		name string
		v    float64
	}{{"ServerError", f.ServerError}, {"Expired", f.Expired}, {"Failed", f.Failed}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return badConfig("BatchFaults."+r.name, r.v, "must be in [0, 1]")
		}
	}
	if sum := f.ServerError + f.Expired; sum > 1+1e-9 {
		return badConfig("BatchFaults", sum, "ServerError and Expired must sum to at most 1, since a request meets at most one fault")
	}
	return nil
}

// BatchStats counts what the batch APIs were asked to do. The requests to
// the batch endpoints themselves count in Stats like any other: in
// Requests, ByStatus and ByKey, though never in the rate limits.
type BatchStats struct {
	// FilesUploaded counts the files accepted by POST /v1/files.
	FilesUploaded int64

	// OpenAIBatches and AnthropicBatches count the batches created,
	// including those that go on to fail validation; a client that
	// resumes its batches instead of creating them again leaves them
	// unchanged.
	OpenAIBatches    int64
	AnthropicBatches int64

	// Requests counts the requests submitted inside those batches.
	Requests int64

	// Cancels counts the batches whose cancellation was accepted.
	Cancels int64
}

// batchLimits are the providers' limits of one batch, smaller in tests.
type batchLimits struct {
	openAIRequests, openAIBytes       int
	anthropicRequests, anthropicBytes int
}

// batchStore holds the files and batches of a Server.
type batchStore struct {
	mu         sync.Mutex
	offset     time.Duration // added to the server's clock: AdvanceBatches
	maxBytes   int64         // MaxBatchBytes, smaller in tests
	maxObjects int           // MaxBatchObjects, smaller in tests
	limits     batchLimits
	bytes      int64                  // held: files and answers
	files      map[string]*storedFile // by ID
	fileList   []*storedFile          // in creation order
	batches    map[string]*simBatch   // both providers, by ID
	list       []*simBatch            // in creation order
}

// initBatches sets up the batch APIs and registers their routes on s.mux.
func (s *Server) initBatches() {
	s.batches = &batchStore{
		maxBytes:   MaxBatchBytes,
		maxObjects: MaxBatchObjects,
		limits: batchLimits{
			openAIRequests: wire.OpenAIBatchMaxRequests, openAIBytes: wire.OpenAIBatchMaxBytes,
			anthropicRequests: wire.AnthropicBatchMaxRequests, anthropicBytes: wire.AnthropicBatchMaxBytes,
		},
		files:   make(map[string]*storedFile),
		batches: make(map[string]*simBatch),
	}
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	routes := []struct {
		pattern string
		p       provider
		methods []string
		serve   func(*call)
	}{
		{"/v1/files", openAI, []string{get, post}, (*call).files},
		{"/v1/files/{id}", openAI, []string{get, del}, (*call).file},
		{"/v1/files/{id}/content", openAI, []string{get}, (*call).fileContent},
		{"/v1/batches", openAI, []string{get, post}, (*call).openAIBatches},
		{"/v1/batches/{id}", openAI, []string{get}, (*call).openAIBatch},
		{"/v1/batches/{id}/cancel", openAI, []string{post}, (*call).cancelOpenAIBatch},
		{"/v1/messages/batches", anthropic, []string{get, post}, (*call).messageBatches},
		{"/v1/messages/batches/{id}", anthropic, []string{get, del}, (*call).messageBatch},
		{"/v1/messages/batches/{id}/results", anthropic, []string{get}, (*call).messageBatchResults},
		{"/v1/messages/batches/{id}/cancel", anthropic, []string{post}, (*call).cancelMessageBatch},
	}
	for _, r := range routes {
		s.mux.Handle(r.pattern, s.batchRoute(r.p, r.methods, r.serve))
	}
}

// AdvanceBatches moves the clock of the batch APIs forward by d, so that a
// test sees batches progress and end without waiting: a batch ends once
// Config.BatchDelay has passed on this clock since its creation. The clock
// of the rate limits is not changed.
func (s *Server) AdvanceBatches(d time.Duration) {
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	s.batches.offset += d
}

// batchNow returns the time on the clock of the batch APIs. s.batches.mu
// is held.
func (s *Server) batchNow() time.Time { return s.now().Add(s.batches.offset) }

// countBatches updates the batch counts of Stats.
func (s *Server) countBatches(update func(*BatchStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	update(&s.stats.Batches)
}

// storedFile is an OpenAI file.
type storedFile struct {
	meta wire.OpenAIFile
	key  string // the API key that owns it
	data []byte
}

// itemFault is a fault drawn for one request of a batch.
type itemFault int

const (
	itemOK itemFault = iota
	itemServerError
	itemExpired
)

// batchItem is one request of a batch with the answer it gets if executed.
type batchItem struct {
	customID  string
	seq       uint64 // names the request, its answer and its result line
	status    int    // of the answer
	body      []byte // the answer; dropped once an OpenAI batch's files are written
	fault     itemFault
	inTokens  int // usage of a successful answer
	outTokens int
}

// succeeded reports whether the item's answer is a success.
func (it *batchItem) succeeded() bool { return it.status == http.StatusOK }

// outcome is how a request of a batch ended.
type outcome int

const (
	succeeded outcome = iota
	errored
	canceled
	expired
)

// simBatch is a batch of either provider. Everything about it is decided
// when it is created, answers included; what a client sees of it at a
// given time is computed from the batch clock when asked, so that no
// goroutine or timer is needed.
type simBatch struct {
	p       provider
	id      string
	key     string
	created time.Time
	delay   time.Duration
	items   []batchItem // in the order of execution, not of submission
	held    int64       // bytes of answers held in the store

	// cancelAt is when a cancellation was asked for; zero if never.
	cancelAt time.Time

	// OpenAI only.
	endpoint    string
	inputFileID string
	model       string
	metadata    map[string]string
	errs        []wire.BatchError // why validation failed; nil if it passed
	tokens      int               // input tokens enqueued for the model
	outputFile  string            // the result files, once written
	errorFile   string
	written     bool
}

// The life of a batch, for a delay D: an OpenAI batch validates during the
// first tenth of D, executes its requests at an even pace until the last
// tenth, finalizes, and ends at D; an Anthropic batch executes its
// requests over all of D. A cancellation takes a tenth of D. A batch that
// would end after its 24-hour completion window expires at the end of the
// window with what it had executed by then.
const (
	completionWindow = 24 * time.Hour
	phaseShare       = 10 // validating, finalizing and cancelling each take delay/phaseShare
)

func (b *simBatch) expiresAt() time.Time { return b.created.Add(completionWindow) }

// workStart and workEnd bound the time over which requests are executed.
func (b *simBatch) workStart() time.Time {
	if b.p == anthropic {
		return b.created
	}
	return b.created.Add(b.delay / phaseShare)
}

func (b *simBatch) workEnd() time.Time {
	if b.p == anthropic {
		return b.created.Add(b.delay)
	}
	return b.created.Add(b.delay - b.delay/phaseShare)
}

// expiresEarly reports whether the completion window ends before the
// batch would.
func (b *simBatch) expiresEarly() bool { return b.created.Add(b.delay).After(b.expiresAt()) }

// endAt is when the batch ends.
func (b *simBatch) endAt() time.Time {
	switch {
	case b.errs != nil:
		return b.workStart()
	case !b.cancelAt.IsZero():
		return b.cancelAt.Add(b.delay / phaseShare)
	case b.expiresEarly():
		return b.expiresAt()
	}
	return b.created.Add(b.delay)
}

func (b *simBatch) ended(now time.Time) bool { return !now.Before(b.endAt()) }

// executed returns how many requests, in the order of b.items, have been
// executed by t.
func (b *simBatch) executed(t time.Time) int {
	if b.errs != nil {
		return 0
	}
	if !b.cancelAt.IsZero() && t.After(b.cancelAt) {
		t = b.cancelAt
	}
	if t.After(b.expiresAt()) {
		t = b.expiresAt()
	}
	start, end := b.workStart(), b.workEnd()
	switch {
	case !t.Before(end):
		return len(b.items)
	case t.Before(start):
		return 0
	}
	return int(float64(len(b.items)) * float64(t.Sub(start)) / float64(end.Sub(start)))
}

// outcome returns how the i-th request ended, in a batch that has ended.
func (b *simBatch) outcome(i int) outcome {
	it := &b.items[i]
	switch {
	case i >= b.executed(b.endAt()):
		if !b.cancelAt.IsZero() {
			return canceled
		}
		return expired
	case it.fault == itemExpired:
		return expired
	case it.succeeded():
		return succeeded
	}
	return errored
}

// anyExpired reports whether a request of an ended batch expired.
func (b *simBatch) anyExpired() bool {
	for i := range b.items {
		if b.outcome(i) == expired {
			return true
		}
	}
	return false
}

// add stores b, or reports why the store is full.
func (st *batchStore) add(b *simBatch) error {
	if len(st.list) >= st.maxObjects {
		return fmt.Errorf("The simulator holds its limit of %d batches; delete batches first.", st.maxObjects)
	}
	if err := st.hold(b.held); err != nil {
		return err
	}
	st.batches[b.id] = b
	st.list = append(st.list, b)
	return nil
}

// batchLimits returns the providers' limits of one batch.
func (st *batchStore) batchLimits() batchLimits {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.limits
}

// hold reserves n bytes, or reports that the store is full.
func (st *batchStore) hold(n int64) error {
	if st.bytes+n > st.maxBytes {
		return fmt.Errorf("The simulator holds %d of its limit of %d bytes of batch files and results; delete files or batches first.", st.bytes, st.maxBytes)
	}
	st.bytes += n
	return nil
}

// batch returns the batch id of key and provider p, or nil.
func (st *batchStore) batch(p provider, key, id string) *simBatch {
	b := st.batches[id]
	if b == nil || b.p != p || b.key != key {
		return nil
	}
	return b
}

// settle writes the result files of the OpenAI batches that have ended.
// st.mu is held.
func (s *Server) settle() {
	st, now := s.batches, s.batchNow()
	for _, b := range st.list {
		if b.p == openAI && !b.written && b.ended(now) {
			s.writeResults(b)
		}
	}
}

// answer runs body through serve, an online endpoint, as a request inside
// a batch: its reply, usage and errors are what it would get online, but
// nothing is charged to the rate limits, counted in Stats, delayed or
// faulted.
func (s *Server) answer(p provider, path string, serve func(*call), body []byte) batchItem {
	w := &bufferWriter{header: make(http.Header)}
	r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: path}, Header: make(http.Header)}
	c := &call{s: s, w: &recorder{ResponseWriter: w, s: s, ended: true}, r: r, p: p,
		seq: s.nextID(), body: body, item: true, done: func() {}}
	if streamed(body) {
		msg := "stream: Streaming is not supported in a batch."
		if p == openAI {
			c.failParam(http.StatusBadRequest, kindInvalidRequest, "stream", msg)
		} else {
			c.fail(http.StatusBadRequest, kindInvalidRequest, msg)
		}
	} else {
		serve(c)
	}
	it := batchItem{seq: c.seq, status: w.status, body: w.buf}
	if it.succeeded() {
		var u struct {
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				InputTokens      int `json:"input_tokens"`
				OutputTokens     int `json:"output_tokens"`
			} `json:"usage"`
		}
		json.Unmarshal(w.buf, &u)
		it.inTokens = u.Usage.PromptTokens + u.Usage.InputTokens
		it.outTokens = u.Usage.CompletionTokens + u.Usage.OutputTokens
	}
	return it
}

// streamed reports whether a request body asks for a stream.
func streamed(body []byte) bool {
	var v struct {
		Stream bool `json:"stream"`
	}
	return json.Unmarshal(body, &v) == nil && v.Stream
}

// serverError answers it with the provider's server error, as the
// ServerError fault does.
func (s *Server) serverError(p provider, it *batchItem) {
	w := &bufferWriter{header: make(http.Header)}
	c := &call{s: s, w: &recorder{ResponseWriter: w, s: s, ended: true}, p: p, item: true}
	c.failFault(faultServerError)
	it.status, it.body, it.inTokens, it.outTokens = w.status, w.buf, 0, 0
}

// drawFaults draws the fault of each item, and whether the batch fails
// validation when failable, from the server's random source, in order.
func (s *Server) drawFaults(items []batchItem, failable bool) (failed bool) {
	f := s.cfg.BatchFaults
	s.mu.Lock()
	defer s.mu.Unlock()
	if failable && f.Failed > 0 && s.rng.Float64() < f.Failed {
		return true
	}
	if f.ServerError == 0 && f.Expired == 0 {
		return false
	}
	for i := range items {
		switch x := s.rng.Float64(); {
		case x < f.ServerError:
			items[i].fault = itemServerError
		case x < f.ServerError+f.Expired:
			items[i].fault = itemExpired
		}
	}
	return false
}

// answerAll answers every item of a batch as its endpoint would online,
// applies the drawn faults, and puts the items in the order of execution,
// which is not the order of submission, as the providers warn.
func (s *Server) answerAll(b *simBatch, bodies [][]byte, path string, serve func(*call)) {
	for i := range b.items {
		it := s.answer(b.p, path, serve, bodies[i])
		it.customID, it.fault = b.items[i].customID, b.items[i].fault
		b.tokens += it.inTokens
		switch it.fault {
		case itemServerError:
			s.serverError(b.p, &it)
		case itemExpired:
			it.body = nil // never shown
		}
		b.items[i] = it
		b.held += int64(len(it.body))
	}
	seededRand(s.cfg.Seed, "batch order", b.id).Shuffle(len(b.items), func(i, j int) {
		b.items[i], b.items[j] = b.items[j], b.items[i]
	})
}

// bufferWriter is the ResponseWriter of a request inside a batch.
type bufferWriter struct {
	header http.Header
	status int
	buf    []byte
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.buf = append(w.buf, b...)
	return len(b), nil
}

// batchRoute returns the handler of a batch API route. Like endpoint, it
// names the request, counts it in Stats, checks the method, the API key
// and the test hooks; unlike endpoint it takes any of methods, leaves the
// body to serve, which reads it within the provider's limits, and is not
// rate limited. The hooks' faults apply: 429, quota, 500, 503 and 529 are
// answered before anything is done; a reset drops the connection after the
// call has taken effect, as a response lost on the way would; malformed,
// truncate and slow spoil or hold the answer.
func (s *Server) batchRoute(p provider, methods []string, serve func(*call)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, w: &recorder{ResponseWriter: w, s: s}, r: r, p: p, seq: s.nextID(), done: s.arrive()}
		defer c.finish()
		c.w.Header().Set(c.requestIDHeader(), c.requestID())
		if !slices.Contains(methods, r.Method) {
			c.w.Header().Set("Allow", strings.Join(methods, ", "))
			c.fail(http.StatusMethodNotAllowed, kindInvalidRequest,
				"Method "+r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(methods, " or ")+".")
			return
		}
		if !c.admit() {
			return
		}
		f := faultNone
		if c.hooks.fault != faultNone {
			f = s.chooseFault(c.hooks, c.key)
		}
		c.hooks.fault = f // what c.reply applies
		switch f {
		case faultRateLimit:
			c.retryAfter(s.cfg.FaultRetryAfter)
			c.injectedRateLimit(estimate{model: "batch API requests"}, s.cfg.FaultRetryAfter)
			return
		case faultQuota:
			c.refuseQuota()
			return
		case faultSlow:
			if !s.pause(r.Context(), s.cfg.SlowDelay) {
				c.abandon()
			}
		case faultReset:
			answered := c.w
			c.w = &recorder{ResponseWriter: &bufferWriter{header: make(http.Header)}, s: s, ended: true}
			serve(c)
			c.w = answered
			c.reset()
			return
		}
		if c.failFault(f) {
			return
		}
		serve(c)
	})
}

// reply writes v as the successful answer of a batch route, spoiled as
// the hooks ask.
func (c *call) reply(v any) { c.writeBody(v, c.hooks.fault) }

// notFound answers 404 in the provider's format.
func (c *call) notFound(msg string) {
	if c.p == anthropic {
		c.writeJSON(http.StatusNotFound, wire.NewAnthropicErrorBody(wire.AnthropicNotFoundError, msg))
		return
	}
	c.writeJSON(http.StatusNotFound, wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, "", msg))
}

// download is an answer that is a file rather than a JSON value.
type download struct {
	data        []byte
	contentType string
}

// writeDownload writes d; a truncate fault cuts it short.
func (c *call) writeDownload(d download) {
	c.w.Header().Set("Content-Type", d.contentType)
	if c.hooks.fault == faultTruncate && len(d.data) > 0 {
		c.truncate(d.data)
	}
	c.w.Header().Set("Content-Length", strconv.Itoa(len(d.data)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(d.data)
}

// withBatch finds the batch of the call's provider and key named in the
// path, writes the result files of the batches that have ended, and
// answers what do returns for the batch at the batch clock's now: a value
// or a download, or else a message for a 400.
func (c *call) withBatch(do func(b *simBatch, now time.Time) (answer any, refusal string)) {
	st, id := c.s.batches, c.r.PathValue("id")
	st.mu.Lock()
	c.s.settle()
	b := st.batch(c.p, c.key, id)
	var v any
	var msg string
	if b != nil {
		v, msg = do(b, c.s.batchNow())
	}
	st.mu.Unlock()
	switch {
	case b == nil && c.p == openAI:
		c.notFound("No such Batch object: " + id)
	case b == nil:
		c.notFound("No such Message Batch: " + id)
	case msg != "":
		c.fail(http.StatusBadRequest, kindInvalidRequest, msg)
	default:
		if d, ok := v.(download); ok {
			c.writeDownload(d)
			return
		}
		c.reply(v)
	}
}

// readBody reads the request body, of at most limit bytes, and answers 413
// if it is longer; it reports whether the body was read.
func (c *call) readBody(limit int64) bool {
	var err error
	c.body, err = io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, limit))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			c.fail(http.StatusRequestEntityTooLarge, kindTooLarge,
				fmt.Sprintf("Request body exceeds the maximum size of %d bytes.", limit))
		}
		return false
	}
	return true
}

// listLimit reads the limit parameter of a list request, def when absent;
// it answers 400 and reports false when the value is not in [1, max].
func (c *call) listLimit(def, max int) (int, bool) {
	v := c.r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "limit",
			fmt.Sprintf("Invalid 'limit': %q is not an integer in [1, %d].", v, max))
		return 0, false
	}
	return n, true
}

// page returns at most limit of items, which are newest first: those after
// the one named after, or before the one named before, or else the first;
// and whether more follow in the direction of paging. An unknown cursor
// gives an empty page.
func page[T any](items []T, id func(T) string, after, before string, limit int) ([]T, bool) {
	from, to := 0, len(items)
	if after != "" {
		i := slices.IndexFunc(items, func(v T) bool { return id(v) == after })
		if i < 0 {
			return nil, false
		}
		from = i + 1
	} else if before != "" {
		i := slices.IndexFunc(items, func(v T) bool { return id(v) == before })
		if i < 0 {
			return nil, false
		}
		to = i
		from = max(0, to-limit)
		return items[from:to], from > 0
	}
	to = min(to, from+limit)
	return items[from:to], to < len(items)
}

// newestFirst returns the items of st.list, newest first, that pass keep.
func newestFirst[T any](list []T, keep func(T) bool) []T {
	var out []T
	for i := len(list) - 1; i >= 0; i-- {
		if keep(list[i]) {
			out = append(out, list[i])
		}
	}
	return out
}

// unix returns t in Unix seconds, as a pointer for a nullable member.
func unix(t time.Time) *int64 {
	v := t.Unix()
	return &v
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }
