package batch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// A request's identity is what a rerun matches results by, whatever line
// the request is on now: the line's "id" when it has one, otherwise the
// hash of its content with an occurrence number, so that two identical
// lines are two requests. Line numbers are not identities: a user who
// prepends or reorders lines would otherwise have requests skipped that
// never ran and others run twice.
type identity struct {
	// key is "id:" and the id for a line with one, else the content hash
	// and the line's occurrence among identical lines: "sha256:…#2".
	key string
	// hash is "sha256:" and the hex SHA-256 of the line's canonical
	// content: the request without its "id" (the body and the metadata)
	// with object keys sorted, or, for a line that is not a JSON object,
	// of the line itself.
	hash string
	// id is the line's "id" as written, nil when it has none.
	id json.RawMessage
}

// ErrDuplicateID is wrapped by [DuplicateIDError].
var ErrDuplicateID = errors.New("batch: duplicate id")

// DuplicateIDError reports two input lines with the same "id": their results
// could not be told apart, so the input is refused. It matches
// [ErrDuplicateID] under errors.Is.
type DuplicateIDError struct {
	// ID is the id as written on the lines.
	ID string
	// First and Second are the 1-based numbers of the two lines.
	First, Second int
}

// Error implements error.
func (e *DuplicateIDError) Error() string {
	return fmt.Sprintf("lines %d and %d have the same id %s: results are matched to requests by id, so ids must be unique",
		e.First, e.Second, e.ID)
}

// Unwrap returns [ErrDuplicateID].
func (e *DuplicateIDError) Unwrap() error { return ErrDuplicateID }

// parsedLine is an input line taken apart.
type parsedLine struct {
	// body is what is sent: the line without "id" and "metadata".
	body     map[string]any
	id       json.RawMessage // nil when absent or null
	metadata json.RawMessage // nil when absent
	hash     string          // of the canonical content
}

// parseLine parses one non-blank input line. Its error is the reason the
// line is invalid input.
func parseLine(line []byte) (*parsedLine, error) {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber() // numbers keep their text: sent, hashed and copied as written
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if obj == nil {
		return nil, errors.New("not a JSON object: null")
	}
	// More would let a stray '}' or ']' after the object pass.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value on the line")
	}
	p := &parsedLine{body: obj}
	if v, ok := obj["id"]; ok {
		if v != nil {
			p.id, _ = json.Marshal(v)
		}
		delete(obj, "id")
	}
	p.hash = hashOf(appendCanonical(nil, obj))
	if v, ok := obj["metadata"]; ok {
		p.metadata, _ = json.Marshal(v)
		delete(obj, "metadata")
	}
	return p, nil
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// identifier gives the lines of one input their identities, in order.
type identifier struct {
	occurrences map[string]int // content hash → lines without an id seen with it
	ids         map[string]int // id key → the 1-based line that has it
}

func newIdentifier() *identifier {
	return &identifier{occurrences: map[string]int{}, ids: map[string]int{}}
}

// take parses and identifies the non-blank line at index: all of a line
// but its verdict, which depends on earlier results. A line too long to
// read is known by the hash of its bytes, as a line that is not a JSON
// object is by the hash of its text.
func (d *identifier) take(index int, l inputLine) line {
	var ln line
	if l.long != nil {
		ln.invalid, ln.id = l.long, d.byContent(l.long.hash)
		return ln
	}
	ln.parsed, ln.invalid = parseLine(l.text)
	ln.id, ln.dupID = d.identify(index, l.text, ln.parsed)
	return ln
}

// identify returns the identity of the non-blank line at index, p being the
// line parsed (nil if it is not a JSON object). A line whose id an earlier
// line has gets a *DuplicateIDError, and the identity of a line without an
// id, so that its result cannot be taken for the other line's.
func (d *identifier) identify(index int, line []byte, p *parsedLine) (identity, error) {
	if p != nil && p.id != nil {
		key := idKey(p.id)
		if first, dup := d.ids[key]; dup {
			id := d.byContent(p.hash)
			id.id = p.id
			return id, &DuplicateIDError{ID: string(p.id), First: first, Second: index + 1}
		}
		d.ids[key] = index + 1
		return identity{key: key, hash: p.hash, id: p.id}, nil
	}
	if p != nil {
		return d.byContent(p.hash), nil
	}
	// Not a JSON object: the raw line stands for its content. It cannot
	// hash like a valid line: a canonical form is a JSON object.
	return d.byContent(hashOf(bytes.TrimSpace(line))), nil
}

func (d *identifier) byContent(hash string) identity {
	d.occurrences[hash]++
	return identity{key: hash + "#" + strconv.Itoa(d.occurrences[hash]), hash: hash}
}

// idKey is the key of a line with the given id (JSON): ids are compared as
// text, so the string "7" and the number 7 are the same id.
func idKey(id json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "id:" + string(id) // not from a parsed line; kept as given
	}
	if s, ok := v.(string); ok {
		return "id:" + s
	}
	return "id:" + string(appendCanonical(nil, v))
}

// Scan reads an input to its end and returns the number of requests in it
// (its non-blank lines), reading no line longer than maxLineBytes whole
// (0: DefaultMaxLineBytes), as Run reads them. Two lines with the same id
// make it fail with a *DuplicateIDError, so that a caller can refuse the
// input before anything is sent; Run, given such an input, fails the later
// line instead.
func Scan(r io.Reader, maxLineBytes int) (int, error) {
	d := newIdentifier()
	lr := newLineReader(r, Config{MaxLineBytes: maxLineBytes}.maxLineBytes())
	n := 0
	for index := 0; ; index++ {
		line, err := lr.next()
		if !line.blank() {
			n++
			if dup := d.take(index, line).dupID; dup != nil {
				return n, dup
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// appendCanonical appends the canonical JSON form of v, a value decoded
// with UseNumber: no spaces, object keys sorted by their bytes, numbers as
// written, strings escaping only what JSON requires. It is defined here,
// not by encoding/json, so that a request's hash never changes with the Go
// release that computes it.
func appendCanonical(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return appendString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendCanonical(b, v[k])
		}
		return append(b, '}')
	}
	// json.Decoder with UseNumber makes no other type.
	panic(fmt.Sprintf("batch: appendCanonical: unexpected %T", v))
}

// appendString appends s as a JSON string, escaping '"', '\\' and the
// control characters only. Decoding has already made s valid UTF-8.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			b = utf8.AppendRune(b, r) // U+FFFD for a stray byte, as decoding makes it
			i += size
		}
	}
	return append(b, '"')
}
