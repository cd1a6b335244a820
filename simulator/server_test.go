package simulator

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
)

func TestStartAndClose(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if _, err := s.Start("127.0.0.1:0"); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}

	s, _ = New(Config{})
	if _, err := s.Start("127.0.0.1:-1"); err == nil {
		t.Error("Start on an invalid port succeeded")
	}
	url, err := s.Start("127.0.0.1:0")
	if err != nil || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("Start: %q, %v", url, err)
	}
	if _, err := s.Start("127.0.0.1:0"); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := (&http.Client{Transport: tr}).Get(url + "/healthz"); err == nil {
		t.Error("the server still answers after Close")
	}
}

// holdRequests returns a server whose pauses signal on the returned
// channel, and the channel.
func holdRequests(t *testing.T, cfg Config) (*testServer, <-chan struct{}) {
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{}, 64)
	s.pauseHook = func() { held <- struct{}{} }
	return startServer(t, s), held
}

func TestCloseEndsSlowRequests(t *testing.T) {
	ts, held := holdRequests(t, Config{})
	errs := make(chan error, 2)
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		go func() {
			errs <- ts.do(faulty(path, "slow", true)).err
		}()
	}
	<-held
	<-held
	if st := ts.Stats(); st.InFlight != 2 {
		t.Errorf("%d in flight, want 2", st.InFlight)
	}
	begin := time.Now()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(begin); elapsed > time.Second {
		t.Errorf("Close took %v with slow requests held; want it prompt", elapsed)
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a held request got a response although the server closed")
		}
	}
	if st := ts.Stats(); st.Abandoned != 2 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestConcurrencyObserved(t *testing.T) {
	const n = 5
	ts, held := holdRequests(t, Config{Latency: time.Hour})
	var wg sync.WaitGroup
	for i := range n {
		key := "sk-a"
		if i%2 == 1 {
			key = "sk-b"
		}
		wg.Go(func() {
			ts.do(request{path: "/v1/chat/completions", key: key, body: chatBody("gpt-4o", "hi", nil)})
		})
	}
	for range n {
		<-held
	}
	st := ts.Stats()
	if st.InFlight != n || st.MaxInFlight != n || st.Requests != n {
		t.Errorf("in flight %d, max %d, requests %d; want %d each", st.InFlight, st.MaxInFlight, st.Requests, n)
	}
	if st.ByKey["sk-a"].Requests != 3 || st.ByKey["sk-b"].Requests != 2 {
		t.Errorf("by key %+v", st.ByKey)
	}
	ts.Close()
	wg.Wait()
	if st := ts.Stats(); st.InFlight != 0 || st.MaxInFlight != n || st.Abandoned != n {
		t.Errorf("after Close: %+v", st)
	}
}

func TestSequentialRequestsAreNotConcurrent(t *testing.T) {
	ts := start(t, Config{})
	for _, stream := range []bool{false, true, false, true} {
		ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hi", map[string]any{"stream": stream})})
		ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hi", 10, map[string]any{"stream": stream})})
	}
	if st := ts.Stats(); st.MaxInFlight != 1 {
		t.Errorf("max in flight %d for one client waiting for each response, want 1", st.MaxInFlight)
	}
}

func TestArrivals(t *testing.T) {
	ts := start(t, Config{})
	begin := time.Now()
	for range 3 {
		ts.do(request{path: "/v1/embeddings", body: map[string]any{"model": "text-embedding-3-small", "input": "hi"}})
	}
	got := ts.Arrivals()
	if len(got) != 3 || !slices.IsSortedFunc(got, time.Time.Compare) || got[0].Before(begin) {
		t.Errorf("arrivals %v", got)
	}
	if b := MaxBurst(got, time.Hour); b != 3 {
		t.Errorf("MaxBurst over an hour = %d, want 3", b)
	}
}

func TestArrivalsStayBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	s, _ := New(Config{})
	s.now = clock.now
	for range MaxArrivals + 10 {
		clock.advance(time.Millisecond)
		s.arrive()()
	}
	got := s.Arrivals()
	if len(got) != MaxArrivals {
		t.Fatalf("%d arrivals kept, want %d", len(got), MaxArrivals)
	}
	if want := time.Unix(0, 0).Add(11 * time.Millisecond); !got[0].Equal(want) || !slices.IsSortedFunc(got, time.Time.Compare) {
		t.Errorf("oldest kept %v, want %v, in order", got[0], want)
	}
	if st := s.Stats(); st.Requests != MaxArrivals+10 {
		t.Errorf("requests %d", st.Requests)
	}
}

func TestMaxBurst(t *testing.T) {
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, time.Unix(0, 0).Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	cases := []struct {
		times []time.Time
		want  int
	}{
		{nil, 0},
		{at(0), 1},
		{at(0, 500, 1000, 1500), 2},       // half-open: 0 and 1000 are not within one second
		{at(0, 999, 1000, 1001, 1999), 3}, // 1999 is not within [999, 1999)
		{at(0, 999, 1000, 1001, 1998), 4},
		{at(0, 0, 0, 5000), 3},
	}
	for _, tc := range cases {
		if got := MaxBurst(tc.times, time.Second); got != tc.want {
			t.Errorf("MaxBurst(%v) = %d, want %d", tc.times, got, tc.want)
		}
	}
}

func TestHandlerWithoutHijacking(t *testing.T) {
	// Mounted behind a ResponseWriter that cannot hijack, a reset aborts
	// the response instead, which net/http turns into a dropped
	// connection.
	s, _ := New(Config{})
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set(HeaderFault, "reset")
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", r)
		}
		if st := s.Stats(); st.Resets != 1 {
			t.Errorf("resets %d, want 1", st.Resets)
		}
	}()
	s.Handler().ServeHTTP(httptest.NewRecorder(), req)
}

func TestReplyPieces(t *testing.T) {
	for _, w := range append([]string{firstWord}, words[:]...) {
		for _, model := range []string{"gpt-4o", "gpt-4"} {
			if n := tokens.ForModel(model).Count(w); n != 1 {
				t.Errorf("%q is %d tokens in %s, want 1", w, n, tokens.ForModel(model).Encoding())
			}
		}
	}
	r := seededRand(3, "x")
	for n := range 40 {
		text := strings.Join(replyPieces(r, n), "")
		for _, model := range []string{"gpt-4o", "gpt-4"} {
			if got := tokens.ForModel(model).Count(text); got != n {
				t.Errorf("reply of %d tokens %q counts %d in %s", n, text, got, model)
			}
		}
	}
}
