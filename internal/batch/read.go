package batch

import (
	"context"
	"io"
)

type readerEnd struct {
	submitted int   // requests handed to the executor
	err       error // a read error of the input
	capped    bool  // the spend cap stopped the reading
}

// read parses the input and submits each request that has no result yet,
// sending the writer the lines that need no call. It stops early when ctx
// ends.
func (r *runner) read(ctx context.Context) readerEnd {
	var end readerEnd
	defer close(r.reader)
	lr := newLineReader(r.in.R, r.cfg.maxLineBytes())
	ids := newIdentifier()
	for index := 0; ; index++ {
		line, err := lr.next()
		if line.blank() {
			if err != nil {
				if err != io.EOF {
					end.err = err
				}
				return end
			}
			r.reader <- item{index: index, skip: true}
			continue
		}
		r.sum.read()
		ln := r.identify(ids, index, line)
		if !ln.verdict.runs() {
			r.reader <- item{index: index, skip: true}
		} else {
			select {
			case r.window <- struct{}{}:
			case <-ctx.Done():
				// This line was read but not submitted: it is counted in
				// Read already; count the lines after it.
				r.sum.unread(r.countRest(index+1, lr, ids))
				return end
			}
			switch r.submit(ctx, index, ln) {
			case submitted:
				end.submitted++
			case capped:
				// This line was read but not submitted: it is counted in
				// Read already, and remains with the lines after it.
				<-r.window
				r.sum.unread(r.countRest(index+1, lr, ids))
				r.sum.update(func(s *Snapshot) { s.SpendCapped = true })
				end.capped = true
				return end
			default:
				<-r.window
			}
		}
		if err != nil {
			if err != io.EOF {
				end.err = err
			}
			return end
		}
		if ctx.Err() != nil {
			r.sum.unread(r.countRest(index+1, lr, ids))
			return end
		}
	}
}

// line is one non-blank input line, parsed, identified and judged.
type line struct {
	parsed  *parsedLine // nil if the line is not a JSON object, or too long to read
	invalid error       // why not: a *longLineError for a line too long
	dupID   error       // a *DuplicateIDError, if an earlier line has its id
	id      identity
	verdict verdict
}

// identify takes line index apart and decides, from the results of earlier
// runs, whether it runs, counting it in the summary.
func (r *runner) identify(ids *identifier, index int, raw inputLine) line {
	ln := ids.take(index, raw)
	ln.verdict = r.cfg.verdict(r.in.Prior, ln.id, index)
	r.sum.judged(ln.verdict, ln.id.id)
	return ln
}

// countRest counts the requests not yet read that would run, so an
// interrupted run can say how many remain.
func (r *runner) countRest(index int, lr *lineReader, ids *identifier) int {
	n := 0
	for ; ; index++ {
		raw, err := lr.next()
		if !raw.blank() && r.identify(ids, index, raw).verdict.runs() {
			n++
		}
		if err != nil {
			return n
		}
	}
}
