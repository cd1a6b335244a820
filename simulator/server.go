package simulator

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
)

// MaxArrivals is the number of most recent arrival times a Server keeps
// for Arrivals, so that its memory stays bounded however long it runs.
const MaxArrivals = 1 << 16

// Errors returned by Start.
var (
	// ErrStarted is returned by Start when the server is already
	// listening.
	ErrStarted = errors.New("simulator: server already started")

	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("simulator: server closed")
)

// A Server simulates the OpenAI, Anthropic and Azure OpenAI APIs. It is safe for
// concurrent use. Create one with New, serve it with Start or mount its
// Handler, and release it with Close.
type Server struct {
	cfg   Config
	keys  map[string]bool // nil: any key
	quota map[string]bool
	now   func() time.Time
	mux   *http.ServeMux

	// pauseHook, when set before the server starts, is called as each
	// delay begins, so that a test can act while requests are held.
	pauseHook func()

	batches *batchStore // the files and batches of the batch APIs
	prompts promptCache // the prompt prefixes the providers' caches hold

	closing   chan struct{} // closed by Close: ends every wait
	closeOnce sync.Once

	mu       sync.Mutex
	rng      *rand.Rand
	faults   Faults            // Config.Faults, or what SetFaults set
	keyFault map[string]Faults // SetFaults of single keys
	limits   map[string]*keyLimits
	attempts map[string]int // faulted attempts per HeaderRequestID
	seq      uint64
	stats    Stats
	arrivals []time.Time // ring of the last MaxArrivals
	arrNext  int         // next slot once the ring is full

	lifeMu    sync.Mutex
	http      *http.Server
	serveDone chan struct{}
	closed    bool
}

// New returns a Server for cfg, or a *messages.ConfigError if a field is
// invalid.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		quota:    make(map[string]bool),
		now:      time.Now,
		closing:  make(chan struct{}),
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed)),
		limits:   make(map[string]*keyLimits),
		attempts: make(map[string]int),
		stats:    Stats{ByStatus: make(map[int]int64), ByKey: make(map[string]KeyStats)},
	}
	if len(cfg.Keys) > 0 {
		s.keys = make(map[string]bool)
		for _, k := range cfg.Keys {
			s.keys[k] = true
		}
	}
	for _, k := range cfg.QuotaExhaustedKeys {
		s.quota[k] = true
	}
	for k := range cfg.KeyLimits {
		if s.keys != nil {
			s.keys[k] = true
		}
	}
	s.faults = cfg.Faults
	s.mux = http.NewServeMux()
	s.mux.Handle("/v1/chat/completions", s.endpoint(openAI, (*call).chat))
	s.mux.Handle("/v1/embeddings", s.endpoint(openAI, (*call).embeddings))
	s.mux.Handle("/v1/messages", s.endpoint(anthropic, (*call).messages))
	s.mux.Handle("/openai/deployments/{deployment}/chat/completions", s.endpoint(azure, (*call).chat))
	s.mux.Handle("/openai/deployments/{deployment}/embeddings", s.endpoint(azure, (*call).embeddings))
	s.initBatches()
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Clients of both providers read an OpenAI-style body well
		// enough to show its message.
		body := wire.NewOpenAIErrorBody(wire.TypeInvalidRequest, "", "Invalid URL ("+r.Method+" "+r.URL.Path+")")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write(marshal(body))
	})
	return s, nil
}

// Handler returns the handler that serves the simulated APIs:
//
//	POST /v1/chat/completions  OpenAI chat completions, streamed or not
//	POST /v1/embeddings        OpenAI embeddings
//	POST /v1/messages          Anthropic messages, streamed or not
//	POST /openai/deployments/{deployment}/chat/completions?api-version=V
//	POST /openai/deployments/{deployment}/embeddings?api-version=V
//	                           Azure OpenAI, with its api-key header
//	GET  /healthz              200 "ok"
//
// and the batch APIs:
//
//	POST   /v1/files                           upload a batch input file (multipart)
//	GET    /v1/files                           list files
//	GET    /v1/files/{id}                      a file's metadata
//	DELETE /v1/files/{id}                      delete a file
//	GET    /v1/files/{id}/content              a file's content
//	POST   /v1/batches                         create an OpenAI batch
//	GET    /v1/batches                         list batches (after, limit)
//	GET    /v1/batches/{id}                    retrieve a batch
//	POST   /v1/batches/{id}/cancel             cancel a batch
//	POST   /v1/messages/batches                create an Anthropic message batch
//	GET    /v1/messages/batches                list message batches (after_id, before_id, limit)
//	GET    /v1/messages/batches/{id}           retrieve a message batch
//	DELETE /v1/messages/batches/{id}           delete an ended message batch
//	GET    /v1/messages/batches/{id}/results   the results, as JSONL
//	POST   /v1/messages/batches/{id}/cancel    cancel a message batch
//
// It can be mounted in another server; Close still ends its waits.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on the TCP address addr, such as "127.0.0.1:0" for a free
// port, and serves the Handler in the background until Close. It returns
// the base URL of the server, such as "http://127.0.0.1:40213", to which
// clients append "/v1/...".
func (s *Server) Start(addr string) (baseURL string, err error) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	switch {
	case s.closed:
		return "", ErrClosed
	case s.http != nil:
		return "", ErrStarted
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv, done := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}, make(chan struct{})
	s.http, s.serveDone = srv, done
	go func() {
		defer close(done)
		srv.Serve(ln) // returns ErrServerClosed after Close
	}()
	return "http://" + ln.Addr().String(), nil
}

// shutdownGrace bounds how long Close waits for responses in progress.
// Every wait of the server ends when Close begins, so only a client that
// stops reading a response can hold Close this long.
const shutdownGrace = 5 * time.Second

// Close ends every pending delay (slow faults, latency), stops accepting
// connections, waits briefly for responses in progress and closes all
// connections. When it returns no goroutine of the server is left. Close
// is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = s.http.Close()
	}
	<-s.serveDone
	return err
}

// pause waits for d, or less if the request ends or the server closes, and
// reports whether the whole delay passed.
func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if s.pauseHook != nil {
		s.pauseHook()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// Stats is a snapshot of what a Server has seen. Only requests to the API
// endpoints (OpenAI's, Anthropic's and Azure's) are counted.
type Stats struct {
	// Requests is the number of requests received.
	Requests int64

	// ByStatus counts responses by HTTP status. A response cut short by a
	// truncation fault counts under the status it started with.
	ByStatus map[int]int64

	// Resets counts connections closed without a response by a reset
	// fault; Abandoned counts requests that ended without a response
	// because the client went away or the server closed during a delay.
	Resets    int64
	Abandoned int64

	// RateLimited counts the 429 responses sent because a rate-limit
	// bucket lacked the request's cost; injected 429s and quota refusals
	// are not included (ByStatus[429] counts every 429).
	RateLimited int64

	// Admitted and TokensAdmitted count the requests the rate limiter
	// admitted and the tokens charged for them at admission.
	Admitted       int64
	TokensAdmitted int64

	// InFlight is the number of requests being handled now, and
	// MaxInFlight the largest number handled at once so far: the
	// concurrency that clients achieved.
	InFlight    int
	MaxInFlight int

	// ByKey breaks the counts down by API key, for requests whose key was
	// accepted. Its map keys are the API keys themselves, so a Stats
	// value must not be logged where the keys are secret.
	ByKey map[string]KeyStats

	// Batches counts what the batch APIs were asked to do.
	Batches BatchStats
}

// KeyStats are the counts of one API key; each field means what the Stats
// field of the same name means.
type KeyStats struct {
	Requests       int64
	Admitted       int64
	RateLimited    int64
	TokensAdmitted int64
}

// Stats returns a snapshot of the server's counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = maps.Clone(s.stats.ByStatus)
	st.ByKey = maps.Clone(s.stats.ByKey)
	return st
}

// Arrivals returns the arrival times of the most recent requests to the
// API endpoints, at most MaxArrivals, oldest first. With MaxBurst a test
// can check that a client never sent more than its rate allows.
func (s *Server) Arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.arrivals) < MaxArrivals {
		return slices.Clone(s.arrivals)
	}
	return append(slices.Clone(s.arrivals[s.arrNext:]), s.arrivals[:s.arrNext]...)
}

// MaxBurst returns the largest number of the times, which must be sorted,
// that fall within any half-open interval [t, t+window).
func MaxBurst(times []time.Time, window time.Duration) int {
	best, lo := 0, 0
	for hi, t := range times {
		for !times[lo].Add(window).After(t) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// arrive records the arrival of a request and returns the function that
// records its end.
func (s *Server) arrive() (done func()) {
	s.mu.Lock()
	now := s.now()
	if len(s.arrivals) < MaxArrivals {
		s.arrivals = append(s.arrivals, now)
	} else {
		s.arrivals[s.arrNext] = now
		s.arrNext = (s.arrNext + 1) % MaxArrivals
	}
	s.stats.Requests++
	s.stats.InFlight++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.stats.InFlight)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.stats.InFlight--
		s.mu.Unlock()
	}
}

// nextID returns a new sequence number for response and request IDs.
func (s *Server) nextID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// SetFaults makes the requests of key meet faults at the rates f gives,
// from now on, in place of Config.Faults; key "" sets the rates of every
// key that has none of its own. The zero Faults means none. A test turns
// one key's (one deployment's) faults on half-way through a run, and off
// again, with it. It returns a *messages.ConfigError, naming the field,
// for rates out of range.
func (s *Server) SetFaults(key string, f Faults) error {
	if err := f.validate("Faults."); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		s.faults = f
		return nil
	}
	if s.keyFault == nil {
		s.keyFault = map[string]Faults{}
	}
	s.keyFault[key] = f
	return nil
}

// chooseFault returns the fault for a request of key: the forced one of
// its hooks, within their HeaderFaultTimes, or else a seeded random draw
// at the key's rates (SetFaults).
func (s *Server) chooseFault(h hooks, key string) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.fault != faultNone {
		if h.times > 0 && h.requestID != "" {
			s.attempts[h.requestID]++
			if s.attempts[h.requestID] > h.times {
				return faultNone
			}
		}
		return h.fault
	}
	rates, own := s.keyFault[key]
	if !own {
		rates = s.faults
	}
	x := s.rng.Float64()
	for _, f := range rates.rates() {
		if x < f.rate {
			return f.kind
		}
		x -= f.rate
	}
	return faultNone
}

// latency returns the delay before an admitted response.
func (s *Server) latency(h hooks) time.Duration {
	if h.hasLatency {
		return h.latency
	}
	if s.cfg.LatencyJitter == 0 {
		return s.cfg.Latency
	}
	s.mu.Lock()
	x := s.rng.Float64()*2 - 1
	s.mu.Unlock()
	return s.cfg.Latency + time.Duration(x*float64(s.cfg.LatencyJitter))
}

// admit asks the buckets of key's deployment ("" but on Azure, which
// limits each deployment apart) for a request of cost tokens and updates
// the counts.
func (s *Server) admit(key, deployment string, cost int) admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.keyLimits(limitsKey(key, deployment)).admit(cost, s.now())
	ks := s.stats.ByKey[key]
	if a.ok {
		s.stats.Admitted++
		s.stats.TokensAdmitted += int64(cost)
		ks.Admitted++
		ks.TokensAdmitted += int64(cost)
	} else {
		s.stats.RateLimited++
		ks.RateLimited++
	}
	s.stats.ByKey[key] = ks
	return a
}

// peek returns the state of the limits of key's deployment without
// charging anything.
func (s *Server) peek(key, deployment string) limitState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keyLimits(limitsKey(key, deployment)).peek(s.now())
}

// limitsKey names the buckets of a key's deployment.
func limitsKey(key, deployment string) string {
	if deployment == "" {
		return key
	}
	return key + "\x00azure-deployment:" + deployment
}

// keyLimits returns the buckets of key, creating them full. s.mu is held.
func (s *Server) keyLimits(key string) *keyLimits {
	k := s.limits[key]
	if k == nil {
		now := s.now()
		l := Limits{RequestsPerMinute: s.cfg.RequestsPerMinute, TokensPerMinute: s.cfg.TokensPerMinute,
			RequestBurst: s.cfg.RequestBurst, TokenBurst: s.cfg.TokenBurst}
		apiKey, _, _ := strings.Cut(key, "\x00")
		if own, ok := s.cfg.KeyLimits[apiKey]; ok {
			l = own
		}
		k = &keyLimits{
			requests: newBucket(l.RequestsPerMinute, l.RequestBurst, now),
			tokens:   newBucket(l.TokensPerMinute, l.TokenBurst, now),
		}
		s.limits[key] = k
	}
	return k
}

// countKey counts an accepted request of key.
func (s *Server) countKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.stats.ByKey[key]
	ks.Requests++
	s.stats.ByKey[key] = ks
}

// countEnd records how a request ended.
func (s *Server) countEnd(status int, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case reset:
		s.stats.Resets++
	case status == 0:
		s.stats.Abandoned++
	default:
		s.stats.ByStatus[status]++
	}
}
