package batchapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// ErrInterrupted is returned by Run when its context ended the run before
// every request had its outcome; the batches it leaves running are in the
// journal, and Stats counts them.
var ErrInterrupted = errors.New("batchapi: interrupted")

// Run sends requests through the provider's batch API of the model (OpenAI's
// Batch API, Anthropic's Message Batches) and calls deliver with the
// outcome of each as its batch ends, on the goroutine that called Run. It
// returns when every request has its outcome, or, once ctx ends, after
// leaving the batches it created running (or cancelling them, as cfg says)
// with ErrInterrupted.
//
// The requests are read from requests on a goroutine of the run's as
// batches fill, split into batches within the provider's limits and cfg's,
// and each batch is created and then polled every cfg.Poll. A request whose
// batch ends without its answer (expired, failed, or an error a call would
// retry) goes into a new batch, or online with cfg.FallbackOnline. With a
// cfg.Journal, a run that resumes an interrupted one, given the same
// requests, polls the batches already created instead of creating them
// again.
//
// The model is the endpoint and its credentials; its executor runs only the
// requests sent online. The run keeps the body of every request without an
// outcome in memory.
func Run(ctx context.Context, m *imodel.Model, cfg Config, requests iter.Seq[Request], deliver func(Outcome)) (Stats, error) {
	if m == nil {
		return Stats{}, &messages.ConfigError{Field: "model", Reason: "nil model"}
	}
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	client := cfg.HTTPClient
	if client == nil {
		t := imodel.NewTransport(4)
		defer t.CloseIdleConnections()
		client = &http.Client{Transport: t}
	}
	a, err := newAPI(m, client)
	if err != nil {
		return Stats{}, err
	}
	prov, err := newProvider(a, "24h")
	if err != nil {
		return Stats{}, err
	}
	if cfg, err = cfg.withDefaults(m.Provider()); err != nil {
		return Stats{}, err
	}
	r := &run{cfg: cfg, model: m, prov: prov, pname: m.Provider(), base: a.base, ctx: context.WithoutCancel(ctx),
		out: newOutbox(), claimed: map[string]bool{}, runID: newRunID()}
	var recs []record
	if cfg.Journal != "" {
		if r.journal, recs, err = openJournal(cfg.Journal); err != nil {
			return Stats{}, fmt.Errorf("batchapi: journal: %w", err)
		}
		defer r.journal.close()
	}
	resumed, err := r.resume(ctx, recs)
	if err != nil {
		return Stats{}, err
	}
	return r.run(ctx, resumed, requests, deliver)
}

// Do runs requests as Run does and returns their outcomes in the order of
// requests; a request without an outcome (the run was interrupted) has a
// zero Outcome but for its Key.
func Do(ctx context.Context, m *imodel.Model, cfg Config, requests []Request) ([]Outcome, Stats, error) {
	out := make([]Outcome, len(requests))
	at := make(map[string][]int, len(requests)) // the indices of each key
	for i, q := range requests {
		out[i].Key = q.Key
		at[q.Key] = append(at[q.Key], i)
	}
	seq := func(yield func(Request) bool) {
		for _, q := range requests {
			if !yield(q) {
				return
			}
		}
	}
	st, err := Run(ctx, m, cfg, seq, func(o Outcome) {
		// The first request of a key is the one the run took; the refusals
		// of the others are theirs, in order.
		idx := at[o.Key]
		if info, _ := o.Event.Failure(); info.Kind == kindDuplicateKey {
			idx = idx[1:]
		}
		for _, i := range idx {
			if out[i].Event.Status == 0 {
				out[i] = o
				return
			}
		}
	})
	return out, st, err
}

// run is what the actors of a run share: settings and thread-safe parts.
type run struct {
	cfg     Config
	model   *imodel.Model
	prov    provider
	pname   imodel.Provider
	base    string
	journal *journal
	// ctx carries the caller's values to the requests sent online.
	ctx context.Context
	// io bounds the HTTP requests: cancelled when the run ends.
	io     context.Context
	wg     sync.WaitGroup
	out    *outbox
	runID  string
	parts  atomic.Int64
	system *actor.ActorSystem

	mu      sync.Mutex
	claimed map[string]bool // batch IDs the journal knows
}

func newRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newPartID names a new part, uniquely across runs.
func (r *run) newPartID() string { return fmt.Sprintf("%s-%d", r.runID, r.parts.Add(1)) }

func (r *run) claim(id string) {
	r.mu.Lock()
	r.claimed[id] = true
	r.mu.Unlock()
}

func (r *run) isClaimed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.claimed[id]
}

// async runs f off the actors' goroutines, with the context of the run's
// I/O; the run waits for it before it returns.
func (r *run) async(f func(ctx context.Context)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f(r.io)
	}()
}

// send sends msg to pid from outside the actors.
func (r *run) send(pid *actor.PID, msg any) { r.system.Root.Send(pid, msg) }

// resume reads the journal's parts that are still open: it refuses a
// journal whose open parts belong to another endpoint, looks up at the
// provider each part whose create may have been lost, and returns the
// parts with a batch to poll.
func (r *run) resume(ctx context.Context, recs []record) ([]*part, error) {
	var open []*journaled
	foreign := &ForeignBatchesError{Journal: r.cfg.Journal}
	for _, jp := range fold(recs) {
		if jp.batch != "" {
			r.claimed[jp.batch] = true
		}
		if !jp.open() {
			continue
		}
		if jp.submit.Provider != string(r.pname) || jp.submit.BaseURL != r.base {
			foreign.Provider, foreign.BaseURL = jp.submit.Provider, jp.submit.BaseURL
			foreign.Batches++
			continue
		}
		open = append(open, jp)
	}
	if foreign.Batches > 0 {
		return nil, foreign
	}
	var parts []*part
	for _, jp := range open {
		s := jp.submit
		p := &part{id: s.Part, model: s.Model, keys: s.Keys, hashes: s.Hashes, tokens: s.Tokens, fileID: s.File,
			submitted: s.At, created: jp.created, batchID: jp.batch, resumed: true}
		if p.batchID == "" {
			// Recorded before its create, and nothing after: look for it.
			id, err := r.prov.find(ctx, p, r.isClaimed)
			switch {
			case errors.Is(err, errNotCreated):
				r.cfg.Logger.Info("batchapi: a batch whose create was interrupted was not created", slog.String("part", p.id))
				if err := r.journal.append(record{Event: eventRefused, Part: p.id, Reason: "not created: its create did not take effect"}); err != nil {
					return nil, err
				}
				continue
			case err != nil:
				return nil, fmt.Errorf("batchapi: looking for the batch of part %s, whose create was interrupted: %w", p.id, err)
			}
			r.cfg.Logger.Info("batchapi: found the batch of an interrupted create", slog.String("part", p.id), slog.String("batch", id))
			if err := r.adopt(p, id); err != nil {
				return nil, err
			}
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// run starts the actors, feeds them the requests and delivers the outcomes
// until the run ends, then stops everything it started.
func (r *run) run(ctx context.Context, resumed []*part, requests iter.Seq[Request], deliver func(Outcome)) (Stats, error) {
	ioCtx, cancelIO := context.WithCancel(context.WithoutCancel(ctx))
	r.io = ioCtx
	r.system = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	sup := r.system.Root.Spawn(supervisorProps(r, resumed))
	stopFeed := make(chan struct{})
	r.async(func(context.Context) { r.feed(sup, requests, stopFeed) })

	st, err := r.loop(ctx, sup, deliver, stopFeed)

	r.system.Root.StopFuture(sup).Wait()
	cancelIO()
	r.wg.Wait()
	r.system.Shutdown()
	return st, err
}

// loop delivers what the supervisor puts in the outbox, records in the
// journal the batches settled, and tells the supervisor of an interrupt,
// until it says the run is over.
func (r *run) loop(ctx context.Context, sup *actor.PID, deliver func(Outcome), stopFeed chan struct{}) (Stats, error) {
	var journalErr error
	var settling []*settledPart // settled, their outcomes not yet durable
	interrupt := ctx.Done()
	stopFeeding := sync.OnceFunc(func() { close(stopFeed) })
	defer stopFeeding()
	for {
		select {
		case <-interrupt:
			interrupt = nil
			stopFeeding()
			r.send(sup, &interruptRun{})
		case <-r.out.ready:
			for _, v := range r.out.take() {
				switch v := v.(type) {
				case Outcome:
					deliver(v)
				case *settledPart:
					settling = append(settling, v)
				case *progressed:
					if r.cfg.Progress != nil {
						r.cfg.Progress(v.stats)
					}
				case *quiesced:
					stopFeeding()
					cancel := r.cfg.CancelRemote && !v.fatal
					if !cancel && !v.fatal && v.running > 0 && r.cfg.OnInterrupt != nil {
						cancel = r.cfg.OnInterrupt(v.running)
					}
					r.send(sup, &wrapUp{cancel: cancel})
				case *finished:
					_, journalErr = r.settle(settling, journalErr)
					switch {
					case v.err != nil:
						return v.stats, errors.Join(v.err, journalErr)
					case journalErr != nil:
						return v.stats, journalErr
					case v.interrupted:
						return v.stats, ErrInterrupted
					}
					return v.stats, nil
				}
			}
			settling, journalErr = r.settle(settling, journalErr)
		}
	}
}

// settle records settled the parts whose delivered outcomes are durable,
// and returns those whose are not yet. A crash before a part's record
// resumes the part, and its outcomes are delivered again; a crash after it
// finds them where the caller keeps them.
func (r *run) settle(parts []*settledPart, failed error) ([]*settledPart, error) {
	if failed != nil {
		return nil, failed
	}
	var left []*settledPart
	for _, sp := range parts {
		if r.cfg.Durable != nil {
			ok, err := r.cfg.Durable(sp.keys)
			if err != nil {
				return nil, fmt.Errorf("batchapi: keeping the outcomes: %w", err)
			}
			if !ok {
				left = append(left, sp)
				continue
			}
		}
		if err := r.journal.append(record{Event: eventSettled, Part: sp.p.id, Batch: sp.p.batchID}); err != nil {
			return nil, err
		}
	}
	return left, nil
}

// feedChunk is how many requests the feeder sends in one message.
const feedChunk = 256

// feed reads the requests, prepares each off the actors' goroutines, and
// hands them to the supervisor in chunks, each once the previous one was
// taken: a run holds only the batches it is building and creating.
func (r *run) feed(sup *actor.PID, requests iter.Seq[Request], stop <-chan struct{}) {
	chunk := make([]*prepared, 0, feedChunk)
	flush := func() bool {
		if len(chunk) == 0 {
			return true
		}
		ack := make(chan struct{})
		r.send(sup, &addItems{items: chunk, ack: ack})
		chunk = make([]*prepared, 0, feedChunk)
		select {
		case <-ack:
			return true
		case <-stop:
			return false
		}
	}
	for q := range requests {
		select {
		case <-stop:
			return
		default:
		}
		chunk = append(chunk, r.prepare(q))
		if len(chunk) == feedChunk && !flush() {
			return
		}
	}
	if flush() {
		r.send(sup, &inputEnded{})
	}
}

// prepared is a request made ready for a batch, or the reason it cannot go
// into one.
type prepared struct {
	it       *item
	req      messages.Request // as a call would make it, without its body: for the snapshots
	opts     []imodel.CallOption
	answered string
	err      error
}

// prepare builds the request as the model would send it, estimates it, and
// encodes it as the batch's upload holds it.
func (r *run) prepare(q Request) *prepared {
	p := &prepared{it: &item{key: q.Key, customID: customID(r.pname, q.Key), line: q.Line}, opts: q.Options, answered: q.Answered}
	if q.Key == "" {
		p.err = itemError("invalid_request", "a request without a key")
		return p
	}
	req, err := r.model.NewRequest(q.Payload, q.Options...)
	if err != nil {
		p.err = err
		return p
	}
	if price, ok := req.Pricing.(imodel.Price); ok {
		// A batch's answer costs the batch price; the estimate, priced
		// the same way, scales with it.
		req.Pricing = price.Batch()
		req.EstimatedCost *= 1 - price.BatchDiscount
	}
	body := req.Endpoint.Payload
	var m struct {
		Model string `json:"model"`
	}
	json.Unmarshal(body, &m)
	p.it.model, p.it.tokens, p.it.hash = m.Model, req.Tokens, bodyHash(body)
	if p.it.piece, err = r.prov.encode(p.it.customID, body); err != nil {
		p.err = err
		return p
	}
	// The run keeps what a request's snapshots need, and its body once, in
	// the piece: not the call (a batch's requests are not called), nor the
	// body and headers of the endpoint, which the snapshots would copy for
	// each request (they show its method and URL).
	req.Call, req.Endpoint.Payload, req.Endpoint.Header = nil, nil, nil
	p.req = req
	return p
}

// bodyHash is a short hash of a request body: 64 bits of its SHA-256, in
// hex, enough to tell an edited request from the one a batch holds.
func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:8])
}

// outbox carries what the supervisor hands to the goroutine that called
// Run: outcomes, settled parts and the run's end, in order. Putting never
// blocks, so that an actor may put.
type outbox struct {
	mu    sync.Mutex
	items []any
	ready chan struct{}
}

func newOutbox() *outbox { return &outbox{ready: make(chan struct{}, 1)} }

func (o *outbox) put(v any) {
	o.mu.Lock()
	o.items = append(o.items, v)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

func (o *outbox) take() []any {
	o.mu.Lock()
	defer o.mu.Unlock()
	items := o.items
	o.items = nil
	return items
}
