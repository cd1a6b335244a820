package messages_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// A History gives back every snapshot as it was published: the same
// values, accessors and JSON, whatever it shares between them.
func TestHistoryKeepsEverySnapshot(t *testing.T) {
	r := &messages.Request{Tokens: 40, Metadata: map[string]string{"k": "v"}, Secrets: []string{"sk-secret"}}
	l := messages.NewLifecycle(testID, r, t0)
	published := []messages.Event{
		l.Pending(at(0)),
		l.Queue(at(time.Millisecond), 1, ""),
		routed(l, "east", "gpt-4o", func() messages.Event { return l.Process(at(2 * time.Millisecond)) }),
		l.Call(at(3 * time.Millisecond)),
		l.Retry(at(4*time.Millisecond), time.Second, errors.New("429 from sk-secret"), messages.Result{StatusCode: 429}),
		routed(l, "west", "claude", func() messages.Event { return l.Process(at(5 * time.Millisecond)) }),
		l.Call(at(6 * time.Millisecond)),
		l.Complete(at(7*time.Millisecond), messages.Result{StatusCode: 200, Body: []byte(`{"ok":true}`), Usage: &messages.Usage{InputTokens: 10, OutputTokens: 5}}),
	}
	var h messages.History
	for i, ev := range published {
		h.Append(ev)
		if h.Len() != i+1 {
			t.Fatalf("Len = %d after %d appends", h.Len(), i+1)
		}
		if last := h.Last(); !sameEvent(last, ev) {
			t.Fatalf("Last after append %d = %+v, want %+v", i+1, last, ev)
		}
	}
	for i, want := range published {
		got := h.At(i)
		if !sameEvent(got, want) {
			t.Errorf("At(%d) = %+v, want %+v", i, got, want)
		}
	}
}

// routed names the deployment and model of the next snapshot, which step
// publishes.
func routed(l *messages.Lifecycle, deployment, model string, step func() messages.Event) messages.Event {
	l.Route(deployment, model)
	return step()
}

// sameEvent compares what a holder of an Event can see of it.
func sameEvent(a, b messages.Event) bool {
	ja, errA := a.MarshalJSON()
	jb, errB := b.MarshalJSON()
	ra, _ := a.Response()
	rb, _ := b.Response()
	fa, _ := a.Failure()
	fb, _ := b.Failure()
	qa, _ := a.RetryFailure()
	qb, _ := b.RetryFailure()
	return errA == nil && errB == nil && string(ja) == string(jb) &&
		a.Deployment == b.Deployment && a.Model == b.Model && a.ID == b.ID && a.Seq == b.Seq && a.Status == b.Status && a.Attempt == b.Attempt && a.Tokens == b.Tokens &&
		a.Timings() == b.Timings() && reflect.DeepEqual(a.Log(), b.Log()) && reflect.DeepEqual(a.Metadata(), b.Metadata()) &&
		reflect.DeepEqual(ra, rb) && reflect.DeepEqual(fa, fb) && reflect.DeepEqual(qa, qb) && errors.Is(a.Err(), b.Err()) && errors.Is(b.Err(), a.Err())
}
