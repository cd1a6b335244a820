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

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// at returns the Unix time of batchEpoch + d.
func at(d time.Duration) int64 { return batchEpoch.Add(d).Unix() }

func TestOpenAIBatchLifecycle(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	fileID := ts.uploadBatchFile("", jsonl(t, chatLines(10)...))
	b := ts.createBatch("", fileID, "/v1/chat/completions")
	if b.Status != wire.BatchValidating || b.CreatedAt != at(0) || deref(b.ExpiresAt) != at(24*time.Hour) || b.InProgressAt != nil ||
		b.RequestCounts != (wire.BatchRequestCounts{}) || b.Model != "gpt-4o-mini" || b.InputFileID != fileID || b.Endpoint != "/v1/chat/completions" {
		t.Fatalf("created: %+v", b)
	}
	// Validation takes a tenth of the delay; then the requests run at an
	// even pace until the last tenth, when the batch finalizes.
	steps := []struct {
		advance   time.Duration
		status    string
		completed int
	}{
		{9 * time.Second, wire.BatchValidating, 0},
		{time.Second, wire.BatchInProgress, 0},
		{40 * time.Second, wire.BatchInProgress, 5},
		{40 * time.Second, wire.BatchFinalizing, 10},
		{10 * time.Second, wire.BatchCompleted, 10},
	}
	for _, s := range steps {
		ts.AdvanceBatches(s.advance)
		b = ts.getBatch("", b.ID)
		if b.Status != s.status || b.RequestCounts.Completed != s.completed || b.RequestCounts.Failed != 0 {
			t.Fatalf("%s: status %s, counts %+v; want %s with %d completed", b.Status, b.Status, b.RequestCounts, s.status, s.completed)
		}
		if s.status != wire.BatchValidating && b.RequestCounts.Total != 10 {
			t.Errorf("%s: total %d", s.status, b.RequestCounts.Total)
		}
		if (b.OutputFileID != nil) != (s.status == wire.BatchCompleted) || b.ErrorFileID != nil {
			t.Errorf("%s: files %v, %v", s.status, b.OutputFileID, b.ErrorFileID)
		}
	}
	if deref(b.InProgressAt) != at(10*time.Second) || deref(b.FinalizingAt) != at(90*time.Second) || deref(b.CompletedAt) != at(100*time.Second) ||
		b.FailedAt != nil || b.ExpiredAt != nil || b.CancellingAt != nil || b.CancelledAt != nil || b.Errors != nil {
		t.Errorf("times: %+v", b)
	}

	lines := ts.resultLines("", b.OutputFileID)
	var ids []string
	var usage wire.Usage
	for _, l := range lines {
		ids = append(ids, l.CustomID)
		if l.Error != nil || l.Response == nil || l.Response.StatusCode != 200 || !strings.HasPrefix(l.Response.RequestID, "req_") || !strings.HasPrefix(l.ID, "batch_req_") {
			t.Fatalf("line %+v", l)
		}
		var body wire.ChatResponse
		if err := json.Unmarshal(l.Response.Body, &body); err != nil || body.Object != wire.ObjectChatCompletion {
			t.Fatalf("body %s: %v", l.Response.Body, err)
		}
		usage.PromptTokens += body.Usage.PromptTokens
		usage.CompletionTokens += body.Usage.CompletionTokens
	}
	sorted := slices.Sorted(slices.Values(ids))
	if len(ids) != 10 || slices.Equal(ids, sorted) && slices.Equal(ids, customIDs(10)) || len(slices.Compact(sorted)) != 10 {
		t.Errorf("custom IDs %v: want each of the 10 once, not in submission order", ids)
	}
	want := wire.BatchUsage{InputTokens: usage.PromptTokens, OutputTokens: usage.CompletionTokens, TotalTokens: usage.PromptTokens + usage.CompletionTokens}
	if b.Usage == nil || *b.Usage != want {
		t.Errorf("batch usage %+v, want %+v", b.Usage, want)
	}

	f := decode[wire.OpenAIFile](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/files/"+*b.OutputFileID, "", nil))})
	if f.Purpose != wire.PurposeBatchOutput || f.Filename != b.ID+"_output.jsonl" || f.CreatedAt != at(100*time.Second) || f.Bytes == 0 {
		t.Errorf("output file %+v", f)
	}
	if st := ts.Stats().Batches; st != (BatchStats{FilesUploaded: 1, OpenAIBatches: 1, Requests: 10}) {
		t.Errorf("batch stats %+v", st)
	}
}

// customIDs returns "r0" ... "r(n-1)".
func customIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("r", i)
	}
	return ids
}

// TestOpenAIBatchAnswersMatchOnline checks that each request of a batch
// gets what the same body gets online: the same reply, usage and errors,
// without being charged to the online limits.
func TestOpenAIBatchAnswersMatchOnline(t *testing.T) {
	bodies := map[string]map[string]any{
		"plain":  chatBody("gpt-4o", "hello world", nil),
		"short":  chatBody("gpt-4o", "say little", map[string]any{"max_tokens": 3}),
		"many":   chatBody("gpt-4o", "several answers", map[string]any{"n": 3}),
		"system": {"model": "gpt-4o", "messages": []any{map[string]any{"role": "system", "content": "Be brief."}, map[string]any{"role": "user", "name": "bob", "content": "why?"}}},
		"bad-n":  chatBody("gpt-4o", "x", map[string]any{"n": 0}),
		"no-msg": {"model": "gpt-4o", "messages": []any{}},
	}
	ts := startBatches(t, Config{RequestsPerMinute: len(bodies) + 1, Seed: 3})
	var lines []any
	online := map[string]response{}
	for id, body := range bodies {
		online[id] = ts.do(request{path: "/v1/chat/completions", body: body})
		raw, _ := json.Marshal(body)
		lines = append(lines, wire.BatchRequestLine{CustomID: id, Method: "POST", URL: "/v1/chat/completions", Body: raw})
	}
	admitted := ts.Stats().Admitted
	b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, lines...)), "/v1/chat/completions")
	b = ts.getBatch("", b.ID)
	if b.Status != wire.BatchCompleted || b.RequestCounts != (wire.BatchRequestCounts{Total: 6, Completed: 4, Failed: 2}) {
		t.Fatalf("batch %s %+v", b.Status, b.RequestCounts)
	}
	got := map[string]*wire.BatchLineResponse{}
	for _, l := range append(ts.resultLines("", b.OutputFileID), ts.resultLines("", b.ErrorFileID)...) {
		got[l.CustomID] = l.Response
	}
	for id, on := range online {
		r := got[id]
		if r == nil || r.StatusCode != on.status {
			t.Errorf("%s: batch answer %+v, online status %d", id, r, on.status)
			continue
		}
		if on.status != 200 {
			if string(r.Body) != string(on.body) {
				t.Errorf("%s: batch error %s, online %s", id, r.Body, on.body)
			}
			continue
		}
		var a, o wire.ChatResponse
		json.Unmarshal(r.Body, &a)
		json.Unmarshal(on.body, &o)
		if !reflect.DeepEqual(a.Choices, o.Choices) || *a.Usage != *o.Usage || a.Model != o.Model || a.Created != o.Created {
			t.Errorf("%s: batch answer %s, online %s", id, r.Body, on.body)
		}
	}
	// The batch ran although the online request bucket was nearly empty,
	// and charged nothing to it.
	if st := ts.Stats(); st.Admitted != admitted || st.TokensAdmitted == 0 {
		t.Errorf("admitted %d after the batch, %d before", st.Admitted, admitted)
	}
}

func TestOpenAIBatchEmbeddings(t *testing.T) {
	ts := startBatches(t, Config{Seed: 5})
	body := map[string]any{"model": "text-embedding-3-small", "input": []string{"one", "two words"}}
	raw, _ := json.Marshal(body)
	online := ts.do(request{path: "/v1/embeddings", body: body})
	line := wire.BatchRequestLine{CustomID: "e1", Method: "POST", URL: "/v1/embeddings", Body: raw}
	b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, line)), "/v1/embeddings")
	b = ts.getBatch("", b.ID)
	lines := ts.resultLines("", b.OutputFileID)
	if len(lines) != 1 || string(lines[0].Response.Body) != string(online.body) {
		t.Fatalf("lines %+v, online %s", lines, online.body)
	}
	if b.Usage.InputTokens == 0 || b.Usage.OutputTokens != 0 || b.Model != "text-embedding-3-small" {
		t.Errorf("batch %+v usage %+v", b, b.Usage)
	}
}

func TestOpenAIBatchRefusesStreams(t *testing.T) {
	ts := startBatches(t, Config{})
	b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLine("s", "hi", map[string]any{"stream": true}))), "/v1/chat/completions")
	b = ts.getBatch("", b.ID)
	lines := ts.resultLines("", b.ErrorFileID)
	if b.OutputFileID != nil || len(lines) != 1 || lines[0].Response.StatusCode != 400 {
		t.Fatalf("batch %+v, error lines %+v", b, lines)
	}
	var e wire.OpenAIErrorBody
	json.Unmarshal(lines[0].Response.Body, &e)
	if deref(e.Error.Param) != "stream" {
		t.Errorf("error %+v", e.Error)
	}
}

func TestOpenAIBatchCancel(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLines(10)...)), "/v1/chat/completions")
	ts.AdvanceBatches(50 * time.Second) // half executed
	r := ts.api(http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil)
	b = decode[wire.Batch](t, response{body: ok(t, r)})
	if b.Status != wire.BatchCancelling || deref(b.CancellingAt) != at(50*time.Second) || b.RequestCounts.Completed != 5 {
		t.Fatalf("cancelling: %+v", b)
	}
	// A second cancel changes nothing.
	if again := decode[wire.Batch](t, response{body: ok(t, ts.api(http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil))}); again.Status != wire.BatchCancelling {
		t.Errorf("second cancel: %s", again.Status)
	}
	ts.AdvanceBatches(9 * time.Second)
	if b = ts.getBatch("", b.ID); b.Status != wire.BatchCancelling {
		t.Fatalf("after 9 s: %s", b.Status)
	}
	ts.AdvanceBatches(time.Second)
	b = ts.getBatch("", b.ID)
	if b.Status != wire.BatchCancelled || deref(b.CancelledAt) != at(60*time.Second) || b.FinalizingAt != nil || b.RequestCounts != (wire.BatchRequestCounts{Total: 10, Completed: 5}) {
		t.Fatalf("cancelled: %+v", b)
	}
	out, errs := ts.resultLines("", b.OutputFileID), ts.resultLines("", b.ErrorFileID)
	if len(out) != 5 || len(errs) != 5 {
		t.Fatalf("%d output lines, %d error lines", len(out), len(errs))
	}
	for _, l := range errs {
		if l.Response != nil || l.Error == nil || l.Error.Code != wire.BatchErrorCancelled {
			t.Errorf("error line %+v", l)
		}
	}
	e := openAIError(t, ts.api(http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil), 400)
	if e.Message != "Cannot cancel a batch with status 'cancelled'." {
		t.Errorf("cancel after the end: %q", e.Message)
	}
	// Cancelled while validating, a batch executes nothing and writes no
	// files.
	v := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLines(2)...)), "/v1/chat/completions")
	ok(t, ts.api(http.MethodPost, "/v1/batches/"+v.ID+"/cancel", "", nil))
	ts.AdvanceBatches(time.Minute)
	if v = ts.getBatch("", v.ID); v.Status != wire.BatchCancelled || v.InProgressAt != nil || v.OutputFileID != nil || v.ErrorFileID != nil || v.RequestCounts.Total != 0 {
		t.Errorf("cancelled while validating: %+v", v)
	}
	if st := ts.Stats().Batches; st.Cancels != 2 || st.OpenAIBatches != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestOpenAIBatchExpiresAfterItsWindow(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 48 * time.Hour})
	b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLines(10)...)), "/v1/chat/completions")
	ts.AdvanceBatches(24*time.Hour - time.Second)
	if b = ts.getBatch("", b.ID); b.Status != wire.BatchInProgress {
		t.Fatalf("before the window ends: %s", b.Status)
	}
	ts.AdvanceBatches(time.Second)
	b = ts.getBatch("", b.ID)
	// The requests run from 4.8 h to 43.2 h: half are done at 24 h.
	if b.Status != wire.BatchExpired || deref(b.ExpiredAt) != at(24*time.Hour) || b.FinalizingAt != nil || b.RequestCounts.Completed != 5 {
		t.Fatalf("expired: %+v", b)
	}
	errs := ts.resultLines("", b.ErrorFileID)
	if len(errs) != 5 || errs[0].Error == nil || errs[0].Error.Code != wire.BatchErrorExpired ||
		errs[0].Error.Message != "This request could not be executed before the completion window expired." {
		t.Errorf("error lines %+v", errs)
	}
}

func TestOpenAIBatchFaults(t *testing.T) {
	cfg := Config{Seed: 11, BatchFaults: BatchFaults{ServerError: 0.3, Expired: 0.2}}
	run := func() (wire.Batch, map[string]string) {
		ts := startBatches(t, cfg)
		b := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLines(200)...)), "/v1/chat/completions")
		b = ts.getBatch("", b.ID)
		outcomes := map[string]string{}
		for _, l := range append(ts.resultLines("", b.OutputFileID), ts.resultLines("", b.ErrorFileID)...) {
			switch {
			case l.Error != nil:
				outcomes[l.CustomID] = l.Error.Code
			default:
				outcomes[l.CustomID] = fmt.Sprint(l.Response.StatusCode)
			}
		}
		return b, outcomes
	}
	b, outcomes := run()
	count := map[string]int{}
	for _, o := range outcomes {
		count[o]++
	}
	if len(outcomes) != 200 || count["200"]+count["500"]+count[wire.BatchErrorExpired] != 200 {
		t.Fatalf("outcomes %v", count)
	}
	// 200 draws at 30% and 20%: far outside these bounds only if the
	// draws are wrong.
	if count["500"] < 30 || count["500"] > 90 || count[wire.BatchErrorExpired] < 15 || count[wire.BatchErrorExpired] > 65 {
		t.Errorf("outcomes %v", count)
	}
	if b.Status != wire.BatchExpired || b.RequestCounts != (wire.BatchRequestCounts{Total: 200, Completed: count["200"], Failed: count["500"]}) {
		t.Errorf("batch %s %+v, outcomes %v", b.Status, b.RequestCounts, count)
	}
	// The same seed gives the same faults to the same requests.
	if _, again := run(); !reflect.DeepEqual(again, outcomes) {
		t.Error("a second server with the same seed drew other faults")
	}

	ts := startBatches(t, Config{BatchFaults: BatchFaults{Failed: 1}})
	f := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLines(3)...)), "/v1/chat/completions")
	if f = ts.getBatch("", f.ID); f.Status != wire.BatchFailed || f.Errors == nil || f.Errors.Data[0].Code != "server_error" || f.OutputFileID != nil || f.RequestCounts.Total != 0 {
		t.Errorf("failed batch %+v", f)
	}
}

func TestOpenAIBatchValidation(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 10 * time.Second})
	ts.adjust(func(st *batchStore) { st.limits.openAIRequests = 3 })
	good := chatLine("a", "hi", nil)
	other := chatLine("b", "hi", nil)
	other.Body = json.RawMessage(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	cases := []struct {
		name  string
		data  string
		code  string
		line  int
		param string
	}{
		{"empty", "", "empty_file", 0, ""},
		{"too many", string(jsonl(t, chatLines(4)...)), "too_many_tasks", 0, ""},
		{"not json", string(jsonl(t, good)) + "{nope\n", "invalid_json_line", 2, ""},
		{"wrong type", `{"custom_id":5,"method":"POST","url":"/v1/chat/completions","body":{}}`, "invalid_request", 1, "custom_id"},
		{"no custom_id", `{"method":"POST","url":"/v1/chat/completions","body":{}}`, "missing_required_parameter", 1, "custom_id"},
		{"no method", `{"custom_id":"a","url":"/v1/chat/completions","body":{}}`, "missing_required_parameter", 1, "method"},
		{"no url", `{"custom_id":"a","method":"POST","body":{}}`, "missing_required_parameter", 1, "url"},
		{"null body", `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":null}`, "missing_required_parameter", 1, "body"},
		{"GET", `{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}`, "invalid_request", 1, "method"},
		{"other url", `{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}`, "url_mismatch", 1, "url"},
		{"body array", `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":[]}`, "invalid_request", 1, "body"},
		{"duplicate", string(jsonl(t, good, good)), "duplicate_custom_id", 2, "custom_id"},
		{"two models", string(jsonl(t, good, other)), "model_mismatch", 2, "body.model"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := ts.createBatch("", ts.uploadBatchFile("", []byte(tc.data)), "/v1/chat/completions")
			if b.Status != wire.BatchValidating {
				t.Fatalf("created %s", b.Status)
			}
			ts.AdvanceBatches(time.Second)
			b = ts.getBatch("", b.ID)
			if b.Status != wire.BatchFailed || b.Errors == nil || len(b.Errors.Data) != 1 || b.Errors.Object != wire.ObjectList {
				t.Fatalf("batch %s, errors %+v", b.Status, b.Errors)
			}
			e := b.Errors.Data[0]
			if e.Code != tc.code || deref(e.Line) != tc.line || deref(e.Param) != tc.param || e.Message == "" {
				t.Errorf("error %s line %d param %q: %q; want %s line %d param %q", e.Code, deref(e.Line), deref(e.Param), e.Message, tc.code, tc.line, tc.param)
			}
			if deref(b.FailedAt) == 0 || b.InProgressAt != nil || b.OutputFileID != nil || b.ErrorFileID != nil {
				t.Errorf("failed batch %+v", b)
			}
		})
	}
	// A Windows line end and a missing final newline are fine.
	crlf := strings.ReplaceAll(string(jsonl(t, good, chatLine("b", "x", nil))), "\n", "\r\n")
	b := ts.createBatch("", ts.uploadBatchFile("", []byte(strings.TrimSuffix(crlf, "\r\n"))), "/v1/chat/completions")
	ts.AdvanceBatches(10 * time.Second)
	if b = ts.getBatch("", b.ID); b.Status != wire.BatchCompleted || b.RequestCounts.Completed != 2 {
		t.Errorf("CRLF file: %s %+v %+v", b.Status, b.RequestCounts, b.Errors)
	}
}

func TestOpenAIBatchEnqueuedTokens(t *testing.T) {
	perLine := tokens.ForModel("gpt-4o-mini").ChatPrompt([]tokens.Message{{Role: "user", Text: "question number 1"}})
	limit := 7*perLine + perLine/2 // 7 lines fit, 8 do not
	ts := startBatches(t, Config{BatchDelay: time.Hour, BatchEnqueuedTokens: limit})
	file := ts.uploadBatchFile("", jsonl(t, chatLines(7)...))
	first := ts.createBatch("", file, "/v1/chat/completions")
	second := ts.createBatch("", ts.uploadBatchFile("", jsonl(t, chatLine("x", "question number 1", nil))), "/v1/chat/completions")
	ts.AdvanceBatches(10 * time.Minute)
	if b := ts.getBatch("", first.ID); b.Status != wire.BatchInProgress {
		t.Fatalf("first batch %s %+v", b.Status, b.Errors)
	}
	b := ts.getBatch("", second.ID)
	if b.Status != wire.BatchFailed || b.Errors.Data[0].Code != "token_limit_exceeded" ||
		b.Errors.Data[0].Message != fmt.Sprintf("Enqueued token limit reached for gpt-4o-mini in organization org-simulator. Limit: %d enqueued tokens. Please try again once some in_progress batches have been completed.", limit) {
		t.Fatalf("second batch %s %+v", b.Status, b.Errors)
	}
	// Another key, or the same key once the first batch has ended, has
	// room again.
	other := ts.createBatch("sk-other", ts.uploadBatchFile("sk-other", jsonl(t, chatLines(7)...)), "/v1/chat/completions")
	ts.AdvanceBatches(time.Hour)
	third := ts.createBatch("", file, "/v1/chat/completions")
	ts.AdvanceBatches(time.Hour)
	for _, id := range []string{third.ID} {
		if b := ts.getBatch("", id); b.Status != wire.BatchCompleted {
			t.Errorf("%s: %s %+v", id, b.Status, b.Errors)
		}
	}
	if b := ts.getBatch("sk-other", other.ID); b.Status != wire.BatchCompleted {
		t.Errorf("other key: %s %+v", b.Status, b.Errors)
	}
	if commas(1234567) != "1,234,567" || commas(999) != "999" {
		t.Errorf("commas: %s, %s", commas(1234567), commas(999))
	}
}

func TestOpenAIBatchCreateErrors(t *testing.T) {
	ts := startBatches(t, Config{})
	file := ts.uploadBatchFile("", jsonl(t, chatLines(1)...))
	b := ts.createBatch("", file, "/v1/chat/completions")
	out := *ts.getBatch("", b.ID).OutputFileID
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name   string
		body   any
		status int
		param  string
		msg    string
	}{
		{"bad json", "{", 400, "", "We could not parse the JSON body"},
		{"no file", wire.BatchCreateRequest{Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, 400, "input_file_id", "Missing required parameter: 'input_file_id'."},
		{"no endpoint", wire.BatchCreateRequest{InputFileID: file, CompletionWindow: "24h"}, 400, "endpoint", "Missing required parameter"},
		{"no window", wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions"}, 400, "completion_window", "Missing required parameter"},
		{"endpoint", wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/responses", CompletionWindow: "24h"}, 400, "endpoint", "Supported values are"},
		{"window", wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "1h"}, 400, "completion_window", "'24h'"},
		{"metadata size", wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "24h", Metadata: many}, 400, "metadata", "at most 16"},
		{"metadata key", wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "24h", Metadata: map[string]string{strings.Repeat("k", 65): "v"}}, 400, "metadata", "64"},
		{"unknown file", wire.BatchCreateRequest{InputFileID: "file-nope", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, 404, "", "No such File object: file-nope"},
		{"output file", wire.BatchCreateRequest{InputFileID: out, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, 400, "input_file_id", "purpose 'batch_output'"},
	}
	for _, tc := range cases {
		var body []byte
		if s, ok := tc.body.(string); ok {
			body = []byte(s)
		} else {
			body, _ = json.Marshal(tc.body)
		}
		e := openAIError(t, ts.api(http.MethodPost, "/v1/batches", "", body), tc.status)
		if deref(e.Param) != tc.param || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %+v, want param %q and %q", tc.name, e, tc.param, tc.msg)
		}
	}
	if n := ts.Stats().Batches.OpenAIBatches; n != 1 {
		t.Errorf("%d batches created, want 1", n)
	}
	// A key out of credit is refused as online.
	ts2 := startBatches(t, Config{QuotaExhaustedKeys: []string{"sk-broke"}})
	if e := openAIError(t, ts2.upload("sk-broke", "b.jsonl", []byte("{}\n"), map[string]string{"purpose": "batch"}), 429); !e.QuotaExhausted() {
		t.Errorf("upload with no credit: %+v", e)
	}
	body, _ := json.Marshal(wire.BatchCreateRequest{InputFileID: "file-x", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
	if e := openAIError(t, ts2.api(http.MethodPost, "/v1/batches", "sk-broke", body), 429); !e.QuotaExhausted() {
		t.Errorf("create with no credit: %+v", e)
	}
}

func TestFileUploads(t *testing.T) {
	ts := startBatches(t, Config{})
	ts.adjust(func(st *batchStore) { st.limits.openAIBytes = 100 })
	batch := map[string]string{"purpose": "batch"}
	cases := []struct {
		name     string
		filename string
		data     string
		fields   map[string]string
		status   int
		param    string
		msg      string
	}{
		{"no file", "", "", batch, 400, "file", "Missing required parameter: 'file'."},
		{"no purpose", "a.jsonl", "x", nil, 400, "purpose", "Missing required parameter: 'purpose'."},
		{"bad purpose", "a.jsonl", "x", map[string]string{"purpose": "nonsense"}, 400, "purpose", "Supported values are"},
		{"other purpose", "a.jsonl", "x", map[string]string{"purpose": "fine-tune"}, 400, "purpose", "only files of purpose 'batch'"},
		{"not jsonl", "a.txt", "x", batch, 400, "file", "Invalid file format for Batch API. Must be .jsonl"},
		{"too large", "a.jsonl", strings.Repeat("x", 101), batch, 400, "file", "File is too large."},
		{"bad expiry", "a.jsonl", "x", map[string]string{"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "60"}, 400, "expires_after", "3600"},
	}
	for _, tc := range cases {
		e := openAIError(t, ts.upload("", tc.filename, []byte(tc.data), tc.fields), tc.status)
		if deref(e.Param) != tc.param || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %+v, want param %q and %q", tc.name, e, tc.param, tc.msg)
		}
	}
	e := openAIError(t, ts.api(http.MethodPost, "/v1/files", "", []byte(`{"purpose":"batch"}`)), 400)
	if !strings.Contains(e.Message, "multipart/form-data") {
		t.Errorf("JSON upload: %+v", e)
	}
	// A body far past the limit is cut off.
	ts.adjust(func(st *batchStore) { st.limits.openAIBytes = 0 })
	body, ct := multipartBody("a.jsonl", make([]byte, 2<<20), batch)
	openAIError(t, ts.api(http.MethodPost, "/v1/files", "", body, "Content-Type", ct), 413)
	ts.adjust(func(st *batchStore) { st.limits.openAIBytes = 100 })

	r := ts.upload("", "a.jsonl", []byte("{}\n"), map[string]string{"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"})
	f := decode[wire.OpenAIFile](t, response{body: ok(t, r)})
	if f.Object != wire.ObjectFile || f.Bytes != 3 || f.CreatedAt != at(0) || deref(f.ExpiresAt) != at(2*time.Hour) || f.Filename != "a.jsonl" ||
		f.Purpose != wire.PurposeBatch || f.Status != "processed" || !strings.HasPrefix(f.ID, "file-") {
		t.Errorf("file %+v", f)
	}
	if st := ts.Stats().Batches; st.FilesUploaded != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFilesListGetDelete(t *testing.T) {
	ts := startBatches(t, Config{})
	var ids []string
	for i := range 3 {
		ids = append(ids, ts.uploadBatchFile("", jsonl(t, chatLines(i+1)...)))
		ts.AdvanceBatches(time.Second)
	}
	b := ts.createBatch("", ids[0], "/v1/chat/completions") // writes an output file
	out := *ts.getBatch("", b.ID).OutputFileID
	ts.uploadBatchFile("sk-other", []byte("{}\n"))

	list := func(query string) wire.OpenAIList[wire.OpenAIFile] {
		t.Helper()
		return decode[wire.OpenAIList[wire.OpenAIFile]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/files"+query, "", nil))})
	}
	names := func(l wire.OpenAIList[wire.OpenAIFile]) []string {
		var s []string
		for _, f := range l.Data {
			s = append(s, f.ID)
		}
		return s
	}
	if l := list(""); !slices.Equal(names(l), []string{out, ids[2], ids[1], ids[0]}) || l.HasMore || deref(l.FirstID) != out || deref(l.LastID) != ids[0] || l.Object != wire.ObjectList {
		t.Errorf("all files: %v %+v", names(l), l)
	}
	if l := list("?purpose=batch&order=asc&limit=2"); !slices.Equal(names(l), ids[:2]) || !l.HasMore {
		t.Errorf("first page: %v", names(l))
	}
	if l := list("?purpose=batch&order=asc&limit=2&after=" + ids[1]); !slices.Equal(names(l), ids[2:]) || l.HasMore {
		t.Errorf("second page: %v", names(l))
	}
	if l := list("?purpose=batch_output"); !slices.Equal(names(l), []string{out}) {
		t.Errorf("outputs: %v", names(l))
	}
	if l := list("?after=file-gone"); len(l.Data) != 0 || l.FirstID != nil || string(ok(t, ts.api(http.MethodGet, "/v1/files?after=file-gone", "", nil))) != `{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}` {
		t.Errorf("unknown cursor: %+v", l)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?limit=10001", "?order=up"} {
		openAIError(t, ts.api(http.MethodGet, "/v1/files"+q, "", nil), 400)
	}

	f := decode[wire.OpenAIFile](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/files/"+ids[1], "", nil))})
	if f.ID != ids[1] || f.CreatedAt != at(time.Second) {
		t.Errorf("file %+v", f)
	}
	content := ok(t, ts.api(http.MethodGet, "/v1/files/"+ids[1]+"/content", "", nil))
	if string(content) != string(jsonl(t, chatLines(2)...)) {
		t.Errorf("content %s", content)
	}
	held := ts.heldBytes()
	d := decode[wire.OpenAIFileDeleted](t, response{body: ok(t, ts.api(http.MethodDelete, "/v1/files/"+ids[1], "", nil))})
	if d != (wire.OpenAIFileDeleted{ID: ids[1], Object: wire.ObjectFile, Deleted: true}) || ts.heldBytes() != held-int64(len(content)) {
		t.Errorf("deleted %+v, %d bytes held, %d before", d, ts.heldBytes(), held)
	}
	openAIError(t, ts.api(http.MethodGet, "/v1/files/"+ids[1], "", nil), 404)
	openAIError(t, ts.api(http.MethodDelete, "/v1/files/"+ids[1], "", nil), 404)
	// Files belong to their key.
	openAIError(t, ts.api(http.MethodGet, "/v1/files/"+ids[0], "sk-other", nil), 404)
	openAIError(t, ts.api(http.MethodGet, "/v1/batches/"+b.ID, "sk-other", nil), 404)
}

func TestOpenAIBatchList(t *testing.T) {
	ts := startBatches(t, Config{})
	file := ts.uploadBatchFile("", jsonl(t, chatLines(1)...))
	var ids []string
	for range 5 {
		ids = append(ids, ts.createBatch("", file, "/v1/chat/completions").ID)
	}
	ts.createBatch("sk-other", ts.uploadBatchFile("sk-other", jsonl(t, chatLines(1)...)), "/v1/chat/completions")
	slices.Reverse(ids) // newest first
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		q := "?limit=2"
		if after != "" {
			q += "&after=" + after
		}
		l := decode[wire.OpenAIList[wire.Batch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/batches"+q, "", nil))})
		for _, b := range l.Data {
			got = append(got, b.ID)
			if b.Status != wire.BatchCompleted {
				t.Errorf("%s: %s", b.ID, b.Status)
			}
		}
		if !l.HasMore || pages > 5 {
			break
		}
		after = *l.LastID
	}
	if !slices.Equal(got, ids) {
		t.Errorf("listed %v, want %v", got, ids)
	}
	if l := decode[wire.OpenAIList[wire.Batch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/batches", "", nil))}); len(l.Data) != 5 || l.HasMore {
		t.Errorf("default page: %d batches, more %v", len(l.Data), l.HasMore)
	}
	openAIError(t, ts.api(http.MethodGet, "/v1/batches?limit=101", "", nil), 400)
}

func TestBatchRouteHooks(t *testing.T) {
	ts := startBatches(t, Config{FaultRetryAfter: 300 * time.Millisecond})
	file := ts.uploadBatchFile("", jsonl(t, chatLines(2)...))
	create, _ := json.Marshal(wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})

	// A reset after the batch was created loses the answer, not the batch.
	r := ts.api(http.MethodPost, "/v1/batches", "", create, HeaderFault, "reset")
	if r.err == nil {
		t.Fatalf("reset create got a response: %d %s", r.status, r.body)
	}
	l := decode[wire.OpenAIList[wire.Batch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/batches", "", nil))})
	if len(l.Data) != 1 || ts.Stats().Batches.OpenAIBatches != 1 || ts.Stats().Resets != 1 {
		t.Fatalf("after a reset create: %d listed, stats %+v", len(l.Data), ts.Stats())
	}
	// Server errors and 429s come before anything is done.
	for _, f := range []string{"500", "503", "529", "429", "quota"} {
		r := ts.api(http.MethodPost, "/v1/batches", "", create, HeaderFault, f)
		if r.status < 400 {
			t.Errorf("%s: status %d", f, r.status)
		}
	}
	if n := ts.Stats().Batches.OpenAIBatches; n != 1 {
		t.Errorf("%d batches after refused creates, want 1", n)
	}
	r = ts.api(http.MethodGet, "/v1/batches", "", nil, HeaderFault, "429")
	if r.status != 429 || r.header.Get("retry-after-ms") != "300" {
		t.Errorf("429: %d, retry-after-ms %q", r.status, r.header.Get("retry-after-ms"))
	}
	// X-Sim-Fault-Times lets the retry through.
	hdr := []string{HeaderFault, "503", HeaderFaultTimes, "1", HeaderRequestID, "poll-1"}
	if r := ts.api(http.MethodGet, "/v1/batches/"+l.Data[0].ID, "", nil, hdr...); r.status != 503 {
		t.Errorf("first poll %d", r.status)
	}
	ok(t, ts.api(http.MethodGet, "/v1/batches/"+l.Data[0].ID, "", nil, hdr...))
	// Spoiled answers.
	if r := ts.api(http.MethodGet, "/v1/batches/"+l.Data[0].ID, "", nil, HeaderFault, "malformed"); r.status != 200 || json.Valid(r.body) {
		t.Errorf("malformed: %d %s", r.status, r.body)
	}
	out := *l.Data[0].OutputFileID
	if r := ts.api(http.MethodGet, "/v1/files/"+out+"/content", "", nil, HeaderFault, "truncate"); r.err == nil {
		t.Errorf("truncated download read in full: %s", r.body)
	}
	slow := startBatches(t, Config{SlowDelay: time.Millisecond})
	ok(t, slow.api(http.MethodGet, "/v1/batches", "", nil, HeaderFault, "slow"))
}

func TestBatchStorageBounds(t *testing.T) {
	ts := startBatches(t, Config{})
	data := jsonl(t, chatLines(2)...)
	ts.adjust(func(st *batchStore) { st.maxBytes = int64(len(data)) + 10 })
	file := ts.uploadBatchFile("", data)
	e := openAIError(t, ts.upload("", "b.jsonl", data, map[string]string{"purpose": "batch"}), 400)
	if !strings.Contains(e.Message, "limit of") {
		t.Errorf("upload past the bound: %+v", e)
	}
	// The answers of a batch count too.
	create, _ := json.Marshal(wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
	if e := openAIError(t, ts.api(http.MethodPost, "/v1/batches", "", create), 400); !strings.Contains(e.Message, "delete files or batches") {
		t.Errorf("batch past the bound: %+v", e)
	}
	ok(t, ts.api(http.MethodDelete, "/v1/files/"+file, "", nil))
	if n := ts.heldBytes(); n != 0 {
		t.Errorf("%d bytes held with nothing stored", n)
	}

	// The number of files and of batches is bounded too.
	ts.adjust(func(st *batchStore) { st.maxBytes, st.maxObjects = MaxBatchBytes, 2 })
	file = ts.uploadBatchFile("", data)
	ts.uploadBatchFile("", data)
	if e := openAIError(t, ts.upload("", "b.jsonl", data, map[string]string{"purpose": "batch"}), 400); !strings.Contains(e.Message, "limit of 2 files") {
		t.Errorf("third file: %+v", e)
	}
	b := ts.createBatch("", file, "/v1/chat/completions")
	// The result files of a batch are written whatever the bounds, and
	// replace the answers it held.
	before := ts.heldBytes()
	if out := ts.getBatch("", b.ID).OutputFileID; out == nil || ts.heldBytes() <= before {
		t.Errorf("output %v, %d bytes held, %d before", out, ts.heldBytes(), before)
	}
	ts.createBatch("", file, "/v1/chat/completions")
	create, _ = json.Marshal(wire.BatchCreateRequest{InputFileID: file, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
	if e := openAIError(t, ts.api(http.MethodPost, "/v1/batches", "", create), 400); !strings.Contains(e.Message, "limit of 2 batches") {
		t.Errorf("third batch: %+v", e)
	}
}
