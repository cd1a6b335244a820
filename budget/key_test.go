package budget

import (
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/budgetpb"
)

func TestKeyForIsDeterministicAndDistinct(t *testing.T) {
	const endpoint = "https://api.example.com/v1/chat/completions"
	a := KeyFor(endpoint, "sk-first-key-0123456789abcdef")
	if b := KeyFor(endpoint, "sk-first-key-0123456789abcdef"); a != b {
		t.Fatalf("KeyFor differs between calls: %q, %q", a, b)
	}
	if !strings.HasPrefix(a, endpoint+"#") {
		t.Errorf("KeyFor = %q, want the endpoint and '#' first", a)
	}
	seen := map[string]string{}
	for _, c := range []struct{ endpoint, key string }{
		{endpoint, "sk-first-key-0123456789abcdef"},
		{endpoint, "sk-first-key-0123456789abcdeg"}, // one character apart
		{endpoint, "sk-second-key"},
		{endpoint, ""},
		{"https://api.example.com/v1/embeddings", "sk-first-key-0123456789abcdef"},
		{"", "sk-first-key-0123456789abcdef"},
		// The separator is not ambiguous: the hash has a fixed length.
		{endpoint + "#x", "y"},
		{endpoint, "x#y"},
	} {
		name := KeyFor(c.endpoint, c.key)
		if prev, dup := seen[name]; dup {
			t.Errorf("KeyFor(%q, %q) = %q, same as for %s", c.endpoint, c.key, name, prev)
		}
		seen[name] = c.endpoint + " / " + c.key
		if hash := strings.TrimPrefix(name, c.endpoint+"#"); len(hash) != 32 || strings.Trim(hash, "0123456789abcdef") != "" {
			t.Errorf("KeyFor(%q, %q) = %q, want the endpoint, '#' and 32 hex digits", c.endpoint, c.key, name)
		}
	}
}

// TestKeyForHidesTheKey: no 6-character piece of the key appears in the
// name, for keys of all kinds, hex ones included.
func TestKeyForHidesTheKey(t *testing.T) {
	const window = 6
	for _, key := range []string{
		"sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
		"0123456789abcdef0123456789abcdef", // looks like a hash
		"deadbeefdeadbeefdeadbeefdeadbeef",
		strings.Repeat("a", 64),
		"short1",
	} {
		name := KeyFor("https://api.example.com", key)
		hash := name[strings.LastIndexByte(name, '#')+1:]
		for i := 0; i+window <= len(key); i++ {
			if piece := key[i : i+window]; strings.Contains(hash, piece) || strings.Contains(hash, strings.ToLower(piece)) {
				t.Errorf("KeyFor(%q) = %q contains %q from the key", key, name, piece)
			}
		}
	}
}

func TestWireRoundTrip(t *testing.T) {
	for _, l := range []actors.Limits{
		{RequestsPerSecond: 10, RequestBurst: 5, TokensPerSecond: 1000, TokenBurst: 4096},
		{RequestsPerSecond: 0.25, RequestBurst: 1, TokensPerSecond: 0.5, TokenBurst: 1},
		{RequestsPerSecond: 10, RequestBurst: 5},                             // tokens off
		{RequestsPerSecond: rate.Inf, TokensPerSecond: 1000, TokenBurst: 50}, // requests off
		{RequestsPerSecond: rate.Inf},                                        // both off
	} {
		if got := fromWire(toWire(l)); got != l {
			t.Errorf("fromWire(toWire(%+v)) = %+v", l, got)
		}
	}
	// "Off" on the wire is a rate of 0, whatever the burst.
	w := toWire(actors.Limits{RequestsPerSecond: rate.Inf, RequestBurst: 7})
	if w.GetRequestsPerSecond() != 0 || w.GetTokensPerSecond() != 0 || w.GetTokenBurst() != 0 {
		t.Errorf("toWire of limits that are off = %v, want rates of 0 and no token burst", w)
	}
	if got := fromWire(w); got != (actors.Limits{RequestsPerSecond: rate.Inf}) {
		t.Errorf("fromWire(%v) = %+v, want every limit off", w, got)
	}
}

func TestFromWireSanitizes(t *testing.T) {
	off := actors.Limits{RequestsPerSecond: rate.Inf}
	inf, nan := math.Inf(1), math.NaN()
	for _, c := range []struct {
		name string
		in   *budgetpb.Limits
		want actors.Limits
	}{
		{"nil", nil, off},
		{"empty", &budgetpb.Limits{}, off},
		{"negative rates", &budgetpb.Limits{RequestsPerSecond: -1, RequestBurst: 5, TokensPerSecond: -100, TokenBurst: 50}, off},
		{"NaN rates", &budgetpb.Limits{RequestsPerSecond: nan, RequestBurst: 5, TokensPerSecond: nan, TokenBurst: 50}, off},
		{"+Inf rates", &budgetpb.Limits{RequestsPerSecond: inf, RequestBurst: 5, TokensPerSecond: inf, TokenBurst: 50}, off},
		{"-Inf rates", &budgetpb.Limits{RequestsPerSecond: math.Inf(-1), RequestBurst: 5, TokensPerSecond: math.Inf(-1), TokenBurst: 50}, off},
		{"zero bursts", &budgetpb.Limits{RequestsPerSecond: 2, TokensPerSecond: 3},
			actors.Limits{RequestsPerSecond: 2, RequestBurst: 1, TokensPerSecond: 3, TokenBurst: 1}},
		{"negative bursts", &budgetpb.Limits{RequestsPerSecond: 2, RequestBurst: -5, TokensPerSecond: 3, TokenBurst: math.MinInt64},
			actors.Limits{RequestsPerSecond: 2, RequestBurst: 1, TokensPerSecond: 3, TokenBurst: 1}},
		{"huge bursts", &budgetpb.Limits{RequestsPerSecond: 2, RequestBurst: math.MaxInt64, TokensPerSecond: 3, TokenBurst: 1 << 40},
			actors.Limits{RequestsPerSecond: 2, RequestBurst: math.MaxInt32, TokensPerSecond: 3, TokenBurst: math.MaxInt32}},
		{"bursts without rates", &budgetpb.Limits{RequestBurst: 5, TokenBurst: 50}, off},
		{"one of each", &budgetpb.Limits{RequestsPerSecond: nan, RequestBurst: 5, TokensPerSecond: 7, TokenBurst: 0},
			actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 7, TokenBurst: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := fromWire(c.in)
			if got != c.want {
				t.Fatalf("fromWire(%v) = %+v, want %+v", c.in, got, c.want)
			}
			// What comes out must be usable: a bucket of it grants.
			b := newBucket(got, bucketT0)
			if r, _, _ := b.grant(bucketAt(bucketLimitsRefill), 1, 0, 0); r != 1 {
				t.Errorf("a bucket of %+v grants nothing", got)
			}
		})
	}
}

// bucketLimitsRefill is long enough for any bucket of TestFromWireSanitizes
// to hold a request.
const bucketLimitsRefill = 10 * time.Minute

func TestLowest(t *testing.T) {
	reqOff := actors.Limits{RequestsPerSecond: rate.Inf}
	for _, c := range []struct {
		name string
		a, b actors.Limits
		want actors.Limits
	}{
		{"field by field",
			actors.Limits{RequestsPerSecond: 10, RequestBurst: 2, TokensPerSecond: 500, TokenBurst: 4000},
			actors.Limits{RequestsPerSecond: 20, RequestBurst: 1, TokensPerSecond: 400, TokenBurst: 8000},
			actors.Limits{RequestsPerSecond: 10, RequestBurst: 1, TokensPerSecond: 400, TokenBurst: 4000}},
		{"same", bucketLimits, bucketLimits, bucketLimits},
		{"request limit off on one side",
			actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 500, TokenBurst: 4000},
			actors.Limits{RequestsPerSecond: 20, RequestBurst: 3},
			actors.Limits{RequestsPerSecond: 20, RequestBurst: 3, TokensPerSecond: 500, TokenBurst: 4000}},
		{"token limit off on one side",
			actors.Limits{RequestsPerSecond: 5, RequestBurst: 5},
			actors.Limits{RequestsPerSecond: 20, RequestBurst: 3, TokensPerSecond: 100, TokenBurst: 10},
			actors.Limits{RequestsPerSecond: 5, RequestBurst: 3, TokensPerSecond: 100, TokenBurst: 10}},
		{"both off on both sides", reqOff, reqOff, reqOff},
		{"everything off on one side", reqOff, bucketLimits, bucketLimits},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := lowest(c.a, c.b); got != c.want {
				t.Errorf("lowest(%+v, %+v) = %+v, want %+v", c.a, c.b, got, c.want)
			}
			if got := lowest(c.b, c.a); got != c.want {
				t.Errorf("lowest(%+v, %+v) = %+v, want %+v", c.b, c.a, got, c.want)
			}
		})
	}
	// The limits of several members, folded as the service does, whatever
	// the order.
	members := []actors.Limits{
		{RequestsPerSecond: 10, RequestBurst: 4, TokensPerSecond: 1000, TokenBurst: 100},
		reqOff,
		{RequestsPerSecond: 30, RequestBurst: 2},
		{RequestsPerSecond: rate.Inf, TokensPerSecond: 300, TokenBurst: 500},
	}
	want := actors.Limits{RequestsPerSecond: 10, RequestBurst: 2, TokensPerSecond: 300, TokenBurst: 100}
	for shift := range members {
		l := members[shift]
		for i := 1; i < len(members); i++ {
			l = lowest(l, members[(shift+i)%len(members)])
		}
		if l != want {
			t.Errorf("lowest of the members from #%d on = %+v, want %+v", shift, l, want)
		}
	}
}

func TestShare(t *testing.T) {
	for _, c := range []struct {
		name    string
		l       actors.Limits
		members int
		want    actors.Limits
	}{
		{"divides rates and the request burst, keeps the token burst",
			actors.Limits{RequestsPerSecond: 30, RequestBurst: 9, TokensPerSecond: 3000, TokenBurst: 4096}, 3,
			actors.Limits{RequestsPerSecond: 10, RequestBurst: 3, TokensPerSecond: 1000, TokenBurst: 4096}},
		{"request burst at least 1",
			actors.Limits{RequestsPerSecond: 1, RequestBurst: 2, TokensPerSecond: 10, TokenBurst: 10}, 5,
			actors.Limits{RequestsPerSecond: 0.2, RequestBurst: 1, TokensPerSecond: 2, TokenBurst: 10}},
		{"one member: all of it", bucketLimits, 1, bucketLimits},
		{"request limit off stays off",
			actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 100, TokenBurst: 50}, 4,
			actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 25, TokenBurst: 50}},
		{"token limit off stays off",
			actors.Limits{RequestsPerSecond: 8, RequestBurst: 8}, 4,
			actors.Limits{RequestsPerSecond: 2, RequestBurst: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := share(c.l, c.members)
			sameRate := func(a, b rate.Limit) bool { return a == b || bucketNear(float64(a), float64(b)) }
			if !sameRate(got.RequestsPerSecond, c.want.RequestsPerSecond) || !sameRate(got.TokensPerSecond, c.want.TokensPerSecond) ||
				got.RequestBurst != c.want.RequestBurst || got.TokenBurst != c.want.TokenBurst {
				t.Errorf("share(%+v, %d) = %+v, want %+v", c.l, c.members, got, c.want)
			}
		})
	}
}
