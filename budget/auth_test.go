package budget

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/messages"
)

const (
	testSecret  = "correct horse battery staple 42"
	otherSecret = "incorrect horse battery staple 7"
	memberPID   = "127.0.0.1:40001/lionactor$1/budget"
)

func TestSealerOpensWhatItSeals(t *testing.T) {
	now := time.Now()
	member, service := newSealer(Secret(testSecret)), newSealer(Secret(testSecret))
	req := &budgetpb.LeaseRequest{Key: "k", RequestId: 7, Requests: 3, Tokens: 100, Limits: &budgetpb.Limits{RequestsPerSecond: 5, RequestBurst: 2}}
	sm := member.seal(req, toService, memberPID, now)
	if len(sm.GetMac()) != 32 || len(sm.GetNonce()) != 16 || sm.GetType() != "lionactor.budget.v1.LeaseRequest" {
		t.Fatalf("signed message %v", sm)
	}
	got, why := service.open(sm, toService, memberPID, now)
	if why != "" || !proto.Equal(got, req) {
		t.Fatalf("open = %v, %q; want the request", got, why)
	}
	// And the other way: the service's answer, opened by the member.
	grant := &budgetpb.LeaseGrant{RequestId: 7, LeaseId: 1, Requests: 3}
	got, why = member.open(service.seal(grant, toMember, memberPID, now), toMember, memberPID, now)
	if why != "" || !proto.Equal(got, grant) {
		t.Fatalf("open of the grant = %v, %q", got, why)
	}
	// Each side's times grow even if its clock does not.
	a, b := member.seal(&budgetpb.Ping{}, toService, memberPID, now), member.seal(&budgetpb.Ping{}, toService, memberPID, now)
	if b.GetUnixNanos() <= a.GetUnixNanos() || bytes.Equal(a.GetNonce(), b.GetNonce()) {
		t.Errorf("two messages signed at one instant: times %d, %d; nonces %x, %x", a.GetUnixNanos(), b.GetUnixNanos(), a.GetNonce(), b.GetNonce())
	}
	for _, sm := range []*budgetpb.Signed{a, b} {
		if _, why := service.open(sm, toService, memberPID, now); why != "" {
			t.Errorf("open: %s", why)
		}
	}
}

func TestSealerRefuses(t *testing.T) {
	now := time.Now()
	member := newSealer(Secret(testSecret))
	fresh := func() *budgetpb.Signed {
		return member.seal(&budgetpb.LeaseRequest{Key: "k", RequestId: 1, Requests: 1}, toService, memberPID, now)
	}
	tests := []struct {
		name   string
		edit   func(*budgetpb.Signed)
		opener func() (*sealer, direction, string, time.Time)
		want   refusal
	}{
		{"wrong secret", nil, func() (*sealer, direction, string, time.Time) {
			return newSealer(Secret(otherSecret)), toService, memberPID, now
		}, refusedBadProof},
		{"no mac", func(m *budgetpb.Signed) { m.Mac = nil }, nil, refusedBadProof},
		{"short mac", func(m *budgetpb.Signed) { m.Mac = m.Mac[:16] }, nil, refusedBadProof},
		{"payload changed", func(m *budgetpb.Signed) {
			m.Payload, _ = proto.Marshal(&budgetpb.LeaseRequest{Key: "k", RequestId: 1, Requests: 1000})
		}, nil, refusedBadProof},
		{"type changed", func(m *budgetpb.Signed) { m.Type = "lionactor.budget.v1.LeaseReturn" }, nil, refusedBadProof},
		{"nonce changed", func(m *budgetpb.Signed) { m.Nonce[0] ^= 1 }, nil, refusedBadProof},
		{"time changed", func(m *budgetpb.Signed) { m.UnixNanos++ }, nil, refusedBadProof},
		{"another sender", nil, func() (*sealer, direction, string, time.Time) {
			return newSealer(Secret(testSecret)), toService, "127.0.0.1:40002/lionactor$1/budget", now
		}, refusedBadProof},
		{"reflected", nil, func() (*sealer, direction, string, time.Time) {
			return newSealer(Secret(testSecret)), toMember, memberPID, now
		}, refusedBadProof},
		{"from the past", nil, func() (*sealer, direction, string, time.Time) {
			return newSealer(Secret(testSecret)), toService, memberPID, now.Add(replayWindow + time.Second)
		}, refusedStale},
		{"from the future", nil, func() (*sealer, direction, string, time.Time) {
			return newSealer(Secret(testSecret)), toService, memberPID, now.Add(-replayWindow - time.Second)
		}, refusedStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := fresh()
			if tt.edit != nil {
				tt.edit(sm)
			}
			s, dir, who, at := newSealer(Secret(testSecret)), toService, memberPID, now
			if tt.opener != nil {
				s, dir, who, at = tt.opener()
			}
			got, why := s.open(sm, dir, who, at)
			if why != tt.want || got != nil {
				t.Errorf("open = %v, %q; want refused: %q", got, why, tt.want)
			}
			if len(s.seen) != 0 {
				t.Errorf("a refused message changed the sealer: %v", s.seen)
			}
		})
	}

	t.Run("replayed", func(t *testing.T) {
		s := newSealer(Secret(testSecret))
		first, second := fresh(), fresh()
		if _, why := s.open(second, toService, memberPID, now); why != "" {
			t.Fatal(why)
		}
		if _, why := s.open(second, toService, memberPID, now); why != refusedReplay {
			t.Errorf("the same message again: %q, want %q", why, refusedReplay)
		}
		if _, why := s.open(first, toService, memberPID, now); why != refusedReplay {
			t.Errorf("an older message after a newer: %q, want %q", why, refusedReplay)
		}
	})

	t.Run("signed but not ours", func(t *testing.T) {
		// A valid proof over a type this side does not take, or over bytes
		// that are not the type named: refused, never a panic.
		s := newSealer(Secret(testSecret))
		grant := member.seal(&budgetpb.LeaseGrant{LeaseId: 1}, toService, memberPID, now)
		if got, why := s.open(grant, toService, memberPID, now); why != refusedMalformed || got != nil {
			t.Errorf("a grant sent to the service: %v, %q", got, why)
		}
		bad := member.seal(&budgetpb.Ping{}, toService, memberPID, now)
		bad.Payload = []byte{0xff, 0xff, 0xff}
		bad.Mac = member.sum(toService, memberPID, bad.Type, bad.Payload, bad.Nonce, bad.UnixNanos)
		if got, why := s.open(bad, toService, memberPID, now); why != refusedMalformed || got != nil {
			t.Errorf("garbage payload: %v, %q", got, why)
		}
	})
}

func TestSealerForgets(t *testing.T) {
	now := time.Now()
	s := newSealer(Secret(testSecret))
	s.seen["old"] = now.Add(-replayWindow - time.Second).UnixNano()
	s.seen["new"] = now.Add(-time.Second).UnixNano()
	s.forget(now)
	if _, ok := s.seen["old"]; ok || len(s.seen) != 1 {
		t.Errorf("after forget: %v, want only the sender heard within the window", s.seen)
	}
	if newSealer(nil) != nil || newSealer(Secret{}) != nil {
		t.Error("a sealer without a secret")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	mc := goodMemberConfig()
	mc.Secret = Secret(testSecret)
	sc := ServiceConfig{Secret: Secret(testSecret)}
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		fmt.Fprintf(&out, verb+"\n", mc.Secret)
		fmt.Fprintf(&out, verb+"\n", mc)
		fmt.Fprintf(&out, verb+"\n", sc)
	}
	js, err := json.Marshal(mc)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "secret", mc.Secret, "member", mc)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "secret", mc.Secret)
	text := out.String()
	for _, leak := range []string{testSecret, fmt.Sprintf("%x", testSecret), "horse"} {
		if strings.Contains(text, leak) {
			t.Fatalf("the secret shows:\n%s", text)
		}
	}
	if !strings.Contains(text, messages.Redacted) {
		t.Errorf("no %s in:\n%s", messages.Redacted, text)
	}
}

func TestSecretTooShort(t *testing.T) {
	mc := goodMemberConfig()
	mc.Secret = Secret("short")
	wantConfigError(t, mc.Validate(), "SharedBudget.Secret")
	wantConfigError(t, ServiceConfig{Secret: Secret("short")}.Validate(), "Secret")
	mc.Secret = Secret(strings.Repeat("x", MinSecretLen))
	if err := mc.Validate(); err != nil {
		t.Errorf("a secret of %d bytes: %v", MinSecretLen, err)
	}
	mc.Key = "bad \xff key"
	wantConfigError(t, mc.Validate(), "SharedBudget.Key")
}

func TestThrottle(t *testing.T) {
	now := time.Now()
	th := throttle{interval: time.Second}
	if ok, held := th.allow(now); !ok || held != 0 {
		t.Fatalf("first: %v, %d", ok, held)
	}
	for i := range 5 {
		if ok, _ := th.allow(now.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("line %d let through within the interval", i)
		}
	}
	if ok, held := th.allow(now.Add(time.Second)); !ok || held != 5 {
		t.Errorf("after the interval: %v, %d held; want true, 5", ok, held)
	}
	if got := shorten(strings.Repeat("a", 500)); len(got) > 130 {
		t.Errorf("shorten left %d bytes", len(got))
	}
}
