package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// messageRequests returns n batch requests with custom IDs "m0", "m1", ....
func messageRequests(n int) []wire.MessageBatchRequest {
	reqs := make([]wire.MessageBatchRequest, n)
	for i := range reqs {
		params, _ := json.Marshal(messagesBody("claude-sonnet-4-5", fmt.Sprint("question number ", i), 50, nil))
		reqs[i] = wire.MessageBatchRequest{CustomID: fmt.Sprint("m", i), Params: params}
	}
	return reqs
}

// createMessageBatch creates an Anthropic batch of reqs.
func (ts *testServer) createMessageBatch(key string, reqs []wire.MessageBatchRequest) wire.MessageBatch {
	ts.t.Helper()
	body, _ := json.Marshal(wire.MessageBatchCreateRequest{Requests: reqs})
	return decode[wire.MessageBatch](ts.t, response{body: ok(ts.t, ts.api(http.MethodPost, "/v1/messages/batches", key, body))})
}

// getMessageBatch retrieves an Anthropic batch.
func (ts *testServer) getMessageBatch(key, id string) wire.MessageBatch {
	ts.t.Helper()
	return decode[wire.MessageBatch](ts.t, response{body: ok(ts.t, ts.api(http.MethodGet, "/v1/messages/batches/"+id, key, nil))})
}

// messageResults downloads the results of an Anthropic batch.
func (ts *testServer) messageResults(key, id string) []wire.MessageBatchResultLine {
	ts.t.Helper()
	return decodeJSONL[wire.MessageBatchResultLine](ts.t, ok(ts.t, ts.api(http.MethodGet, "/v1/messages/batches/"+id+"/results", key, nil)))
}

func TestMessageBatchLifecycle(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	b := ts.createMessageBatch("", messageRequests(10))
	if b.Type != wire.TypeMessageBatch || b.ProcessingStatus != wire.MessageBatchInProgress || !b.CreatedAt.Equal(batchEpoch) || !b.ExpiresAt.Equal(batchEpoch.Add(24*time.Hour)) ||
		b.RequestCounts != (wire.MessageBatchRequestCounts{Processing: 10}) || b.EndedAt != nil || b.ResultsURL != nil || b.ArchivedAt != nil || b.CancelInitiatedAt != nil ||
		!strings.HasPrefix(b.ID, "msgbatch_") {
		t.Fatalf("created %+v", b)
	}
	// The results are not there until the batch ends; the counts stay at
	// processing until then.
	ts.AdvanceBatches(99 * time.Second)
	if e := anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches/"+b.ID+"/results", "", nil), 400); !strings.Contains(e.Message, "has not finished processing") {
		t.Errorf("early results: %+v", e)
	}
	if got := ts.getMessageBatch("", b.ID); got.RequestCounts != (wire.MessageBatchRequestCounts{Processing: 10}) {
		t.Errorf("counts before the end %+v", got.RequestCounts)
	}
	ts.AdvanceBatches(time.Second)
	b = ts.getMessageBatch("", b.ID)
	if b.ProcessingStatus != wire.MessageBatchEnded || !deref(b.EndedAt).Equal(batchEpoch.Add(100*time.Second)) ||
		b.RequestCounts != (wire.MessageBatchRequestCounts{Succeeded: 10}) || deref(b.ResultsURL) != ts.url+"/v1/messages/batches/"+b.ID+"/results" {
		t.Fatalf("ended %+v", b)
	}
	results := ts.messageResults("", b.ID)
	var ids []string
	for _, l := range results {
		ids = append(ids, l.CustomID)
		var m wire.MessagesResponse
		if l.Result.Type != wire.ResultSucceeded || json.Unmarshal(l.Result.Message, &m) != nil || m.Type != wire.TypeMessage || m.Usage.OutputTokens == 0 {
			t.Errorf("result %+v", l)
		}
	}
	if len(ids) != 10 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 10 {
		t.Errorf("custom IDs %v", ids)
	}

	// An ended batch can be deleted, once.
	d := decode[wire.MessageBatchDeleted](t, response{body: ok(t, ts.api(http.MethodDelete, "/v1/messages/batches/"+b.ID, "", nil))})
	if d != (wire.MessageBatchDeleted{ID: b.ID, Type: wire.TypeMessageBatchDeleted}) || ts.heldBytes() != 0 {
		t.Errorf("deleted %+v, %d bytes held", d, ts.heldBytes())
	}
	anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches/"+b.ID, "", nil), 404)
	if st := ts.Stats().Batches; st != (BatchStats{AnthropicBatches: 1, Requests: 10}) {
		t.Errorf("stats %+v", st)
	}
}

// TestMessageBatchAnswersMatchOnline checks that each request of a batch
// gets what the same body gets online, errors included, without being
// charged to the online limits.
func TestMessageBatchAnswersMatchOnline(t *testing.T) {
	bodies := map[string]map[string]any{
		"plain":    messagesBody("claude-sonnet-4-5", "hello world", 100, nil),
		"short":    messagesBody("claude-haiku-4-5", "say little", 3, nil),
		"system":   messagesBody("claude-sonnet-4-5", "why?", 100, map[string]any{"system": "Be brief."}),
		"no-max":   {"model": "claude-sonnet-4-5", "messages": []any{map[string]any{"role": "user", "content": "x"}}},
		"stream":   messagesBody("claude-sonnet-4-5", "hello world", 100, map[string]any{"stream": true}),
		"bad-json": {"model": "claude-sonnet-4-5", "max_tokens": "many"},
	}
	ts := startBatches(t, Config{RequestsPerMinute: len(bodies), Seed: 9})
	var reqs []wire.MessageBatchRequest
	online := map[string]response{}
	for id, body := range bodies {
		if id != "stream" {
			online[id] = ts.do(request{path: "/v1/messages", body: body})
		}
		params, _ := json.Marshal(body)
		reqs = append(reqs, wire.MessageBatchRequest{CustomID: id, Params: params})
	}
	admitted := ts.Stats().Admitted
	b := ts.createMessageBatch("", reqs)
	b = ts.getMessageBatch("", b.ID)
	if b.RequestCounts != (wire.MessageBatchRequestCounts{Succeeded: 3, Errored: 3}) {
		t.Fatalf("counts %+v", b.RequestCounts)
	}
	for _, l := range ts.messageResults("", b.ID) {
		if l.CustomID == "stream" {
			if l.Result.Type != wire.ResultErrored || l.Result.Error.Error.Type != wire.AnthropicInvalidRequestError {
				t.Errorf("stream: %+v", l.Result)
			}
			continue
		}
		on := online[l.CustomID]
		if on.status != 200 {
			var e wire.AnthropicErrorBody
			json.Unmarshal(on.body, &e)
			if l.Result.Type != wire.ResultErrored || !reflect.DeepEqual(*l.Result.Error, e) {
				t.Errorf("%s: batch %+v, online %s", l.CustomID, l.Result, on.body)
			}
			continue
		}
		var a, o wire.MessagesResponse
		json.Unmarshal(l.Result.Message, &a)
		json.Unmarshal(on.body, &o)
		a.ID, o.ID = "", ""
		if l.Result.Type != wire.ResultSucceeded || !reflect.DeepEqual(a, o) {
			t.Errorf("%s: batch %s, online %s", l.CustomID, l.Result.Message, on.body)
		}
	}
	if st := ts.Stats(); st.Admitted != admitted {
		t.Errorf("admitted %d after the batch, %d before", st.Admitted, admitted)
	}
}

func TestMessageBatchCancel(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	b := ts.createMessageBatch("", messageRequests(10))
	ts.AdvanceBatches(30 * time.Second)
	c := decode[wire.MessageBatch](t, response{body: ok(t, ts.api(http.MethodPost, "/v1/messages/batches/"+b.ID+"/cancel", "", nil))})
	if c.ProcessingStatus != wire.MessageBatchCanceling || !deref(c.CancelInitiatedAt).Equal(batchEpoch.Add(30*time.Second)) || c.RequestCounts.Processing != 10 {
		t.Fatalf("canceling %+v", c)
	}
	if e := anthropicError(t, ts.api(http.MethodDelete, "/v1/messages/batches/"+b.ID, "", nil), 400); !strings.Contains(e.Message, "cannot be deleted while it is in progress") {
		t.Errorf("delete while canceling: %+v", e)
	}
	ts.AdvanceBatches(10 * time.Second)
	b = ts.getMessageBatch("", b.ID)
	if b.ProcessingStatus != wire.MessageBatchEnded || !deref(b.EndedAt).Equal(batchEpoch.Add(40*time.Second)) || b.RequestCounts != (wire.MessageBatchRequestCounts{Succeeded: 3, Canceled: 7}) {
		t.Fatalf("ended %+v", b)
	}
	n := map[string]int{}
	for _, l := range ts.messageResults("", b.ID) {
		n[l.Result.Type]++
		if l.Result.Type == wire.ResultCanceled && (l.Result.Message != nil || l.Result.Error != nil) {
			t.Errorf("canceled result %+v", l.Result)
		}
	}
	if n[wire.ResultSucceeded] != 3 || n[wire.ResultCanceled] != 7 {
		t.Errorf("results %v", n)
	}
	if e := anthropicError(t, ts.api(http.MethodPost, "/v1/messages/batches/"+b.ID+"/cancel", "", nil), 400); !strings.Contains(e.Message, "already ended") {
		t.Errorf("cancel after the end: %+v", e)
	}
	if st := ts.Stats().Batches; st.Cancels != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMessageBatchFaultsAndExpiry(t *testing.T) {
	ts := startBatches(t, Config{Seed: 4, BatchFaults: BatchFaults{ServerError: 0.25, Expired: 0.25, Failed: 1}})
	b := ts.getMessageBatch("", ts.createMessageBatch("", messageRequests(100)).ID)
	c := b.RequestCounts
	// Failed does not apply to Anthropic, which has no failed state.
	if c.Succeeded+c.Errored+c.Expired != 100 || c.Errored < 10 || c.Errored > 45 || c.Expired < 10 || c.Expired > 45 || c.Processing != 0 {
		t.Fatalf("counts %+v", c)
	}
	for _, l := range ts.messageResults("", b.ID) {
		if l.Result.Type == wire.ResultErrored && (l.Result.Error.Error.Type != wire.AnthropicAPIError || l.Result.Error.Type != "error") {
			t.Errorf("errored result %+v", l.Result.Error)
		}
	}

	// A batch that would outlast the 24-hour window expires with what it
	// had done.
	long := startBatches(t, Config{BatchDelay: 48 * time.Hour})
	e := long.createMessageBatch("", messageRequests(10))
	long.AdvanceBatches(24 * time.Hour)
	if e = long.getMessageBatch("", e.ID); e.ProcessingStatus != wire.MessageBatchEnded || e.RequestCounts != (wire.MessageBatchRequestCounts{Succeeded: 5, Expired: 5}) {
		t.Errorf("expired batch %+v", e)
	}
}

func TestMessageBatchCreateErrors(t *testing.T) {
	ts := startBatches(t, Config{QuotaExhaustedKeys: []string{"sk-broke"}})
	ts.adjust(func(st *batchStore) { st.limits.anthropicRequests, st.limits.anthropicBytes = 3, 4096 })
	good := messageRequests(1)[0]
	cases := []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"bad json", "{", 400, "There was an error parsing the body"},
		{"no requests", wire.MessageBatchCreateRequest{}, 400, "requests: List should have at least 1 item"},
		{"too many", wire.MessageBatchCreateRequest{Requests: messageRequests(4)}, 400, "requests: List should have at most 3 items after validation, not 4"},
		{"bad id", wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{{CustomID: "a b", Params: good.Params}}}, 400, "requests.0.custom_id: String should match pattern"},
		{"long id", wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{{CustomID: strings.Repeat("a", 65), Params: good.Params}}}, 400, "requests.0.custom_id"},
		{"duplicate", wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{good, good}}, 400, "requests.1.custom_id: Duplicate custom_id"},
		{"no params", wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{{CustomID: "a"}}}, 400, "requests.0.params"},
		{"params array", wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{{CustomID: "a", Params: json.RawMessage("[]")}}}, 400, "requests.0.params"},
		{"too large", strings.Repeat(" ", 5000), 413, "exceeds the maximum size of 4096 bytes"},
	}
	for _, tc := range cases {
		var body []byte
		if s, ok := tc.body.(string); ok {
			body = []byte(s)
		} else {
			body, _ = json.Marshal(tc.body)
		}
		if e := anthropicError(t, ts.api(http.MethodPost, "/v1/messages/batches", "", body), tc.status); !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %+v, want %q", tc.name, e, tc.msg)
		}
	}
	body, _ := json.Marshal(wire.MessageBatchCreateRequest{Requests: []wire.MessageBatchRequest{good}})
	if e := anthropicError(t, ts.api(http.MethodPost, "/v1/messages/batches", "sk-broke", body), 400); !strings.Contains(e.Message, "credit balance") {
		t.Errorf("no credit: %+v", e)
	}
	ts.adjust(func(st *batchStore) { st.maxObjects = 0 })
	if e := anthropicError(t, ts.api(http.MethodPost, "/v1/messages/batches", "", body), 400); !strings.Contains(e.Message, "limit of 0 batches") {
		t.Errorf("store full: %+v", e)
	}
	if st := ts.Stats().Batches; st.AnthropicBatches != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMessageBatchList(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: time.Hour})
	var ids []string
	for range 5 {
		ids = append(ids, ts.createMessageBatch("", messageRequests(1)).ID)
		ts.AdvanceBatches(time.Second)
	}
	ts.createMessageBatch("sk-other", messageRequests(1))
	slices.Reverse(ids) // newest first
	list := func(q string) ([]string, wire.AnthropicPage[wire.MessageBatch]) {
		t.Helper()
		p := decode[wire.AnthropicPage[wire.MessageBatch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/messages/batches"+q, "", nil))})
		var got []string
		for _, b := range p.Data {
			got = append(got, b.ID)
		}
		return got, p
	}
	if got, p := list("?limit=2"); !slices.Equal(got, ids[:2]) || !p.HasMore || deref(p.FirstID) != ids[0] || deref(p.LastID) != ids[1] {
		t.Errorf("first page %v %+v", got, p)
	}
	if got, p := list("?limit=2&after_id=" + ids[1]); !slices.Equal(got, ids[2:4]) || !p.HasMore {
		t.Errorf("second page %v", got)
	}
	if got, p := list("?limit=2&after_id=" + ids[3]); !slices.Equal(got, ids[4:]) || p.HasMore {
		t.Errorf("last page %v", got)
	}
	if got, p := list("?limit=2&before_id=" + ids[3]); !slices.Equal(got, ids[1:3]) || !p.HasMore {
		t.Errorf("page before %v", got)
	}
	if got, _ := list(""); !slices.Equal(got, ids) {
		t.Errorf("default page %v", got)
	}
	anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches?after_id=a&before_id=b", "", nil), 400)
	anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches?limit=1001", "", nil), 400)
	// Batches belong to their key.
	anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches/"+ids[0], "sk-other", nil), 404)
}
