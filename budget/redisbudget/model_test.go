package redisbudget

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/actors"
)

// model is the budget as the budget service keeps it, written plainly: it
// counts the live members at every lease and keeps leases in a map. The
// scripts must agree with it on every answer.
type model struct {
	limits    [4]float64 // rps, rb, tps, tb; 0 is off
	rl, tl    float64
	at, pause int64 // µs
	made      bool
	members   map[string]memberModel
	leases    map[uint64]leaseModel
	memberTTL int64 // µs
	leaseTTL  int64
}

type memberModel struct {
	limits  [4]float64
	expires int64
}

type leaseModel struct {
	requests, tokens int64
	expires          int64 // of the record: two lease TTLs
}

func (m *model) refill(now int64) {
	if !m.made {
		m.made, m.at = true, now
	}
	dt := float64(max(0, now-m.at)) / 1e6
	if m.limits[0] > 0 {
		m.rl = math.Min(m.limits[1], m.rl+m.limits[0]*dt)
	}
	if m.limits[2] > 0 {
		m.tl = math.Min(m.limits[3], m.tl+m.limits[2]*dt)
	}
	m.at = max(m.at, now)
}

func (m *model) lease(now int64, member string, w actors.LeaseWanted, l actors.Limits, id uint64) (requests, tokens, wait int64) {
	m.refill(now)
	rps, rb, tps, tb := encodeLimits(l)
	m.members[member] = memberModel{limits: [4]float64{rps, float64(rb), tps, float64(tb)}, expires: now + m.memberTTL}
	var low [4]float64
	for name, mm := range m.members {
		if mm.expires <= now {
			delete(m.members, name)
			continue
		}
		for j, v := range mm.limits {
			if v > 0 && (low[j] == 0 || v < low[j]) {
				low[j] = v
			}
		}
	}
	if low != m.limits {
		m.limits = low
		if low[0] > 0 {
			m.rl = math.Min(m.rl, low[1])
		}
		if low[2] > 0 {
			m.tl = math.Min(m.tl, low[3])
		}
	}
	want, wantT, minT := max(w.Requests, 1), w.Tokens, w.MinTokens
	if m.limits[2] > 0 {
		minT = min(max(minT, 0), int64(m.limits[3]))
		wantT = max(wantT, minT)
	} else {
		minT, wantT = 0, 0
	}
	haveR, haveT := math.Inf(1), math.Inf(1)
	if m.limits[0] > 0 {
		haveR = m.rl
	}
	if m.limits[2] > 0 {
		haveT = m.tl
	}
	if now < m.pause {
		return 0, 0, m.pause - now
	}
	var w8 float64
	if haveR < 1 {
		w8 = (1 - haveR) / m.limits[0] * 1e6
	}
	if haveT < float64(minT) {
		w8 = math.Max(w8, (float64(minT)-haveT)/m.limits[2]*1e6)
	}
	if w8 > 0 {
		return 0, 0, int64(math.Ceil(w8)) + 1000
	}
	r, t := float64(want), float64(wantT)
	if !math.IsInf(haveR, 1) {
		r = math.Min(r, math.Floor(haveR))
	}
	if !math.IsInf(haveT, 1) {
		t = math.Min(t, math.Floor(haveT))
	}
	if int64(r) < want {
		t = math.Min(t, math.Max(math.Ceil(float64(wantT)*r/float64(want)), float64(minT)))
	}
	if m.limits[0] > 0 {
		m.rl -= r
	}
	if m.limits[2] > 0 {
		m.tl -= t
	}
	m.leases[id] = leaseModel{requests: int64(r), tokens: int64(t), expires: now + 2*m.leaseTTL}
	return int64(r), int64(t), 0
}

func (m *model) giveBack(now int64, id uint64, requests, tokens int64) bool {
	l, ok := m.leases[id]
	delete(m.leases, id)
	if !ok || l.expires <= now {
		return false
	}
	m.refill(now)
	if m.limits[0] > 0 {
		m.rl = math.Min(m.limits[1], m.rl+float64(min(max(requests, 0), l.requests)))
	}
	if m.limits[2] > 0 {
		m.tl = math.Min(m.limits[3], m.tl+float64(min(max(tokens, 0), l.tokens)))
	}
	return true
}

// Each operation refills only when it changes the budget, as the scripts
// save only then: refilling in two steps or one may differ in the last bit.

func (m *model) adjust(now, delta int64) bool {
	if !m.made || m.limits[2] == 0 || delta == 0 {
		return false
	}
	m.refill(now)
	if delta < 0 {
		m.tl = math.Min(m.limits[3], m.tl-float64(delta))
	} else {
		m.tl -= math.Min(float64(delta), 16*m.limits[3])
	}
	return true
}

func (m *model) pauseFor(now, d int64) {
	m.refill(now)
	m.pause = now + d
}

// The scripts against the model over random sequences of leases by
// several members with different limits, returns (of leases live, lapsed
// and unknown), adjustments, pauses and clock steps.
func TestScriptsAgreeWithTheModel(t *testing.T) {
	ctx := context.Background()
	kinds := []actors.Limits{
		{RequestsPerSecond: 10, RequestBurst: 5, TokensPerSecond: 1000, TokenBurst: 500},
		{RequestsPerSecond: 4, RequestBurst: 8, TokensPerSecond: 3000, TokenBurst: 200},
		{RequestsPerSecond: 25, RequestBurst: 3},
		{RequestsPerSecond: rate.Inf, TokensPerSecond: 700, TokenBurst: 900},
		{RequestsPerSecond: 7.5, RequestBurst: 2, TokensPerSecond: 333.3, TokenBurst: 333},
	}
	for seed := uint64(1); seed <= 30; seed++ {
		f := newFake(t, Config{LeaseTTL: 400 * time.Millisecond, MemberTTL: 2 * time.Second})
		m := &model{members: map[string]memberModel{}, leases: map[uint64]leaseModel{}, memberTTL: 2e6, leaseTTL: 4e5}
		rng := rand.New(rand.NewPCG(seed, 7))
		limitsOf := map[string]actors.Limits{}
		var ids []uint64
		for step := range 400 {
			now := f.now.UnixMicro()
			switch op := rng.IntN(20); {
			case op < 9:
				member := []string{"a", "b", "c"}[rng.IntN(3)]
				if _, ok := limitsOf[member]; !ok || rng.IntN(10) == 0 {
					limitsOf[member] = kinds[rng.IntN(len(kinds))]
				}
				w := want(rng.Int64N(6), rng.Int64N(800), rng.Int64N(300))
				id := randomID()
				f.store.newID = func() uint64 { return id }
				g := f.lease(member, w, limitsOf[member])
				r, tk, wait := m.lease(now, member, w, limitsOf[member], id)
				if g.Requests != r || g.Tokens != tk || g.Wait != time.Duration(wait)*time.Microsecond {
					t.Fatalf("seed %d step %d: %s leased %+v with %+v: %+v; the model grants %d, %d, wait %dµs",
						seed, step, member, w, limitsOf[member], g, r, tk, wait)
				}
				if r > 0 {
					ids = append(ids, id)
				} else {
					delete(m.leases, id)
				}
			case op < 13 && len(ids) > 0:
				id := ids[rng.IntN(len(ids))]
				if rng.IntN(8) == 0 {
					id = randomID() // never granted
				}
				requests, tokens := rng.Int64N(8)-1, rng.Int64N(900)-50
				if got, want := f.giveBack(id, requests, tokens), m.giveBack(now, id, requests, tokens); got != want {
					t.Fatalf("seed %d step %d: return of %d: %v; the model says %v", seed, step, id, got, want)
				}
			case op < 15:
				delta := rng.Int64N(2000) - 1000
				got, err := f.store.Adjust(ctx, key, delta)
				if err != nil {
					t.Fatal(err)
				}
				if want := m.adjust(now, delta); got != want {
					t.Fatalf("seed %d step %d: adjust %d: %v; the model says %v", seed, step, delta, got, want)
				}
			case op < 16:
				// Pause takes the time left from the caller's clock, which
				// moves while Redis's stands still: compare the end the
				// script stored.
				d := time.Duration(rng.Int64N(600)) * time.Millisecond
				got, err := f.store.Pause(ctx, key, "p", time.Now().Add(d))
				if err != nil {
					t.Fatal(err)
				}
				end := int64(0)
				if v := f.mr.HGet(stateKey(key), "pause"); v != "" {
					end = int64(f.level("pause"))
				}
				if got != (end != m.pause) || (got && end <= max(now, m.pause)) {
					t.Fatalf("seed %d step %d: pause of %v: extended %v to %d from %d at %d", seed, step, d, got, end, m.pause, now)
				} else if got {
					m.pauseFor(now, end-now)
				}
			default:
				f.advance(time.Duration(rng.Int64N(400_000)) * time.Microsecond)
			}
		}
	}
}
