//go:build !race

// protoactor-go races with itself when one process runs several remote
// layers: remote.Start sets gRPC's global logger, which every gRPC goroutine
// of the other remotes reads, and Remote.Shutdown writes a flag its own
// endpoint goroutines read. Production has one remote per process; these
// tests need four, so they run in builds without the race detector (.ci/run
// runs them). The same protocol runs under -race in shared_test.go, with
// the members and the service in one actor system.

package budget_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

const testKey = "sk-test-shared-budget-0001"

// sharedRun is one simulator enforcing a limit, one budget service, and
// members each with its own executor, actor system and remote port.
type sharedRun struct {
	sim      *simulator.Server
	baseURL  string
	server   *budget.Server
	members  []*member
	perMin   int // the key's request limit, per minute
	burst    int // the simulator's request burst
	memberFn func(*runtime.Config, *budget.MemberConfig)
}

type member struct {
	ex    *runtime.Executor
	model *imodel.Model
	logs  *runtimetest.Buffer
}

func newSharedRun(t *testing.T, perMin, burst int, ttl time.Duration) *sharedRun {
	t.Helper()
	sim, err := simulator.New(simulator.Config{
		RequestsPerMinute: perMin,
		RequestBurst:      burst,
		Latency:           10 * time.Millisecond,
		LatencyJitter:     5 * time.Millisecond,
		CompletionTokens:  8,
		Seed:              7,
	})
	if err != nil {
		t.Fatal(err)
	}
	baseURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	srv, err := budget.Listen("127.0.0.1:0", budget.ServiceConfig{LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	r := &sharedRun{sim: sim, baseURL: baseURL + "/v1", server: srv, perMin: perMin, burst: burst}
	t.Cleanup(r.closeServer)
	return r
}

func (r *sharedRun) closeServer() {
	if r.server != nil {
		r.server.Close()
		r.server = nil
	}
}

// join starts a member: its executor believes it alone has the whole limit
// (a burst a little under the simulator's), so only the shared budget can
// keep the members together within it.
func (r *sharedRun) join(t *testing.T, expected int, addr string) *member {
	t.Helper()
	logs := &runtimetest.Buffer{}
	cfg := runtime.DefaultConfig()
	cfg.QueueCapacity = 10_000
	cfg.Concurrency = 16
	cfg.RequestsPerInterval, cfg.RequestInterval = r.perMin, time.Minute
	cfg.RequestBurst = r.burst / 4
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	mc := budget.MemberConfig{
		Address:         addr,
		Key:             budget.KeyFor(r.baseURL, testKey),
		ExpectedMembers: expected,
		ReplyTimeout:    300 * time.Millisecond,
		RejoinInterval:  100 * time.Millisecond,
	}
	if r.memberFn != nil {
		r.memberFn(&cfg, &mc)
	}
	cfg.SharedBudget = mc
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.StopNow(context.Background()) })
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: r.baseURL, APIKey: testKey, Model: "gpt-4o-mini",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { model.Close() })
	m := &member{ex: ex, model: model, logs: logs}
	r.members = append(r.members, m)
	return m
}

// submit queues n chat requests on m and returns their handles.
func (m *member) submit(t *testing.T, n int) []*runtime.Handle {
	t.Helper()
	hs := make([]*runtime.Handle, n)
	for i := range hs {
		h, err := m.model.SubmitChat(context.Background(), imodel.ChatRequest{
			Messages:  []imodel.Message{{Role: "user", Content: fmt.Sprintf("request %d", i)}},
			MaxTokens: 8,
		})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		hs[i] = h
	}
	return hs
}

// wait waits for every handle and counts the final statuses.
func wait(t *testing.T, hs []*runtime.Handle) map[messages.RequestStatus]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	counts := map[messages.RequestStatus]int{}
	for _, h := range hs {
		ev, err := h.Wait(ctx)
		if ctx.Err() != nil {
			t.Fatalf("request %s did not end: %v", h.ID(), err)
		}
		counts[ev.Status]++
	}
	return counts
}

// achieved is the rate the simulator saw over its arrivals, as a fraction
// of the limit: (arrivals − 1) over their span. The service's bucket starts
// empty, so no initial burst inflates it.
func (r *sharedRun) achieved(t *testing.T) float64 {
	t.Helper()
	arr := r.sim.Arrivals()
	if len(arr) < 2 {
		t.Fatalf("%d arrivals", len(arr))
	}
	span := arr[len(arr)-1].Sub(arr[0]).Seconds()
	return float64(len(arr)-1) / span / (float64(r.perMin) / 60)
}

func TestThreeMembersShareOneLimit(t *testing.T) {
	const perMember = 1000
	r := newSharedRun(t, 24_000, 40, time.Second) // 400 requests/s
	var hs [3][]*runtime.Handle
	for range hs {
		r.join(t, 3, r.server.Addr())
	}
	for i, m := range r.members {
		hs[i] = m.submit(t, perMember)
	}
	for i := range hs {
		counts := wait(t, hs[i])
		if counts[messages.StatusCompleted] != perMember {
			t.Errorf("member %d: %v, want %d COMPLETED", i, counts, perMember)
		}
	}
	st := r.sim.Stats()
	if st.RateLimited != 0 || st.ByStatus[429] != 0 {
		t.Errorf("simulator answered %d 429s (%d rate limited), want none", st.ByStatus[429], st.RateLimited)
	}
	if st.Requests != 3*perMember {
		t.Errorf("simulator saw %d requests, want %d", st.Requests, 3*perMember)
	}
	frac := r.achieved(t)
	t.Logf("achieved %.3f of the limit, %d requests", frac, st.Requests)
	if frac < 0.90 || frac > 1.05 {
		t.Errorf("achieved %.3f of the limit, want 0.90–1.05", frac)
	}
	ss, err := r.server.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ss.Members != 3 || ss.Keys != 1 {
		t.Errorf("service knows %d members of %d keys, want 3 of 1", ss.Members, ss.Keys)
	}
	if ss.GrantedRequests-ss.ReturnedRequests < 3*perMember {
		t.Errorf("service granted %d requests net of returns, fewer than the %d made", ss.GrantedRequests-ss.ReturnedRequests, 3*perMember)
	}
	t.Logf("service: %d leases for %d requests, %d returned, %d expired", ss.Granted, ss.GrantedRequests, ss.Returned, ss.Expired)
	for i, m := range r.members {
		if strings.Contains(m.logs.String(), "unreachable") {
			t.Errorf("member %d fell back although the service was up:\n%s", i, m.logs.String())
		}
	}
}

func TestServiceGoneMembersFallBackAndRejoin(t *testing.T) {
	const perMember = 600
	r := newSharedRun(t, 24_000, 40, time.Second)
	addr := r.server.Addr()
	var hs [3][]*runtime.Handle
	for range hs {
		r.join(t, 3, addr)
	}
	for i, m := range r.members {
		hs[i] = m.submit(t, perMember)
	}
	runtimetest.WaitFor(t, time.Minute, "simulator saw 400 requests", func() bool { return r.sim.Stats().Requests >= 400 })
	r.closeServer()
	for i := range hs {
		counts := wait(t, hs[i])
		if counts[messages.StatusCompleted] != perMember {
			t.Errorf("member %d: %v, want %d COMPLETED", i, counts, perMember)
		}
	}
	for i, m := range r.members {
		if !strings.Contains(m.logs.String(), "budget service unreachable; using the local share") {
			t.Errorf("member %d did not log its fallback:\n%s", i, m.logs.String())
		}
	}
	// The local shares add up to the limit and start empty; what could
	// still collide is leases granted just before the service went, at
	// most one burst of the service's bucket.
	st := r.sim.Stats()
	t.Logf("with the service gone after 400 requests: %d 429s, %d requests", st.RateLimited, st.Requests)
	if st.RateLimited > int64(r.burst/4) {
		t.Errorf("%d 429s, want at most %d (one service burst)", st.RateLimited, r.burst/4)
	}

	// The service comes back at the same address: members rejoin.
	srv, err := budget.Listen(addr, budget.ServiceConfig{LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.server = srv
	for i, m := range r.members {
		runtimetest.WaitFor(t, 30*time.Second, fmt.Sprintf("member %d rejoins", i), func() bool {
			return strings.Contains(m.logs.String(), "rejoined")
		})
	}
	for i, m := range r.members {
		counts := wait(t, m.submit(t, 20))
		if counts[messages.StatusCompleted] != 20 {
			t.Errorf("member %d after rejoining: %v", i, counts)
		}
	}
	ss, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ss.Members != 3 || ss.GrantedRequests < 60 {
		t.Errorf("restarted service: %d members, %d requests granted; want 3 members and ≥ 60", ss.Members, ss.GrantedRequests)
	}
}

func TestMemberKilledOthersGoOnAndLeasesExpire(t *testing.T) {
	const perMember = 600
	ttl := 500 * time.Millisecond
	r := newSharedRun(t, 24_000, 40, ttl)
	var hs [3][]*runtime.Handle
	for range hs {
		r.join(t, 3, r.server.Addr())
	}
	for i, m := range r.members {
		hs[i] = m.submit(t, perMember)
	}
	runtimetest.WaitFor(t, time.Minute, "simulator saw 300 requests", func() bool { return r.sim.Stats().Requests >= 300 })
	victim := r.members[0]
	brokerOf := func(m *member) string {
		return m.ex.System().Address() + "/" + m.ex.PID().Id + "/budget"
	}
	// A kill: the member's network goes at once, nothing is given back.
	remote.GetRemote(victim.ex.System()).Shutdown(false)
	killed := time.Now()
	victim.ex.StopNow(context.Background())
	runtimetest.WaitFor(t, ttl+time.Second, "the dead member's leases expire", func() bool {
		ss, err := r.server.Stats()
		return err == nil && ss.LeasesByMember[brokerOf(victim)] == 0
	})
	if d := time.Since(killed); d > ttl+500*time.Millisecond {
		t.Errorf("leases of the dead member held for %v, lease TTL %v", d, ttl)
	}
	for i := 1; i < 3; i++ {
		counts := wait(t, hs[i])
		if counts[messages.StatusCompleted] != perMember {
			t.Errorf("member %d: %v, want %d COMPLETED", i, counts, perMember)
		}
	}
	if st := r.sim.Stats(); st.RateLimited != 0 {
		t.Errorf("%d 429s after a member died, want none", st.RateLimited)
	}
}

// BenchmarkSharedBudgetNoOpCall runs no-op calls through one member whose
// permits come from a service over loopback remote, with the limits far
// above what the machine can do: the cost of leasing itself. It reports
// requests per lease (how well leases amortise the round trip).
func BenchmarkSharedBudgetNoOpCall(b *testing.B) {
	for _, shared := range []bool{false, true} {
		b.Run(fmt.Sprintf("shared=%v", shared), func(b *testing.B) {
			srv, err := budget.Listen("127.0.0.1:0", budget.ServiceConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cfg := runtime.DefaultConfig()
			cfg.QueueCapacity = b.N + 1
			cfg.Concurrency = 16
			cfg.RequestsPerInterval, cfg.RequestBurst = 10_000_000, 100_000
			if shared {
				cfg.SharedBudget = budget.MemberConfig{Address: srv.Addr(), Key: "bench", ExpectedMembers: 1}
			}
			ex, err := runtime.Start(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer ex.StopNow(context.Background())
			call := messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })
			b.ResetTimer()
			hs := make([]*runtime.Handle, b.N)
			for i := range hs {
				if hs[i], err = ex.Submit(context.Background(), messages.Request{Call: call}); err != nil {
					b.Fatal(err)
				}
			}
			for _, h := range hs {
				h.Wait(context.Background())
			}
			b.StopTimer()
			if shared {
				st, _ := srv.Stats()
				b.ReportMetric(float64(st.GrantedRequests)/float64(max(st.Granted, 1)), "requests/lease")
			}
		})
	}
}
