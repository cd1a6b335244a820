package simulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// The golden fixtures of the batch APIs are the providers' documented
// examples, kept with the wire types that decode them; their sources are
// listed in SOURCES.md beside them.
const goldenDir = "../internal/wire/testdata/golden"

// golden returns a fixture; for a JSONL fixture, its line-th line.
func golden(t *testing.T, name string, line int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(name) == ".jsonl" {
		return bytes.Split(b, []byte("\n"))[line]
	}
	return b
}

// checkFields checks that the JSON value got has the members of the
// fixture, recursively (arrays by their first element), and no member
// that neither the fixture nor extras, a set of dotted paths such as
// "data.model", names. A null on either side matches any value, as the
// members are nullable.
func checkFields(t *testing.T, name string, got, fixture []byte, extras ...string) {
	t.Helper()
	var g, f any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: the simulator's JSON: %v: %s", name, err, got)
	}
	if err := json.Unmarshal(fixture, &f); err != nil {
		t.Fatalf("%s: the fixture: %v", name, err)
	}
	extra := map[string]bool{}
	for _, e := range extras {
		extra[e] = true
	}
	var walk func(path string, g, f any)
	walk = func(path string, g, f any) {
		if g == nil || f == nil {
			return
		}
		if reflect.TypeOf(g) != reflect.TypeOf(f) {
			t.Errorf("%s: %s is %T in the simulator's JSON, %T in the fixture", name, path, g, f)
			return
		}
		switch fv := f.(type) {
		case map[string]any:
			gv := g.(map[string]any)
			for k, v := range fv {
				if _, ok := gv[k]; !ok {
					t.Errorf("%s: the simulator's JSON lacks %s%s", name, path, k)
					continue
				}
				walk(path+k+".", gv[k], v)
			}
			for k := range gv {
				if _, ok := fv[k]; !ok && !extra[path+k] {
					t.Errorf("%s: the simulator's JSON has %s%s, which the fixture does not", name, path, k)
				}
			}
		case []any:
			if gv := g.([]any); len(gv) > 0 && len(fv) > 0 {
				walk(path, gv[0], fv[0])
			}
		}
	}
	walk("", g, f)
}

func TestOpenAIBatchGoldenFields(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	// The documented input line, with one that fails beside it so that
	// the batch has an error file.
	input := append(golden(t, "openai_batch_input.jsonl", 0), '\n')
	input = append(input, jsonl(t, chatLine("bad", "x", map[string]any{"n": 0}))...)
	up := ok(t, ts.upload("", "batch.jsonl", input, map[string]string{"purpose": "batch"}))
	checkFields(t, "file", up, golden(t, "openai_file.json", 0), "status", "status_details")
	fileID := decode[wire.OpenAIFile](t, response{body: up}).ID

	var create map[string]any
	json.Unmarshal(golden(t, "openai_batch_create_request.json", 0), &create)
	create["input_file_id"] = fileID
	create["metadata"] = map[string]string{"customer_id": "user_123456789", "batch_description": "Nightly eval job"}
	body, _ := json.Marshal(create)
	b := decode[wire.Batch](t, response{body: ok(t, ts.api(http.MethodPost, "/v1/batches", "", body))})

	ts.AdvanceBatches(50 * time.Second)
	other := ts.createBatch("", fileID, "/v1/chat/completions")
	ts.AdvanceBatches(20 * time.Second)
	cancel := ok(t, ts.api(http.MethodPost, "/v1/batches/"+other.ID+"/cancel", "", nil))
	checkFields(t, "cancelling batch", cancel, golden(t, "openai_batch_cancel.json", 0), "model", "usage")

	ts.AdvanceBatches(time.Hour)
	got := ok(t, ts.api(http.MethodGet, "/v1/batches/"+b.ID, "", nil))
	checkFields(t, "completed batch", got, golden(t, "openai_batch.json", 0))
	checkFields(t, "list", ok(t, ts.api(http.MethodGet, "/v1/batches?limit=1", "", nil)), golden(t, "openai_batch_list.json", 0), "data.model", "data.usage")

	b = decode[wire.Batch](t, response{body: got})
	out := ok(t, ts.api(http.MethodGet, "/v1/files/"+*b.OutputFileID+"/content", "", nil))
	// The chat completion object documents logprobs, which the example
	// of the output line leaves out.
	checkFields(t, "output line", bytes.TrimSpace(out), golden(t, "openai_batch_output.jsonl", 0), "response.body.choices.logprobs")
	errs := ts.resultLines("", ts.getBatch("", other.ID).ErrorFileID)
	if len(errs) != 2 || errs[0].Error == nil {
		t.Fatalf("error lines of the cancelled batch: %+v", errs)
	}
	checkFields(t, "cancelled line", marshal(errs[0]), golden(t, "openai_batch_error_expired.jsonl", 0))
	checkFields(t, "deleted file", ok(t, ts.api(http.MethodDelete, "/v1/files/"+fileID, "", nil)), golden(t, "openai_file_deleted.json", 0))
}

func TestMessageBatchGoldenFields(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: 100 * time.Second})
	body := golden(t, "anthropic_message_batch_create_request.json", 0)
	created := ok(t, ts.api(http.MethodPost, "/v1/messages/batches", "", body))
	fixture := golden(t, "anthropic_message_batch.json", 0)
	checkFields(t, "created batch", created, fixture)
	id := decode[wire.MessageBatch](t, response{body: created}).ID
	checkFields(t, "list", ok(t, ts.api(http.MethodGet, "/v1/messages/batches", "", nil)), golden(t, "anthropic_message_batch_list.json", 0))

	ts.AdvanceBatches(time.Hour)
	checkFields(t, "ended batch", ok(t, ts.api(http.MethodGet, "/v1/messages/batches/"+id, "", nil)), fixture)
	lines := ts.messageResults("", id)
	if len(lines) != 1 {
		t.Fatalf("%d results", len(lines))
	}
	checkFields(t, "succeeded result", marshal(lines[0]), golden(t, "anthropic_message_batch_results.jsonl", 0))
	checkFields(t, "deleted", ok(t, ts.api(http.MethodDelete, "/v1/messages/batches/"+id, "", nil)), golden(t, "anthropic_message_batch_deleted.json", 0))

	// A batch with every kind of result.
	faulty := startBatches(t, Config{BatchDelay: 100 * time.Second, BatchFaults: BatchFaults{ServerError: 0.3, Expired: 0.3}})
	big := faulty.createMessageBatch("", messageRequests(40))
	faulty.AdvanceBatches(50 * time.Second)
	checkFields(t, "canceling batch", ok(t, faulty.api(http.MethodPost, "/v1/messages/batches/"+big.ID+"/cancel", "", nil)), fixture)
	faulty.AdvanceBatches(time.Hour)
	seen := map[string]bool{}
	for _, l := range faulty.messageResults("", big.ID) {
		seen[l.Result.Type] = true
		switch l.Result.Type {
		case wire.ResultErrored:
			checkFields(t, "errored result", marshal(l), golden(t, "anthropic_message_batch_result_errored.jsonl", 0))
		case wire.ResultCanceled:
			checkFields(t, "canceled result", marshal(l), golden(t, "anthropic_message_batch_result_errored.jsonl", 1))
		case wire.ResultExpired:
			checkFields(t, "expired result", marshal(l), golden(t, "anthropic_message_batch_result_errored.jsonl", 2))
		}
	}
	if len(seen) != 4 {
		t.Errorf("result types %v, want all four", seen)
	}
}
