// Package runtimetest provides what the executor's tests share: an observer
// that checks the snapshot invariants as they arrive, and calls that block
// under a test's control.
package runtimetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// Recorder is an Observer that keeps every snapshot per request and checks
// the invariants as they arrive: Seq grows by one from 1, and nothing follows
// a terminal snapshot.
type Recorder struct {
	mu      sync.Mutex
	events  map[uuid.UUID][]messages.Event
	errs    []string
	changed chan struct{} // closed and replaced on every snapshot
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{events: make(map[uuid.UUID][]messages.Event), changed: make(chan struct{})}
}

// Observe records ev; use it as the executor's Observer.
func (r *Recorder) Observe(ev messages.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.events[ev.ID]
	if n := len(prev); n > 0 && prev[n-1].Status.Terminal() {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v after terminal %v", ev.ID, ev.Status, prev[n-1].Status))
	}
	if want := uint64(len(prev) + 1); ev.Seq != want {
		r.errs = append(r.errs, fmt.Sprintf("%s: seq %d, want %d", ev.ID, ev.Seq, want))
	}
	r.events[ev.ID] = append(prev, ev)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Len is the number of requests recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// waitLimit bounds every wait of a Recorder: far beyond what any snapshot
// takes to come, so that a test fails rather than hangs.
const waitLimit = 10 * time.Second

// waitFor waits until find, called under the lock on every new snapshot,
// reports success.
func (r *Recorder) waitFor(t testing.TB, what string, find func() bool) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		ok, changed := find(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: not within %v", what, waitLimit)
		}
	}
}

// WaitStatus waits for the n-th snapshot (from 1) of id with status s and
// returns it.
func (r *Recorder) WaitStatus(t testing.TB, id uuid.UUID, s messages.RequestStatus, n int) messages.Event {
	t.Helper()
	var found messages.Event
	r.waitFor(t, fmt.Sprintf("%s reaching %v (#%d)", id, s, n), func() bool {
		seen := 0
		for _, ev := range r.events[id] {
			if ev.Status == s {
				if seen++; seen == n {
					found = ev
					return true
				}
			}
		}
		return false
	})
	return found
}

// WaitEnd waits for the terminal snapshot of id and returns it.
func (r *Recorder) WaitEnd(t testing.TB, id uuid.UUID) messages.Event {
	t.Helper()
	var found messages.Event
	r.waitFor(t, fmt.Sprintf("%s ending", id), func() bool {
		evs := r.events[id]
		if n := len(evs); n > 0 && evs[n-1].Status.Terminal() {
			found = evs[n-1]
			return true
		}
		return false
	})
	return found
}

// Check fails t unless every recorded request has exactly one terminal
// snapshot, as its last, and the invariants held throughout. It returns the
// number of requests by final status.
func (r *Recorder) Check(t testing.TB) map[messages.RequestStatus]int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	problems := slices.Clone(r.errs)
	counts := map[messages.RequestStatus]int{}
	for id, evs := range r.events {
		terminals := 0
		for _, ev := range evs {
			if ev.Status.Terminal() {
				terminals++
			}
		}
		last := evs[len(evs)-1]
		if terminals != 1 || !last.Status.Terminal() {
			problems = append(problems, fmt.Sprintf("%s: %d terminal snapshots, last %v", id, terminals, last.Status))
		}
		counts[last.Status]++
	}
	// A broken invariant usually breaks for many requests at once: a few
	// lines say what, the count says how many.
	const shown = 10
	for i, p := range problems {
		if i == shown {
			t.Errorf("... and %d more", len(problems)-shown)
			break
		}
		t.Error(p)
	}
	return counts
}

// Of returns the snapshots recorded for id.
func (r *Recorder) Of(id uuid.UUID) []messages.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[id])
}

// Statuses lists the statuses of evs.
func Statuses(evs []messages.Event) []messages.RequestStatus {
	out := make([]messages.RequestStatus, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

// OK is a call that succeeds at once with status 200 and body.
func OK(body string) messages.Call {
	return messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{StatusCode: 200, Body: []byte(body)}, nil
	})
}

// Blocker is a call that reports when it starts and then waits for its
// context to end or for the test to release it.
type Blocker struct {
	Started chan int      // receives the attempt number as each call starts
	Release chan struct{} // a send (or close) lets one (or every) call succeed
	Seen    chan error    // receives context.Cause when a context ends a call
}

// NewBlocker returns a Blocker whose channels buffer 1000 starts.
func NewBlocker() *Blocker {
	return &Blocker{Started: make(chan int, 1000), Release: make(chan struct{}), Seen: make(chan error, 1000)}
}

// Do implements messages.Call.
func (b *Blocker) Do(ctx context.Context, attempt int) (messages.Result, error) {
	b.Started <- attempt
	select {
	case <-b.Release:
		return messages.Result{StatusCode: 200}, nil
	case <-ctx.Done():
		b.Seen <- context.Cause(ctx)
		return messages.Result{}, ctx.Err()
	}
}

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test if d passes first. It is for conditions that no event signals, such
// as a count another process or a network peer moves.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}
