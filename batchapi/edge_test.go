package batchapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// kindOf is the error kind of an outcome, "" if it did not fail.
func kindOf(o Outcome) string {
	info, _ := o.Event.Failure()
	return info.Kind
}

// A provider that refuses the create (a key it does not know, an account
// out of credit) fails the batch's requests with the kind a call gets, and
// the journal says the part has no batch.
func TestRefusedCreateFailsItsRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    imodel.Provider
		cfg  simulator.Config
		kind string
	}{
		// Anthropic's create is refused: the journal has its intent.
		{"auth", imodel.Anthropic, simulator.Config{Keys: []string{"sk-someone-else"}}, "auth"},
		// OpenAI's upload is refused, before any intent.
		{"quota", imodel.OpenAI, simulator.Config{QuotaExhaustedKeys: []string{openAIKey}}, "quota_exhausted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tc.p, tc.cfg)
			reqs := chats(5)
			got, st, err := collect(t, bg, e, e.config(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range reqs {
				if o := got[q.Key]; o.Event.Status != messages.StatusFailed || kindOf(o) != tc.kind || o.Batch != "" {
					t.Errorf("%s: %v %q batch %q, want FAILED %s", q.Key, o.Event.Status, kindOf(o), o.Batch, tc.kind)
				}
			}
			if st.Created != 0 {
				t.Errorf("stats %+v", st)
			}
			journal, _ := os.ReadFile(e.config().Journal)
			if tc.name == "auth" && !bytes.Contains(journal, []byte(`"event":"refused"`)) {
				t.Errorf("journal has no refusal:\n%s", journal)
			}
			if bytes.Contains(journal, []byte(openAIKey)) || bytes.Contains(journal, []byte(anthropicKey)) {
				t.Error("the journal holds the API key")
			}
		})
	}
}

// Creates that fail on the way are tried again after a backoff, and the
// batch is created once.
func TestFailedCreatesAreTriedAgain(t *testing.T) {
	e := start(t, imodel.Anthropic, simulator.Config{})
	e.hooks.failCreates = 2
	reqs := chats(10)
	got, st, err := collect(t, bg, e, e.config(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	if st.Created != 1 || batchesCreated(e.sim, imodel.Anthropic) != 1 {
		t.Errorf("stats %+v", st)
	}

	// Past MaxAttempts, the requests fail with the connection's error.
	e.hooks.failCreates = 100
	cfg := e.config()
	cfg.MaxAttempts = 2
	got, _, err = collect(t, bg, e, cfg, chats(3))
	if err != nil {
		t.Fatal(err)
	}
	for k, o := range got {
		if o.Event.Status != messages.StatusFailed || kindOf(o) != "connection" {
			t.Errorf("%s: %v %q", k, o.Event.Status, kindOf(o))
		}
	}
}

// Requests that can never go into a batch fail at once, each with its
// reason; the others run.
func TestRequestsRefusedBeforeAnyBatch(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	big := chat(3)
	big.Key = "big"
	big.Payload["messages"] = []any{map[string]any{"role": "user", "content": strings.Repeat("many words ", 300)}}
	long := chat(4)
	long.Key = "long"
	long.Payload["metadata_note"] = strings.Repeat("x", 5000)
	reqs := []Request{chat(0), chat(0), {Key: "", Payload: chat(1).Payload},
		{Key: "unencodable", Payload: map[string]any{"messages": make(chan int)}}, big, long, chat(2)}
	cfg := e.config()
	cfg.EnqueuedTokens = 200
	cfg.MaxBytes = 4000
	var got []Outcome
	seq := func(yield func(Request) bool) {
		for _, q := range reqs {
			if !yield(q) {
				return
			}
		}
	}
	if _, err := Run(bg, e.model, cfg, seq, func(o Outcome) { got = append(got, o) }); err != nil {
		t.Fatal(err)
	}
	kinds := map[string][]string{}
	for _, o := range got {
		kinds[o.Key] = append(kinds[o.Key], fmt.Sprintf("%v %s", o.Event.Status, kindOf(o)))
	}
	want := map[string][]string{
		chat(0).Key:   {"FAILED duplicate_key", "COMPLETED "},
		"":            {"FAILED invalid_request"},
		"unencodable": {"FAILED error"},
		"big":         {"FAILED too_many_tokens"},
		"long":        {"FAILED too_large"},
		chat(2).Key:   {"COMPLETED "},
	}
	for k, w := range want {
		g := kinds[k]
		if strings.Join(g, ";") != strings.Join(w, ";") && (len(g) != 2 || g[0] != w[1] || g[1] != w[0]) {
			t.Errorf("%q: %v, want %v", k, g, w)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d outcomes for 7 requests", len(got))
	}
}

// Do returns the outcomes in the order of the requests.
func TestDoKeepsTheOrder(t *testing.T) {
	e := start(t, imodel.Anthropic, simulator.Config{})
	reqs := chats(30)
	reqs = append(reqs, reqs[5]) // a second request of one key
	out, st, err := Do(bg, e.model, e.config(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out[:30] {
		if o.Key != reqs[i].Key || o.Event.Status != messages.StatusCompleted {
			t.Fatalf("outcome %d: %s %v", i, o.Key, o.Event.Status)
		}
	}
	if last := out[30]; last.Key != reqs[5].Key || kindOf(last) != "duplicate_key" {
		t.Errorf("the second request of a key: %s %q", last.Key, kindOf(last))
	}
	if st.Created != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The provider's failures on the way (a poll or a download answered 500,
// a result file cut short) are tried again at the next poll.
func TestPollFailuresAreTriedAgain(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			e := start(t, p, simulator.Config{})
			polls, downloads := 0, 0
			e.hooks.fault = func(r *http.Request) string {
				switch {
				case r.Method != http.MethodGet:
				case strings.HasSuffix(r.URL.Path, "/content") || strings.HasSuffix(r.URL.Path, "/results"):
					if downloads++; downloads <= 2 {
						return []string{"500", "truncate"}[downloads-1]
					}
				case strings.Contains(r.URL.Path, "batches/"):
					if polls++; polls <= 2 {
						return "503"
					}
				}
				return ""
			}
			reqs := chats(20)
			got, _, err := collect(t, bg, e, e.config(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, got, reqs)
			if polls < 3 || downloads < 3 {
				t.Errorf("%d polls, %d downloads: the faults were not met", polls, downloads)
			}
		})
	}
}

// A batch the provider no longer knows fails its requests with the error
// a call would get.
func TestLostBatchFailsItsRequests(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	e.hooks.rewrite = func(r *http.Request, resp *http.Response) *http.Response {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/batches/") {
			resp.Body.Close()
			body, _ := json.Marshal(wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, "", "No such Batch object"))
			return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}
		}
		return resp
	}
	got, st, err := collect(t, bg, e, e.config(), chats(4))
	if err != nil {
		t.Fatal(err)
	}
	for k, o := range got {
		if o.Event.Status != messages.StatusFailed || kindOf(o) != "bad_request" || o.Batch == "" {
			t.Errorf("%s: %v %q batch %q", k, o.Event.Status, kindOf(o), o.Batch)
		}
	}
	if st.Ended != 1 {
		t.Errorf("stats %+v", st)
	}
}

// An OpenAI batch that failed validation names its bad lines: their
// requests fail as bad requests, the others go into a new batch.
func TestFailedValidationFailsTheLinesNamed(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	first := true
	e.hooks.rewrite = func(r *http.Request, resp *http.Response) *http.Response {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/batches/") {
			return resp
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var batch wire.Batch
		json.Unmarshal(b, &batch)
		if first && batch.Status == wire.BatchCompleted {
			first = false
			line, param := 2, "body.model"
			batch.Status, batch.OutputFileID, batch.ErrorFileID = wire.BatchFailed, nil, nil
			batch.Errors = &wire.BatchErrors{Object: "list", Data: []wire.BatchError{{Code: "invalid_request", Message: "bad model", Param: &param, Line: &line}}}
			b, _ = json.Marshal(batch)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp
	}
	reqs := chats(5)
	got, st, err := collect(t, bg, e, e.config(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range reqs {
		o := got[q.Key]
		switch {
		case i == 1:
			info, _ := o.Event.Failure()
			if o.Event.Status != messages.StatusFailed || info.Kind != "bad_request" || !strings.Contains(info.Message, "bad model") {
				t.Errorf("line 2: %v %+v", o.Event.Status, info)
			}
		case o.Event.Status != messages.StatusCompleted || o.Batches != 2:
			t.Errorf("%s: %v after %d batches", q.Key, o.Event.Status, o.Batches)
		}
	}
	if st.Created != 2 || st.Resubmitted != 4 {
		t.Errorf("stats %+v", st)
	}
}

// A request whose answer from its resumed batch was already taken, or
// whose body changed since the batch was made, goes into a new batch; the
// resumed batches' requests this run does not have are let go.
func TestResumeWithAnsweredAndMissingRequests(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{BatchDelay: time.Hour})
	reqs := chats(20)
	cfg := e.config()
	ctx, cancel := context.WithCancel(bg)
	go e.hooks.waitCreated(t, 1, cancel)
	if _, _, err := collect(t, ctx, e, cfg, reqs); !errors.Is(err, ErrInterrupted) {
		t.Fatal(err)
	}
	journal, _ := os.ReadFile(cfg.Journal)
	var rec record
	json.Unmarshal(bytes.SplitN(journal, []byte("\n"), 3)[1], &rec)
	if rec.Event != eventCreated || rec.Batch == "" {
		t.Fatalf("second journal record: %+v", rec)
	}
	e.sim.AdvanceBatches(time.Hour)
	again := reqs[:5]
	again[0].Answered = rec.Batch
	edited := chat(99)
	edited.Key = again[2].Key
	again[2] = edited
	got, st, _ := driveBatches(t, e, cfg, again, 0, time.Hour, nil)
	checkCompleted(t, got, again)
	if got[again[0].Key].Batch == rec.Batch || got[again[2].Key].Batch == rec.Batch || got[again[1].Key].Batch != rec.Batch {
		t.Errorf("batches: %s, %s, %s; resumed %s", got[again[0].Key].Batch, got[again[1].Key].Batch, got[again[2].Key].Batch, rec.Batch)
	}
	if st.Resumed != 1 || st.Created != 1 {
		t.Errorf("stats %+v", st)
	}
	journal, _ = os.ReadFile(cfg.Journal)
	if n := bytes.Count(journal, []byte(`"event":"settled"`)); n != 2 {
		t.Errorf("%d settled records, want 2:\n%s", n, journal)
	}
}

// Sent online into an executor whose queue is full, requests wait for
// room.
func TestFallbackOnlineWaitsForQueueRoom(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{BatchFaults: simulator.BatchFaults{Expired: 1}})
	rc := runtime.DefaultConfig()
	rc.RequestsPerInterval, rc.QueueCapacity, rc.Concurrency = runtime.Unlimited, 1, 1
	ex, err := runtime.Start(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.StopNow(bg)
	model, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: e.sim.URL + "/v1", APIKey: openAIKey, Model: "gpt-4o-mini"},
		imodel.WithHTTPClient(e.client))
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	e.model = model
	cfg := e.config()
	cfg.FallbackOnline = true
	reqs := chats(12)
	got, st, err := collect(t, bg, e, cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	if st.Online != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestRefusedSetups(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	none := func(func(Request) bool) {}
	deliver := func(Outcome) {}
	if _, err := Run(bg, nil, Config{}, none, deliver); !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("nil model: %v", err)
	}
	var ce *messages.ConfigError
	if _, err := Run(bg, e.model, Config{Poll: -1}, none, deliver); !errors.As(err, &ce) || ce.Field != "Poll" {
		t.Errorf("negative poll: %v", err)
	}
	if _, err := Run(bg, e.model, Config{MaxRequests: 50_001}, none, deliver); !errors.As(err, &ce) || ce.Field != "MaxRequests" {
		t.Errorf("too many requests: %v", err)
	}
	if _, err := Run(bg, e.model, Config{MaxBytes: 300 << 20}, none, deliver); !errors.As(err, &ce) || ce.Field != "MaxBytes" {
		t.Errorf("too many bytes: %v", err)
	}
	if _, err := Run(bg, e.model, Config{Journal: filepath.Join(e.dir, "no", "such", "dir", "j")}, none, deliver); err == nil {
		t.Error("a journal in a missing directory")
	}

	generic, err := imodel.New(e.ex, imodel.EndpointConfig{Provider: imodel.Generic, BaseURL: e.sim.URL})
	if err != nil {
		t.Fatal(err)
	}
	var upe *UnsupportedProviderError
	if _, err := Run(bg, generic, Config{}, none, deliver); !errors.Is(err, ErrUnsupportedProvider) || !errors.As(err, &upe) ||
		!strings.Contains(err.Error(), `"generic"`) {
		t.Errorf("generic provider: %v", err)
	}

	// A journal of another endpoint's batches is refused, not resumed.
	j := filepath.Join(e.dir, "foreign.jsonl")
	rec, _ := json.Marshal(record{V: 1, Event: eventSubmit, Part: "p1", Provider: "anthropic", BaseURL: "https://api.anthropic.com/v1", Keys: []string{"k"}})
	os.WriteFile(j, append(rec, '\n'), 0o600)
	var fe *ForeignBatchesError
	if _, err := Run(bg, e.model, Config{Journal: j}, none, deliver); !errors.Is(err, ErrForeignBatches) || !errors.As(err, &fe) ||
		fe.Batches != 1 || !strings.Contains(err.Error(), "https://api.anthropic.com/v1") {
		t.Errorf("foreign journal: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for field, c := range map[string]Config{
		"Poll":             {Poll: -time.Second},
		"CompletionWindow": {CompletionWindow: time.Hour},
		"MaxRequests":      {MaxRequests: -1},
		"MaxBytes":         {MaxBytes: -1},
		"EnqueuedTokens":   {EnqueuedTokens: -1},
		"MaxAttempts":      {MaxAttempts: -1},
		"OnlineWindow":     {OnlineWindow: -1},
		"Grace":            {Grace: -1},
	} {
		var ce *messages.ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	if err := (Config{CompletionWindow: 24 * time.Hour}).Validate(); err != nil {
		t.Errorf("24h: %v", err)
	}
}

// A batch is recorded settled only once the caller says the outcomes it
// delivered are durable; one that never is, a later run resumes, and
// delivers its outcomes again.
func TestSettledOnlyOnceDurable(t *testing.T) {
	e := start(t, imodel.OpenAI, simulator.Config{})
	reqs := chats(30)
	cfg := e.config()
	cfg.MaxRequests = 10
	asked := map[string]int{}
	cfg.Durable = func(keys []string) (bool, error) {
		asked[keys[0]]++
		return false, nil
	}
	got, _, err := collect(t, bg, e, cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	journal, _ := os.ReadFile(cfg.Journal)
	if n := bytes.Count(journal, []byte(`"event":"settled"`)); n != 0 || len(asked) != 3 {
		t.Fatalf("%d settled records, %d batches asked about; want none and 3", n, len(asked))
	}

	cfg.Durable = func(keys []string) (bool, error) { return len(keys) == 10, nil }
	got, st, err := collect(t, bg, e, cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, got, reqs)
	journal, _ = os.ReadFile(cfg.Journal)
	if n := bytes.Count(journal, []byte(`"event":"settled"`)); n != 3 || st.Resumed != 3 || st.Created != 0 {
		t.Errorf("%d settled records, stats %+v", n, st)
	}

	cfg.Durable = func([]string) (bool, error) { return false, errors.New("disk full") }
	if _, _, err := collect(t, bg, e, cfg, reqs[:2]); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("a failed sync: %v", err)
	}
}
