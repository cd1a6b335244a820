package imodel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
)

// decodeFunc turns a success body into the call's value and usage.
type decodeFunc func(p Provider, body []byte) (value any, usage *messages.Usage, err error)

// httpCall is one model request as the executor runs it: each attempt sends
// the same request anew.
type httpCall struct {
	m      *Model
	method string
	url    string
	header http.Header
	body   []byte
	decode decodeFunc
	// secrets are scrubbed from the call's log lines, as from its snapshots.
	secrets []string
	// cacheKey, with a cache, is the key the reply is stored under;
	// cacheServe says the request may be answered from the cache.
	cacheKey   string
	cacheServe bool
}

// Do implements messages.Call.
func (c *httpCall) Do(ctx context.Context, attempt int) (messages.Result, error) {
	resp, err := c.send(ctx)
	if err != nil {
		return messages.Result{}, err
	}
	defer resp.Body.Close()
	body, err := readCapped(resp.Body, c.m.cfg.MaxResponseBytes)
	c.m.observe(resp.Header)
	res := messages.Result{StatusCode: resp.StatusCode, Header: resp.Header}
	if err != nil {
		c.logAttempt(attempt, resp.StatusCode, err)
		if errors.Is(err, ErrResponseTooLarge) {
			return res, transportError(c.m.cfg.Provider, ErrResponseTooLarge, err)
		}
		return res, droppedBody(c.m.cfg.Provider, resp.Header, err)
	}
	res, err = c.m.read(res, body, c.decode)
	if err == nil {
		c.store(resp.StatusCode, body)
	}
	c.logAttempt(attempt, resp.StatusCode, err)
	return res, err
}

// read reads a response's body into res, which holds its status and
// header, as a call concludes from it: an error status is the provider's
// error, a success body is decoded for its value and usage.
func (m *Model) read(res messages.Result, body []byte, decode decodeFunc) (messages.Result, error) {
	res.Body = body
	if res.StatusCode >= 400 {
		return res, statusError(m.cfg.Provider, res.StatusCode, res.Header, body, time.Now())
	}
	value, usage, err := decode(m.cfg.Provider, body)
	if err != nil {
		return res, malformed(m.cfg.Provider, res.StatusCode, "%v", err)
	}
	res.Value, res.Usage = value, usage
	return res, nil
}

// send makes one HTTP request with ctx.
func (c *httpCall) send(ctx context.Context) (*http.Response, error) {
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", messages.ErrInvalidRequest, err)
	}
	req.Header = c.header.Clone()
	resp, err := c.m.client.Do(req)
	if err != nil {
		c.m.counts.errors.Add(1)
		return nil, transportError(c.m.cfg.Provider, ErrConnection, err)
	}
	c.m.counts.add(resp.StatusCode)
	return resp, nil
}

// observe reacts to a response's rate-limit headers: when the provider's
// budget is nearly spent, the executor pauses until it has refilled.
func (m *Model) observe(h http.Header) {
	if !m.adaptive {
		return
	}
	now := time.Now()
	rl, ok := parseRateLimit(m.cfg.Provider, h, now)
	if !ok {
		return
	}
	if until := pauseFor(rl, now); !until.IsZero() {
		m.logger.Debug("imodel: provider budget low; pausing", slog.String("model", m.cfg.Name), slog.Time("until", until))
		m.ex.PauseUntil(until)
	}
}

func (c *httpCall) logAttempt(attempt, status int, err error) {
	m := c.m
	if !m.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{slog.String("model", m.cfg.Name), slog.Int("attempt", attempt), slog.Int("status", status)}
	if err != nil {
		attrs = append(attrs, slog.String("error", messages.Scrub(err.Error(), c.secrets)))
	}
	m.logger.Debug("imodel: attempt", attrs...)
}

// readCapped reads all of r, failing with ErrResponseTooLarge past limit.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
	}
	return b, nil
}

// usageFields reads either provider's usage object.
type usageFields struct {
	Usage *struct {
		wire.Usage
		wire.AnthropicUsage
	} `json:"usage"`
}

func (u usageFields) usage() *messages.Usage {
	if u.Usage == nil {
		return nil
	}
	o, a := openAIUsage(&u.Usage.Usage), anthropicUsage(u.Usage.AnthropicUsage)
	out := messages.Usage{
		InputTokens: o.InputTokens + a.InputTokens, OutputTokens: o.OutputTokens + a.OutputTokens,
		CachedInputTokens: o.CachedInputTokens + a.CachedInputTokens, CacheWriteTokens: a.CacheWriteTokens,
		ReasoningTokens: o.ReasoningTokens, TotalTokens: u.Usage.TotalTokens,
	}
	if out.TotalTokens == 0 {
		out.TotalTokens = out.InputTokens + out.OutputTokens
	}
	return &out
}

// openAIUsage reads OpenAI's usage: its prompt tokens include the cached
// ones and its completion tokens the reasoning ones, as messages.Usage
// counts them.
func openAIUsage(u *wire.Usage) messages.Usage {
	out := messages.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedInputTokens = d.CachedTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = d.ReasoningTokens
	}
	return out
}

// anthropicUsage reads Anthropic's usage, whose input tokens leave out
// those read from and written to the prompt cache: messages.Usage counts
// them in InputTokens, as the request's input.
func anthropicUsage(u wire.AnthropicUsage) messages.Usage {
	out := messages.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
	if u.CacheReadInputTokens != nil {
		out.CachedInputTokens = *u.CacheReadInputTokens
	}
	if u.CacheCreationInputTokens != nil {
		out.CacheWriteTokens = *u.CacheCreationInputTokens
	}
	out.InputTokens += out.CachedInputTokens + out.CacheWriteTokens
	out.TotalTokens = out.InputTokens + out.OutputTokens
	return out
}

// decodeGeneric accepts any JSON body and reads a usage object if there is
// one; the caller decodes the body itself (Response.Decode).
func decodeGeneric(_ Provider, body []byte) (any, *messages.Usage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, nil
	}
	if !json.Valid(body) {
		return nil, nil, errors.New("body is not valid JSON")
	}
	var u usageFields
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		if err := json.Unmarshal(body, &u); err != nil {
			return nil, nil, err
		}
	}
	return nil, u.usage(), nil
}
