package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// Anthropic's Message Batches API: a client creates a batch with its
// requests in the body, polls it, and streams its results once it has
// ended.

// customIDPattern is what Anthropic accepts as a custom_id.
var customIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// messageBatches serves GET and POST /v1/messages/batches.
func (c *call) messageBatches() {
	if c.r.Method == http.MethodGet {
		c.listMessageBatches()
		return
	}
	c.createMessageBatch()
}

// createMessageBatch serves POST /v1/messages/batches. The envelope is
// validated at once, as Anthropic does; each request's params are
// validated as the request runs, and an invalid one ends "errored".
func (c *call) createMessageBatch() {
	s := c.s
	if s.quota[c.key] {
		c.refuseQuota()
		return
	}
	limits := s.batches.batchLimits()
	if !c.readBody(int64(limits.anthropicBytes)) {
		return
	}
	var req wire.MessageBatchCreateRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, "There was an error parsing the body of your request: "+err.Error())
		return
	}
	n := len(req.Requests)
	switch {
	case n == 0:
		c.fail(http.StatusBadRequest, kindInvalidRequest, "requests: List should have at least 1 item after validation, not 0")
		return
	case n > limits.anthropicRequests:
		c.fail(http.StatusBadRequest, kindInvalidRequest, fmt.Sprintf(
			"requests: List should have at most %d items after validation, not %d", limits.anthropicRequests, n))
		return
	}
	b := &simBatch{p: anthropic, id: fmt.Sprintf("msgbatch_sim%012d", s.nextID()), key: c.key, delay: s.cfg.BatchDelay,
		items: make([]batchItem, n)}
	bodies := make([][]byte, n)
	seen := make(map[string]bool, n)
	for i, r := range req.Requests {
		var msg string
		switch {
		case !customIDPattern.MatchString(r.CustomID):
			msg = fmt.Sprintf("requests.%d.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", i)
		case seen[r.CustomID]:
			msg = fmt.Sprintf("requests.%d.custom_id: Duplicate custom_id %q; each custom_id must be unique within a batch", i, r.CustomID)
		case len(r.Params) == 0 || r.Params[0] != '{':
			msg = fmt.Sprintf("requests.%d.params: Input should be a valid dictionary", i)
		}
		if msg != "" {
			c.fail(http.StatusBadRequest, kindInvalidRequest, msg)
			return
		}
		seen[r.CustomID] = true
		b.items[i].customID, bodies[i] = r.CustomID, r.Params
	}
	s.drawFaults(b.items, false)
	s.answerAll(b, bodies, "/v1/messages", (*call).messages)

	st := s.batches
	st.mu.Lock()
	now := s.batchNow()
	b.created = now
	err := st.add(b)
	obj := b.anthropicObject(now, c.baseURL())
	st.mu.Unlock()
	if err != nil {
		c.fail(http.StatusBadRequest, kindInvalidRequest, err.Error())
		return
	}
	s.countBatches(func(bs *BatchStats) { bs.AnthropicBatches++; bs.Requests += int64(n) })
	c.reply(obj)
}

// baseURL is the URL of the server as the client reached it.
func (c *call) baseURL() string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.r.Host
}

// rfc3339 is t as Anthropic writes its times: UTC, to the microsecond.
func rfc3339(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// anthropicObject returns b as Anthropic shows it at now; base is the URL
// of the server, for results_url.
func (b *simBatch) anthropicObject(now time.Time, base string) wire.MessageBatch {
	v := wire.MessageBatch{ID: b.id, Type: wire.TypeMessageBatch,
		CreatedAt: rfc3339(b.created), ExpiresAt: rfc3339(b.expiresAt())}
	if !b.cancelAt.IsZero() {
		v.CancelInitiatedAt = ptr(rfc3339(b.cancelAt))
	}
	end := b.endAt()
	if now.Before(end) {
		v.ProcessingStatus = wire.MessageBatchInProgress
		if !b.cancelAt.IsZero() {
			v.ProcessingStatus = wire.MessageBatchCanceling
		}
		v.RequestCounts.Processing = len(b.items)
		return v
	}
	v.ProcessingStatus, v.EndedAt = wire.MessageBatchEnded, ptr(rfc3339(end))
	v.ResultsURL = ptr(base + "/v1/messages/batches/" + b.id + "/results")
	for i := range b.items {
		switch b.outcome(i) {
		case succeeded:
			v.RequestCounts.Succeeded++
		case errored:
			v.RequestCounts.Errored++
		case canceled:
			v.RequestCounts.Canceled++
		case expired:
			v.RequestCounts.Expired++
		}
	}
	return v
}

// listMessageBatches serves GET /v1/messages/batches, newest first.
func (c *call) listMessageBatches() {
	limit, ok := c.listLimit(20, 1000)
	if !ok {
		return
	}
	q := c.r.URL.Query()
	after, before := q.Get("after_id"), q.Get("before_id")
	if after != "" && before != "" {
		c.fail(http.StatusBadRequest, kindInvalidRequest, "Only one of before_id and after_id may be given.")
		return
	}
	st := c.s.batches
	st.mu.Lock()
	now := c.s.batchNow()
	mine := newestFirst(st.list, func(b *simBatch) bool { return b.p == anthropic && b.key == c.key })
	got, more := page(mine, func(b *simBatch) string { return b.id }, after, before, limit)
	list := wire.AnthropicPage[wire.MessageBatch]{Data: []wire.MessageBatch{}, HasMore: more}
	for _, b := range got {
		list.Data = append(list.Data, b.anthropicObject(now, c.baseURL()))
	}
	st.mu.Unlock()
	if n := len(list.Data); n > 0 {
		list.FirstID, list.LastID = &list.Data[0].ID, &list.Data[n-1].ID
	}
	c.reply(list)
}

// messageBatch serves GET and DELETE /v1/messages/batches/{id}. Only a
// batch that has ended can be deleted.
func (c *call) messageBatch() {
	c.withBatch(func(b *simBatch, now time.Time) (any, string) {
		if c.r.Method == http.MethodGet {
			return b.anthropicObject(now, c.baseURL()), ""
		}
		if !b.ended(now) {
			return nil, fmt.Sprintf("Message Batch %s cannot be deleted while it is in progress; cancel it, and delete it once it has ended.", b.id)
		}
		st := c.s.batches
		delete(st.batches, b.id)
		st.list = deleteBatch(st.list, b)
		st.bytes -= b.held
		return wire.MessageBatchDeleted{ID: b.id, Type: wire.TypeMessageBatchDeleted}, ""
	})
}

// deleteBatch returns list without b.
func deleteBatch(list []*simBatch, b *simBatch) []*simBatch {
	for i, x := range list {
		if x == b {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// cancelMessageBatch serves POST /v1/messages/batches/{id}/cancel. The
// batch is "canceling" for a tenth of BatchDelay, then ends with the
// requests not yet executed "canceled".
func (c *call) cancelMessageBatch() {
	c.withBatch(func(b *simBatch, now time.Time) (any, string) {
		if b.ended(now) {
			return nil, fmt.Sprintf("Message Batch %s has already ended; only a batch in progress can be canceled.", b.id)
		}
		if b.cancelAt.IsZero() {
			b.cancelAt = now
			c.s.countBatches(func(bs *BatchStats) { bs.Cancels++ })
		}
		return b.anthropicObject(now, c.baseURL()), ""
	})
}

// messageBatchResults serves GET /v1/messages/batches/{id}/results: one
// JSONL line per request, once the batch has ended.
func (c *call) messageBatchResults() {
	c.withBatch(func(b *simBatch, now time.Time) (any, string) {
		if !b.ended(now) {
			return nil, fmt.Sprintf("Message Batch %s has not finished processing; its results are available once its processing_status is 'ended'.", b.id)
		}
		var results []byte
		for i := range b.items {
			it := &b.items[i]
			line := wire.MessageBatchResultLine{CustomID: it.customID}
			switch b.outcome(i) {
			case succeeded:
				line.Result = wire.MessageBatchResult{Type: wire.ResultSucceeded, Message: it.body}
			case errored:
				var e wire.AnthropicErrorBody
				json.Unmarshal(it.body, &e)
				line.Result = wire.MessageBatchResult{Type: wire.ResultErrored, Error: &e}
			case canceled:
				line.Result.Type = wire.ResultCanceled
			case expired:
				line.Result.Type = wire.ResultExpired
			}
			results = append(append(results, marshal(line)...), '\n')
		}
		return download{data: results, contentType: "application/x-jsonl"}, ""
	})
}
