package messages_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

func TestIsCredentialHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"Authorization", true},
		{"authorization", true},
		{"Proxy-Authorization", true},
		{"X-Api-Key", true},
		{"x-api-key", true},
		{"api-key", true},
		{"Api-Key", true},
		{"Cookie", true},
		{"Set-Cookie", true},
		{"X-Foo-Token", true},
		{"X-Client-Secret", true},
		{"Client-Secret-Id", true},
		{"X-Goog-Api-Key", true},
		// Gateways' and proxies' headers, as a user adds them.
		{"X-Auth-Token", true},
		{"X-Auth-User", true},
		{"X-Csrf-Token", true},
		{"X-Amz-Security-Token", true},
		{"X-Access-Token", true},
		{"AccessToken", true},
		{"Ocp-Apim-Subscription-Key", true},
		{"X-Portkey-Api-Key", true},
		{"X-ApiKey", true},
		{"X-Gateway-Password", true},
		{"X-Db-Passwd", true},
		{"Cf-Access-Client-Secret", true},
		{"X_Service_Credential", true},
		{"x.session.cookie", true},
		{"Www-Authenticate", true},
		{"Content-Type", false},
		{"X-Title", false},
		{"Http-Referer", false},
		{"X-Request-Tag", false},
		{"Helicone-Property-Session", false},
		{"anthropic-ratelimit-input-tokens-remaining", false},
		{"anthropic-ratelimit-output-tokens-limit", false},
		{"Accept", false},
		{"User-Agent", false},
		{"X-Request-Id", false},
		{"x-ratelimit-remaining-tokens", false},
		{"x-ratelimit-limit-tokens", false},
		{"anthropic-ratelimit-tokens-remaining", false},
		{"x-ratelimit-remaining-requests", false},
		{"Keep-Alive", false},
	}
	for _, tt := range tests {
		if got := messages.IsCredentialHeader(tt.name); got != tt.want {
			t.Errorf("IsCredentialHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCredentialValues(t *testing.T) {
	h := http.Header{
		"Authorization":       {"Bearer gw-token-1234"},
		"X-Auth-Token":        {"  tok-5678  "},
		"Proxy-Authorization": {"Basic dXNlcjpwYXNz"},
		"X-Empty-Key":         {""},
		"X-Title":             {"not a secret"},
		"X-Custom-Secret":     {"one two"},
	}
	got := messages.CredentialValues(h)
	slices.Sort(got)
	want := []string{"Basic dXNlcjpwYXNz", "Bearer gw-token-1234", "dXNlcjpwYXNz", "gw-token-1234", "one two", "tok-5678", "two"}
	if !slices.Equal(got, want) {
		t.Errorf("CredentialValues = %q, want %q", got, want)
	}
	if got := messages.CredentialValues(nil); got != nil {
		t.Errorf("CredentialValues(nil) = %q", got)
	}
}

func TestRedactHeader(t *testing.T) {
	if messages.RedactHeader(nil, nil) != nil {
		t.Error("RedactHeader(nil) is not nil")
	}
	const secret = "sk-live-0123456789abcdef"
	in := http.Header{
		"Authorization":                {"Bearer " + secret},
		"X-Api-Key":                    {secret},
		"api-key":                      {"k1", "k2"},
		"Proxy-Authorization":          {"Basic dXNlcjpwYXNz"},
		"Cookie":                       {"session=abc"},
		"X-Foo-Token":                  {"tok"},
		"X-Client-Secret":              {"shh"},
		"x-ratelimit-remaining-tokens": {"39000"},
		"X-Echo":                       {"key was " + secret},
		"Content-Type":                 {"application/json"},
	}
	orig := in.Clone()
	out := messages.RedactHeader(in, []string{secret})
	want := http.Header{
		"Authorization":                {messages.Redacted},
		"X-Api-Key":                    {messages.Redacted},
		"api-key":                      {messages.Redacted, messages.Redacted},
		"Proxy-Authorization":          {messages.Redacted},
		"Cookie":                       {messages.Redacted},
		"X-Foo-Token":                  {messages.Redacted},
		"X-Client-Secret":              {messages.Redacted},
		"x-ratelimit-remaining-tokens": {"39000"},
		"X-Echo":                       {"key was " + messages.Redacted},
		"Content-Type":                 {"application/json"},
	}
	if !maps.EqualFunc(out, want, slices.Equal) {
		t.Errorf("RedactHeader =\n%v\nwant\n%v", out, want)
	}
	if !maps.EqualFunc(in, orig, slices.Equal) {
		t.Errorf("RedactHeader changed its input: %v", in)
	}
	out["Content-Type"][0] = "mutated"
	if in["Content-Type"][0] != "application/json" {
		t.Error("RedactHeader's result shares value slices with its input")
	}
}

func TestScrub(t *testing.T) {
	tests := []struct {
		name    string
		s       string
		secrets []string
		want    string
	}{
		{"no secrets", "key=abcd", nil, "key=abcd"},
		{"not present", "hello world", []string{"abcdef"}, "hello world"},
		{"once", "key=abcdef!", []string{"abcdef"}, "key=[REDACTED]!"},
		{"every occurrence", "a=abcdef b=abcdef", []string{"abcdef"}, "a=[REDACTED] b=[REDACTED]"},
		{"adjacent occurrences", "abcdabcd", []string{"abcd"}, "[REDACTED][REDACTED]"},
		{"several secrets", "u=user-1234 p=pass-5678", []string{"user-1234", "pass-5678"}, "u=[REDACTED] p=[REDACTED]"},
		{"four bytes is enough", "pin 1234", []string{"1234"}, "pin [REDACTED]"},
		{"short secrets ignored", "abc xyz", []string{"abc", "xy", "x", ""}, "abc xyz"},
		{"short ignored, long kept", "abc abcdef", []string{"abc", "abcdef"}, "abc [REDACTED]"},
		{"shorter secret inside a longer one", "id=AKIA1234:wJalrSecretPart",
			[]string{"AKIA1234", "AKIA1234:wJalrSecretPart"}, "id=[REDACTED]"},
		{"longer listed first", "id=AKIA1234:wJalrSecretPart",
			[]string{"AKIA1234:wJalrSecretPart", "AKIA1234"}, "id=[REDACTED]"},
		{"overlapping secrets", "x=abcdXYZwxyz.", []string{"abcdXYZ", "XYZwxyz"}, "x=[REDACTED]."},
		{"self-overlapping occurrences", "aaaaa", []string{"aaaa"}, "[REDACTED]"},
		{"whole string", "abcdef", []string{"abcdef"}, "[REDACTED]"},
		{"empty string", "", []string{"abcdef"}, ""},
	}
	for _, tt := range tests {
		if got := messages.Scrub(tt.s, tt.secrets); got != tt.want {
			t.Errorf("%s: Scrub(%q, %q) = %q, want %q", tt.name, tt.s, tt.secrets, got, tt.want)
		}
	}
}

func TestScrubError(t *testing.T) {
	const secret = "sk-live-0123456789"
	if messages.ScrubError(nil, []string{secret}) != nil {
		t.Error("ScrubError(nil) is not nil")
	}
	clean := errors.New("no secret here")
	if got := messages.ScrubError(clean, []string{secret}); got != clean {
		t.Errorf("ScrubError of a clean error = %v (%T), want the error itself", got, got)
	}
	cause := &messages.CallerCrashError{Panic: "bad key " + secret}
	orig := fmt.Errorf("call: %w", cause)
	got := messages.ScrubError(orig, []string{secret})
	if got.Error() != "call: lionactor: caller crashed: bad key [REDACTED]" {
		t.Errorf("message = %q", got.Error())
	}
	if !errors.Is(got, orig) || !errors.Is(got, messages.ErrCallerCrashed) {
		t.Error("the scrubbed error does not match the original chain under errors.Is")
	}
	var cc *messages.CallerCrashError
	if !errors.As(got, &cc) || cc != cause {
		t.Errorf("errors.As = %v, want the original cause", cc)
	}
	if errors.Unwrap(got) != orig {
		t.Errorf("Unwrap = %v, want the original error", errors.Unwrap(got))
	}
	if short := messages.ScrubError(errors.New("pin abc"), []string{"abc"}); short.Error() != "pin abc" {
		t.Errorf("a short secret was scrubbed: %q", short.Error())
	}
}

// TestSecretScrubbedEverywhere follows one secret through every part of a
// request's snapshots: URL, payload, headers, retry note, error, details,
// response and JSON.
func TestSecretScrubbedEverywhere(t *testing.T) {
	const secret = "sk-live-9f8e7d6c5b4a3210"
	r := &messages.Request{
		Endpoint: messages.Endpoint{
			Method: "POST",
			URL:    "https://api.example.com/v1/chat?key=" + secret,
			Header: http.Header{
				"Authorization": {"Bearer " + secret},
				"X-Trace":       {"trace-" + secret},
			},
			Payload: []byte(`{"api_key":"` + secret + `","prompt":"abc"}`),
		},
		Metadata: map[string]string{"tenant": "acme"},
		Secrets:  []string{secret, "abc"},
	}
	l := toCalling(t, r)
	retry := l.Retry(at(time.Second), 1500*time.Millisecond, fmt.Errorf("401 for key %s", secret), messages.Result{})
	l.Process(at(3 * time.Second))
	l.Call(at(4 * time.Second))
	cause := &detailError{
		msg:     "rejected key " + secret,
		details: map[string]string{"key": secret, "status": "403"},
	}
	callErr := fmt.Errorf("attempt 2: %w", cause)
	ev := l.Fail(at(5*time.Second), callErr, messages.Result{
		StatusCode: 403,
		Header:     http.Header{"X-Echo-Key-Used": {"used " + secret}, "X-Echo": {secret}},
		Body:       []byte(`{"error":"invalid key ` + secret + `"}`),
	})

	add := func(where, s string) {
		if strings.Contains(s, secret) {
			t.Errorf("%s leaks the secret: %q", where, s)
		}
	}
	ep := ev.Endpoint()
	add("URL", ep.URL)
	add("payload", string(ep.Payload))
	for k, vs := range ep.Header {
		add("request header "+k, strings.Join(vs, ","))
	}
	if ep.URL != "https://api.example.com/v1/chat?key=[REDACTED]" {
		t.Errorf("URL = %q", ep.URL)
	}
	if string(ep.Payload) != `{"api_key":"[REDACTED]","prompt":"abc"}` {
		t.Errorf("payload = %s", ep.Payload)
	}
	if got := ep.Header.Get("X-Trace"); got != "trace-[REDACTED]" {
		t.Errorf("X-Trace = %q", got)
	}
	if got := ep.Header.Get("Authorization"); got != messages.Redacted {
		t.Errorf("Authorization = %q", got)
	}
	note := retry.Log()[4].Message
	add("retry note", note)
	if !strings.Contains(note, "1.5s") || !strings.Contains(note, "401 for key [REDACTED]") {
		t.Errorf("retry note = %q", note)
	}
	for i, tr := range ev.Log() {
		add(fmt.Sprintf("log[%d]", i), tr.Message)
	}
	info, _ := ev.Failure()
	add("error message", info.Message)
	if info.Message != "attempt 2: rejected key [REDACTED]" {
		t.Errorf("error message = %q", info.Message)
	}
	for k, v := range info.Details {
		add("error detail "+k, v)
	}
	if info.Details["key"] != messages.Redacted || info.Details["status"] != "403" {
		t.Errorf("details = %v", info.Details)
	}
	add("Err()", ev.Err().Error())
	if !errors.Is(ev.Err(), callErr) {
		t.Error("Err() does not match the call's error under errors.Is")
	}
	var de *detailError
	if !errors.As(ev.Err(), &de) || de != cause {
		t.Error("Err() does not reach the call's error type under errors.As")
	}
	resp, _ := ev.Response()
	for k, vs := range resp.Header {
		add("response header "+k, strings.Join(vs, ","))
	}
	if got := resp.Header.Get("X-Echo"); got != messages.Redacted {
		t.Errorf("response X-Echo = %q", got)
	}
	add("response body", string(resp.Body))
	if string(resp.Body) != `{"error":"invalid key [REDACTED]"}` {
		t.Errorf("response body = %s", resp.Body)
	}
	for _, e := range []messages.Event{retry, ev} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		add(fmt.Sprintf("JSON of %v", e.Status), string(b))
		if !strings.Contains(string(b), messages.Redacted) {
			t.Errorf("JSON of %v shows no redaction: %s", e.Status, b)
		}
	}
}
