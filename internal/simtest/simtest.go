// Package simtest starts lionactor's simulator for tests: on the loopback
// interface, closed when the test ends. Start serves it as lionactor sim
// does; StartRecording serves it behind a handler that records every
// request, for tests that check what a client sent.
package simtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/lionactor/lionactor/simulator"
)

// Start starts a simulator for cfg on 127.0.0.1, closed when the test
// ends, and returns it with the base URL clients use (".../v1").
func Start(t testing.TB, cfg simulator.Config) (*simulator.Server, string) {
	t.Helper()
	sim := newServer(t, cfg)
	base, err := sim.Start("127.0.0.1:0")
	check(t, "simulator Start", err)
	t.Cleanup(func() { check(t, "simulator Close", sim.Close()) })
	return sim, base + "/v1"
}

// newServer is the simulator for cfg.
func newServer(t testing.TB, cfg simulator.Config) *simulator.Server {
	t.Helper()
	sim, err := simulator.New(cfg)
	check(t, "simulator.New", err)
	return sim
}

// check fails the test if err is not nil.
func check(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Request is one request as a Recording received it.
type Request struct {
	Method, Path, Query string // Path escaped, Query raw
	Header              http.Header
	Body                []byte
}

// Fields decodes the request's JSON body, failing the test if it is not a
// JSON object.
func (r Request) Fields(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	check(t, "request body "+strconv.Quote(string(r.Body)), json.Unmarshal(r.Body, &m))
	return m
}

// Recording is a simulator served over HTTP on 127.0.0.1 that records the
// requests it receives.
type Recording struct {
	*simulator.Server
	URL string // the server's root; the APIs are under URL+"/v1"

	mu   sync.Mutex
	reqs []Request
}

// StartRecording starts a recording simulator for cfg, closed when the
// test ends. wrap, if not nil, wraps the simulator's handler behind the
// recording, for a test that adds to what the simulator answers.
func StartRecording(t testing.TB, cfg simulator.Config, wrap func(http.Handler) http.Handler) *Recording {
	t.Helper()
	sim := newServer(t, cfg)
	rec := &Recording{Server: sim}
	h := sim.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	rec.URL = ts.URL
	t.Cleanup(func() {
		sim.Close() // ends the simulator's delays first, so that ts.Close does not wait for them
		ts.Close()
	})
	return rec
}

// Requests returns the requests received so far, in order.
func (r *Recording) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// Last returns the latest request received, failing the test if there is
// none.
func (r *Recording) Last(t testing.TB) Request {
	t.Helper()
	reqs := r.Requests()
	if len(reqs) == 0 {
		t.Fatal("the simulator received no request")
	}
	return reqs[len(reqs)-1]
}
