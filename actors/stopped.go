package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// What protoactor-go does with the messages of an actor that stops
// (actor_context.go, mailbox.go, deadletter.go):
//
//   - Stop is a system message, and a mailbox runs system messages before
//     user messages. handleStop delivers Stopping, stops the children and,
//     once they are all gone, finalizeStop removes the PID from the process
//     registry and delivers Stopped. Until then user messages are still
//     delivered; after it, InvokeUserMessage drops every user message left
//     in the mailbox, or posted to it by a sender that resolved the PID just
//     before, without a dead letter or a reply.
//   - A message sent to a PID no longer in the registry goes to the dead
//     letter process, which publishes a DeadLetterEvent; if the message had
//     a sender, the system answers it with *actor.DeadLetterResponse.
//
// So an actor that stops while requests wait in its mailbox loses them
// silently. The executor's handles are covered by the runtime, which ends
// whatever the queue never received once the tree is gone; a message
// submit has no handle, and it is answered here instead.

// mailboxOf returns a props option giving an actor a mailbox that rejects,
// with ErrStopped, every messages.Submit the actor drops once it has
// stopped. The actor calls stopped on the returned dropped from its Stopped
// handler.
func mailboxOf() (actor.PropsOption, *dropped) {
	d := &dropped{}
	return actor.WithMailbox(actor.Unbounded(d)), d
}

// dropped is a mailbox middleware. The mailbox calls MessageReceived after
// each message it pops, whether the actor received it or, stopped, dropped
// it; both run on the mailbox's goroutine, so once the actor's Stopped
// handler has run, every message seen here is one the actor will never see.
type dropped struct {
	root atomic.Pointer[actor.RootContext] // set once the actor has stopped
}

// stopped marks the actor stopped: from now on its mailbox answers submits,
// through root.
func (d *dropped) stopped(root *actor.RootContext) { d.root.Store(root) }

// isStopped reports whether the actor has stopped.
func (d *dropped) isStopped() bool { return d.root.Load() != nil }

// MailboxStarted implements actor.MailboxMiddleware.
func (d *dropped) MailboxStarted() {}

// MessagePosted implements actor.MailboxMiddleware.
func (d *dropped) MessagePosted(any) {}

// MailboxEmpty implements actor.MailboxMiddleware.
func (d *dropped) MailboxEmpty() {}

// MessageReceived implements actor.MailboxMiddleware.
func (d *dropped) MessageReceived(m any) {
	root := d.root.Load()
	if root == nil {
		return
	}
	_, msg, sender := actor.UnwrapEnvelope(m)
	if s, ok := msg.(*messages.Submit); ok {
		reject(root, sender, s, messages.ErrStopped)
	}
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
