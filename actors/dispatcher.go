package actors

import (
	"sync"
)

// dispatcher runs the tree's mailboxes on a few long-lived goroutines
// instead of protoactor's default of a new goroutine each time a mailbox
// wakes. A new goroutine starts with a small stack that the actor code then
// grows, and at tens of thousands of wake-ups a second that copying showed
// as a fifth of the CPU profile. When every worker is busy, a mailbox gets a
// goroutine of its own as before, so no mailbox ever waits for another.
type dispatcher struct {
	throughput int
	work       chan func()
	wg         sync.WaitGroup

	mu     sync.RWMutex // guards closed against Schedule's send
	closed bool
}

// newDispatcher starts workers goroutines; throughput is how many messages a
// mailbox handles before it yields (see actor.Dispatcher).
func newDispatcher(workers, throughput int) *dispatcher {
	d := &dispatcher{throughput: throughput, work: make(chan func())}
	d.wg.Add(workers)
	for range workers {
		go func() {
			defer d.wg.Done()
			for fn := range d.work {
				fn()
			}
		}()
	}
	return d
}

// Schedule implements actor.Dispatcher: fn runs on an idle worker, or on a
// new goroutine if none is idle or the dispatcher is closed.
func (d *dispatcher) Schedule(fn func()) {
	d.mu.RLock()
	if !d.closed {
		select {
		case d.work <- fn:
			d.mu.RUnlock()
			return
		default:
		}
	}
	d.mu.RUnlock()
	go fn()
}

// Throughput implements actor.Dispatcher.
func (d *dispatcher) Throughput() int { return d.throughput }

// Close stops the workers once they finish what they run. Mailboxes
// scheduled later get goroutines of their own.
func (d *dispatcher) Close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.work)
	}
	d.mu.Unlock()
	d.wg.Wait()
}
