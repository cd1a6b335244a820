package batchapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// The journal is a JSONL file that records, as they happen, the provider
// batches a run creates and what became of them, so that a run interrupted
// or crashed is resumed by polling its batches instead of creating (and
// paying for) them again. Each record is one line, written whole and
// synced to disk before the run goes on; a line cut short by a crash is
// ignored when the file is read. Records are never rewritten: the state of
// a part is the fold of its records.
//
//	{"v":1,"event":"submit","part":"…","provider":"openai","base_url":"…","model":"…","input_file":"file-…","requests":5000,"tokens":412000,"lines":[[1,5000]],"keys":["id:q-1",…],"hashes":["5f0c…",…],"at":"…"}
//	{"v":1,"event":"created","part":"…","batch":"batch_…","at":"…"}
//	{"v":1,"event":"refused","part":"…","reason":"…","at":"…"}
//	{"v":1,"event":"settled","part":"…","batch":"batch_…","at":"…"}
//
// submit is written before the batch is created (after OpenAI's input file
// is uploaded), with the keys of its requests and short hashes of their
// bodies (a request whose body changed since is not answered from it): a
// part with a submit and nothing after it is one whose
// create may or may not have taken effect, which a resuming run looks up at
// the provider. created names the batch. refused says the part has no
// batch and never will (the provider refused it, or it was not found). A
// part is settled once every request in it has its outcome delivered, or
// has gone on to another batch: a resuming run polls the parts created and
// not settled.
type record struct {
	V        int       `json:"v"`
	Event    string    `json:"event"`
	Part     string    `json:"part"`
	Batch    string    `json:"batch,omitempty"`
	Provider string    `json:"provider,omitempty"`
	BaseURL  string    `json:"base_url,omitempty"`
	Model    string    `json:"model,omitempty"`
	File     string    `json:"input_file,omitempty"`
	Requests int       `json:"requests,omitempty"`
	Tokens   int       `json:"tokens,omitempty"`
	Lines    [][2]int  `json:"lines,omitempty"`
	Keys     []string  `json:"keys,omitempty"`
	Hashes   []string  `json:"hashes,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Journal record events.
const (
	eventSubmit  = "submit"
	eventCreated = "created"
	eventRefused = "refused"
	eventSettled = "settled"
)

// journalVersion is the format of the records written.
const journalVersion = 1

// journal appends records to the journal file. Its methods are safe for
// concurrent use; a nil *journal records nothing.
type journal struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// openJournal opens the journal at path, creating it if needed, and
// returns the records it holds, those of lines cut short left out.
func openJournal(path string) (*journal, []record, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	var recs []record
	torn := false
	br := bufio.NewReaderSize(f, 1<<16)
	for {
		line, rerr := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var r record
			if json.Unmarshal(line, &r) == nil && r.Part != "" {
				recs = append(recs, r)
			}
			torn = line[len(line)-1] != '\n'
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return nil, nil, rerr
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, err
	}
	if torn {
		// A line cut short by a crash: the next record starts a line of
		// its own, and the cut one stays ignored.
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return &journal{path: path, f: f}, recs, nil
}

// append writes r as one line and syncs the file.
func (j *journal) append(r record) error {
	if j == nil {
		return nil
	}
	r.V = journalVersion
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("batchapi: journal closed")
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("batchapi: journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("batchapi: journal %s: %w", j.path, err)
	}
	return nil
}

func (j *journal) close() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// journaled is what the journal says of one part.
type journaled struct {
	submit  record
	batch   string
	created time.Time
	refused bool
	settled bool
}

// fold reads the records into the state of each part, in the order the
// parts were submitted.
func fold(recs []record) []*journaled {
	byPart := map[string]*journaled{}
	var order []*journaled
	for _, r := range recs {
		jp := byPart[r.Part]
		if jp == nil {
			if r.Event != eventSubmit {
				continue // its submit was cut short: nothing to resume
			}
			jp = &journaled{}
			byPart[r.Part] = jp
			order = append(order, jp)
		}
		switch r.Event {
		case eventSubmit:
			jp.submit = r
		case eventCreated:
			jp.batch, jp.created = r.Batch, r.At
		case eventRefused:
			jp.refused = true
		case eventSettled:
			jp.settled = true
		}
	}
	return order
}

// open reports whether the part may have a batch whose outcomes are still
// wanted: created (or perhaps created) and not settled.
func (jp *journaled) open() bool { return !jp.refused && !jp.settled }

// lineRanges compresses 1-based line numbers (0: unknown) into sorted
// ranges, for the journal's reader.
func lineRanges(lines []int) [][2]int {
	s := slices.Clone(lines)
	slices.Sort(s)
	var out [][2]int
	for _, n := range s {
		if n <= 0 {
			continue
		}
		if k := len(out); k > 0 && n <= out[k-1][1]+1 {
			out[k-1][1] = max(out[k-1][1], n)
			continue
		}
		out = append(out, [2]int{n, n})
	}
	return out
}
