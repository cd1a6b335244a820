// Package selftimer is how an actor waits: it arms a timer that sends the
// actor a message when it fires, since a Receive must never sleep.
package selftimer

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Timer sends one message to one actor after a delay. Arm and Stop it from
// the actor's Receive only; stop it when the actor stops (on
// *actor.Stopping), so that nothing is sent to an actor that is gone. The
// zero Timer is ready to use.
type Timer struct {
	t   *time.Timer
	msg any
	at  time.Time
}

// Arm makes the timer send msg to the actor of ctx at now+d, in place of
// what it was armed with before. Arming again with the same message reuses
// the timer, so an actor that re-arms often does not allocate; msg must
// then be comparable with ==, as pointers and small structs are.
func (t *Timer) Arm(ctx actor.Context, now time.Time, d time.Duration, msg any) {
	t.at = now.Add(d)
	if t.t != nil && t.msg == msg {
		t.t.Reset(d)
		return
	}
	t.Stop()
	root, self := ctx.ActorSystem().Root, ctx.Self()
	t.msg = msg
	t.t = time.AfterFunc(d, func() { root.Send(self, msg) })
}

// ArmBy makes sure the timer fires no later than at: it keeps an earlier
// (or equal) arming that has not fired yet, and otherwise arms it for at.
func (t *Timer) ArmBy(ctx actor.Context, now, at time.Time, msg any) {
	if t.t != nil && t.msg == msg && !t.at.After(at) && t.at.After(now) {
		return
	}
	t.Arm(ctx, now, at.Sub(now), msg)
}

// Stop disarms the timer; a nil Timer is one never armed. A message it
// already sent stays in the mailbox: the actor must tell a stale one from
// a live one by its content.
func (t *Timer) Stop() {
	if t != nil && t.t != nil {
		t.t.Stop()
		t.t, t.msg, t.at = nil, nil, time.Time{}
	}
}

// Armed reports whether the timer is armed and has not been stopped (it
// may have fired).
func (t *Timer) Armed() bool { return t.t != nil }
