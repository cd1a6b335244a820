package imodel

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

func newFileCache(t testing.TB, dir string) *FileCache {
	t.Helper()
	c, err := NewFileCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const keyA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestFileCacheStoresWholeRepliesOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := newFileCache(t, dir)
	if _, ok := c.Get(keyA); ok {
		t.Fatal("a hit in an empty cache")
	}
	stored := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if err := c.Put(keyA, CachedReply{StatusCode: 200, Body: []byte(`{"id":"x","n":1}`), Stored: stored}); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get(keyA)
	if !ok || got.StatusCode != 200 || string(got.Body) != `{"id":"x","n":1}` || !got.Stored.Equal(stored) {
		t.Fatalf("Get = %+v %v", got, ok)
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v: the replies hold prompts' answers, the owner's only", info.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "01", keyA+".json")); err != nil {
		t.Errorf("entry not where documented: %v", err)
	}

	// What is not a whole, valid entry of this key is a miss.
	path := filepath.Join(dir, "01", keyA+".json")
	whole, _ := os.ReadFile(path)
	for name, content := range map[string][]byte{
		"cut short":     whole[:len(whole)/2],
		"empty":         nil,
		"not JSON":      []byte("garbage\x00"),
		"another key":   bytes.Replace(whole, []byte(keyA), []byte(strings.Repeat("f", 64)), 1),
		"other version": bytes.Replace(whole, []byte(cacheVersion), []byte("lionactor-cache-0"), 1),
		"failed status": bytes.Replace(whole, []byte(`"status":200`), []byte(`"status":500`), 1),
		"body left out": []byte(`{"version":"` + cacheVersion + `","key":"` + keyA + `","status":200}`),
	} {
		writeFile(t, path, string(content))
		if r, ok := c.Get(keyA); ok {
			t.Errorf("%s: a hit %+v", name, r)
		}
	}
	// A later Put replaces the corrupt entry.
	if err := c.Put(keyA, CachedReply{StatusCode: 200, Body: []byte(`[1]`)}); err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Get(keyA); !ok || string(r.Body) != `[1]` {
		t.Errorf("after a rewrite: %+v %v", r, ok)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("g", 64), keyA[:63]} {
		if err := c.Put(bad, CachedReply{StatusCode: 200, Body: []byte(`1`)}); err == nil {
			t.Errorf("Put(%q) accepted a key that is not a hash", bad)
		}
		if _, ok := c.Get(bad); ok {
			t.Errorf("Get(%q) hit", bad)
		}
	}
	if err := c.Put(keyA, CachedReply{StatusCode: 200, Body: []byte(`not json`)}); err == nil {
		t.Error("Put accepted a body that is not JSON")
	}
	if _, err := NewFileCache(""); err == nil {
		t.Error("NewFileCache accepted no directory")
	}
}

// A process that dies while writing leaves a temporary file behind, never
// a part of an entry in an entry's place: the reply is a miss, then stored
// whole by the next run.
func TestFileCacheSurvivesACrashMidWrite(t *testing.T) {
	dir := t.TempDir()
	c := newFileCache(t, dir)
	sub := filepath.Join(dir, keyA[:2])
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	// What a writer killed before its rename leaves.
	writeFile(t, filepath.Join(sub, ".tmp-123456"), `{"version":"`+cacheVersion+`","key":"`+keyA+`","status":200,"body":{"half`)
	if _, ok := c.Get(keyA); ok {
		t.Fatal("the half-written reply was served")
	}
	if err := c.Put(keyA, CachedReply{StatusCode: 200, Body: []byte(`{"whole":true}`)}); err != nil {
		t.Fatal(err)
	}
	if r, ok := newFileCache(t, dir).Get(keyA); !ok || string(r.Body) != `{"whole":true}` {
		t.Errorf("after the crash and a rerun: %+v %v", r, ok)
	}
}

// Runs sharing a directory write the same replies at once: every read
// finds a whole entry or none, and the last write stands.
func TestFileCacheSharedByConcurrentRuns(t *testing.T) {
	dir := t.TempDir()
	runs := []*FileCache{newFileCache(t, dir), newFileCache(t, dir), newFileCache(t, dir)}
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i+1)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for r, c := range runs {
		wg.Go(func() {
			for round := range 20 {
				for i, k := range keys {
					body := fmt.Sprintf(`{"key":%d,"run":%d,"round":%d,"pad":"%s"}`, i, r, round, strings.Repeat("x", 2000))
					if err := c.Put(k, CachedReply{StatusCode: 200, Body: []byte(body)}); err != nil {
						errs <- err
					}
					if got, ok := c.Get(keys[(i+5)%len(keys)]); ok && !bytes.HasSuffix(got.Body, []byte(`"}`)) {
						errs <- fmt.Errorf("a partial reply: %.60s", got.Body)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, k := range keys {
		got, ok := runs[0].Get(k)
		if !ok || !bytes.Contains(got.Body, []byte(fmt.Sprintf(`"key":%d,`, i))) || !bytes.Contains(got.Body, []byte(`"round":19`)) {
			t.Errorf("key %d: %.60s %v", i, got.Body, ok)
		}
	}
	temps := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			temps++
		}
		return nil
	})
	if temps != 0 {
		t.Errorf("%d temporary files left behind", temps)
	}
}

// counting is an Executor that counts what reaches it.
type counting struct {
	*runtime.Executor
	mu     sync.Mutex
	cached int
}

func (c *counting) Submit(ctx context.Context, r messages.Request) (*runtime.Handle, error) {
	c.mu.Lock()
	if r.Cached != nil {
		c.cached++
	}
	c.mu.Unlock()
	return c.Executor.Submit(ctx, r)
}

// TestCacheAnswersWithoutPermitOrHTTPRequest: an executor with one permit
// an hour sends the first request and stores its reply; the same request
// again is answered from the cache at once, with no HTTP request, no
// permit and no cost.
func TestCacheAnswersWithoutPermitOrHTTPRequest(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, func(c *runtime.Config) { c.RequestsPerInterval, c.RequestInterval = 1, time.Hour })
	dir := t.TempDir()
	m := newModel(t, ex, openAIConfig(e), WithCache(newFileCache(t, dir), CacheDeterministic))
	zero := 0.0
	req := ChatRequest{Messages: []Message{{Role: "user", Content: "What is 2 + 2?"}}, MaxTokens: 8, Temperature: &zero}

	first, err := m.Chat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Event.Cached() || !first.Event.Cost().Priced || first.Event.Cost().Actual <= 0 {
		t.Fatalf("first: cached %v cost %+v", first.Event.Cached(), first.Event.Cost())
	}
	// The only permit is spent: a request that needs one would wait an hour.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	second, err := m.Chat(waitCtx, req)
	if err != nil {
		t.Fatalf("second: %v", err)
	}
	if n := len(e.Requests()); n != 1 {
		t.Errorf("the simulator received %d requests, want 1", n)
	}
	if !second.Event.Cached() || second.Event.Cost() != (messages.Cost{Priced: true, HasActual: true}) {
		t.Errorf("second: cached %v cost %+v, want cached at $0", second.Event.Cached(), second.Event.Cost())
	}
	if second.Text != first.Text || second.ID != first.ID || second.Usage != first.Usage {
		t.Errorf("second reply %+v, want the first's %+v", second, first)
	}
	if second.Event.Tokens.HasActual {
		t.Error("a cached reply reported tokens as consumed")
	}
	if st := ex.Stats(); st.Cached != 1 || st.Completed != 2 {
		t.Errorf("stats: %d cached, %d completed", st.Cached, st.Completed)
	}

	// No key, no header: only the key of the request and the reply.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		for _, secret := range []string{testKey, "Bearer", "Authorization", "What is 2 + 2?"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds %q", p, secret)
			}
		}
		return nil
	})
}

// By default only deterministic requests are answered from the cache;
// CacheAll answers any whose reply is stored. Replies are stored whatever
// the mode; streams are neither stored nor answered.
func TestCacheModes(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := &counting{Executor: startExecutor(t, nil)}
	store := newFileCache(t, t.TempDir())
	det := newModel(t, ex, openAIConfig(e), WithCache(store, CacheDeterministic))
	all := newModel(t, ex, openAIConfig(e), WithCache(store, CacheAll))
	creative := hello("Write a poem.", 8) // no temperature: the provider's default, not deterministic

	sent := func() int { return len(e.Requests()) }
	if _, err := det.Chat(ctx, creative); err != nil {
		t.Fatal(err)
	}
	if r, err := det.Chat(ctx, creative); err != nil || r.Event.Cached() || sent() != 2 {
		t.Errorf("a request that is not deterministic: cached %v, %d sent; want it sent again", r.Event.Cached(), sent())
	}
	if r, err := all.Chat(ctx, creative); err != nil || !r.Event.Cached() || sent() != 2 {
		t.Errorf("CacheAll: cached %v, %d sent; want the stored reply", r.Event.Cached(), sent())
	}

	// Embeddings are deterministic.
	emb := newModel(t, ex, EndpointConfig{Provider: OpenAI, BaseURL: e.URL + "/v1", APIKey: testKey, Model: embedModel}, WithCache(store, CacheDeterministic))
	first, err := emb.Embed(ctx, []string{"alpha", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := emb.Embed(ctx, []string{"alpha", "beta"})
	if err != nil || !again.Event.Cached() || len(again.Vectors) != 2 || again.Vectors[1][0] != first.Vectors[1][0] {
		t.Errorf("embeddings again: cached %v, %d vectors (%v)", again.Event.Cached(), len(again.Vectors), err)
	}

	// Another API key asks the same: the key is not part of the request's
	// identity.
	other := openAIConfig(e)
	other.APIKey = "sk-test-imodel-other-key"
	if r, err := newModel(t, ex, other, WithCache(store, CacheAll)).Chat(ctx, creative); err != nil || !r.Event.Cached() {
		t.Errorf("another key: cached %v %v", r.Event.Cached(), err)
	}
	// Another body, or another endpoint, is another request.
	if r, _ := all.Chat(ctx, hello("Write a sonnet.", 8)); r.Event.Cached() {
		t.Error("another body was answered from the cache")
	}
	az := EndpointConfig{Provider: Azure, BaseURL: e.URL, APIKey: testKey, Deployment: openAIModel, APIVersion: "2024-10-21"}
	if r, err := newModel(t, ex, az, WithCache(store, CacheAll)).Chat(ctx, creative); err != nil || r.Event.Cached() {
		t.Errorf("another endpoint: cached %v %v", r.Event.Cached(), err)
	}

	before := sent()
	for range 2 {
		s, err := all.Stream(ctx, creative)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Wait(ctx); err != nil || r.Event.Cached() {
			t.Errorf("stream: cached %v %v", r.Event.Cached(), err)
		}
	}
	if sent() != before+2 {
		t.Errorf("streams sent %d requests, want 2", sent()-before)
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.cached != 3 {
		t.Errorf("%d cached requests reached the executor, want 3", ex.cached)
	}
}

// A stored reply that no longer decodes as the call's reply is a miss: the
// request is sent, and its reply stored in its place.
func TestCacheEntryThatDoesNotDecodeIsAMiss(t *testing.T) {
	e := startSim(t, simulator.Config{})
	ex := startExecutor(t, nil)
	dir := t.TempDir()
	m := newModel(t, ex, openAIConfig(e), WithCache(newFileCache(t, dir), CacheAll))
	if _, err := m.Chat(ctx, hello("Hi", 8)); err != nil {
		t.Fatal(err)
	}
	var entryPath string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			entryPath = p
		}
		return nil
	})
	data, _ := os.ReadFile(entryPath)
	writeFile(t, entryPath, string(bytes.Replace(data, []byte(`"choices":[`), []byte(`"nochoices":[`), 1)))
	r, err := m.Chat(ctx, hello("Hi", 8))
	if err != nil || r.Event.Cached() || len(e.Requests()) != 2 {
		t.Fatalf("cached %v, %d sent (%v): want the request sent", r.Event.Cached(), len(e.Requests()), err)
	}
	if r, _ := m.Chat(ctx, hello("Hi", 8)); !r.Event.Cached() {
		t.Error("the reply was not stored again")
	}
}

// BenchmarkCacheHit measures a request answered from a FileCache: the
// request built and hashed, the reply read and decoded, the handle's two
// snapshots.
func BenchmarkCacheHit(b *testing.B) {
	e := startSim(b, simulator.Config{})
	ex := startExecutor(b, nil)
	m := newModel(b, ex, openAIConfig(e), WithCache(newFileCache(b, b.TempDir()), CacheDeterministic))
	zero := 0.0
	req := ChatRequest{System: "You answer in one short paragraph.", Messages: []Message{{Role: "user", Content: "Explain token buckets to a new engineer."}}, MaxTokens: 64, Temperature: &zero}
	if _, err := m.Chat(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := m.Chat(ctx, req)
		if err != nil || !r.Event.Cached() {
			b.Fatalf("not a hit: %v", err)
		}
	}
}

// BenchmarkCacheMiss is the same request sent: to the simulator on
// loopback, which answers at once, through a permit and a caller.
func BenchmarkCacheMiss(b *testing.B) {
	e := startSim(b, simulator.Config{})
	ex := startExecutor(b, nil)
	m := newModel(b, ex, openAIConfig(e))
	zero := 0.0
	req := ChatRequest{System: "You answer in one short paragraph.", Messages: []Message{{Role: "user", Content: "Explain token buckets to a new engineer."}}, MaxTokens: 64, Temperature: &zero}
	b.ReportAllocs()
	for b.Loop() {
		if r, err := m.Chat(ctx, req); err != nil || r.Event.Cached() {
			b.Fatalf("%v", err)
		}
	}
}
