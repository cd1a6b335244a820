package redisbudget

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/internal/redistest"
	"github.com/lionactor/lionactor/internal/runtimetest"
)

// Against a real redis-server, started by each test.

// open returns a Store on the server at rawURL, closed at the end of t.
func open(t testing.TB, rawURL string, cfg Config) *Store {
	t.Helper()
	o, err := ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	client := o.NewClient()
	t.Cleanup(func() { _ = client.Close() })
	s, err := New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// instant refills any bucket within a microsecond: every lease finds the
// buckets full, whatever the time between calls (a round trip is never
// under one).
var instant = actors.Limits{RequestsPerSecond: 1e9, RequestBurst: 5, TokensPerSecond: 1e12, TokenBurst: 500}

// exercise runs every script once against a real server and checks what
// does not depend on time: the scripts' Lua is the server's (Lua 5.1 and
// its number formatting), not miniredis's.
func exercise(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	k := fmt.Sprintf("%s/%s", key, t.Name())
	sub, err := s.Subscribe(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	// A new budget starts empty: one request in exactly 100 ms, plus 1.
	g, err := s.Lease(ctx, k, "a", want(3, 30, 10), limits)
	if err != nil {
		t.Fatal(err)
	}
	check(t, g, 0, 0, 101*time.Millisecond)

	// Another member with higher limits: a's, the lowest, still apply,
	// and the bucket holds what 10/s refilled since, under one request.
	g, err = s.Lease(ctx, k, "b", want(10, 1000, 10), instant)
	if err != nil {
		t.Fatal(err)
	}
	if g.Requests != 0 || g.Wait <= 0 || g.Wait > 101*time.Millisecond {
		t.Fatalf("lease at a's limits: %+v; want nothing, and a wait under 101ms", g)
	}

	// Partial: 5 of 10 requests, tokens in proportion.
	k2 := k + "/2"
	if g, err = s.Lease(ctx, k2, "b", want(1, 0, 0), instant); err != nil {
		t.Fatal(err)
	}
	g, err = s.Lease(ctx, k2, "b", want(10, 1000, 10), instant)
	if err != nil {
		t.Fatal(err)
	}
	check(t, g, 5, 500, 0)
	for i, wantOK := range []bool{true, false} {
		ok, err := s.Return(ctx, k2, g.ID, 5, 500)
		if err != nil || ok != wantOK {
			t.Fatalf("return %d: %v, %v; want %v", i+1, ok, err, wantOK)
		}
	}
	if ok, err := s.Adjust(ctx, k2, -10); err != nil || !ok {
		t.Fatalf("adjust: %v, %v", ok, err)
	}
	if ok, err := s.Pause(ctx, k2, "b", time.Now().Add(time.Minute)); err != nil || !ok {
		t.Fatalf("pause: %v, %v", ok, err)
	}
	g, err = s.Lease(ctx, k2, "b", want(1, 0, 0), instant)
	if err != nil || g.Requests != 0 || g.Wait < 59*time.Second || g.Wait > time.Minute {
		t.Fatalf("lease during a pause of a minute: %+v, %v", g, err)
	}
	// The subscription is to k, not k2: a pause of k arrives, k2's did not.
	if ok, err := s.Pause(ctx, k, "c", time.Now().Add(time.Second)); err != nil || !ok {
		t.Fatalf("pause: %v, %v", ok, err)
	}
	if ev := <-sub.C(); ev.Member != "c" {
		t.Fatalf("pause event %+v; want c's", ev)
	}
	// Scripts flushed from the server are loaded again.
	if err := s.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Return(ctx, k2, 1, 1, 1); err != nil {
		t.Fatal(err)
	}
}

func TestScriptsOnARealServer(t *testing.T) {
	t.Run("unix socket", func(t *testing.T) {
		exercise(t, open(t, redistest.Start(t, redistest.Config{}).URL(), Config{}))
	})
	t.Run("loopback port", func(t *testing.T) {
		exercise(t, open(t, redistest.Start(t, redistest.Config{TCP: true}).URL(), Config{}))
	})
	t.Run("TLS", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Config{TLS: true})
		exercise(t, open(t, srv.URL(), Config{}))
		// Without the test's CA, the server's certificate is refused.
		s := open(t, "rediss://"+srv.Addr+"?max_retries=-1", Config{})
		if _, err := s.Lease(context.Background(), key, "a", want(1, 0, 0), limits); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("lease over TLS from an unknown CA: %v", err)
		}
	})
	t.Run("Sentinel", func(t *testing.T) {
		primary := redistest.Start(t, redistest.Config{TCP: true})
		port := strings.TrimPrefix(primary.Addr, "127.0.0.1:")
		redistest.Start(t, redistest.Config{TCP: true, Conf: []string{"replicaof 127.0.0.1 " + port}})
		sentinel := redistest.Start(t, redistest.Config{Sentinel: &redistest.Sentinel{Primary: primary.Addr}})
		exercise(t, open(t, sentinel.URL(), Config{}))
	})
	t.Run("cluster", func(t *testing.T) {
		// A script whose keys were in different slots would fail here
		// with CROSSSLOT; the pause channel is a cluster-wide one.
		srv := redistest.Start(t, redistest.Config{Cluster: true})
		client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
		defer client.Close()
		s, err := New(client, Config{})
		if err != nil {
			t.Fatal(err)
		}
		exercise(t, s)
	})
}

func TestAuthenticationWithAnACLUser(t *testing.T) {
	const password = "c0rrect-h0rse"
	srv := redistest.Start(t, redistest.Config{TCP: true, Conf: []string{
		"user default off",
		"user lion on >" + password + " ~lionactor:* &lionactor:* +@all",
	}})
	exercise(t, open(t, "redis://lion:"+password+"@"+srv.Addr+"/0", Config{}))

	for _, u := range []string{
		"redis://lion:wr0ng-h0rse@" + srv.Addr + "/0?max_retries=-1",
		"redis://" + srv.Addr + "/0?max_retries=-1",
	} {
		s := open(t, u, Config{})
		_, err := s.Lease(context.Background(), key, "a", want(1, 0, 0), limits)
		if err == nil {
			t.Fatalf("%s: leased without the right password", u)
		}
		if strings.Contains(err.Error(), "h0rse") {
			t.Fatalf("the error shows a password: %v", err)
		}
		o, _ := ParseURL(u)
		if strings.Contains(fmt.Sprintf("%v %+v %#v %s", o, o, o, o), "h0rse") {
			t.Fatalf("the options show a password")
		}
	}
	if strings.Contains(logs.String(), "h0rse") {
		t.Fatalf("the client's log shows a password:\n%s", logs.String())
	}
}

// Many callers on one key: the permits granted and not given back never
// exceed what the rates refilled since the key was made (it starts empty).
func TestConcurrentLeasesNeverExceedTheLimit(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{TCP: true})
	o, err := ParseURL(srv.URL() + "?pool_size=32")
	if err != nil {
		t.Fatal(err)
	}
	client := o.NewClient()
	defer client.Close()
	s, err := New(client, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		callers = 16
		rps     = 200.0
		tps     = 20000.0
		run     = time.Second
	)
	l := actors.Limits{RequestsPerSecond: rps, RequestBurst: 20, TokensPerSecond: tps, TokenBurst: 2000}
	var granted, grantedTokens, returned, returnedTokens, empty atomic.Int64
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			member := fmt.Sprintf("member-%d", c%4)
			for i := 0; time.Since(start) < run; i++ {
				g, err := s.Lease(ctx, key, member, want(int64(1+i%3), int64(100*(1+i%3)), 100), l)
				if err != nil {
					errs <- err
					return
				}
				if g.Requests == 0 {
					empty.Add(1)
					continue // ask again at once: the most contention
				}
				granted.Add(g.Requests)
				grantedTokens.Add(g.Tokens)
				if i%4 == 0 { // give back a part now and then
					r, tk := (g.Requests+1)/2, (g.Tokens+1)/2
					if ok, err := s.Return(ctx, key, g.ID, r, tk); err != nil || !ok {
						errs <- fmt.Errorf("return: %v, %v", ok, err)
						return
					}
					returned.Add(r)
					returnedTokens.Add(tk)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	used, usedTokens := granted.Load()-returned.Load(), grantedTokens.Load()-returnedTokens.Load()
	t.Logf("%.2f s: %d requests and %d tokens granted, %d and %d given back, %d empty answers",
		elapsed, granted.Load(), grantedTokens.Load(), returned.Load(), returnedTokens.Load(), empty.Load())
	// The server's clock and ours run at one rate on one machine; 1 for
	// the difference of the two clocks over a second.
	if limit := rps*elapsed + 1; float64(used) > limit {
		t.Fatalf("%d requests used in %.3f s; the limit allows %.1f", used, elapsed, limit)
	}
	if limit := tps*elapsed + 100; float64(usedTokens) > limit {
		t.Fatalf("%d tokens used in %.3f s; the limit allows %.1f", usedTokens, elapsed, limit)
	}
	if granted.Load() == 0 || empty.Load() == 0 {
		t.Fatal("the callers never met an empty bucket: the test measured nothing")
	}
}

// Many callers returning one lease at once: exactly one return counts.
func TestALeaseIsReturnedExactlyOnceUnderConcurrency(t *testing.T) {
	s := open(t, redistest.Start(t, redistest.Config{}).URL(), Config{})
	ctx := context.Background()
	if _, err := s.Lease(ctx, key, "a", want(1, 0, 0), instant); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		g, err := s.Lease(ctx, key, "a", want(2, 0, 0), instant)
		if err != nil || g.Requests == 0 {
			t.Fatalf("lease: %+v, %v", g, err)
		}
		var wg sync.WaitGroup
		var accepted atomic.Int64
		for range 8 {
			wg.Go(func() {
				if ok, err := s.Return(ctx, key, g.ID, 1, 0); err != nil {
					t.Error(err)
				} else if ok {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
		if accepted.Load() != 1 {
			t.Fatalf("lease %d returned %d times", g.ID, accepted.Load())
		}
	}
}

func TestAStoppedServerIsAnErrorNotAHang(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	s := open(t, srv.URL(), Config{})
	sub, err := s.Subscribe(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.Lease(ctx, key, "a", want(1, 0, 0), limits); err == nil {
		t.Fatal("leased from a stopped server")
	}
	if _, err := s.Subscribe(ctx, key+"2"); err == nil {
		t.Fatal("subscribed on a stopped server")
	}
	if _, err := s.Return(ctx, key, 1, 1, 1); err == nil {
		t.Fatal("returned to a stopped server")
	}
	if _, err := s.Adjust(ctx, key, 1); err == nil {
		t.Fatal("adjusted on a stopped server")
	}
	if _, err := s.Pause(ctx, key, "a", time.Now().Add(time.Second)); err == nil {
		t.Fatal("paused on a stopped server")
	}
	if err := s.Ping(ctx, key); err == nil {
		t.Fatal("pinged a stopped server")
	}
	// The subscription comes back with the server (the client subscribes
	// again when it reconnects); a pause published before it has will not
	// arrive, so publish until one does.
	srv.Restart(t)
	deadline := time.After(20 * time.Second)
	for i := 1; ; i++ {
		if _, err := s.Pause(context.Background(), key, "b", time.Now().Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-sub.C():
			if ev.Member != "b" {
				t.Fatalf("event %+v", ev)
			}
			if err := sub.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
				t.Fatal(err)
			}
			if _, open := <-sub.C(); open {
				t.Fatal("C still open after Close")
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no pause event within 20 s of the server's restart")
		}
	}
}

func TestClosingASubscriptionNobodyReads(t *testing.T) {
	s := open(t, redistest.Start(t, redistest.Config{}).URL(), Config{})
	ctx := context.Background()
	sub, err := s.Subscribe(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// Two pauses published, none read: the forwarder is blocked on C.
	for i := 1; i <= 2; i++ {
		if _, err := s.Pause(ctx, key, "a", time.Now().Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
}

// Through Sentinel, a failover to the replica: leases go on from the new
// primary, with the budget as replicated, and its script cache empty (the
// scripts are loaded again).
func TestLeasesGoOnAfterASentinelFailover(t *testing.T) {
	primary := redistest.Start(t, redistest.Config{TCP: true})
	replica := redistest.Start(t, redistest.Config{TCP: true, Conf: []string{
		"replicaof 127.0.0.1 " + strings.TrimPrefix(primary.Addr, "127.0.0.1:")}})
	sentinel := redistest.Start(t, redistest.Config{Sentinel: &redistest.Sentinel{
		Primary: primary.Addr, DownAfter: 300 * time.Millisecond}})
	s := open(t, sentinel.URL(), Config{})
	ctx := context.Background()
	slow := actors.Limits{RequestsPerSecond: 0.001, RequestBurst: 5, TokensPerSecond: 1000, TokenBurst: 500}
	if _, err := s.Lease(ctx, key, "a", want(1, 0, 0), slow); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Adjust(ctx, key, -300); err != nil || !ok {
		t.Fatalf("adjust: %v, %v", ok, err)
	}
	// The replica has the budget before the primary goes.
	r := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer r.Close()
	runtimetest.WaitFor(t, 10*time.Second, "the replica to have the budget", func() bool {
		return r.HGet(ctx, stateKey(key), "tl").Val() != ""
	})
	if loaded, err := r.ScriptExists(ctx, leaseScript.Hash()).Result(); err != nil || loaded[0] {
		t.Fatalf("the replica has the lease script (%v, %v): the test would not show it loaded again", loaded, err)
	}
	primary.Kill()
	start := time.Now()
	var g Grant
	runtimetest.WaitFor(t, 30*time.Second, "a lease from the new primary", func() bool {
		var err error
		g, err = s.Lease(ctx, key, "a", want(1, 0, 0), slow)
		return err == nil
	})
	t.Logf("leases again %v after the primary was killed", time.Since(start).Round(time.Millisecond))
	if role := r.Do(ctx, "ROLE").Val().([]any)[0]; role != "master" {
		t.Fatalf("the replica's role is %v after the failover", role)
	}
	// The key was not new there: at 0.001 requests/s it holds no request.
	if g.Requests != 0 || g.Wait < time.Minute {
		t.Fatalf("lease after the failover: %+v; want the replicated, empty budget", g)
	}
	if tl, _ := r.HGet(ctx, stateKey(key), "tl").Float64(); tl < 300 {
		t.Fatalf("token level %v on the new primary; want the 300 refunded and more", tl)
	}
}

// A server that accepts connections and never answers: a call ends at its
// context's deadline, not at the client's read timeout (an hour here).
func TestACallEndsAtItsDeadline(t *testing.T) {
	addr := redistest.Silent(t)
	s := open(t, "redis://"+addr+"?read_timeout=1h&write_timeout=1h&dial_timeout=1h&max_retries=-1", Config{})
	ended := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := s.Lease(ctx, key, "a", want(1, 0, 0), limits)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("a lease from a server that never answers")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call outlived its deadline by 30 s")
	}
}
