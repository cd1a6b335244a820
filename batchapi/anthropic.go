package batchapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/lionactor/lionactor/internal/wire"
)

// anthropic is Anthropic's Message Batches API: the requests go in the
// body of the create (POST /messages/batches), and the results are read as
// JSONL once the batch has ended.
type anthropic struct{ *api }

func (a *anthropic) frame() (string, string, string) { return `{"requests":[`, ",", "]}" }

func (a *anthropic) encode(customID string, body []byte) ([]byte, error) {
	return json.Marshal(wire.MessageBatchRequest{CustomID: customID, Params: body})
}

func (a *anthropic) body(piece []byte) ([]byte, error) {
	var r wire.MessageBatchRequest
	err := json.Unmarshal(piece, &r)
	return r.Params, err
}

func (a *anthropic) upload(context.Context, *part) error { return nil }

func (a *anthropic) create(ctx context.Context, p *part) (string, error) {
	var b wire.MessageBatch
	err := a.call(ctx, http.MethodPost, "/messages/batches", p.data, &b)
	return b.ID, err
}

// find looks, newest first, for a batch of as many requests as p's created
// since p's intent was recorded and not known. A message batch carries no
// metadata to tell it by: if more than one matches, none is taken (and the
// part is created again, which may pay for its requests twice, rather than
// take another run's batch for this one's).
func (a *anthropic) find(ctx context.Context, p *part, known func(string) bool) (string, error) {
	since := p.submitted.Add(-lookBack)
	after, found, matches := "", "", 0
	for {
		path := "/messages/batches?limit=100"
		if after != "" {
			path += "&after_id=" + url.QueryEscape(after)
		}
		var page wire.AnthropicPage[wire.MessageBatch]
		if err := a.call(ctx, http.MethodGet, path, nil, &page); err != nil {
			return "", err
		}
		for _, b := range page.Data {
			if b.CreatedAt.Before(since) {
				return pick(found, matches)
			}
			c := b.RequestCounts
			if c.Processing+c.Succeeded+c.Errored+c.Canceled+c.Expired == len(p.keys) && !known(b.ID) {
				found = b.ID
				matches++
			}
		}
		if !page.HasMore || page.LastID == nil {
			return pick(found, matches)
		}
		after = *page.LastID
	}
}

// pick returns the one batch found, or errNotCreated for none or several.
func pick(found string, matches int) (string, error) {
	if matches == 1 {
		return found, nil
	}
	return "", errNotCreated
}

func (a *anthropic) status(ctx context.Context, id string) (batchStatus, error) {
	var b wire.MessageBatch
	if err := a.call(ctx, http.MethodGet, "/messages/batches/"+url.PathEscape(id), nil, &b); err != nil {
		return batchStatus{}, err
	}
	return batchStatus{state: b.ProcessingStatus, ended: b.ProcessingStatus == wire.MessageBatchEnded}, nil
}

func (a *anthropic) results(ctx context.Context, id string, _ batchStatus, add func(string, itemResult)) error {
	return a.download(ctx, "/messages/batches/"+url.PathEscape(id)+"/results", func(b []byte) error {
		var line wire.MessageBatchResultLine
		if err := decodeLine(b, &line); err != nil {
			return err
		}
		r := line.Result
		switch r.Type {
		case wire.ResultSucceeded:
			add(line.CustomID, itemResult{outcome: answered, status: http.StatusOK, body: r.Message})
		case wire.ResultErrored:
			body := wire.NewAnthropicErrorBody(wire.AnthropicAPIError, "the batch reported an error without a body")
			if r.Error != nil {
				body = *r.Error
			}
			raw, _ := json.Marshal(body)
			add(line.CustomID, itemResult{outcome: answered, status: anthropicStatus(body.Error.Type), body: raw})
		case wire.ResultExpired:
			add(line.CustomID, itemResult{outcome: expired, note: "the batch's 24-hour window ran out before this request ran"})
		case wire.ResultCanceled:
			add(line.CustomID, itemResult{outcome: canceled, note: "the batch was cancelled before this request ran"})
		default:
			add(line.CustomID, itemResult{outcome: notExecuted, note: "unknown result type " + r.Type})
		}
		return nil
	})
}

// anthropicStatus is the HTTP status that carries an Anthropic error of
// type typ online: an errored result of a batch has the error's body
// without its status.
func anthropicStatus(typ string) int {
	switch typ {
	case wire.AnthropicInvalidRequestError:
		return http.StatusBadRequest
	case wire.AnthropicAuthenticationError:
		return http.StatusUnauthorized
	case "billing_error":
		return http.StatusPaymentRequired
	case wire.AnthropicPermissionError:
		return http.StatusForbidden
	case wire.AnthropicNotFoundError:
		return http.StatusNotFound
	case wire.AnthropicRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case wire.AnthropicRateLimitError:
		return http.StatusTooManyRequests
	case wire.AnthropicOverloadedError:
		return wire.StatusOverloaded
	case "timeout_error":
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func (a *anthropic) cancel(ctx context.Context, id string) error {
	var b wire.MessageBatch
	return a.call(ctx, http.MethodPost, "/messages/batches/"+url.PathEscape(id)+"/cancel", nil, &b)
}
