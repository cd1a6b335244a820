package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/redisbudget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/redistest"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// Members of a budget on a real redis-server, each executor with an actor
// system of its own and no remote layer: these run under the race
// detector.

// redisPassword is the password of the servers these tests start; it must
// never show.
const redisPassword = "r3dis-s3cret-pa55"

// redisRun is a simulator enforcing a limit and a redis-server keeping the
// budget, on loopback.
type redisRun struct {
	sim     *simulator.Server
	baseURL string
	srv     *redistest.Server
	url     string // with the user and password
	perMin  int
	burst   int
	// leaseTTL, if set, is the lease TTL of the members' stores.
	leaseTTL time.Duration
}

func newRedisRun(t *testing.T, perMin, burst int) *redisRun {
	t.Helper()
	srv := redistest.Start(t, redistest.Config{TCP: true, Conf: []string{
		"user default off",
		"user lion on >" + redisPassword + " ~lionactor:* &lionactor:* +@all",
	}})
	sim, err := simulator.New(simulator.Config{
		RequestsPerMinute: perMin, RequestBurst: burst,
		Latency: 5 * time.Millisecond, CompletionTokens: 8, Seed: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return &redisRun{sim: sim, baseURL: base + "/v1", srv: srv, perMin: perMin, burst: burst,
		url: "redis://lion:" + redisPassword + "@" + srv.Addr + "/0"}
}

// redisMember is a MemberConfig whose store has a lease TTL of the test's.
type redisMember struct {
	MemberConfig
	leaseTTL time.Duration
}

func (m redisMember) Attach(system *actor.ActorSystem, limits actors.Limits, logger *slog.Logger) (*actor.Props, func(), error) {
	if m.leaseTTL == 0 {
		return m.MemberConfig.Attach(system, limits, logger)
	}
	c := m.withDefaults()
	link, err := newRedisLink(c.Address)
	if err != nil {
		return nil, nil, err
	}
	if link.store, err = redisbudget.New(link.client, redisbudget.Config{LeaseTTL: m.leaseTTL}); err != nil {
		return nil, nil, err
	}
	return brokerProps(c, limits, logger, func() backend { return newRedisBackend(c, link) }), link.close, nil
}

// join starts a member with an actor system of its own, whose executor
// believes it alone has the whole limit.
func (r *redisRun) join(t *testing.T, expected int, edit ...func(*MemberConfig)) *localExec {
	t.Helper()
	logs := &runtimetest.Buffer{}
	cfg := runtime.DefaultConfig()
	cfg.QueueCapacity = 5000
	cfg.Concurrency = 8
	cfg.RequestsPerInterval, cfg.RequestInterval = r.perMin, time.Minute
	cfg.RequestBurst = r.burst / 4
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	mc := MemberConfig{
		Address: r.url, Key: KeyFor(r.baseURL, localKey), ExpectedMembers: expected,
		ReplyTimeout: 300 * time.Millisecond, RejoinInterval: 50 * time.Millisecond,
	}
	for _, e := range edit {
		e(&mc)
	}
	cfg.SharedBudget = redisMember{MemberConfig: mc, leaseTTL: r.leaseTTL}
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.StopNow(context.Background()) })
	model, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: r.baseURL, APIKey: localKey, Model: "gpt-4o-mini"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { model.Close() })
	return &localExec{ex: ex, model: model, logs: logs}
}

// client is a client of the run's server, for looking at the budget.
func (r *redisRun) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.srv.Addr, Username: "lion", Password: redisPassword})
	t.Cleanup(func() { c.Close() })
	return c
}

// leaseKeys lists the records of leases in Redis.
func leaseKeys(t *testing.T, c *redis.Client) []string {
	t.Helper()
	var keys []string
	iter := c.Scan(context.Background(), 0, "lionactor:*:lease:*", 100).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// rateOver is the simulator's arrivals per second over their span, as a
// fraction of the limit.
func (r *redisRun) rateOver() (frac float64, n int) {
	arr := r.sim.Arrivals()
	if len(arr) < 2 {
		return 0, len(arr)
	}
	return float64(len(arr)-1) / arr[len(arr)-1].Sub(arr[0]).Seconds() / (float64(r.perMin) / 60), len(arr)
}

// noSecretIn fails t if a text shows the password or the hash of the key.
func noSecretIn(t *testing.T, key string, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if strings.Contains(text, redisPassword) || strings.Contains(text, noHash(key)) {
			t.Errorf("the password or the key's hash shows:\n%s", text)
		}
	}
}

func TestRedisMembersShareOneLimit(t *testing.T) {
	const perMember = 200
	r := newRedisRun(t, 12_000, 40) // 200 requests/s
	ms := []*localExec{r.join(t, 3), r.join(t, 3), r.join(t, 3)}
	var hs [][]*runtime.Handle
	for _, m := range ms {
		hs = append(hs, m.submit(t, perMember))
	}
	for i := range hs {
		if n, _ := completed(t, hs[i]); n != perMember {
			t.Errorf("member %d: %d of %d COMPLETED", i, n, perMember)
		}
	}
	if st := r.sim.Stats(); st.RateLimited != 0 {
		t.Errorf("%d 429s from the simulator, want none", st.RateLimited)
	}
	frac, n := r.rateOver()
	t.Logf("three members on Redis: %.3f of the limit over %d requests", frac, n)
	// The budget starts empty and grants at most its rate plus the burst
	// of a member (10 requests, 1.7% of 600) over the run.
	if frac < 0.95 || frac > 1.05 {
		t.Errorf("achieved %.3f of the limit, want 0.95–1.05", frac)
	}
	key := KeyFor(r.baseURL, localKey)
	for i, m := range ms {
		st := m.ex.Stats().Shared
		if st.Mode != messages.SharedJoined || st.Fallbacks != 0 || st.Leases == 0 || st.LeasedRequests < perMember {
			t.Errorf("member %d: %+v, want joined with leases for its requests", i, st)
		}
		noSecretIn(t, key, m.logs.String(), fmt.Sprintf("%+v", m.ex.Stats()))
	}
}

// TestRedisKilledMembersFallBackAndRejoin kills redis-server while three
// members are busy: each falls back to a third of the limit, without a
// 429, and rejoins once the server is back (empty: nothing is persisted).
func TestRedisKilledMembersFallBackAndRejoin(t *testing.T) {
	const perMember = 300
	r := newRedisRun(t, 12_000, 40)
	ms := []*localExec{r.join(t, 3), r.join(t, 3), r.join(t, 3)}
	var hs [][]*runtime.Handle
	for _, m := range ms {
		hs = append(hs, m.submit(t, perMember))
	}
	runtimetest.WaitFor(t, time.Minute, "150 requests made", func() bool { return r.sim.Stats().Requests >= 150 })
	r.srv.Kill()
	killed := time.Now()
	for i, m := range ms {
		runtimetest.WaitFor(t, 10*time.Second, fmt.Sprintf("member %d falls back", i), func() bool {
			return m.ex.Stats().Shared.Mode == messages.SharedFallback
		})
	}
	t.Logf("every member fell back %v after the kill", time.Since(killed).Round(time.Millisecond))
	r.srv.Restart(t)
	for i, m := range ms {
		runtimetest.WaitFor(t, 10*time.Second, fmt.Sprintf("member %d rejoins", i), func() bool {
			st := m.ex.Stats().Shared
			return st.Mode == messages.SharedJoined && st.Rejoins == 1
		})
	}
	for i := range hs {
		if n, _ := completed(t, hs[i]); n != perMember {
			t.Errorf("member %d: %d of %d COMPLETED", i, n, perMember)
		}
	}
	key := KeyFor(r.baseURL, localKey)
	for i, m := range ms {
		logs := m.logs.String()
		for _, want := range []string{
			"lionactor: budget on Redis unreachable; using the local share",
			"expected_members=3", "requests_per_second=66.6",
			"lionactor: budget on Redis reachable again; rejoined",
			"redis=redis://lion:xxxxx@" + r.srv.Addr + "/0",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("member %d does not log %q:\n%s", i, want, logs)
			}
		}
		noSecretIn(t, key, logs, fmt.Sprintf("%+v", m.ex.Stats()))
	}
	if st := r.sim.Stats(); st.RateLimited != 0 {
		t.Errorf("%d 429s with the server killed and back, want none", st.RateLimited)
	}
	// The restarted server grants again.
	c := r.client(t)
	for i, m := range ms {
		before := m.ex.Stats().Shared.Leases
		if n, _ := completed(t, m.submit(t, 5)); n != 5 {
			t.Errorf("member %d after rejoining: %d of 5 COMPLETED", i, n)
		}
		if st := m.ex.Stats().Shared; st.Leases == before || st.Mode != messages.SharedJoined {
			t.Errorf("member %d after rejoining: %+v, want new leases from Redis", i, st)
		}
	}
	if n, err := c.Exists(context.Background(), "lionactor:{"+key+"}:state").Result(); err != nil || n != 1 {
		t.Errorf("the restarted server has no budget state (%d, %v)", n, err)
	}
}

// TestRedisMemberStoppedAbruptlyLosesNothing stops one member of three at
// once (its leases are not given back), as a crash would: the others finish
// every request without a 429, and the lease records in Redis lapse.
func TestRedisMemberStoppedAbruptlyLosesNothing(t *testing.T) {
	const perMember = 200
	r := newRedisRun(t, 12_000, 40)
	victim, a, b := r.join(t, 3), r.join(t, 3), r.join(t, 3)
	victim.submit(t, perMember)
	hs := [][]*runtime.Handle{a.submit(t, perMember), b.submit(t, perMember)}
	runtimetest.WaitFor(t, time.Minute, "100 requests made", func() bool { return r.sim.Stats().Requests >= 100 })
	if err := victim.ex.StopNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.client(t)
	keys := leaseKeys(t, c)
	for _, k := range keys {
		// Every record lapses within two lease TTLs of its grant.
		// -2: lapsed since the scan; -1 would be a record kept forever.
		if ttl := c.PTTL(context.Background(), k).Val(); ttl == -1 || ttl > 2*redisbudget.DefaultLeaseTTL {
			t.Errorf("lease record %s lasts %v more", k, ttl)
		}
	}
	for i := range hs {
		if n, _ := completed(t, hs[i]); n != perMember {
			t.Errorf("member %d: %d of %d COMPLETED", i, n, perMember)
		}
	}
	if st := r.sim.Stats(); st.RateLimited != 0 {
		t.Errorf("%d 429s, want none", st.RateLimited)
	}
	runtimetest.WaitFor(t, 10*time.Second, "every lease record to lapse", func() bool { return len(leaseKeys(t, c)) == 0 })
	t.Logf("%d lease records when the member stopped; none left after the run", len(keys))
}

// TestRedisGracefulStopReturnsLeasesAtOnce holds a lease with nothing to
// spend it on, and stops: the lease is back in Redis when Stop returns,
// long before it would have expired.
func TestRedisGracefulStopReturnsLeasesAtOnce(t *testing.T) {
	r := newRedisRun(t, 60, 4) // one request a second, in leases of one
	r.leaseTTL = time.Minute
	c := r.client(t)
	m := r.join(t, 2, func(mc *MemberConfig) { mc.ReplyTimeout = 5 * time.Second })
	if n, _ := completed(t, m.submit(t, 1)); n != 1 { // the budget starts empty: a second
		t.Fatal("the first request failed")
	}
	// The next lease takes a second to refill; its requests are cancelled
	// meanwhile, so that it arrives with nothing to spend it on.
	hs := m.submit(t, 3)
	for _, h := range hs {
		h.Cancel()
	}
	completed(t, hs)
	runtimetest.WaitFor(t, 10*time.Second, "the lease arrives", func() bool { return m.ex.Stats().Shared.HeldRequests > 0 })
	held := m.ex.Stats().Shared
	if n := len(leaseKeys(t, c)); n != 2 {
		t.Fatalf("%d lease records in Redis, want 2 (%+v)", n, held)
	}
	start := time.Now()
	if err := m.ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// The held lease was returned, which deletes its record; the spent
	// one's stays until it lapses.
	if n := len(leaseKeys(t, c)); n != 1 {
		t.Errorf("%d lease records in Redis after Stop, want 1", n)
	}
	if after := m.ex.Stats().Shared; after.Returned != 1 || after.ReturnedRequests != held.HeldRequests || after.HeldRequests != 0 {
		t.Errorf("member after stop: %+v, want its held lease of %d returned", after, held.HeldRequests)
	}
	if took >= 5*time.Second {
		t.Errorf("Stop took %v: it waited out the reply timeout", took)
	}
	t.Logf("held %d requests; Stop returned them in %v", held.HeldRequests, took.Round(time.Millisecond))
}

func TestRedisPauseReachesOtherMembers(t *testing.T) {
	r := newRedisRun(t, 60_000, 100)
	a, b := r.join(t, 2), r.join(t, 2)
	for _, m := range []*localExec{a, b} {
		if n, _ := completed(t, m.submit(t, 1)); n != 1 {
			t.Fatal("warm-up request failed")
		}
	}
	// A short pause is not shared.
	a.ex.PauseUntil(time.Now().Add(5 * time.Millisecond))
	until := time.Now().Add(300 * time.Millisecond)
	a.ex.PauseUntil(until)
	runtimetest.WaitFor(t, 5*time.Second, "b learns of a's pause", func() bool { return !b.ex.Stats().PausedUntil.IsZero() })
	if got := b.ex.Stats().PausedUntil; got.Before(until.Add(-100*time.Millisecond)) || got.After(until.Add(100*time.Millisecond)) {
		t.Errorf("b paused until %v, a until %v", got, until)
	}
	_, evs := completed(t, b.submit(t, 3))
	for _, ev := range evs {
		if ev.Status != messages.StatusCompleted {
			t.Fatalf("request ended %v", ev.Status)
		}
		if ev.Timings().CallStarted.Before(until.Add(-50 * time.Millisecond)) {
			t.Errorf("b's request started at %v, during a's pause (until %v)", ev.Timings().CallStarted, until)
		}
	}
}

func TestRedisWrongPasswordIsARefusal(t *testing.T) {
	r := newRedisRun(t, 12_000, 40)
	m := r.join(t, 2, func(mc *MemberConfig) {
		mc.Address = "redis://lion:not-" + redisPassword + "@" + r.srv.Addr + "/0"
	})
	if n, _ := completed(t, m.submit(t, 5)); n != 5 {
		t.Fatalf("%d of 5 completed on the local share", n)
	}
	st := m.ex.Stats().Shared
	if st.Mode != messages.SharedFallback || !strings.Contains(st.Reason, "WRONGPASS") {
		t.Errorf("member: %+v, want fallen back, refused", st)
	}
	if logs := m.logs.String(); !strings.Contains(logs, "lionactor: budget on Redis refused this member; using the local share") {
		t.Errorf("the member does not say it was refused:\n%s", logs)
	}
	noSecretIn(t, KeyFor(r.baseURL, localKey), m.logs.String(), fmt.Sprintf("%+v", st))
}

// A server that accepts and never answers: the member falls back after its
// reply timeout, and says so.
func TestRedisSilentServerIsDown(t *testing.T) {
	silent := redistest.Silent(t)
	r := newRedisRun(t, 12_000, 40)
	m := r.join(t, 2, func(mc *MemberConfig) {
		mc.Address = "redis://" + silent + "?max_retries=-1"
		mc.ReplyTimeout = 100 * time.Millisecond
	})
	if n, _ := completed(t, m.submit(t, 3)); n != 3 {
		t.Fatalf("%d of 3 completed", n)
	}
	if st := m.ex.Stats().Shared; st.Mode != messages.SharedFallback || st.Reason != "no answer within 100ms" {
		t.Errorf("member: %+v", st)
	}
}

// The pauses a member publishes come back to it through its own
// subscription: it skips them, and hands the broker the others'.
func TestRedisBackendSkipsItsOwnPauses(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	link, err := newRedisLink(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer link.close()
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()
	p := newProbe(t, system)
	cfg := MemberConfig{Address: srv.URL(), Key: "k", ExpectedMembers: 2}.withDefaults()
	be := newRedisBackend(cfg, link)
	be.root, be.self = system.Root, p.pid
	be.subscribe()
	if _, ok := p.next(t).(*subscribeDone); !ok || !be.subscribed() {
		t.Fatal("not subscribed")
	}
	ctx := context.Background()
	mine, theirs := time.Now().Add(time.Minute), time.Now().Add(2*time.Minute)
	for _, pause := range []struct {
		member string
		until  time.Time
	}{{link.member, mine}, {"another", theirs}} {
		if ok, err := link.store.Pause(ctx, "k", pause.member, pause.until); err != nil || !ok {
			t.Fatalf("pause: %v, %v", ok, err)
		}
	}
	// Published in order on one connection: the first to arrive is the
	// other member's, so this member's own was skipped.
	got, ok := p.next(t).(*pauseShared)
	if !ok || got.until.Before(theirs) || got.until.After(theirs.Add(time.Second)) {
		t.Fatalf("the broker got %+v, want the other member's pause until %v", got, theirs)
	}
	be.stop()
	if be.subscribed() {
		t.Fatal("still subscribed after stop")
	}
}

func TestRedisDownSaysWhyWithoutSecrets(t *testing.T) {
	key := KeyFor("https://api.example.com/v1", "sk-redis-down")
	link, err := newRedisLink("redis://u:" + redisPassword + "@127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer link.close()
	be := newRedisBackend(MemberConfig{Address: "redis://127.0.0.1:1", Key: key, ReplyTimeout: time.Second}, link)
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		err     error
		reason  string
		refused bool
	}{
		{context.DeadlineExceeded, "no answer within 1s", false},
		{fmt.Errorf("redisbudget: lease from %q: %w", key, timeout), "no answer within 1s", false},
		{fmt.Errorf("redisbudget: lease from %q: %w", key, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")),
			"Redis: dial tcp 127.0.0.1:1: connect: connection refused", false},
		{fmt.Errorf("redisbudget: return to %q: %w", key, errors.New("WRONGPASS invalid username-password pair")),
			"Redis: WRONGPASS invalid username-password pair", true},
		{errors.New("NOPERM no permissions to run the 'evalsha' command"), "Redis: NOPERM no permissions to run the 'evalsha' command", true},
		{fmt.Errorf("redisbudget: ping %q: %w", key, fmt.Errorf("ERR about %s with %s", key, redisPassword)),
			"Redis: ERR about https://api.example.com/v1#… with xxxxx", false},
	} {
		d := be.down(c.err)
		if d.reason != c.reason || d.refused != c.refused {
			t.Errorf("down(%v) = %+v; want %q, refused %v", c.err, d, c.reason, c.refused)
		}
	}
}

func TestMemberConfigOnRedis(t *testing.T) {
	good := MemberConfig{Address: "redis://lion:" + redisPassword + "@10.0.0.5:6379/0", Key: "k", ExpectedMembers: 3}
	for _, addr := range []string{good.Address, "rediss://cache.example.com:6380", "unix:///run/redis.sock",
		"redis://10.0.0.5:26379?master_name=main&addr=10.0.0.6:26379"} {
		c := good
		c.Address = addr
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for field, edit := range map[string]func(*MemberConfig){
		"Address":    func(c *MemberConfig) { c.Address = "redis://lion:" + redisPassword + "@host:port" },
		"ListenAddr": func(c *MemberConfig) { c.ListenAddr = "127.0.0.1:0" },
		"TLS":        func(c *MemberConfig) { c.TLS = TLSFiles{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"} },
		"Secret":     func(c *MemberConfig) { c.Secret = Secret(testSecret) },
	} {
		c := good
		edit(&c)
		err := c.Validate()
		wantConfigError(t, err, "SharedBudget."+field)
		if strings.Contains(err.Error(), redisPassword) {
			t.Errorf("%s: the error shows the password: %v", field, err)
		}
	}
	if d := good.withDefaults(); d.ListenAddr != "" || d.ReplyTimeout != DefaultReplyTimeout {
		t.Errorf("defaults on Redis: %+v", d)
	}
	withSecrets := MemberConfig{Address: "127.0.0.1:7070", Key: KeyFor("https://api.example.com", "sk-x"), ExpectedMembers: 2,
		ListenAddr: "127.0.0.1:0", Secret: Secret(testSecret), TLS: TLSFiles{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}}
	bad := good
	bad.Address = "redis://u:" + redisPassword + "@host:port"
	for _, c := range []MemberConfig{good, withSecrets, bad} {
		for _, text := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), c.String()} {
			if strings.Contains(text, redisPassword) || strings.Contains(text, testSecret) || strings.Contains(text, noHash(withSecrets.Key)) {
				t.Errorf("a secret shows in %s", text)
			}
		}
	}
	if s := good.String(); !strings.Contains(s, "redis://lion:xxxxx@10.0.0.5:6379/0") || !strings.Contains(s, "ExpectedMembers: 3") {
		t.Errorf("String() = %s", s)
	}
	if s := withSecrets.String(); !strings.Contains(s, "Secret: "+messages.Redacted) || !strings.Contains(s, "ListenAddr") {
		t.Errorf("String() = %s", s)
	}
}

// Attach with a Redis URL starts no remote layer: a member of a budget on
// Redis listens on nothing.
func TestAttachOnRedisStartsNoRemote(t *testing.T) {
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()
	c := MemberConfig{Address: "redis://127.0.0.1:1/0", Key: "k", ExpectedMembers: 2}
	props, release, err := c.Attach(system, bucketLimits, nil)
	if err != nil || props == nil {
		t.Fatalf("Attach: %v", err)
	}
	release()
	if remoteOf(system) != nil {
		t.Fatal("a remote layer was started")
	}
	bad := c
	bad.ListenAddr = "127.0.0.1:0"
	if _, _, err := bad.Attach(system, bucketLimits, nil); err == nil {
		t.Fatal("Attach with a listen address on Redis")
	}
}
