package runtime

import (
	"context"
	"iter"
	"sync"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// Handle follows one submitted request. Its methods are safe for concurrent
// use. Snapshots are kept in the handle as they arrive, so a slow reader
// never slows the executor and never misses one.
type Handle struct {
	id    uuid.UUID
	owner owner // what runs the request

	mu      sync.Mutex
	events  messages.History
	changed chan struct{} // made on demand by a waiting reader, closed on publish
	done    chan struct{} // made on demand by Done; closed once ended
	ended   bool          // the terminal snapshot is in
	watch   *ctxWatch     // the submit context's watch, while the request lives

	// reserved is the estimate the executor's spend cap, if it has one,
	// reserved for the request, to be settled when it ends.
	reserved float64

	// notify, if set, is called with each snapshot as it is published, on
	// the publishing goroutine, before a reader can see it: it is how a
	// router follows an attempt it gave a deployment (see Router).
	notify func(messages.Event)
}

// closed is the Done channel of a handle asked for it after its request
// ended.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// owner is what runs a handle's request: an executor, a router, or none
// for a request that ended as it was submitted. Being an interface of one
// pointer, it costs a handle no allocation, where a closure over the ID
// would.
type owner interface {
	// cancelRequest asks that request id be cancelled with cause (nil:
	// messages.ErrCancelled).
	cancelRequest(id uuid.UUID, cause error)
}

// cancelFunc is an owner that calls itself.
type cancelFunc func(id uuid.UUID, cause error)

func (f cancelFunc) cancelRequest(id uuid.UUID, cause error) { f(id, cause) }

// nobody owns a request that ended as it was submitted: there is nothing
// left to cancel.
var nobody = cancelFunc(func(uuid.UUID, error) {})

func newHandle(id uuid.UUID, o owner) *Handle {
	return &Handle{id: id, owner: o}
}

// ID returns the request's ID, the one its snapshots carry.
func (h *Handle) ID() uuid.UUID { return h.id }

// Done returns a channel that is closed when the request has ended.
func (h *Handle) Done() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done == nil {
		// Made on demand: most handles are never asked, and a waiting
		// request then costs a channel less.
		if h.ended {
			return closed
		}
		h.done = make(chan struct{})
	}
	return h.done
}

// Latest returns the most recent snapshot.
func (h *Handle) Latest() messages.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.events.Last()
}

// Wait blocks until the request ends and returns its terminal snapshot, or
// returns ctx's error if ctx is done first and the request has not ended
// (the request goes on). Check the snapshot's Status, or Err, for the
// outcome.
func (h *Handle) Wait(ctx context.Context) (messages.Event, error) {
	done := h.Done()
	select {
	case <-done:
		return h.Latest(), nil
	case <-ctx.Done():
		select {
		case <-done: // ended too: the outcome is known, report it
			return h.Latest(), nil
		default:
			return messages.Event{}, ctx.Err()
		}
	}
}

// Events yields every snapshot of the request in order, from the first, and
// ends after the terminal one. Each call starts a new walk from the first
// snapshot; several may run at once.
func (h *Handle) Events() iter.Seq[messages.Event] {
	return func(yield func(messages.Event) bool) {
		for i := 0; ; i++ {
			ev, ok := h.next(i)
			if !ok || !yield(ev) || ev.Status.Terminal() {
				return
			}
		}
	}
}

// next returns snapshot i, waiting for it to be published.
func (h *Handle) next(i int) (messages.Event, bool) {
	for {
		h.mu.Lock()
		if i < h.events.Len() {
			ev := h.events.At(i)
			h.mu.Unlock()
			return ev, true
		}
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		ch := h.changed
		h.mu.Unlock()
		<-ch
	}
}

// Cancel asks the executor to cancel the request. It returns at once; the
// request's snapshots show the outcome: CANCELLED, or the terminal state it
// reached first.
func (h *Handle) Cancel() { h.owner.cancelRequest(h.id, nil) }

// sink adapts a Handle of an executor's to actors.Sink without exporting
// Publish on Handle, and tells the executor when the request has ended. A
// *sink is a *Handle: as a Sink it costs no allocation.
type sink Handle

func (s *sink) Publish(ev messages.Event) {
	h := (*Handle)(s)
	if ev.Status.Terminal() {
		h.owner.(*Executor).ended(h, ev)
	}
	h.publish(ev)
}

func (h *Handle) publish(ev messages.Event) {
	if h.notify != nil {
		h.notify(ev)
	}
	h.mu.Lock()
	h.events.Append(ev)
	ch := h.changed
	h.changed = nil
	var (
		done  chan struct{}
		watch *ctxWatch
	)
	if ev.Status.Terminal() {
		h.ended, done, watch = true, h.done, h.watch
		h.watch = nil
	}
	h.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	if watch != nil {
		watch.remove(h)
	}
	if done != nil {
		close(done)
	}
}
