package selftimer

import (
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type tick struct{ n int }

// timed is an actor that arms its timer as its messages say, and reports
// every tick it receives.
type timed struct {
	timer Timer
	got   chan<- any
}

type arm struct {
	d   time.Duration
	msg any
}
type armBy struct {
	at  time.Time
	msg any
}
type stop struct{}
type armed struct{ reply chan bool }

func (a *timed) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case arm:
		a.timer.Arm(ctx, time.Now(), m.d, m.msg)
	case armBy:
		a.timer.ArmBy(ctx, time.Now(), m.at, m.msg)
	case stop:
		a.timer.Stop()
	case armed:
		m.reply <- a.timer.Armed()
	case *tick:
		a.got <- m
	case *actor.Stopping:
		a.timer.Stop()
	}
}

func newSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithDeadLetterThrottleInterval(time.Millisecond),
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
}

func start(t *testing.T) (*actor.ActorSystem, *actor.PID, <-chan any) {
	t.Helper()
	sys := newSystem()
	got := make(chan any, 8)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &timed{got: got} }))
	t.Cleanup(func() {
		sys.Root.StopFuture(pid).Wait()
		sys.Shutdown()
	})
	return sys, pid, got
}

func recv(t *testing.T, got <-chan any) any {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no tick within 5s")
		return nil
	}
}

// isArmed asks the actor whether its timer is armed; as a message, it is
// handled after every message sent before it.
func isArmed(sys *actor.ActorSystem, pid *actor.PID) bool {
	reply := make(chan bool, 1)
	sys.Root.Send(pid, armed{reply})
	return <-reply
}

func TestArmSendsTheMessageToTheActor(t *testing.T) {
	sys, pid, got := start(t)
	first := &tick{1}
	sys.Root.Send(pid, arm{time.Millisecond, first})
	if m := recv(t, got); m != first {
		t.Fatalf("got %v, want the armed message", m)
	}
	// Armed again with another message: the earlier arming is replaced,
	// so only the second is sent.
	second, third := &tick{2}, &tick{3}
	sys.Root.Send(pid, arm{time.Hour, second})
	sys.Root.Send(pid, arm{time.Millisecond, third})
	if m := recv(t, got); m != third {
		t.Fatalf("got %v, want the last armed", m)
	}
}

func TestArmByKeepsAnEarlierArming(t *testing.T) {
	sys, pid, got := start(t)
	soon, later := &tick{1}, time.Now().Add(time.Hour)
	sys.Root.Send(pid, arm{10 * time.Millisecond, soon})
	sys.Root.Send(pid, armBy{later, soon}) // later than armed: kept
	if m := recv(t, got); m != soon {
		t.Fatalf("got %v, want the earlier arming to fire", m)
	}
	// Nothing armed yet fires: ArmBy arms.
	sys.Root.Send(pid, stop{})
	sys.Root.Send(pid, armBy{time.Now().Add(time.Millisecond), soon})
	if m := recv(t, got); m != soon {
		t.Fatalf("got %v after ArmBy", m)
	}
}

func TestStopDisarms(t *testing.T) {
	// In a bubble of fake time: that nothing fires is seen by letting an
	// hour pass, at once.
	synctest.Test(t, func(t *testing.T) {
		sys := newSystem()
		got := make(chan any, 8)
		pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &timed{got: got} }))
		sys.Root.Send(pid, arm{50 * time.Millisecond, &tick{1}})
		if !isArmed(sys, pid) {
			t.Fatal("not armed after Arm")
		}
		sys.Root.Send(pid, stop{})
		if isArmed(sys, pid) {
			t.Fatal("armed after Stop")
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case m := <-got:
			t.Errorf("the stopped timer sent %v", m)
		default:
		}
		sys.Root.StopFuture(pid).Wait()
		sys.Shutdown()
	})
}
