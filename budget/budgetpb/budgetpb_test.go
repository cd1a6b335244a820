package budgetpb_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/lionactor/lionactor/budget/budgetpb"
)

// compileProto compiles source as the file budget.proto, without protoc,
// and returns its descriptor without source code info.
func compileProto(t *testing.T, source string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{"budget.proto": source}),
		}),
		SourceInfoMode: protocompile.SourceInfoNone,
	}
	files, err := c.Compile(context.Background(), "budget.proto")
	if err != nil {
		t.Fatalf("compiling budget.proto: %v", err)
	}
	fd := protodesc.ToFileDescriptorProto(files[0])
	fd.SourceCodeInfo = nil
	return fd
}

// generated is the descriptor embedded in budget.pb.go.
func generated() *descriptorpb.FileDescriptorProto {
	fd := protodesc.ToFileDescriptorProto(budgetpb.File_budget_proto)
	fd.SourceCodeInfo = nil
	return fd
}

func readProto(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("budget.proto")
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// TestGeneratedCodeIsCurrent checks that budget.pb.go was generated from
// budget.proto as it is: the descriptor compiled from the .proto equals the
// one embedded in the Go code. Run go generate after editing the .proto.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	fromProto, fromGo := compileProto(t, readProto(t)), generated()
	if !proto.Equal(fromProto, fromGo) {
		t.Fatalf("budget.pb.go is out of date with budget.proto: run go generate ./budget/budgetpb\n%s",
			lineDiff(fromProto, fromGo))
	}
}

// lineDiff lists the lines of the text form of a that b lacks (-) and those
// of b that a lacks (+).
func lineDiff(a, b proto.Message) string {
	format := func(m proto.Message) []string {
		return strings.Split(prototext.MarshalOptions{Multiline: true, Indent: "  "}.Format(m), "\n")
	}
	la, lb := format(a), format(b)
	count := func(lines []string) map[string]int {
		n := map[string]int{}
		for _, l := range lines {
			n[l]++
		}
		return n
	}
	ca, cb := count(la), count(lb)
	var out strings.Builder
	for _, l := range la {
		if cb[l] > 0 {
			cb[l]--
		} else {
			out.WriteString("- budget.proto: " + strings.TrimSpace(l) + "\n")
		}
	}
	for _, l := range lb {
		if ca[l] > 0 {
			ca[l]--
		} else {
			out.WriteString("+ budget.pb.go: " + strings.TrimSpace(l) + "\n")
		}
	}
	return out.String()
}

// TestGeneratedCodeCheckSeesChanges makes sure the comparison above is not
// vacuous: edits to the .proto that change the wire format or the Go API
// make the descriptors differ, while comments do not.
func TestGeneratedCodeCheckSeesChanges(t *testing.T) {
	src := readProto(t)
	if !proto.Equal(compileProto(t, src), generated()) {
		t.Skip("budget.proto and budget.pb.go differ already: see TestGeneratedCodeIsCurrent")
	}
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(src, old) {
			t.Fatalf("budget.proto has no %q", old)
		}
		return strings.Replace(src, old, new, 1)
	}
	for name, changed := range map[string]string{
		"field added":      edit("  int64 min_tokens = 5;\n", "  int64 min_tokens = 5;\n  int64 max_tokens = 9;\n"),
		"field renamed":    edit("int64 delta = 2;", "int64 tokens = 2;"),
		"field renumbered": edit("int64 lease_ttl_nanos = 1;", "int64 lease_ttl_nanos = 3;"),
		"type changed":     edit("int64 request_burst = 2;", "int32 request_burst = 2;"),
		"message added":    src + "\nmessage Extra {}\n",
		"package changed":  edit("package lionactor.budget.v1;", "package lionactor.budget.v2;"),
	} {
		if proto.Equal(compileProto(t, changed), generated()) {
			t.Errorf("%s: the check does not notice", name)
		}
	}
	if !proto.Equal(compileProto(t, "// a new comment\n"+src), generated()) {
		t.Error("a comment alone makes the descriptors differ")
	}
}

// TestMessagesRoundTrip marshals every message of the file, filled in, and
// checks it comes back unchanged.
func TestMessagesRoundTrip(t *testing.T) {
	limits := &budgetpb.Limits{RequestsPerSecond: 12.5, RequestBurst: 3, TokensPerSecond: 1e6, TokenBurst: math.MaxInt64}
	msgs := []proto.Message{
		limits,
		&budgetpb.LeaseRequest{Key: "https://api.example.com#0123456789abcdef0123456789abcdef", RequestId: math.MaxUint64, Requests: 7, Tokens: 4096, MinTokens: 100, Limits: limits, ExpectedMembers: 3, ReplyTimeoutNanos: 1e9},
		&budgetpb.LeaseGrant{RequestId: 1, LeaseId: 1 << 63, Requests: 5, Tokens: 2048, TtlNanos: int64(1e9)},
		&budgetpb.LeaseReturn{Key: "k", LeaseId: 42, Requests: 2, Tokens: 17},
		&budgetpb.TokenAdjust{Key: "k", Delta: -1234},
		&budgetpb.Pause{Key: "k", DurationNanos: 30e9},
		&budgetpb.Ping{},
		&budgetpb.Ping{Id: 9, Key: "k", LocalShare: true, Leaving: true},
		&budgetpb.Pong{LeaseTtlNanos: 500e6, PingId: 9},
		&budgetpb.Signed{Type: "lionactor.budget.v1.Ping", Payload: []byte{8, 1}, Nonce: make([]byte, 16), UnixNanos: math.MaxInt64, Mac: make([]byte, 32)},
		&budgetpb.Refused{Nonce: []byte{1, 2, 3}, Reason: "wrong proof"},
		// Zero values, and values at the edges.
		&budgetpb.Limits{},
		&budgetpb.LeaseRequest{},
		&budgetpb.Limits{RequestsPerSecond: math.Inf(1), RequestBurst: -1, TokensPerSecond: -0.5, TokenBurst: math.MinInt64},
		&budgetpb.TokenAdjust{Key: "ключ ✓", Delta: math.MinInt64},
	}
	covered := map[protoreflect.FullName]bool{}
	for _, m := range msgs {
		covered[m.ProtoReflect().Descriptor().FullName()] = true
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%T %v): %v", m, m, err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(b, back); err != nil {
			t.Fatalf("Unmarshal of %T: %v", m, err)
		}
		if !proto.Equal(m, back) {
			t.Errorf("%T: %v came back as %v", m, m, back)
		}
	}
	all := budgetpb.File_budget_proto.Messages()
	for i := range all.Len() {
		if name := all.Get(i).FullName(); !covered[name] {
			t.Errorf("message %s has no round-trip case", name)
		}
	}
}

// TestFieldNumbersAreStable pins the wire format: a member and a service of
// different versions must understand each other, so fields keep their
// numbers and types.
func TestFieldNumbersAreStable(t *testing.T) {
	want := map[string]map[string]struct {
		num  protowire.Number
		kind protoreflect.Kind
	}{
		"Limits": {
			"requests_per_second": {1, protoreflect.DoubleKind}, "request_burst": {2, protoreflect.Int64Kind},
			"tokens_per_second": {3, protoreflect.DoubleKind}, "token_burst": {4, protoreflect.Int64Kind},
		},
		"LeaseRequest": {
			"key": {1, protoreflect.StringKind}, "request_id": {2, protoreflect.Uint64Kind}, "requests": {3, protoreflect.Int64Kind},
			"tokens": {4, protoreflect.Int64Kind}, "min_tokens": {5, protoreflect.Int64Kind}, "limits": {6, protoreflect.MessageKind},
			"expected_members": {7, protoreflect.Int64Kind}, "reply_timeout_nanos": {8, protoreflect.Int64Kind},
		},
		"LeaseGrant": {
			"request_id": {1, protoreflect.Uint64Kind}, "lease_id": {2, protoreflect.Uint64Kind}, "requests": {3, protoreflect.Int64Kind},
			"tokens": {4, protoreflect.Int64Kind}, "ttl_nanos": {5, protoreflect.Int64Kind},
		},
		"LeaseReturn": {
			"key": {1, protoreflect.StringKind}, "lease_id": {2, protoreflect.Uint64Kind},
			"requests": {3, protoreflect.Int64Kind}, "tokens": {4, protoreflect.Int64Kind},
		},
		"TokenAdjust": {"key": {1, protoreflect.StringKind}, "delta": {2, protoreflect.Int64Kind}},
		"Pause":       {"key": {1, protoreflect.StringKind}, "duration_nanos": {2, protoreflect.Int64Kind}},
		"Ping": {
			"id": {1, protoreflect.Uint64Kind}, "key": {2, protoreflect.StringKind},
			"local_share": {3, protoreflect.BoolKind}, "leaving": {4, protoreflect.BoolKind},
		},
		"Pong": {"lease_ttl_nanos": {1, protoreflect.Int64Kind}, "ping_id": {2, protoreflect.Uint64Kind}},
		"Signed": {
			"type": {1, protoreflect.StringKind}, "payload": {2, protoreflect.BytesKind}, "nonce": {3, protoreflect.BytesKind},
			"unix_nanos": {4, protoreflect.Int64Kind}, "mac": {5, protoreflect.BytesKind},
		},
		"Refused": {"nonce": {1, protoreflect.BytesKind}, "reason": {2, protoreflect.StringKind}},
	}
	fd := budgetpb.File_budget_proto
	if fd.Package() != "lionactor.budget.v1" {
		t.Errorf("package %s, want lionactor.budget.v1", fd.Package())
	}
	if fd.Messages().Len() != len(want) {
		t.Errorf("%d messages, want %d", fd.Messages().Len(), len(want))
	}
	for msgName, fields := range want {
		md := fd.Messages().ByName(protoreflect.Name(msgName))
		if md == nil {
			t.Errorf("no message %s", msgName)
			continue
		}
		if md.Fields().Len() != len(fields) {
			t.Errorf("%s has %d fields, want %d", msgName, md.Fields().Len(), len(fields))
		}
		for fieldName, w := range fields {
			f := md.Fields().ByName(protoreflect.Name(fieldName))
			if f == nil {
				t.Errorf("%s has no field %s", msgName, fieldName)
				continue
			}
			if f.Number() != w.num || f.Kind() != w.kind {
				t.Errorf("%s.%s is %d %v, want %d %v", msgName, fieldName, f.Number(), f.Kind(), w.num, w.kind)
			}
		}
	}
}

// TestGettersAgreeWithReflectionAndAreNilSafe checks every generated Get
// method: on a message it returns what protobuf reflection reads from the
// field, and on a nil message the zero value, which the service relies on
// when a member leaves a field out. It also checks the legacy descriptor
// index and the printed form of each message.
func TestGettersAgreeWithReflectionAndAreNilSafe(t *testing.T) {
	msgs := []proto.Message{
		&budgetpb.Limits{RequestsPerSecond: 2, RequestBurst: 3, TokensPerSecond: 4, TokenBurst: 5},
		&budgetpb.LeaseRequest{Key: "k", RequestId: 1, Requests: 2, Tokens: 3, MinTokens: 4, Limits: &budgetpb.Limits{RequestBurst: 1}, ExpectedMembers: 5, ReplyTimeoutNanos: 6},
		&budgetpb.LeaseGrant{RequestId: 1, LeaseId: 2, Requests: 3, Tokens: 4, TtlNanos: 5},
		&budgetpb.LeaseReturn{Key: "k", LeaseId: 2, Requests: 3, Tokens: 4},
		&budgetpb.TokenAdjust{Key: "k", Delta: -6},
		&budgetpb.Pause{Key: "k", DurationNanos: 7},
		&budgetpb.Ping{Id: 1, Key: "k", LocalShare: true, Leaving: true},
		&budgetpb.Pong{LeaseTtlNanos: 8, PingId: 9},
		&budgetpb.Signed{Type: "t", Payload: []byte{1}, Nonce: []byte{2}, UnixNanos: 3, Mac: []byte{4}},
		&budgetpb.Refused{Nonce: []byte{5}, Reason: "r"},
	}
	for _, m := range msgs {
		v, typ := reflect.ValueOf(m), reflect.TypeOf(m)
		nilMsg := reflect.Zero(typ)
		fields := m.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			name := "Get" + strings.ToUpper(fd.JSONName()[:1]) + fd.JSONName()[1:]
			if _, ok := typ.MethodByName(name); !ok {
				t.Errorf("%T has no %s", m, name)
				continue
			}
			got := v.MethodByName(name).Call(nil)[0].Interface()
			want := m.ProtoReflect().Get(fd)
			if fd.Message() != nil {
				if !proto.Equal(got.(proto.Message), want.Message().Interface()) {
					t.Errorf("%T.%s() = %v, field holds %v", m, name, got, want)
				}
			} else if !reflect.DeepEqual(got, want.Interface()) {
				t.Errorf("%T.%s() = %v, field holds %v", m, name, got, want)
			}
			zero := nilMsg.MethodByName(name).Call(nil)[0]
			if !zero.IsZero() {
				t.Errorf("(*%T)(nil).%s() = %v, want the zero value", m, name, zero)
			}
		}
		legacy, ok := m.(interface{ Descriptor() ([]byte, []int) })
		if !ok {
			t.Fatalf("%T has no Descriptor method", m)
		}
		if _, path := legacy.Descriptor(); len(path) != 1 || path[0] != m.ProtoReflect().Descriptor().Index() {
			t.Errorf("%T.Descriptor() path %v, want [%d]", m, path, m.ProtoReflect().Descriptor().Index())
		}
		if s := fmt.Sprint(m); fields.Len() > 0 && !strings.Contains(s, string(fields.Get(0).Name())) {
			t.Errorf("%T prints as %q, without its field %s", m, s, fields.Get(0).Name())
		}
		proto.Reset(m)
		if !proto.Equal(m, m.ProtoReflect().New().Interface()) {
			t.Errorf("%T after Reset: %v", m, m)
		}
	}
}
