// Package batch runs a JSONL file of model requests through an executor at
// the provider's limits, writing one JSONL result per request as each ends.
// It is the engine of the lionactor batch command: resumable (requests with
// a final result in the output are skipped), interruptible (in-flight calls
// finish, the rest remain for a rerun), and observable (progress, summary,
// Prometheus metrics).
package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	MaxAttempts int
	// Timeout bounds each attempt; 0 means none.
	Timeout time.Duration
	// Queue bounds the requests read ahead of the callers.
	Queue int
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
}

// burst is the request bucket's capacity: Burst, or 1.
func (c Config) burst() int { return max(c.Burst, 1) }

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &messages.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.RPM <= 0:
		return bad("rpm", "must be positive")
	case c.TPM < 0:
		return bad("tpm", "must not be negative")
	case c.Burst < 0:
		return bad("burst", "must not be negative")
	case c.Concurrency <= 0:
		return bad("concurrency", "must be positive")
	case c.MaxAttempts <= 0:
		return bad("max-attempts", "must be positive")
	case c.Timeout < 0:
		return bad("timeout", "must not be negative")
	case c.Queue <= 0:
		return bad("queue", "must be positive")
	case c.Grace < 0:
		return bad("grace", "must not be negative")
	case c.BudgetMembers < 0:
		return bad("budget-members", "must be at least 1")
	case len(c.RetryKinds) > 0 && !c.RetryFailed:
		return bad("retry-failed", "error kinds given without RetryFailed")
	case slices.Contains(c.RetryKinds, ""):
		return bad("retry-failed", "an empty error kind")
	}
	if c.Budget == "" {
		return nil
	}
	if err := budget.CheckAddress(c.Budget, false); err != nil {
		return bad("budget", err.Error())
	}
	if c.BudgetMembers < 1 {
		return bad("budget-members", "must be at least 1")
	}
	if c.BudgetListen != "" {
		if err := budget.CheckAddress(c.BudgetListen, true); err != nil {
			return bad("budget-listen", err.Error())
		}
	}
	if n := len(c.BudgetSecret); n > 0 && n < budget.MinSecretLen {
		return bad("budget-secret-env", fmt.Sprintf("the secret must be at least %d bytes, got %d", budget.MinSecretLen, n))
	}
	if c.BudgetTLS.Enabled() {
		if _, err := c.BudgetTLS.RemoteOptions(); err != nil {
			var ce *messages.ConfigError
			if errors.As(err, &ce) {
				return bad("budget-tls-"+strings.ToLower(ce.Field), ce.Reason)
			}
			return err
		}
	}
	return c.checkMember()
}

// budgetKey names the run's shared budget: the endpoint's base URL (without
// a query or fragment, which could carry a secret) and a hash of the API
// key, never the key itself. Processes with the same key at the same base
// URL share a budget whatever their endpoint paths, as providers count a
// key's requests across endpoints; on Azure, which limits each deployment
// apart, the deployment is part of the name.
func (c Config) budgetKey() string {
	base := c.Endpoint.BaseURL
	if base == "" {
		base = defaultBaseURL[c.Endpoint.Provider]
	}
	endpoint := string(c.Endpoint.Provider)
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		endpoint = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/")
	}
	if c.Endpoint.Provider == imodel.Azure {
		endpoint += "/openai/deployments/" + url.PathEscape(c.Endpoint.Deployment)
	}
	return budget.KeyFor(endpoint, c.Endpoint.APIKey)
}

// defaultBaseURL is the base URL imodel uses for a provider when none is
// given, so that a run naming it and one relying on it share a budget.
var defaultBaseURL = map[imodel.Provider]string{
	imodel.OpenAI:    "https://api.openai.com/v1",
	imodel.Anthropic: "https://api.anthropic.com/v1",
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
	rc.MaxAttempts = c.MaxAttempts
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

// Input is what a run reads.
type Input struct {
	// R holds one request per line. Scan it first to refuse duplicate ids
	// before anything is sent.
	R io.Reader
	// Prior holds the results of earlier runs (ReadPrior): requests with a
	// final result there are skipped, unless Config says to rerun them.
	// Nil means none.
	Prior *Prior
	// Total is the number of requests in R if known (for progress), else 0.
	Total int
}

// ErrInterrupted is returned by Run when ctx ended the run early; the
// Summary says how many requests remain.
var ErrInterrupted = errors.New("batch: interrupted")

// Run reads requests from in, runs them, and writes a result line to out as
// each ends. It returns when every request read has a result, or, if ctx
// ends first, once in-flight calls have finished (within Grace), with
// ErrInterrupted. progress, if not nil, is told of every change.
func Run(ctx context.Context, cfg Config, in Input, out io.Writer, progress Reporter) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newRunner(cfg, in, out, progress)
	return r.run(ctx)
}

// item is what the writer handles: a request's terminal snapshot, a line
// the reader already failed, or an index that produces no line.
type item struct {
	index int
	ev    *messages.Event
	res   *Result // a failure made by the reader
	skip  bool
}

// row is what the runner remembers of an input line while it runs.
type row struct {
	key, hash    string
	id, metadata json.RawMessage
	handle       *runtime.Handle
}

type runner struct {
	cfg      Config
	in       Input
	out      io.Writer
	progress Reporter

	ex    *runtime.Executor
	model *imodel.Model

	window  chan struct{} // one slot per request between submit and write
	results chan item     // terminal snapshots, from the observer: never blocks (see window)
	reader  chan item     // from the reader

	mu   sync.Mutex
	rows map[int]*row

	sum         *Summary
	rec         *Recorder // nil unless a report is written
	start       time.Time
	metricsAddr string // where metrics are served, once listening
}

func newRunner(cfg Config, in Input, out io.Writer, progress Reporter) *runner {
	window := cfg.Queue + cfg.Concurrency
	return &runner{
		cfg: cfg, in: in, out: out, progress: progress,
		window:  make(chan struct{}, window),
		results: make(chan item, window),
		reader:  make(chan item),
		rows:    map[int]*row{},
		sum:     newSummary(cfg),
		rec:     newRecorder(cfg),
	}
}

// observe runs on the executor's goroutines for every snapshot. It must not
// block: results has room for every request that holds a window slot.
func (r *runner) observe(ev messages.Event) {
	r.record(ev)
	switch {
	case ev.Status == messages.StatusQueued && ev.Attempt > 0:
		r.sum.retried()
	case ev.Status == messages.StatusCalling:
		r.sum.called(ev.Timings.CallStarted)
	}
	if !ev.Status.Terminal() {
		return
	}
	idx, err := strconv.Atoi(ev.Metadata()[indexKey])
	if err != nil {
		return // not one of ours
	}
	r.results <- item{index: idx, ev: &ev}
}

// indexKey is the snapshot metadata that maps a request back to its line.
const indexKey = "batch.index"

func (r *runner) run(ctx context.Context) (*Summary, error) {
	ex, err := runtime.Start(r.cfg.executorConfig(r.observe))
	if err != nil {
		return nil, err
	}
	r.ex = ex
	ep := r.cfg.Endpoint
	if ep.Retry.MaxAttempts == 0 {
		ep.Retry.MaxAttempts = r.cfg.MaxAttempts
	}
	opts := []imodel.Option{}
	if r.cfg.Logger != nil {
		opts = append(opts, imodel.WithLogger(r.cfg.Logger))
	}
	switch {
	case r.cfg.Tracer != nil:
		base := http.RoundTripper(imodel.NewTransport(r.cfg.Concurrency))
		if r.cfg.client != nil {
			base = r.cfg.client.Transport
		}
		client := &http.Client{Transport: r.cfg.Tracer.Transport(base)}
		defer client.CloseIdleConnections()
		opts = append(opts, imodel.WithHTTPClient(client))
	case r.cfg.client != nil:
		opts = append(opts, imodel.WithHTTPClient(r.cfg.client))
	}
	r.model, err = imodel.New(ex, ep, opts...)
	if err != nil {
		_ = ex.StopNow(context.Background())
		return nil, err
	}
	defer r.model.Close()
	stopMetrics, err := r.serveMetrics()
	if err != nil {
		_ = ex.StopNow(context.Background())
		return nil, err
	}
	defer stopMetrics()

	r.start = time.Now()
	r.sum.begin(r.start, r.in.Total)
	if r.progress != nil {
		r.progress.Start(r.sum)
		defer r.progress.Stop(r.sum)
	}

	readerDone := make(chan readerEnd, 1)
	go func() { readerDone <- r.read(ctx) }()
	writeErr := r.write(ctx, readerDone)

	interrupted := ctx.Err() != nil
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Grace+5*time.Second)
	defer cancel()
	// Every request has ended unless the run was interrupted or failed: a
	// graceful stop then waits for nothing, but gives a shared budget's
	// leases back at once.
	stop := ex.Stop
	if interrupted || writeErr != nil {
		stop = ex.StopNow
	}
	if err := stop(stopCtx); err != nil && writeErr == nil {
		writeErr = err
	}
	r.sum.finish(time.Now(), r.model.Stats(), ex.Stats().Shared)
	if err := r.writeReport(time.Now()); err != nil && writeErr == nil {
		writeErr = err
	}
	switch {
	case writeErr != nil:
		return r.sum, writeErr
	case interrupted && r.sum.Snapshot().Remaining() > 0:
		// An interrupt that came after the last result left nothing to do.
		return r.sum, ErrInterrupted
	}
	return r.sum, nil
}

type readerEnd struct {
	submitted int   // requests handed to the executor
	err       error // a read error of the input
}

// read parses the input and submits each request that has no result yet,
// sending the writer the lines that need no call. It stops early when ctx
// ends.
func (r *runner) read(ctx context.Context) readerEnd {
	var end readerEnd
	defer close(r.reader)
	br := bufio.NewReaderSize(r.in.R, 1<<16)
	ids := newIdentifier()
	for index := 0; ; index++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) == 0 {
			if err != nil {
				if err != io.EOF {
					end.err = err
				}
				return end
			}
			r.reader <- item{index: index, skip: true}
			continue
		}
		r.sum.read()
		ln := r.identify(ids, index, line)
		if !ln.verdict.runs() {
			r.reader <- item{index: index, skip: true}
		} else {
			select {
			case r.window <- struct{}{}:
			case <-ctx.Done():
				// This line was read but not submitted: it is counted in
				// Read already; count the lines after it.
				r.sum.unread(r.countRest(index+1, br, ids))
				return end
			}
			if r.submit(ctx, index, ln) {
				end.submitted++
			} else {
				<-r.window
			}
		}
		if err != nil {
			if err != io.EOF {
				end.err = err
			}
			return end
		}
		if ctx.Err() != nil {
			r.sum.unread(r.countRest(index+1, br, ids))
			return end
		}
	}
}

// line is one non-blank input line, parsed, identified and judged.
type line struct {
	parsed  *parsedLine // nil if the line is not a JSON object
	invalid error       // why not
	dupID   error       // a *DuplicateIDError, if an earlier line has its id
	id      identity
	verdict verdict
}

// identify takes line index apart and decides, from the results of earlier
// runs, whether it runs, counting it in the summary.
func (r *runner) identify(ids *identifier, index int, raw []byte) line {
	var ln line
	ln.parsed, ln.invalid = parseLine(raw)
	ln.id, ln.dupID = ids.identify(index, raw, ln.parsed)
	ln.verdict = r.cfg.verdict(r.in.Prior, ln.id, index)
	r.sum.judged(ln.verdict, ln.id.id)
	return ln
}

// countRest counts the requests not yet read that would run, so an
// interrupted run can say how many remain.
func (r *runner) countRest(index int, br *bufio.Reader, ids *identifier) int {
	n := 0
	for ; ; index++ {
		raw, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(raw)) > 0 && r.identify(ids, index, raw).verdict.runs() {
			n++
		}
		if err != nil {
			return n
		}
	}
}

// submit submits one line; a line that cannot be sent becomes a FAILED
// result at once. It reports whether the executor took it.
func (r *runner) submit(ctx context.Context, index int, ln line) bool {
	rw := &row{key: ln.id.key, hash: ln.id.hash, id: ln.id.id}
	if ln.parsed != nil {
		rw.metadata = ln.parsed.metadata
	}
	fail := func(kind, format string, args ...any) {
		res := &Result{Index: index, Key: rw.key, ContentHash: rw.hash, ID: rw.id, Status: messages.StatusFailed.String(),
			Error:    &ResultError{Kind: kind, Message: fmt.Sprintf("line %d: ", index+1) + fmt.Sprintf(format, args...)},
			Metadata: rw.metadata}
		r.reader <- item{index: index, res: res}
	}
	switch {
	case ln.invalid != nil:
		fail("invalid_input", "%v", ln.invalid)
		return false
	case ln.dupID != nil:
		// The input was not scanned first: the first line with the id
		// keeps it, this one fails under a key of its own.
		fail("invalid_input", "%v", ln.dupID)
		return false
	}
	r.mu.Lock()
	r.rows[index] = rw
	r.mu.Unlock()
	// The request's life is not bound to ctx: an interrupt lets in-flight
	// calls finish, and cancels the others itself.
	h, err := r.model.Submit(context.WithoutCancel(ctx), ln.parsed.body, imodel.WithMetadata(map[string]string{indexKey: strconv.Itoa(index)}))
	if err != nil {
		r.mu.Lock()
		delete(r.rows, index)
		r.mu.Unlock()
		var tle *messages.TokenLimitError
		switch {
		case errors.As(err, &tle):
			fail("too_many_tokens", "estimated %d tokens exceed the --tpm burst of %d: the request could never run", tle.Tokens, tle.Burst)
		default:
			fail("invalid_request", "%v", err)
		}
		return false
	}
	r.mu.Lock()
	rw.handle = h
	r.mu.Unlock()
	return true
}

// write turns items into result lines until the reader is done and every
// submitted request has ended. When the reader stops early (an interrupt),
// it cancels what has not started calling and lets the calls finish within
// the grace period.
func (r *runner) write(ctx context.Context, readerDone <-chan readerEnd) error {
	var (
		submitted = -1 // unknown until the reader ends
		ended     int
		ord       = newOrderer(r.cfg.Ordered)
		writeErr  error // the output failed: nothing more is written
		readErr   error // the input failed: what was submitted is still written
	)
	emit := func(lines [][]byte) {
		for _, l := range lines {
			if writeErr != nil {
				return
			}
			if _, err := r.out.Write(l); err != nil {
				writeErr = fmt.Errorf("batch: writing results: %w", err)
			}
		}
	}
	// interrupted is set when ctx ends; interrupt cannot tell by itself,
	// since a context that never ends has a nil Done channel too.
	reader, interrupt, interrupted := r.reader, ctx.Done(), false
	for submitted < 0 || ended < submitted || reader != nil {
		select {
		case <-interrupt:
			interrupt, interrupted = nil, true
			r.drainOnInterrupt(reader == nil)
		case it, ok := <-reader:
			if !ok {
				reader = nil
				end := <-readerDone
				submitted = end.submitted
				if end.err != nil {
					readErr = fmt.Errorf("batch: reading input: %w", end.err)
				}
				if interrupted {
					// Interrupted while reading: now every submitted request
					// is known, cancel those not yet calling.
					r.drainOnInterrupt(true)
				}
				continue
			}
			if it.skip {
				emit(ord.skip(it.index))
				continue
			}
			r.sum.failedInput()
			emit(ord.add(it.index, encode(it.res)))
		case it := <-r.results:
			ended++
			<-r.window
			res, write := r.result(it)
			if !write {
				emit(ord.skip(it.index))
				continue
			}
			emit(ord.add(it.index, encode(res)))
		}
		if r.progress != nil {
			r.progress.Update(r.sum)
		}
	}
	emit(ord.rest())
	return errors.Join(writeErr, readErr)
}

// drainOnInterrupt cancels every request that has not started its call,
// and, once the reader has stopped submitting, stops the executor
// gracefully within Grace: calls in flight finish and are written, the rest
// remain for a rerun. It is called once when the interrupt comes and again
// when the reader has stopped, since requests may be submitted in between.
func (r *runner) drainOnInterrupt(readerStopped bool) {
	r.mu.Lock()
	live := make([]*runtime.Handle, 0, len(r.rows))
	for _, rw := range r.rows {
		if rw.handle != nil {
			live = append(live, rw.handle)
		}
	}
	r.mu.Unlock()
	for _, h := range live {
		if h.Latest().Status < messages.StatusCalling {
			h.Cancel()
		}
	}
	if !readerStopped {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Grace)
		defer cancel()
		_ = r.ex.Stop(ctx) // past the grace, what is left is cancelled
	}()
}

// result turns a terminal snapshot into a result line; a CANCELLED request
// gets none, so that a rerun does it.
func (r *runner) result(it item) (*Result, bool) {
	ev := it.ev
	r.mu.Lock()
	rw := r.rows[it.index]
	delete(r.rows, it.index)
	r.mu.Unlock()
	if rw == nil {
		rw = &row{}
	}
	r.sum.ended(ev)
	if ev.Status == messages.StatusCancelled {
		return nil, false
	}
	res := &Result{
		Index: it.index, Key: rw.key, ContentHash: rw.hash, ID: rw.id, RequestID: ev.ID.String(), Status: ev.Status.String(),
		Attempts: ev.Attempt, Metadata: rw.metadata,
		Tokens: ResultTokens{Estimated: ev.Tokens.Estimated},
		Timings: ResultTimings{
			Created: ev.Timings.Created, QueueMS: millis(ev.Timings.QueueWait()), WaitMS: millis(ev.Timings.PermitWait()),
			CallMS: millis(ev.Timings.CallDuration()), TotalMS: millis(ev.Timings.Total()),
		},
	}
	if ev.Tokens.HasActual {
		n := ev.Tokens.Actual
		res.Tokens.Actual = &n
	}
	resp, hasResp := ev.Response()
	if ev.Status == messages.StatusCompleted && hasResp && json.Valid(resp.Body) {
		res.Response = resp.Body
	}
	if info, ok := ev.Failure(); ok {
		res.Error = &ResultError{Kind: info.Kind, Message: info.Message, Details: info.Details}
		if hasResp {
			res.Error.Status = resp.StatusCode
		}
	}
	return res, true
}

func encode(res *Result) []byte {
	b, err := json.Marshal(res)
	if err != nil {
		// Every field is plain data or valid JSON: this cannot happen, and
		// if it did, the line must still say the request failed.
		b, _ = json.Marshal(Result{Index: res.Index, Key: res.Key, ContentHash: res.ContentHash, Status: messages.StatusFailed.String(),
			Error: &ResultError{Kind: "internal", Message: err.Error()}})
	}
	return append(b, '\n')
}

// orderer releases lines in input order when ordered, at once otherwise.
type orderer struct {
	ordered bool
	next    int
	held    map[int][]byte // nil entries: indices that produce no line
}

func newOrderer(ordered bool) *orderer { return &orderer{ordered: ordered, held: map[int][]byte{}} }

func (o *orderer) add(index int, line []byte) [][]byte {
	if !o.ordered {
		return [][]byte{line}
	}
	o.held[index] = line
	return o.release()
}

func (o *orderer) skip(index int) [][]byte {
	if !o.ordered {
		return nil
	}
	o.held[index] = nil
	return o.release()
}

func (o *orderer) release() [][]byte {
	var out [][]byte
	for {
		line, ok := o.held[o.next]
		if !ok {
			return out
		}
		delete(o.held, o.next)
		o.next++
		if line != nil {
			out = append(out, line)
		}
	}
}

// rest releases what is still held (an interrupted run), in index order.
func (o *orderer) rest() [][]byte {
	idx := make([]int, 0, len(o.held))
	for i := range o.held {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var out [][]byte
	for _, i := range idx {
		if o.held[i] != nil {
			out = append(out, o.held[i])
		}
	}
	return out
}
