package batchapi

import (
	"context"
	"errors"
	"time"
)

// item is one request as it goes into batches. It is immutable once made,
// and shared by the actors.
type item struct {
	key, customID string
	line          int    // 1-based input line; 0 if unknown
	model         string // the body's model: a batch holds one model
	tokens        int    // estimated
	piece         []byte // the request as the upload holds it
	// hash is a short hash of the request's body as sent, which the
	// journal keeps beside its key: a resumed batch answers a request only
	// if it asked what the request asks now.
	hash string
}

// part is one provider batch: built by the submitter from items, created
// by a goroutine of the submitter's, then followed by a poller and the
// supervisor. Only one actor (or the goroutine it started) uses a part at
// a time: it passes from one to the next by message.
type part struct {
	id     string // its name in the journal
	model  string
	items  []*item  // nil for a part resumed from the journal
	keys   []string // of its requests, in the order of the upload
	hashes []string // of their bodies (item.hash), in the same order
	lines  []int
	data   []byte // the upload; dropped once the batch is created
	tokens int    // estimated, of its requests

	built, submitted, created time.Time
	fileID                    string // OpenAI's input file, once uploaded
	batchID                   string // once created
	resumed                   bool   // created by an earlier run
	ended                     bool   // the poller saw it end

	journaled bool // its submit record is written
	// ambiguous is set when a create of it failed in a way that may have
	// taken effect: the next try looks for the batch before creating one.
	ambiguous bool
}

// create creates p's batch at the provider, recording in the journal the
// intent before and the batch after, so that a crash at any point leaves
// a journal from which a later run finds the batch rather than pay for a
// second one. It runs off the actors' goroutines.
func (r *run) create(ctx context.Context, p *part) error {
	if p.ambiguous {
		id, err := r.prov.find(ctx, p, r.isClaimed)
		switch {
		case err == nil:
			return r.adopt(p, id)
		case !errors.Is(err, errNotCreated):
			return err
		}
		p.ambiguous = false
	}
	if err := r.prov.upload(ctx, p); err != nil {
		return err
	}
	if !p.journaled {
		p.submitted = time.Now().UTC()
		if err := r.journal.append(r.submitRecord(p)); err != nil {
			return &journalError{err}
		}
		p.journaled = true
	}
	id, err := r.prov.create(ctx, p)
	if err == nil {
		return r.adopt(p, id)
	}
	if ambiguous(err) {
		// The answer was lost, or the provider failed while creating:
		// the batch may exist.
		p.ambiguous = true
		found, ferr := r.prov.find(ctx, p, r.isClaimed)
		switch {
		case ferr == nil:
			return r.adopt(p, found)
		case errors.Is(ferr, errNotCreated):
			p.ambiguous = false
		}
	}
	if !transient(err) && !p.ambiguous {
		if jerr := r.journal.append(record{Event: eventRefused, Part: p.id, Reason: err.Error()}); jerr != nil {
			return &journalError{jerr}
		}
	}
	return err
}

// adopt records that p's batch is id.
func (r *run) adopt(p *part, id string) error {
	r.claim(id)
	p.batchID = id
	if p.created.IsZero() {
		p.created = time.Now().UTC()
	}
	if err := r.journal.append(record{Event: eventCreated, Part: p.id, Batch: id, At: p.created}); err != nil {
		return &journalError{err}
	}
	p.data = nil
	return nil
}

func (r *run) submitRecord(p *part) record {
	return record{Event: eventSubmit, Part: p.id, Provider: string(r.pname), BaseURL: r.base, Model: p.model,
		File: p.fileID, Requests: len(p.keys), Tokens: p.tokens, Lines: lineRanges(p.lines), Keys: p.keys, Hashes: p.hashes, At: p.submitted}
}

// journalError is a failure to write the journal: the run stops, since it
// could not resume what it would go on to create.
type journalError struct{ err error }

func (e *journalError) Error() string { return "batchapi: writing the journal: " + e.err.Error() }
func (e *journalError) Unwrap() error { return e.err }
