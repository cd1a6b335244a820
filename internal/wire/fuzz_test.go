package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// checkRateLimitErr checks the error contract of the rate-limit parsers:
// every error is a *HeaderError matched by ErrMalformedHeader.
func checkRateLimitErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var he *HeaderError
	if !errors.As(err, &he) || !errors.Is(err, ErrMalformedHeader) || he.Err == nil {
		t.Fatalf("error %v is not a *HeaderError", err)
	}
}

// checkLimit checks that a parsed budget holds no negative count, that
// its values are zero where absent, and that its wait is not negative.
func checkLimit(t *testing.T, name string, b LimitState) {
	t.Helper()
	if b.Limit < 0 || b.Remaining < 0 {
		t.Fatalf("%s: negative count %+v", name, b)
	}
	if (!b.HasLimit && b.Limit != 0) || (!b.HasRemaining && b.Remaining != 0) || (!b.HasReset && !b.Reset.IsZero()) {
		t.Fatalf("%s: value without its flag %+v", name, b)
	}
	if b.ResetIn(now) < 0 {
		t.Fatalf("%s: negative ResetIn", name)
	}
}

func FuzzParseOpenAIRateLimit(f *testing.F) {
	f.Add("60", "59", "1s", "150000", "149984", "6m0s")
	f.Add("", "", "12ms", "", "", "1m30.5s")
	f.Add("x", "-1", "-3s", "1e3", "99999999999999999999", "1e400")
	f.Add("0", "0", "20", "0", "0", "0.25")
	f.Add("1", "1", "2562047h47m16.854775807s", "1", "1", "9223372036.854775807")
	f.Fuzz(func(t *testing.T, limR, remR, resetR, limT, remT, resetT string) {
		h := http.Header{}
		set := func(name, v string) {
			if v != "" {
				h.Set(name, v)
			}
		}
		set("x-ratelimit-limit-requests", limR)
		set("x-ratelimit-remaining-requests", remR)
		set("x-ratelimit-reset-requests", resetR)
		set("x-ratelimit-limit-tokens", limT)
		set("x-ratelimit-remaining-tokens", remT)
		set("x-ratelimit-reset-tokens", resetT)
		rl, err := ParseOpenAIRateLimit(h, now)
		checkRateLimitErr(t, err)
		for name, b := range map[string]LimitState{"requests": rl.Requests, "tokens": rl.Tokens} {
			checkLimit(t, name, b)
			if b.HasReset && b.Reset.Before(now) {
				t.Fatalf("%s: reset %v before now", name, b.Reset)
			}
		}
		if rl.InputTokens.Present() || rl.OutputTokens.Present() {
			t.Fatalf("input/output budgets from OpenAI headers: %+v", rl)
		}
		// Every header given is either parsed or reported.
		if err == nil {
			got := []bool{rl.Requests.HasLimit, rl.Requests.HasRemaining, rl.Requests.HasReset,
				rl.Tokens.HasLimit, rl.Tokens.HasRemaining, rl.Tokens.HasReset}
			for i, v := range []string{limR, remR, resetR, limT, remT, resetT} {
				if (strings.TrimSpace(v) != "") != got[i] {
					t.Fatalf("header %d %q: present %v without error", i, v, got[i])
				}
			}
		}
	})
}

func FuzzParseAnthropicRateLimit(f *testing.F) {
	f.Add("1000", "999", "2025-08-21T12:40:59Z", "96000", "80000", "16000", "2025-08-21T12:41:00Z")
	f.Add("", "", "", "5", "", "", "2025-08-21T14:41:00.5+02:00")
	f.Add("-1", "x", "tomorrow", "", "7", "7", "2025-13-01T00:00:00Z")
	f.Add("0", "0", "0001-01-01T00:00:00Z", "0", "0", "0", "9999-12-31T23:59:59.999999999Z")
	f.Fuzz(func(t *testing.T, limR, remR, resetR, remTok, remIn, remOut, reset string) {
		h := http.Header{}
		set := func(name, v string) {
			if v != "" {
				h.Set(name, v)
			}
		}
		const pre = "anthropic-ratelimit-"
		set(pre+"requests-limit", limR)
		set(pre+"requests-remaining", remR)
		set(pre+"requests-reset", resetR)
		set(pre+"tokens-remaining", remTok)
		set(pre+"tokens-reset", reset)
		set(pre+"input-tokens-remaining", remIn)
		set(pre+"input-tokens-reset", reset)
		set(pre+"output-tokens-remaining", remOut)
		set(pre+"output-tokens-limit", remOut)
		rl, err := ParseAnthropicRateLimit(h, now)
		checkRateLimitErr(t, err)
		for name, b := range map[string]LimitState{"requests": rl.Requests, "tokens": rl.Tokens,
			"input": rl.InputTokens, "output": rl.OutputTokens} {
			checkLimit(t, name, b)
		}
		// Tokens is one of the token budgets, and no budget that reports
		// what remains has less remaining.
		raw, _ := ParseAnthropicRateLimit(http.Header{
			"Anthropic-Ratelimit-Tokens-Remaining": h.Values("Anthropic-Ratelimit-Tokens-Remaining"),
			"Anthropic-Ratelimit-Tokens-Reset":     h.Values("Anthropic-Ratelimit-Tokens-Reset"),
		}, now)
		if !sameLimit(rl.Tokens, raw.Tokens) && !sameLimit(rl.Tokens, rl.InputTokens) && !sameLimit(rl.Tokens, rl.OutputTokens) {
			t.Fatalf("tokens %+v is none of the budgets", rl.Tokens)
		}
		for _, b := range []LimitState{raw.Tokens, rl.InputTokens, rl.OutputTokens} {
			if b.HasRemaining && (!rl.Tokens.HasRemaining || b.Remaining < rl.Tokens.Remaining) {
				t.Fatalf("tokens %+v is not the tightest of %+v", rl.Tokens, b)
			}
		}
	})
}

// sameLimit reports whether a and b are equal, comparing resets as
// instants: parsing one RFC 3339 offset twice gives two *time.Location.
func sameLimit(a, b LimitState) bool {
	eq := a.Reset.Equal(b.Reset)
	a.Reset, b.Reset = time.Time{}, time.Time{}
	return eq && a == b
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("", "20")
	f.Add("1500", "2")
	f.Add("12.5", "")
	f.Add("", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add("-5", "-1e300")
	f.Add("1e400", "NaN")
	f.Add("soon", "Thu, 21 Aug 2025 12:41:30 GMT")
	f.Add("9223372036854.775807", "0x10")
	f.Fuzz(func(t *testing.T, ms, secs string) {
		h := http.Header{}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		if secs != "" {
			h.Set("Retry-After", secs)
		}
		d, ok := ParseRetryAfter(h, now)
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("delay %v out of [0, %v]", d, MaxRetryAfter)
		}
		if !ok && d != 0 {
			t.Fatalf("delay %v without ok", d)
		}
		if ms == "" && secs == "" && ok {
			t.Fatal("ok without headers")
		}
		// The millisecond header wins whenever it is a number.
		if ms != "" {
			if dm, okm := ParseRetryAfter(http.Header{"Retry-After-Ms": {ms}}, now); okm && (dm != d || !ok) {
				t.Fatalf("retry-after-ms alone gives %v, with retry-after %v", dm, d)
			}
		}
	})
}

// sseLineEndings are the line endings FuzzSSE encodes with.
var sseLineEndings = []string{"\n", "\r\n", "\r"}

// encodeSSE writes evs as a server would, with the line ending eol and a
// comment before each event.
func encodeSSE(evs []SSEEvent, eol string) string {
	var b strings.Builder
	for _, ev := range evs {
		b.WriteString(": c" + eol)
		if ev.Event != "" {
			b.WriteString("event: " + ev.Event + eol)
		}
		b.WriteString("id: " + ev.ID + eol)
		for line := range strings.SplitSeq(ev.Data, "\n") {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	return b.String()
}

// eventsFromFuzz derives well-formed events from arbitrary bytes: records
// separated by 0x1e, fields by 0x1f. Characters that no encoding can carry
// are dropped: line endings outside data, CR in data, NUL in an ID.
func eventsFromFuzz(raw []byte) []SSEEvent {
	clean := func(s, drop string) string {
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(drop, r) {
				return -1
			}
			return r
		}, s)
	}
	var evs []SSEEvent
	for rec := range strings.SplitSeq(string(raw), "\x1e") {
		f := strings.SplitN(rec, "\x1f", 3)
		for len(f) < 3 {
			f = append(f, "")
		}
		evs = append(evs, SSEEvent{
			Event: clean(f[0], "\r\n"),
			Data:  clean(f[1], "\r"),
			ID:    clean(f[2], "\r\n\x00"),
		})
	}
	return evs
}

func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: x\n\n"), uint8(0))
	f.Add([]byte("event: ping\r\ndata: {}\r\n\r\n: c\r\ndata: [DONE]\r\n\r\n"), uint8(1))
	f.Add([]byte("message_start\x1f{\"type\":\"message_start\"}\x1f1\x1eping\x1f\x1f"), uint8(2))
	f.Add([]byte("\x1fa\nb\n\nc\x1f\x1e\x1f\x1f"), uint8(3))
	f.Add([]byte("\uFEFFdata: a\rid: 1\x00\r\rdata"), uint8(4))
	f.Fuzz(func(t *testing.T, raw []byte, mode uint8) {
		// Arbitrary input: no panic, and at most one error, last.
		var r io.Reader = bytes.NewReader(raw)
		if mode&4 != 0 {
			r = iotest.OneByteReader(r)
		}
		sawErr := false
		for ev, err := range Events(r) {
			if sawErr {
				t.Fatalf("yield after error: %+v", ev)
			}
			if err != nil {
				sawErr = true
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("error %v on in-memory input of %d bytes", err, len(raw))
				}
			}
		}

		// Well-formed input: the events come back as they were written.
		evs := eventsFromFuzz(raw)
		enc := encodeSSE(evs, sseLineEndings[int(mode&3)%len(sseLineEndings)])
		r = strings.NewReader(enc)
		if mode&4 != 0 {
			r = iotest.OneByteReader(r)
		}
		got, err := collect(r)
		if err != nil {
			t.Fatalf("decode %q: %v", enc, err)
		}
		if !reflect.DeepEqual(got, evs) {
			t.Fatalf("decode %q:\n got %q\nwant %q", enc, got, evs)
		}
	})
}

func FuzzRequestRoundTrip(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":1}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":"x","Model":"n"}`))
	f.Add([]byte(`{"model":"claude","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[],"tools":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cr ChatRequest
		if json.Unmarshal(data, &cr) == nil {
			requestRoundTrip(t, cr)
		}
		var mr MessagesRequest
		if json.Unmarshal(data, &mr) == nil {
			requestRoundTrip(t, mr)
		}
		var er EmbeddingRequest
		if json.Unmarshal(data, &er) == nil {
			requestRoundTrip(t, er)
		}
	})
}

// requestRoundTrip checks that a decoded request encodes and decodes back
// to an equal value, comparing Extra values as compacted JSON.
func requestRoundTrip[T any](t *testing.T, v T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %#v: %v", v, err)
	}
	var back T
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	b2, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("encoding not stable:\n%s\n%s", b, b2)
	}
}

func TestFuzzHelpers(t *testing.T) {
	evs := eventsFromFuzz([]byte("e\r\x1fa\r\nb\x1fi\x00d\x1ex"))
	want := []SSEEvent{{Event: "e", Data: "a\nb", ID: "id"}, {Event: "x"}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("eventsFromFuzz = %q, want %q", evs, want)
	}
	if got := encodeSSE(want[:1], "\r\n"); got != ": c\r\nevent: e\r\nid: id\r\ndata: a\r\ndata: b\r\n\r\n" {
		t.Errorf("encodeSSE = %q", got)
	}
}
