package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// write turns items into result lines until the reader is done and every
// submitted request has ended. When the reader stops early (an interrupt),
// it cancels what has not started calling and lets the calls finish within
// the grace period; when the spend cap stopped it, which capped says, every
// request submitted runs to its end.
func (r *runner) write(ctx context.Context, readerDone <-chan readerEnd) (capped bool, err error) {
	var (
		submitted = -1 // unknown until the reader ends
		ended     int
		ord       = newOrderer(r.cfg.Ordered)
		writeErr  error // the output failed: nothing more is written
		readErr   error // the input failed: what was submitted is still written
	)
	emit := func(lines [][]byte) {
		for _, l := range lines {
			if writeErr != nil {
				return
			}
			if _, err := r.out.Write(l); err != nil {
				writeErr = fmt.Errorf("batch: writing results: %w", err)
			}
		}
	}
	// interrupted is set when ctx ends; interrupt cannot tell by itself,
	// since a context that never ends has a nil Done channel too.
	reader, interrupt, interrupted := r.reader, ctx.Done(), false
	for submitted < 0 || ended < submitted || reader != nil {
		select {
		case <-interrupt:
			interrupt, interrupted = nil, true
			r.drainOnInterrupt(reader == nil)
		case it, ok := <-reader:
			if !ok {
				reader = nil
				end := <-readerDone
				submitted, capped = end.submitted, end.capped
				if end.err != nil {
					readErr = fmt.Errorf("batch: reading input: %w", end.err)
				}
				if interrupted {
					// Interrupted while reading: now every submitted request
					// is known, cancel those not yet calling.
					r.drainOnInterrupt(true)
				}
				continue
			}
			if it.skip {
				emit(ord.skip(it.index))
				continue
			}
			r.sum.failedInput()
			emit(ord.add(it.index, encode(it.res)))
		case it := <-r.results:
			ended++
			<-r.window
			res, write := r.result(it)
			if !write {
				emit(ord.skip(it.index))
				continue
			}
			emit(ord.add(it.index, encode(res)))
		}
		if r.progress != nil {
			r.progress.Update(r.sum)
		}
	}
	emit(ord.rest())
	return capped, errors.Join(writeErr, readErr)
}

// drainOnInterrupt cancels every request that has not started its call,
// and, once the reader has stopped submitting, stops the executor
// gracefully within Grace: calls in flight finish and are written, the rest
// remain for a rerun. It is called once when the interrupt comes and again
// when the reader has stopped, since requests may be submitted in between.
func (r *runner) drainOnInterrupt(readerStopped bool) {
	r.mu.Lock()
	live := make([]*runtime.Handle, 0, len(r.rows))
	for _, rw := range r.rows {
		if rw.handle != nil {
			live = append(live, rw.handle)
		}
	}
	r.mu.Unlock()
	for _, h := range live {
		if h.Latest().Status < messages.StatusCalling {
			h.Cancel()
		}
	}
	if !readerStopped {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Grace)
		defer cancel()
		_ = r.eng.Stop(ctx) // past the grace, what is left is cancelled
	}()
}

// result turns a terminal snapshot into a result line; a CANCELLED request
// gets none, so that a rerun does it.
func (r *runner) result(it item) (*Result, bool) {
	ev := it.ev
	r.mu.Lock()
	rw := r.rows[it.index]
	delete(r.rows, it.index)
	r.mu.Unlock()
	if rw == nil {
		rw = &row{}
	}
	r.sum.ended(ev)
	model := rw.model
	if ev.Model != "" {
		model = ev.Model // the deployment's, in a run over several
	}
	r.sum.costed(ev, model)
	if ev.Status == messages.StatusCancelled {
		return nil, false
	}
	return resultOf(it.index, rw, ev), true
}

// resultOf is the result line of the request of row rw on line index, as
// its terminal snapshot ev says it ended.
func resultOf(index int, rw *row, ev *messages.Event) *Result {
	tm := ev.Timings()
	res := &Result{
		Index: index, Key: rw.key, ContentHash: rw.hash, ID: rw.id, RequestID: ev.ID.String(), Status: ev.Status.String(),
		Attempts: ev.Attempt, Metadata: rw.metadata, Deployment: ev.Deployment, Cached: ev.Cached(), CostUSD: resultCost(ev),
		Tokens: ResultTokens{Estimated: ev.Tokens.Estimated},
		Timings: ResultTimings{
			Created: tm.Created, QueueMS: millis(tm.QueueWait()), WaitMS: millis(tm.PermitWait()),
			CallMS: millis(tm.CallDuration()), TotalMS: millis(tm.Total()),
		},
	}
	if ev.Tokens.HasActual {
		n := ev.Tokens.Actual
		res.Tokens.Actual = &n
	}
	resp, hasResp := ev.Response()
	if ev.Status == messages.StatusCompleted && hasResp && json.Valid(resp.Body) {
		res.Response = resp.Body
	}
	if info, ok := ev.Failure(); ok {
		res.Error = &ResultError{Kind: info.Kind, Message: info.Message, Details: info.Details}
		if hasResp {
			res.Error.Status = resp.StatusCode
		}
	}
	return res
}

func encode(res *Result) []byte {
	b, err := json.Marshal(res)
	if err != nil {
		// Every field is plain data or valid JSON: this cannot happen, and
		// if it did, the line must still say the request failed.
		b, _ = json.Marshal(Result{Index: res.Index, Key: res.Key, ContentHash: res.ContentHash, Status: messages.StatusFailed.String(),
			Error: &ResultError{Kind: "internal", Message: err.Error()}})
	}
	return append(b, '\n')
}
