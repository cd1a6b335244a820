// Package redistest starts real redis-server processes for tests: on a unix
// socket or a loopback port, in a temporary directory, without
// persistence, stopped when the test ends.
//
// Tests that need redis-server call [Start] (or [Binary]): where it is not
// installed they are skipped, unless the environment variable LIONACTOR_CI
// is set, as CI sets it after installing Debian's redis-server; there they
// fail.
package redistest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/internal/runtimetest"
)

// startTimeout bounds how long a server may take to say it is ready.
const startTimeout = 20 * time.Second

// Binary returns the path of redis-server. Where it is not installed the
// test is skipped, or fails if LIONACTOR_CI is set.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if os.Getenv("LIONACTOR_CI") != "" {
		t.Fatal("redis-server is not installed, and LIONACTOR_CI is set: CI must install it (apt-get install redis-server)")
	}
	t.Skip("redis-server is not installed (apt-get install redis-server); skipping")
	return ""
}

// Config says what server to start. The zero value is a plain server on a
// unix socket.
type Config struct {
	// TCP listens on a free loopback port (Server.Addr) instead of a unix
	// socket.
	TCP bool
	// TLS serves TLS only, on a free loopback port, with a certificate for
	// 127.0.0.1 and localhost signed by a CA made for the test
	// (Server.CAFile). Clients need no certificate.
	TLS bool
	// Cluster runs the server in cluster mode, on a loopback port, as the
	// one node of a cluster that holds every slot.
	Cluster bool
	// Sentinel, if set, runs a Sentinel on a loopback port instead of a
	// data server.
	Sentinel *Sentinel
	// Conf holds more redis.conf lines, such as ACL users:
	// "user alice on >secret ~* &* +@all", or "replicaof 127.0.0.1 PORT".
	Conf []string
}

// Sentinel says what a Sentinel watches.
type Sentinel struct {
	Name      string        // the primary's name for clients ("mymaster" if empty)
	Primary   string        // its host:port
	Quorum    int           // Sentinels that must agree it is down (1 if 0)
	DownAfter time.Duration // silence before a Sentinel thinks it down (Sentinel's default if 0)
}

// Server is a redis-server started by a test.
type Server struct {
	Dir    string // its working directory, removed at the end of the test
	Addr   string // 127.0.0.1:port, or "" on a unix socket
	Socket string // the unix socket's path, or ""
	CAFile string // with TLS: the PEM file of the CA that signed its certificate

	cfg  Config
	bin  string
	conf string // redis.conf

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	logs   bytes.Buffer  // what every run printed
}

// Start starts a redis-server and stops it when t ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin := Binary(t)
	// Not t.TempDir: a unix socket's path must stay short.
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: dir, cfg: cfg, bin: bin}
	t.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	if cfg.TLS {
		s.CAFile = writeCerts(t, dir)
	}
	// A free port may be taken between finding it and the server binding
	// it: try another.
	for try := 1; ; try++ {
		if err := s.configure(); err != nil {
			t.Fatal(err)
		}
		err := s.start()
		if err == nil {
			break
		}
		if try == 3 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
	}
	if cfg.Cluster {
		s.claimSlots(t)
	}
	return s
}

// configure writes redis.conf, on fresh ports.
func (s *Server) configure() error {
	lines := []string{
		"bind 127.0.0.1",
		"dir " + s.Dir,
		`save ""`,
		"appendonly no",
		"daemonize no",
		`logfile ""`,
		// A replica's first sync starts at once, not after 5 s of waiting
		// for more replicas.
		"repl-diskless-sync-delay 0",
	}
	switch {
	case s.cfg.TLS:
		port, err := freePort()
		if err != nil {
			return err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		lines = append(lines, "port 0", "tls-port "+strconv.Itoa(port),
			"tls-cert-file "+filepath.Join(s.Dir, "server.crt"),
			"tls-key-file "+filepath.Join(s.Dir, "server.key"),
			"tls-ca-cert-file "+s.CAFile,
			"tls-auth-clients no")
	case s.cfg.Sentinel != nil:
		port, err := freePort()
		if err != nil {
			return err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		host, primaryPort, err := net.SplitHostPort(s.cfg.Sentinel.Primary)
		if err != nil {
			return fmt.Errorf("redistest: Sentinel.Primary: %w", err)
		}
		name := s.sentinelName()
		lines = append(lines, "port "+strconv.Itoa(port),
			fmt.Sprintf("sentinel monitor %s %s %s %d", name, host, primaryPort, max(1, s.cfg.Sentinel.Quorum)))
		if d := s.cfg.Sentinel.DownAfter; d > 0 {
			lines = append(lines, fmt.Sprintf("sentinel down-after-milliseconds %s %d", name, d.Milliseconds()))
		}
	case s.cfg.TCP || s.cfg.Cluster:
		port, err := freePort()
		if err != nil {
			return err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		lines = append(lines, "port "+strconv.Itoa(port))
		if s.cfg.Cluster {
			bus, err := freePort()
			if err != nil {
				return err
			}
			lines = append(lines, "cluster-enabled yes", "cluster-config-file nodes.conf",
				"cluster-port "+strconv.Itoa(bus))
		}
	default:
		s.Socket = filepath.Join(s.Dir, "redis.sock")
		lines = append(lines, "port 0", "unixsocket "+s.Socket, "unixsocketperm 700")
	}
	lines = append(lines, s.cfg.Conf...)
	s.conf = filepath.Join(s.Dir, "redis.conf")
	return os.WriteFile(s.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) sentinelName() string {
	if s.cfg.Sentinel.Name == "" {
		return "mymaster"
	}
	return s.cfg.Sentinel.Name
}

// readyWriter collects a run's output and tells when the server says it
// is ready: a data server that it accepts connections, a Sentinel that it
// watches its primary.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
	line  []byte // lower case
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(bytes.ToLower(w.buf.Bytes()), w.line) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func (w *readyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// start runs redis-server on s.conf and returns once it accepts
// connections.
func (s *Server) start() error {
	out := &readyWriter{ready: make(chan struct{}), line: []byte("ready to accept connections")}
	args := []string{s.conf}
	if s.cfg.Sentinel != nil {
		out.line = []byte("+monitor master")
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		s.mu.Lock()
		s.logs.WriteString(out.String())
		s.mu.Unlock()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-out.ready:
		return nil
	case <-exited:
		return fmt.Errorf("redistest: redis-server exited before it was ready:\n%s", out)
	case <-timer.C:
		s.Kill()
		return fmt.Errorf("redistest: redis-server not ready after %v:\n%s", startTimeout, out)
	}
}

// claimSlots gives the one node of a cluster every slot and waits until the
// cluster says it is ok.
func (s *Server) claimSlots(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		t.Fatalf("redistest: claiming the cluster's slots: %v", err)
	}
	runtimetest.WaitFor(t, startTimeout, "the cluster to be ok", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
}

// URL is the server's address as a URL for redisbudget.ParseURL, without
// credentials: redis://127.0.0.1:port, rediss://127.0.0.1:port?ca_file=…,
// unix:///…/redis.sock, or for a Sentinel
// redis://127.0.0.1:port?master_name=NAME.
func (s *Server) URL() string {
	switch {
	case s.cfg.Sentinel != nil:
		return "redis://" + s.Addr + "?master_name=" + s.sentinelName()
	case s.cfg.TLS:
		return "rediss://" + s.Addr + "?ca_file=" + s.CAFile
	case s.Socket != "":
		return "unix://" + s.Socket
	}
	return "redis://" + s.Addr
}

// Stop stops the server (SIGTERM) and waits for it to exit. It does
// nothing if the server is not running.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL) and waits for it to exit, as a crash
// would end it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	<-exited
}

// Restart starts a stopped or killed server again at the same address,
// empty (nothing is persisted).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Logs returns what the server has printed in every run that has ended.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, writes them to dir and returns the CA's file.
func writeCerts(t testing.TB, dir string) string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("server.crt", "CERTIFICATE", leafDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	return write("ca.crt", "CERTIFICATE", caDER)
}

// Silent listens on a free loopback port, accepts connections and never
// answers, as a server that hangs would; it returns its host:port and
// stops when t ends.
func Silent(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	conns.Go(func() {
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			open = append(open, c) // read nothing, answer nothing
		}
	})
	t.Cleanup(func() {
		l.Close()
		conns.Wait()
	})
	return l.Addr().String()
}
