package runtime

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// routerMailbox returns a props option giving the router's actor a
// mailbox that rejects, with ErrStopped, every RoutedSubmit the actor
// drops once it has stopped (protoactor drops what is left in a stopped
// actor's mailbox silently; see package actors' stopped.go). The actor
// calls stopped on the returned droppedRoutes from its Stopped handler.
func routerMailbox() (actor.PropsOption, *droppedRoutes) {
	d := &droppedRoutes{}
	return actor.WithMailbox(actor.Unbounded(d)), d
}

// droppedRoutes is the router mailbox's middleware; see routerMailbox.
type droppedRoutes struct {
	root atomic.Pointer[actor.RootContext] // set once the actor has stopped
}

func (d *droppedRoutes) stopped(root *actor.RootContext) { d.root.Store(root) }

func (d *droppedRoutes) isStopped() bool { return d.root.Load() != nil }

// MailboxStarted implements actor.MailboxMiddleware.
func (d *droppedRoutes) MailboxStarted() {}

// MessagePosted implements actor.MailboxMiddleware.
func (d *droppedRoutes) MessagePosted(any) {}

// MailboxEmpty implements actor.MailboxMiddleware.
func (d *droppedRoutes) MailboxEmpty() {}

// MessageReceived implements actor.MailboxMiddleware.
func (d *droppedRoutes) MessageReceived(m any) {
	root := d.root.Load()
	if root == nil {
		return
	}
	_, msg, sender := actor.UnwrapEnvelope(m)
	if s, ok := msg.(*RoutedSubmit); ok && sender != nil {
		id := s.ID
		if id == uuid.Nil {
			id = uuid.New()
		}
		root.Send(sender, &messages.Rejected{ID: id, Err: messages.ErrStopped})
	}
}
