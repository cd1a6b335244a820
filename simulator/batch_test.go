package simulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
)

// batchEpoch is when the batch tests' clock starts.
var batchEpoch = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// startBatches starts a server for cfg whose clock is a fakeClock at
// batchEpoch, which AdvanceBatches moves for the batch APIs.
func startBatches(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = (&fakeClock{t: batchEpoch}).now
	return startServer(t, s)
}

// adjust changes the batch store of ts under its lock.
func (ts *testServer) adjust(change func(st *batchStore)) {
	ts.batches.mu.Lock()
	defer ts.batches.mu.Unlock()
	change(ts.batches)
}

// heldBytes returns the bytes the batch store holds.
func (ts *testServer) heldBytes() int64 {
	var n int64
	ts.adjust(func(st *batchStore) { n = st.bytes })
	return n
}

// api sends a request to a batch route, with the provider's auth headers
// for key (or sk-test), and then the header pairs of hdr.
func (ts *testServer) api(method, path, key string, body []byte, hdr ...string) response {
	ts.t.Helper()
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if key == "" {
		key = "sk-test"
	}
	if strings.HasPrefix(path, "/v1/messages") {
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", "2023-06-01")
	} else {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// ok fails the test unless r is a 200, and returns its body.
func ok(t testing.TB, r response) []byte {
	t.Helper()
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("status %d, %v: %s", r.status, r.err, r.body)
	}
	return r.body
}

// multipartBody encodes an upload of data named filename with the form
// fields, and returns it with its content type.
func multipartBody(filename string, data []byte, fields map[string]string) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	if filename != "" {
		fw, _ := w.CreateFormFile("file", filename)
		fw.Write(data)
	}
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// upload uploads data as filename with the fields, as key.
func (ts *testServer) upload(key, filename string, data []byte, fields map[string]string) response {
	body, ct := multipartBody(filename, data, fields)
	return ts.api(http.MethodPost, "/v1/files", key, body, "Content-Type", ct)
}

// jsonl encodes each value as one line.
func jsonl(t testing.TB, values ...any) []byte {
	var b []byte
	for _, v := range values {
		line, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, line...), '\n')
	}
	return b
}

// uploadBatchFile uploads data as a batch input file and returns its ID.
func (ts *testServer) uploadBatchFile(key string, data []byte) string {
	ts.t.Helper()
	f := decode[wire.OpenAIFile](ts.t, response{body: ok(ts.t, ts.upload(key, "batch.jsonl", data, map[string]string{"purpose": "batch"}))})
	return f.ID
}

// createBatch creates an OpenAI batch of the file for endpoint.
func (ts *testServer) createBatch(key, fileID, endpoint string) wire.Batch {
	ts.t.Helper()
	body := jsonl(ts.t, wire.BatchCreateRequest{InputFileID: fileID, Endpoint: endpoint, CompletionWindow: "24h"})
	return decode[wire.Batch](ts.t, response{body: ok(ts.t, ts.api(http.MethodPost, "/v1/batches", key, body))})
}

// getBatch retrieves an OpenAI batch.
func (ts *testServer) getBatch(key, id string) wire.Batch {
	ts.t.Helper()
	return decode[wire.Batch](ts.t, response{body: ok(ts.t, ts.api(http.MethodGet, "/v1/batches/"+id, key, nil))})
}

// resultLines downloads a result file and decodes its lines.
func (ts *testServer) resultLines(key string, id *string) []wire.BatchResponseLine {
	ts.t.Helper()
	if id == nil {
		return nil
	}
	return decodeJSONL[wire.BatchResponseLine](ts.t, ok(ts.t, ts.api(http.MethodGet, "/v1/files/"+*id+"/content", key, nil)))
}

// decodeJSONL decodes each line of data.
func decodeJSONL[T any](t testing.TB, data []byte) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		out = append(out, v)
	}
	return out
}

// chatLine is a batch input line for a chat request of one user message.
func chatLine(id, text string, extra map[string]any) wire.BatchRequestLine {
	body, _ := json.Marshal(chatBody("gpt-4o-mini", text, extra))
	return wire.BatchRequestLine{CustomID: id, Method: "POST", URL: "/v1/chat/completions", Body: body}
}

// chatLines returns n chat lines with custom IDs "r0", "r1", ....
func chatLines(n int) []any {
	lines := make([]any, n)
	for i := range lines {
		lines[i] = chatLine(fmt.Sprint("r", i), fmt.Sprint("question number ", i), nil)
	}
	return lines
}

func TestBatchConfigErrors(t *testing.T) {
	cases := []struct {
		cfg   Config
		field string
	}{
		{Config{BatchDelay: -time.Second}, "BatchDelay"},
		{Config{BatchEnqueuedTokens: -1}, "BatchEnqueuedTokens"},
		{Config{BatchFaults: BatchFaults{ServerError: 1.5}}, "BatchFaults.ServerError"},
		{Config{BatchFaults: BatchFaults{Expired: -0.1}}, "BatchFaults.Expired"},
		{Config{BatchFaults: BatchFaults{Failed: 2}}, "BatchFaults.Failed"},
		{Config{BatchFaults: BatchFaults{ServerError: 0.6, Expired: 0.6}}, "BatchFaults"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, messages.ErrInvalidConfig) {
			t.Errorf("%+v: error %v, want one about %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := New(Config{BatchDelay: time.Hour, BatchEnqueuedTokens: 10, BatchFaults: BatchFaults{ServerError: 0.5, Expired: 0.5, Failed: 1}}); err != nil {
		t.Errorf("valid batch config refused: %v", err)
	}
}

func TestBatchRoutes(t *testing.T) {
	ts := start(t, Config{Keys: []string{"sk-test"}})
	// Methods other than the route's are refused in the provider's format.
	r := ts.api(http.MethodPut, "/v1/files", "", nil)
	if e := openAIError(t, r, http.StatusMethodNotAllowed); !strings.Contains(e.Message, "use GET or POST") || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT /v1/files: %+v, Allow %q", e, r.header.Get("Allow"))
	}
	anthropicError(t, ts.api(http.MethodPatch, "/v1/messages/batches/x", "", nil), http.StatusMethodNotAllowed)
	// The keys of the online endpoints are the keys of the batch APIs.
	if e := openAIError(t, ts.api(http.MethodGet, "/v1/batches", "sk-other", nil), 401); e.CodeString() != "invalid_api_key" {
		t.Errorf("unknown key: %+v", e)
	}
	anthropicError(t, ts.api(http.MethodGet, "/v1/messages/batches", "sk-other", nil), 401)
	// Anthropic's routes need its version header.
	r = ts.api(http.MethodGet, "/v1/messages/batches", "", nil, "anthropic-version", "")
	if e := anthropicError(t, r, 400); !strings.Contains(e.Message, "anthropic-version") {
		t.Errorf("no version: %+v", e)
	}
	r = ts.api(http.MethodGet, "/v1/batches", "", nil, HeaderFault, "bogus")
	openAIError(t, r, 400)
	// Unknown objects are 404s.
	for _, path := range []string{"/v1/files/file-x", "/v1/files/file-x/content", "/v1/batches/batch_x", "/v1/messages/batches/msgbatch_x", "/v1/messages/batches/msgbatch_x/results"} {
		r := ts.api(http.MethodGet, path, "", nil)
		if strings.HasPrefix(path, "/v1/messages") {
			if e := anthropicError(t, r, 404); e.Type != wire.AnthropicNotFoundError {
				t.Errorf("%s: %+v", path, e)
			}
		} else if e := openAIError(t, r, 404); !strings.Contains(e.Message, "No such") {
			t.Errorf("%s: %+v", path, e)
		}
	}
	// Batch API calls are requests in Stats, but never rate limited.
	st := ts.Stats()
	if st.Requests != 11 || st.ByStatus[404] != 5 || st.ByStatus[405] != 2 || st.Admitted != 0 || st.ByKey["sk-test"].Requests != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestAdvanceBatchesMovesOnlyTheBatchClock(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 1, BatchDelay: time.Hour})
	ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil)})
	id := ts.uploadBatchFile("", jsonl(t, chatLines(3)...))
	b := ts.createBatch("", id, "/v1/chat/completions")
	ts.AdvanceBatches(59 * time.Minute)
	if got := ts.getBatch("", b.ID); got.Status != wire.BatchFinalizing {
		t.Errorf("after 59 minutes: %s", got.Status)
	}
	ts.AdvanceBatches(time.Minute)
	if got := ts.getBatch("", b.ID); got.Status != wire.BatchCompleted || got.RequestCounts.Completed != 3 {
		t.Errorf("after an hour: %s %+v", got.Status, got.RequestCounts)
	}
	// The rate limit's clock did not move: the key's minute is not over.
	if r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", nil)}); r.status != 429 {
		t.Errorf("second online request: %d, want 429", r.status)
	}
}

// TestPage checks the cursor arithmetic shared by the list endpoints.
func TestPage(t *testing.T) {
	items := []string{"e", "d", "c", "b", "a"} // newest first
	id := func(s string) string { return s }
	cases := []struct {
		after, before string
		limit         int
		want          string
		more          bool
	}{
		{"", "", 2, "ed", true},
		{"d", "", 2, "cb", true},
		{"b", "", 2, "a", false},
		{"a", "", 2, "", false},
		{"", "", 5, "edcba", false},
		{"", "b", 2, "dc", true},
		{"", "d", 2, "e", false},
		{"zz", "", 2, "", false},
		{"", "zz", 2, "", false},
	}
	for _, tc := range cases {
		got, more := page(items, id, tc.after, tc.before, tc.limit)
		if strings.Join(got, "") != tc.want || more != tc.more {
			t.Errorf("page(after %q, before %q, %d) = %v, %v; want %q, %v", tc.after, tc.before, tc.limit, got, more, tc.want, tc.more)
		}
	}
}

// TestBatchesConcurrently drives both providers' batch APIs from several
// clients at once while the batch clock moves, for the race detector.
func TestBatchesConcurrently(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: time.Minute, BatchFaults: BatchFaults{ServerError: 0.1}})
	const clients = 4
	var wg sync.WaitGroup
	for i := range clients {
		key := fmt.Sprint("sk-client-", i)
		wg.Go(func() {
			body, ct := multipartBody("b.jsonl", jsonl(t, chatLines(20)...), map[string]string{"purpose": "batch"})
			r := ts.api(http.MethodPost, "/v1/files", key, body, "Content-Type", ct)
			var f wire.OpenAIFile
			if r.status != 200 || json.Unmarshal(r.body, &f) != nil {
				t.Errorf("upload: %d %s", r.status, r.body)
				return
			}
			create, _ := json.Marshal(wire.BatchCreateRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
			msgs, _ := json.Marshal(wire.MessageBatchCreateRequest{Requests: messageRequests(20)})
			for range 3 {
				for _, req := range []struct {
					path, list string
					body       []byte
				}{
					{"/v1/batches", "/v1/batches", create},
					{"/v1/messages/batches", "/v1/messages/batches", msgs},
				} {
					if r := ts.api(http.MethodPost, req.path, key, req.body); r.status != 200 {
						t.Errorf("create %s: %d %s", req.path, r.status, r.body)
					}
					if r := ts.api(http.MethodGet, req.list, key, nil); r.status != 200 {
						t.Errorf("list %s: %d %s", req.list, r.status, r.body)
					}
				}
			}
		})
	}
	for range 10 {
		ts.AdvanceBatches(10 * time.Second)
	}
	wg.Wait()
	ts.AdvanceBatches(time.Minute)
	for i := range clients {
		key := fmt.Sprint("sk-client-", i)
		l := decode[wire.OpenAIList[wire.Batch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/batches", key, nil))})
		p := decode[wire.AnthropicPage[wire.MessageBatch]](t, response{body: ok(t, ts.api(http.MethodGet, "/v1/messages/batches", key, nil))})
		if len(l.Data) != 3 || len(p.Data) != 3 {
			t.Fatalf("%s: %d OpenAI and %d Anthropic batches", key, len(l.Data), len(p.Data))
		}
		for _, b := range l.Data {
			if b.Status != wire.BatchCompleted || b.RequestCounts.Completed+b.RequestCounts.Failed != 20 {
				t.Errorf("%s: %s %+v", b.ID, b.Status, b.RequestCounts)
			}
		}
		for _, b := range p.Data {
			if c := b.RequestCounts; b.ProcessingStatus != wire.MessageBatchEnded || c.Succeeded+c.Errored != 20 {
				t.Errorf("%s: %s %+v", b.ID, b.ProcessingStatus, c)
			}
		}
	}
	if st := ts.Stats().Batches; st != (BatchStats{FilesUploaded: clients, OpenAIBatches: 3 * clients, AnthropicBatches: 3 * clients, Requests: 2 * 3 * 20 * clients}) {
		t.Errorf("stats %+v", st)
	}
}
