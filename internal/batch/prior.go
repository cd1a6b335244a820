package batch

import (
	"bufio"
	"encoding/json"
	"io"
	"slices"

	"github.com/lionactor/lionactor/messages"
)

// Prior is what an existing results file says about the requests of an
// input: the last final result of each request. When a request has several
// result lines (a FAILED one, then the line of a --retry-failed rerun), the
// last one is its result.
type Prior struct {
	byKey map[string]priorResult
	// byIndex holds the results written before results had keys, which
	// have no id: as then, they are matched by line number.
	byIndex map[int]priorResult
	legacy  int
	// spent is what every line cost by its cost_usd.actual.
	spent float64
}

// priorResult is what a rerun needs to know of a result.
type priorResult struct {
	failed bool
	kind   string // the error kind of a FAILED result
	hash   string // the content it answered; "" when written before keys
	batch  string // the provider batch that answered it, if one did
}

// ReadPrior reads an existing results file. Lines that do not parse (such
// as a line cut short by a crash) and lines without a final status are
// ignored, so their requests run again. It also reports whether the file
// ends without a newline, which the caller must add before appending.
//
// Lines written before results had a "key" are still read: one with an
// "id" is matched by its id, one without by its line number, as it was
// then; [Prior.Legacy] counts them.
func ReadPrior(r io.Reader) (prior *Prior, needsNewline bool, err error) {
	p := &Prior{byKey: map[string]priorResult{}, byIndex: map[int]priorResult{}}
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		// Unlike an input line (lineReader), a result line is read whole
		// however long: it holds a reply the run already held whole (up
		// to the endpoint's MaxResponseBytes, a setting of its own, and
		// longer once escaped), and a line dropped for its length would
		// have its request run, and paid for, again.
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			needsNewline = line[len(line)-1] != '\n'
			p.add(line)
		}
		if err == io.EOF {
			return p, needsNewline, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

func (p *Prior) add(line []byte) {
	var res struct {
		Index       *int            `json:"index"`
		Key         string          `json:"key"`
		ContentHash string          `json:"content_hash"`
		ID          json.RawMessage `json:"id"`
		Status      string          `json:"status"`
		Error       *struct {
			Kind string `json:"kind"`
		} `json:"error"`
		ProviderBatch *ResultBatch `json:"provider_batch"`
		CostUSD       *struct {
			Actual *float64 `json:"actual"`
		} `json:"cost_usd"`
	}
	if json.Unmarshal(line, &res) != nil {
		return
	}
	// Every line was paid for, whether its request was done again since
	// or not.
	if c := res.CostUSD; c != nil && c.Actual != nil && *c.Actual > 0 {
		p.spent += *c.Actual
	}
	status, err := messages.ParseStatus(res.Status)
	// CANCELLED is not written by batch: a cancelled request is one an
	// interrupt kept from finishing, and a rerun must do it.
	if err != nil || !status.Terminal() || status == messages.StatusCancelled {
		return
	}
	pr := priorResult{failed: status == messages.StatusFailed, hash: res.ContentHash}
	if res.Error != nil {
		pr.kind = res.Error.Kind
	}
	if res.ProviderBatch != nil {
		pr.batch = res.ProviderBatch.ID
	}
	switch {
	case res.Key != "":
		p.byKey[res.Key] = pr
	case len(res.ID) > 0 && string(res.ID) != "null":
		p.legacy++
		pr.hash = "" // its content is unknown
		p.byKey[idKey(res.ID)] = pr
	case res.Index != nil:
		p.legacy++
		p.byIndex[*res.Index] = pr
	}
}

// Len is the number of requests with a result.
func (p *Prior) Len() int {
	if p == nil {
		return 0
	}
	return len(p.byKey) + len(p.byIndex)
}

// Spent is what the requests of every line cost, by their cost_usd.actual,
// in US dollars: what a spend cap counts as spent before the run.
func (p *Prior) Spent() float64 {
	if p == nil {
		return 0
	}
	return p.spent
}

// Legacy counts the result lines written before results had keys.
func (p *Prior) Legacy() int {
	if p == nil {
		return 0
	}
	return p.legacy
}

// FailedKinds counts the requests whose last result is FAILED, by error
// kind.
func (p *Prior) FailedKinds() map[string]int {
	kinds := map[string]int{}
	if p == nil {
		return kinds
	}
	count := func(r priorResult) {
		if r.failed {
			kinds[r.kind]++
		}
	}
	for _, r := range p.byKey {
		count(r)
	}
	for _, r := range p.byIndex {
		count(r)
	}
	return kinds
}

// lookup finds the result of the request with identity id on line index.
func (p *Prior) lookup(id identity, index int) (priorResult, bool) {
	if p == nil {
		return priorResult{}, false
	}
	if r, ok := p.byKey[id.key]; ok {
		return r, true
	}
	if id.id == nil {
		r, ok := p.byIndex[index]
		return r, ok
	}
	return priorResult{}, false
}

// verdict is what a run does with a request, given the results before it.
type verdict int

const (
	runNew      verdict = iota // no result yet
	skipDone                   // a final result: done before
	runRetry                   // its last result FAILED, and failures of its kind are retried
	runChanged                 // its id has a result for other content, and changed requests rerun
	skipChanged                // the same, not rerun
)

func (v verdict) runs() bool { return v == runNew || v == runRetry || v == runChanged }

// verdict decides what the run does with the request id on line index.
func (c Config) verdict(p *Prior, id identity, index int) verdict {
	r, ok := p.lookup(id, index)
	switch {
	case !ok:
		return runNew
	case r.failed && c.RetryFailed && (len(c.RetryKinds) == 0 || slices.Contains(c.RetryKinds, r.kind)):
		return runRetry
	case id.id != nil && r.hash != "" && r.hash != id.hash:
		if c.RerunChanged {
			return runChanged
		}
		return skipChanged
	}
	return skipDone
}
