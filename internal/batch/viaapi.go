package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/messages"
)

// A run through the provider's batch API (Config.BatchAPI) reads the same
// input, skips and reruns the same requests, and writes the same result
// lines as an online run, in the same order with Ordered; each line of a
// request a batch answered also names the batch (Result.ProviderBatch).
// The requests go to batchapi.Run with their keys as names, so that a run
// that resumes an interrupted one (same results file, same journal) finds
// its batches by the keys of its requests. The requests its batches do
// not answer go online through the run's executor and model, within the
// run's limits, with FallbackOnline; their lines are those of an online
// run.

// validateBatchAPI checks the settings of a run through the batch API.
func (c Config) validateBatchAPI() error {
	if c.BatchAPI == nil {
		return nil
	}
	switch {
	case c.routed():
		// A router's choice of deployment by budget left has no meaning
		// for batches, which each go to one endpoint.
		return &messages.ConfigError{Field: "BatchAPI", Reason: "not over several deployments: a batch goes to one endpoint; run each model's lines through its own"}
	case c.MaxCost > 0:
		// What a batch costs is known only once it ends, a day later
		// perhaps: a cap could not stop it in time.
		return &messages.ConfigError{Field: "MaxCost", Reason: "not with the batch API, whose batches are paid for once they end: run online to cap the spend"}
	case c.Cache != nil:
		return &messages.ConfigError{Field: "Cache", Reason: "not with the batch API: its requests go in batches whole"}
	}
	err := c.BatchAPI.ValidateFor(c.Endpoint.Provider)
	var ce *messages.ConfigError
	switch {
	case errors.Is(err, batchapi.ErrUnsupportedProvider):
		return &messages.ConfigError{Field: "Provider", Reason: fmt.Sprintf("%s has no batch API here: the batch API is OpenAI's or Anthropic's", c.Endpoint.Provider)}
	case errors.As(err, &ce):
		return &messages.ConfigError{Field: "BatchAPI." + ce.Field, Reason: ce.Reason}
	}
	return err
}

// viaBatchAPI runs the input through the provider's batch API and writes
// a result line as each request ends.
func (r *runner) viaBatchAPI(ctx context.Context) error {
	cfg := *r.cfg.BatchAPI
	cfg.MaxAttempts, cfg.Grace = r.cfg.MaxAttempts, r.cfg.Grace
	cfg.OnlineWindow = r.cfg.Queue
	if cfg.Logger == nil {
		cfg.Logger = r.cfg.Logger
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = r.cfg.client
	}
	w := &apiWriter{r: r, ord: newOrderer(r.cfg.Ordered), rows: map[string]*apiRow{}, held: map[string]int{}}
	cfg.Durable = w.durable
	cfg.Progress = w.progressed
	// validateBatchAPI refuses a run over deployments: the engine is one
	// endpoint's.
	stats, err := batchapi.Run(ctx, r.eng.(*single).model, cfg, w.requests, w.deliver)
	w.mu.Lock()
	w.emit(w.ord.rest())
	writeErr, readErr := w.writeErr, w.readErr
	w.mu.Unlock()
	r.sum.update(func(s *Snapshot) { s.Batches = &stats })
	if r.rec != nil {
		r.rec.mu.Lock()
		r.rec.t.batches = &stats
		r.rec.mu.Unlock()
	}
	if errors.Is(err, batchapi.ErrInterrupted) {
		err = nil // the summary says what remains, as for an online run
	}
	return errors.Join(writeErr, readErr, err)
}

// apiWriter reads the input for batchapi.Run (on a goroutine of the run's)
// and writes the result lines of what it delivers (on the runner's): both
// under mu.
type apiWriter struct {
	r *runner

	mu       sync.Mutex
	ord      *orderer
	rows     map[string]*apiRow // by key: the requests handed to the batch API and not yet ended
	held     map[string]int     // by key: the index of a line the orderer holds back
	writeErr error              // the output failed: nothing more is written
	readErr  error              // the input failed: what was read is still run
}

// apiRow is what the writer remembers of a request in the batch API.
type apiRow struct {
	index int
	row   row
}

// emit writes lines; w.mu is held.
func (w *apiWriter) emit(lines [][]byte) {
	for _, l := range lines {
		if w.writeErr != nil {
			return
		}
		if _, err := w.r.out.Write(l); err != nil {
			w.writeErr = fmt.Errorf("batch: writing results: %w", err)
		}
	}
	if w.r.progress != nil {
		w.r.progress.Update(w.r.sum)
	}
}

// requests yields the input's requests that run, as read.go judges them,
// and writes at once the lines of those that need no batch. Once the run
// stops taking requests (it was interrupted), it counts the rest.
func (w *apiWriter) requests(yield func(batchapi.Request) bool) {
	r := w.r
	lr := newLineReader(r.in.R, r.cfg.maxLineBytes())
	ids := newIdentifier()
	for index := 0; ; index++ {
		line, err := lr.next()
		if line.blank() {
			if err == nil {
				w.skip(index)
				continue
			}
		} else {
			r.sum.read()
			if q, ok := w.request(index, r.identify(ids, index, line)); ok && !yield(q) {
				r.sum.unread(r.countRest(index+1, lr, ids))
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				w.mu.Lock()
				w.readErr = fmt.Errorf("batch: reading input: %w", err)
				w.mu.Unlock()
			}
			return
		}
	}
}

// progressed shows what the batches do in the progress, between results.
func (w *apiWriter) progressed(st batchapi.Stats) {
	w.r.sum.update(func(s *Snapshot) { s.Batches = &st })
	if w.r.progress != nil {
		w.mu.Lock()
		w.r.progress.Update(w.r.sum)
		w.mu.Unlock()
	}
}

// durable reports whether the lines of keys are written, and syncs the
// results file (if the output is one) when they are: a batch is recorded
// settled only then. With Ordered, a line the orderer holds back for an
// earlier one is not written yet.
func (w *apiWriter) durable(keys []string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.writeErr != nil {
		return false, w.writeErr
	}
	for _, k := range keys {
		if i, ok := w.held[k]; ok && i >= w.ord.next {
			return false, nil
		}
	}
	for _, k := range keys {
		delete(w.held, k)
	}
	if f, ok := w.r.out.(interface{ Sync() error }); ok {
		return true, f.Sync()
	}
	return true, nil
}

func (w *apiWriter) skip(index int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.emit(w.ord.skip(index))
}

// request is the batch API request of the line at index, if it runs; a
// line that cannot run gets its FAILED line at once, as online.
func (w *apiWriter) request(index int, ln line) (batchapi.Request, bool) {
	if !ln.verdict.runs() {
		w.skip(index)
		return batchapi.Request{}, false
	}
	rw := row{key: ln.id.key, hash: ln.id.hash, id: ln.id.id}
	if ln.parsed != nil {
		rw.metadata = ln.parsed.metadata
		rw.model = w.r.cfg.modelOf(ln.parsed.body)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	invalid := ln.invalid
	if invalid == nil {
		invalid = ln.dupID // the input was not scanned first: the first line with the id keeps it
	}
	if invalid != nil {
		w.r.sum.failedInput()
		w.emit(w.ord.add(index, encode(&Result{Index: index, Key: rw.key, ContentHash: rw.hash, ID: rw.id,
			Status: messages.StatusFailed.String(), Metadata: rw.metadata,
			Error: &ResultError{Kind: inputKind(invalid), Message: fmt.Sprintf("line %d: %v", index+1, invalid)}})))
		return batchapi.Request{}, false
	}
	w.rows[rw.key] = &apiRow{index: index, row: rw}
	prior, _ := w.r.in.Prior.lookup(ln.id, index)
	return batchapi.Request{Key: rw.key, Payload: ln.parsed.body, Line: index + 1, Answered: prior.batch}, true
}

// deliver writes the result line of a request the batch API ended: one of
// a batch's answers, or a request sent online after its batches.
func (w *apiWriter) deliver(o batchapi.Outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ar := w.rows[o.Key]
	if ar == nil {
		return // not a request of this run's (the batch API names only those)
	}
	delete(w.rows, o.Key)
	ev := o.Event
	w.r.sum.end(&ev, o.Online)
	if !o.Online && w.r.rec != nil {
		// An online request's snapshots reach the recorder from the
		// executor; a batch's are recorded here, as requests that ended,
		// not as calls.
		w.r.rec.mu.Lock()
		w.r.rec.end(ev, false)
		w.r.rec.mu.Unlock()
	}
	if ev.Status == messages.StatusCancelled {
		w.emit(w.ord.skip(ar.index)) // no line: a rerun does it
		return
	}
	// A batch's answer was priced at the batch price (batchapi prices
	// the requests it puts in batches so), one sent online at the online
	// price.
	w.r.sum.costed(&ev, ar.row.model)
	if c := ev.Cost(); !o.Online && c.HasActual {
		if price, ok := w.r.cfg.prices().Lookup(w.r.cfg.Endpoint.Provider, ar.row.model); ok && price.BatchDiscount < 1 {
			w.r.sum.update(func(s *Snapshot) {
				s.BatchCost += c.Actual
				s.BatchCostOnline += c.Actual / (1 - price.BatchDiscount)
			})
		}
	}
	res := resultOf(ar.index, &ar.row, &ev)
	if o.Online {
		res.Attempts += o.Batches
	} else if o.Batch != "" {
		res.ProviderBatch = &ResultBatch{ID: o.Batch, CustomID: o.CustomID}
	}
	w.emit(w.ord.add(ar.index, encode(res)))
	if w.ord.ordered && ar.index >= w.ord.next {
		w.held[o.Key] = ar.index
	}
}

// batchesRunning says what the provider batches do, for the progress.
func (s Snapshot) batchesRunning() string {
	b := s.Batches
	return fmt.Sprintf("provider batches: %d running, %d ended", b.Running, b.Ended)
}

// writeBatches prints what the run did with provider batches.
func (s Snapshot) writeBatches(w io.Writer) {
	b := s.Batches
	fmt.Fprintf(w, "provider batches: %d created, %d resumed, %d ended", b.Created, b.Resumed, b.Ended)
	if b.Running > 0 {
		fmt.Fprintf(w, ", %d left running", b.Running)
		if b.Cancelled > 0 {
			fmt.Fprintf(w, " of which %d cancelled at the provider", b.Cancelled)
		}
		fmt.Fprint(w, " (a rerun with the same results file collects their answers)")
	}
	fmt.Fprintf(w, "; %d requests redone in a new batch, %d sent online\n", b.Resubmitted, b.Online)
	if s.BatchCostOnline > 0 {
		fmt.Fprintf(w, "batch price: the batches' answers cost %s; the same usage online would have cost %s\n", usd(s.BatchCost), usd(s.BatchCostOnline))
	}
}

// batchFacts are the rows of a report's table about the provider batches
// of a run through the batch API.
func (t reportTotals) batchFacts() []fact {
	b := t.batches
	if b == nil {
		return nil
	}
	return []fact{{Name: "provider batches",
		Value: fmt.Sprintf("%d created, %d resumed, %d ended, %d left running", b.Created, b.Resumed, b.Ended, b.Running),
		Note: fmt.Sprintf("the requests they answered count as requests, not as calls; %d redone in a new batch, %d sent online (as calls)",
			b.Resubmitted, b.Online)}}
}
