package batchapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/selftimer"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// The supervisor owns the run's requests and batches. It spawns the
// submitter, which builds and creates the batches, and a poller for each
// batch created (or resumed from the journal); it turns what an ended batch
// says of each request into the request's outcome, puts a request that got
// no answer into a new batch (or online), and hands the outcomes to the
// goroutine that called Run through the outbox.
type supervisor struct {
	r         *run
	submitter *actor.PID

	entries map[string]*entry
	open    int              // entries without an outcome
	parts   map[string]*part // created or resumed, not yet settled
	pollers map[string]*actor.PID
	// resumedKeys maps the keys of the resumed parts to their part and the
	// hash of the body it holds for the key, until
	// the request is added (or the input ends without it).
	resumedKeys map[string]resumedKey
	pending     map[*part]map[string]bool // keys of a part it owes an answer to
	delivered   map[*part][]string        // keys of a part whose outcome it delivered
	// stashed are the ends of resumed batches that came before the input
	// had ended: read once the run knows which of their requests it wants.
	stashed   []*batchEnded
	inputDone bool

	online      []*entry // to be sent online, in order
	onlineLive  map[string]*runtime.Handle
	onlineCount int // submitted and not ended
	queueFull   bool
	onlineTimer selftimer.Timer

	stats    Stats
	reported Stats // the stats last put in the outbox

	interrupted bool
	fatalErr    error
	quiesced    bool // the run has been told how many batches are left running
	wrapping    bool // told to wrap up: waiting for cancels and online requests
	cancels     int  // cancels asked and not answered
	grace       selftimer.Timer
	done        bool
	restarted   bool // an incarnation made by a restart
}

// resumedKey is a key of a resumed part, and the hash of the body the part
// holds for it.
type resumedKey struct {
	p    *part
	hash string
}

// entry is one request of the run.
type entry struct {
	it       *item
	opts     []imodel.CallOption
	answered string
	lc       *messages.Lifecycle
	part     *part // the batch it is in or was last in
	batches  int   // batches it went through
	tries    int   // of those, the ones that count against MaxAttempts
	ended    bool
}

// Messages of the supervisor.
type (
	addItems struct {
		items []*prepared
		ack   chan struct{}
	}
	inputEnded struct{}
	created    struct{ p *part }
	refused    struct {
		p   *part
		err error
	}
	fatal      struct{ err error }
	batchEnded struct {
		p       *part
		st      batchStatus
		results map[string]itemResult
		err     error // the batch could not be followed to its end
	}
	cancelled struct {
		p   *part
		err error
	}
	onlineStarted struct {
		key string
		h   *runtime.Handle
	}
	onlineEnded struct {
		key string
		ev  messages.Event
		err error // Submit refused it
	}
	onlineRetry  struct{}
	interruptRun struct{}
	wrapUp       struct{ cancel bool }
	graceOver    struct{}
)

// Outbox items besides outcomes.
type (
	settledPart struct {
		p    *part
		keys []string // whose outcomes it delivered
	}
	quiesced struct {
		running int
		fatal   bool // the run stops for an error, not for the caller
	}
	progressed struct{ stats Stats }
	finished   struct {
		stats       Stats
		interrupted bool
		err         error
	}
)

var (
	graceMsg  = &graceOver{}
	onlineMsg = &onlineRetry{}
)

func supervisorProps(r *run, resumed []*part) *actor.Props {
	incarnations := 0 // the producer runs on the actor's goroutine
	return actor.PropsFromProducer(func() actor.Actor {
		incarnations++
		s := &supervisor{r: r, entries: map[string]*entry{}, parts: map[string]*part{}, pollers: map[string]*actor.PID{},
			resumedKeys: map[string]resumedKey{}, pending: map[*part]map[string]bool{}, delivered: map[*part][]string{},
			onlineLive: map[string]*runtime.Handle{}, restarted: incarnations > 1}
		for _, p := range resumed {
			s.parts[p.id] = p
			s.pending[p] = map[string]bool{}
			for i, k := range p.keys {
				rk := resumedKey{p: p}
				if i < len(p.hashes) {
					rk.hash = p.hashes[i]
				}
				s.resumedKeys[k] = rk
				s.pending[p][k] = true
			}
		}
		return s
	})
}

// HandleFailure implements actor.SupervisorStrategy for the supervisor's
// children: a poller that panics is made anew and polls again; the
// submitter, which holds the batches being built, resumes with them.
func (s *supervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
	s.r.cfg.Logger.Error("batchapi: an actor of the run failed", slog.String("actor", child.Id), slog.Any("reason", reason))
	if child.Equal(s.submitter) {
		sup.ResumeChildren(child)
		return
	}
	sup.RestartChildren(child)
}

// Receive implements actor.Actor.
func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if s.restarted {
			// Its state (the requests, the batches) is gone with the
			// incarnation that failed: end the run rather than hang it.
			s.fatalErr = errors.New("batchapi: the run's supervisor failed; rerun to resume")
			s.finish(true)
			return
		}
		s.start(ctx)
	case *addItems:
		s.add(ctx, m)
	case *inputEnded:
		s.inputEnded(ctx)
	case *created:
		s.created(ctx, m.p)
	case *refused:
		s.refused(m.p, m.err)
	case *batchEnded:
		s.batchEnded(ctx, m)
	case *onlineStarted:
		s.onlineLive[m.key] = m.h
		if s.interrupted && m.h.Latest().Status < messages.StatusCalling {
			m.h.Cancel()
		}
	case *onlineEnded:
		s.onlineEnded(ctx, m)
	case *onlineRetry:
		s.queueFull = false
		s.sendOnline(ctx)
	case *fatal:
		if s.fatalErr == nil {
			s.fatalErr = m.err
		}
		s.interrupt(ctx)
	case *interruptRun:
		s.interrupt(ctx)
	case *quiet:
		s.quiesce()
	case *wrapUp:
		s.wrapUp(ctx, m.cancel)
	case *cancelled:
		s.cancels--
		if m.err == nil {
			s.stats.Cancelled++
		} else {
			s.r.cfg.Logger.Warn("batchapi: cancelling a batch failed", slog.String("batch", m.p.batchID), slog.String("error", m.err.Error()))
		}
		s.checkWrapped()
	case *graceOver:
		if !s.wrapping {
			s.quiesce()
		} else {
			s.finish(true)
		}
	case *actor.Stopping:
		s.grace.Stop()
		s.onlineTimer.Stop()
	}
	s.checkDone()
	s.progress()
}

// progress puts the run's stats in the outbox if they changed since they
// were last put there.
func (s *supervisor) progress() {
	if s.stats.Running = len(s.pollers); s.stats != s.reported && !s.done {
		s.reported = s.stats
		s.r.out.put(&progressed{stats: s.stats})
	}
}

func (s *supervisor) start(ctx actor.Context) {
	enqueued := map[string]int{}
	for _, p := range s.parts {
		enqueued[p.model] += p.tokens
		s.stats.Resumed++
	}
	self := ctx.Self()
	s.submitter = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return newSubmitter(s.r, self, enqueued) }))
	for _, p := range s.parts {
		s.follow(ctx, p, true)
	}
}

// follow spawns the poller of p.
func (s *supervisor) follow(ctx actor.Context, p *part, now bool) {
	sup := ctx.Self()
	s.pollers[p.id] = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &poller{r: s.r, sup: sup, p: p, first: now}
	}))
}

// add takes a chunk of requests from the feeder: each goes into the
// resumed batch that holds it, or to the submitter.
func (s *supervisor) add(ctx actor.Context, m *addItems) {
	var toPlace []*item
	now := time.Now()
	open, _, end := s.r.prov.frame()
	for _, pr := range m.items {
		it := pr.it
		if s.interrupted {
			break
		}
		if _, dup := s.entries[it.key]; dup {
			s.deliver(s.lone(pr, now, itemError(kindDuplicateKey, "another request of the run has the key %q", it.key)))
			continue
		}
		if pr.err != nil {
			s.deliver(s.lone(pr, now, pr.err))
			continue
		}
		switch limit := s.r.cfg.EnqueuedTokens; {
		case limit > 0 && it.tokens > limit:
			s.deliver(s.lone(pr, now, itemError("too_many_tokens",
				"estimated %d tokens exceed the %d tokens a batch may hold (EnqueuedTokens): the request could never run", it.tokens, limit)))
			continue
		case len(open)+len(it.piece)+len(end) > s.r.cfg.MaxBytes:
			s.deliver(s.lone(pr, now, itemError("too_large",
				"the request takes %d bytes, more than the %d bytes a batch may hold", len(it.piece), s.r.cfg.MaxBytes)))
			continue
		}
		e := &entry{it: it, opts: pr.opts, answered: pr.answered}
		s.entries[it.key] = e
		s.open++
		if rk, ok := s.resumedKeys[it.key]; ok {
			delete(s.resumedKeys, it.key)
			if rk.p.batchID != pr.answered && rk.hash == it.hash {
				s.attach(e, &pr.req, rk.p)
				continue
			}
			// Its answer from p was taken already, or p holds another
			// body of it than the one asked now: p owes it nothing.
			s.resolve(rk.p, it.key)
		}
		e.lc = messages.NewLifecycle(uuid.New(), &pr.req, now)
		e.lc.Pending(now)
		e.lc.Queue(now, 1, "waiting for a batch")
		toPlace = append(toPlace, it)
	}
	if len(toPlace) == 0 || s.interrupted {
		close(m.ack)
		return
	}
	ctx.Send(s.submitter, &place{items: toPlace, ack: m.ack})
}

// lone is the outcome of a request refused before any batch.
func (s *supervisor) lone(pr *prepared, now time.Time, err error) Outcome {
	lc := messages.NewLifecycle(uuid.New(), &pr.req, now)
	lc.Pending(now)
	return Outcome{Key: pr.it.key, CustomID: pr.it.customID, Event: lc.Fail(now, err, messages.Result{})}
}

// attach makes e, made from req, a request of p, a batch resumed from the
// journal: its snapshots are dated from p's.
func (s *supervisor) attach(e *entry, req *messages.Request, p *part) {
	e.lc = messages.NewLifecycle(uuid.New(), req, p.submitted)
	e.lc.Pending(p.submitted)
	e.lc.Queue(p.submitted, 1, "in a batch of an earlier run")
	e.lc.Process(p.submitted)
	e.lc.Call(p.created)
	e.part, e.batches, e.tries = p, 1, 1
}

func (s *supervisor) inputEnded(ctx actor.Context) {
	s.inputDone = true
	ctx.Send(s.submitter, &buildAll{})
	// The resumed batches' requests that this run did not add are not
	// wanted: their answers were taken before.
	for key, rk := range s.resumedKeys {
		s.resolve(rk.p, key)
	}
	s.resumedKeys = nil
	stashed := s.stashed
	s.stashed = nil
	for _, m := range stashed {
		s.readBatch(ctx, m)
	}
	for _, p := range s.parts {
		if len(s.pending[p]) == 0 {
			if pid := s.pollers[p.id]; pid != nil {
				ctx.Stop(pid)
				delete(s.pollers, p.id)
			}
			s.settle(p)
		}
	}
}

func (s *supervisor) created(ctx actor.Context, p *part) {
	s.stats.Created++
	s.parts[p.id] = p
	keys := map[string]bool{}
	for _, it := range p.items {
		keys[it.key] = true
		e := s.entries[it.key]
		e.part = p
		e.batches++
		e.tries++
		e.lc.Process(p.built)
		e.lc.Call(p.created)
	}
	s.pending[p] = keys
	p.items = nil
	s.follow(ctx, p, false)
}

// refused fails the requests of a part the provider would not create.
func (s *supervisor) refused(p *part, err error) {
	now := time.Now()
	for _, it := range p.items {
		e := s.entries[it.key]
		s.end(e, p, e.lc.Fail(now, err, messages.Result{}))
	}
}

// batchEnded frees the ended batch's room at the provider, and reads what
// it says; that of a resumed batch waits for the input's end.
func (s *supervisor) batchEnded(ctx actor.Context, m *batchEnded) {
	p := m.p
	delete(s.pollers, p.id)
	s.stats.Ended++
	s.progress() // before the outcomes it brings
	p.ended = true
	ctx.Send(s.submitter, &released{model: p.model, tokens: p.tokens})
	if p.resumed && !s.inputDone {
		s.stashed = append(s.stashed, m)
		return
	}
	s.readBatch(ctx, m)
}

// readBatch turns what an ended batch says into outcomes.
func (s *supervisor) readBatch(ctx actor.Context, m *batchEnded) {
	p := m.p
	now := time.Now()
	var again []*item
	var requeue []*item
	fail := func(key string, err error, res messages.Result) {
		if e := s.wanted(p, key); e != nil {
			s.end(e, p, e.lc.Fail(now, err, res))
		}
	}
	switch {
	case m.err != nil:
		for key := range s.pending[p] {
			fail(key, m.err, messages.Result{})
		}
	case tokenLimited(m.st.failures):
		// The provider's queue was full: the same requests go into a new
		// batch once it has room. Not an attempt of theirs.
		s.r.cfg.Logger.Info("batchapi: the provider's enqueued-token limit refused a batch; creating it again later", slog.String("batch", p.batchID))
		for key := range s.pending[p] {
			if e := s.wanted(p, key); e != nil {
				e.tries--
				e.lc.Retry(now, s.r.cfg.Poll, batchFailure(s.r.model, m.st.failures[0]), messages.Result{})
				requeue = append(requeue, e.it)
				s.resolve(p, key)
			}
		}
	case len(m.st.failures) > 0:
		s.failedBatch(ctx, p, m.st.failures, &again)
	default:
		for key := range s.pending[p] {
			res, ok := m.results[customID(s.r.pname, key)]
			if !ok {
				res = itemResult{outcome: notExecuted, note: "the batch's results do not have it"}
			}
			if e := s.wanted(p, key); e != nil {
				s.outcome(ctx, e, p, res, &again)
			}
		}
	}
	if len(requeue) > 0 {
		ctx.Send(s.submitter, &place{items: requeue, ack: make(chan struct{}), hold: true})
	}
	s.resubmit(ctx, again)
	s.settleIfDone(p)
}

// wanted is the entry of key if the run waits for its answer from p; nil,
// and p owes key nothing, if the run has no such request or it is past p.
func (s *supervisor) wanted(p *part, key string) *entry {
	e := s.entries[key]
	if e == nil || e.ended || e.part != p {
		s.resolve(p, key)
		return nil
	}
	return e
}

// failedBatch handles an OpenAI batch that failed validation: a request on
// a line the provider named fails with its reason, as a bad request; the
// others did not run and go into a new batch.
func (s *supervisor) failedBatch(ctx actor.Context, p *part, failures []wire.BatchError, again *[]*item) {
	now := time.Now()
	onLine := map[int]wire.BatchError{}
	var whole *wire.BatchError
	for i, f := range failures {
		if f.Line != nil {
			onLine[*f.Line] = f
		} else if whole == nil {
			whole = &failures[i]
		}
	}
	for i, key := range p.keys {
		e := s.wanted(p, key)
		if e == nil {
			continue
		}
		if f, ok := onLine[i+1]; ok {
			res, err := s.r.model.ReadResponse(http.StatusBadRequest, nil, openAIError(f))
			s.end(e, p, e.lc.Fail(now, err, res))
			continue
		}
		why := wire.BatchError{Code: "not_run", Message: "another request of its batch failed validation"}
		if whole != nil {
			why = *whole
		}
		s.again(ctx, e, p, batchFailure(s.r.model, why), messages.Result{}, again)
	}
}

// openAIError is the body of the error a call would get for a request the
// provider found invalid.
func openAIError(f wire.BatchError) []byte {
	body := wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, f.Code, f.Message)
	body.Error.Param = f.Param
	b, _ := json.Marshal(body)
	return b
}

// batchFailure is the error of the requests of a batch that failed as a
// whole: a server error, as a call would see it, which another batch may
// not meet.
func batchFailure(m *imodel.Model, f wire.BatchError) error {
	b, _ := json.Marshal(wire.NewOpenAIErrorBody(wire.TypeServerError, f.Code, "the batch failed: "+f.Message))
	_, err := m.ReadResponse(http.StatusInternalServerError, nil, b)
	return err
}

// tokenLimited reports a batch refused for the provider's enqueued-token
// limit.
func tokenLimited(failures []wire.BatchError) bool {
	for _, f := range failures {
		if f.Code == "token_limit_exceeded" {
			return true
		}
	}
	return false
}

// outcome reads what batch p says of e's request.
func (s *supervisor) outcome(ctx actor.Context, e *entry, p *part, r itemResult, again *[]*item) {
	now := time.Now()
	switch r.outcome {
	case answered:
		res, err := s.r.model.ReadResponse(r.status, nil, r.body)
		switch {
		case err == nil:
			s.end(e, p, e.lc.Complete(now, res))
		case imodel.Retryable(err):
			s.again(ctx, e, p, err, res, again)
		default:
			s.end(e, p, e.lc.Fail(now, err, res))
		}
	case expired:
		s.again(ctx, e, p, itemError("expired", "its batch %s ended before it ran: %s", p.batchID, r.note), messages.Result{}, again)
	case canceled:
		s.again(ctx, e, p, itemError("cancelled", "its batch %s was cancelled before it ran: %s", p.batchID, r.note), messages.Result{}, again)
	default:
		s.again(ctx, e, p, itemError("not_run", "its batch %s did not run it: %s", p.batchID, r.note), messages.Result{}, again)
	}
}

// again sends a request that got no answer from p into a new batch, or
// online, or fails it once it has been in MaxAttempts batches. An
// interrupted run leaves it without an outcome, and p unsettled, for a
// later run.
func (s *supervisor) again(ctx actor.Context, e *entry, p *part, err error, res messages.Result, again *[]*item) {
	now := time.Now()
	switch {
	case s.interrupted:
		return
	case e.tries >= s.r.cfg.MaxAttempts:
		s.end(e, p, e.lc.Fail(now, err, res))
		return
	case s.r.cfg.FallbackOnline:
		s.stats.Online++
		s.online = append(s.online, e)
		s.resolve(p, e.it.key)
		s.sendOnline(ctx)
		return
	}
	s.stats.Resubmitted++
	e.lc.Retry(now, 0, err, res)
	*again = append(*again, e.it)
	s.resolve(p, e.it.key)
}

func (s *supervisor) resubmit(ctx actor.Context, items []*item) {
	if len(items) > 0 {
		ctx.Send(s.submitter, &place{items: items, ack: make(chan struct{})})
	}
}

// end gives e its outcome from p (nil for none).
func (s *supervisor) end(e *entry, p *part, ev messages.Event) {
	s.ended(e)
	o := Outcome{Key: e.it.key, CustomID: e.it.customID, Event: ev, Batches: e.batches}
	if p != nil && p.batchID != "" {
		o.Batch = p.batchID
		s.resolve(p, e.it.key)
		s.delivered[p] = append(s.delivered[p], e.it.key)
	}
	s.deliver(o)
}

func (s *supervisor) deliver(o Outcome) { s.r.out.put(o) }

// ended marks e ended and lets go of what it held: the run remembers only
// its key (for a second request of the key) and that it has ended.
func (s *supervisor) ended(e *entry) {
	e.ended = true
	s.open--
	e.lc, e.opts = nil, nil
	e.it = &item{key: e.it.key, customID: e.it.customID}
}

// resolve records that p owes key nothing more.
func (s *supervisor) resolve(p *part, key string) {
	if keys := s.pending[p]; keys != nil {
		delete(keys, key)
	}
}

// settleIfDone settles p once it has ended and owes nothing.
func (s *supervisor) settleIfDone(p *part) {
	if p.ended && len(s.pending[p]) == 0 {
		s.settle(p)
	}
}

func (s *supervisor) settle(p *part) {
	if _, ok := s.parts[p.id]; !ok {
		return
	}
	delete(s.parts, p.id)
	delete(s.pending, p)
	s.r.out.put(&settledPart{p: p, keys: s.delivered[p]})
	delete(s.delivered, p)
}

// sendOnline submits the requests waiting to go online, at most
// OnlineWindow at a time, each from a goroutine that waits for its end.
func (s *supervisor) sendOnline(ctx actor.Context) {
	self := ctx.Self()
	for len(s.online) > 0 && s.onlineCount < s.r.cfg.OnlineWindow && !s.queueFull && !s.interrupted {
		e := s.online[0]
		s.online = s.online[1:]
		s.onlineCount++
		key, it, opts := e.it.key, e.it, e.opts
		s.r.async(func(c context.Context) {
			payload, err := s.payload(it)
			if err != nil {
				s.r.send(self, &onlineEnded{key: key, err: err})
				return
			}
			h, err := s.r.model.Submit(s.r.ctx, payload, append(opts, imodel.WithTokens(it.tokens))...)
			if err != nil {
				s.r.send(self, &onlineEnded{key: key, err: err})
				return
			}
			s.r.send(self, &onlineStarted{key: key, h: h})
			select {
			case <-h.Done():
				s.r.send(self, &onlineEnded{key: key, ev: h.Latest()})
			case <-c.Done():
			}
		})
	}
}

// payload is the body of it, to send online.
func (s *supervisor) payload(it *item) (map[string]any, error) {
	body, err := s.r.prov.body(it.piece)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var payload map[string]any
	return payload, dec.Decode(&payload)
}

func (s *supervisor) onlineEnded(ctx actor.Context, m *onlineEnded) {
	s.onlineCount--
	delete(s.onlineLive, m.key)
	e := s.entries[m.key]
	switch {
	case errors.Is(m.err, messages.ErrQueueFull):
		// The executor's queue is full: try again once a request ends.
		s.online = append([]*entry{e}, s.online...)
		s.queueFull = true
		if s.onlineCount == 0 {
			s.onlineTimer.Arm(ctx, time.Now(), 100*time.Millisecond, onlineMsg)
		}
		return
	case m.err != nil:
		s.end(e, nil, e.lc.Fail(time.Now(), m.err, messages.Result{}))
	case m.ev.Status == messages.StatusCancelled && s.interrupted:
		// Cancelled by the interrupt: it remains for a later run.
	default:
		s.ended(e)
		o := Outcome{Key: e.it.key, CustomID: e.it.customID, Event: m.ev, Batches: e.batches, Online: true}
		if e.part != nil {
			o.Batch = e.part.batchID
		}
		s.deliver(o)
	}
	s.queueFull = false
	s.sendOnline(ctx)
	s.checkWrapped()
}

// interrupt stops the creating of batches; once no create is in flight
// (or Grace has passed), the run is asked whether to cancel the batches
// left running.
func (s *supervisor) interrupt(ctx actor.Context) {
	if s.interrupted {
		return
	}
	s.interrupted = true
	s.online = nil
	for _, h := range s.onlineLive {
		if h.Latest().Status < messages.StatusCalling {
			h.Cancel()
		}
	}
	ctx.Request(s.submitter, &stopCreating{})
	s.grace.Arm(ctx, time.Now(), s.r.cfg.Grace, graceMsg)
}

// quiesce tells the run how many batches are left running.
func (s *supervisor) quiesce() {
	if s.quiesced || s.done {
		return
	}
	s.quiesced = true
	s.grace.Stop()
	s.r.out.put(&quiesced{running: len(s.pollers), fatal: s.fatalErr != nil})
}

func (s *supervisor) wrapUp(ctx actor.Context, cancel bool) {
	s.wrapping = true
	if cancel {
		for _, pid := range s.pollers {
			ctx.Send(pid, &cancelBatch{})
			s.cancels++
		}
	}
	s.grace.Arm(ctx, time.Now(), s.r.cfg.Grace, graceMsg)
	s.checkWrapped()
}

// checkWrapped ends an interrupted run once its cancels have been answered
// and its online requests have ended.
func (s *supervisor) checkWrapped() {
	if s.wrapping && s.cancels == 0 && s.onlineCount == 0 {
		s.finish(true)
	}
}

// checkDone ends the run once every request has its outcome.
func (s *supervisor) checkDone() {
	if !s.interrupted && s.inputDone && s.open == 0 && len(s.online) == 0 {
		s.finish(false)
	}
}

func (s *supervisor) finish(interrupted bool) {
	if s.done {
		return
	}
	s.done = true
	s.grace.Stop()
	s.stats.Running = len(s.pollers)
	s.r.out.put(&finished{stats: s.stats, interrupted: interrupted, err: s.fatalErr})
}

func (s *supervisor) String() string { return fmt.Sprintf("batchapi supervisor of run %s", s.r.runID) }
