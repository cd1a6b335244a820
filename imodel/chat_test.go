package imodel

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// wantLifecycle is the snapshot sequence of a request that succeeds at once.
var wantLifecycle = []messages.RequestStatus{
	messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling, messages.StatusCompleted,
}

// checkReply checks a simulated reply of n tokens.
func checkReply(t *testing.T, text string, n int, model string) {
	t.Helper()
	if !strings.HasPrefix(text, "Lorem") || (n >= 2 && !strings.HasSuffix(text, ".")) {
		t.Errorf("reply %q is not the simulator's", text)
	}
	if got := tokens.ForModel(model).Count(text); got != n {
		t.Errorf("reply %q has %d tokens, want %d", text, got, n)
	}
}

// checkSnapshots checks that a request passed through every state in
// order, with Seq growing by one.
func checkSnapshots(t *testing.T, evs []messages.Event, want []messages.RequestStatus) {
	t.Helper()
	if got := statuses(evs); !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Errorf("snapshot %d has Seq %d", i, ev.Seq)
		}
	}
}

func TestChatOpenAI(t *testing.T) {
	log := &eventLog{}
	e, _, m, _ := setup(t, simulator.Config{}, func(c *runtime.Config) { c.Observer = log.observe })
	temp := 0.5
	req := ChatRequest{
		System: "You are terse.",
		Messages: []Message{
			{Role: "user", Content: "Say hello to the team.", Name: "alice"},
			{Role: "assistant", Content: "Hello, team."},
			{Role: "user", Content: "Again, please."},
		},
		MaxTokens: 8, Temperature: &temp, Stop: []string{"\n\n"},
		Extra: map[string]any{"user": "user-1", "seed": 7},
	}
	resp, err := m.Chat(ctx, req, WithMetadata(map[string]string{"job": "greet"}))
	if err != nil {
		t.Fatal(err)
	}
	checkReply(t, resp.Text, 8, openAIModel)
	prompt := tokens.ForModel(openAIModel).ChatPrompt([]tokens.Message{
		{Role: "system", Text: "You are terse."},
		{Role: "user", Text: "Say hello to the team.", Name: "alice"},
		{Role: "assistant", Text: "Hello, team."},
		{Role: "user", Text: "Again, please."},
	})
	want := messages.Usage{InputTokens: prompt, OutputTokens: 8, TotalTokens: prompt + 8}
	if resp.Usage != want || resp.FinishReason != "length" || resp.Model != openAIModel || !strings.HasPrefix(resp.ID, "chatcmpl-") {
		t.Errorf("reply %+v, want usage %+v, finish length", resp, want)
	}
	ev := resp.Event
	if ev.Status != messages.StatusCompleted || ev.Attempt != 1 || ev.Err() != nil {
		t.Errorf("snapshot %v attempt %d err %v", ev.Status, ev.Attempt, ev.Err())
	}
	if ev.Tokens != (messages.Tokens{Estimated: prompt + 8, Actual: prompt + 8, HasActual: true}) {
		t.Errorf("tokens %+v", ev.Tokens)
	}
	if ev.Metadata()["job"] != "greet" {
		t.Errorf("metadata %v", ev.Metadata())
	}
	checkSnapshots(t, log.of(ev), wantLifecycle)
	if r, ok := ev.Response(); !ok || r.StatusCode != 200 || r.Header.Get("x-request-id") == "" {
		t.Errorf("response %+v", r)
	}
	ep := ev.Endpoint()
	if ep.Method != http.MethodPost || ep.URL != e.URL+"/v1/chat/completions" || ep.Header.Get("Authorization") != messages.Redacted {
		t.Errorf("endpoint %s %s %v", ep.Method, ep.URL, ep.Header)
	}

	got := e.Last(t)
	if got.Path != "/v1/chat/completions" || got.Header.Get("Authorization") != "Bearer "+testKey ||
		got.Header.Get("Content-Type") != "application/json" || got.Header.Get("Accept") != "application/json" {
		t.Errorf("request %s %v", got.Path, got.Header)
	}
	body := got.Fields(t)
	wantBody := map[string]any{
		"model": openAIModel,
		"messages": []any{
			map[string]any{"role": "system", "content": "You are terse."},
			map[string]any{"role": "user", "content": "Say hello to the team.", "name": "alice"},
			map[string]any{"role": "assistant", "content": "Hello, team."},
			map[string]any{"role": "user", "content": "Again, please."},
		},
		"max_tokens": 8.0, "temperature": 0.5, "stop": []any{"\n\n"}, "user": "user-1", "seed": 7.0,
	}
	if !reflect.DeepEqual(body, wantBody) {
		t.Errorf("body\n%v\nwant\n%v", body, wantBody)
	}
}

func TestChatAnthropic(t *testing.T) {
	log := &eventLog{}
	e, _, _, m := setup(t, simulator.Config{}, func(c *runtime.Config) { c.Observer = log.observe })
	req := ChatRequest{System: "You are terse.", Messages: []Message{{Role: "user", Content: "Say hello."}}, Stop: []string{"END"}}
	resp, err := m.Chat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	checkReply(t, resp.Text, simulator.DefaultCompletionTokens, claudeModel)
	prompt := tokens.ForModel(claudeModel).ChatPrompt([]tokens.Message{{Role: "system", Text: "You are terse."}, {Role: "user", Text: "Say hello."}})
	want := messages.Usage{InputTokens: prompt, OutputTokens: simulator.DefaultCompletionTokens, TotalTokens: prompt + simulator.DefaultCompletionTokens}
	if resp.Usage != want || resp.FinishReason != "end_turn" || resp.Model != claudeModel || !strings.HasPrefix(resp.ID, "msg_") {
		t.Errorf("reply %+v, want usage %+v", resp, want)
	}
	// The estimate reserves Anthropic's required max_tokens, defaulted.
	if ev := resp.Event; ev.Tokens.Estimated != prompt+tokens.DefaultMaxTokens || ev.Tokens.Actual != want.TotalTokens {
		t.Errorf("tokens %+v", ev.Tokens)
	}
	checkSnapshots(t, log.of(resp.Event), wantLifecycle)
	if h := resp.Event.Endpoint().Header; h.Get("X-Api-Key") != messages.Redacted || h.Get("Authorization") != "" {
		t.Errorf("snapshot headers %v", h)
	}

	got := e.Last(t)
	if got.Path != "/v1/messages" || got.Header.Get("X-Api-Key") != testAntKey ||
		got.Header.Get("Anthropic-Version") != DefaultAnthropicVersion || got.Header.Get("Authorization") != "" {
		t.Errorf("request %s %v", got.Path, got.Header)
	}
	wantBody := map[string]any{
		"model":          claudeModel,
		"system":         "You are terse.", // a field of its own, not a message
		"messages":       []any{map[string]any{"role": "user", "content": "Say hello."}},
		"max_tokens":     float64(tokens.DefaultMaxTokens),
		"stop_sequences": []any{"END"},
	}
	if body := got.Fields(t); !reflect.DeepEqual(body, wantBody) {
		t.Errorf("body\n%v\nwant\n%v", body, wantBody)
	}

	// A model named by the request overrides the endpoint's.
	resp, err = m.Chat(ctx, ChatRequest{Model: "claude-haiku-4-5", Messages: []Message{{Role: "user", Content: "Hi"}}, MaxTokens: 3})
	if err != nil || resp.Model != "claude-haiku-4-5" || resp.FinishReason != "max_tokens" || resp.Usage.OutputTokens != 3 {
		t.Errorf("reply %+v, %v", resp, err)
	}
	if body := e.Last(t).Fields(t); body["model"] != "claude-haiku-4-5" || body["system"] != nil {
		t.Errorf("body %v", body)
	}
}

func TestChatOpenAICompatible(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: e.URL + "/v1/", APIKey: "sk-test-compat",
		Defaults: map[string]any{"model": openAIModel}})
	resp, err := m.Chat(ctx, hello("ping", 4))
	if err != nil {
		t.Fatal(err)
	}
	checkReply(t, resp.Text, 4, openAIModel)
	if resp.Event.Tokens.Actual != resp.Usage.TotalTokens || resp.Event.Tokens.Estimated != resp.Usage.InputTokens+4 {
		t.Errorf("tokens %+v usage %+v", resp.Event.Tokens, resp.Usage)
	}
	got := e.Last(t)
	// The trailing slash of the base URL does not double; the model comes
	// from the defaults, as the request names none.
	if got.Path != "/v1/chat/completions" || got.Header.Get("Authorization") != "Bearer sk-test-compat" || got.Fields(t)["model"] != openAIModel {
		t.Errorf("request %s %v %s", got.Path, got.Header, got.Body)
	}
	emb, err := m.Embed(ctx, []string{"one"}, WithField("model", embedModel))
	if err != nil || len(emb.Vectors) != 1 {
		t.Errorf("compatible embeddings: %+v, %v", emb, err)
	}
}

func TestEmbedOpenAI(t *testing.T) {
	log := &eventLog{}
	e := startSim(t, simulator.Config{EmbeddingDims: 4})
	ex := startExecutor(t, func(c *runtime.Config) { c.Observer = log.observe })
	cfg := openAIConfig(e)
	cfg.Model = embedModel
	m := newModel(t, ex, cfg)
	inputs := []string{"hello world", "the quick brown fox", "é"}
	resp, err := m.Embed(ctx, inputs)
	if err != nil {
		t.Fatal(err)
	}
	n := tokens.ForModel(embedModel).Embedding(inputs)
	if len(resp.Vectors) != 3 || resp.Model != embedModel || resp.Usage != (messages.Usage{InputTokens: n, TotalTokens: n}) {
		t.Fatalf("reply %+v, want 3 vectors and %d tokens", resp, n)
	}
	for i, v := range resp.Vectors {
		if len(v) != 4 {
			t.Errorf("vector %d has %d values", i, len(v))
		}
	}
	if resp.Event.Tokens != (messages.Tokens{Estimated: n, Actual: n, HasActual: true}) {
		t.Errorf("tokens %+v", resp.Event.Tokens)
	}
	checkSnapshots(t, log.of(resp.Event), wantLifecycle)
	got := e.Last(t)
	if got.Path != "/v1/embeddings" || !reflect.DeepEqual(got.Fields(t), map[string]any{"model": embedModel, "input": []any{"hello world", "the quick brown fox", "é"}}) {
		t.Errorf("request %s %s", got.Path, got.Body)
	}
	// Vectors are returned in input order: the same input, the same vector.
	again, err := m.Embed(ctx, []string{"é", "hello world"}, WithField("dimensions", 4))
	if err != nil || !reflect.DeepEqual(again.Vectors[0], resp.Vectors[2]) || !reflect.DeepEqual(again.Vectors[1], resp.Vectors[0]) {
		t.Errorf("vectors out of order: %v", err)
	}
	if _, err := m.Embed(ctx, nil); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("no inputs: %v, want ErrInvalidRequest", err)
	}
}

func TestUnsupported(t *testing.T) {
	e, ex, _, an := setup(t, simulator.Config{}, nil)
	if _, err := an.Embed(ctx, []string{"x"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Anthropic embeddings: %v, want ErrUnsupported", err)
	}
	g := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: e.URL})
	if _, err := g.Chat(ctx, hello("x", 1)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("generic chat: %v, want ErrUnsupported", err)
	}
	if _, err := g.Stream(ctx, hello("x", 1)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("generic stream: %v, want ErrUnsupported", err)
	}
	if _, err := g.Embed(ctx, []string{"x"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("generic embeddings: %v, want ErrUnsupported", err)
	}
	if n := len(e.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestClosed(t *testing.T) {
	e, ex, m, _ := setup(t, simulator.Config{}, nil)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Chat(ctx, hello("x", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Chat: %v", err)
	}
	if _, err := m.Invoke(ctx, chatPayloadOf("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke: %v", err)
	}
	if _, err := m.Stream(ctx, hello("x", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Stream: %v", err)
	}
	if _, err := m.Embed(ctx, []string{"x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Embed: %v", err)
	}
	if len(e.Requests()) != 0 || ex.Stats().Accepted != 0 {
		t.Error("a closed model submitted a request")
	}

	// A model on a client of the caller's leaves it alone when closed.
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	own := newModel(t, ex, openAIConfig(e), WithHTTPClient(client))
	if _, err := own.Chat(ctx, hello("x", 1)); err != nil {
		t.Fatal(err)
	}
	own.Close()
	if _, err := own.Chat(ctx, hello("x", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Chat after Close: %v", err)
	}
}

func TestInvokeMergeOrder(t *testing.T) {
	log := &eventLog{}
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, func(c *runtime.Config) { c.Observer = log.observe })
	cfg := openAIConfig(e)
	cfg.Defaults = map[string]any{"temperature": 0.25, "max_tokens": 5, "user": "from-defaults", "top_p": 0.5}
	m := newModel(t, ex, cfg)
	payload := map[string]any{
		"messages":   []map[string]any{{"role": "user", "content": "merge"}},
		"max_tokens": 6, "user": "from-payload",
	}
	resp, err := m.Invoke(ctx, payload, WithField("user", "from-option"), WithField("n", 2), WithHeader("X-Trace", "t-1"))
	if err != nil {
		t.Fatal(err)
	}
	got := e.Last(t)
	body := got.Fields(t)
	want := map[string]any{
		"model":       openAIModel, // the config's Model
		"messages":    []any{map[string]any{"role": "user", "content": "merge"}},
		"temperature": 0.25,          // defaults only
		"top_p":       0.5,           // defaults only
		"max_tokens":  6.0,           // the payload over the defaults
		"user":        "from-option", // WithField over the payload
		"n":           2.0,           // WithField alone
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body\n%v\nwant\n%v", body, want)
	}
	if got.Header.Get("X-Trace") != "t-1" {
		t.Errorf("header %v", got.Header)
	}
	if payload["user"] != "from-payload" || len(payload) != 3 {
		t.Errorf("Invoke changed the caller's payload: %v", payload)
	}

	// The raw response and its decoding.
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || len(resp.Body) == 0 {
		t.Errorf("response %d %v %q", resp.StatusCode, resp.Header, resp.Body)
	}
	var cr wire.ChatResponse
	if err := resp.Decode(&cr); err != nil {
		t.Fatal(err)
	}
	if len(cr.Choices) != 2 || cr.Usage == nil || cr.Choices[0].FinishReason != "length" {
		t.Fatalf("decoded %+v", cr)
	}
	checkReply(t, cr.Choices[0].Message.Content.String(), 6, openAIModel)
	// Usage is read from any body that has one.
	if ev := resp.Event; ev.Tokens.Actual != cr.Usage.TotalTokens || !ev.Tokens.HasActual || ev.Tokens.Estimated != cr.Usage.PromptTokens+2*6 {
		t.Errorf("tokens %+v, usage %+v", ev.Tokens, cr.Usage)
	}
	checkSnapshots(t, log.of(resp.Event), wantLifecycle)
	var wrong []string
	if err := resp.Decode(&wrong); err == nil || !strings.Contains(err.Error(), "decoding response") {
		t.Errorf("decoding into the wrong type: %v", err)
	}

	// The payload's model wins over the config's; a WithField over both.
	if _, err := m.Invoke(ctx, map[string]any{"model": "gpt-4o", "messages": payload["messages"]}); err != nil {
		t.Fatal(err)
	}
	if m := e.Last(t).Fields(t)["model"]; m != "gpt-4o" {
		t.Errorf("model %v, want the payload's", m)
	}
	if _, err := m.Invoke(ctx, map[string]any{"model": "gpt-4o", "messages": payload["messages"]}, WithField("model", "gpt-4.1")); err != nil {
		t.Fatal(err)
	}
	if m := e.Last(t).Fields(t)["model"]; m != "gpt-4.1" {
		t.Errorf("model %v, want the option's", m)
	}

	// A payload that is not JSON is refused before it is queued.
	if _, err := m.Invoke(ctx, map[string]any{"bad": func() {}}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("unencodable payload: %v", err)
	}
}

func TestPathTemplate(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	// The version segment comes from the payload, which no longer has it.
	m := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: e.URL, APIKey: "sk-test-compat",
		Path: "/{version}/chat/completions", Model: openAIModel})
	payload := chatPayloadOf("template")
	payload["version"] = "v1"
	resp, err := m.Invoke(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	got := e.Last(t)
	if got.Path != "/v1/chat/completions" {
		t.Errorf("path %q", got.Path)
	}
	if _, ok := got.Fields(t)["version"]; ok {
		t.Errorf("the path parameter stayed in the body: %s", got.Body)
	}
	if resp.Event.Endpoint().URL != e.URL+"/v1/chat/completions" || resp.Event.Tokens.Estimated == 0 {
		t.Errorf("endpoint %q, estimate %d", resp.Event.Endpoint().URL, resp.Event.Tokens.Estimated)
	}

	// Without the field, or with an unclosed brace, nothing is sent.
	if _, err := m.Invoke(ctx, chatPayloadOf("x")); !errors.Is(err, messages.ErrInvalidRequest) || !strings.Contains(err.Error(), "{version}") {
		t.Errorf("missing path parameter: %v", err)
	}
	bad := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: e.URL, Path: "/{version/chat"})
	if _, err := bad.Invoke(ctx, map[string]any{"version": "v1"}); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("unclosed brace: %v", err)
	}
	badEscape := newModel(t, ex, EndpointConfig{Provider: OpenAICompatible, BaseURL: e.URL, Path: "/v1/%zz"})
	if _, err := badEscape.Invoke(ctx, nil); !errors.Is(err, messages.ErrInvalidRequest) {
		t.Errorf("bad escape in the path: %v", err)
	}
	if n := len(e.Requests()); n != 1 {
		t.Errorf("%d requests sent, want 1", n)
	}
}

// echoServer is a tiny JSON API on the loopback interface that answers
// every request with what it received.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte("no such thing"))
			return
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/list":
			w.Write([]byte(`[1, 2, 3]`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method,
			"path":   r.URL.EscapedPath(),
			"query":  r.URL.RawQuery,
			"auth":   r.Header.Get("Authorization"),
			"type":   r.Header.Get("Content-Type"),
			"usage":  map[string]any{"input_tokens": 3, "output_tokens": 4},
		})
	}))
	t.Cleanup(ts.Close)
	return ts
}

type echo struct {
	Method, Path, Query, Auth, Type string
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

func TestGenericGetWithQuery(t *testing.T) {
	ts := echoServer(t)
	ex := startExecutor(t, nil)
	m := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL + "/api", Path: "/items/{id}", Method: "get",
		APIKey: "sk-test-generic", Defaults: map[string]any{"limit": 10}})
	resp, err := m.Invoke(ctx, map[string]any{
		"id": "a b/c", "q": "hello world", "flag": true, "ratio": 0.5, "big": int64(1 << 40),
		"tags": []string{"x", "y"}, "since": stringer{"yesterday"}, "num": json.Number("12"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got echo
	if err := resp.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := echo{
		Method: http.MethodGet,
		Path:   "/api/items/a%20b%2Fc", // the path parameter is escaped once
		Query:  "big=1099511627776&flag=true&limit=10&num=12&q=hello+world&ratio=0.5&since=yesterday&tags=%5B%22x%22%2C%22y%22%5D",
	}
	if got != want {
		t.Errorf("server saw\n%+v\nwant\n%+v", got, want)
	}
	// Generic endpoints send no credential by default and cost no estimate;
	// a usage object in the body still counts.
	ev := resp.Event
	if ev.Tokens != (messages.Tokens{Estimated: 0, Actual: 7, HasActual: true}) {
		t.Errorf("tokens %+v", ev.Tokens)
	}
	if ep := ev.Endpoint(); ep.Method != http.MethodGet || ep.Payload != nil || !strings.HasSuffix(ep.URL, "/api/items/a%20b%2Fc?"+want.Query) {
		t.Errorf("endpoint %s %s %q", ep.Method, ep.URL, ep.Payload)
	}

	// DELETE also sends its fields as a query; a bearer key when asked.
	del := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Path: "/things", Method: http.MethodDelete,
		Auth: AuthBearer, APIKey: "sk-test-generic"})
	resp, err = del.Invoke(ctx, map[string]any{"force": true})
	if err != nil {
		t.Fatal(err)
	}
	// The server got the key; the response shown has it scrubbed, as
	// every snapshot has.
	if err := resp.Decode(&got); err != nil || got != (echo{Method: http.MethodDelete, Path: "/things", Query: "force=true", Auth: "Bearer " + messages.Redacted}) {
		t.Errorf("server saw %+v (%v)", got, err)
	}

	// PUT sends a JSON body.
	put := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Method: http.MethodPut})
	resp, err = put.Invoke(ctx, map[string]any{"k": "v"})
	if err != nil || resp.Decode(&got) != nil || got.Type != "application/json" || got.Query != "" {
		t.Errorf("PUT: %+v, %v", got, err)
	}

	// Any JSON is a success; an empty body too.
	for _, path := range []string{"/list", "/empty"} {
		g := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Path: path})
		resp, err := g.Invoke(ctx, nil)
		if err != nil || resp.Event.Tokens.HasActual {
			t.Errorf("%s: %v, tokens %+v", path, err, resp.Event.Tokens)
		}
	}
	// An error status without a JSON error body.
	g := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: ts.URL, Path: "/missing", MaxAttempts: 1})
	_, err = g.Invoke(ctx, nil)
	var api *APIError
	if !errors.As(err, &api) || api.StatusCode != 404 || api.Message != "Not Found" || !errors.Is(err, ErrBadRequest) || api.Kind() != "bad_request" {
		t.Errorf("404: %v", err)
	}
}

func TestEstimate(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	oa := newModel(t, ex, openAIConfig(e))
	an := newModel(t, ex, anthropicConfig(e))
	counter := tokens.ForModel(openAIModel)

	payload := map[string]any{
		"messages": []map[string]any{
			{"role": "system", "content": "Be brief."},
			{"role": "user", "content": "What is a token bucket?", "name": "bob"},
		},
		"max_tokens": 20,
	}
	msgs := []tokens.Message{{Role: "system", Text: "Be brief."}, {Role: "user", Text: "What is a token bucket?", Name: "bob"}}
	want := counter.ChatRequest(msgs, 1, 20)
	if got := oa.Estimate(payload); got != want {
		t.Errorf("OpenAI estimate %d, want %d", got, want)
	}
	// The estimate is what Invoke charges.
	resp, err := oa.Invoke(ctx, payload)
	if err != nil || resp.Event.Tokens.Estimated != want {
		t.Errorf("Invoke estimated %d (%v), want %d", resp.Event.Tokens.Estimated, err, want)
	}
	// n replies of max_completion_tokens each; no limit reserves the default.
	if got, want := oa.Estimate(map[string]any{"messages": payload["messages"], "n": 3, "max_completion_tokens": 7}), counter.ChatRequest(msgs, 3, 7); got != want {
		t.Errorf("n=3 estimate %d, want %d", got, want)
	}
	if got, want := oa.Estimate(map[string]any{"messages": payload["messages"]}), counter.ChatRequest(msgs, 1, 0); got != want || want != counter.ChatPrompt(msgs)+tokens.DefaultMaxTokens {
		t.Errorf("no max_tokens estimate %d, want %d", got, want)
	}

	ap := map[string]any{"system": "Be brief.", "max_tokens": 30, "messages": []map[string]any{{"role": "user", "content": "Hi"}}}
	if got, want := an.Estimate(ap), tokens.ForModel(claudeModel).ChatRequest([]tokens.Message{{Role: "system", Text: "Be brief."}, {Role: "user", Text: "Hi"}}, 1, 30); got != want {
		t.Errorf("Anthropic estimate %d, want %d", got, want)
	}

	ecfg := openAIConfig(e)
	ecfg.Path, ecfg.Model = "/embeddings", embedModel
	em := newModel(t, ex, ecfg)
	if got, want := em.Estimate(map[string]any{"input": []string{"a b", "c"}}), tokens.ForModel(embedModel).Embedding([]string{"a b", "c"}); got != want {
		t.Errorf("embeddings estimate %d, want %d", got, want)
	}

	// What the estimate cannot read costs 0.
	g := newModel(t, ex, EndpointConfig{Provider: Generic, BaseURL: e.URL})
	for name, got := range map[string]int{
		"generic":           g.Estimate(payload),
		"unencodable":       oa.Estimate(map[string]any{"f": func() {}}),
		"bad chat":          oa.Estimate(map[string]any{"messages": "not a list"}),
		"bad messages":      an.Estimate(map[string]any{"messages": 1}),
		"bad embeddings":    em.Estimate(map[string]any{"input": map[string]any{}}),
		"other OpenAI path": newModel(t, ex, EndpointConfig{Provider: OpenAI, APIKey: testKey, Path: "/models"}).Estimate(payload),
	} {
		if got != 0 {
			t.Errorf("%s: estimate %d, want 0", name, got)
		}
	}
}

// TestRequestTimingBounds checks the timing fields a successful call fills.
func TestRequestTimingBounds(t *testing.T) {
	_, _, m, _ := setup(t, simulator.Config{}, nil)
	before := time.Now()
	resp, err := m.Chat(ctx, hello("time", 2), WithHeader(simulator.HeaderLatency, "30ms"))
	if err != nil {
		t.Fatal(err)
	}
	tm := resp.Event.Timings()
	if tm.Created.Before(before) || tm.CallStarted.Before(tm.Created) || tm.Finished.Sub(tm.CallStarted) < 30*time.Millisecond {
		t.Errorf("timings %+v", tm)
	}
}
