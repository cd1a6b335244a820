package simulator

import (
	"bytes"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
)

func TestChatCompletion(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 60, TokensPerMinute: 1000})
	r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o-mini", "hello world", nil)})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	resp := decode[wire.ChatResponse](t, r)
	if resp.Object != wire.ObjectChatCompletion || resp.Model != "gpt-4o-mini" || !strings.HasPrefix(resp.ID, "chatcmpl-") {
		t.Errorf("object %q, model %q, id %q", resp.Object, resp.Model, resp.ID)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(resp.Choices))
	}
	ch := resp.Choices[0]
	text := ch.Message.Content.String()
	if ch.Message.Role != "assistant" || ch.FinishReason != "stop" || !strings.HasPrefix(text, "Lorem") || !strings.HasSuffix(text, ".") {
		t.Errorf("choice: role %q, finish %q, text %q", ch.Message.Role, ch.FinishReason, text)
	}
	// prompt: 2 + 4 + tokens("user") 1 + tokens("hello world") 2
	want := wire.Usage{PromptTokens: 9, CompletionTokens: DefaultCompletionTokens, TotalTokens: 9 + DefaultCompletionTokens}
	if resp.Usage == nil || *resp.Usage != want {
		t.Errorf("usage %+v, want %+v", resp.Usage, want)
	}
	if n := tokens.ForModel("gpt-4o-mini").Count(text); n != DefaultCompletionTokens {
		t.Errorf("reply %q is %d tokens, want %d", text, n, DefaultCompletionTokens)
	}
	// Charged 1 request and 9 + DefaultMaxTokens tokens; the buckets
	// refill at 1 request and 1000/60 tokens per second.
	cost := 9 + tokens.DefaultMaxTokens
	wantHeaders := map[string]string{
		"x-ratelimit-limit-requests":     "60",
		"x-ratelimit-remaining-requests": "59",
		"x-ratelimit-reset-requests":     "1s",
		"x-ratelimit-limit-tokens":       "1000",
		"x-ratelimit-remaining-tokens":   "735",
		"x-ratelimit-reset-tokens":       "15.9s",
		"content-type":                   "application/json",
		"x-request-id":                   "req_sim000000000001",
	}
	for k, v := range wantHeaders {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	st := ts.Stats()
	if st.Requests != 1 || st.Admitted != 1 || st.TokensAdmitted != int64(cost) || st.ByStatus[200] != 1 {
		t.Errorf("stats %+v", st)
	}
	if ks := st.ByKey["sk-test"]; ks != (KeyStats{Requests: 1, Admitted: 1, TokensAdmitted: int64(cost)}) {
		t.Errorf("key stats %+v", ks)
	}
}

func TestChatMaxTokensAndChoices(t *testing.T) {
	ts := start(t, Config{CompletionTokens: 12})
	cases := []struct {
		name        string
		extra       map[string]any
		choices     int
		length      int
		finish      string
		tokensAdded int64
	}{
		{"max_tokens below the reply", map[string]any{"max_tokens": 5}, 1, 5, "length", 9 + 5},
		{"max_completion_tokens wins", map[string]any{"max_tokens": 50, "max_completion_tokens": 1}, 1, 1, "length", 9 + 1},
		{"max_tokens above the reply", map[string]any{"max_tokens": 100}, 1, 12, "stop", 9 + 100},
		{"n choices", map[string]any{"n": 3, "max_tokens": 20}, 3, 12, "stop", 9 + 3*20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.Stats().TokensAdmitted
			r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hello world", tc.extra)})
			resp := decode[wire.ChatResponse](t, r)
			if len(resp.Choices) != tc.choices {
				t.Fatalf("%d choices, want %d", len(resp.Choices), tc.choices)
			}
			texts := map[string]bool{}
			for i, ch := range resp.Choices {
				text := ch.Message.Content.String()
				texts[text] = true
				if n := tokens.ForModel("gpt-4o").Count(text); n != tc.length || ch.FinishReason != tc.finish || ch.Index != i {
					t.Errorf("choice %d: %d tokens (%q), finish %q; want %d, %q", ch.Index, n, text, ch.FinishReason, tc.length, tc.finish)
				}
			}
			if tc.choices > 1 && len(texts) != tc.choices {
				t.Errorf("choices repeat: %v", texts)
			}
			if resp.Usage.CompletionTokens != tc.choices*tc.length {
				t.Errorf("completion tokens %d, want %d", resp.Usage.CompletionTokens, tc.choices*tc.length)
			}
			if got := ts.Stats().TokensAdmitted - before; got != tc.tokensAdded {
				t.Errorf("charged %d tokens, want %d", got, tc.tokensAdded)
			}
		})
	}
}

func TestChatPromptCountsNamesAndImages(t *testing.T) {
	ts := start(t, Config{})
	body := map[string]any{
		"model": "gpt-4o",
		"messages": []any{
			map[string]any{"role": "system", "content": "You are a helpful assistant."},
			map[string]any{"role": "user", "name": "alice", "content": []any{
				map[string]any{"type": "text", "text": "What is the capital of France?"},
				map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://example.com/a.png"}},
			}},
		},
	}
	resp := decode[wire.ChatResponse](t, ts.do(request{path: "/v1/chat/completions", body: body}))
	if want := 25 + tokens.ImageTokens; resp.Usage.PromptTokens != want {
		t.Errorf("prompt tokens %d, want %d", resp.Usage.PromptTokens, want)
	}
}

// streamEvents reads the events of a stream body.
func streamEvents(t *testing.T, body []byte) ([]wire.SSEEvent, error) {
	t.Helper()
	var evs []wire.SSEEvent
	for ev, err := range wire.Events(bytes.NewReader(body)) {
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

func TestChatStream(t *testing.T) {
	ts := start(t, Config{CompletionTokens: 6, RequestsPerMinute: 10})
	for _, includeUsage := range []bool{false, true} {
		extra := map[string]any{"stream": true}
		if includeUsage {
			extra["stream_options"] = map[string]any{"include_usage": true}
		}
		r := ts.do(request{path: "/v1/chat/completions", body: chatBody("gpt-4o", "hello world", extra)})
		if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("status %d, content type %q", r.status, r.header.Get("Content-Type"))
		}
		if r.header.Get("x-ratelimit-remaining-requests") == "" {
			t.Error("stream without rate-limit headers")
		}
		evs, err := streamEvents(t, r.body)
		if err != nil {
			t.Fatal(err)
		}
		if last := evs[len(evs)-1]; last.Data != wire.StreamDone {
			t.Fatalf("last event %q, want [DONE]", last.Data)
		}
		var text strings.Builder
		var finish []string
		var usage *wire.Usage
		for i, ev := range evs[:len(evs)-1] {
			c := decode[wire.ChatChunk](t, response{body: []byte(ev.Data)})
			if c.Object != wire.ObjectChatCompletionChunk || ev.Event != "" {
				t.Errorf("event %d: object %q, event name %q", i, c.Object, ev.Event)
			}
			if i == 0 && (len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant") {
				t.Errorf("first chunk %s lacks the role", ev.Data)
			}
			for _, ch := range c.Choices {
				text.WriteString(ch.Delta.Content)
				if ch.FinishReason != nil {
					finish = append(finish, *ch.FinishReason)
				}
			}
			if c.Usage != nil {
				if len(c.Choices) != 0 || i != len(evs)-2 {
					t.Errorf("usage in chunk %d with %d choices", i, len(c.Choices))
				}
				usage = c.Usage
			}
		}
		if !slices.Equal(finish, []string{"stop"}) {
			t.Errorf("finish reasons %v", finish)
		}
		if n := tokens.ForModel("gpt-4o").Count(text.String()); n != 6 {
			t.Errorf("streamed text %q is %d tokens, want 6", text.String(), n)
		}
		// Each token is one chunk: role, 6 pieces, finish, [usage], [DONE].
		if want := 1 + 6 + 1 + 1; len(evs) != want+boolInt(includeUsage) {
			t.Errorf("%d events, want %d", len(evs), want+boolInt(includeUsage))
		}
		if includeUsage != (usage != nil) {
			t.Fatalf("include_usage %v, usage %+v", includeUsage, usage)
		}
		if usage != nil && *usage != (wire.Usage{PromptTokens: 9, CompletionTokens: 6, TotalTokens: 15}) {
			t.Errorf("usage %+v", usage)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestEmbeddings(t *testing.T) {
	ts := start(t, Config{Seed: 7})
	embed := func(body map[string]any) wire.EmbeddingResponse {
		t.Helper()
		r := ts.do(request{path: "/v1/embeddings", body: body})
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return decode[wire.EmbeddingResponse](t, r)
	}
	resp := embed(map[string]any{"model": "text-embedding-3-small", "input": []string{"hello world", "tiktoken is great!", "hello world"}})
	if resp.Object != wire.ObjectList || resp.Model != "text-embedding-3-small" || len(resp.Data) != 3 {
		t.Fatalf("response %+v", resp)
	}
	if want := (wire.EmbeddingUsage{PromptTokens: 2 + 6 + 2, TotalTokens: 10}); resp.Usage != want {
		t.Errorf("usage %+v, want %+v", resp.Usage, want)
	}
	for i, e := range resp.Data {
		var norm float64
		for _, x := range e.Embedding {
			norm += x * x
		}
		if e.Index != i || e.Object != wire.ObjectEmbedding || len(e.Embedding) != DefaultEmbeddingDims || math.Abs(norm-1) > 1e-9 {
			t.Errorf("embedding %d: index %d, object %q, %d dims, norm %v", i, e.Index, e.Object, len(e.Embedding), norm)
		}
	}
	if !slices.Equal(resp.Data[0].Embedding, resp.Data[2].Embedding) || slices.Equal(resp.Data[0].Embedding, resp.Data[1].Embedding) {
		t.Error("equal inputs must embed equally and different ones differently")
	}
	again := embed(map[string]any{"model": "text-embedding-3-small", "input": "hello world"})
	if !slices.Equal(again.Data[0].Embedding, resp.Data[0].Embedding) {
		t.Error("embedding of one text changed between requests")
	}

	wide := embed(map[string]any{"model": "text-embedding-3-small", "input": "hello world", "dimensions": 32})
	if len(wide.Data[0].Embedding) != 32 {
		t.Errorf("%d dims, want the 32 asked for", len(wide.Data[0].Embedding))
	}
	ids := embed(map[string]any{"model": "text-embedding-3-small", "input": [][]int{{1, 2, 3}, {4}}})
	if len(ids.Data) != 2 || ids.Usage.PromptTokens != 4 {
		t.Errorf("token-id inputs: %d embeddings, %d tokens; want 2 and 4", len(ids.Data), ids.Usage.PromptTokens)
	}
	if st := ts.Stats(); st.TokensAdmitted != 10+2+2+4 {
		t.Errorf("tokens admitted %d, want 18", st.TokensAdmitted)
	}
}

func TestMessages(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 50, TokensPerMinute: 6000})
	body := messagesBody("claude-sonnet-4-5", "hello world", 100, map[string]any{"system": "You are a helpful assistant."})
	r := ts.do(request{path: "/v1/messages", body: body})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	resp := decode[wire.MessagesResponse](t, r)
	if resp.Type != wire.TypeMessage || resp.Role != "assistant" || !strings.HasPrefix(resp.ID, "msg_") || resp.Model != "claude-sonnet-4-5" {
		t.Errorf("response %+v", resp)
	}
	if len(resp.Content) != 1 || resp.Content[0].Type != wire.BlockText || resp.StopReason == nil || *resp.StopReason != "end_turn" {
		t.Fatalf("content %+v, stop %v", resp.Content, resp.StopReason)
	}
	// input: 2 + (4 + 1 + 6) for the system prompt + (4 + 1 + 2)
	if want := (wire.AnthropicUsage{InputTokens: 20, OutputTokens: DefaultCompletionTokens}); resp.Usage != want {
		t.Errorf("usage %+v, want %+v", resp.Usage, want)
	}
	if r.header.Get("request-id") == "" {
		t.Error("no request-id header")
	}
	wantHeaders := map[string]string{
		"anthropic-ratelimit-requests-limit":     "50",
		"anthropic-ratelimit-requests-remaining": "49",
		"anthropic-ratelimit-tokens-limit":       "6000",
		"anthropic-ratelimit-tokens-remaining":   "5880",
	}
	for k, v := range wantHeaders {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	rl, err := wire.ParseAnthropicRateLimit(r.header, ts.now())
	if err != nil || !rl.Requests.HasReset || !rl.Tokens.HasReset {
		t.Errorf("reset headers do not parse: %v %+v", err, rl)
	}

	short := decode[wire.MessagesResponse](t, ts.do(request{path: "/v1/messages", body: messagesBody("claude-sonnet-4-5", "hello world", 3, nil)}))
	if *short.StopReason != "max_tokens" || short.Usage.OutputTokens != 3 {
		t.Errorf("max_tokens 3: stop %q, output %d", *short.StopReason, short.Usage.OutputTokens)
	}
}

func TestMessagesStream(t *testing.T) {
	ts := start(t, Config{CompletionTokens: 4})
	r := ts.do(request{path: "/v1/messages", body: messagesBody("claude-haiku-4-5", "hello world", 100, map[string]any{"stream": true})})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	evs, err := streamEvents(t, r.body)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var text strings.Builder
	for _, ev := range evs {
		names = append(names, ev.Event)
		e := decode[wire.AnthropicStreamEvent](t, response{body: []byte(ev.Data)})
		if e.Type != ev.Event {
			t.Errorf("event %q carries type %q", ev.Event, e.Type)
		}
		switch e.Type {
		case wire.EventMessageStart:
			if e.Message.Usage.InputTokens != 9 || len(e.Message.Content) != 0 || e.Message.StopReason != nil {
				t.Errorf("message_start %s", ev.Data)
			}
		case wire.EventContentBlockDelta:
			if e.Delta.Type != wire.DeltaText {
				t.Errorf("delta %s", ev.Data)
			}
			text.WriteString(e.Delta.Text)
		case wire.EventMessageDelta:
			// Only the count that changed: a client sets each count sent
			// over message_start's.
			if *e.Delta.StopReason != "end_turn" || e.Usage.OutputTokens != 4 || e.Usage.InputTokens != nil || strings.Contains(ev.Data, "input_tokens") {
				t.Errorf("message_delta %s", ev.Data)
			}
		}
	}
	want := []string{"message_start", "content_block_start", "ping",
		"content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta",
		"content_block_stop", "message_delta", "message_stop"}
	if !slices.Equal(names, want) {
		t.Errorf("events %v, want %v", names, want)
	}
	if n := tokens.ForModel("claude-haiku-4-5").Count(text.String()); n != 4 {
		t.Errorf("streamed %q, %d tokens", text.String(), n)
	}
}

func TestHealthz(t *testing.T) {
	ts := start(t, Config{})
	resp, err := ts.client.Get(ts.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if st := ts.Stats(); st.Requests != 0 {
		t.Errorf("health checks counted as API requests: %d", st.Requests)
	}
}
