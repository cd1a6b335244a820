package budget

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/lionactor/lionactor/messages"
)

// TLSFiles names the PEM files of one process's TLS identity: its
// certificate and private key, and the certificate authority that signed
// the certificates of the processes it talks to. Set all three or none.
//
// TLS here is always mutual. The service and its members each listen and
// each connect to the other (the service answers by connecting back), so
// every process presents its certificate and checks the other's against
// CA. A certificate must name the host it is reached at (a DNS name or IP
// address in its subject alternative names: the service's host for the
// service, the host of ListenAddr for a member) and allow both server and
// client authentication.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is named.
func (f TLSFiles) Enabled() bool { return f != TLSFiles{} }

// RemoteOptions reads the files and returns the options that make a
// protoactor remote layer use them: mutual TLS on its server and on its
// connections out. They are for a service or a member in an actor system
// whose remote layer you start yourself; [Listen] and
// [MemberConfig.Attach] apply TLSFiles on their own. An error is a
// *messages.ConfigError naming the file at fault ("Cert", "Key", "CA").
func (f TLSFiles) RemoteOptions() ([]remote.ConfigOption, error) {
	server, client, err := f.load("")
	if err != nil {
		return nil, err
	}
	return remoteOptions(server, client, &tlsWatch{}), nil
}

// check reports a half-given identity, naming field.
func (f TLSFiles) check(field string) error {
	if !f.Enabled() {
		return nil
	}
	for _, part := range []struct{ name, path string }{{"Cert", f.Cert}, {"Key", f.Key}, {"CA", f.CA}} {
		if part.path == "" {
			name := part.name
			if field != "" {
				name = field + "." + name
			}
			return &messages.ConfigError{Field: name, Reason: "missing: TLS needs a certificate, its key and the CA of the peers"}
		}
	}
	return nil
}

// load reads the files: the configuration of this process's server, which
// requires and checks client certificates, and of its connections out.
func (f TLSFiles) load(field string) (server, client *tls.Config, err error) {
	if err := f.check(field); err != nil {
		return nil, nil, err
	}
	bad := func(part string, err error) error {
		if field != "" {
			part = field + "." + part
		}
		return &messages.ConfigError{Field: part, Reason: err.Error()}
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, bad("Cert", err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, bad("CA", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, bad("CA", fmt.Errorf("no PEM certificate in %s", f.CA))
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
	return server, client, nil
}

// tlsWatch learns from the TLS layer what it refused. Its methods are
// called on gRPC's goroutines.
type tlsWatch struct {
	// refusedIn, if set, is called when a connection to this process fails
	// its handshake.
	refusedIn func(peer string, err error)
	// refusedOut is the latest refusal met by a connection out: the peer
	// refused this process's certificate, or this process the peer's.
	refusedOut atomic.Pointer[tlsRefusal]
}

type tlsRefusal struct {
	reason string
	at     time.Time
	byPeer bool // the peer refused this process, not this process the peer
}

// lastRefusal is the latest refusal met by a connection out, or nil.
func (w *tlsWatch) lastRefusal() *tlsRefusal {
	if w == nil {
		return nil
	}
	return w.refusedOut.Load()
}

// noteOut records err if it is a refusal: a certificate that failed
// verification here, or an alert from the peer.
func (w *tlsWatch) noteOut(err error) {
	var verify *tls.CertificateVerificationError
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "remote error":
		w.refusedOut.Store(&tlsRefusal{reason: err.Error(), at: time.Now(), byPeer: true})
	case errors.As(err, &verify):
		w.refusedOut.Store(&tlsRefusal{reason: err.Error(), at: time.Now()})
	}
}

// remoteOptions makes protoactor's remote layer use TLS, reporting to w.
func remoteOptions(server, client *tls.Config, w *tlsWatch) []remote.ConfigOption {
	return []remote.ConfigOption{
		remote.WithServerOptions(grpc.Creds(watchedCreds{credentials.NewTLS(server), w})),
		remote.WithDialOptions(grpc.WithTransportCredentials(watchedCreds{credentials.NewTLS(client), w})),
	}
}

// watchedCreds are gRPC's TLS credentials, telling a tlsWatch of refusals.
type watchedCreds struct {
	credentials.TransportCredentials
	watch *tlsWatch
}

func (c watchedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil && c.watch.refusedIn != nil {
		c.watch.refusedIn(raw.RemoteAddr().String(), err)
	}
	return conn, info, err
}

// ClientHandshake also reads the server's first bytes. With TLS 1.3, a
// server that refuses this process's certificate says so only after the
// client's side of the handshake has succeeded, in an alert, which gRPC
// would meet (or only a broken pipe in its stead) once it writes; a gRPC
// server speaks first, so one read tells a refusal from an acceptance.
func (c watchedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		c.watch.noteOut(err)
		return conn, info, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(deadline)
	}
	first := make([]byte, 1)
	n, err := conn.Read(first)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		c.watch.noteOut(err)
		conn.Close()
		return nil, nil, err
	}
	return &watchedConn{Conn: conn, watch: c.watch, first: first[:n]}, info, nil
}

func (c watchedCreds) Clone() credentials.TransportCredentials {
	return watchedCreds{c.TransportCredentials.Clone(), c.watch}
}

// watchedConn is a client connection that gives back first, read by
// ClientHandshake, before the rest.
type watchedConn struct {
	net.Conn
	watch *tlsWatch
	first []byte
}

func (c *watchedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.watch.noteOut(err)
	}
	return n, err
}
