package soak

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/chaos"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out runtimetest.Buffer
	rep, err := Run(context.Background(), Options{Duration: 4 * time.Second, Every: 500 * time.Millisecond, PanicRate: 0.05, Out: &out, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if n := len(rep.Samples); n < 7 || n > 9 {
		t.Errorf("%d samples, want about 8", n)
	}
	for i, s := range rep.Samples {
		if s.Heap == 0 || s.Goroutines == 0 || s.FDs == 0 {
			t.Errorf("sample %d is empty: %v", i, s)
		}
		if s.InFlight != s.Submitted-s.Ended() || s.InFlight < 0 {
			t.Errorf("sample %d: in flight %d", i, s.InFlight)
		}
		if i > 0 && (s.Submitted < rep.Samples[i-1].Submitted || s.Elapsed <= rep.Samples[i-1].Elapsed) {
			t.Errorf("sample %d goes backwards: %v after %v", i, s, rep.Samples[i-1])
		}
	}
	a := rep.After
	// 50 requests a second for 4 s, give or take the ticker.
	if a.Submitted < 150 || a.Submitted > 210 {
		t.Errorf("submitted %d, want about 200", a.Submitted)
	}
	if a.Completed == 0 || a.Failed == 0 {
		t.Errorf("completed %d, failed %d: faults should fail some and not all", a.Completed, a.Failed)
	}
	if a.InFlight != 0 || rep.Lost != 0 || rep.Terminals != a.Submitted || rep.Duplicates != 0 {
		t.Errorf("after: %v, lost %d, terminals %d, duplicates %d", a, rep.Lost, rep.Terminals, rep.Duplicates)
	}
	if rep.Restarts == 0 {
		t.Error("no caller restarts: the panics did not happen")
	}
	text := out.String()
	for _, want := range []string{"t=0s heap=", "goroutines=", "fds=", "submitted=", "completed=", "failed=", "cancelled=", "in_flight=", "after stop:"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	var sum bytes.Buffer
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ended once", "lost", "load", "heap", "goroutines", "fds"} {
		if !strings.Contains(sum.String(), "check "+name) {
			t.Errorf("summary lacks check %q:\n%s", name, sum.String())
		}
	}
	if strings.Contains(sum.String(), "FAIL") {
		t.Errorf("summary has a failure:\n%s", sum.String())
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	rep, err := Run(ctx, Options{Duration: time.Minute, Every: 200 * time.Millisecond, NoFaults: true, PanicRate: -1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's", err)
	}
	if rep.Lost != 0 || rep.After.InFlight != 0 || rep.Terminals != rep.After.Submitted {
		t.Errorf("interrupted run lost requests: %+v", rep.After)
	}
	if rep.After.Failed != 0 {
		t.Errorf("%d failed without faults", rep.After.Failed)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{
		{Duration: -1},
		{Rate: -1},
		{PanicRate: 2},
		{Duration: time.Second, WarmUp: time.Second},
	} {
		err := o.Validate()
		if _, ok := errors.AsType[*messages.ConfigError](err); !ok {
			t.Errorf("%+v: %v, want a ConfigError", o, err)
		}
	}
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 10*time.Minute || o.Every != 10*time.Second || o.Rate != 50 || o.Window != 500 || o.Faults.ServerError == 0 {
		t.Errorf("defaults: %+v", o)
	}
	if _, err := Run(context.Background(), Options{Rate: -1}); err == nil {
		t.Error("Run took bad options")
	}
	// The simulator refuses fault rates above 1 in all.
	if _, err := Run(context.Background(), Options{Duration: time.Second, Faults: chaos.Faults{ServerError: 0.9, Unavailable: 0.9}}); err == nil {
		t.Error("Run started with fault rates above 1")
	}
}

func TestChecks(t *testing.T) {
	base := Report{Options: Options{WarmUp: time.Second}, After: Sample{Submitted: 10, Completed: 10}, Terminals: 10}
	samples := func(heap uint64, g, fds int) []Sample {
		var s []Sample
		for i := range 6 {
			s = append(s, Sample{Elapsed: time.Duration(i+1) * time.Second, Heap: heap * uint64(i+1), Goroutines: 10 + g*i, FDs: 10 + fds*i})
		}
		return s
	}
	failed := func(rep Report) string {
		var names []string
		for _, c := range checks(rep) {
			if !c.OK {
				names = append(names, c.Name)
			}
		}
		return strings.Join(names, ",")
	}
	cases := []struct {
		name string
		edit func(*Report)
		want string
	}{
		{"level", func(r *Report) { r.Samples = samples(0, 0, 0) }, ""},
		{"heap", func(r *Report) { r.Samples = samples(16<<20, 0, 0) }, "heap"},
		{"goroutines", func(r *Report) { r.Samples = samples(0, 30, 0) }, "goroutines"},
		{"fds", func(r *Report) { r.Samples = samples(0, 0, 30) }, "fds"},
		{"few samples", func(r *Report) { r.Samples = samples(0, 0, 0)[:2] }, "growth"},
		{"lost", func(r *Report) { r.Samples = samples(0, 0, 0); r.Lost = 1 }, "lost"},
		{"twice", func(r *Report) { r.Samples = samples(0, 0, 0); r.Terminals, r.Duplicates = 11, 1 }, "ended once"},
		{"no load", func(r *Report) {
			r.Samples = samples(0, 0, 0)
			r.After, r.Terminals = Sample{}, 0
		}, "load"},
	}
	for _, c := range cases {
		rep := base
		c.edit(&rep)
		if got := failed(rep); got != c.want {
			t.Errorf("%s: failed %q, want %q", c.name, got, c.want)
		}
		rep.Checks = checks(rep)
		if (rep.Err() == nil) != (c.want == "") {
			t.Errorf("%s: Err %v", c.name, rep.Err())
		}
	}
}

func TestCountFDs(t *testing.T) {
	if n := countFDs("/no/such/dir"); n != -1 {
		t.Errorf("countFDs of a missing dir = %d, want -1", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken") }

func TestWriteSummaryError(t *testing.T) {
	rep := Report{Checks: []Check{{Name: "x", OK: true}}}
	if rep.WriteSummary(failWriter{}) == nil {
		t.Error("WriteSummary ignored a write error")
	}
}
