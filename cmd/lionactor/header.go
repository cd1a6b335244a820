package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/messages"
)

// headerFlag is the repeatable --header 'Name: value'. Set keeps each value
// as given; parse checks them when the run starts, so that an error names
// the flag and the value's position but never shows the value, which may
// hold a credential (pflag would quote a value that Set refused).
type headerFlag struct {
	raw []string
}

// Set implements pflag.Value: it adds one 'Name: value'.
func (h *headerFlag) Set(s string) error {
	h.raw = append(h.raw, s)
	return nil
}

// Append implements pflag.SliceValue.
func (h *headerFlag) Append(s string) error { return h.Set(s) }

// Replace implements pflag.SliceValue, for a list in the config file.
func (h *headerFlag) Replace(s []string) error {
	h.raw = append([]string(nil), s...)
	return nil
}

// GetSlice implements pflag.SliceValue, with credentials redacted.
func (h *headerFlag) GetSlice() []string {
	out := make([]string, len(h.raw))
	for i, s := range h.raw {
		out[i] = redactHeaderArg(s)
	}
	return out
}

// String implements pflag.Value; a credential's value is redacted.
func (h *headerFlag) String() string {
	if len(h.raw) == 0 {
		return ""
	}
	return "[" + strings.Join(h.GetSlice(), ", ") + "]"
}

// Type implements pflag.Value.
func (h *headerFlag) Type() string { return "header" }

// redactHeaderArg shows s with its value redacted when its name looks
// secret, by the rule snapshots and logs use (messages.IsCredentialHeader).
func redactHeaderArg(s string) string {
	name, _, ok := strings.Cut(s, ":")
	if !ok {
		return messages.Redacted // not a header: it may be anything
	}
	if messages.IsCredentialHeader(strings.TrimSpace(name)) {
		return strings.TrimSpace(name) + ": " + messages.Redacted
	}
	return s
}

// parse returns the headers by name. An error names --header and which of
// its values is at fault, never the value itself.
func (h *headerFlag) parse() (map[string]string, error) {
	if len(h.raw) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(h.raw))
	for i, s := range h.raw {
		bad := func(format string, args ...any) error {
			return usagef("--header (value %d of %d): %s", i+1, len(h.raw), fmt.Sprintf(format, args...))
		}
		name, value, ok := strings.Cut(s, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, bad(`want 'Name: value', with a colon after the name`)
		case !validHeaderName(name):
			return nil, bad(`the name before the colon must be a header name: letters, digits and - (no spaces)`)
		case strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			return nil, bad("the value of %s contains a control character", name)
		}
		key := http.CanonicalHeaderKey(name)
		if _, dup := out[key]; dup {
			return nil, bad("%s is given twice", name)
		}
		out[key] = value
	}
	return out, nil
}

// validHeaderName reports whether s is an HTTP header name (RFC 9110's
// token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
