// Package stopmail gives an actor a mailbox that answers the submits the
// actor drops once it has stopped, so that none is lost without an answer.
//
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
// silently. An executor's or a router's handles are covered by the runtime,
// which ends whatever its actor never received once it is gone; a submit
// by message has no handle, and this mailbox answers it instead.
package stopmail

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// SubmitID reports whether msg is a submit the actor would answer, and the
// ID its submitter gave it (uuid.Nil: none).
type SubmitID func(msg any) (id uuid.UUID, ok bool)

// New returns a props option giving an actor a mailbox that rejects, with
// messages.ErrStopped, every submit (as submitID tells them) the actor
// drops once it has stopped, and the mailbox's middleware: the actor calls
// its Stopped from its Stopped handler.
func New(submitID SubmitID) (actor.PropsOption, *Dropped) {
	d := &Dropped{submitID: submitID}
	return actor.WithMailbox(actor.Unbounded(d)), d
}

// Dropped is the mailbox's middleware. The mailbox calls MessageReceived
// after each message it pops, whether the actor received it or, stopped,
// dropped it; both run on the mailbox's goroutine, so once the actor's
// Stopped handler has run, every message seen here is one the actor will
// never see.
type Dropped struct {
	submitID SubmitID
	root     atomic.Pointer[actor.RootContext] // set once the actor has stopped
}

// Stopped marks the actor stopped: from now on its mailbox answers
// submits, through root.
func (d *Dropped) Stopped(root *actor.RootContext) { d.root.Store(root) }

// IsStopped reports whether the actor has stopped.
func (d *Dropped) IsStopped() bool { return d.root.Load() != nil }

// MailboxStarted implements actor.MailboxMiddleware.
func (d *Dropped) MailboxStarted() {}

// MessagePosted implements actor.MailboxMiddleware.
func (d *Dropped) MessagePosted(any) {}

// MailboxEmpty implements actor.MailboxMiddleware.
func (d *Dropped) MailboxEmpty() {}

// MessageReceived implements actor.MailboxMiddleware.
func (d *Dropped) MessageReceived(m any) {
	root := d.root.Load()
	if root == nil {
		return
	}
	_, msg, sender := actor.UnwrapEnvelope(m)
	if sender == nil {
		return
	}
	id, ok := d.submitID(msg)
	if !ok {
		return
	}
	if id == uuid.Nil {
		id = uuid.New()
	}
	root.Send(sender, &messages.Rejected{ID: id, Err: messages.ErrStopped})
}
