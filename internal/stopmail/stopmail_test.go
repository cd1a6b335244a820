package stopmail_test

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/stopmail"
	"github.com/lionactor/lionactor/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// submit is a submit message of the test's own.
type submit struct{ id uuid.UUID }

func submitID(msg any) (uuid.UUID, bool) {
	if s, ok := msg.(*submit); ok {
		return s.id, true
	}
	return uuid.Nil, false
}

// An actor with the mailbox that stops with submits left in it: each is
// answered Rejected with ErrStopped, under the ID it was given or a fresh
// one; what is not a submit, or has no sender, is dropped as before.
func TestSubmitsDroppedByAStoppedActorAreRejected(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithDeadLetterThrottleInterval(time.Millisecond))
	answers := make(chan *messages.Rejected, 4)
	probe := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if r, ok := ctx.Message().(*messages.Rejected); ok {
			answers <- r
		}
	}))
	gate := make(chan struct{})
	mailbox, dropped := stopmail.New(submitID)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			<-gate // hold the mailbox until everything is posted
		case *actor.Stopped:
			dropped.Stopped(ctx.ActorSystem().Root)
		}
	}, mailbox))
	if dropped.IsStopped() {
		t.Fatal("stopped before it stopped")
	}
	id := uuid.New()
	sys.Root.RequestWithCustomSender(pid, &submit{id: id}, probe)
	sys.Root.RequestWithCustomSender(pid, &submit{}, probe)
	sys.Root.RequestWithCustomSender(pid, "not a submit", probe)
	sys.Root.Send(pid, &submit{id: uuid.New()}) // no sender: nobody to answer
	stopped := sys.Root.StopFuture(pid)
	close(gate)
	if err := stopped.Wait(); err != nil {
		t.Fatal(err)
	}
	if !dropped.IsStopped() {
		t.Fatal("the actor's Stopped did not mark it")
	}
	var got []*messages.Rejected
	for range 2 {
		select {
		case r := <-answers:
			got = append(got, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 dropped submits answered", len(got))
		}
	}
	if got[0].ID != id || got[1].ID == uuid.Nil || got[1].ID == id {
		t.Errorf("answered IDs %v and %v, want %v then a fresh one", got[0].ID, got[1].ID, id)
	}
	for _, r := range got {
		if !errors.Is(r.Err, messages.ErrStopped) {
			t.Errorf("answer %v, want ErrStopped", r.Err)
		}
	}
	sys.Root.Stop(probe)
	sys.Shutdown()
	select {
	case r := <-answers:
		t.Errorf("a third answer: %+v", r)
	default:
	}
}
