package budget

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/internal/redistest"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// sentinelDownAfter is how long the Sentinels wait before they think a
// silent primary down: short, to fail over within seconds.
const sentinelDownAfter = 500 * time.Millisecond

// startSentinels starts a primary, its replica and three Sentinels
// (quorum 2) watching them, and waits until each Sentinel knows the
// replica and the two others, as a failover needs. It returns the primary,
// the replica and the URL of the Sentinels.
func startSentinels(t *testing.T) (primary, replica *redistest.Server, url string) {
	t.Helper()
	primary = redistest.Start(t, redistest.Config{TCP: true})
	replica = redistest.Start(t, redistest.Config{TCP: true, Conf: []string{
		"replicaof 127.0.0.1 " + strings.TrimPrefix(primary.Addr, "127.0.0.1:")}})
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	runtimetest.WaitFor(t, 20*time.Second, "the replica to sync", func() bool {
		return strings.Contains(rc.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	var addrs []string
	for range 3 {
		s := redistest.Start(t, redistest.Config{Sentinel: &redistest.Sentinel{
			Primary: primary.Addr, Quorum: 2, DownAfter: sentinelDownAfter}})
		addrs = append(addrs, s.Addr)
	}
	for _, addr := range addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		runtimetest.WaitFor(t, 30*time.Second, "Sentinel "+addr+" to know the others and the replica", func() bool {
			others, err1 := sc.Sentinels(ctx, "mymaster").Result()
			replicas, err2 := sc.Replicas(ctx, "mymaster").Result()
			return err1 == nil && err2 == nil && len(others) == 2 && len(replicas) == 1
		})
		sc.Close()
	}
	return primary, replica, fmt.Sprintf("redis://%s/0?master_name=mymaster&addr=%s&addr=%s", addrs[0], addrs[1], addrs[2])
}

// TestRedisSentinelFailover kills the primary while three members lease
// from it through Sentinel. It checks that every request ends and every
// member is joined again once the replica has taken over, and logs the
// figures: how long until the failover, each member's fallback and
// rejoin, the longest time without a request leaving any member, and the
// 429s.
func TestRedisSentinelFailover(t *testing.T) {
	const perMember = 600
	primary, replica, url := startSentinels(t)
	r := newRedisRun(t, 12_000, 40) // 200 requests/s; its own server is not used
	r.url = url
	ms := []*localExec{r.join(t, 3), r.join(t, 3), r.join(t, 3)}
	var hs [][]*runtime.Handle
	for _, m := range ms {
		hs = append(hs, m.submit(t, perMember))
	}
	runtimetest.WaitFor(t, time.Minute, "300 requests made", func() bool { return r.sim.Stats().Requests >= 300 })
	primary.Kill()
	killed := time.Now()

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	var promoted time.Duration
	runtimetest.WaitFor(t, time.Minute, "the replica to be promoted", func() bool {
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			promoted = time.Since(killed)
			return true
		}
		return false
	})
	// Each member falls back (if it was asking Redis when the primary
	// went) and rejoins once the replica has taken over.
	fellBack := make([]time.Duration, len(ms))
	rejoined := make([]time.Duration, len(ms))
	reasons := make([]string, len(ms))
	runtimetest.WaitFor(t, time.Minute, "every member joined again", func() bool {
		all := true
		for i, m := range ms {
			st := m.ex.Stats().Shared
			switch {
			case st.Mode == messages.SharedFallback && fellBack[i] == 0:
				fellBack[i], reasons[i] = st.Since.Sub(killed), st.Reason
			case st.Mode == messages.SharedJoined && st.Rejoins > 0:
				rejoined[i] = st.Since.Sub(killed)
			}
			all = all && (rejoined[i] > 0 || (st.Fallbacks == 0 && time.Since(killed) > 10*time.Second))
		}
		return all
	})
	for i := range hs {
		if n, _ := completed(t, hs[i]); n != perMember {
			t.Errorf("member %d: %d of %d COMPLETED", i, n, perMember)
		}
	}
	// The longest time, from the kill on, in which no request left any
	// member.
	arr := r.sim.Arrivals()
	var gap time.Duration
	for i := 1; i < len(arr); i++ {
		if from := arr[i-1]; arr[i].After(killed) {
			if from.Before(killed) {
				from = killed
			}
			gap = max(gap, arr[i].Sub(from))
		}
	}
	st := r.sim.Stats()
	t.Logf("primary killed: replica promoted after %v; members fell back after %v (%q) and rejoined after %v; "+
		"longest time without a request %v; %d 429s in %d requests",
		promoted.Round(time.Millisecond), rounded(fellBack), reasons, rounded(rejoined), gap.Round(time.Millisecond), st.RateLimited, st.Requests)
	for i, m := range ms {
		if st := m.ex.Stats().Shared; st.Mode != messages.SharedJoined {
			t.Errorf("member %d: %+v, want joined after the failover", i, st)
		}
	}
}

func rounded(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	for i := range out {
		out[i] = out[i].Round(time.Millisecond)
	}
	return out
}
