package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/runtimetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ping(t *testing.T, opt *redis.Options) error {
	t.Helper()
	c := redis.NewClient(opt)
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

func TestAServerOnAUnixSocketRunsUntilStopped(t *testing.T) {
	s := Start(t, Config{})
	if s.Addr != "" || !strings.HasSuffix(s.Socket, "redis.sock") || s.URL() != "unix://"+s.Socket {
		t.Fatalf("server at %q / %q, URL %q", s.Addr, s.Socket, s.URL())
	}
	opt := &redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1}
	if err := ping(t, opt); err != nil {
		t.Fatal(err)
	}
	// Nothing is persisted: a restarted server is empty.
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := ping(t, opt); err == nil {
		t.Fatal("a killed server answered")
	}
	s.Restart(t)
	if n, err := c.Exists(context.Background(), "k").Result(); err != nil || n != 0 {
		t.Fatalf("after a restart: exists = %d, %v; want an empty server", n, err)
	}
	s.Stop()
	s.Stop() // idempotent
	if err := ping(t, opt); err == nil {
		t.Fatal("a stopped server answered")
	}
	if !strings.Contains(strings.ToLower(s.Logs()), "ready to accept connections") {
		t.Fatalf("logs of the runs:\n%s", s.Logs())
	}
}

func TestAServerOnALoopbackPortWithAnACLUser(t *testing.T) {
	s := Start(t, Config{TCP: true, Conf: []string{"user default off", "user alice on >s3cret ~* &* +@all"}})
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || s.URL() != "redis://"+s.Addr {
		t.Fatalf("server at %q, URL %q", s.Addr, s.URL())
	}
	if err := ping(t, &redis.Options{Addr: s.Addr, Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, &redis.Options{Addr: s.Addr}); err == nil {
		t.Fatal("the default user was let in")
	}
}

func TestATLSServerTrustsOnlyItsCA(t *testing.T) {
	s := Start(t, Config{TLS: true})
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	if err := ping(t, &redis.Options{Addr: s.Addr, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, &redis.Options{Addr: s.Addr, TLSConfig: &tls.Config{ServerName: "127.0.0.1"}, MaxRetries: -1}); err == nil {
		t.Fatal("a certificate of an unknown CA was accepted")
	}
	if err := ping(t, &redis.Options{Addr: s.Addr, MaxRetries: -1}); err == nil {
		t.Fatal("a plain connection to the TLS port was answered")
	}
	if !strings.HasPrefix(s.URL(), "rediss://"+s.Addr+"?ca_file=") {
		t.Fatalf("URL %q", s.URL())
	}
}

func TestAOneNodeClusterHoldsEverySlot(t *testing.T) {
	s := Start(t, Config{Cluster: true})
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s.Addr}})
	defer c.Close()
	ctx := context.Background()
	if err := c.MSet(ctx, "{t}a", 1, "{t}b", 2).Err(); err != nil {
		t.Fatal(err)
	}
	// Cluster mode is on: keys in different slots cannot go together.
	if err := c.Do(ctx, "MSET", "a", 1, "b", 2).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("MSET across slots: %v; want CROSSSLOT", err)
	}
}

// fakeT records what Binary does with a test.
type fakeT struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeT) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}

func binaryIn(t *testing.T) *fakeT {
	f := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Binary(f)
	}()
	<-done
	return f
}

func TestWithoutRedisServerTestsSkipExceptInCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("LIONACTOR_CI", "")
	if f := binaryIn(t); !f.skipped || f.failed || !strings.Contains(f.msg, "apt-get install redis-server") {
		t.Fatalf("without CI: skipped %v, failed %v, %q", f.skipped, f.failed, f.msg)
	}
	t.Setenv("LIONACTOR_CI", "1")
	if f := binaryIn(t); f.skipped || !f.failed || !strings.Contains(f.msg, "LIONACTOR_CI") {
		t.Fatalf("in CI: skipped %v, failed %v, %q", f.skipped, f.failed, f.msg)
	}
}

func TestAServerThatCannotStartIsReported(t *testing.T) {
	Binary(t)
	s := &Server{Dir: t.TempDir(), bin: "redis-server", cfg: Config{Conf: []string{"no-such-directive yes"}}}
	if err := s.configure(); err != nil {
		t.Fatal(err)
	}
	err := s.start()
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("start with a bad directive: %v", err)
	}
}

func TestASentinelNamesItsPrimary(t *testing.T) {
	primary := Start(t, Config{TCP: true})
	replica := Start(t, Config{TCP: true, Conf: []string{"replicaof 127.0.0.1 " + strings.TrimPrefix(primary.Addr, "127.0.0.1:")}})
	sentinel := Start(t, Config{Sentinel: &Sentinel{Name: "main", Primary: primary.Addr, DownAfter: time.Second}})
	if sentinel.URL() != "redis://"+sentinel.Addr+"?master_name=main" {
		t.Fatalf("URL %q", sentinel.URL())
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	addr, err := c.GetMasterAddrByName(context.Background(), "main").Result()
	if err != nil || strings.Join(addr, ":") != primary.Addr {
		t.Fatalf("the Sentinel names %v (%v); want %s", addr, err, primary.Addr)
	}
	// The replica follows the primary.
	p := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer p.Close()
	if err := p.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer r.Close()
	runtimetest.WaitFor(t, 10*time.Second, "the replica to have k", func() bool {
		return r.Get(context.Background(), "k").Val() == "v"
	})
}

func TestASilentServerAcceptsAndNeverAnswers(t *testing.T) {
	addr := Silent(t)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Ping(ctx).Err()
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a ping of a silent server: %v, want a timeout", err)
	}
}
