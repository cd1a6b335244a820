package messages

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Redacted replaces secret values in snapshots, errors and logs.
const Redacted = "[REDACTED]"

// minSecretLen keeps very short strings from being treated as secrets: scrubbing
// every "a" out of a message would destroy it and protect nothing.
const minSecretLen = 4

// IsCredentialHeader reports whether a header of that name carries a
// credential whose value must never be shown. It is the one rule for every
// header, whether a provider defines it or a user adds it for a gateway or
// a proxy: the name is split into words at '-', '_' and '.', and it is a
// credential when a word
//
//   - contains "key", "secret", "passw" (password, passwd), "cookie" or
//     "credential" (X-Api-Key, Api-Key, Ocp-Apim-Subscription-Key,
//     X-Client-Secret, Set-Cookie),
//   - contains "token" but is not "tokens", the count that rate-limit
//     headers report (X-Auth-Token, X-Csrf-Token, but not
//     x-ratelimit-remaining-tokens),
//   - or begins with "auth" (Authorization, Proxy-Authorization, X-Auth-User).
//
// A name that matches by chance costs only a hidden value.
func IsCredentialHeader(name string) bool {
	for w := range strings.FieldsFuncSeq(strings.ToLower(name), isNameSeparator) {
		switch {
		case strings.HasPrefix(w, "auth"),
			strings.Contains(w, "token") && w != "tokens",
			containsAny(w, "key", "secret", "passw", "cookie", "credential"):
			return true
		}
	}
	return false
}

func isNameSeparator(r rune) bool { return r == '-' || r == '_' || r == '.' }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// CredentialValues returns the values of h's credential headers (see
// [IsCredentialHeader]), and of each value of the form "Scheme credential"
// (Bearer, Basic, ...) the credential alone, so that a caller can scrub
// them wherever they could be echoed: an error message, a response body, a
// log line.
func CredentialValues(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if !IsCredentialHeader(k) {
			continue
		}
		for _, v := range vs {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			out = append(out, v)
			if _, cred, ok := strings.Cut(v, " "); ok && strings.TrimSpace(cred) != "" {
				out = append(out, strings.TrimSpace(cred))
			}
		}
	}
	return out
}

// RedactHeader returns a copy of h in which credential headers' values are
// [Redacted] and any secret is scrubbed from the other values.
func RedactHeader(h http.Header, secrets []string) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		cp := make([]string, len(vs))
		for i, v := range vs {
			if IsCredentialHeader(k) {
				cp[i] = Redacted
			} else {
				cp[i] = Scrub(v, secrets)
			}
		}
		out[k] = cp
	}
	return out
}

// Scrub returns s with every occurrence of each secret replaced by [Redacted].
// Secrets shorter than four bytes are ignored. Occurrences that overlap,
// including one secret inside another, are replaced as one, so no part of
// any secret is left in clear.
func Scrub(s string, secrets []string) string {
	// A secret that begins with the end of Redacted could be formed anew
	// where a replacement meets the text after it; a second pass catches
	// that. The passes are bounded: a secret inside Redacted itself would
	// be found again forever, and is not a secret Redacted can hide.
	for range 3 {
		clean := scrubOnce(s, secrets)
		if clean == s {
			return s
		}
		s = clean
	}
	return s
}

func scrubOnce(s string, secrets []string) string {
	// Find every occurrence first: replacing one secret after another would
	// let a shorter secret cut a longer one that contains or overlaps it and
	// leave the rest of the longer one unmatched.
	var spans [][2]int
	for _, sec := range secrets {
		if len(sec) < minSecretLen {
			continue
		}
		for i := 0; ; {
			j := strings.Index(s[i:], sec)
			if j < 0 {
				break
			}
			spans = append(spans, [2]int{i + j, i + j + len(sec)})
			i += j + 1
		}
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return cmp.Compare(a[0], b[0]) })
	var b strings.Builder
	done := 0 // s[:done] is written or redacted
	for k := 0; k < len(spans); {
		start, end := spans[k][0], spans[k][1]
		for k++; k < len(spans) && spans[k][0] < end; k++ {
			end = max(end, spans[k][1])
		}
		b.WriteString(s[done:start])
		b.WriteString(Redacted)
		done = end
	}
	b.WriteString(s[done:])
	return b.String()
}

func scrubBytes(b []byte, secrets []string) []byte {
	for _, sec := range secrets {
		if len(sec) >= minSecretLen && strings.Contains(string(b), sec) {
			return []byte(Scrub(string(b), secrets))
		}
	}
	return b
}

// scrubbedError keeps err's chain for errors.Is and errors.As while showing a
// message with the secrets removed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// ScrubError returns err unchanged when its message holds no secret, and
// otherwise an error with the scrubbed message that still unwraps to err.
func ScrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := Scrub(msg, secrets)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

// errorKind classifies err for [ErrorInfo.Kind].
func errorKind(err error) string {
	var kinded interface{ Kind() string }
	switch {
	case errors.As(err, &kinded):
		return kinded.Kind()
	case errors.Is(err, ErrRestartStorm):
		return "restart_storm"
	case errors.Is(err, ErrCallerCrashed):
		return "caller_crashed"
	case errors.Is(err, ErrStopped):
		return "stopped"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrCancelled):
		return "cancelled"
	}
	return "error"
}

func errorDetails(err error, secrets []string) map[string]string {
	var detailed interface{ Details() map[string]string }
	if !errors.As(err, &detailed) {
		return nil
	}
	d := detailed.Details()
	if len(d) == 0 {
		return nil
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		out[k] = Scrub(v, secrets)
	}
	return out
}
