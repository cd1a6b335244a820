package budget

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// These tests run under the race detector, with the members and the
// service in one actor system; secure_remote_test.go runs the same over
// protoactor's remote layer, with TLS.

// secureService starts a service with the test secret, logging to logs.
func secureService(t *testing.T, logs io.Writer) (*actor.ActorSystem, *Service) {
	t.Helper()
	system := newSystem(slog.New(slog.DiscardHandler))
	t.Cleanup(system.Shutdown)
	svc, err := NewService(system, ServiceConfig{
		LeaseTTL: time.Second, Secret: Secret(testSecret),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	return system, svc
}

func stats(t *testing.T, svc *Service) ServiceStats {
	t.Helper()
	st, err := svc.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantRefused(t *testing.T, p *probe, nonce []byte, reason refusal) {
	t.Helper()
	m, ok := p.next(t).(*budgetpb.Refused)
	if !ok || m.GetReason() != string(reason) || !bytes.Equal(m.GetNonce(), nonce) {
		t.Fatalf("got %v, want Refused{%x, %q}", m, nonce, reason)
	}
}

func TestServiceAdmitsOnlyHoldersOfTheSecret(t *testing.T) {
	logs := &runtimetest.Buffer{}
	system, svc := secureService(t, logs)
	p := newProbe(t, system)
	me := pidName(p.pid)
	limits := &budgetpb.Limits{RequestsPerSecond: 1000, RequestBurst: 10}
	req := func(id uint64) *budgetpb.LeaseRequest {
		return &budgetpb.LeaseRequest{Key: "https://api.example.com#0123456789abcdef", RequestId: id, Requests: 1, Limits: limits}
	}
	send := func(m proto.Message) { system.Root.RequestWithCustomSender(svc.PID(), m, p.pid) }

	// Without proof: refused, and nothing of it kept.
	send(req(1))
	wantRefused(t, p, nil, refusedNoProof)
	for _, m := range []proto.Message{
		&budgetpb.LeaseReturn{Key: "k", LeaseId: 1, Requests: 5},
		&budgetpb.TokenAdjust{Key: "k", Delta: 1 << 40},
		&budgetpb.Pause{Key: "k", DurationNanos: int64(time.Hour)},
		&budgetpb.Ping{Id: 3},
	} {
		send(m)
		wantRefused(t, p, nil, refusedNoProof)
	}
	// A wrong secret: refused, the refusal echoing the message's nonce.
	wrong := newSealer(Secret(otherSecret)).seal(req(2), toService, me, time.Now())
	send(wrong)
	wantRefused(t, p, wrong.GetNonce(), refusedBadProof)
	if st := stats(t, svc); st.Keys != 0 || st.Members != 0 || st.Granted != 0 || st.Pauses != 0 || st.RefusedMessages != 6 {
		t.Fatalf("after refusals: %+v", st)
	}

	// The secret: a grant, signed.
	member := newSealer(Secret(testSecret))
	good := member.seal(req(3), toService, me, time.Now())
	send(good)
	sg, ok := p.next(t).(*budgetpb.Signed)
	if !ok {
		t.Fatalf("got %v, want a signed grant", sg)
	}
	g, why := member.open(sg, toMember, me, time.Now())
	if why != "" || g.(*budgetpb.LeaseGrant).GetRequestId() != 3 {
		t.Fatalf("grant %v, %q", g, why)
	}
	// The same message again is a replay.
	send(good)
	wantRefused(t, p, good.GetNonce(), refusedReplay)
	if st := stats(t, svc); st.Keys != 1 || st.Members != 1 || st.Granted != 1 || st.RefusedMessages != 7 {
		t.Errorf("after one member joined: %+v", st)
	}

	// A service without a secret refuses signed messages rather than
	// answer unsigned ones a member would not believe.
	system2 := newSystem(slog.New(slog.DiscardHandler))
	defer system2.Shutdown()
	open, err := NewService(system2, ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Stop()
	p2 := newProbe(t, system2)
	signed := member.seal(req(4), toService, pidName(p2.pid), time.Now())
	system2.Root.RequestWithCustomSender(open.PID(), signed, p2.pid)
	wantRefused(t, p2, signed.GetNonce(), refusedNoSecret)
	if st := stats(t, open); st.RefusedMessages != 1 || st.Keys != 0 {
		t.Errorf("a service without a secret took a signed message: %+v", st)
	}

	text := logs.String()
	if !strings.Contains(text, "budget: refused a message") || !strings.Contains(text, string(refusedNoProof)) {
		t.Errorf("no refusal logged:\n%s", text)
	}
	if strings.Contains(text, "0123456789abcdef") || strings.Contains(text, testSecret) {
		t.Errorf("the log shows the key's hash or the secret:\n%s", text)
	}
}

func TestServiceRefusalsAreThrottled(t *testing.T) {
	logs := &runtimetest.Buffer{}
	system, svc := secureService(t, logs)
	p := newProbe(t, system)
	const bogus = 2000
	start := time.Now()
	forger := newSealer(Secret(otherSecret))
	for i := range bogus {
		var m proto.Message = &budgetpb.LeaseRequest{Key: "k", RequestId: uint64(i), Requests: 1000}
		if i%2 == 1 {
			m = forger.seal(m, toService, pidName(p.pid), time.Now())
		}
		system.Root.RequestWithCustomSender(svc.PID(), m, p.pid)
	}
	runtimetest.WaitFor(t, 30*time.Second, "every bogus message refused", func() bool { return stats(t, svc).RefusedMessages == bogus })
	elapsed := time.Since(start)
	// The service has sent every answer by now; a marker sent to the probe
	// after them comes after them.
	type marker struct{}
	system.Root.Send(p.pid, &marker{})
	replies := 0
	for {
		m := p.next(t)
		if _, ok := m.(*marker); ok {
			break
		}
		if _, ok := m.(*budgetpb.Refused); !ok {
			t.Fatalf("the forger got %T %v", m, m)
		}
		replies++
	}
	if most := refusalReplies * (2 + int(elapsed/time.Second)); replies > most {
		t.Errorf("%d refusals answered in %v, want at most %d", replies, elapsed, most)
	}
	lines := strings.Count(logs.String(), "budget: refused a message")
	if most := 2 + int(elapsed/time.Second); lines > most {
		t.Errorf("%d refusal lines logged in %v, want at most %d", lines, elapsed, most)
	}
	t.Logf("%d bogus messages refused in %v; %d answered, %d lines logged", bogus, elapsed, replies, lines)
}

// noHash returns the part of KeyFor's name that comes from the API key.
func noHash(key string) string {
	_, hash, _ := strings.Cut(key, "#")
	return hash
}

func TestLocalMembersWithoutTheSecretAreRefusedAndKeepToTheirShare(t *testing.T) {
	const perMember = 30
	svcLogs := &runtimetest.Buffer{}
	r := newLocalRun(t, 12_000, 40, time.Second, func(c *ServiceConfig) {
		c.Secret = Secret(testSecret)
		c.Logger = slog.New(slog.NewTextHandler(svcLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	good := r.join(t, 3, func(c *MemberConfig) { c.Secret = Secret(testSecret) })
	none := r.join(t, 3)
	wrong := r.join(t, 3, func(c *MemberConfig) { c.Secret = Secret(otherSecret) })
	all := []*localExec{good, none, wrong}
	var hs [][]*runtime.Handle
	for _, m := range all {
		hs = append(hs, m.submit(t, perMember))
	}
	for i := range hs {
		if n, _ := completed(t, hs[i]); n != perMember {
			t.Errorf("member %d: %d of %d COMPLETED", i, n, perMember)
		}
	}
	if st := good.ex.Stats().Shared; st.Mode != messages.SharedJoined || st.Fallbacks != 0 || st.Leases == 0 {
		t.Errorf("member with the secret: %+v, want joined with leases", st)
	}
	for name, tt := range map[string]struct {
		m    *localExec
		want refusal
	}{"no secret": {none, refusedNoProof}, "wrong secret": {wrong, refusedBadProof}} {
		st := tt.m.ex.Stats().Shared
		if st.Mode != messages.SharedFallback || !strings.Contains(st.Reason, string(tt.want)) || st.Fallbacks != 1 {
			t.Errorf("%s: %+v, want fallen back, refused: %q", name, st, tt.want)
		}
		if text := tt.m.logs.String(); !strings.Contains(text, refusedMsg) || !strings.Contains(text, string(tt.want)) {
			t.Errorf("%s: member does not log its refusal:\n%s", name, text)
		}
	}
	ss := stats(t, r.svc)
	if ss.Members != 1 || ss.RefusedMessages == 0 {
		t.Errorf("service: %+v, want one member and refusals counted", ss)
	}
	if leases := good.ex.Stats().Shared.Leases; ss.Granted != leases {
		t.Errorf("service granted %d leases, the member with the secret received %d: the others got some", ss.Granted, leases)
	}
	key := KeyFor(r.baseURL, localKey)
	for _, text := range []string{svcLogs.String(), good.logs.String(), none.logs.String(), wrong.logs.String(),
		fmt.Sprintf("%+v", ss), fmt.Sprintf("%+v %+v", good.ex.Stats(), wrong.ex.Stats())} {
		if strings.Contains(text, noHash(key)) || strings.Contains(text, testSecret) || strings.Contains(text, otherSecret) {
			t.Errorf("the key's hash or a secret shows:\n%s", text)
		}
	}
}

func TestLocalMemberIgnoresAnswersWithoutProof(t *testing.T) {
	// The service has no secret, the member has one: it believes none of
	// the service's answers, and keeps to its share.
	r := newLocalRun(t, 12_000, 40, time.Second)
	m := r.join(t, 2, func(c *MemberConfig) { c.Secret = Secret(testSecret) })
	if n, _ := completed(t, m.submit(t, 5)); n != 5 {
		t.Fatalf("%d of 5 completed", n)
	}
	st := m.ex.Stats().Shared
	if st.Mode != messages.SharedFallback || !strings.Contains(st.Reason, string(refusedNoSecret)) {
		t.Errorf("member: %+v, want fallen back, refused: %q", st, refusedNoSecret)
	}
	if ss := stats(t, r.svc); ss.Granted != 0 || ss.RefusedMessages == 0 {
		t.Errorf("service: %+v", ss)
	}
}

func TestLocalRefusalsFromOthersAreIgnored(t *testing.T) {
	r := newLocalRun(t, 12_000, 40, time.Second, func(c *ServiceConfig) { c.Secret = Secret(testSecret) })
	m := r.join(t, 2, func(c *MemberConfig) { c.Secret = Secret(testSecret) })
	if n, _ := completed(t, m.submit(t, 3)); n != 3 {
		t.Fatalf("%d of 3 completed", n)
	}
	// Anyone can send a member a Refused; one that does not echo a
	// message of the member's is not believed.
	broker := actor.NewPID(m.ex.System().Address(), m.ex.PID().Id+"/budget")
	for _, nonce := range [][]byte{nil, make([]byte, 16), []byte("guess")} {
		r.system.Root.Send(broker, &budgetpb.Refused{Nonce: nonce, Reason: "forged"})
	}
	if n, _ := completed(t, m.submit(t, 3)); n != 3 {
		t.Fatalf("%d of 3 completed", n)
	}
	if st := m.ex.Stats().Shared; st.Mode != messages.SharedJoined || st.Fallbacks != 0 {
		t.Errorf("after forged refusals: %+v, want still joined", st)
	}
}
