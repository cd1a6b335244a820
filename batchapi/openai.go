package batchapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/lionactor/lionactor/internal/wire"
)

// openAI is OpenAI's Batch API: the requests are uploaded as a JSONL file
// (POST /files), a batch is created from it (POST /batches), and its
// answers are read from its output and error files.
type openAI struct {
	*api
	endpoint string // the batch's endpoint, such as "/v1/chat/completions"
	window   string // the completion window, "24h"
}

// openAIEndpoint is the endpoint the model's requests go to, as a batch
// names it: its path under the API's /v1, whatever the base URL's own path
// (a gateway's prefix).
func (a *api) openAIEndpoint() (string, error) {
	probe, err := a.model.NewRequest(map[string]any{})
	if err != nil {
		return "", err
	}
	full, err := url.Parse(probe.Endpoint.URL)
	if err != nil {
		return "", err
	}
	base, err := url.Parse(a.base)
	if err != nil {
		return "", err
	}
	return "/v1" + strings.TrimPrefix(full.Path, strings.TrimSuffix(base.Path, "/")), nil
}

func (o *openAI) frame() (string, string, string) { return "", "\n", "\n" }

func (o *openAI) encode(customID string, body []byte) ([]byte, error) {
	return json.Marshal(wire.BatchRequestLine{CustomID: customID, Method: http.MethodPost, URL: o.endpoint, Body: body})
}

func (o *openAI) body(piece []byte) ([]byte, error) {
	var line wire.BatchRequestLine
	err := json.Unmarshal(piece, &line)
	return line.Body, err
}

// upload sends p's input file as a multipart form, streamed from p.data.
func (o *openAI) upload(ctx context.Context, p *part) error {
	if p.fileID != "" {
		return nil
	}
	var head, tail bytes.Buffer
	out := &switchWriter{w: &head}
	mw := multipart.NewWriter(out)
	if err := mw.WriteField("purpose", wire.PurposeBatch); err != nil {
		return err
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="lionactor-%s.jsonl"`, p.id))
	h.Set("Content-Type", "application/jsonl")
	if _, err := mw.CreatePart(h); err != nil {
		return err
	}
	out.w = &tail
	if err := mw.Close(); err != nil {
		return err
	}
	body := io.MultiReader(bytes.NewReader(head.Bytes()), bytes.NewReader(p.data), bytes.NewReader(tail.Bytes()))
	size := int64(head.Len() + len(p.data) + tail.Len())
	resp, err := o.send(ctx, http.MethodPost, "/files", mw.FormDataContentType(), body, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var f wire.OpenAIFile
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&f); err != nil || f.ID == "" {
		return &callError{op: "POST /files", err: fmt.Errorf("the answer names no file: %v", err)}
	}
	p.fileID = f.ID
	return nil
}

// switchWriter writes to w, which may be changed between writes.
type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(b []byte) (int, error) { return s.w.Write(b) }

// partMetadata names the part in the metadata of its batch, where find
// looks for it.
const partMetadata = "lionactor_part"

func (o *openAI) create(ctx context.Context, p *part) (string, error) {
	var b wire.Batch
	err := o.call(ctx, http.MethodPost, "/batches", wire.BatchCreateRequest{
		InputFileID: p.fileID, Endpoint: o.endpoint, CompletionWindow: o.window,
		Metadata: map[string]string{partMetadata: p.id},
	}, &b)
	return b.ID, err
}

// find looks, newest first, for a batch made from p's input file.
func (o *openAI) find(ctx context.Context, p *part, known func(string) bool) (string, error) {
	since := p.submitted.Add(-lookBack).Unix()
	after := ""
	for {
		path := "/batches?limit=100"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		var page wire.OpenAIList[wire.Batch]
		if err := o.call(ctx, http.MethodGet, path, nil, &page); err != nil {
			return "", err
		}
		for _, b := range page.Data {
			if b.CreatedAt < since {
				return "", errNotCreated
			}
			if (b.InputFileID == p.fileID || b.Metadata[partMetadata] == p.id) && !known(b.ID) {
				return b.ID, nil
			}
		}
		if !page.HasMore || page.LastID == nil {
			return "", errNotCreated
		}
		after = *page.LastID
	}
}

func (o *openAI) status(ctx context.Context, id string) (batchStatus, error) {
	var b wire.Batch
	if err := o.call(ctx, http.MethodGet, "/batches/"+url.PathEscape(id), nil, &b); err != nil {
		return batchStatus{}, err
	}
	st := batchStatus{state: b.Status}
	switch b.Status {
	case wire.BatchCompleted, wire.BatchExpired, wire.BatchCancelled, wire.BatchFailed:
		st.ended = true
	}
	if b.OutputFileID != nil {
		st.outputFile = *b.OutputFileID
	}
	if b.ErrorFileID != nil {
		st.errorFile = *b.ErrorFileID
	}
	if b.Status == wire.BatchFailed {
		st.failures = []wire.BatchError{{Code: "failed", Message: "the batch failed without a reason"}}
		if b.Errors != nil && len(b.Errors.Data) > 0 {
			st.failures = b.Errors.Data
		}
	}
	return st, nil
}

// results reads the output file (the answers with a success status) and
// the error file (the other answers, and the requests that did not run).
func (o *openAI) results(ctx context.Context, _ string, st batchStatus, add func(string, itemResult)) error {
	for _, file := range []string{st.outputFile, st.errorFile} {
		if file == "" {
			continue
		}
		err := o.download(ctx, "/files/"+url.PathEscape(file)+"/content", func(b []byte) error {
			var line wire.BatchResponseLine
			if err := decodeLine(b, &line); err != nil {
				return err
			}
			switch {
			case line.Response != nil:
				add(line.CustomID, itemResult{outcome: answered, status: line.Response.StatusCode, body: line.Response.Body})
			case line.Error != nil && line.Error.Code == wire.BatchErrorExpired:
				add(line.CustomID, itemResult{outcome: expired, note: line.Error.Message})
			case line.Error != nil && line.Error.Code == wire.BatchErrorCancelled:
				add(line.CustomID, itemResult{outcome: canceled, note: line.Error.Message})
			case line.Error != nil:
				add(line.CustomID, itemResult{outcome: notExecuted, note: line.Error.Code + ": " + line.Error.Message})
			default:
				add(line.CustomID, itemResult{outcome: notExecuted, note: "the result line has neither a response nor an error"})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *openAI) cancel(ctx context.Context, id string) error {
	var b wire.Batch
	return o.call(ctx, http.MethodPost, "/batches/"+url.PathEscape(id)+"/cancel", nil, &b)
}
