package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/internal/stopmail"
	"github.com/lionactor/lionactor/messages"
)

// mailboxOf returns a props option giving an actor a mailbox that rejects,
// with ErrStopped, every messages.Submit the actor drops once it has
// stopped (see package stopmail). The actor calls Stopped on the returned
// middleware from its Stopped handler.
func mailboxOf() (actor.PropsOption, *stopmail.Dropped) {
	return stopmail.New(func(msg any) (uuid.UUID, bool) {
		if s, ok := msg.(*messages.Submit); ok {
			return s.ID, true
		}
		return uuid.Nil, false
	})
}

// reject answers a message submit that is not accepted.
func reject(s actor.SenderContext, sender *actor.PID, m *messages.Submit, err error) {
	if sender == nil {
		return
	}
	id := m.ID
	if id == uuid.Nil {
		id = uuid.New()
	}
	s.Send(sender, &messages.Rejected{ID: id, Err: err})
}

// Cancelled counts a request that ended CANCELLED without reaching the
// queue: the runtime ends such requests itself once the tree has stopped.
func (c *counters) Cancelled() { c.cancelled.Add(1) }
