package messages_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

func ExampleLifecycle() {
	start := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
	l := messages.NewLifecycle(uuid.Nil, &messages.Request{Tokens: 100}, start)

	show := func(ev messages.Event) {
		fmt.Printf("%d %-10s attempt=%d\n", ev.Seq, ev.Status, ev.Attempt)
	}
	show(l.Pending(start))
	show(l.Queue(start.Add(5*time.Millisecond), 1, ""))
	show(l.Process(start.Add(20 * time.Millisecond)))
	show(l.Call(start.Add(25 * time.Millisecond)))
	show(l.Retry(start.Add(80*time.Millisecond), time.Second, errors.New("503 overloaded"), messages.Result{}))
	show(l.Process(start.Add(1080 * time.Millisecond)))
	show(l.Call(start.Add(1085 * time.Millisecond)))
	last := l.Complete(start.Add(1185*time.Millisecond), messages.Result{
		StatusCode: 200,
		Usage:      &messages.Usage{InputTokens: 60, OutputTokens: 25},
	})
	show(last)

	fmt.Println("done:", l.Done())
	fmt.Println("tokens:", last.Tokens.Estimated, "estimated,", last.Tokens.Actual, "actual")
	fmt.Println("call:", last.Timings().CallDuration(), "total:", last.Timings().Total())
	fmt.Println(last.Log()[4].Message)
	// Output:
	// 1 PENDING    attempt=0
	// 2 QUEUED     attempt=0
	// 3 PROCESSING attempt=0
	// 4 CALLING    attempt=1
	// 5 QUEUED     attempt=1
	// 6 PROCESSING attempt=1
	// 7 CALLING    attempt=2
	// 8 COMPLETED  attempt=2
	// done: true
	// tokens: 100 estimated, 85 actual
	// call: 100ms total: 1.185s
	// retry in 1s after attempt 1 failed: 503 overloaded
}
