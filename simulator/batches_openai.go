package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// OpenAI's Files and Batch APIs: a client uploads a JSONL file of requests
// with purpose "batch", creates a batch from it, polls the batch, and
// downloads its output and error files.

// fileLifetime is how long an uploaded batch file, or a batch's result
// file, lives by default; the simulator reports it but keeps files until
// they are deleted.
const fileLifetime = 30 * 24 * time.Hour

// openAIBatchEndpoints are the endpoints a batch may use: those the
// simulator serves online.
var openAIBatchEndpoints = map[string]func(*call){
	"/v1/chat/completions": (*call).chat,
	"/v1/embeddings":       (*call).embeddings,
}

// openAIPurposes are the purposes OpenAI accepts for an upload.
var openAIPurposes = []string{"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}

// files serves GET and POST /v1/files.
func (c *call) files() {
	if c.r.Method == http.MethodGet {
		c.listFiles()
		return
	}
	c.uploadFile()
}

// uploadFile serves POST /v1/files: a multipart upload of a batch input
// file. Its lines are validated when a batch is created from it, as OpenAI
// does; the upload checks only the purpose, the name and the size.
func (c *call) uploadFile() {
	s := c.s
	if s.quota[c.key] {
		c.refuseQuota()
		return
	}
	limit := s.batches.batchLimits().openAIBytes
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, int64(limit)+1<<20)
	mr, err := c.r.MultipartReader()
	if err != nil {
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "file",
			"Invalid Content-Type: upload the file as multipart/form-data with the fields 'file' and 'purpose'.")
		return
	}
	var (
		form     = map[string]string{}
		filename string
		data     []byte
		hasFile  bool
	)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err == nil {
			if part.FormName() == "file" {
				hasFile, filename = true, part.FileName()
				data, err = io.ReadAll(io.LimitReader(part, int64(limit)+1))
			} else {
				var v []byte
				v, err = io.ReadAll(io.LimitReader(part, 1024))
				form[part.FormName()] = string(v)
			}
		}
		if err != nil {
			if errors.As(err, new(*http.MaxBytesError)) {
				c.fail(http.StatusRequestEntityTooLarge, kindTooLarge, "File is too large.")
			} else {
				c.fail(http.StatusBadRequest, kindInvalidRequest, "The multipart body could not be read: "+err.Error())
			}
			return
		}
	}
	purpose := form["purpose"]
	switch {
	case !hasFile:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "file", "Missing required parameter: 'file'.")
		return
	case purpose == "":
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "purpose", "Missing required parameter: 'purpose'.")
		return
	case !slices.Contains(openAIPurposes, purpose):
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "purpose", fmt.Sprintf(
			"Invalid value for 'purpose': %q. Supported values are: '%s'.", purpose, strings.Join(openAIPurposes, "', '")))
		return
	case purpose != wire.PurposeBatch:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "purpose",
			"The simulator stores only files of purpose 'batch', not '"+purpose+"'.")
		return
	case !strings.HasSuffix(filename, ".jsonl"):
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "file", "Invalid file format for Batch API. Must be .jsonl")
		return
	case len(data) > limit:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "file", "File is too large.")
		return
	}
	lifetime := fileLifetime
	if anchor, secs := form["expires_after[anchor]"], form["expires_after[seconds]"]; anchor != "" || secs != "" {
		n, err := strconv.ParseInt(secs, 10, 64)
		if anchor != "created_at" || err != nil || n < 3600 || n > 2592000 {
			c.failParam(http.StatusBadRequest, kindInvalidRequest, "expires_after",
				"Invalid 'expires_after': the anchor must be 'created_at' and the seconds an integer in [3600, 2592000].")
			return
		}
		lifetime = time.Duration(n) * time.Second
	}

	id := fmt.Sprintf("file-sim%012d", s.nextID())
	st := s.batches
	st.mu.Lock()
	now := s.batchNow()
	f := &storedFile{key: c.key, data: data, meta: wire.OpenAIFile{
		ID: id, Object: wire.ObjectFile, Bytes: int64(len(data)), CreatedAt: now.Unix(),
		ExpiresAt: unix(now.Add(lifetime)), Filename: filename, Purpose: wire.PurposeBatch, Status: "processed",
	}}
	err = st.addFile(f)
	st.mu.Unlock()
	if err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, err.Error())
		return
	}
	s.countBatches(func(b *BatchStats) { b.FilesUploaded++ })
	c.reply(f.meta)
}

// addFile stores f, or reports why the store is full. st.mu is held.
func (st *batchStore) addFile(f *storedFile) error {
	if len(st.fileList) >= st.maxObjects {
		return fmt.Errorf("The simulator holds its limit of %d files; delete files first.", st.maxObjects)
	}
	if err := st.hold(int64(len(f.data))); err != nil {
		return err
	}
	st.putFile(f)
	return nil
}

// putFile stores f whatever the bounds. st.mu is held.
func (st *batchStore) putFile(f *storedFile) {
	st.files[f.meta.ID] = f
	st.fileList = append(st.fileList, f)
}

// file returns the file id of key, or nil.
func (st *batchStore) file(key, id string) *storedFile {
	if f := st.files[id]; f != nil && f.key == key {
		return f
	}
	return nil
}

// listFiles serves GET /v1/files.
func (c *call) listFiles() {
	q := c.r.URL.Query()
	limit, ok := c.listLimit(10_000, 10_000)
	if !ok {
		return
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "order",
			fmt.Sprintf("Invalid value for 'order': %q. Supported values are: 'asc' and 'desc'.", order))
		return
	}
	st := c.s.batches
	st.mu.Lock()
	c.s.settle()
	purpose := q.Get("purpose")
	mine := newestFirst(st.fileList, func(f *storedFile) bool {
		return f.key == c.key && (purpose == "" || f.meta.Purpose == purpose)
	})
	if order == "asc" {
		slices.Reverse(mine)
	}
	got, more := page(mine, func(f *storedFile) string { return f.meta.ID }, q.Get("after"), "", limit)
	list := wire.OpenAIList[wire.OpenAIFile]{Object: wire.ObjectList, Data: []wire.OpenAIFile{}, HasMore: more}
	for _, f := range got {
		list.Data = append(list.Data, f.meta)
	}
	st.mu.Unlock()
	if n := len(list.Data); n > 0 {
		list.FirstID, list.LastID = &list.Data[0].ID, &list.Data[n-1].ID
	}
	c.reply(list)
}

// file serves GET and DELETE /v1/files/{id}.
func (c *call) file() {
	st, id := c.s.batches, c.r.PathValue("id")
	st.mu.Lock()
	c.s.settle()
	f := st.file(c.key, id)
	if f != nil && c.r.Method == http.MethodDelete {
		delete(st.files, id)
		st.fileList = slices.DeleteFunc(st.fileList, func(g *storedFile) bool { return g == f })
		st.bytes -= int64(len(f.data))
	}
	st.mu.Unlock()
	switch {
	case f == nil:
		c.notFound("No such File object: " + id)
	case c.r.Method == http.MethodDelete:
		c.reply(wire.OpenAIFileDeleted{ID: id, Object: wire.ObjectFile, Deleted: true})
	default:
		c.reply(f.meta)
	}
}

// fileContent serves GET /v1/files/{id}/content.
func (c *call) fileContent() {
	st, id := c.s.batches, c.r.PathValue("id")
	st.mu.Lock()
	c.s.settle()
	f := st.file(c.key, id)
	st.mu.Unlock()
	if f == nil {
		c.notFound("No such File object: " + id)
		return
	}
	c.writeDownload(download{data: f.data, contentType: "application/octet-stream"})
}

// openAIBatches serves GET and POST /v1/batches.
func (c *call) openAIBatches() {
	if c.r.Method == http.MethodGet {
		c.listOpenAIBatches()
		return
	}
	c.createOpenAIBatch()
}

// createOpenAIBatch serves POST /v1/batches. Malformed parameters are
// refused at once; the input file is validated by the batch, which fails
// with the reasons in its errors, as OpenAI's does.
func (c *call) createOpenAIBatch() {
	s := c.s
	if s.quota[c.key] {
		c.refuseQuota()
		return
	}
	if !c.readBody(s.cfg.MaxBodyBytes) {
		return
	}
	var req wire.BatchCreateRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, badJSON)
		return
	}
	for _, p := range []struct{ name, v string }{
		{"input_file_id", req.InputFileID}, {"endpoint", req.Endpoint}, {"completion_window", req.CompletionWindow},
	} {
		if p.v == "" {
			c.failParam(http.StatusBadRequest, kindInvalidRequest, p.name, "Missing required parameter: '"+p.name+"'.")
			return
		}
	}
	serve := openAIBatchEndpoints[req.Endpoint]
	switch {
	case serve == nil:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "endpoint", fmt.Sprintf(
			"Invalid value: %q. Supported values are: '/v1/chat/completions' and '/v1/embeddings'.", req.Endpoint))
		return
	case req.CompletionWindow != wire.CompletionWindow24h:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "completion_window", fmt.Sprintf(
			"Invalid value: %q. Supported values are: '24h'.", req.CompletionWindow))
		return
	}
	if msg := checkMetadata(req.Metadata); msg != "" {
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "metadata", msg)
		return
	}

	st := s.batches
	st.mu.Lock()
	f := st.file(c.key, req.InputFileID)
	st.mu.Unlock()
	switch {
	case f == nil:
		c.notFound("No such File object: " + req.InputFileID)
		return
	case f.meta.Purpose != wire.PurposeBatch:
		c.failParam(http.StatusBadRequest, kindInvalidRequest, "input_file_id", fmt.Sprintf(
			"File %s has purpose '%s'; the input file of a batch must be uploaded with purpose 'batch'.", f.meta.ID, f.meta.Purpose))
		return
	}

	b := &simBatch{p: openAI, id: fmt.Sprintf("batch_sim%012d", s.nextID()), key: c.key, delay: s.cfg.BatchDelay,
		endpoint: req.Endpoint, inputFileID: f.meta.ID, metadata: req.Metadata}
	in := parseBatchFile(f.data, req.Endpoint, st.batchLimits().openAIRequests)
	b.model, b.errs = in.model, in.errs
	if b.errs == nil {
		b.items = make([]batchItem, len(in.customIDs))
		for i, id := range in.customIDs {
			b.items[i].customID = id
		}
		if s.drawFaults(b.items, true) {
			b.errs = []wire.BatchError{{Code: "server_error",
				Message: "The batch could not be validated because of an internal error (a fault injected by the simulator); create it again."}}
			b.items = nil
		} else {
			s.answerAll(b, in.bodies, req.Endpoint, serve)
		}
	}

	st.mu.Lock()
	s.settle()
	now := s.batchNow()
	b.created = now
	if limit := s.cfg.BatchEnqueuedTokens; b.errs == nil && limit > 0 {
		if queued := st.enqueued(c.key, b.model, now); queued+b.tokens > limit {
			b.errs = []wire.BatchError{{Code: "token_limit_exceeded", Message: fmt.Sprintf(
				"Enqueued token limit reached for %s in organization org-simulator. Limit: %s enqueued tokens. Please try again once some in_progress batches have been completed.",
				b.model, commas(limit))}}
			b.items, b.held = nil, 0
		}
	}
	err := st.add(b)
	obj := b.openAIObject(now)
	st.mu.Unlock()
	if err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, err.Error())
		return
	}
	s.countBatches(func(bs *BatchStats) { bs.OpenAIBatches++; bs.Requests += int64(in.lines) })
	c.reply(obj)
}

// checkMetadata returns why metadata breaks OpenAI's rules, or "".
func checkMetadata(m map[string]string) string {
	if len(m) > 16 {
		return fmt.Sprintf("Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got %d instead.", len(m))
	}
	for k, v := range m {
		if len(k) > 64 || len(v) > 512 {
			return fmt.Sprintf("Invalid 'metadata': the key %.64q... is longer than 64 characters or its value longer than 512.", k)
		}
	}
	return ""
}

// enqueued returns the input tokens of key's OpenAI batches for model that
// have not ended at now. st.mu is held.
func (st *batchStore) enqueued(key, model string, now time.Time) int {
	n := 0
	for _, b := range st.list {
		if b.p == openAI && b.key == key && b.model == model && b.errs == nil && !b.ended(now) {
			n += b.tokens
		}
	}
	return n
}

// commas formats n with thousands separators, as OpenAI's messages do.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// batchInput is a parsed batch input file.
type batchInput struct {
	customIDs []string
	bodies    [][]byte
	model     string
	lines     int               // request lines
	errs      []wire.BatchError // nil when the file is valid
}

// parseBatchFile validates the lines of a batch input file for endpoint,
// with at most maxRequests lines, and returns the requests or why the
// file is refused, with the error codes OpenAI documents.
func parseBatchFile(data []byte, endpoint string, maxRequests int) batchInput {
	var in batchInput
	fail := func(code, param, msg string, line int) {
		if len(in.errs) < maxBatchErrors {
			e := wire.BatchError{Code: code, Message: msg}
			if param != "" {
				e.Param = &param
			}
			if line > 0 {
				e.Line = &line
			}
			in.errs = append(in.errs, e)
		}
	}
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > 0 && len(bytes.TrimSpace(lines[len(lines)-1])) == 0 {
		lines = lines[:len(lines)-1] // the newline that ends the last line
	}
	in.lines = len(lines)
	switch {
	case len(lines) == 0:
		fail("empty_file", "", "The batch input file is empty.", 0)
		return in
	case len(lines) > maxRequests:
		fail("too_many_tasks", "", fmt.Sprintf(
			"The batch input file has %d requests; a batch may have at most %s.", len(lines), commas(maxRequests)), 0)
		return in
	}
	seen := make(map[string]bool, len(lines))
	for i, raw := range lines {
		n := i + 1
		var l wire.BatchRequestLine
		if err := json.Unmarshal(bytes.TrimSuffix(raw, []byte("\r")), &l); err != nil {
			if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
				fail("invalid_request", te.Field, fmt.Sprintf("Invalid type for '%s': expected %s.", te.Field, te.Type), n)
			} else {
				fail("invalid_json_line", "", "This line is not parseable as valid JSON.", n)
			}
			continue
		}
		body := bytes.TrimSpace(l.Body)
		switch {
		case l.CustomID == "":
			fail("missing_required_parameter", "custom_id", "Missing required parameter: 'custom_id'.", n)
		case l.Method == "":
			fail("missing_required_parameter", "method", "Missing required parameter: 'method'.", n)
		case l.URL == "":
			fail("missing_required_parameter", "url", "Missing required parameter: 'url'.", n)
		case len(body) == 0 || string(body) == "null":
			fail("missing_required_parameter", "body", "Missing required parameter: 'body'.", n)
		case l.Method != http.MethodPost:
			fail("invalid_request", "method", fmt.Sprintf("Invalid value for 'method': %q. Only 'POST' is supported.", l.Method), n)
		case l.URL != endpoint:
			fail("url_mismatch", "url", "The URL provided for this request does not match the batch endpoint.", n)
		case body[0] != '{':
			fail("invalid_request", "body", "Invalid value for 'body': expected an object.", n)
		case seen[l.CustomID]:
			fail("duplicate_custom_id", "custom_id",
				"The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.", n)
		default:
			var m struct {
				Model string `json:"model"`
			}
			json.Unmarshal(body, &m)
			if m.Model != "" && in.model != "" && m.Model != in.model {
				fail("model_mismatch", "body.model",
					"The provided model for this request does not match the model of the other requests in the batch; a batch uses one model.", n)
			}
			if in.model == "" {
				in.model = m.Model
			}
		}
		seen[l.CustomID] = true
		in.customIDs = append(in.customIDs, l.CustomID)
		in.bodies = append(in.bodies, body)
	}
	return in
}

// writeResults writes the output and error files of an OpenAI batch that
// has ended and drops the answers the batch held. st.mu is held.
func (s *Server) writeResults(b *simBatch) {
	st := s.batches
	b.written = true
	st.bytes -= b.held
	b.held = 0
	if b.errs != nil || b.cancelledBeforeWork() {
		b.items = nil // nothing was executed
		return
	}
	var out, errs []byte
	for i := range b.items {
		it := &b.items[i]
		line := wire.BatchResponseLine{ID: fmt.Sprintf("batch_req_sim%012d", it.seq), CustomID: it.customID}
		o := b.outcome(i)
		switch o {
		case succeeded, errored:
			line.Response = &wire.BatchLineResponse{StatusCode: it.status, RequestID: requestID(it.seq), Body: it.body}
		case canceled:
			line.Error = &wire.BatchLineError{Code: wire.BatchErrorCancelled,
				Message: "This request was not executed because the batch was cancelled."}
		case expired:
			line.Error = &wire.BatchLineError{Code: wire.BatchErrorExpired,
				Message: "This request could not be executed before the completion window expired."}
		}
		if o == succeeded {
			out = append(append(out, marshal(line)...), '\n')
		} else {
			errs = append(append(errs, marshal(line)...), '\n')
		}
		it.body = nil // now in the files
	}
	end := b.endAt()
	b.outputFile = s.putResults(b, "output", out, end)
	b.errorFile = s.putResults(b, "error", errs, end)
}

// putResults stores a result file of b, unless data is empty, and returns
// its ID. st.mu is held.
func (s *Server) putResults(b *simBatch, kind string, data []byte, created time.Time) string {
	if len(data) == 0 {
		return ""
	}
	f := &storedFile{key: b.key, data: data, meta: wire.OpenAIFile{
		ID: fmt.Sprintf("file-sim%012d", s.nextID()), Object: wire.ObjectFile, Bytes: int64(len(data)),
		CreatedAt: created.Unix(), ExpiresAt: unix(created.Add(fileLifetime)),
		Filename: b.id + "_" + kind + ".jsonl", Purpose: wire.PurposeBatchOutput, Status: "processed",
	}}
	s.batches.putFile(f)
	s.batches.bytes += int64(len(data))
	return f.meta.ID
}

// cancelledBeforeWork reports whether b was cancelled before it began
// executing requests.
func (b *simBatch) cancelledBeforeWork() bool {
	return !b.cancelAt.IsZero() && b.cancelAt.Before(b.workStart())
}

// openAIObject returns b as OpenAI shows it at now.
func (b *simBatch) openAIObject(now time.Time) wire.Batch {
	v := wire.Batch{
		ID: b.id, Object: wire.ObjectBatch, Endpoint: b.endpoint, Model: b.model, InputFileID: b.inputFileID,
		CompletionWindow: wire.CompletionWindow24h, CreatedAt: b.created.Unix(), ExpiresAt: unix(b.expiresAt()),
		Metadata: b.metadata, Usage: &wire.BatchUsage{},
	}
	end, start, fin := b.endAt(), b.workStart(), b.workEnd()
	ended, cancelled := !now.Before(end), !b.cancelAt.IsZero()
	if cancelled {
		v.CancellingAt = unix(b.cancelAt)
	}
	if b.errs != nil && !cancelled {
		v.Status = wire.BatchValidating
		if ended {
			v.Status, v.FailedAt = wire.BatchFailed, unix(end)
			v.Errors = &wire.BatchErrors{Object: wire.ObjectList, Data: b.errs}
		}
		return v
	}
	validated := !now.Before(start) && !b.cancelledBeforeWork()
	if validated {
		v.InProgressAt = unix(start)
		v.RequestCounts.Total = len(b.items)
	}
	if !now.Before(fin) && !fin.After(end) && (!cancelled || !b.cancelAt.Before(fin)) {
		v.FinalizingAt = unix(fin)
	}
	switch {
	case ended && cancelled:
		v.Status, v.CancelledAt = wire.BatchCancelled, unix(end)
	case ended && b.anyExpired():
		v.Status, v.ExpiredAt = wire.BatchExpired, unix(end)
	case ended:
		v.Status, v.CompletedAt = wire.BatchCompleted, unix(end)
	case cancelled:
		v.Status = wire.BatchCancelling
	case !validated:
		v.Status = wire.BatchValidating
	case now.Before(fin):
		v.Status = wire.BatchInProgress
	default:
		v.Status = wire.BatchFinalizing
	}
	if b.outputFile != "" {
		v.OutputFileID = &b.outputFile
	}
	if b.errorFile != "" {
		v.ErrorFileID = &b.errorFile
	}
	for i, k := 0, b.executed(now); i < k; i++ {
		it := &b.items[i]
		switch {
		case it.fault == itemExpired:
		case it.succeeded():
			v.RequestCounts.Completed++
			v.Usage.InputTokens += it.inTokens
			v.Usage.OutputTokens += it.outTokens
		default:
			v.RequestCounts.Failed++
		}
	}
	v.Usage.TotalTokens = v.Usage.InputTokens + v.Usage.OutputTokens
	return v
}

// listOpenAIBatches serves GET /v1/batches, newest first.
func (c *call) listOpenAIBatches() {
	limit, ok := c.listLimit(20, 100)
	if !ok {
		return
	}
	st := c.s.batches
	st.mu.Lock()
	c.s.settle()
	now := c.s.batchNow()
	mine := newestFirst(st.list, func(b *simBatch) bool { return b.p == openAI && b.key == c.key })
	got, more := page(mine, func(b *simBatch) string { return b.id }, c.r.URL.Query().Get("after"), "", limit)
	list := wire.OpenAIList[wire.Batch]{Object: wire.ObjectList, Data: []wire.Batch{}, HasMore: more}
	for _, b := range got {
		list.Data = append(list.Data, b.openAIObject(now))
	}
	st.mu.Unlock()
	if n := len(list.Data); n > 0 {
		list.FirstID, list.LastID = &list.Data[0].ID, &list.Data[n-1].ID
	}
	c.reply(list)
}

// openAIBatch serves GET /v1/batches/{id}.
func (c *call) openAIBatch() {
	c.withBatch(func(b *simBatch, now time.Time) (any, string) {
		return b.openAIObject(now), ""
	})
}

// cancelOpenAIBatch serves POST /v1/batches/{id}/cancel. The batch is
// "cancelling" for a tenth of BatchDelay, then "cancelled" with the
// answers of the requests executed before the cancellation.
func (c *call) cancelOpenAIBatch() {
	c.withBatch(func(b *simBatch, now time.Time) (any, string) {
		if b.ended(now) {
			return nil, fmt.Sprintf("Cannot cancel a batch with status '%s'.", b.openAIObject(now).Status)
		}
		if b.cancelAt.IsZero() {
			b.cancelAt = now
			c.s.countBatches(func(bs *BatchStats) { bs.Cancels++ })
		}
		return b.openAIObject(now), ""
	})
}

// requestID names the request of sequence number seq.
func requestID(seq uint64) string { return fmt.Sprintf("req_sim%012d", seq) }
