package budget

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/budget/budgetpb"
	"github.com/lionactor/lionactor/messages"
)

// Secret is a secret shared by a budget service and its members: with one
// set, every message between them carries proof of it (an HMAC), and
// messages without a valid proof are refused. The secret itself never
// crosses the network. It prints, logs and marshals as [messages.Redacted].
type Secret []byte

// MinSecretLen is the shortest secret accepted, in bytes: the proofs cross
// the network, and a short secret could be found from them by trying.
const MinSecretLen = 16

// Format implements fmt.Formatter: every verb prints [messages.Redacted].
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, messages.Redacted) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(messages.Redacted) }

// MarshalText implements encoding.TextMarshaler, for JSON and YAML.
func (Secret) MarshalText() ([]byte, error) { return []byte(messages.Redacted), nil }

// check reports a secret too short to use, naming field.
func (s Secret) check(field string) error {
	if len(s) > 0 && len(s) < MinSecretLen {
		return &messages.ConfigError{Field: field, Reason: fmt.Sprintf("must be at least %d bytes, got %d (e.g. openssl rand -hex 32)", MinSecretLen, len(s))}
	}
	return nil
}

// replayWindow is how far a signed message's time may be from the
// receiver's clock. Within it, each sender's times must grow, so a message
// is accepted once; beyond it, a message is refused outright. Clocks of
// machines kept by NTP agree far better than this.
const replayWindow = 30 * time.Second

// signDomain starts every signed text, so that a proof made for these
// messages can mean nothing elsewhere.
const signDomain = "lionactor budget v1\x00"

// direction is who signed a message: a member (to the service) or the
// service (to a member). It is signed too, so that a message cannot be
// reflected back to where it came from.
type direction byte

const (
	toService direction = 1
	toMember  direction = 2
)

// refusal says why a message was refused, in words fit for logs and for the
// refused member; it never holds the secret or a key.
type refusal string

const (
	refusedNoProof   refusal = "no proof of the shared secret"
	refusedBadProof  refusal = "wrong proof of the shared secret"
	refusedStale     refusal = "signed outside the replay window (are the clocks apart?)"
	refusedReplay    refusal = "replayed or out of order"
	refusedMalformed refusal = "malformed signed message"
	refusedNoSecret  refusal = "signed, but this service has no shared secret"
)

// accepted lists the messages each side accepts signed, by full name.
var accepted = map[direction]map[string]func() proto.Message{
	toService: {
		"lionactor.budget.v1.LeaseRequest": func() proto.Message { return &budgetpb.LeaseRequest{} },
		"lionactor.budget.v1.LeaseReturn":  func() proto.Message { return &budgetpb.LeaseReturn{} },
		"lionactor.budget.v1.TokenAdjust":  func() proto.Message { return &budgetpb.TokenAdjust{} },
		"lionactor.budget.v1.Pause":        func() proto.Message { return &budgetpb.Pause{} },
		"lionactor.budget.v1.Ping":         func() proto.Message { return &budgetpb.Ping{} },
	},
	toMember: {
		"lionactor.budget.v1.LeaseGrant": func() proto.Message { return &budgetpb.LeaseGrant{} },
		"lionactor.budget.v1.Pong":       func() proto.Message { return &budgetpb.Pong{} },
		"lionactor.budget.v1.Pause":      func() proto.Message { return &budgetpb.Pause{} },
	},
}

// sealer signs and checks messages with a secret. An actor owns it (the
// service, or a member's broker): it is not safe for concurrent use.
type sealer struct {
	mac  hash.Hash
	last int64 // the latest time this side signed with
	// seen holds, by member PID, the latest time accepted from that
	// member (at the service) or from the service (at a member).
	seen map[string]int64
}

// newSealer returns a sealer for secret, or nil if there is none.
func newSealer(secret Secret) *sealer {
	if len(secret) == 0 {
		return nil
	}
	return &sealer{mac: hmac.New(sha256.New, secret), seen: map[string]int64{}}
}

// seal signs m, sent in direction dir, by or to the member with PID member.
func (s *sealer) seal(m proto.Message, dir direction, member string, now time.Time) *budgetpb.Signed {
	payload, err := proto.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field fails: a member's key is
		// checked at Validate, and the service signs only keys that
		// arrived, which protobuf checked.
		panic(fmt.Sprintf("budget: marshalling %T: %v", m, err))
	}
	ts := max(now.UnixNano(), s.last+1)
	s.last = ts
	nonce := make([]byte, 16)
	rand.Read(nonce)
	typ := string(m.ProtoReflect().Descriptor().FullName())
	return &budgetpb.Signed{Type: typ, Payload: payload, Nonce: nonce, UnixNanos: ts, Mac: s.sum(dir, member, typ, payload, nonce, ts)}
}

// open checks a signed message that came in direction dir, from or for the
// member with PID member, and returns what it carries, or why it is
// refused. The proof is checked first and in constant time; only a message
// with a valid proof changes the sealer's state.
func (s *sealer) open(m *budgetpb.Signed, dir direction, member string, now time.Time) (proto.Message, refusal) {
	want := s.sum(dir, member, m.GetType(), m.GetPayload(), m.GetNonce(), m.GetUnixNanos())
	if !hmac.Equal(want, m.GetMac()) {
		return nil, refusedBadProof
	}
	ts := m.GetUnixNanos()
	if t := time.Unix(0, ts); t.Before(now.Add(-replayWindow)) || t.After(now.Add(replayWindow)) {
		return nil, refusedStale
	}
	if ts <= s.seen[member] {
		return nil, refusedReplay
	}
	newMsg := accepted[dir][m.GetType()]
	if newMsg == nil {
		return nil, refusedMalformed
	}
	msg := newMsg()
	if err := proto.Unmarshal(m.GetPayload(), msg); err != nil {
		return nil, refusedMalformed
	}
	s.seen[member] = ts
	return msg, ""
}

// sum is the proof: an HMAC of every part, each length-prefixed so that no
// two different messages sign the same text.
func (s *sealer) sum(dir direction, member, typ string, payload, nonce []byte, ts int64) []byte {
	s.mac.Reset()
	s.mac.Write([]byte(signDomain))
	var buf [8]byte
	for _, part := range [][]byte{{byte(dir)}, []byte(member), []byte(typ), payload, nonce} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(part)))
		s.mac.Write(buf[:])
		s.mac.Write(part)
	}
	binary.BigEndian.PutUint64(buf[:], uint64(ts))
	s.mac.Write(buf[:])
	return s.mac.Sum(nil)
}

// forget drops what it remembers of senders it has not heard from within
// the replay window: any message of theirs is now refused as stale anyway.
func (s *sealer) forget(now time.Time) {
	oldest := now.Add(-replayWindow).UnixNano()
	for member, ts := range s.seen {
		if ts < oldest {
			delete(s.seen, member)
		}
	}
}

// throttle lets a log line about refusals through at most once per
// interval, counting those it held back, so that a flood of bogus messages
// or connections cannot flood the log too. It is safe for concurrent use.
type throttle struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
	held     int64
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one.
func (t *throttle) allow(now time.Time) (ok bool, held int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.held++
		return false, 0
	}
	t.next = now.Add(t.interval)
	held, t.held = t.held, 0
	return true, held
}

// shorten cuts a string from a peer to a length fit for one log line.
func shorten(s string) string {
	const most = 120
	if len(s) <= most {
		return s
	}
	return s[:most] + "…"
}
