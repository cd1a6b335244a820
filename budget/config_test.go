package budget

import (
	"errors"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// wantConfigError fails t unless err is a *messages.ConfigError for field
// that matches messages.ErrInvalidConfig.
func wantConfigError(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a ConfigError for %s", field)
	}
	if !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("error %v does not match messages.ErrInvalidConfig", err)
	}
	var ce *messages.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v is not a *messages.ConfigError", err, err)
	}
	if ce.Field != field {
		t.Errorf("ConfigError names field %q (%v), want %q", ce.Field, err, field)
	}
	if ce.Reason == "" {
		t.Errorf("ConfigError for %s has no reason", field)
	}
}

// badAddrs are host:port strings that no Address, ListenAddr or Listen
// accepts.
var badAddrs = map[string]string{
	"empty":          "",
	"no port":        "127.0.0.1",
	"empty host":     ":7070",
	"empty port":     "127.0.0.1:",
	"port not a num": "127.0.0.1:http-alt",
	"port too large": "127.0.0.1:65536",
	"negative port":  "127.0.0.1:-1",
	"too many":       "127.0.0.1:70:70",
	"bad brackets":   "[::1:7070",
	"url":            "http://127.0.0.1:7070",
}

func goodMemberConfig() MemberConfig {
	return MemberConfig{Address: "127.0.0.1:7070", Key: KeyFor("https://api.example.com", "sk-x"), ExpectedMembers: 3}
}

func TestMemberConfigValidate(t *testing.T) {
	for _, c := range []MemberConfig{
		goodMemberConfig(),
		{Address: "[::1]:7070", Key: "k", ExpectedMembers: 1, ReplyTimeout: time.Second, RejoinInterval: time.Second, ListenAddr: "0.0.0.0:0"},
		{Address: "budget.internal:65535", Key: "k", ExpectedMembers: 100, ListenAddr: "localhost:7071"},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		}
	}
	for name, addr := range badAddrs {
		t.Run("Address "+name, func(t *testing.T) {
			c := goodMemberConfig()
			c.Address = addr
			wantConfigError(t, c.Validate(), "SharedBudget.Address")
		})
		if addr == "" {
			continue // an empty ListenAddr means the default
		}
		t.Run("ListenAddr "+name, func(t *testing.T) {
			c := goodMemberConfig()
			c.ListenAddr = addr
			wantConfigError(t, c.Validate(), "SharedBudget.ListenAddr")
		})
	}
	for _, c := range []struct {
		field string
		edit  func(*MemberConfig)
	}{
		{"Key", func(c *MemberConfig) { c.Key = "" }},
		{"ExpectedMembers", func(c *MemberConfig) { c.ExpectedMembers = 0 }},
		{"ExpectedMembers", func(c *MemberConfig) { c.ExpectedMembers = -2 }},
		{"ReplyTimeout", func(c *MemberConfig) { c.ReplyTimeout = -time.Nanosecond }},
		{"RejoinInterval", func(c *MemberConfig) { c.RejoinInterval = -time.Second }},
	} {
		t.Run(c.field, func(t *testing.T) {
			cfg := goodMemberConfig()
			c.edit(&cfg)
			wantConfigError(t, cfg.Validate(), "SharedBudget."+c.field)
		})
	}
}

func TestMemberConfigDefaults(t *testing.T) {
	c := goodMemberConfig().withDefaults()
	if c.ReplyTimeout != DefaultReplyTimeout || c.RejoinInterval != DefaultRejoinInterval || c.ListenAddr != DefaultListenAddr {
		t.Errorf("withDefaults = %+v", c)
	}
	set := MemberConfig{ReplyTimeout: 3 * time.Second, RejoinInterval: 4 * time.Second, ListenAddr: "10.0.0.1:9000"}
	if got := set.withDefaults(); !reflect.DeepEqual(got, set) {
		t.Errorf("withDefaults changed fields that were set: %+v", got)
	}
}

func TestServiceConfigValidate(t *testing.T) {
	for _, c := range []ServiceConfig{{}, {LeaseTTL: time.Second, MemberTimeout: time.Minute, Logger: slog.New(slog.DiscardHandler)}} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		}
	}
	wantConfigError(t, ServiceConfig{LeaseTTL: -time.Second}.Validate(), "LeaseTTL")
	wantConfigError(t, ServiceConfig{MemberTimeout: -time.Second}.Validate(), "MemberTimeout")

	d := ServiceConfig{}.withDefaults()
	if d.LeaseTTL != DefaultLeaseTTL || d.MemberTimeout != 10*DefaultLeaseTTL || d.Logger == nil {
		t.Errorf("ServiceConfig{}.withDefaults() = %+v", d)
	}
	if d := (ServiceConfig{LeaseTTL: 200 * time.Millisecond}).withDefaults(); d.MemberTimeout != 2*time.Second {
		t.Errorf("MemberTimeout default with LeaseTTL 200ms = %v, want 2s", d.MemberTimeout)
	}
}

func TestConfigListenRejectsBadConfig(t *testing.T) {
	for name, addr := range badAddrs {
		t.Run(name, func(t *testing.T) {
			srv, err := Listen(addr, ServiceConfig{})
			if err == nil {
				srv.Close()
			}
			wantConfigError(t, err, "addr")
		})
	}
	_, err := Listen("127.0.0.1:0", ServiceConfig{LeaseTTL: -1})
	wantConfigError(t, err, "LeaseTTL")
	_, err = Listen("127.0.0.1:0", ServiceConfig{MemberTimeout: -1})
	wantConfigError(t, err, "MemberTimeout")
}

// busyAddr returns the address of a listener held until the test ends.
func busyAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestConfigListenOnAPortInUse(t *testing.T) {
	addr := busyAddr(t)
	srv, err := Listen(addr, ServiceConfig{})
	if err == nil {
		srv.Close()
		t.Fatalf("Listen(%s) on a port in use succeeded", addr)
	}
	if errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("Listen on a port in use = %v, a config error; the address is valid", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("Listen on a port in use = %q, want the address %s in it", err, addr)
	}
}

func TestConfigAttach(t *testing.T) {
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()

	bad := goodMemberConfig()
	bad.ExpectedMembers = 0
	props, release, err := bad.Attach(system, bucketLimits, nil)
	wantConfigError(t, err, "SharedBudget.ExpectedMembers")
	if props != nil || release != nil {
		t.Errorf("Attach with a bad config returned props %v, release %v", props, release != nil)
	}

	// A ListenAddr in use: an error, not protoactor's panic.
	inUse := goodMemberConfig()
	inUse.ListenAddr = busyAddr(t)
	if _, _, err := inUse.Attach(system, bucketLimits, nil); err == nil || errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("Attach with ListenAddr %s in use = %v, want an error that is not a config error", inUse.ListenAddr, err)
	}
}

func TestConfigNewServiceRejectsBadConfig(t *testing.T) {
	system := newSystem(slog.New(slog.DiscardHandler))
	defer system.Shutdown()
	_, err := NewService(system, ServiceConfig{LeaseTTL: -time.Millisecond})
	wantConfigError(t, err, "LeaseTTL")
}

// TestConfigListenAndClose starts one remote layer only: protoactor-go
// races with itself when a second one starts in the same process (see
// remote_test.go).
func TestConfigListenAndClose(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", ServiceConfig{LeaseTTL: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("Addr = %q, want 127.0.0.1 and the port picked", srv.Addr())
	}
	if srv.PID().Id != ServiceName || srv.PID().Address != srv.Addr() {
		t.Errorf("service PID = %v, want %s at %s", srv.PID(), ServiceName, srv.Addr())
	}
	st, err := srv.Stats()
	if err != nil || st.Keys != 0 || st.Leases != 0 {
		t.Errorf("Stats of a new service = %+v, %v", st, err)
	}
}

func TestCheckAddress(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		listen bool
		want   string // "" for valid
	}{
		{"127.0.0.1:7070", false, ""},
		{"[::1]:7070", false, ""},
		{"127.0.0.1:0", true, ""},
		{"127.0.0.1:0", false, "port must be a number from 1 to 65535"},
		{"127.0.0.1:65536", true, "port must be a number from 0 to 65535"},
		{"7070", true, `want host:port, got "7070"`},
		{":7070", false, "host missing"},
	} {
		err := CheckAddress(tt.addr, tt.listen)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckAddress(%q, %v) = %v, want %q", tt.addr, tt.listen, err, tt.want)
		}
	}
	// A member connects to the service: port 0 names no service.
	c := goodMemberConfig()
	c.Address = "127.0.0.1:0"
	wantConfigError(t, c.Validate(), "SharedBudget.Address")
}
