package imodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Stream is a streamed chat reply. Text arrives in chunks as the provider
// sends them; the request goes through the executor's admission (limiter,
// concurrency cap) like any other, and holds its caller until the stream
// ends. Its methods are safe for concurrent use.
type Stream struct {
	h *runtime.Handle

	mu      sync.Mutex
	chunks  []string
	changed chan struct{} // made by a waiting reader, closed on the next chunk
	ended   bool
}

// Stream starts a streamed chat request (OpenAI with stream_options
// include_usage, or Anthropic SSE). A failed attempt is retried only before
// its first chunk; a stream that breaks later ends FAILED with
// ErrStreamBroken, keeping the partial text.
func (m *Model) Stream(ctx context.Context, r ChatRequest, opts ...CallOption) (*Stream, error) {
	s := &Stream{}
	op, err := m.chatOp(r, s)
	if err != nil {
		return nil, err
	}
	h, err := m.submit(ctx, op, opts)
	if err != nil {
		return nil, err
	}
	s.h = h
	go s.closeAtEnd()
	return s, nil
}

// closeAtEnd marks the stream ended once the request has, so that readers
// waiting for more chunks return.
func (s *Stream) closeAtEnd() {
	<-s.h.Done()
	s.mu.Lock()
	s.ended = true
	ch := s.changed
	s.changed = nil
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// Handle returns the request's handle, for its snapshots.
func (s *Stream) Handle() *runtime.Handle { return s.h }

// Cancel cancels the stream's request.
func (s *Stream) Cancel() { s.h.Cancel() }

// Chunks yields the reply's text deltas as they arrive, from the first, and
// ends when the stream does (check Wait for how). Several readers may walk
// it, each from the start.
func (s *Stream) Chunks() iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; ; i++ {
			s.mu.Lock()
			for i >= len(s.chunks) && !s.ended {
				if s.changed == nil {
					s.changed = make(chan struct{})
				}
				ch := s.changed
				s.mu.Unlock()
				<-ch
				s.mu.Lock()
			}
			if i >= len(s.chunks) {
				s.mu.Unlock()
				return
			}
			c := s.chunks[i]
			s.mu.Unlock()
			if !yield(c) {
				return
			}
		}
	}
}

// Wait waits for the stream to end and returns the whole reply (the partial
// text, if the stream broke) with the request's error.
func (s *Stream) Wait(ctx context.Context) (*ChatResponse, error) {
	select {
	case <-s.h.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out, err := ChatResult(s.h.Latest())
	if out.Text == "" {
		// Cancelled, or failed without a response: the text sent so far.
		s.mu.Lock()
		out.Text = strings.Join(s.chunks, "")
		s.mu.Unlock()
	}
	return out, err
}

func (s *Stream) emit(text string) {
	s.mu.Lock()
	s.chunks = append(s.chunks, text)
	ch := s.changed
	s.changed = nil
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// streamCall is a streamed chat request as the executor runs it.
type streamCall struct {
	*httpCall
	stream *Stream
}

// Do implements messages.Call.
func (c *streamCall) Do(ctx context.Context, attempt int) (messages.Result, error) {
	p := c.m.cfg.Provider
	resp, err := c.send(ctx)
	if err != nil {
		return messages.Result{}, err
	}
	defer resp.Body.Close()
	c.m.observe(resp.Header)
	res := messages.Result{StatusCode: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode >= 400 {
		body, _ := readCapped(resp.Body, c.m.cfg.MaxResponseBytes)
		res.Body = body
		err := statusError(p, resp.StatusCode, resp.Header, body, time.Now())
		c.logAttempt(attempt, resp.StatusCode, err)
		return res, err
	}
	reply := &ChatResponse{}
	var text strings.Builder
	sent := false
	r := &cappedReader{r: resp.Body, left: c.m.cfg.MaxResponseBytes}
	done, err := c.read(r, reply, func(delta string) {
		text.WriteString(delta)
		sent = true
		c.stream.emit(delta)
	})
	reply.Text = text.String()
	res.Value = reply
	if reply.Usage.TotalTokens > 0 {
		u := reply.Usage
		res.Usage = &u
	}
	if err == nil && !done {
		err = wire.ErrTruncated
	}
	if err != nil {
		if r.exceeded {
			err = transportError(p, ErrResponseTooLarge, err)
		} else if sent {
			// Text already reached the caller: another attempt would
			// repeat it, so the request fails here with what it has.
			err = transportError(p, ErrStreamBroken, err)
		} else if _, isAPI := errors.AsType[*APIError](err); !isAPI {
			err = droppedBody(p, resp.Header, err)
		}
		c.logAttempt(attempt, resp.StatusCode, err)
		return res, err
	}
	c.logAttempt(attempt, resp.StatusCode, nil)
	return res, nil
}

// read decodes the provider's events into reply, passing each text delta to
// emit. done reports whether the stream's end marker was seen.
func (c *streamCall) read(r io.Reader, reply *ChatResponse, emit func(string)) (done bool, err error) {
	p := c.m.cfg.Provider
	var usage wire.AnthropicUsage // Anthropic's counts so far, as it sends them
	for ev, err := range wire.Events(r) {
		if err != nil {
			return false, err
		}
		if p == Anthropic {
			var e wire.AnthropicStreamEvent
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				return false, malformed(p, http.StatusOK, "stream event: %v", err)
			}
			switch e.Type {
			case "message_start":
				if e.Message != nil {
					reply.ID, reply.Model = e.Message.ID, e.Message.Model
					usage = e.Message.Usage
				}
			case "content_block_delta":
				if e.Delta != nil && e.Delta.Text != "" {
					emit(e.Delta.Text)
				}
			case "message_delta":
				if e.Delta != nil && e.Delta.StopReason != nil {
					reply.FinishReason = *e.Delta.StopReason
				}
				if d := e.Usage; d != nil {
					// Totals so far: each count sent replaces the one
					// message_start gave.
					usage.OutputTokens = d.OutputTokens
					if d.InputTokens != nil {
						usage.InputTokens = *d.InputTokens
					}
					if d.CacheReadInputTokens != nil {
						usage.CacheReadInputTokens = d.CacheReadInputTokens
					}
					if d.CacheCreationInputTokens != nil {
						usage.CacheCreationInputTokens = d.CacheCreationInputTokens
					}
				}
			case "message_stop":
				reply.Usage = anthropicUsage(usage)
				return true, nil
			case "error":
				apiErr := &APIError{Provider: p, StatusCode: http.StatusOK, kind: ErrServer}
				if e.Error != nil {
					apiErr.Type, apiErr.Message = e.Error.Type, e.Error.Message
				}
				return false, apiErr
			}
			continue
		}
		if ev.Data == "[DONE]" {
			return true, nil
		}
		var chunk wire.ChatChunk
		if err := json.Unmarshal([]byte(ev.Data), &chunk); err != nil {
			return false, malformed(p, http.StatusOK, "stream chunk: %v", err)
		}
		reply.ID, reply.Model = chunk.ID, chunk.Model
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.Delta.Content != "" {
				emit(ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				reply.FinishReason = *ch.FinishReason
			}
		}
		if chunk.Usage != nil {
			reply.Usage = openAIUsage(chunk.Usage)
		}
	}
	return false, nil
}

// cappedReader fails once more than left bytes were read.
type cappedReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.exceeded = true
		return 0, fmt.Errorf("%w: stream exceeded the cap", ErrResponseTooLarge)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
