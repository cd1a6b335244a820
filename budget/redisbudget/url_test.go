package redisbudget

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// secret appears as a password in the URLs below; it must never be
// printed.
const secret = "pa55-w0rd"

// shows fails t if anything printed of o contains the secret.
func shows(t *testing.T, what string, o *Options) {
	t.Helper()
	var log bytes.Buffer
	slog.New(slog.NewTextHandler(&log, nil)).Info("budget", "redis", o)
	printed := fmt.Sprintf("%v %+v %#v %s %q", o, o, o, o, o) + o.String() + log.String()
	if strings.Contains(printed, secret) {
		t.Fatalf("%s: the password is printed: %s", what, printed)
	}
	if !strings.Contains(log.String(), o.String()) {
		t.Fatalf("%s: the log shows %q, not the URL %q", what, log.String(), o)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url, shown        string
		network, addr     string
		user, password    string
		db                int
		tls               bool
		sentinels         []string
		master, sentinelU string
	}{
		{url: "redis://localhost", shown: "redis://localhost", network: "tcp", addr: "localhost:6379"},
		{url: "redis://u:" + secret + "@10.0.0.5:6380/3", shown: "redis://u:xxxxx@10.0.0.5:6380/3",
			network: "tcp", addr: "10.0.0.5:6380", user: "u", password: secret, db: 3},
		{url: "redis://:" + secret + "@[::1]:7000", shown: "redis://:xxxxx@[::1]:7000",
			network: "tcp", addr: "[::1]:7000", password: secret},
		{url: "rediss://u:" + secret + "@cache.example.com:6380/0?dial_timeout=2s", shown: "rediss://u:xxxxx@cache.example.com:6380/0?dial_timeout=2s",
			network: "tcp", addr: "cache.example.com:6380", user: "u", password: secret, tls: true},
		{url: "unix://u:" + secret + "@/run/redis/redis.sock?db=2", shown: "unix://u:xxxxx@/run/redis/redis.sock?db=2",
			network: "unix", addr: "/run/redis/redis.sock", user: "u", password: secret, db: 2},
		{url: "unix:///tmp/r.sock", shown: "unix:///tmp/r.sock", network: "unix", addr: "/tmp/r.sock"},
		{url: "redis://s:" + secret + "@sentinel-1:26379/1?master_name=main&addr=sentinel-2:26379&password=" + secret,
			shown:     "redis://s:xxxxx@sentinel-1:26379/1?addr=sentinel-2%3A26379&master_name=main&password=xxxxx",
			sentinels: []string{"sentinel-1:26379", "sentinel-2:26379"}, master: "main", sentinelU: "s", password: secret, db: 1},
	} {
		o, err := ParseURL(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.shown, err)
		}
		if o.String() != c.shown {
			t.Errorf("String() = %q, want %q", o, c.shown)
		}
		shows(t, c.shown, o)
		if c.sentinels != nil {
			f := o.failover
			if f == nil || !f.ContextTimeoutEnabled || fmt.Sprint(f.SentinelAddrs) != fmt.Sprint(c.sentinels) || f.MasterName != c.master ||
				f.SentinelUsername != c.sentinelU || f.SentinelPassword != secret || f.Password != c.password || f.DB != c.db {
				t.Errorf("%s: parsed as %+v", c.shown, f)
			}
			continue
		}
		s := o.single
		if s == nil || !s.ContextTimeoutEnabled || s.Network != c.network || s.Addr != c.addr || s.Username != c.user || s.Password != c.password ||
			s.DB != c.db || (s.TLSConfig != nil) != c.tls {
			t.Errorf("%s: parsed as %+v", c.shown, s)
		}
	}
}

func TestContextTimeoutsMayBeTurnedOffForSentinel(t *testing.T) {
	o, err := ParseURL("redis://sentinel:26379?master_name=m&context_timeout_enabled=false")
	if err != nil {
		t.Fatal(err)
	}
	if o.failover.ContextTimeoutEnabled {
		t.Fatal("context_timeout_enabled=false was not applied")
	}
}

func TestRedactHidesEveryPassword(t *testing.T) {
	o, err := ParseURL("redis://s:" + secret + "@sentinel:26379?master_name=m&password=" + url.QueryEscape(secret+"/2"))
	if err != nil {
		t.Fatal(err)
	}
	got := o.Redact("auth " + secret + " then " + secret + "/2 then " + url.QueryEscape(secret+"/2") + " ok")
	if strings.Contains(got, secret) || !strings.HasSuffix(got, " ok") {
		t.Fatalf("Redact = %q", got)
	}
	if o, _ := ParseURL("redis://host:6379"); o.Redact("nothing to hide") != "nothing to hide" {
		t.Fatal("Redact changed a message without a password")
	}
}

func TestBadURLsAreConfigErrorsWithoutThePassword(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, reason string }{
		{"redis://u:" + secret + "@host:port", "not a URL"},
		{"redis://u:" + secret + "@host:6379/x", "invalid database number"},
		{"redis://u:" + secret + "@host:6379/0/1", "invalid URL path"},
		{"redis://u:" + secret + "@host:6379?colour=blue", "unexpected option: colour"},
		{"redis://u:" + secret + "@host:6379?dial_timeout=soon", "invalid dial_timeout"},
		{"redis://u:" + secret + "@host:6379?master_name=m&db=x", "invalid database number"},
		{"redis://u:" + secret + "@host:6379?master_name=m&addr=nowhere", "unable to parse addr"},
		{"redis://u:" + secret + "@host:6379/x?master_name=m", "invalid database number"},
		{"redis://u:" + secret + "@host:6379/0/1?master_name=m", "invalid URL path"},
		{"http://u:" + secret + "@host:6379", "scheme must be redis, rediss or unix"},
		{"u:" + secret + "@host:6379", "scheme"},
		{"unix://u:" + secret + "@", "empty unix socket path"},
		{"redis://u:" + secret + "@host:6379?ca_file=/x.pem", "ca_file needs rediss://"},
		{"rediss://u:" + secret + "@host:6379?ca_file=" + filepath.Join(dir, "none.pem"), "ca_file: open"},
		{"rediss://u:" + secret + "@host:6379?ca_file=" + notPEM, "holds no PEM certificate"},
		{"redis://u:" + secret + "@host\x7f:6379", "not a URL"},
		{"redis%zz://u:" + secret + "@host:6379/?q=" + secret, "not a URL"},
		{"u:" + secret + "@host:6379\x7f", "not a URL"},
	} {
		_, err := ParseURL(c.url)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != "URL" || !errors.Is(err, messages.ErrInvalidConfig) {
			t.Errorf("%q: %v; want a ConfigError for URL", strings.ReplaceAll(c.url, secret, "…"), err)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%v; want the reason %q", err, c.reason)
		}
	}
}

func TestACAFileIsTrusted(t *testing.T) {
	pem := writeCA(t)
	o, err := ParseURL("rediss://u:" + secret + "@host:6380?ca_file=" + pem + "&skip_verify=false")
	if err != nil {
		t.Fatal(err)
	}
	if o.single.TLSConfig == nil || o.single.TLSConfig.RootCAs == nil || o.single.TLSConfig.ServerName != "host" {
		t.Fatalf("TLS config %+v", o.single.TLSConfig)
	}
	shows(t, "with a CA", o)
	if o, err = ParseURL("rediss://s@sentinel:26379?master_name=m&ca_file=" + pem); err != nil || o.failover.TLSConfig.RootCAs == nil {
		t.Fatalf("Sentinel over TLS with a CA file: %v", err)
	}
}

// writeCA writes a self-signed CA certificate to a PEM file.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
