package redisbudget

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/messages"
)

// Options says how to reach a Redis server: a URL parsed by [ParseURL].
// Its String, GoString and LogValue show the URL with every password
// replaced by "xxxxx"; nothing else of it is printable.
type Options struct {
	single   *redis.Options         // redis://, rediss://, unix://
	failover *redis.FailoverOptions // with master_name: through Sentinel
	shown    string                 // the URL without its passwords
	secrets  []string               // its passwords, as they may be quoted
}

// ParseURL parses the address of a Redis server:
//
//	redis://[user:password@]host[:port][/db]         plain TCP (port 6379, db 0 by default)
//	rediss://[user:password@]host[:port][/db]        TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N] a unix socket
//
// A redis:// or rediss:// URL with master_name=NAME in its query names
// Sentinels instead: host:port is the first Sentinel, addr=host:port adds
// more, user:password@ authenticates to the Sentinels and password= (and
// username=) to the primary they name, as in go-redis's ParseFailoverURL.
//
// The query may set go-redis's client options by their snake_case names
// (dial_timeout=2s, pool_size=8, ...) and, for rediss, ca_file=PATH: a PEM
// file of the certificate authorities to trust instead of the system's;
// skip_verify=true turns verification off.
//
// The client honours the deadline of each call's context
// (go-redis's ContextTimeoutEnabled), so that a caller's deadline bounds a
// call to a server that stopped answering, whatever read_timeout says.
//
// Errors are *messages.ConfigError values and never contain a password.
func ParseURL(raw string) (*Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, urlError(redactRaw(raw), "not a URL")
	}
	shown := redactURL(u)
	// Any go-redis message is scrubbed too, in case it ever quotes one.
	fail := func(err error) (*Options, error) {
		msg := (&Options{secrets: passwords(u)}).Redact(err.Error())
		return nil, urlError(shown, strings.TrimPrefix(msg, "redis: "))
	}
	q := u.Query()
	caFile := q.Get("ca_file")
	if q.Has("ca_file") {
		if u.Scheme != "rediss" {
			return nil, urlError(shown, "ca_file needs rediss://")
		}
		q.Del("ca_file")
		u.RawQuery = q.Encode()
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		// user:password@host parses with "user" as its scheme: show
		// nothing of what may be a password.
		return nil, urlError(redactRaw(raw), "the scheme must be redis, rediss or unix")
	}
	o := &Options{shown: shown}
	var tlsConfig *tls.Config
	switch {
	case u.Scheme != "unix" && q.Has("master_name"):
		if o.failover, err = redis.ParseFailoverURL(u.String()); err != nil {
			return fail(err)
		}
		if !q.Has("context_timeout_enabled") {
			o.failover.ContextTimeoutEnabled = true
		}
		tlsConfig = o.failover.TLSConfig
	default:
		if o.single, err = redis.ParseURL(u.String()); err != nil {
			return fail(err)
		}
		o.single.ContextTimeoutEnabled = true
		tlsConfig = o.single.TLSConfig
	}
	o.secrets = passwords(u)
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, urlError(shown, fmt.Sprintf("ca_file: %v", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, urlError(shown, fmt.Sprintf("ca_file %s holds no PEM certificate", caFile))
		}
		tlsConfig.RootCAs = pool
	}
	return o, nil
}

func urlError(shown, reason string) error {
	return &messages.ConfigError{Field: "URL", Reason: fmt.Sprintf("%s: %s", shown, reason)}
}

// NewClient returns a new client for o: a failover client for Sentinel
// URLs, a plain one otherwise. Close it when done.
func (o *Options) NewClient() redis.UniversalClient {
	if o.failover != nil {
		return redis.NewFailoverClient(o.failover)
	}
	return redis.NewClient(o.single)
}

// Redact returns s with every password of the URL replaced by "xxxxx",
// for a message that might quote one (a go-redis error, say).
func (o *Options) Redact(s string) string {
	for _, p := range o.secrets {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}

// String returns the URL with its passwords replaced by "xxxxx".
func (o *Options) String() string { return o.shown }

// GoString is String, for %#v.
func (o *Options) GoString() string { return o.shown }

// LogValue implements slog.LogValuer: the URL without its passwords.
func (o *Options) LogValue() slog.Value { return slog.StringValue(o.shown) }

// passwordParams are the query parameters that hold passwords.
var passwordParams = []string{"password", "sentinel_password"}

// passwords lists the passwords in u, to scrub from messages.
func passwords(u *url.URL) []string {
	var out []string
	if p, ok := u.User.Password(); ok && p != "" {
		out = append(out, p, url.PathEscape(p), url.QueryEscape(p))
	}
	q := u.Query()
	for _, name := range passwordParams {
		for _, p := range q[name] {
			if p != "" {
				out = append(out, p, url.QueryEscape(p))
			}
		}
	}
	return out
}

// redactURL is u with every password replaced by "xxxxx".
func redactURL(u *url.URL) string {
	c := *u
	q := c.Query()
	changed := false
	for _, name := range passwordParams {
		for i := range q[name] {
			q[name][i], changed = "xxxxx", true
		}
	}
	if changed {
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// redactRaw hides the user information of a string that is not a URL:
// everything between "://" and the last "@" of the authority, and the whole
// query. It is crude, and errs on the side of hiding.
func redactRaw(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i] + "?…"
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
		rest = "xxxxx@" + rest[at+1:]
	}
	if at := strings.LastIndex(raw, "@"); !ok && at >= 0 {
		return "xxxxx@" + raw[at+1:]
	}
	if !ok {
		return raw
	}
	return scheme + "://" + rest
}
