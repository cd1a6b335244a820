package batchapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/internal/selftimer"
)

// A poller follows one batch: it asks the provider how the batch stands
// every Poll, on its timer, and once the batch has ended reads its results
// and hands them to the supervisor. Each request to the provider runs off
// its goroutine and reports back by message; a failed one is tried again
// at the next poll, however long that takes, since the batch is paid for.
type poller struct {
	r    *run
	sup  *actor.PID
	p    *part
	tick *pollTick // this poller's timer message
	// first is the delay of the first poll: none for a batch resumed from
	// an earlier run, Poll for a new one.
	first bool

	timer  selftimer.Timer
	busy   bool         // a request to the provider is in flight
	ended  *batchStatus // the batch has ended: its results are to be read
	failed int          // consecutive failed requests
}

// Messages of the poller.
type (
	pollTick struct{}
	polled   struct {
		st  batchStatus
		err error
	}
	fetched struct {
		results map[string]itemResult
		err     error
	}
	// cancelBatch asks the poller to cancel its batch at the provider.
	cancelBatch   struct{}
	cancelReplied struct{ err error }
)

// Receive implements actor.Actor.
func (pl *poller) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		pl.tick = &pollTick{}
		if pl.first {
			pl.poll(ctx)
		} else {
			pl.arm(ctx)
		}
	case *pollTick:
		if m == pl.tick {
			pl.poll(ctx)
		}
	case *polled:
		pl.polled(ctx, m)
	case *fetched:
		pl.fetched(ctx, m)
	case *cancelBatch:
		id, self := pl.p.batchID, ctx.Self()
		pl.r.async(func(c context.Context) {
			pl.r.send(self, &cancelReplied{err: pl.r.prov.cancel(c, id)})
		})
	case *cancelReplied:
		ctx.Send(pl.sup, &cancelled{p: pl.p, err: m.err})
	case *actor.Stopping:
		pl.timer.Stop()
	}
}

func (pl *poller) arm(ctx actor.Context) { pl.timer.Arm(ctx, time.Now(), pl.r.cfg.Poll, pl.tick) }

// poll asks how the batch stands, or, once it has ended, for its results.
func (pl *poller) poll(ctx actor.Context) {
	if pl.busy {
		return
	}
	pl.busy = true
	id, self := pl.p.batchID, ctx.Self()
	if st := pl.ended; st != nil {
		pl.r.async(func(c context.Context) {
			results := map[string]itemResult{}
			err := pl.r.prov.results(c, id, *st, func(cid string, r itemResult) { results[cid] = r })
			pl.r.send(self, &fetched{results: results, err: err})
		})
		return
	}
	pl.r.async(func(c context.Context) {
		st, err := pl.r.prov.status(c, id)
		pl.r.send(self, &polled{st: st, err: err})
	})
}

func (pl *poller) polled(ctx actor.Context, m *polled) {
	pl.busy = false
	switch {
	case m.err != nil:
		if pl.failedNow(ctx, "polling", m.err) {
			return
		}
		pl.arm(ctx)
	case m.st.ended:
		pl.failed = 0
		st := m.st
		pl.ended = &st
		pl.poll(ctx)
	default:
		pl.failed = 0
		pl.arm(ctx)
	}
}

func (pl *poller) fetched(ctx actor.Context, m *fetched) {
	pl.busy = false
	if m.err != nil {
		if !pl.failedNow(ctx, "reading the results of", m.err) {
			pl.arm(ctx)
		}
		return
	}
	ctx.Send(pl.sup, &batchEnded{p: pl.p, st: *pl.ended, results: m.results})
	ctx.Stop(ctx.Self())
}

// failedNow logs a failed request to the provider and reports whether it
// ends the following of the batch: one that trying again cannot mend (the
// batch is not found, the key is refused) does, and the supervisor is
// told.
func (pl *poller) failedNow(ctx actor.Context, what string, err error) bool {
	pl.failed++
	if transient(err) {
		pl.r.cfg.Logger.Warn("batchapi: "+what+" a batch failed; trying again at the next poll",
			slog.String("batch", pl.p.batchID), slog.Int("failures", pl.failed), slog.String("error", err.Error()))
		return false
	}
	ctx.Send(pl.sup, &batchEnded{p: pl.p, err: err})
	ctx.Stop(ctx.Self())
	return true
}
