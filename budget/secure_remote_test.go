//go:build !race

// Several remote layers in one process: built without the race detector,
// as remote_test.go explains. The same checks run under -race, in one
// actor system, in secure_test.go.

package budget

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// remoteMember is an executor in a process of its own, as far as the
// remote layer goes: its own actor system and port.
type remoteMember struct {
	ex   *runtime.Executor
	logs *runtimetest.Buffer
}

func startRemoteMember(t *testing.T, addr string, edit func(*MemberConfig)) *remoteMember {
	t.Helper()
	logs := &runtimetest.Buffer{}
	cfg := runtime.DefaultConfig()
	cfg.Concurrency = 4
	cfg.RequestsPerInterval, cfg.RequestInterval, cfg.RequestBurst = 600, time.Second, 10
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	mc := MemberConfig{
		Address: addr, Key: KeyFor("https://api.example.com/v1", "sk-remote-secure-0001"), ExpectedMembers: 3,
		ReplyTimeout: 300 * time.Millisecond, RejoinInterval: 100 * time.Millisecond,
	}
	if edit != nil {
		edit(&mc)
	}
	cfg.SharedBudget = mc
	ex, err := runtime.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.StopNow(context.Background()) })
	return &remoteMember{ex: ex, logs: logs}
}

// run submits n no-op requests and waits for them all to complete.
func (m *remoteMember) run(t *testing.T, n int) {
	t.Helper()
	call := messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })
	hs := make([]*runtime.Handle, n)
	for i := range hs {
		h, err := m.ex.Submit(context.Background(), messages.Request{Call: call})
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range hs {
		if ev, err := h.Wait(ctx); err != nil || ev.Status != messages.StatusCompleted {
			t.Fatalf("request ended %v, %v", ev.Status, err)
		}
	}
}

func TestRemoteTLSAdmitsOnlyCertifiedMembers(t *testing.T) {
	pki, other := newTestPKI(t, "ours"), newTestPKI(t, "theirs")
	svcLogs := &runtimetest.Buffer{}
	srv, err := Listen("127.0.0.1:0", ServiceConfig{
		TLS: pki.issue(t, "service"), Logger: slog.New(slog.NewTextHandler(svcLogs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	good := startRemoteMember(t, srv.Addr(), func(c *MemberConfig) { c.TLS = pki.issue(t, "member") })
	stranger := startRemoteMember(t, srv.Addr(), func(c *MemberConfig) {
		c.TLS = other.issue(t, "stranger")
		c.TLS.CA = pki.ca // it trusts the service; the service does not trust it
	})
	plain := startRemoteMember(t, srv.Addr(), nil)
	for _, m := range []*remoteMember{good, stranger, plain} {
		m.run(t, 30)
	}

	if st := good.ex.Stats().Shared; st.Mode != messages.SharedJoined || st.Leases == 0 || st.Fallbacks != 0 {
		t.Errorf("certified member: %+v, want joined, with leases", st)
	}
	st := stranger.ex.Stats().Shared
	if st.Mode != messages.SharedFallback || !strings.Contains(st.Reason, "refused this member's certificate") {
		t.Errorf("member with a certificate of another CA: %+v, want fallen back, its certificate refused", st)
	}
	if text := stranger.logs.String(); !strings.Contains(text, refusedMsg) || !strings.Contains(text, "certificate") {
		t.Errorf("the refused member does not say so:\n%s", text)
	}
	if st := plain.ex.Stats().Shared; st.Mode != messages.SharedFallback {
		t.Errorf("member without TLS: %+v, want fallen back", st)
	}
	if text := plain.logs.String(); !strings.Contains(text, unreachableMsg) {
		t.Errorf("the member without TLS does not log its fallback:\n%s", text)
	}

	ss, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ss.Members != 1 || ss.Granted != good.ex.Stats().Shared.Leases || ss.RefusedConnections < 2 {
		t.Errorf("service: %+v; want one member, every lease to it, and both others' connections refused", ss)
	}
	if text := svcLogs.String(); !strings.Contains(text, "budget: refused a connection") {
		t.Errorf("the service does not log the refusals:\n%s", text)
	}
}

func TestRemoteListenWithoutTLSStaysOnLoopback(t *testing.T) {
	_, err := Listen("0.0.0.0:0", ServiceConfig{})
	wantConfigError(t, err, "addr")
	logs := &runtimetest.Buffer{}
	srv, err := Listen("0.0.0.0:0", ServiceConfig{Insecure: true, Secret: Secret(testSecret), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if !strings.Contains(logs.String(), "without TLS on a network address") {
		t.Errorf("an insecure service does not say so:\n%s", logs.String())
	}
	pki := newTestPKI(t, "ca")
	srv, err = Listen("0.0.0.0:0", ServiceConfig{TLS: pki.issue(t, "service")})
	if err != nil {
		t.Fatalf("Listen with TLS on every interface: %v", err)
	}
	srv.Close()
	if _, err := Listen("127.0.0.1:0", ServiceConfig{TLS: TLSFiles{Cert: "gone.pem", Key: "gone.pem", CA: "gone.pem"}}); err == nil {
		t.Error("Listen with missing TLS files: no error")
	} else {
		wantConfigError(t, err, "TLS.Cert")
	}
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()
	_, err = NewService(system, ServiceConfig{TLS: pki.issue(t, "service")})
	wantConfigError(t, err, "TLS")
}

func TestRemoteAttachWithTLSOnAStartedRemote(t *testing.T) {
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()
	r, err := startRemote(system, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownRemote(r)
	mc := goodMemberConfig()
	mc.TLS = newTestPKI(t, "ca").issue(t, "member")
	_, _, err = mc.Attach(system, bucketLimits, nil)
	wantConfigError(t, err, "SharedBudget.TLS")
}

func TestRemoteGracefulStopReturnsLeasesOverTheNetwork(t *testing.T) {
	const ttl = 5 * time.Second
	srv, err := Listen("127.0.0.1:0", ServiceConfig{LeaseTTL: ttl, Secret: Secret(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := startRemoteMember(t, srv.Addr(), func(c *MemberConfig) {
		c.Secret, c.ReplyTimeout = Secret(testSecret), ttl
	})
	// As in TestLocalGracefulStopReturnsLeasesAtOnce: another member
	// pauses the key, the member's lease request waits, its requests are
	// cancelled, and the lease arrives with nothing to spend it on.
	p := newProbe(t, srv.system)
	probe := newSealer(Secret(testSecret))
	key := KeyFor("https://api.example.com/v1", "sk-remote-secure-0001")
	tell := func(m proto.Message) {
		srv.system.Root.RequestWithCustomSender(srv.PID(), probe.seal(m, toService, pidName(p.pid), time.Now()), p.pid)
	}
	tell(&budgetpb.LeaseRequest{Key: key, RequestId: 1, Requests: 1, Limits: &budgetpb.Limits{RequestsPerSecond: 600, RequestBurst: 10}})
	if _, ok := p.next(t).(*budgetpb.Signed); !ok {
		t.Fatal("the probe got no lease")
	}
	tell(&budgetpb.Pause{Key: key, DurationNanos: int64(time.Second)})
	call := messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })
	var hs []*runtime.Handle
	for range 4 {
		h, err := m.ex.Submit(context.Background(), messages.Request{Call: call})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	runtimetest.WaitFor(t, 5*time.Second, "the member asks for a lease", func() bool {
		st, err := srv.Stats()
		return err == nil && st.Waiting == 1
	})
	for _, h := range hs {
		h.Cancel()
		h.Wait(context.Background())
	}
	runtimetest.WaitFor(t, 10*time.Second, "the lease arrives", func() bool { return m.ex.Stats().Shared.HeldRequests > 0 })
	held := m.ex.Stats().Shared.HeldRequests

	if err := m.ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	mine := m.ex.System().Address() + "/" + m.ex.PID().Id + "/budget"
	if st.Returned != 1 || st.ReturnedRequests != held || st.Expired != 0 || st.LeasesByMember[mine] != 0 {
		t.Errorf("service once the member's Stop returned: %+v; want its lease of %d returned, none expired", st, held)
	}
}

// grantLatencies asks the service at addr for n leases one after the
// other, from a remote layer of its own (with tlsFiles' TLS if set, and
// signed with secret if set), and returns the time each grant took to come
// back.
func grantLatencies(t testing.TB, addr string, n int, secret Secret, tlsFiles TLSFiles) []time.Duration {
	service := actor.NewPID(addr, ServiceName)
	system := newSystem(slog.New(slog.DiscardHandler))
	var opts []remote.ConfigOption
	if tlsFiles.Enabled() {
		server, client, err := tlsFiles.load("TLS")
		if err != nil {
			t.Fatal(err)
		}
		opts = remoteOptions(server, client, &tlsWatch{})
	}
	r, err := startRemote(system, "127.0.0.1", 0, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer system.Shutdown()
	defer shutdownRemote(r)
	member := newSealer(secret)
	out := make([]time.Duration, 0, n)
	for i := range n {
		f := actor.NewFuture(system, 10*time.Second)
		start := time.Now()
		var req proto.Message = &budgetpb.LeaseRequest{Key: "https://api.example.com#bench", RequestId: uint64(i), Requests: 1, Limits: &budgetpb.Limits{}}
		if member != nil {
			req = member.seal(req, toService, pidName(f.PID()), start)
		}
		system.Root.RequestWithCustomSender(service, req, f.PID())
		res, err := f.Result()
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		switch res.(type) {
		case *budgetpb.Signed, *budgetpb.LeaseGrant:
		default:
			t.Fatalf("lease %d: got %T %v", i, res, res)
		}
		out = append(out, time.Since(start))
	}
	return out
}

func TestRemoteFloodOfBogusRequestsLeavesMembersServed(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", ServiceConfig{Secret: Secret(testSecret), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	stop := make(chan struct{})
	sent, done := flood(t, srv.Addr(), stop, 0)
	runtimetest.WaitFor(t, 10*time.Second, "the flood under way", func() bool {
		st, err := srv.Stats()
		return err == nil && st.RefusedMessages > 1000
	})
	lat := grantLatencies(t, srv.Addr(), 200, Secret(testSecret), TLSFiles{})
	close(stop)
	<-done
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RefusedMessages == 0 || st.RefusedMessages > sent.Load() {
		t.Errorf("%d refused of %d bogus requests sent", st.RefusedMessages, sent.Load())
	}
	// Each lease was asked for by a future of its own: as many members.
	if st.Keys != 1 || st.Granted != int64(len(lat)) || st.Members != len(lat) {
		t.Errorf("service after the flood: %d keys, %d members, %d leases; want only the member's key, members and grants", st.Keys, st.Members, st.Granted)
	}
	slices.Sort(lat)
	t.Logf("%d bogus requests refused; grants during the flood: median %v, p99 %v", sent.Load(), lat[len(lat)/2], lat[len(lat)*99/100])
}

// BenchmarkGrantLatencyUnderFlood measures one member's lease round trip
// to a service, alone and while another process floods the service:
//
//   - secret: a service with a secret; the flood is bogus lease requests,
//     half without proof and half with a wrong one, 30,000 a second, or as
//     fast as one remote connection takes them (flood=max);
//   - tls: a service with mutual TLS; the flood is TLS handshakes offering
//     a certificate of another CA, one after the other.
//
// It reports the median and 99th percentile grant latency, and the bogus
// requests or connections refused per second.
func BenchmarkGrantLatencyUnderFlood(b *testing.B) {
	pki, other := newTestPKI(b, "ours"), newTestPKI(b, "theirs")
	serviceTLS, memberTLS := pki.issue(b, "service"), pki.issue(b, "member")
	stranger := other.issue(b, "stranger")
	for _, mode := range []string{"secret", "tls"} {
		floods := []string{"none", "max"}
		if mode == "secret" {
			floods = []string{"none", "30000", "max"}
		}
		for _, rate := range floods {
			flooded := rate != "none"
			b.Run(fmt.Sprintf("mode=%s/flood=%s", mode, rate), func(b *testing.B) {
				cfg := ServiceConfig{Logger: slog.New(slog.DiscardHandler)}
				var secret Secret
				var files TLSFiles
				if mode == "secret" {
					cfg.Secret, secret = Secret(testSecret), Secret(testSecret)
				} else {
					cfg.TLS, files = serviceTLS, memberTLS
				}
				srv, err := Listen("127.0.0.1:0", cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				refused := func() int64 {
					st, err := srv.Stats()
					if err != nil {
						b.Fatal(err)
					}
					return st.RefusedMessages + st.RefusedConnections
				}
				grantLatencies(b, srv.Addr(), 100, secret, files) // warm up
				if flooded {
					spec := "messages " + srv.Addr() + " " + strings.Replace(rate, "max", "0", 1)
					if mode == "tls" {
						spec = strings.Join([]string{"tls", srv.Addr(), stranger.Cert, stranger.Key, pki.ca}, " ")
					}
					defer startFlood(b, spec)()
					runtimetest.WaitFor(b, 30*time.Second, "the flood under way", func() bool { return refused() > 100 })
				}
				before := refused()
				b.ResetTimer()
				start := time.Now()
				lat := grantLatencies(b, srv.Addr(), b.N, secret, files)
				elapsed := time.Since(start)
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
				b.ReportMetric(float64(refused()-before)/elapsed.Seconds(), "refused/s")
			})
		}
	}
}
