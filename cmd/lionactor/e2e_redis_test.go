package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/internal/redistest"
	"github.com/lionactor/lionactor/internal/runtimetest"
)

// redisPassword is the password of the Redis user of these runs: it must
// never appear in what a process prints.
const redisPassword = "e2e-r3dis-pa55"

// redisRun is a shared run whose budget a redis-server keeps: no process
// of lionactor's but the simulator and the members.
type redisRun struct {
	*sharedRun
	srv    *redistest.Server
	client *redis.Client
}

// startRedisRun starts a redis-server with an ACL user, the simulator and
// members with --budget redis://user:password@host:port/0.
func startRedisRun(t *testing.T, bin string, size budgetSizing, members int) *redisRun {
	t.Helper()
	srv := redistest.Start(t, redistest.Config{TCP: true, Conf: []string{
		"user default off",
		"user lion on >" + redisPassword + " ~lionactor:* &lionactor:* +@all",
	}})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "lion", Password: redisPassword})
	t.Cleanup(func() { client.Close() })
	r := &redisRun{sharedRun: startSimulator(t, bin, size), srv: srv, client: client}
	r.addr = "redis://lion:" + redisPassword + "@" + srv.Addr + "/0"
	r.startMembers(t, bin, members, nil)
	return r
}

// leaseKeys lists the records of leases in Redis.
func (r *redisRun) leaseKeys(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := r.client.Scan(ctx, 0, "lionactor:*:lease:*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// noSecrets fails t if the API key or the Redis password appears in what a
// process printed.
func (r *redisRun) noSecrets(t *testing.T) {
	t.Helper()
	for _, p := range append([]*process{r.sim}, r.members...) {
		out := p.stdout.String() + p.stderr.String()
		if strings.Contains(out, testKey) || strings.Contains(out, redisPassword) {
			t.Errorf("the API key or the Redis password appears in the output of %s", p.name)
		}
	}
}

// TestEndToEndRedisBudget runs one simulator enforcing a limit and three
// batch processes, each given the whole limit, sharing one budget on a
// real redis-server.
func TestEndToEndRedisBudget(t *testing.T) {
	bin := buildBinary(t)
	size := sharedBudgetSizing()

	// Together at the limit, not over it: no 429, and at least 95% of the
	// limit over the span of the calls.
	t.Run("three members", func(t *testing.T) {
		r := startRedisRun(t, bin, size, 3)
		all := r.finish(t, nil)
		wall := time.Since(r.started)
		for _, m := range r.members {
			if n := fallbackNotice(m.stderr.String()); n != "" {
				t.Errorf("%s fell back while Redis ran: %s", m.name, n)
			}
			if !strings.Contains(m.stderr.String(), "shared budget: joined since") {
				t.Errorf("%s: the summary does not say it was joined:\n%s", m.name, lastLines(m.stderr.String(), 8))
			}
		}
		served, limited := r.simCounts(t)
		n, span := callSpan(all)
		if limited != 0 {
			t.Errorf("the simulator answered %d requests 429", limited)
		}
		if served != n+1 {
			t.Errorf("the simulator served %d requests, want %d", served, n+1)
		}
		rate := float64(n) / span.Minutes()
		t.Logf("%d requests in %v of calls: %.0f/min, %.1f%% of the limit %d/min; over the wall time %v: %.1f%%",
			n, span.Round(time.Millisecond), rate, 100*rate/float64(size.rpm), size.rpm,
			wall.Round(time.Millisecond), 100*float64(n)/wall.Minutes()/float64(size.rpm))
		if rate < 0.95*float64(size.rpm) {
			t.Errorf("achieved %.0f requests/min, below 95%% of the limit %d", rate, size.rpm)
		}
		if rate > 1.02*float64(size.rpm) {
			t.Errorf("achieved %.0f requests/min, over the limit %d", rate, size.rpm)
		}
		r.noSecrets(t)
	})

	// A member killed mid-run: the others finish every request without a
	// 429, and the records of its leases lapse in Redis.
	t.Run("member killed", func(t *testing.T) {
		r := startRedisRun(t, bin, size, 3)
		victim := r.members[0]
		runtimetest.WaitFor(t, time.Minute, "a quarter of member 0's results", func() bool { return countLines(r.outs[0]) >= size.lines/4 })
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := victim.wait(t, 30*time.Second); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("member 0: %v, want killed", err)
		}
		keys := r.leaseKeys(t)
		for _, k := range keys {
			// -2: lapsed since the scan; -1 would be a record kept forever.
			if ttl := r.client.PTTL(context.Background(), k).Val(); ttl == -1 || ttl > 2*time.Second {
				t.Errorf("lease record %s lasts %v more, want at most two lease TTLs", k, ttl)
			}
		}
		r.finish(t, map[int]bool{0: true})
		_, limited := r.simCounts(t)
		if limited != 0 {
			t.Errorf("the simulator answered %d requests 429", limited)
		}
		runtimetest.WaitFor(t, 10*time.Second, "every lease record to lapse", func() bool { return len(r.leaseKeys(t)) == 0 })
		t.Logf("%d lease records in Redis when member 0 was killed; none left after the run", len(keys))
		r.noSecrets(t)
	})

	// redis-server killed mid-run: each member notices within its reply
	// timeout, says so, goes on alone at a third of the limit, and rejoins
	// once the server is back.
	t.Run("redis killed", func(t *testing.T) {
		r := startRedisRun(t, bin, size, 3)
		total := func() int {
			n := 0
			for _, out := range r.outs {
				n += countLines(out)
			}
			return n
		}
		runtimetest.WaitFor(t, time.Minute, "a quarter of the results", func() bool { return total() >= 3*size.lines/4 })
		r.srv.Kill()
		killedAt, killed := total(), time.Now()
		runtimetest.WaitFor(t, 30*time.Second, "every member to fall back", func() bool {
			for _, m := range r.members {
				if fallbackNotice(m.stderr.String()) == "" {
					return false
				}
			}
			return true
		})
		r.srv.Restart(t)
		restarted := time.Now()
		r.finish(t, nil)
		for _, m := range r.members {
			stderr := m.stderr.String()
			if n := fallbackNotice(stderr); !strings.Contains(n, "budget on Redis unreachable") || !strings.Contains(n, "expected_members=3") {
				t.Errorf("%s does not say it fell back to a third of the limits:\n%s", m.name, stderr)
			}
			if !strings.Contains(stderr, "budget on Redis reachable again; rejoined") || !strings.Contains(stderr, "1 fallbacks, 1 rejoins") {
				t.Errorf("%s does not say it rejoined:\n%s", m.name, stderr)
			}
			t.Logf("%s fell back %v after the kill, and rejoined %v after the restart", m.name,
				noticeAt(t, stderr, "unreachable").Sub(killed).Round(time.Millisecond),
				noticeAt(t, stderr, "rejoined").Sub(restarted).Round(time.Millisecond))
		}
		served, limited := r.simCounts(t)
		t.Logf("Redis killed after %d results; the simulator served %d requests, %d answered 429", killedAt, served, limited)
		if limited != 0 {
			t.Errorf("the simulator answered %d requests 429 with Redis killed and back", limited)
		}
		r.noSecrets(t)
	})
}

// noticeAt is the time of the first budget notice in log that says what.
func noticeAt(t *testing.T, log, what string) time.Time {
	t.Helper()
	for l := range strings.Lines(log) {
		if strings.Contains(l, `msg="lionactor: budget`) && strings.Contains(l, what) {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "time=") {
				if at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
					return at
				}
			}
		}
	}
	t.Errorf("no notice saying %q in:\n%s", what, log)
	return time.Time{}
}
