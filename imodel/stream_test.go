package imodel

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// readAll collects a stream's chunks.
func readAll(s *Stream) []string {
	var out []string
	for c := range s.Chunks() {
		out = append(out, c)
	}
	return out
}

func TestStream(t *testing.T) {
	log := &eventLog{}
	e, _, oa, an := setup(t, simulator.Config{}, func(c *runtime.Config) { c.Observer = log.observe })
	req := ChatRequest{System: "Stream, please.", Messages: []Message{{Role: "user", Content: "Tell me something."}}, MaxTokens: 12}
	for _, m := range []*Model{oa, an} {
		t.Run(string(m.Provider()), func(t *testing.T) {
			plain, err := m.Chat(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.Stream(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			chunks := readAll(s)
			resp, err := s.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// One chunk per token, the same reply as without streaming.
			if len(chunks) != 12 || strings.Join(chunks, "") != resp.Text || resp.Text != plain.Text {
				t.Errorf("chunks %q, text %q, unstreamed %q", chunks, resp.Text, plain.Text)
			}
			if resp.Usage != plain.Usage || resp.FinishReason != plain.FinishReason || resp.Model != m.cfg.Model || resp.ID == "" {
				t.Errorf("reply %+v, unstreamed %+v", resp, plain)
			}
			ev := resp.Event
			if ev.Tokens != plain.Event.Tokens || s.Handle().ID() != ev.ID {
				t.Errorf("tokens %+v, unstreamed %+v", ev.Tokens, plain.Event.Tokens)
			}
			checkSnapshots(t, log.of(ev), wantLifecycle)

			body := e.Last(t).Fields(t)
			if body["stream"] != true {
				t.Errorf("body %v", body)
			}
			if m.Provider() == OpenAI {
				if so, _ := body["stream_options"].(map[string]any); so["include_usage"] != true {
					t.Errorf("stream_options %v", body["stream_options"])
				}
				if msgs := body["messages"].([]any); len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" {
					t.Errorf("messages %v", msgs)
				}
			} else {
				if _, ok := body["stream_options"]; ok || body["system"] != "Stream, please." || body["max_tokens"] != 12.0 {
					t.Errorf("body %v", body)
				}
			}
			// Reading after the end still yields every chunk.
			if again := readAll(s); !slices.Equal(again, chunks) {
				t.Errorf("second read %q", again)
			}
		})
	}
}

func TestStreamRetriedBeforeFirstChunk(t *testing.T) {
	_, _, oa, an := setup(t, simulator.Config{}, nil)
	for _, m := range []*Model{oa, an} {
		faults := []string{"503", "reset"}
		if m == oa {
			faults = append(faults, "429") // Anthropic's retry-after is a second at least
		}
		for _, f := range faults {
			id := "stream-" + string(m.Provider()) + "-" + f
			s, err := m.Stream(ctx, hello("retry", 6), fault(f, 1, id)...)
			if err != nil {
				t.Fatal(err)
			}
			chunks := readAll(s)
			resp, err := s.Wait(ctx)
			if err != nil || resp.Event.Attempt != 2 || resp.Event.Status != messages.StatusCompleted {
				t.Errorf("%s: %v after %d attempts: %v", id, resp.Event.Status, resp.Event.Attempt, err)
				continue
			}
			// The failed attempt sent nothing, so nothing is repeated.
			if len(chunks) != 6 || strings.Join(chunks, "") != resp.Text {
				t.Errorf("%s: chunks %q, text %q", id, chunks, resp.Text)
			}
		}
	}
}

func TestStreamBrokenKeepsPartialText(t *testing.T) {
	e, _, oa, an := setup(t, simulator.Config{}, nil)
	for _, m := range []*Model{oa, an} {
		full, err := m.Chat(ctx, hello("break", 10))
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Stream(ctx, hello("break", 10), fault("truncate", 0, "")...)
		if err != nil {
			t.Fatal(err)
		}
		chunks := readAll(s)
		resp, err := s.Wait(ctx)
		checkFailed(t, resp.Event, err, ErrStreamBroken, "stream_broken", 1)
		partial := strings.Join(chunks, "")
		if len(chunks) == 0 || resp.Text != partial || len(partial) >= len(full.Text) || !strings.HasPrefix(full.Text, partial) {
			t.Errorf("%s: partial %q of %q, Wait gave %q", m.Provider(), partial, full.Text, resp.Text)
		}
		if r, ok := resp.Event.Response(); !ok || r.StatusCode != 200 {
			t.Errorf("%s: response %+v", m.Provider(), r)
		}
	}
	// One attempt each, although attempts were left: text had been sent.
	if n := e.Stats().Requests; n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestStreamFailures(t *testing.T) {
	e, ex, oa, an := setup(t, simulator.Config{}, nil)
	for _, m := range []*Model{oa, an} {
		// A malformed first event: nothing was sent; not retried.
		s, err := m.Stream(ctx, hello("x", 4), fault("malformed", 0, "")...)
		if err != nil {
			t.Fatal(err)
		}
		if chunks := readAll(s); len(chunks) != 0 {
			t.Errorf("chunks %q", chunks)
		}
		resp, err := s.Wait(ctx)
		checkFailed(t, resp.Event, err, ErrMalformedResponse, "malformed_response", 1)

		// An error status is read as for a plain call.
		s, err = m.Stream(ctx, hello("x", 4), fault("quota", 0, "")...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = s.Wait(ctx)
		checkFailed(t, resp.Event, err, ErrQuotaExhausted, "quota_exhausted", 1)

		// A connection that fails on every attempt.
		s, err = m.Stream(ctx, hello("x", 4), fault("reset", 0, "")...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = s.Wait(ctx)
		checkFailed(t, resp.Event, err, ErrConnection, "connection", fastAttempts)
	}

	// A stream larger than the cap.
	cfg := openAIConfig(e)
	cfg.MaxResponseBytes = 300
	small := newModel(t, ex, cfg)
	s, err := small.Stream(ctx, hello("x", 16))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Wait(ctx)
	checkFailed(t, resp.Event, err, ErrResponseTooLarge, "response_too_large", 1)
}

func TestStreamErrorEvent(t *testing.T) {
	// Anthropic reports an error inside a stream that has begun.
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"))
		w.Write([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: Anthropic, BaseURL: ts.URL, APIKey: testAntKey, Model: "m", MaxAttempts: 1})
	s, err := m.Stream(ctx, hello("x", 4))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Wait(ctx)
	checkFailed(t, resp.Event, err, ErrServer, "server", 1)
	if api := apiError(t, err); api.Type != "overloaded_error" || api.Message != "Overloaded" || api.StatusCode != 200 {
		t.Errorf("APIError %+v", api)
	}

	// An OpenAI stream that ends without [DONE] and without text.
	ts2 := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}\n\n"))
	})
	m2 := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: ts2.URL, APIKey: testKey, Model: "m", MaxAttempts: 1})
	s, err = m2.Stream(ctx, hello("x", 4))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = s.Wait(ctx)
	checkFailed(t, resp.Event, err, ErrConnection, "connection", 1)
	if resp.Text != "" {
		t.Errorf("text %q from another choice", resp.Text)
	}
}

// TestStreamShouldRetryFalse checks that a stream cut before its first
// chunk, retried as a broken connection, is not retried when the provider
// said x-should-retry: false.
func TestStreamShouldRetryFalse(t *testing.T) {
	var calls atomic.Int32
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		if r.Header.Get("X-Case") == "false" {
			w.Header().Set("x-should-retry", "false")
		}
		w.Write([]byte("data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[]}\n\n"))
	})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: ts.URL, APIKey: testKey, Model: "m", MaxAttempts: fastAttempts, Retry: fastRetry})
	for _, tc := range []struct {
		header   string
		attempts int
	}{{"false", 1}, {"", fastAttempts}} {
		calls.Store(0)
		s, err := m.Stream(ctx, hello("x", 4), WithHeader("X-Case", tc.header))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Wait(ctx)
		checkFailed(t, resp.Event, err, ErrConnection, "connection", tc.attempts)
		if n := int(calls.Load()); n != tc.attempts {
			t.Errorf("x-should-retry %q: %d requests, want %d", tc.header, n, tc.attempts)
		}
	}
}

// TestAnthropicStreamUsageTotals checks that a message_delta's usage counts
// are read as totals: one it sends replaces message_start's, one it leaves
// out keeps it.
func TestAnthropicStreamUsageTotals(t *testing.T) {
	ts := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n"))
		w.Write([]byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"))
		delta := `{"output_tokens":2}`
		if r.Header.Get("X-Case") == "input" {
			delta = `{"input_tokens":35,"output_tokens":2}`
		}
		w.Write([]byte("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":" + delta + "}\n\n"))
		w.Write([]byte("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: Anthropic, BaseURL: ts.URL, APIKey: testAntKey, Model: "m"})
	for _, tc := range []struct {
		header string
		want   messages.Usage
	}{
		{"", messages.Usage{InputTokens: 30, OutputTokens: 2, TotalTokens: 32}},
		{"input", messages.Usage{InputTokens: 35, OutputTokens: 2, TotalTokens: 37}},
	} {
		s, err := m.Stream(ctx, hello("x", 4), WithHeader("X-Case", tc.header))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Wait(ctx)
		if err != nil || resp.Usage != tc.want || resp.Text != "Hi" {
			t.Errorf("case %q: %+v, %v; want usage %+v", tc.header, resp.Usage, err, tc.want)
		}
	}
}

func TestStreamCancel(t *testing.T) {
	e, _, oa, _ := setup(t, simulator.Config{}, nil)
	s, err := oa.Stream(ctx, hello("x", 4), WithHeader(simulator.HeaderLatency, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	// Wait gives up with its context; the stream goes on.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Wait(done); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a done context: %v", err)
	}
	readers := make(chan []string, 1)
	go func() { readers <- readAll(s) }()
	for ev := range s.Handle().Events() {
		if ev.Status == messages.StatusCalling {
			s.Cancel()
		}
	}
	resp, err := s.Wait(ctx)
	if resp.Event.Status != messages.StatusCancelled || !errors.Is(err, messages.ErrCancelled) || resp.Text != "" {
		t.Errorf("ended %v with %q: %v", resp.Event.Status, resp.Text, err)
	}
	if chunks := <-readers; len(chunks) != 0 {
		t.Errorf("a waiting reader got %q", chunks)
	}
	if n := e.Stats().Requests; n > 1 {
		t.Errorf("%d requests, want at most 1", n)
	}
}

func TestStreamSeveralReaders(t *testing.T) {
	_, _, _, an := setup(t, simulator.Config{}, nil)
	s, err := an.Stream(ctx, hello("readers", 16), WithHeader(simulator.HeaderLatency, "20ms"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var wg sync.WaitGroup
	got := make([][]string, n)
	for i := range n {
		wg.Go(func() { got[i] = readAll(s) })
	}
	// A reader that stops early leaves the others alone.
	var first []string
	for c := range s.Chunks() {
		first = append(first, c)
		break
	}
	wg.Wait()
	resp, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, chunks := range got {
		if len(chunks) != 16 || strings.Join(chunks, "") != resp.Text {
			t.Errorf("reader %d got %q, want %q", i, chunks, resp.Text)
		}
	}
	if len(first) != 1 || first[0] != got[0][0] {
		t.Errorf("the early reader got %q", first)
	}
}
