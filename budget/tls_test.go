package budget

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
)

// testPKI is a certificate authority made for one test, in a temporary
// directory: no private key is ever committed.
type testPKI struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	ca   string // the CA certificate's file
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), cert: cert, key: key}
	p.ca = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t testing.TB, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for loopback (127.0.0.1, ::1, localhost), good
// for server and client authentication, and returns the files of a
// process that holds it and trusts this CA.
func (p *testPKI) issue(t testing.TB, name string) TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return TLSFiles{
		Cert: p.write(t, name+".pem", "CERTIFICATE", der),
		Key:  p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER),
		CA:   p.ca,
	}
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
