package redisbudget

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/messages"
)

// The scripts' arithmetic, on miniredis with its clock under the test's
// control: TIME inside a script and key expiry both follow SetTime.

const key = "https://api.example.com/v1#0123456789abcdef"

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// fake is a Store on an in-process Redis whose clock moves only when told.
type fake struct {
	t     *testing.T
	mr    *miniredis.Miniredis
	store *Store
	now   time.Time
}

func newFake(t *testing.T, cfg Config) *fake {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(t0)
	mr.ClockTTL(true) // key expiry follows SetTime too
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	store, err := New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fake{t: t, mr: mr, store: store, now: t0}
}

func (f *fake) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.mr.SetTime(f.now)
}

func (f *fake) lease(member string, want actors.LeaseWanted, l actors.Limits) Grant {
	f.t.Helper()
	g, err := f.store.Lease(context.Background(), key, member, want, l)
	if err != nil {
		f.t.Fatal(err)
	}
	return g
}

func (f *fake) giveBack(id uint64, requests, tokens int64) bool {
	f.t.Helper()
	ok, err := f.store.Return(context.Background(), key, id, requests, tokens)
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

// level reads a field of the key's state.
func (f *fake) level(field string) float64 {
	f.t.Helper()
	v, err := strconv.ParseFloat(f.mr.HGet(stateKey(key), field), 64)
	if err != nil {
		f.t.Fatalf("state field %s: %v", field, err)
	}
	return v
}

func want(requests, tokens, minTokens int64) actors.LeaseWanted {
	return actors.LeaseWanted{Requests: requests, Tokens: tokens, MinTokens: minTokens}
}

func check(t *testing.T, g Grant, requests, tokens int64, wait time.Duration) {
	t.Helper()
	if g.Requests != requests || g.Tokens != tokens || g.Wait != wait {
		t.Fatalf("granted %d requests, %d tokens, wait %v; want %d, %d, %v", g.Requests, g.Tokens, g.Wait, requests, tokens, wait)
	}
	if (requests > 0) != (g.ID != 0) {
		t.Fatalf("lease ID %d for %d requests", g.ID, requests)
	}
}

// 10 requests/s (burst 5), 1,000 tokens/s (burst 500).
var limits = actors.Limits{RequestsPerSecond: 10, RequestBurst: 5, TokensPerSecond: 1000, TokenBurst: 500}

func TestMiniredisTimeFollowsTheSetClock(t *testing.T) {
	f := newFake(t, Config{})
	f.advance(1234567 * time.Microsecond)
	v, err := f.store.client.Eval(context.Background(), "return redis.call('TIME')", nil).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{strconv.FormatInt(f.now.Unix(), 10), "234567"}; v[0] != want[0] || v[1] != want[1] {
		t.Fatalf("TIME = %v, want %v", v, want)
	}
}

func TestANewBudgetStartsEmpty(t *testing.T) {
	f := newFake(t, Config{})
	// Nothing at first: one request is 100 ms away at 10/s (plus the 1 ms
	// of rounding up), tokens only 10 ms.
	check(t, f.lease("a", want(3, 30, 10), limits), 0, 0, 101*time.Millisecond)
	f.advance(100 * time.Millisecond)
	check(t, f.lease("a", want(3, 30, 10), limits), 1, 10, 0)
}

func TestBucketsRefillAtTheirRatesUpToTheBurst(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits) // creates the key, empty
	f.advance(300 * time.Millisecond)   // 3 requests, 300 tokens
	check(t, f.lease("a", want(10, 1000, 0), limits), 3, 300, 0)
	f.advance(5 * time.Second) // full: 5 and 500, not more
	check(t, f.lease("a", want(10, 1000, 0), limits), 5, 500, 0)
	// Emptied: the next request is 100 ms away.
	check(t, f.lease("a", want(1, 0, 0), limits), 0, 0, 101*time.Millisecond)
	if got := f.level("rl"); got != 0 {
		t.Fatalf("request level %v after taking everything", got)
	}
}

func TestPartialLeases(t *testing.T) {
	t.Run("fewer requests: tokens in proportion", func(t *testing.T) {
		f := newFake(t, Config{})
		f.lease("a", want(1, 0, 0), limits)
		f.advance(200 * time.Millisecond) // 2 requests, 200 tokens
		// 2 of 4 requests: half of the 300 tokens asked, 150.
		check(t, f.lease("a", want(4, 300, 50), limits), 2, 150, 0)
	})
	t.Run("proportion below the minimum: the minimum", func(t *testing.T) {
		f := newFake(t, Config{})
		f.lease("a", want(1, 0, 0), limits)
		f.advance(200 * time.Millisecond)
		// 1 of 4 requests would carry 25 tokens; the head needs 100.
		check(t, f.lease("a", want(4, 100, 100), limits), 2, 100, 0)
	})
	t.Run("fewer tokens: what the bucket holds", func(t *testing.T) {
		f := newFake(t, Config{})
		f.lease("a", want(1, 0, 0), limits)
		f.advance(time.Second) // 5 requests, 500 tokens
		check(t, f.lease("a", want(4, 800, 100), limits), 4, 500, 0)
	})
	t.Run("not the minimum tokens: nothing, and the wait", func(t *testing.T) {
		f := newFake(t, Config{})
		f.lease("a", want(1, 0, 0), limits)
		f.advance(200 * time.Millisecond) // 2 requests, 200 tokens
		// 300 tokens needed: 100 more at 1,000/s.
		check(t, f.lease("a", want(1, 300, 300), limits), 0, 0, 101*time.Millisecond)
	})
	t.Run("minimum above the burst: a full bucket", func(t *testing.T) {
		f := newFake(t, Config{})
		f.lease("a", want(1, 0, 0), limits)
		f.advance(5 * time.Second)
		check(t, f.lease("a", want(1, 900, 900), limits), 1, 500, 0)
	})
}

func TestLimitsTurnedOff(t *testing.T) {
	f := newFake(t, Config{})
	noTokens := actors.Limits{RequestsPerSecond: 10, RequestBurst: 5}
	f.lease("a", want(1, 0, 0), noTokens)
	f.advance(time.Second)
	// Without a token limit, a lease carries no tokens.
	check(t, f.lease("a", want(3, 300, 100), noTokens), 3, 0, 0)

	g := newFake(t, Config{})
	noRequests := actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 1000, TokenBurst: 500}
	g.lease("a", want(1, 0, 0), noRequests)
	g.advance(time.Second)
	// Without a request limit, every request asked for.
	check(t, g.lease("a", want(50, 400, 10), noRequests), 50, 400, 0)

	h := newFake(t, Config{})
	check(t, h.lease("a", want(7, 400, 10), actors.Limits{RequestsPerSecond: rate.Inf}), 7, 0, 0)
}

func TestReturnsAreClampedCappedAndCountedOnce(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(time.Second)
	g := f.lease("a", want(4, 400, 0), limits) // leaves 1 request, 100 tokens
	check(t, g, 4, 400, 0)

	if f.giveBack(g.ID+1, 1, 1) {
		t.Fatal("a lease never granted was taken back")
	}
	// More than granted counts as what was granted; the bucket then holds
	// 1 + 4 = 5 requests and 100 + 400 = 500 tokens, its bursts.
	if !f.giveBack(g.ID, 100, 10000) {
		t.Fatal("the first return of a lease was refused")
	}
	if rl, tl := f.level("rl"), f.level("tl"); rl != 5 || tl != 500 {
		t.Fatalf("levels after the return: %v requests, %v tokens; want 5, 500", rl, tl)
	}
	if f.giveBack(g.ID, 4, 400) {
		t.Fatal("a lease was returned twice")
	}

	// Refunds never fill a bucket past its burst.
	g = f.lease("a", want(2, 200, 0), limits)
	f.advance(100 * time.Millisecond) // refills 1 request, 100 tokens: 4 and 400
	if !f.giveBack(g.ID, 2, 200) {
		t.Fatal("return refused")
	}
	if rl, tl := f.level("rl"), f.level("tl"); rl != 5 || tl != 500 {
		t.Fatalf("levels after a return beyond the burst: %v, %v; want 5, 500", rl, tl)
	}

	// Negative amounts credit nothing (but do use up the lease).
	g = f.lease("a", want(2, 200, 0), limits)
	if !f.giveBack(g.ID, -5, -500) {
		t.Fatal("return refused")
	}
	if rl, tl := f.level("rl"), f.level("tl"); rl != 3 || tl != 300 {
		t.Fatalf("levels after a negative return: %v, %v; want 3, 300", rl, tl)
	}
}

func TestLeaseRecordsOutliveTheLeaseByOneTTLThenLapse(t *testing.T) {
	f := newFake(t, Config{LeaseTTL: 500 * time.Millisecond})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(time.Second)
	late := f.lease("a", want(1, 100, 0), limits)
	dead := f.lease("a", want(1, 100, 0), limits)
	if !f.mr.Exists(leaseKey(key, dead.ID)) {
		t.Fatal("no record of a granted lease")
	}
	// A member gives back at its own expiry, which reaches Redis after
	// Redis's: still accepted half a TTL later.
	f.advance(750 * time.Millisecond)
	if !f.giveBack(late.ID, 1, 100) {
		t.Fatal("a return just after the lease's expiry was refused")
	}
	// A dead member never returns: its record lapses after two TTLs, and
	// a late return then credits nothing.
	f.advance(250 * time.Millisecond)
	if f.mr.Exists(leaseKey(key, dead.ID)) {
		t.Fatal("a dead member's lease is still on record after two TTLs")
	}
	before := f.level("rl")
	if f.giveBack(dead.ID, 1, 100) {
		t.Fatal("a lapsed lease was taken back")
	}
	if got := f.level("rl"); got != before {
		t.Fatalf("a lapsed lease changed the level from %v to %v", before, got)
	}
}

func TestGrantExpiresOnTheCallersClock(t *testing.T) {
	f := newFake(t, Config{LeaseTTL: 300 * time.Millisecond})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(time.Second)
	before := time.Now()
	g := f.lease("a", want(1, 0, 0), limits)
	after := time.Now()
	if g.Expires.Before(before.Add(300*time.Millisecond)) || g.Expires.After(after.Add(300*time.Millisecond)) {
		t.Fatalf("expires %v, want the call's start + 300ms, within [%v, %v]", g.Expires, before, after)
	}
}

func TestAdjustIsBoundedAsTheService(t *testing.T) {
	f := newFake(t, Config{})
	ctx := context.Background()
	adjust := func(delta int64) bool {
		t.Helper()
		ok, err := f.store.Adjust(ctx, key, delta)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if adjust(-100) {
		t.Fatal("a key never leased from was adjusted")
	}
	f.lease("a", want(1, 0, 0), limits)
	f.advance(200 * time.Millisecond) // 200 tokens
	if adjust(0) {
		t.Fatal("a zero delta changed the bucket")
	}
	if !adjust(-1000) || f.level("tl") != 500 {
		t.Fatalf("a refund gave %v tokens; want the burst, 500", f.level("tl"))
	}
	if !adjust(300) || f.level("tl") != 200 {
		t.Fatalf("a charge of 300 left %v; want 200", f.level("tl"))
	}
	// At most 16 bursts (8,000 tokens) in one charge.
	if !adjust(math.MaxInt64) || f.level("tl") != 200-16*500 {
		t.Fatalf("a huge charge left %v; want %d", f.level("tl"), 200-16*500)
	}
	// The debt is paid at the token rate: a lease of one token waits for
	// 7,801 tokens at 1,000/s (and 1 ms of rounding up).
	check(t, f.lease("a", want(1, 1, 1), limits), 0, 0, 7802*time.Millisecond)

	g := newFake(t, Config{})
	g.lease("a", want(1, 0, 0), actors.Limits{RequestsPerSecond: 10, RequestBurst: 5})
	if ok, err := g.store.Adjust(ctx, key, -10); err != nil || ok {
		t.Fatalf("adjusting a budget without a token limit: %v, %v", ok, err)
	}
}

func TestPauseStopsGrantsAndIsPublishedWhenExtended(t *testing.T) {
	f := newFake(t, Config{})
	ctx := context.Background()
	sub, err := f.store.Subscribe(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	f.lease("a", want(1, 0, 0), limits)
	f.advance(time.Second)

	pause := func(member string, until time.Time) bool {
		t.Helper()
		ok, err := f.store.Pause(ctx, key, member, until)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	until := time.Now().Add(2 * time.Second)
	if !pause("b", until) {
		t.Fatal("the first pause did not extend anything")
	}
	returned := time.Now()
	// Redis's clock stands still: the pause it holds is the time left on
	// the caller's clock when Pause sent it, between until-returned and 2s.
	g := f.lease("a", want(1, 0, 0), limits)
	if g.Requests != 0 || g.Wait > 2*time.Second || g.Wait < until.Sub(returned)-time.Microsecond {
		t.Fatalf("leased during a pause: %+v; want nothing and a wait of at most 2s, at least %v", g, until.Sub(returned))
	}
	// The receiver adds the time left to its own clock: never sooner than
	// until.
	ev := <-sub.C()
	if ev.Member != "b" || ev.Until.Before(until.Add(-time.Microsecond)) || ev.Until.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("published %+v; want member b, until %v or a little later", ev, until)
	}
	// A shorter pause changes nothing and is not published.
	if pause("c", time.Now().Add(time.Second)) {
		t.Fatal("a shorter pause extended the pause")
	}
	if pause("c", time.Now().Add(-time.Second)) {
		t.Fatal("a pause in the past extended the pause")
	}
	f.advance(g.Wait)
	check(t, f.lease("a", want(1, 0, 0), limits), 1, 0, 0)
	// The first message after the shorter ones is the next extension.
	if !pause("d", time.Now().Add(time.Second)) {
		t.Fatal("a pause after the last one ended did not extend anything")
	}
	if ev := <-sub.C(); ev.Member != "d" {
		t.Fatalf("published %+v after the shorter pauses; want member d's", ev)
	}
}

func TestAPausedKeyIsKeptAtLeastAsLongAsThePause(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	if ttl := f.mr.TTL(stateKey(key)); ttl != idleTTL {
		t.Fatalf("state kept for %v; want %v", ttl, idleTTL)
	}
	if _, err := f.store.Pause(context.Background(), key, "a", time.Now().Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ttl := f.mr.TTL(stateKey(key)); ttl < 3*time.Hour-time.Minute {
		t.Fatalf("state kept for %v during a pause of 3h", ttl)
	}
}

func TestTheLowestLiveLimitsApply(t *testing.T) {
	f := newFake(t, Config{LeaseTTL: time.Second, MemberTTL: 5 * time.Second})
	slow := actors.Limits{RequestsPerSecond: 2, RequestBurst: 2, TokensPerSecond: 100, TokenBurst: 100}
	noTokens := actors.Limits{RequestsPerSecond: 20, RequestBurst: 10}
	f.lease("fast", want(1, 0, 0), noTokens)
	f.lease("slow", want(1, 0, 0), slow)
	f.advance(time.Second) // at the slow member's limits: 2 requests, 100 tokens
	check(t, f.lease("fast", want(10, 0, 0), noTokens), 2, 0, 0)
	// The token limit of the only member that has one applies to all.
	check(t, f.lease("fast", want(1, 1, 1), noTokens), 0, 0, 501*time.Millisecond)
	if f.level("tps") != 100 || f.level("tb") != 100 {
		t.Fatalf("token limits %v/%v; want the slow member's 100/100", f.level("tps"), f.level("tb"))
	}
	// The slow member falls silent: after its member TTL its limits lapse
	// and the fast member's apply (the token limit with them: none).
	f.advance(5 * time.Second)
	g := f.lease("fast", want(30, 5000, 0), noTokens)
	if g.Requests != 2 { // refilled at the limits then in force, up to the slow burst
		t.Fatalf("granted %d requests as the slow member lapsed; want 2", g.Requests)
	}
	if f.mr.HGet(membersKey(key), "slow") != "" {
		t.Fatal("a silent member is still on record after its member TTL")
	}
	f.advance(time.Second)
	check(t, f.lease("fast", want(30, 5000, 0), noTokens), 10, 0, 0)
}

func TestALowerBurstCapsTheLevel(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(5 * time.Second) // 5 requests, 500 tokens
	small := actors.Limits{RequestsPerSecond: 10, RequestBurst: 2, TokensPerSecond: 1000, TokenBurst: 50}
	check(t, f.lease("b", want(10, 1000, 0), small), 2, 50, 0)
}

func TestAClockThatWentBackRefillsNothingUntilItCatchesUp(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(200 * time.Millisecond)
	check(t, f.lease("a", want(5, 0, 0), limits), 2, 0, 0)
	// A failover to a server 500 ms behind: the same 500 ms must not be
	// refilled twice.
	f.advance(-500 * time.Millisecond)
	check(t, f.lease("a", want(5, 0, 0), limits), 0, 0, 101*time.Millisecond)
	f.advance(500 * time.Millisecond)
	check(t, f.lease("a", want(5, 0, 0), limits), 0, 0, 101*time.Millisecond)
	f.advance(100 * time.Millisecond)
	check(t, f.lease("a", want(5, 0, 0), limits), 1, 0, 0)
}

func TestScriptsAreReloadedWhenRedisForgetsThem(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	if err := f.store.client.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	f.advance(time.Second)
	check(t, f.lease("a", want(1, 0, 0), limits), 1, 0, 0)
}

func TestPingChangesNothing(t *testing.T) {
	f := newFake(t, Config{})
	ctx := context.Background()
	if err := f.store.Ping(ctx, key); err != nil {
		t.Fatal(err)
	}
	if keys := f.mr.Keys(); len(keys) != 0 {
		t.Fatalf("a ping of a new budget wrote %v", keys)
	}
	f.lease("a", want(1, 0, 0), limits)
	f.advance(300 * time.Millisecond)
	before := f.mr.HGet(stateKey(key), "rl")
	if err := f.store.Ping(ctx, key); err != nil {
		t.Fatal(err)
	}
	if after := f.mr.HGet(stateKey(key), "rl"); after != before {
		t.Fatalf("the request level went from %s to %s on a ping", before, after)
	}
	// The 300 ms refilled since are still there for the next lease.
	check(t, f.lease("a", want(5, 0, 0), limits), 3, 0, 0)
}

func TestEmptyNamesAreRefused(t *testing.T) {
	f := newFake(t, Config{})
	ctx := context.Background()
	_, err1 := f.store.Lease(ctx, "", "a", want(1, 0, 0), limits)
	_, err2 := f.store.Lease(ctx, key, "", want(1, 0, 0), limits)
	_, err3 := f.store.Return(ctx, "", 1, 1, 1)
	_, err4 := f.store.Adjust(ctx, "", 1)
	_, err5 := f.store.Pause(ctx, key, "", time.Now().Add(time.Second))
	_, err6 := f.store.Subscribe(ctx, "")
	err7 := f.store.Ping(ctx, "")
	for i, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
		if !errors.Is(err, ErrEmptyName) {
			t.Errorf("call %d: %v; want ErrEmptyName", i+1, err)
		}
	}
	if keys := f.mr.Keys(); len(keys) != 0 {
		t.Fatalf("refused calls wrote %v", keys)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{LeaseTTL: -1}, {MemberTTL: -1}} {
		var ce *messages.ConfigError
		if _, err := New(nil, c); !errors.As(err, &ce) || !errors.Is(err, messages.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v; want a ConfigError", c, err)
		}
	}
	s, err := New(nil, Config{LeaseTTL: 2 * time.Second})
	if err != nil || s.cfg.MemberTTL != 20*time.Second {
		t.Fatalf("defaults: %+v, %v; want a member TTL of 10 lease TTLs", s.cfg, err)
	}
	if s, _ := New(nil, Config{}); s.cfg.LeaseTTL != DefaultLeaseTTL {
		t.Fatalf("default lease TTL %v", s.cfg.LeaseTTL)
	}
}

func TestNonsenseLimitsAreMadeSafe(t *testing.T) {
	for _, c := range []struct {
		in       actors.Limits
		rps, tps float64
		rb, tb   int64
	}{
		{in: actors.Limits{RequestsPerSecond: rate.Inf}},
		{in: actors.Limits{RequestsPerSecond: -3, RequestBurst: 5, TokensPerSecond: -1, TokenBurst: 9}},
		{in: actors.Limits{RequestsPerSecond: rate.Limit(math.NaN()), TokensPerSecond: rate.Limit(math.Inf(1))}},
		{in: actors.Limits{RequestsPerSecond: 4, RequestBurst: 0, TokensPerSecond: 10, TokenBurst: -2}, rps: 4, rb: 1, tps: 10, tb: 1},
		{in: actors.Limits{RequestsPerSecond: 4, RequestBurst: math.MaxInt, TokensPerSecond: 10, TokenBurst: 7}, rps: 4, rb: math.MaxInt32, tps: 10, tb: 7},
	} {
		rps, rb, tps, tb := encodeLimits(c.in)
		if rps != c.rps || rb != c.rb || tps != c.tps || tb != c.tb {
			t.Errorf("encodeLimits(%+v) = %v %v %v %v; want %v %v %v %v", c.in, rps, rb, tps, tb, c.rps, c.rb, c.tps, c.tb)
		}
	}
}

func TestPauseMessagesFromOthersAreIgnored(t *testing.T) {
	now := time.Now()
	for _, p := range []string{"", "12", "x member", "-5 member", "0 member", "5 "} {
		if ev, ok := parsePause(p, now); ok {
			t.Errorf("parsePause(%q) = %+v", p, ev)
		}
	}
	ev, ok := parsePause("1500 host-1 pid 7", now)
	if !ok || ev.Member != "host-1 pid 7" || !ev.Until.Equal(now.Add(1500*time.Microsecond)) {
		t.Fatalf("parsePause = %+v, %v", ev, ok)
	}
}

func TestLeaseIDsAreRandomNonZeroWithBit63Clear(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		id := randomID()
		if id == 0 || id&(1<<63) != 0 || seen[id] {
			t.Fatalf("lease ID %#x (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

func TestAnIdleBudgetIsForgottenAndStartsEmptyAgain(t *testing.T) {
	f := newFake(t, Config{})
	f.lease("a", want(1, 0, 0), limits)
	f.advance(idleTTL - time.Second)
	check(t, f.lease("a", want(10, 0, 0), limits), 5, 0, 0) // kept: full
	f.advance(idleTTL)
	if f.mr.Exists(stateKey(key)) || f.mr.Exists(membersKey(key)) {
		t.Fatal("an idle budget is still in Redis after the idle TTL")
	}
	check(t, f.lease("a", want(10, 0, 0), limits), 0, 0, 101*time.Millisecond)
}

func TestAMalformedMemberRecordIsDropped(t *testing.T) {
	f := newFake(t, Config{})
	f.mr.HSet(membersKey(key), "junk", "1 2 x")
	f.lease("a", want(1, 0, 0), limits)
	f.advance(time.Second)
	check(t, f.lease("a", want(10, 0, 0), limits), 5, 0, 0)
	if f.mr.HGet(membersKey(key), "junk") != "" {
		t.Fatal("a malformed member record was kept")
	}
}

// slot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag,
// the part between the first { and the next } if not empty, or of the
// whole key, modulo 16384.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for _, b := range []byte(key) {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func TestEveryKeyOfABudgetIsInOneClusterSlot(t *testing.T) {
	// The slot function against Redis's documented values.
	for k, want := range map[string]uint16{"123456789": 0x31C3 % 16384, "foo": 12182, "bar": 5061, "{user1000}.following": slot("user1000")} {
		if got := slot(k); got != want {
			t.Fatalf("slot(%q) = %d, want %d", k, got, want)
		}
	}
	for _, k := range []string{key, "a", "https://x.example/{model}/v1#ab", "}{", "weird}key{"} {
		names := []string{stateKey(k), membersKey(k), leaseKey(k, 1), leaseKey(k, 1<<62+12345), pauseChannel(k)}
		for _, n := range names[1:] {
			if slot(n) != slot(names[0]) {
				t.Errorf("budget %q: %s in slot %d, %s in slot %d", k, names[0], slot(names[0]), n, slot(n))
			}
		}
	}
	if slot(stateKey("a")) == slot(stateKey("b")) || slot(stateKey("x}1")) == slot(stateKey("x}2")) {
		t.Fatal("two budgets in one slot: the tag is not the whole budget key")
	}
	if got := stateKey("https://x/{m}%7D"); got != "lionactor:{https://x/%7Bm%7D%257D}:state" {
		t.Fatalf("state key %q: braces and %% not escaped", got)
	}
}

func TestAMemberChangingItsLimitsIsCountedAgain(t *testing.T) {
	f := newFake(t, Config{})
	low := actors.Limits{RequestsPerSecond: 2, RequestBurst: 2}
	f.lease("a", want(1, 0, 0), limits)
	f.lease("b", want(1, 0, 0), limits)
	f.lease("a", want(1, 0, 0), low) // a lowers its limits: they apply
	if f.level("rps") != 2 || f.level("rb") != 2 || f.level("tps") != 1000 {
		t.Fatalf("limits %v/%v, tokens %v; want a's new 2/2 and b's tokens", f.level("rps"), f.level("rb"), f.level("tps"))
	}
	f.advance(time.Second)
	f.lease("b", want(1, 0, 0), limits) // b unchanged: still a's
	if f.level("rps") != 2 {
		t.Fatalf("limits %v after b's lease; want still a's 2", f.level("rps"))
	}
	f.lease("a", want(1, 0, 0), limits) // a raises them back
	if f.level("rps") != 10 || f.level("rb") != 5 {
		t.Fatalf("limits %v/%v; want 10/5 again", f.level("rps"), f.level("rb"))
	}
}
