package imodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// Cache stores the successful replies of a model's requests by the hash of
// what they asked, so that the same request is never paid for twice: a
// Model with a cache (WithCache) answers a request whose reply is stored
// without a permit, a call or a cost, and stores the reply of every
// request it sends. FileCache keeps them in a directory. Implementations
// must be safe for concurrent use.
type Cache interface {
	// Get returns the reply stored under key, and whether there is one. A
	// stored reply that cannot be read is a miss, not an error.
	Get(key string) (CachedReply, bool)
	// Put stores reply under key, over any reply stored there. Its error
	// is logged; the request it answered is not failed by it.
	Put(key string, reply CachedReply) error
}

// CachedReply is a stored reply: its HTTP status and body, never a header,
// the request's key or anything else of the request.
type CachedReply struct {
	StatusCode int
	Body       []byte
	// Stored is when it was stored.
	Stored time.Time
}

// CacheMode says which requests a Model answers from its cache. Replies are
// stored whatever the mode.
type CacheMode int

const (
	// CacheDeterministic answers only the requests that ask for
	// deterministic output: temperature 0, and embeddings, which are
	// deterministic by nature. Others are sent, as asking again may give
	// another answer.
	CacheDeterministic CacheMode = iota
	// CacheAll answers any request whose reply is stored, as for the
	// reruns of an evaluation.
	CacheAll
)

// WithCache makes the model store the reply of each request it sends in c
// and answer the requests whose reply c holds (those mode allows) from it.
// A request's key is the SHA-256 of its canonical content: the provider,
// the method, the URL (base URL, path and query, secrets scrubbed) and the
// body, which has its object keys sorted; never the API key or a header.
// Streamed chats are neither stored nor answered from the cache, and the
// requests NewRequest and NewChatRequest build for an actor store their
// replies but are always sent.
func WithCache(c Cache, mode CacheMode) Option {
	return func(m *Model) { m.cache, m.cacheMode = c, mode }
}

// cacheKey is the key of a request's reply: the hex SHA-256 of its
// provider, method, URL and body, which json.Marshal wrote with sorted
// object keys.
func cacheKey(p Provider, method, url string, body []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(cacheVersion), []byte(p), []byte(method), []byte(url), body} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cacheVersion changes if what a key covers does, so that old entries are
// misses rather than answers to other requests.
const cacheVersion = "lionactor-cache-1"

// deterministic reports whether a request asks for deterministic output:
// temperature 0, or embeddings.
func deterministic(path string, fields map[string]any) bool {
	if strings.HasSuffix(path, "/embeddings") {
		return true
	}
	switch t := fields["temperature"].(type) {
	case json.Number:
		f, err := t.Float64()
		return err == nil && f == 0
	case float64:
		return t == 0
	case float32:
		return t == 0
	case int:
		return t == 0
	case int64:
		return t == 0
	}
	return false
}

// cached returns the reply the cache holds for hc's request as the result
// of a call, or nil for a miss. A stored reply that does not decode as the
// call's reply is a miss.
func (m *Model) cached(hc *httpCall) *messages.Result {
	reply, ok := m.cache.Get(hc.cacheKey)
	if !ok {
		return nil
	}
	value, _, err := hc.decode(m.cfg.Provider, reply.Body)
	if err != nil {
		m.logger.Debug("imodel: a cached reply does not decode; sending the request", slog.String("model", m.cfg.Name), slog.String("error", err.Error()))
		return nil
	}
	return &messages.Result{StatusCode: reply.StatusCode, Body: reply.Body, Value: value}
}

// store keeps a successful reply for the requests that ask the same again.
// The body is scrubbed of the request's secrets first, as snapshots are.
func (c *httpCall) store(status int, body []byte) {
	if c.cacheKey == "" || !json.Valid(body) {
		return
	}
	if len(c.secrets) > 0 {
		body = []byte(messages.Scrub(string(body), c.secrets))
	}
	if err := c.m.cache.Put(c.cacheKey, CachedReply{StatusCode: status, Body: body, Stored: time.Now()}); err != nil {
		c.m.logger.Warn("imodel: storing a reply in the cache", slog.String("model", c.m.cfg.Name), slog.String("error", messages.Scrub(err.Error(), c.secrets)))
	}
}

// FileCache is a Cache in a directory: one file per reply, at
// DIR/ab/abcdef….json for the key abcdef…. A reply is written to a
// temporary file in the same directory, synced and renamed over its place,
// so that a reader (another run sharing the directory, or this one after a
// crash) finds either the whole reply or none; a file that is cut short or
// not a reply is a miss. Nothing of a request is stored but its key.
type FileCache struct {
	dir string
}

// NewFileCache returns the cache in dir, creating the directory (readable
// by its owner only) if it does not exist.
func NewFileCache(dir string) (*FileCache, error) {
	if dir == "" {
		return nil, errors.New("imodel: cache: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("imodel: cache: %w", err)
	}
	return &FileCache{dir: dir}, nil
}

// Dir is the cache's directory.
func (c *FileCache) Dir() string { return c.dir }

// entry is a reply as a file holds it.
type entry struct {
	Version string          `json:"version"`
	Key     string          `json:"key"`
	Status  int             `json:"status"`
	Stored  time.Time       `json:"stored"`
	Body    json.RawMessage `json:"body"`
}

// path is where the reply of key is stored; "" for a key that is not a
// hex SHA-256, which could otherwise name a file anywhere.
func (c *FileCache) path(key string) string {
	if len(key) != 2*sha256.Size {
		return ""
	}
	if _, err := hex.DecodeString(key); err != nil {
		return ""
	}
	return filepath.Join(c.dir, key[:2], key+".json")
}

// Get implements Cache.
func (c *FileCache) Get(key string) (CachedReply, bool) {
	p := c.path(key)
	if p == "" {
		return CachedReply{}, false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return CachedReply{}, false
	}
	var e entry
	if json.Unmarshal(data, &e) != nil || e.Version != cacheVersion || e.Key != key || e.Status < 200 || e.Status > 299 || len(e.Body) == 0 {
		return CachedReply{}, false
	}
	return CachedReply{StatusCode: e.Status, Body: bytes.Clone(e.Body), Stored: e.Stored}, true
}

// Put implements Cache. The body must be JSON.
func (c *FileCache) Put(key string, reply CachedReply) error {
	p := c.path(key)
	if p == "" {
		return fmt.Errorf("imodel: cache: %q is not a key", key)
	}
	if !json.Valid(reply.Body) {
		return errors.New("imodel: cache: the reply is not JSON")
	}
	data, err := json.Marshal(entry{Version: cacheVersion, Key: key, Status: reply.StatusCode, Stored: reply.Stored.UTC(), Body: reply.Body})
	if err != nil {
		return fmt.Errorf("imodel: cache: %w", err)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("imodel: cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("imodel: cache: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("imodel: cache: %w", err)
	}
	return nil
}
