package batchapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/internal/selftimer"
)

// The submitter splits requests into batches within the limits (requests,
// bytes, and the provider's enqueued tokens), and creates them one at a
// time, each off its goroutine. It tells the supervisor of every batch
// created, and holds back the feeder while a built batch waits.
type submitter struct {
	r   *run
	sup *actor.PID

	builders map[string]*builder // by model: a batch holds one model
	ready    []*part             // built, waiting to be created, in order
	creating *part               // being created, nil if none
	failures int                 // consecutive failed creates of creating's part
	// enqueued are the estimated tokens of the batches created and not
	// yet ended, by model.
	enqueued map[string]int
	// acks are the feeder's chunks placed while a built batch waited: each
	// is acknowledged once the batch before it is being created.
	acks []chan struct{}

	final   bool       // the input has ended: build batches at once
	stopped bool       // interrupted: create nothing more
	quietTo *actor.PID // told once no create is in flight after a stop
	// notBefore delays the next create (a refusal to back off from, or a
	// full queue at the provider); timer fires at it.
	notBefore time.Time
	timer     selftimer.Timer
}

// builder is a batch being filled.
type builder struct {
	items  []*item
	size   int // of the upload, framed
	tokens int
}

// Messages of the submitter.
type (
	// place adds items to the batches being built; ack is closed once
	// they are placed and no built batch is left waiting behind the one
	// being created. hold makes the batches they go into wait for a batch
	// to end (or one poll interval) before they are created.
	place struct {
		items []*item
		ack   chan struct{}
		hold  bool
	}
	// buildAll: the input has ended; build what is being filled.
	buildAll struct{}
	// released: a batch of model with these tokens has ended.
	released struct {
		model  string
		tokens int
	}
	// stopCreating: the run is interrupted. The submitter answers quiet
	// once no create is in flight.
	stopCreating struct{}
	quiet        struct{}
	createDone   struct {
		p   *part
		err error
	}
	retryCreate struct{}
)

// maxWaiting is how many built batches may wait for their create before
// the feeder is held back.
const maxWaiting = 1

func newSubmitter(r *run, sup *actor.PID, enqueued map[string]int) *submitter {
	return &submitter{r: r, sup: sup, builders: map[string]*builder{}, enqueued: enqueued}
}

// Receive implements actor.Actor.
func (s *submitter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *place:
		s.place(ctx, m)
	case *buildAll:
		s.final = true
		s.buildAll()
		s.next(ctx)
	case *released:
		s.enqueued[m.model] -= m.tokens
		s.next(ctx)
	case *createDone:
		s.created(ctx, m)
	case *retryCreate:
		s.next(ctx)
	case *stopCreating:
		s.stopped = true
		s.builders, s.ready = map[string]*builder{}, nil
		s.release()
		s.timer.Stop()
		if s.creating == nil {
			ctx.Send(ctx.Sender(), &quiet{})
		} else {
			s.quietTo = ctx.Sender()
		}
	case *actor.Stopping:
		s.timer.Stop()
		s.release()
	}
}

func (s *submitter) place(ctx actor.Context, m *place) {
	if s.stopped {
		close(m.ack)
		return
	}
	cfg := s.r.cfg
	open, sep, end := s.r.prov.frame()
	for _, it := range m.items {
		b := s.builders[it.model]
		if b != nil && (len(b.items) >= cfg.MaxRequests ||
			len(open)+b.size+len(sep)+len(it.piece)+len(end) > cfg.MaxBytes ||
			cfg.EnqueuedTokens > 0 && b.tokens+it.tokens > cfg.EnqueuedTokens) {
			s.build(it.model, b)
			b = nil
		}
		if b == nil {
			b = &builder{size: -len(sep)}
			s.builders[it.model] = b
		}
		b.items = append(b.items, it)
		b.size += len(sep) + len(it.piece)
		b.tokens += it.tokens
	}
	if s.final || m.hold {
		s.buildAll()
	}
	if m.hold {
		s.holdOff(ctx, s.r.cfg.Poll)
	}
	s.acks = append(s.acks, m.ack)
	s.next(ctx)
}

// buildAll builds every batch being filled.
func (s *submitter) buildAll() {
	for model, b := range s.builders {
		s.build(model, b)
	}
}

// build makes the batch of b's items ready to be created.
func (s *submitter) build(model string, b *builder) {
	delete(s.builders, model)
	open, sep, end := s.r.prov.frame()
	p := &part{id: s.r.newPartID(), model: model, items: b.items, tokens: b.tokens, built: time.Now()}
	p.data = make([]byte, 0, len(open)+b.size+len(end))
	p.data = append(p.data, open...)
	for i, it := range b.items {
		if i > 0 {
			p.data = append(p.data, sep...)
		}
		p.data = append(p.data, it.piece...)
		p.keys = append(p.keys, it.key)
		p.hashes = append(p.hashes, it.hash)
		p.lines = append(p.lines, it.line)
	}
	p.data = append(p.data, end...)
	s.ready = append(s.ready, p)
}

// next starts the create of the first ready batch if none is in flight and
// the provider's queue has room for it, and lets the feeder go on while
// few enough batches wait.
func (s *submitter) next(ctx actor.Context) {
	if len(s.ready) <= maxWaiting {
		s.release()
	}
	if s.stopped || s.creating != nil || len(s.ready) == 0 {
		return
	}
	now := time.Now()
	if now.Before(s.notBefore) {
		s.timer.ArmBy(ctx, now, s.notBefore, retry)
		return
	}
	p := s.ready[0]
	if limit := s.r.cfg.EnqueuedTokens; limit > 0 && s.enqueued[p.model] > 0 && s.enqueued[p.model]+p.tokens > limit {
		return // a batch that ends makes room (released)
	}
	s.ready = s.ready[1:]
	s.creating = p
	self := ctx.Self()
	s.r.async(func(ctx2 context.Context) {
		err := s.r.create(ctx2, p)
		s.r.send(self, &createDone{p: p, err: err})
	})
	if len(s.ready) <= maxWaiting {
		s.release()
	}
}

// retry is the timer's message, one value so that arming reuses the timer.
var retry = &retryCreate{}

// holdOff delays the next create by d.
func (s *submitter) holdOff(ctx actor.Context, d time.Duration) {
	s.notBefore = time.Now().Add(d)
	s.timer.Arm(ctx, time.Now(), d, retry)
}

func (s *submitter) release() {
	for _, ack := range s.acks {
		close(ack)
	}
	s.acks = nil
}

func (s *submitter) created(ctx actor.Context, m *createDone) {
	p, err := m.p, m.err
	s.creating = nil
	var je *journalError
	switch {
	case err == nil:
		s.failures = 0
		s.enqueued[p.model] += p.tokens
		ctx.Send(s.sup, &created{p: p})
	case errors.As(err, &je):
		ctx.Send(s.sup, &fatal{err: err})
		s.stopped = true
	case transient(err) && s.stopped:
		// Interrupted: its requests remain for a later run, which looks
		// for the batch if the create may have taken effect.
	case transient(err) && s.failures+1 < s.r.cfg.MaxAttempts:
		s.failures++
		s.r.cfg.Logger.Warn("batchapi: creating a batch failed; trying again", slog.String("part", p.id),
			slog.Int("failures", s.failures), slog.String("error", err.Error()))
		s.ready = append([]*part{p}, s.ready...)
		s.holdOff(ctx, backoff(s.failures, s.r.cfg.Poll))
	default:
		s.failures = 0
		ctx.Send(s.sup, &refused{p: p, err: err})
	}
	if s.quietTo != nil && s.creating == nil {
		ctx.Send(s.quietTo, &quiet{})
		s.quietTo = nil
	}
	s.next(ctx)
}

// backoff is the wait before the n-th retry of a create: 1 s doubling, at
// most limit.
func backoff(n int, limit time.Duration) time.Duration {
	d := time.Second << min(n-1, 20)
	return min(d, limit)
}
