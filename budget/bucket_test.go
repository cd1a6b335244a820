package budget

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
)

// The bucket takes its clock as an argument: these tests drive it with
// explicit times from bucketT0 on and never sleep.

var bucketT0 = time.Unix(1_700_000_000, 0)

func bucketAt(d time.Duration) time.Time { return bucketT0.Add(d) }

// bucketLimits: 10 requests/s with a burst of 5, 100 tokens/s with a burst
// of 50. Both buckets refill completely in 500 ms.
var bucketLimits = actors.Limits{RequestsPerSecond: 10, RequestBurst: 5, TokensPerSecond: 100, TokenBurst: 50}

// fullBucket returns a bucket for l created at bucketT0 and the time, a
// minute on, when both its buckets are full.
func fullBucket(l actors.Limits) (*bucket, time.Time) {
	return newBucket(l, bucketT0), bucketAt(time.Minute)
}

type grantResult struct {
	requests, tokens int64
	wait             time.Duration
}

func grantAt(b *bucket, now time.Time, want, wantTokens, minTokens int64) grantResult {
	r, tk, w := b.grant(now, want, wantTokens, minTokens)
	return grantResult{r, tk, w}
}

func bucketNear(got, want float64) bool { return math.Abs(got-want) <= 1e-6 }

func checkAvailable(t *testing.T, b *bucket, now time.Time, wantReq, wantTok float64) {
	t.Helper()
	req, tok := b.available(now)
	if !bucketNear(req, wantReq) || !bucketNear(tok, wantTok) {
		t.Errorf("available = (%v requests, %v tokens), want (%v, %v)", req, tok, wantReq, wantTok)
	}
}

func TestBucketStartsEmptyAndRefills(t *testing.T) {
	b := newBucket(bucketLimits, bucketT0)
	checkAvailable(t, b, bucketT0, 0, 0)
	if g := grantAt(b, bucketT0, 1, 0, 0); g.requests != 0 || g.tokens != 0 || g.wait <= 0 {
		t.Fatalf("grant from a new bucket = %+v, want nothing and a wait", g)
	}
	checkAvailable(t, b, bucketAt(100*time.Millisecond), 1, 10)
	checkAvailable(t, b, bucketAt(250*time.Millisecond), 2.5, 25)
	checkAvailable(t, b, bucketAt(500*time.Millisecond), 5, 50)
	checkAvailable(t, b, bucketAt(time.Hour), 5, 50) // never beyond the bursts
}

func TestBucketGrantWholeWhenAvailable(t *testing.T) {
	b, now := fullBucket(bucketLimits)
	if g := grantAt(b, now, 3, 20, 5); g != (grantResult{3, 20, 0}) {
		t.Fatalf("grant(3, 20, min 5) from a full bucket = %+v, want {3 20 0}", g)
	}
	checkAvailable(t, b, now, 2, 30)
	// The rest, exactly.
	if g := grantAt(b, now, 2, 30, 30); g != (grantResult{2, 30, 0}) {
		t.Fatalf("grant(2, 30, min 30) of exactly what is left = %+v, want {2 30 0}", g)
	}
	checkAvailable(t, b, now, 0, 0)
	// want < 1 counts as 1.
	b, now = fullBucket(bucketLimits)
	if g := grantAt(b, now, 0, 0, 0); g != (grantResult{1, 0, 0}) {
		t.Fatalf("grant(0, 0, 0) = %+v, want one request", g)
	}
}

func TestBucketPartialGrants(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		spend                       [2]int64 // taken before, from a full 5/50 bucket
		want, wantTokens, minTokens int64
		out                         grantResult
	}{
		// 5 of 10 requests: half the wanted tokens.
		{"requests short, tokens proportional", [2]int64{0, 0}, 10, 40, 5, grantResult{5, 20, 0}},
		// Proportional share rounds up.
		{"proportional share rounds up", [2]int64{0, 0}, 15, 10, 0, grantResult{5, 4, 0}},
		// The proportional share is below minTokens: minTokens wins.
		{"proportional share below minTokens", [2]int64{0, 0}, 10, 40, 30, grantResult{5, 30, 0}},
		// Proportional share more than what is there: what is there.
		{"proportional share capped by bucket", [2]int64{0, 40}, 10, 100, 5, grantResult{5, 10, 0}},
		// Requests whole, tokens short but at least minTokens.
		{"tokens short", [2]int64{0, 40}, 2, 40, 5, grantResult{2, 10, 0}},
		// Both short.
		{"both short", [2]int64{3, 30}, 4, 80, 10, grantResult{2, 20, 0}},
		// Tokens wanted below minTokens are raised to it.
		{"wantTokens raised to minTokens", [2]int64{0, 0}, 1, 5, 20, grantResult{1, 20, 0}},
		// Not enough for minTokens: nothing, and a wait of (20-10)/100 s.
		{"below minTokens", [2]int64{0, 40}, 1, 20, 20, grantResult{0, 0, 100*time.Millisecond + time.Millisecond}},
		// No request left: nothing, and a wait of 1/10 s.
		{"no request", [2]int64{5, 0}, 1, 0, 0, grantResult{0, 0, 100*time.Millisecond + time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, now := fullBucket(bucketLimits)
			if s := tc.spend; s[0] > 0 || s[1] > 0 {
				b.take(now, s[0], s[1])
			}
			reqBefore, tokBefore := b.available(now)
			g := grantAt(b, now, tc.want, tc.wantTokens, tc.minTokens)
			if g != tc.out {
				t.Fatalf("grant(%d, %d, min %d) with %v requests and %v tokens = %+v, want %+v",
					tc.want, tc.wantTokens, tc.minTokens, reqBefore, tokBefore, g, tc.out)
			}
			checkAvailable(t, b, now, reqBefore-float64(g.requests), tokBefore-float64(g.tokens))
		})
	}
}

func TestBucketWaitFor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limits    actors.Limits
		minTokens int64
		exact     time.Duration // when the permit is there, to the nanosecond
	}{
		{"request", bucketLimits, 0, 100 * time.Millisecond},
		{"tokens", bucketLimits, 30, 300 * time.Millisecond},
		{"tokens beyond the burst wait for the burst", bucketLimits, 80, 500 * time.Millisecond},
		{"request slower than tokens", actors.Limits{RequestsPerSecond: 2, RequestBurst: 1, TokensPerSecond: 100, TokenBurst: 50}, 10, 500 * time.Millisecond},
		{"request limit off", actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 100, TokenBurst: 50}, 25, 250 * time.Millisecond},
		{"token limit off", actors.Limits{RequestsPerSecond: 4, RequestBurst: 2}, 1000, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(tc.limits, bucketT0)
			g := grantAt(b, bucketT0, 1, tc.minTokens, tc.minTokens)
			if g.requests != 0 {
				t.Fatalf("grant from an empty bucket = %+v, want a wait", g)
			}
			if g.wait < tc.exact || g.wait > tc.exact+2*time.Millisecond {
				t.Errorf("wait = %v, want %v rounded up by about 1ms", g.wait, tc.exact)
			}
			if early := grantAt(b, bucketAt(tc.exact-time.Microsecond), 1, tc.minTokens, tc.minTokens); early.requests != 0 {
				t.Errorf("grant 1µs before the permit is there = %+v, want nothing", early)
			}
			if ok := grantAt(b, bucketAt(g.wait), 1, tc.minTokens, tc.minTokens); ok.requests != 1 {
				t.Errorf("grant after the wait = %+v, want one request", ok)
			}
		})
	}
}

// TestBucketWaitForIsEnough checks waitFor from random, partly refilled,
// states: a grant at now+wait succeeds, one just before the exact time
// (wait less its 1ms rounding) does not.
func TestBucketWaitForIsEnough(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		l := actors.Limits{
			RequestsPerSecond: rate.Limit(0.5 + rng.Float64()*50),
			RequestBurst:      1 + rng.IntN(20),
			TokensPerSecond:   rate.Limit(1 + rng.Float64()*5000),
			TokenBurst:        1 + rng.IntN(5000),
		}
		b := newBucket(l, bucketT0)
		now := bucketAt(time.Duration(rng.Int64N(int64(2 * time.Second))))
		minTokens := rng.Int64N(int64(l.TokenBurst) + 1)
		if rng.IntN(2) == 0 {
			b.refund(now, rng.Int64N(3), rng.Int64N(int64(l.TokenBurst)/2+1))
		}
		g := grantAt(b, now, 1, minTokens, minTokens)
		if g.requests > 0 {
			continue
		}
		if early := grantAt(b, now.Add(g.wait-time.Millisecond-10*time.Microsecond), 1, minTokens, minTokens); early.requests != 0 {
			t.Fatalf("case %d %+v, min %d: granted %+v before the wait %v was over", i, l, minTokens, early, g.wait)
		}
		if ok := grantAt(b, now.Add(g.wait), 1, minTokens, minTokens); ok.requests != 1 || ok.tokens < minTokens {
			t.Fatalf("case %d %+v, min %d: grant after the wait %v = %+v", i, l, minTokens, g.wait, ok)
		}
	}
}

func TestBucketRefundNeverExceedsTheBurst(t *testing.T) {
	b, now := fullBucket(bucketLimits)
	grantAt(b, now, 2, 20, 0)
	b.refund(now, 2, 20)
	checkAvailable(t, b, now, 5, 50)
	b.refund(now, 100, 1000) // more than the room: dropped
	checkAvailable(t, b, now, 5, 50)
	if g := grantAt(b, now, 100, 1000, 0); g.requests != 5 || g.tokens != 50 {
		t.Fatalf("grant of everything after over-refunding = %+v, want the bursts (5, 50)", g)
	}

	// A refund, then the bucket's own refill: together no more than the
	// burst.
	b, now = fullBucket(bucketLimits)
	grantAt(b, now, 5, 50, 0) // empties it
	b.refund(now, 4, 40)
	checkAvailable(t, b, now, 4, 40)
	later := now.Add(300 * time.Millisecond) // refilled 3 and 30 on its own
	checkAvailable(t, b, later, 5, 50)
	if g := grantAt(b, later, 100, 1000, 0); g.requests != 5 || g.tokens != 50 {
		t.Fatalf("grant after refund + refill = %+v, want the bursts (5, 50)", g)
	}
	checkAvailable(t, b, later, 0, 0)
}

// TestBucketFractionalCredit: a refund into a bucket holding a fraction
// leaves a fractional credit; a grant that uses it must still charge the
// bucket for the rest, so that what is left afterwards is what was there
// less what was granted (or less: rounding may only err on the safe side).
func TestBucketFractionalCredit(t *testing.T) {
	l := actors.Limits{RequestsPerSecond: 10, RequestBurst: 10, TokensPerSecond: 100, TokenBurst: 100}
	for _, after := range []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 73 * time.Millisecond} {
		b := newBucket(l, bucketT0)
		now := bucketAt(after) // a fraction of a request, tokens with a fraction
		b.refund(now, 10, 100) // a fractional credit tops both up to the bursts
		reqBefore, tokBefore := b.available(now)
		g := grantAt(b, now, 10, 100, 0)
		if g.requests < 9 || g.tokens < 99 {
			t.Fatalf("after %v: grant = %+v from (%v, %v), want about everything", after, g, reqBefore, tokBefore)
		}
		req, tok := b.available(now)
		if req > reqBefore-float64(g.requests)+1e-9 || tok > tokBefore-float64(g.tokens)+1e-9 {
			t.Errorf("after %v: (%v, %v) available, granted (%d, %d), left (%v, %v): the grant was not charged in full",
				after, reqBefore, tokBefore, g.requests, g.tokens, req, tok)
		}
	}
}

func TestBucketAdjust(t *testing.T) {
	t.Run("charge pushes later grants back", func(t *testing.T) {
		b, now := fullBucket(bucketLimits)
		b.adjust(now, 150) // 50 there: 100 in debt, charged in pieces of the burst
		g := grantAt(b, now, 1, 10, 10)
		exact := 1100 * time.Millisecond // (10 + 100) / 100 per s
		if g.requests != 0 || g.wait < exact || g.wait > exact+2*time.Millisecond {
			t.Fatalf("grant after a charge of 150 = %+v, want a wait of about %v", g, exact)
		}
		if early := grantAt(b, now.Add(exact-time.Microsecond), 1, 10, 10); early.requests != 0 {
			t.Errorf("grant before the charge was made up = %+v", early)
		}
		if ok := grantAt(b, now.Add(g.wait), 1, 10, 10); ok.requests != 1 || ok.tokens != 10 {
			t.Errorf("grant after the wait = %+v, want (1, 10)", ok)
		}
	})
	t.Run("charge spends credit first", func(t *testing.T) {
		b, now := fullBucket(bucketLimits)
		grantAt(b, now, 1, 50, 0)
		b.refund(now, 0, 30)
		b.adjust(now, 20)
		checkAvailable(t, b, now, 4, 10)
	})
	t.Run("refund", func(t *testing.T) {
		b := newBucket(bucketLimits, bucketT0)
		b.adjust(bucketT0, -30)
		checkAvailable(t, b, bucketT0, 0, 30)
		// Still no request: the refund is of tokens only.
		now := bucketAt(100 * time.Millisecond) // 1 request, 10 + 30 tokens
		if g := grantAt(b, now, 1, 40, 40); g != (grantResult{1, 40, 0}) {
			t.Fatalf("grant(1, 40) with 30 refunded and 10 refilled = %+v", g)
		}
		b.adjust(now, -1000) // capped at the burst
		checkAvailable(t, b, now, 0, 50)
	})
	t.Run("zero and token limit off", func(t *testing.T) {
		b, now := fullBucket(bucketLimits)
		b.adjust(now, 0)
		checkAvailable(t, b, now, 5, 50)
		b, now = fullBucket(actors.Limits{RequestsPerSecond: 10, RequestBurst: 5})
		b.adjust(now, 1_000_000)
		b.adjust(now, -1_000_000)
		if g := grantAt(b, now, 5, 0, 0); g != (grantResult{5, 0, 0}) {
			t.Errorf("grant after adjusting a bucket without a token limit = %+v, want (5, 0)", g)
		}
	})
}

func TestBucketPause(t *testing.T) {
	b, now := fullBucket(bucketLimits)
	until := now.Add(2 * time.Second)
	if !b.pause(until) {
		t.Fatal("pause of a bucket not paused: not extended")
	}
	if b.pause(now.Add(time.Second)) || b.pause(until) {
		t.Error("an earlier or equal pause reported as extending the current one")
	}
	if g := grantAt(b, now, 1, 0, 0); g != (grantResult{0, 0, 2 * time.Second}) {
		t.Errorf("grant at the start of a 2s pause = %+v, want a wait of 2s", g)
	}
	if g := grantAt(b, until.Add(-time.Nanosecond), 1, 0, 0); g != (grantResult{0, 0, time.Nanosecond}) {
		t.Errorf("grant 1ns before the pause's end = %+v, want a wait of 1ns", g)
	}
	if g := grantAt(b, until, 1, 10, 10); g != (grantResult{1, 10, 0}) {
		t.Errorf("grant at the pause's end = %+v, want (1, 10)", g)
	}
	// A pause never lets the bucket fill beyond its burst.
	checkAvailable(t, b, until, 4, 40)

	// Extending.
	later := until.Add(time.Second)
	if !b.pause(later) {
		t.Error("a later pause did not extend")
	}
	if g := grantAt(b, until, 1, 0, 0); g.wait != time.Second {
		t.Errorf("grant after extending the pause = %+v, want a wait of 1s", g)
	}
}

func TestBucketLimitsOff(t *testing.T) {
	t.Run("request limit off", func(t *testing.T) {
		l := actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 100, TokenBurst: 50}
		b := newBucket(l, bucketT0)
		req, tok := b.available(bucketT0)
		if !math.IsInf(req, 1) || tok != 0 {
			t.Fatalf("available of a new bucket without a request limit = (%v, %v), want (+Inf, 0)", req, tok)
		}
		if g := grantAt(b, bucketT0, 1000, 0, 0); g != (grantResult{1000, 0, 0}) {
			t.Errorf("grant(1000, 0) without a request limit = %+v, want all of it", g)
		}
		now := bucketAt(time.Second)
		if g := grantAt(b, now, 1000, 80, 10); g != (grantResult{1000, 50, 0}) {
			t.Errorf("grant(1000, 80, min 10) = %+v, want (1000, 50)", g)
		}
		b.refund(now, 1000, 0) // requests off: nothing to credit
		if c := b.requests.Credit(now); c != 0 {
			t.Errorf("request credit %v without a request limit", c)
		}
	})
	t.Run("token limit off", func(t *testing.T) {
		l := actors.Limits{RequestsPerSecond: 10, RequestBurst: 5}
		b, now := fullBucket(l)
		req, tok := b.available(now)
		if req != 5 || !math.IsInf(tok, 1) {
			t.Fatalf("available = (%v, %v), want (5, +Inf)", req, tok)
		}
		if g := grantAt(b, now, 3, 1_000_000, 1_000_000); g != (grantResult{3, 0, 0}) {
			t.Errorf("grant(3, 1e6, min 1e6) without a token limit = %+v, want (3, 0)", g)
		}
		b.refund(now, 0, 1000)
		if c := b.tokens.Credit(now); c != 0 {
			t.Errorf("token credit %v without a token limit", c)
		}
	})
	t.Run("both off", func(t *testing.T) {
		b := newBucket(actors.Limits{RequestsPerSecond: rate.Inf}, bucketT0)
		for range 3 {
			if g := grantAt(b, bucketT0, 1<<40, 1<<40, 1<<40); g != (grantResult{1 << 40, 0, 0}) {
				t.Fatalf("grant without limits = %+v, want all requests, no tokens", g)
			}
		}
	})
}

func TestBucketMinTokensAboveTheBurstIsClamped(t *testing.T) {
	b, now := fullBucket(bucketLimits)
	if g := grantAt(b, now, 1, 0, 80); g != (grantResult{1, 50, 0}) {
		t.Fatalf("grant(1, 0, min 80) with a token burst of 50 = %+v, want (1, 50)", g)
	}
	// From empty it waits for a full bucket, not for 80 tokens (which it
	// would never hold).
	b = newBucket(bucketLimits, bucketT0)
	g := grantAt(b, bucketT0, 1, 80, 80)
	if g.requests != 0 || g.wait > 502*time.Millisecond {
		t.Fatalf("grant(1, 80, min 80) from empty = %+v, want a wait of about 500ms", g)
	}
	if ok := grantAt(b, bucketAt(g.wait), 1, 80, 80); ok != (grantResult{1, 50, 0}) {
		t.Errorf("grant after the wait = %+v, want (1, 50)", ok)
	}
	// A negative minTokens counts as 0.
	b, now = fullBucket(bucketLimits)
	if g := grantAt(b, now, 1, 0, -5); g != (grantResult{1, 0, 0}) {
		t.Errorf("grant(1, 0, min -5) = %+v, want (1, 0)", g)
	}
}

func TestBucketSetLimits(t *testing.T) {
	b, now := fullBucket(bucketLimits)
	b.setLimits(actors.Limits{RequestsPerSecond: 1, RequestBurst: 2, TokensPerSecond: 10, TokenBurst: 20}, now)
	checkAvailable(t, b, now, 2, 20)
	if g := grantAt(b, now, 5, 50, 0); g.requests != 2 || g.tokens != 20 {
		t.Errorf("grant after lowering the bursts = %+v, want (2, 20)", g)
	}
	// Turning the token limit off, then on again.
	b.setLimits(actors.Limits{RequestsPerSecond: 1, RequestBurst: 2}, now)
	if _, tok := b.available(now); !math.IsInf(tok, 1) {
		t.Errorf("tokens available with the token limit off = %v, want +Inf", tok)
	}
}

// TestBucketNeverAdmitsMoreThanItsRate drives buckets with random grants,
// refunds and token adjustments at increasing times, and checks the token
// bucket's promise for requests and tokens alike. A bucket starts empty, so
// what it admits by any time t, less what came back, is at most rate×t;
// and over any stretch between two grants, at most burst + rate×stretch.
func TestBucketNeverAdmitsMoreThanItsRate(t *testing.T) {
	type lease struct{ requests, tokens int64 }
	// usage is one counter's running net usage at each grant.
	type usage struct {
		at  time.Time
		net float64
	}
	const eps = 1e-6
	check := func(t *testing.T, what string, perSecond float64, burst int, series []usage) {
		t.Helper()
		for j, u := range series {
			if limit := perSecond*u.at.Sub(bucketT0).Seconds() + eps; u.net > limit {
				t.Errorf("%s: %v used by %v, more than rate×elapsed = %v", what, u.net, u.at.Sub(bucketT0), limit)
				return
			}
			for _, s := range series[:j] {
				if limit := float64(burst) + perSecond*u.at.Sub(s.at).Seconds() + eps; u.net-s.net > limit {
					t.Errorf("%s: %v used between %v and %v, more than burst + rate×elapsed = %v",
						what, u.net-s.net, s.at.Sub(bucketT0), u.at.Sub(bucketT0), limit)
					return
				}
			}
		}
	}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		l := actors.Limits{
			RequestsPerSecond: rate.Limit(1 + rng.Float64()*40),
			RequestBurst:      1 + rng.IntN(10),
			TokensPerSecond:   rate.Limit(10 + rng.Float64()*4000),
			TokenBurst:        1 + rng.IntN(2000),
		}
		b := newBucket(l, bucketT0)
		now := bucketT0
		var (
			held                 []lease
			reqNet, tokNet       float64
			reqSeries, tokSeries []usage
		)
		for range 300 {
			now = now.Add(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
			switch op := rng.IntN(10); {
			case op < 6:
				want := 1 + rng.Int64N(int64(l.RequestBurst)+3)
				wantTokens := rng.Int64N(int64(l.TokenBurst)*2 + 1)
				minTokens := rng.Int64N(min(wantTokens, int64(l.TokenBurst)) + 1)
				r, tk, _ := b.grant(now, want, wantTokens, minTokens)
				if r == 0 {
					break
				}
				if r > want || tk < min(minTokens, int64(l.TokenBurst)) {
					t.Fatalf("seed %d: grant(%d, %d, min %d) = (%d, %d)", seed, want, wantTokens, minTokens, r, tk)
				}
				held = append(held, lease{r, tk})
				reqNet += float64(r)
				tokNet += float64(tk)
				reqSeries = append(reqSeries, usage{now, reqNet})
				tokSeries = append(tokSeries, usage{now, tokNet})
			case op < 8 && len(held) > 0:
				// Give back part of a lease and forget it.
				i := rng.IntN(len(held))
				h := held[i]
				back := lease{rng.Int64N(h.requests + 1), rng.Int64N(h.tokens + 1)}
				b.refund(now, back.requests, back.tokens)
				reqNet -= float64(back.requests)
				tokNet -= float64(back.tokens)
				held = append(held[:i], held[i+1:]...)
			case op < 9:
				// A call used more tokens than its estimate.
				d := rng.Int64N(int64(l.TokenBurst)*3 + 1)
				b.adjust(now, d)
				tokNet += float64(d)
			case len(held) > 0:
				// A call used fewer tokens than its lease held.
				i := rng.IntN(len(held))
				d := rng.Int64N(held[i].tokens + 1)
				held[i].tokens -= d
				b.adjust(now, -d)
				tokNet -= float64(d)
			}
		}
		check(t, "requests", float64(l.RequestsPerSecond), l.RequestBurst, reqSeries)
		check(t, "tokens", float64(l.TokensPerSecond), l.TokenBurst, tokSeries)
		if t.Failed() {
			t.Logf("seed %d, limits %+v", seed, l)
			return
		}
	}
}

func TestBucketAdjustIsCapped(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := newBucket(actors.Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 100, TokenBurst: 50}, now)
	start := time.Now()
	b.adjust(now, math.MaxInt64)
	if d := time.Since(start); d > time.Second {
		t.Errorf("adjust(MaxInt64) took %v", d)
	}
	// 16 bursts of 50 at 100/s: the next 50 tokens are due 8.5 s later
	// (8 s for the debt, 0.5 s to refill them), not in centuries.
	_, _, wait := b.grant(now, 1, 50, 50)
	if wait < 8*time.Second || wait > 9*time.Second {
		t.Errorf("after a huge adjustment the next grant waits %v, want about 8.5 s", wait)
	}
}
