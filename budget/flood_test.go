package budget

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/lionactor/lionactor/budget/budgetpb"
)

// An unauthenticated peer flooding the service. BenchmarkGrantLatencyUnderFlood
// runs it as a process of its own (the test binary, told by floodEnv), so
// that the flood competes with the service for the machine as another
// process would, not for the Go scheduler of the test.

// floodEnv, set in the environment of the test binary, makes it flood
// instead of test: "messages <addr> <per second>" (0: as fast as it can)
// or "tls <addr> <cert> <key> <ca>".
const floodEnv = "LIONACTOR_BUDGET_FLOOD"

// floodProcess floods as spec says until the process is killed.
func floodProcess(spec string) int {
	f := strings.Fields(spec)
	switch {
	case len(f) == 3 && f[0] == "messages":
		perSecond, err := strconv.Atoi(f[2])
		if err != nil {
			break
		}
		flood(nil, f[1], nil, perSecond)
		select {}
	case len(f) == 5 && f[0] == "tls":
		return floodHandshakes(f[1], TLSFiles{Cert: f[2], Key: f[3], CA: f[4]})
	}
	fmt.Fprintf(os.Stderr, "%s: bad spec %q\n", floodEnv, spec)
	return 2
}

// startFlood starts a flooding process and returns the function that ends
// it.
func startFlood(t testing.TB, spec string) (stop func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), floodEnv+"="+spec)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// flood sends bogus lease requests to the service at addr from an actor
// system of its own, half without proof and half signed with a wrong
// secret, until stop is closed (never, if stop is nil), at perSecond (0: as
// fast as the remote layer takes them). It returns how many it has sent,
// and a channel closed once it has stopped.
//
// It makes its own PID of the service: a PID remembers the process it
// first resolved to, so one PID used from two actor systems would send
// through the first one's remote layer.
func flood(t testing.TB, addr string, stop <-chan struct{}, perSecond int) (sent *atomic.Int64, done <-chan struct{}) {
	service := actor.NewPID(addr, ServiceName)
	system := newSystem(slog.New(slog.DiscardHandler))
	r, err := startRemote(system, "127.0.0.1", 0)
	if err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatal(err)
	}
	self := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})) // receives the refusals
	forger := newSealer(Secret(otherSecret))
	sent = &atomic.Int64{}
	finished := make(chan struct{})
	batch := 1000 // a millisecond's rest after each
	if perSecond > 0 {
		batch = max(1, perSecond/1000)
	}
	go func() {
		defer close(finished)
		defer system.Shutdown()
		defer shutdownRemote(r)
		next := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var m proto.Message = &budgetpb.LeaseRequest{Key: "victim#00", RequestId: uint64(i), Requests: 1 << 20, Limits: &budgetpb.Limits{}}
			if i%2 == 1 {
				m = forger.seal(m, toService, pidName(self), time.Now())
			}
			system.Root.RequestWithCustomSender(service, m, self)
			if sent.Add(1)%int64(batch) == 0 {
				// Let the remote layer ship the batch; at a set rate, keep to it.
				next = next.Add(time.Millisecond)
				if perSecond == 0 || time.Until(next) < 0 {
					next = time.Now().Add(time.Millisecond)
				}
				time.Sleep(time.Until(next))
			}
		}
	}()
	return sent, finished
}

// floodHandshakes opens TLS connections to addr one after the other,
// offering the certificate of files, which the service does not trust.
func floodHandshakes(addr string, files TLSFiles) int {
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13}
	for {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			continue
		}
		conn.Read(make([]byte, 1)) // the refusal
		conn.Close()
	}
}
