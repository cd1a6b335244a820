package redisbudget

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/messages"
)

// DefaultLeaseTTL is how long a lease stays valid unless Config says
// otherwise; the same as the budget service's.
const DefaultLeaseTTL = time.Second

// idleTTL is how long Redis keeps the state of a budget nobody leases from.
// A budget that comes back after that starts empty, as a new one does; an
// hour outlasts the refill of any per-minute limit, so nothing is lost but
// the memory of an abandoned key.
const idleTTL = time.Hour

// Config configures a Store. The zero value is usable.
type Config struct {
	// LeaseTTL is how long a member may use a lease. What it has not used
	// by then it gives back with Return; what a dead member held lapses.
	// 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// MemberTTL is how long a member's limits count after its last Lease:
	// the lowest limits of the members heard from within MemberTTL apply.
	// 0 means 10 × LeaseTTL.
	MemberTTL time.Duration
}

// Validate reports an invalid field as a *messages.ConfigError.
func (c Config) Validate() error {
	switch {
	case c.LeaseTTL < 0:
		return &messages.ConfigError{Field: "LeaseTTL", Reason: "must not be negative"}
	case c.MemberTTL < 0:
		return &messages.ConfigError{Field: "MemberTTL", Reason: "must not be negative"}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.MemberTTL == 0 {
		c.MemberTTL = 10 * c.LeaseTTL
	}
	return c
}

// ErrEmptyName is returned by Store methods given an empty budget key or
// member name.
var ErrEmptyName = errors.New("redisbudget: empty budget key or member name")

// Store keeps shared budgets in Redis. Its methods are safe for concurrent
// use; each is one round trip, an atomic script on the server.
//
// go-redis sends a command again after a network error (up to the
// client's MaxRetries, 3 by default; max_retries=-1 in the URL turns that
// off), so a script that ran before the connection broke may run twice. For
// Lease that costs budget, never more than the limit: the first lease is
// never used and lapses. For Return it is harmless (a lease counts once);
// for Pause, idempotent; a refund by Adjust may count twice, within the
// burst.
type Store struct {
	client redis.UniversalClient
	cfg    Config
	newID  func() uint64
}

// New returns a Store on client: a *redis.Client (from [Options.NewClient]
// or your own, Sentinel's failover client included) or a
// *redis.ClusterClient. The Store does not own the client: close it after
// the Store's last use.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{client: client, cfg: cfg.withDefaults(), newID: randomID}, nil
}

// randomID picks a lease ID: random rather than counted, so that an ID
// from before a restart of Redis (whose count would start again) never
// names a lease granted after it. Bit 63 is always clear (a member may use
// it for leases of its own), and 0 is never used. Two live leases of one
// key with one ID (a chance of 2^-63 a pair) would cost a refund: the later
// record replaces the earlier.
func randomID() uint64 {
	for {
		if id := rand.Uint64() &^ (1 << 63); id != 0 {
			return id
		}
	}
}

// Redis keys of one budget. Every one carries the budget key as its hash
// tag, {key}, so that Redis Cluster keeps them in one slot and a script may
// use them together. The budget key is a name such as budget.KeyFor makes
// (an endpoint and a hash), never an API key. Its braces (an endpoint may
// have {param}s) are escaped, and % with them, so that the tag is always
// the whole key: a } inside would end it early, and one at the start would
// leave it empty and the keys in different slots.
func stateKey(key string) string   { return prefix(key) + "state" }
func membersKey(key string) string { return prefix(key) + "members" }
func pauseChannel(key string) string {
	return prefix(key) + "pause"
}
func leaseKey(key string, id uint64) string {
	return prefix(key) + "lease:" + strconv.FormatUint(id, 10)
}

var escapeBraces = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func prefix(key string) string { return "lionactor:{" + escapeBraces.Replace(key) + "}:" }

// The scripts: each is the common start (load and refill the state) and
// its own body; see lua/*.lua.
var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/lease.lua
	leaseLua string
	//go:embed lua/return.lua
	returnLua string
	//go:embed lua/adjust.lua
	adjustLua string
	//go:embed lua/pause.lua
	pauseLua string

	// redis.Script runs EVALSHA, and EVAL when the server does not have the
	// script yet (NOSCRIPT), which also loads it.
	leaseScript  = redis.NewScript(commonLua + leaseLua)
	returnScript = redis.NewScript(commonLua + returnLua)
	adjustScript = redis.NewScript(commonLua + adjustLua)
	pauseScript  = redis.NewScript(commonLua + pauseLua)
)

// Grant is what Lease obtained: a lease of Requests requests and Tokens
// tokens, valid until Expires, or (Requests == 0) nothing yet, and how long
// to Wait before asking again.
type Grant struct {
	ID               uint64 // names the lease to Return; 0 when nothing was granted
	Requests, Tokens int64
	// Expires is on the caller's clock: the time Lease was called plus the
	// lease TTL, so it comes before Redis forgets the lease whatever the
	// delays on the way.
	Expires time.Time
	// Wait is how long until one request and the minimum tokens will be
	// there (or a pause ends), when nothing was granted.
	Wait time.Duration
}

// Lease asks the budget key for up to want.Requests requests and
// want.Tokens tokens for member. It grants what the buckets hold, up to
// what was asked, once one request and want.MinTokens tokens (never more
// than the token burst) are there; tokens in proportion to the requests
// when it grants fewer requests than asked. Otherwise, or while the key is
// paused, it grants nothing and says how long to wait.
//
// limits are member's limits: the lowest limits of the members that leased
// within the member TTL apply to the key. A rate of rate.Inf (requests) or
// 0 (tokens) is no limit. A key leased from for the first time starts
// empty.
func (s *Store) Lease(ctx context.Context, key, member string, want actors.LeaseWanted, limits actors.Limits) (Grant, error) {
	if key == "" || member == "" {
		return Grant{}, ErrEmptyName
	}
	start := time.Now()
	id := s.newID()
	rps, rb, tps, tb := encodeLimits(limits)
	res, err := leaseScript.Run(ctx, s.client,
		[]string{stateKey(key), membersKey(key), leaseKey(key, id)},
		millis(idleTTL), member, rps, rb, tps, tb, millis(s.cfg.MemberTTL),
		want.Requests, want.Tokens, want.MinTokens,
		// The record outlives the lease by one TTL: a member gives back at
		// its own expiry, which reaches Redis after Redis's own.
		millis(2*s.cfg.LeaseTTL),
	).Int64Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("redisbudget: lease from %q: %w", key, err)
	}
	if res[0] == 0 {
		return Grant{Wait: time.Duration(res[2]) * time.Microsecond}, nil
	}
	return Grant{ID: id, Requests: res[0], Tokens: res[1], Expires: start.Add(s.cfg.LeaseTTL)}, nil
}

// Return gives back the unused part of lease id of key: at most what the
// lease granted, credited to the buckets up to their bursts. Only the first
// return of a lease counts, and only while Redis keeps its record (two
// lease TTLs); it reports whether this one did.
func (s *Store) Return(ctx context.Context, key string, id uint64, requests, tokens int64) (bool, error) {
	if key == "" {
		return false, ErrEmptyName
	}
	n, err := returnScript.Run(ctx, s.client, []string{stateKey(key), leaseKey(key, id)},
		millis(idleTTL), requests, tokens).Int64()
	if err != nil {
		return false, fmt.Errorf("redisbudget: return to %q: %w", key, err)
	}
	return n == 1, nil
}

// Adjust reconciles the token bucket of key with real usage: delta < 0
// refunds tokens estimated but not used (up to the burst), delta > 0
// charges tokens used beyond an estimate (at most 16 token bursts, as the
// budget service). It reports whether the bucket changed: not for a key
// never leased from, without a token limit, or for a delta of 0.
func (s *Store) Adjust(ctx context.Context, key string, delta int64) (bool, error) {
	if key == "" {
		return false, ErrEmptyName
	}
	n, err := adjustScript.Run(ctx, s.client, []string{stateKey(key)}, millis(idleTTL), delta).Int64()
	if err != nil {
		return false, fmt.Errorf("redisbudget: adjust %q: %w", key, err)
	}
	return n == 1, nil
}

// Pause stops every grant of key until until (on the caller's clock; Redis
// takes the time left from its own). If that extends the key's pause, it
// is published to the key's subscribers, tagged with member, and Pause
// reports true.
func (s *Store) Pause(ctx context.Context, key, member string, until time.Time) (bool, error) {
	if key == "" || member == "" {
		return false, ErrEmptyName
	}
	d := time.Until(until).Microseconds()
	if d <= 0 {
		return false, nil
	}
	n, err := pauseScript.Run(ctx, s.client, []string{stateKey(key)},
		millis(idleTTL), d, member, pauseChannel(key)).Int64()
	if err != nil {
		return false, fmt.Errorf("redisbudget: pause %q: %w", key, err)
	}
	return n == 1, nil
}

// Ping checks that the server answers and runs the budget's scripts on
// key's slot, changing nothing: a member that fell back asks it whether it
// may lease again.
func (s *Store) Ping(ctx context.Context, key string) error {
	if key == "" {
		return ErrEmptyName
	}
	// An adjustment by 0 loads the state and leaves it as it was.
	if err := adjustScript.Run(ctx, s.client, []string{stateKey(key)}, millis(idleTTL), 0).Err(); err != nil {
		return fmt.Errorf("redisbudget: ping %q: %w", key, err)
	}
	return nil
}

// millis is d in whole milliseconds, at least 1 (Redis refuses an expiry
// of 0).
func millis(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// encodeLimits converts and sanitizes limits for the scripts: a rate of 0
// is off; nonsense (negative, NaN, a rate without a burst) becomes the
// nearest safe value, as the budget service does.
func encodeLimits(l actors.Limits) (rps float64, rb int64, tps float64, tb int64) {
	on := func(r rate.Limit) bool { return r > 0 && r != rate.Inf && !math.IsInf(float64(r), 1) }
	burst := func(b int) int64 { return min(max(int64(b), 1), math.MaxInt32) }
	if on(l.RequestsPerSecond) {
		rps, rb = float64(l.RequestsPerSecond), burst(l.RequestBurst)
	}
	if on(l.TokensPerSecond) {
		tps, tb = float64(l.TokensPerSecond), burst(l.TokenBurst)
	}
	return rps, rb, tps, tb
}

// PauseEvent is a pause that a member published for a budget key.
type PauseEvent struct {
	Member string // who reported it
	// Until is on the receiver's clock: when the message arrived plus the
	// time the pause had left when published, a little later than its end
	// on the server, never sooner.
	Until time.Time
}

// Pauses is a subscription to the pauses of one budget key.
type Pauses struct {
	ps   *redis.PubSub
	c    chan PauseEvent
	done chan struct{} // closed by Close
	out  chan struct{} // closed when the forwarding goroutine ends
	once sync.Once
	err  error
}

// Subscribe subscribes to the pauses of key. It returns once Redis has
// confirmed the subscription, so that every pause published after it is
// delivered (while the connection holds: the client resubscribes after a
// reconnection, but what was published in between is lost). Close it
// when done.
func (s *Store) Subscribe(ctx context.Context, key string) (*Pauses, error) {
	if key == "" {
		return nil, ErrEmptyName
	}
	ps := s.client.Subscribe(ctx, pauseChannel(key))
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redisbudget: subscribe to %q: %w", key, err)
	}
	p := &Pauses{ps: ps, c: make(chan PauseEvent), done: make(chan struct{}), out: make(chan struct{})}
	go p.forward(ps.Channel())
	return p, nil
}

func (p *Pauses) forward(in <-chan *redis.Message) {
	defer close(p.out)
	defer close(p.c)
	for m := range in {
		ev, ok := parsePause(m.Payload, time.Now())
		if !ok {
			continue // not ours
		}
		select {
		case p.c <- ev:
		case <-p.done:
			return
		}
	}
}

// parsePause decodes a pause message, "<duration µs> <member>", received
// at now.
func parsePause(payload string, now time.Time) (PauseEvent, bool) {
	d, member, ok := strings.Cut(payload, " ")
	us, err := strconv.ParseInt(d, 10, 64)
	if !ok || err != nil || us <= 0 || member == "" {
		return PauseEvent{}, false
	}
	return PauseEvent{Member: member, Until: now.Add(time.Duration(us) * time.Microsecond)}, true
}

// C delivers the pauses published for the key, the subscriber's own
// included (compare Member). It is closed by Close.
func (p *Pauses) C() <-chan PauseEvent { return p.c }

// Close ends the subscription and closes C.
func (p *Pauses) Close() error {
	p.once.Do(func() {
		close(p.done)
		p.err = p.ps.Close()
		<-p.out
	})
	return p.err
}
