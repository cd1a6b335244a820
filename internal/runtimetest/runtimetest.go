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
	mu     sync.Mutex
	events map[uuid.UUID][]messages.Event
	errs   []string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{events: make(map[uuid.UUID][]messages.Event)} }

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
}

// Check fails t unless every recorded request has exactly one terminal
// snapshot, as its last, and the invariants held throughout. It returns the
// number of requests by final status.
func (r *Recorder) Check(t testing.TB) map[messages.RequestStatus]int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Error(e)
	}
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
			t.Errorf("%s: %d terminal snapshots, last %v", id, terminals, last.Status)
		}
		counts[last.Status]++
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
