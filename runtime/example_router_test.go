package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// A router over two deployments of one group, the first failing: the
// request goes on to the second at once, keeping its ID and one sequence
// of snapshots, each naming the deployment of its attempt.
func ExampleStartRouter() {
	c := runtime.DefaultConfig()
	c.RequestsPerInterval = runtime.Unlimited
	cfg := runtime.DefaultRouterConfig(
		runtime.Deployment{Name: "east", Group: "summarizer", Config: c}, // the first to go to while both are idle
		runtime.Deployment{Name: "west", Group: "summarizer", Config: c},
	)
	rt, err := runtime.StartRouter(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(context.Background())

	// The Builder makes each attempt's request for the deployment named.
	build := func(deployment string) (messages.Request, error) {
		call := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
			if deployment == "east" {
				return messages.Result{StatusCode: 503}, errors.New("east is down")
			}
			return messages.Result{StatusCode: 200, Body: []byte("summary")}, nil
		})
		return messages.Request{Call: call}, nil
	}
	h, err := rt.Submit(context.Background(), "summarizer", build)
	if err != nil {
		log.Fatal(err)
	}
	for ev := range h.Events() {
		if ev.Deployment == "" {
			fmt.Println(ev.Seq, ev.Status)
		} else {
			fmt.Println(ev.Seq, ev.Status, "at", ev.Deployment)
		}
	}
	// Output:
	// 1 PENDING
	// 2 QUEUED
	// 3 PROCESSING at east
	// 4 CALLING at east
	// 5 QUEUED at east
	// 6 PROCESSING at west
	// 7 CALLING at west
	// 8 COMPLETED at west
}
