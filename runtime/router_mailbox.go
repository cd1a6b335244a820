package runtime

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/internal/stopmail"
)

// routerMailbox returns a props option giving the router's actor a
// mailbox that rejects, with ErrStopped, every RoutedSubmit the actor
// drops once it has stopped (see package stopmail). The actor calls
// Stopped on the returned middleware from its Stopped handler.
func routerMailbox() (actor.PropsOption, *stopmail.Dropped) {
	return stopmail.New(func(msg any) (uuid.UUID, bool) {
		if s, ok := msg.(*RoutedSubmit); ok {
			return s.ID, true
		}
		return uuid.Nil, false
	})
}
