package batchapi

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func TestRunSplitsIntoBatches(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{})
			const n = 1000
			reqs := chats(n)
			cfg := e.config()
			cfg.MaxRequests = 300
			var seen []Stats
			cfg.Progress = func(s Stats) { seen = append(seen, s) }
			got, st, err := collect(t, bg, e, cfg, reqs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkCompleted(t, got, reqs)
			if st.Created != 4 || st.Ended != 4 || st.Resubmitted != 0 || st.Running != 0 {
				t.Errorf("stats %+v, want 4 batches created and ended", st)
			}
			if len(seen) < 2 || seen[len(seen)-1] != st || seen[0].Created != 1 {
				t.Errorf("progress told %+v, the run ended at %+v", seen, st)
			}
			if c := batchesCreated(e.sim, p); c != 4 {
				t.Errorf("the simulator created %d batches, want 4", c)
			}
			if r := e.sim.Stats().Batches.Requests; r != n {
				t.Errorf("the simulator got %d requests in batches, want %d", r, n)
			}
			perBatch := map[string]int{}
			for _, o := range got {
				perBatch[o.Batch]++
				if o.Batches != 1 || o.Event.Attempt != 1 || o.Online {
					t.Fatalf("%s: %d batches, attempt %d, online %v; want one batch", o.Key, o.Batches, o.Event.Attempt, o.Online)
				}
				if o.CustomID == "" {
					t.Fatalf("%s: no custom_id", o.Key)
				}
			}
			for id, k := range perBatch {
				if k > 300 {
					t.Errorf("batch %s answered %d requests, more than 300", id, k)
				}
			}
		})
	}
}

// The byte bound splits too: a batch never holds more bytes than allowed.
func TestRunSplitsByBytes(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	reqs := chats(50)
	cfg := e.config()
	cfg.MaxBytes = 3000 // each line is about 230 bytes
	got, st, err := collect(t, bg, e, cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	if st.Created < 4 {
		t.Errorf("%d batches for 50 requests of ~230 bytes within 3000 bytes each", st.Created)
	}
	for _, r := range e.sim.Requests() {
		if r.Method == "POST" && r.Path == "/v1/files" {
			if n := len(r.Body); n > 3000+1000 { // the multipart envelope
				t.Errorf("an upload of %d bytes", n)
			}
		}
	}
}

// A run interrupted after it created its batches leaves them running; a
// run with the same journal polls them and creates nothing.
func TestResumeCreatesNothingAgain(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{BatchDelay: time.Hour})
			reqs := chats(900)
			cfg := e.config()
			cfg.MaxRequests = 200

			ctx, cancel := context.WithCancel(bg)
			go e.hooks.waitCreated(t, 5, cancel)
			got, st, err := collect(t, ctx, e, cfg, reqs)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run: %v, want ErrInterrupted", err)
			}
			if len(got) != 0 || st.Created != 5 || st.Running != 5 || st.Cancelled != 0 {
				t.Fatalf("interrupted run: %d outcomes, stats %+v; want none, 5 batches left running", len(got), st)
			}
			created := batchesCreated(e.sim, p)
			if created != 5 {
				t.Fatalf("the simulator created %d batches", created)
			}

			e.sim.AdvanceBatches(time.Hour)
			got, st, err = collect(t, bg, e, cfg, reqs)
			if err != nil {
				t.Fatalf("resumed Run: %v", err)
			}
			checkCompleted(t, got, reqs)
			if c := batchesCreated(e.sim, p); c != created {
				t.Errorf("the resumed run created %d batches more", c-created)
			}
			if st.Resumed != 5 || st.Created != 0 || st.Ended != 5 {
				t.Errorf("resumed stats %+v, want 5 resumed and ended, none created", st)
			}

			// Everything is settled: a third run with the same requests
			// creates new batches, as it has no answers to take.
			got, st, _ = driveBatches(t, e, cfg, reqs[:10], 0, time.Hour, nil)
			if st.Resumed != 0 || st.Created != 1 || len(got) != 10 {
				t.Errorf("third run: stats %+v, %d outcomes", st, len(got))
			}
		})
	}
}

// A create whose answer is lost took effect: the run finds the batch
// instead of creating a second one.
func TestLostCreateAnswerFindsTheBatch(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{})
			e.hooks.loseCreates = 2
			reqs := chats(100)
			cfg := e.config()
			cfg.MaxRequests = 40
			got, st, err := collect(t, bg, e, cfg, reqs)
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, got, reqs)
			if c := batchesCreated(e.sim, p); c != 3 || st.Created != 3 {
				t.Errorf("%d batches created at the simulator, %d by the run; want 3 and 3", c, st.Created)
			}
			if r := e.sim.Stats().Resets; r != 2 {
				t.Errorf("%d answers lost, want 2", r)
			}
		})
	}
}

// A run interrupted while a create failed before it reached the provider
// leaves an intent in the journal; the next run finds no batch for it and
// creates one.
func TestInterruptedCreateIsLookedUp(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	e.hooks.failCreates = 1000
	reqs := chats(10)
	cfg := e.config()
	cfg.MaxAttempts = 1000
	ctx, cancel := context.WithCancel(bg)
	go func() {
		for range 3 {
			<-e.hooks.attempts
		}
		cancel()
	}()
	got, st, err := collect(t, ctx, e, cfg, reqs)
	if !errors.Is(err, ErrInterrupted) || len(got) != 0 || st.Created != 0 {
		t.Fatalf("Run: %v, %d outcomes, stats %+v", err, len(got), st)
	}
	e.hooks.mu.Lock()
	e.hooks.failCreates = 0
	e.hooks.mu.Unlock()
	got, st, err = collect(t, bg, e, cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	if st.Created != 1 || batchesCreated(e.sim, imodel.OpenAI) != 1 {
		t.Errorf("stats %+v; want one batch", st)
	}
}

// Requests whose batch expired or errored are redone in new batches.
func TestExpiredAndFailedAreResubmitted(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			faults := simulator.BatchFaults{Expired: 0.2, ServerError: 0.1}
			if p == imodel.OpenAI {
				faults.Failed = 0.2
			}
			e := start(t, p, simulator.Config{BatchFaults: faults})
			reqs := chats(200)
			cfg := e.config()
			cfg.MaxRequests = 50
			cfg.MaxAttempts = 20
			got, st, err := collect(t, bg, e, cfg, reqs)
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, got, reqs)
			if st.Resubmitted == 0 || st.Online != 0 {
				t.Errorf("stats %+v: nothing resubmitted", st)
			}
			again := 0
			for _, o := range got {
				if o.Batches > 1 {
					again++
					if o.Event.Attempt != o.Batches {
						t.Errorf("%s: attempt %d after %d batches", o.Key, o.Event.Attempt, o.Batches)
					}
				}
			}
			if again == 0 {
				t.Error("no request went through more than one batch")
			}
		})
	}
}

// With FallbackOnline, requests whose batch did not answer them go online
// through the model's executor.
func TestFallbackOnline(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{BatchFaults: simulator.BatchFaults{Expired: 0.3, ServerError: 0.1}})
			reqs := chats(200)
			cfg := e.config()
			cfg.MaxRequests = 100
			cfg.FallbackOnline = true
			cfg.OnlineWindow = 8
			got, st, err := collect(t, bg, e, cfg, reqs)
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, got, reqs)
			online := 0
			for _, o := range got {
				if o.Online {
					online++
					if o.Batch == "" || o.Batches != 1 {
						t.Errorf("%s: online after batch %q, %d batches", o.Key, o.Batch, o.Batches)
					}
				}
			}
			if online == 0 || online != st.Online || st.Resubmitted != 0 {
				t.Errorf("%d answered online, stats %+v", online, st)
			}
			path := "/v1/chat/completions"
			if p == imodel.Anthropic {
				path = "/v1/messages"
			}
			calls := 0
			for _, r := range e.sim.Requests() {
				if r.Path == path {
					calls++
				}
			}
			if calls != online {
				t.Errorf("%d online calls for %d requests sent online", calls, online)
			}
		})
	}
}

// An answer that a call would not retry (a bad request) fails the request
// at once, with the kind a call gets, and no new batch.
func TestBadRequestFailsAsOnline(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{})
			reqs := chats(3)
			reqs[1].Payload["stream"] = true // refused inside a batch
			got, st, err := collect(t, bg, e, e.config(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			o := got[reqs[1].Key]
			info, _ := o.Event.Failure()
			resp, _ := o.Event.Response()
			if o.Event.Status != messages.StatusFailed || info.Kind != "bad_request" || resp.StatusCode != 400 || info.Details["status"] != "400" {
				t.Errorf("streamed request: %v, %+v, status %d", o.Event.Status, info, resp.StatusCode)
			}
			var api *imodel.APIError
			if !errors.As(o.Event.Err(), &api) || !errors.Is(o.Event.Err(), imodel.ErrBadRequest) {
				t.Errorf("error %v is not an *imodel.APIError of ErrBadRequest", o.Event.Err())
			}
			if st.Resubmitted != 0 || st.Created != 1 {
				t.Errorf("stats %+v", st)
			}
			for _, k := range []int{0, 2} {
				if got[reqs[k].Key].Event.Status != messages.StatusCompleted {
					t.Errorf("%s: %v", reqs[k].Key, got[reqs[k].Key].Event.Status)
				}
			}
		})
	}
}

// The same requests online and through a batch end alike: same statuses,
// same usage.
func TestOutcomesMatchOnline(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{})
			reqs := chats(60)
			got, _, err := collect(t, bg, e, e.config(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range reqs {
				resp, err := e.model.Invoke(bg, q.Payload)
				if err != nil {
					t.Fatalf("online %s: %v", q.Key, err)
				}
				b := got[q.Key].Event
				if b.Status != resp.Event.Status || b.Tokens.Actual != resp.Event.Tokens.Actual || b.Tokens.Estimated != resp.Event.Tokens.Estimated {
					t.Errorf("%s: batch %v %+v, online %v %+v", q.Key, b.Status, b.Tokens, resp.Event.Status, resp.Event.Tokens)
				}
			}
		})
	}
}

// Interrupted with CancelRemote, the run cancels the batches it leaves; a
// later run collects what they answered and redoes the rest.
func TestInterruptCancelsRemote(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{BatchDelay: time.Hour})
			reqs := chats(60)
			cfg := e.config()
			cfg.MaxRequests = 20
			asked := -1
			cfg.OnInterrupt = func(running int) bool { asked = running; return true }
			ctx, cancel := context.WithCancel(bg)
			go e.hooks.waitCreated(t, 3, func() {
				e.sim.AdvanceBatches(30 * time.Minute) // half of each batch runs
				cancel()
			})
			_, st, err := collect(t, ctx, e, cfg, reqs)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run: %v", err)
			}
			if asked != 3 || st.Cancelled != 3 || st.Running != 3 {
				t.Errorf("asked about %d batches; stats %+v", asked, st)
			}
			if c := e.sim.Stats().Batches.Cancels; c != 3 {
				t.Errorf("the simulator cancelled %d batches", c)
			}

			e.sim.AdvanceBatches(time.Hour)
			cfg.OnInterrupt = nil
			got, st, _ := driveBatches(t, e, cfg, reqs, 0, time.Hour, nil)
			checkCompleted(t, got, reqs)
			if st.Resumed != 3 || st.Resubmitted == 0 || st.Resubmitted >= len(reqs) {
				t.Errorf("stats %+v: want the cancelled requests redone, the answered kept", st)
			}
		})
	}
}

// driveBatches runs reqs and, once it has seen from creates, moves the
// batch clock on by d every millisecond of the run, so that its batches
// end without waiting; it returns the run's outcomes and stats and how
// many creates it saw (each told to each as it comes).
func driveBatches(t *testing.T, e *env, cfg Config, reqs []Request, from int, d time.Duration, each func(creates int)) (map[string]Outcome, Stats, int) {
	t.Helper()
	done := make(chan struct{})
	var got map[string]Outcome
	var st Stats
	var err error
	go func() {
		defer close(done)
		got, st, err = collect(t, bg, e, cfg, reqs)
	}()
	creates := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-e.hooks.created:
			creates++
			if each != nil {
				each(creates)
			}
			continue
		case <-tick.C:
			if creates >= from {
				e.sim.AdvanceBatches(d)
			}
			continue
		case <-deadline:
			t.Fatalf("the run is still going after 30 s (%d creates)", creates)
		case <-done:
		}
		break
	}
	if err != nil {
		t.Fatal(err)
	}
	return got, st, creates
}

// The enqueued-token limit holds batches back until earlier ones end.
func TestEnqueuedTokensWait(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{BatchDelay: time.Hour, BatchEnqueuedTokens: 2000})
	reqs := chats(60)
	cfg := e.config()
	cfg.EnqueuedTokens = 500 // about 25 requests
	got, st, creates := driveBatches(t, e, cfg, reqs, 0, time.Hour, func(n int) {
		// Each batch is created alone: the next waits for it to end.
		if c := batchesCreated(e.sim, imodel.OpenAI); c != int64(n) {
			t.Errorf("%d batches created while %d ran", c, n-1)
		}
	})
	checkCompleted(t, got, reqs)
	if st.Created < 3 || st.Created != creates || st.Resubmitted != 0 {
		t.Errorf("stats %+v, %d creates seen", st, creates)
	}
}

// A batch the provider refuses for its enqueued-token limit is created
// again once there is room, without counting against the requests'
// attempts.
func TestTokenLimitRefusalIsCreatedAgain(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{BatchDelay: time.Hour, BatchEnqueuedTokens: 300})
	reqs := chats(60)
	cfg := e.config()
	cfg.MaxRequests = 20 // about 240 input tokens a batch: the second does not fit beside the first
	cfg.MaxAttempts = 1
	// The clock stands still until the second batch is created, while the
	// first runs: the provider refuses it.
	got, st, creates := driveBatches(t, e, cfg, reqs, 2, 10*time.Minute, nil)
	checkCompleted(t, got, reqs)
	again := 0
	for _, o := range got {
		if o.Batches > 1 {
			again++
		}
	}
	if again == 0 || creates <= 3 || st.Resubmitted != 0 {
		t.Errorf("%d requests in a second batch, %d creates, stats %+v: no batch was refused and created again", again, creates, st)
	}
}

// A batch holds one model: requests for two models go into two batches.
func TestOneModelPerBatch(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	reqs := chats(40)
	for i := range reqs {
		if i%2 == 1 {
			reqs[i].Payload["model"] = "gpt-4o"
		}
	}
	got, st, err := collect(t, bg, e, e.config(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	byModel := map[string]map[string]bool{}
	for i, q := range reqs {
		var body struct{ Model string }
		resp, _ := got[q.Key].Event.Response()
		json.Unmarshal(resp.Body, &body)
		if want := reqs[i].Payload["model"]; want != nil && body.Model != want {
			t.Errorf("%s answered by %s", q.Key, body.Model)
		}
		if byModel[body.Model] == nil {
			byModel[body.Model] = map[string]bool{}
		}
		byModel[body.Model][got[q.Key].Batch] = true
	}
	if st.Created != 2 || len(byModel) != 2 || len(byModel["gpt-4o"]) != 1 || len(byModel["gpt-4o-mini"]) != 1 {
		t.Errorf("stats %+v, batches by model %v", st, byModel)
	}
}
