package budget

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/lionactor/lionactor/internal/runtimetest"
)

// testPKI is a certificate authority made for one test.
type testPKI struct {
	*runtimetest.PKI
	ca  string // the CA certificate's file
	dir string // where to put other files
}

func newTestPKI(t testing.TB, name string) *testPKI {
	p := runtimetest.NewPKI(t, name)
	return &testPKI{PKI: p, ca: p.CA, dir: t.TempDir()}
}

// issue returns the files of a process with a certificate of this CA, for
// loopback, that trusts this CA.
func (p *testPKI) issue(t testing.TB, name string) TLSFiles {
	cert, key := p.Issue(t, name)
	return TLSFiles{Cert: cert, Key: key, CA: p.ca}
}

func TestTLSFilesCheckAndLoad(t *testing.T) {
	pki := newTestPKI(t, "ca")
	good := pki.issue(t, "member")
	if _, _, err := good.load("TLS"); err != nil {
		t.Fatalf("load: %v", err)
	}
	if (TLSFiles{}).Enabled() || !good.Enabled() {
		t.Error("Enabled")
	}
	if err := (TLSFiles{}).check("TLS"); err != nil {
		t.Errorf("no TLS: %v", err)
	}
	notPEM := filepath.Join(pki.dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tt := range []struct {
		name, field string
		files       TLSFiles
	}{
		{"no key", "TLS.Key", TLSFiles{Cert: good.Cert, CA: good.CA}},
		{"no cert", "TLS.Cert", TLSFiles{Key: good.Key, CA: good.CA}},
		{"no CA", "TLS.CA", TLSFiles{Cert: good.Cert, Key: good.Key}},
		{"cert missing", "TLS.Cert", TLSFiles{Cert: good.Cert + ".gone", Key: good.Key, CA: good.CA}},
		{"key of another", "TLS.Cert", TLSFiles{Cert: good.Cert, Key: pki.issue(t, "other").Key, CA: good.CA}},
		{"CA missing", "TLS.CA", TLSFiles{Cert: good.Cert, Key: good.Key, CA: good.CA + ".gone"}},
		{"CA not PEM", "TLS.CA", TLSFiles{Cert: good.Cert, Key: good.Key, CA: notPEM}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.files.load("TLS")
			wantConfigError(t, err, tt.field)
		})
	}
	opts, err := good.RemoteOptions()
	if err != nil || len(opts) != 2 {
		t.Errorf("RemoteOptions = %d options, %v; want the server's and the dialer's", len(opts), err)
	}
	_, err = TLSFiles{Cert: good.Cert, Key: good.Key, CA: notPEM}.RemoteOptions()
	wantConfigError(t, err, "CA")
	_, err = TLSFiles{Cert: good.Cert}.RemoteOptions()
	wantConfigError(t, err, "Key")
	// The configurations and the members' config name the same fields.
	mc := goodMemberConfig()
	mc.TLS = TLSFiles{Cert: good.Cert}
	wantConfigError(t, mc.Validate(), "SharedBudget.TLS.Key")
	wantConfigError(t, ServiceConfig{TLS: TLSFiles{Key: good.Key}}.Validate(), "TLS.Cert")
}

// handshake runs one TLS handshake over loopback between a server and a
// client with the given files, through the credentials the remote layer
// gets, and returns what each side's watch saw.
func handshake(t *testing.T, serverFiles, clientFiles TLSFiles) (refusedIn []string, refusedOut *tlsRefusal) {
	t.Helper()
	serverCfg, _, err := serverFiles.load("server")
	if err != nil {
		t.Fatal(err)
	}
	_, clientCfg, err := clientFiles.load("client")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sw := &tlsWatch{refusedIn: func(peer string, err error) {
		mu.Lock()
		refusedIn = append(refusedIn, err.Error())
		mu.Unlock()
	}}
	cw := &tlsWatch{}
	server := watchedCreds{credentials.NewTLS(serverCfg), sw}.Clone()
	client := watchedCreds{credentials.NewTLS(clientCfg), cw}.Clone()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		conn, _, err := server.ServerHandshake(raw)
		if err != nil {
			return
		}
		conn.Write([]byte("hello"))
		conn.Close()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if conn, _, err := client.ClientHandshake(ctx, ln.Addr().String(), raw); err == nil {
		buf := make([]byte, 5)
		conn.Read(buf) // with TLS 1.3, a refusal of this client arrives here
		conn.Close()
	} else {
		raw.Close()
	}
	<-served
	mu.Lock()
	defer mu.Unlock()
	return refusedIn, cw.lastRefusal()
}

func TestTLSRefusalsAreSeenOnBothSides(t *testing.T) {
	pki, other := newTestPKI(t, "ours"), newTestPKI(t, "theirs")
	service, member := pki.issue(t, "service"), pki.issue(t, "member")

	if in, out := handshake(t, service, member); len(in) != 0 || out != nil {
		t.Errorf("good certificates: server refused %v, client saw %v", in, out)
	}

	// A member whose certificate another CA signed: the service refuses
	// it, and the member learns that it was refused.
	stranger := other.issue(t, "stranger")
	stranger.CA = pki.ca // it trusts the service
	in, out := handshake(t, service, stranger)
	if len(in) != 1 || !strings.Contains(in[0], "certificate") {
		t.Errorf("server saw %v, want one refusal of the certificate", in)
	}
	if out == nil || !out.byPeer || !strings.Contains(out.reason, "remote error") {
		t.Errorf("client saw %+v, want the server's refusal", out)
	}

	// A member that does not trust the service's CA refuses the service.
	wary := member
	wary.CA = other.ca
	in, out = handshake(t, service, wary)
	if out == nil || out.byPeer || !strings.Contains(out.reason, "certificate") {
		t.Errorf("client saw %+v, want its own refusal of the server's certificate", out)
	}
	if len(in) != 1 {
		t.Errorf("server saw %v, want the failed handshake counted", in)
	}
}
