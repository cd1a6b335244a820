package runtime

import (
	"context"
	"fmt"
	"sync"

	"github.com/lionactor/lionactor/messages"
)

// watches cancels the live requests submitted with a context once that
// context is done. A program usually submits many requests with one
// context (a batch's, a server request's), so the requests that share a
// context's Done channel share one context.AfterFunc: one per request
// cost each queued request about 200 B and three allocations more.
// Keying by the Done channel, not the context, also serves a context type
// that is not comparable; contexts with one Done channel are done at once,
// with one cause.
type watches struct {
	mu   sync.Mutex
	byCh map[<-chan struct{}]*ctxWatch
}

// ctxWatch is the watch of one Done channel: the handles whose requests
// it cancels, until it fires or the last of them ends.
type ctxWatch struct {
	ws      *watches
	ctx     context.Context // the first context seen with the channel: its cause is theirs
	done    <-chan struct{}
	stop    func() bool
	handles map[*Handle]struct{} // nil once fired
}

// add watches h's request under ctx, whose Done is not nil. It is called
// once the request was handed to whoever cancels it (see Executor.Submit).
func (ws *watches) add(ctx context.Context, h *Handle) {
	done := ctx.Done()
	ws.mu.Lock()
	w := ws.byCh[done]
	if w == nil {
		if ws.byCh == nil {
			ws.byCh = map[<-chan struct{}]*ctxWatch{}
		}
		w = &ctxWatch{ws: ws, ctx: ctx, done: done, handles: map[*Handle]struct{}{}}
		ws.byCh[done] = w
		// f runs on a goroutine of its own, even for a context done
		// already: it waits for mu.
		w.stop = context.AfterFunc(ctx, w.fire)
	}
	w.handles[h] = struct{}{}
	ws.mu.Unlock()

	h.mu.Lock()
	ended := h.ended
	if !ended {
		h.watch = w
	}
	h.mu.Unlock()
	if ended { // it ended before the watch began: take it out now
		w.remove(h)
	}
}

// fire cancels every request the watch holds.
func (w *ctxWatch) fire() {
	ws := w.ws
	ws.mu.Lock()
	if ws.byCh[w.done] == w {
		delete(ws.byCh, w.done)
	}
	hs := w.handles
	w.handles = nil
	ws.mu.Unlock()
	cause := fmt.Errorf("%w: %w", messages.ErrCancelled, context.Cause(w.ctx))
	for h := range hs {
		h.owner.cancelRequest(h.id, cause)
	}
}

// remove takes the request of h, which has ended, out of the watch; the
// last one out stops it.
func (w *ctxWatch) remove(h *Handle) {
	ws := w.ws
	ws.mu.Lock()
	if w.handles == nil { // fired
		ws.mu.Unlock()
		return
	}
	delete(w.handles, h)
	last := len(w.handles) == 0
	if last && ws.byCh[w.done] == w {
		delete(ws.byCh, w.done)
	}
	ws.mu.Unlock()
	if last {
		w.stop()
	}
}
