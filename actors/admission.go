package actors

import (
	"context"
)

// admission bounds the number of requests waiting in the queue. A submitter
// takes a slot before handing a request to the queue actor, and the queue
// actor gives it back when the request leaves the queue for a caller (or ends
// while queued). Holding the count outside the actor lets a submit be refused
// at once, without a round trip to the actor.
type admission struct {
	slots chan struct{}
}

// newAdmission returns an Admission of the given capacity.
func newAdmission(capacity int) *admission {
	return &admission{slots: make(chan struct{}, capacity)}
}

// TryAcquire takes a slot if one is free.
func (a *admission) TryAcquire() bool {
	select {
	case a.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Acquire waits for a free slot until ctx is done or stop is closed, and
// returns ctx's error or errStop accordingly.
func (a *admission) Acquire(ctx context.Context, stop <-chan struct{}, errStop error) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-stop:
		return errStop
	}
}

// Release gives a slot back.
func (a *admission) Release() { <-a.slots }

// Len is the number of slots taken.
func (a *admission) Len() int { return len(a.slots) }

// Cap is the capacity.
func (a *admission) Cap() int { return cap(a.slots) }
