package chaos

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// headerAttempt numbers each HTTP attempt of a run, so that the server side
// and the client side of one attempt can be matched.
const headerAttempt = "X-Chaos-Attempt"

// watch serves the simulator's handler on 127.0.0.1 and records when each
// attempt arrives and when its handler returns.
//
// The simulator's own in-flight count keeps a request until its handler
// returns, also when the client has already given up on it (a timeout, or
// a stream whose first event was malformed): the handler may still be
// writing into a closed connection when the client's next request arrives.
// So the cap the client keeps is checked on intervals that start when the
// server sees the attempt arrive and end when the server finishes it or the
// client closes it, whichever is first; the client's close is recorded by
// the transport before its caller is free to start another attempt.
type watch struct {
	next http.Handler
	srv  *http.Server
	done chan struct{}

	mu      sync.Mutex
	arrived map[uint64]time.Time
	ended   map[uint64]time.Time
}

// serveWatched starts serving h and returns the watch and the base URL.
func serveWatched(h http.Handler) (*watch, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	w := &watch{next: h, done: make(chan struct{}), arrived: map[uint64]time.Time{}, ended: map[uint64]time.Time{}}
	// Aborted handlers (resets, truncations) are what the faults are for:
	// do not log them.
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(w.done)
		w.srv.Serve(ln) // returns ErrServerClosed after close
	}()
	return w, "http://" + ln.Addr().String(), nil
}

// ServeHTTP implements http.Handler.
func (w *watch) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.Header.Get(headerAttempt), 10, 64)
	if err == nil {
		w.mu.Lock()
		w.arrived[n] = time.Now()
		w.mu.Unlock()
		// Deferred, so that it runs also when the handler aborts with a
		// panic.
		defer func() {
			w.mu.Lock()
			w.ended[n] = time.Now()
			w.mu.Unlock()
		}()
	}
	w.next.ServeHTTP(rw, r)
}

// close stops the server; the simulator must be closed first, so that no
// handler waits.
func (w *watch) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w.srv.Shutdown(ctx) != nil {
		w.srv.Close()
	}
	<-w.done
}

// maxHeld returns the most attempts that the server had begun and that
// neither the server had finished nor the client had closed, at any
// moment; clientEnd gives the client's close of each attempt.
func (w *watch) maxHeld(clientEnd map[uint64]time.Time) int {
	type edge struct {
		at    time.Time
		delta int
	}
	w.mu.Lock()
	edges := make([]edge, 0, 2*len(w.arrived))
	for n, start := range w.arrived {
		end, ok := w.ended[n]
		if c, cok := clientEnd[n]; cok && (!ok || c.Before(end)) {
			end, ok = c, true
		}
		if ok && end.Before(start) {
			continue // the client gave up before the server saw it
		}
		edges = append(edges, edge{start, 1})
		if ok {
			edges = append(edges, edge{end, -1})
		}
	}
	w.mu.Unlock()
	// At one instant, ends go before starts.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	held, most := 0, 0
	for _, e := range edges {
		held += e.delta
		most = max(most, held)
	}
	return most
}
