package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decodeLines decodes each line of a JSONL fixture into a new T, and checks
// that encoding a line gives the fixture's line, compacted.
func decodeLines[T any](t *testing.T, name string) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(readGolden(t, name)))
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		json.Compact(&want, sc.Bytes())
		if !jsonEqual(t, got, want.Bytes()) {
			t.Errorf("%s: re-encoded line differs:\n got %s\nwant %s", name, got, want.Bytes())
		}
		out = append(out, v)
	}
	return out
}

// jsonEqual reports whether a and b encode equal JSON values, whatever the
// order of their members.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// checkFixtureFields checks that encoding v gives the same JSON value as the
// fixture, so that no documented member is lost or renamed.
func checkFixtureFields(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, readGolden(t, name)) {
		t.Errorf("%s: re-encoded value differs:\n got %s\nwant %s", name, got, readGolden(t, name))
	}
}

func TestGoldenOpenAIBatch(t *testing.T) {
	b := decodeGolden[Batch](t, "openai_batch.json")
	checkFixtureFields(t, "openai_batch.json", b)
	if b.ID != "batch_abc123" || b.Object != ObjectBatch || b.Status != BatchCompleted || b.CompletionWindow != CompletionWindow24h {
		t.Errorf("batch %+v", b)
	}
	if deref(b.OutputFileID) != "file-cvaTdG" || deref(b.ErrorFileID) != "file-HOWS94" || b.Errors != nil {
		t.Errorf("files %v %v, errors %v", b.OutputFileID, b.ErrorFileID, b.Errors)
	}
	if deref(b.CompletedAt) != 1711493163 || b.FailedAt != nil || b.CancelledAt != nil {
		t.Errorf("times: completed %v, failed %v, cancelled %v", b.CompletedAt, b.FailedAt, b.CancelledAt)
	}
	if b.RequestCounts != (BatchRequestCounts{Total: 100, Completed: 95, Failed: 5}) {
		t.Errorf("counts %+v", b.RequestCounts)
	}
	if b.Usage == nil || b.Usage.InputTokens != 1500 || b.Usage.InputTokensDetails.CachedTokens != 1024 || b.Usage.OutputTokensDetails.ReasoningTokens != 300 || b.Usage.TotalTokens != 2000 {
		t.Errorf("usage %+v", b.Usage)
	}
	if b.Metadata["batch_description"] != "Nightly eval job" {
		t.Errorf("metadata %v", b.Metadata)
	}

	c := decodeGolden[Batch](t, "openai_batch_cancel.json")
	checkFixtureFields(t, "openai_batch_cancel.json", c)
	if c.Status != BatchCancelling || deref(c.CancellingAt) != 1711475133 || c.OutputFileID != nil {
		t.Errorf("cancelling batch %+v", c)
	}

	l := decodeGolden[OpenAIList[Batch]](t, "openai_batch_list.json")
	checkFixtureFields(t, "openai_batch_list.json", l)
	if l.Object != ObjectList || len(l.Data) != 1 || !l.HasMore || deref(l.LastID) != "batch_abc456" || l.Data[0].Usage != nil {
		t.Errorf("list %+v", l)
	}

	r := decodeGolden[BatchCreateRequest](t, "openai_batch_create_request.json")
	checkFixtureFields(t, "openai_batch_create_request.json", r)
	if r.InputFileID != "file-abc123" || r.Endpoint != "/v1/chat/completions" || r.CompletionWindow != CompletionWindow24h {
		t.Errorf("create request %+v", r)
	}
}

func TestGoldenOpenAIBatchLines(t *testing.T) {
	in := decodeLines[BatchRequestLine](t, "openai_batch_input.jsonl")
	if len(in) != 1 || in[0].CustomID != "request-1" || in[0].Method != "POST" || in[0].URL != "/v1/chat/completions" {
		t.Fatalf("input %+v", in)
	}
	var body ChatRequest
	if err := json.Unmarshal(in[0].Body, &body); err != nil || body.Model != "gpt-4o-mini" || len(body.Messages) != 2 {
		t.Errorf("body %+v, %v", body, err)
	}

	out := decodeLines[BatchResponseLine](t, "openai_batch_output.jsonl")
	if len(out) != 1 || out[0].Response == nil || out[0].Error != nil || out[0].Response.StatusCode != 200 || out[0].Response.RequestID != "req_c187b3" {
		t.Fatalf("output %+v", out)
	}
	var resp ChatResponse
	if err := json.Unmarshal(out[0].Response.Body, &resp); err != nil || resp.Usage == nil || resp.Usage.TotalTokens != 39 {
		t.Errorf("body %+v, %v", resp, err)
	}

	exp := decodeLines[BatchResponseLine](t, "openai_batch_error_expired.jsonl")
	if len(exp) != 1 || exp[0].Response != nil || exp[0].Error == nil || exp[0].Error.Code != BatchErrorExpired {
		t.Errorf("expired line %+v", exp)
	}
}

func TestGoldenOpenAIFile(t *testing.T) {
	// The published example leaves out the deprecated status members,
	// which the API still sends; only the published ones are compared.
	f := decodeGolden[OpenAIFile](t, "openai_file.json")
	if f.ID != "file-abc123" || f.Object != ObjectFile || f.Bytes != 120000 || deref(f.ExpiresAt) != 1677614202 || f.Filename != "mydata.jsonl" {
		t.Errorf("file %+v", f)
	}
	got, _ := json.Marshal(f)
	var m map[string]any
	json.Unmarshal(got, &m)
	delete(m, "status")
	delete(m, "status_details")
	got, _ = json.Marshal(m)
	if !jsonEqual(t, got, readGolden(t, "openai_file.json")) {
		t.Errorf("re-encoded file differs: %s", got)
	}

	d := decodeGolden[OpenAIFileDeleted](t, "openai_file_deleted.json")
	checkFixtureFields(t, "openai_file_deleted.json", d)
	if d != (OpenAIFileDeleted{ID: "file-abc123", Object: ObjectFile, Deleted: true}) {
		t.Errorf("deleted %+v", d)
	}
}

func TestGoldenAnthropicMessageBatch(t *testing.T) {
	b := decodeGolden[MessageBatch](t, "anthropic_message_batch.json")
	checkFixtureFields(t, "anthropic_message_batch.json", b)
	want := time.Date(2024, 8, 20, 18, 37, 24, 100435000, time.UTC)
	if b.Type != TypeMessageBatch || b.ProcessingStatus != MessageBatchInProgress || !b.CreatedAt.Equal(want) || b.EndedAt == nil || !b.EndedAt.Equal(want) {
		t.Errorf("batch %+v", b)
	}
	if b.RequestCounts != (MessageBatchRequestCounts{Processing: 100, Succeeded: 50, Errored: 30, Canceled: 10, Expired: 10}) {
		t.Errorf("counts %+v", b.RequestCounts)
	}
	if deref(b.ResultsURL) != "https://api.anthropic.com/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results" {
		t.Errorf("results url %v", b.ResultsURL)
	}

	l := decodeGolden[AnthropicPage[MessageBatch]](t, "anthropic_message_batch_list.json")
	checkFixtureFields(t, "anthropic_message_batch_list.json", l)
	if len(l.Data) != 1 || !l.HasMore || deref(l.FirstID) != "first_id" || deref(l.LastID) != "last_id" {
		t.Errorf("page %+v", l)
	}

	d := decodeGolden[MessageBatchDeleted](t, "anthropic_message_batch_deleted.json")
	checkFixtureFields(t, "anthropic_message_batch_deleted.json", d)
	if d.Type != TypeMessageBatchDeleted {
		t.Errorf("deleted %+v", d)
	}

	var r MessageBatchCreateRequest
	if err := json.Unmarshal(readGolden(t, "anthropic_message_batch_create_request.json"), &r); err != nil {
		t.Fatal(err)
	}
	checkFixtureFields(t, "anthropic_message_batch_create_request.json", r)
	var params MessagesRequest
	if len(r.Requests) != 1 || r.Requests[0].CustomID != "my-custom-id-1" {
		t.Fatalf("requests %+v", r.Requests)
	}
	if err := json.Unmarshal(r.Requests[0].Params, &params); err != nil || params.MaxTokens != 1024 || params.Model != "claude-sonnet-4-5-20250929" {
		t.Errorf("params %+v, %v", params, err)
	}
}

func TestGoldenAnthropicMessageBatchResults(t *testing.T) {
	lines := decodeLines[MessageBatchResultLine](t, "anthropic_message_batch_results.jsonl")
	if len(lines) != 2 || lines[0].CustomID != "my-second-request" {
		t.Fatalf("lines %+v", lines)
	}
	for _, l := range lines {
		var m MessagesResponse
		if l.Result.Type != ResultSucceeded || l.Result.Error != nil {
			t.Errorf("result %+v", l.Result)
		}
		if err := json.Unmarshal(l.Result.Message, &m); err != nil || m.Type != TypeMessage || m.Usage.OutputTokens == 0 {
			t.Errorf("message %+v, %v", m, err)
		}
	}

	other := decodeLines[MessageBatchResultLine](t, "anthropic_message_batch_result_errored.jsonl")
	var types []string
	for _, l := range other {
		types = append(types, l.Result.Type)
		if l.Result.Message != nil {
			t.Errorf("%s result has a message", l.Result.Type)
		}
	}
	if !reflect.DeepEqual(types, []string{ResultErrored, ResultCanceled, ResultExpired}) {
		t.Errorf("types %v", types)
	}
	if e := other[0].Result.Error; e == nil || e.Type != "error" || e.Error.Type != AnthropicInvalidRequestError {
		t.Errorf("errored result %+v", e)
	}
}
