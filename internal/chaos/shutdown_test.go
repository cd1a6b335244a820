package chaos

import (
	"errors"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// TestShutdownGraceful stops the executor gracefully in the middle of a run
// with faults on and slow streams open: everything admitted finishes,
// completed or failed by its faults, none cancelled; later submits are
// refused with ErrStopped.
func TestShutdownGraceful(t *testing.T) {
	n := runSize()
	rep := runChecked(t, Options{Requests: n, Stop: Graceful, ForcedRate: 0.05, PanicRate: 0.005,
		StreamLatency: 300 * time.Millisecond, StopTimeout: time.Minute})
	if rep.StopErr != nil || rep.StopDuration >= time.Minute {
		t.Errorf("Stop took %v and returned %v", rep.StopDuration, rep.StopErr)
	}
	if rep.InFlightAtStop == 0 {
		t.Error("no HTTP attempt was open when the stop began")
	}
	if c := rep.ByStatus[messages.StatusCancelled.String()]; c != 0 {
		t.Errorf("%d requests CANCELLED by a graceful stop", c)
	}
	if rep.Submitted < n/2 || rep.Refused == 0 || rep.Submitted+rep.Refused != n {
		t.Errorf("%d submitted and %d refused of %d, stop after %d", rep.Submitted, rep.Refused, n, rep.StopAfter)
	}
	if !errors.Is(rep.PostStopSubmit, messages.ErrStopped) {
		t.Errorf("Submit after Stop: %v, want ErrStopped", rep.PostStopSubmit)
	}
}

// TestShutdownImmediate stops the executor at once in the middle of a run:
// what was admitted and not ended is CANCELLED with ErrStopped, the calls'
// contexts (streams' included) are cancelled, no HTTP request outlives
// StopNow, and later submits are refused with ErrStopped.
func TestShutdownImmediate(t *testing.T) {
	n := runSize()
	rep := runChecked(t, Options{Requests: n, Stop: Immediate, ForcedRate: 0.05, PanicRate: 0.005,
		StreamLatency: 300 * time.Millisecond, StopTimeout: time.Minute})
	if rep.StopErr != nil || rep.StopDuration >= time.Minute {
		t.Errorf("StopNow took %v and returned %v", rep.StopDuration, rep.StopErr)
	}
	if rep.ByStatus[messages.StatusCancelled.String()] == 0 || rep.ByError["stopped"] != rep.ByStatus[messages.StatusCancelled.String()] {
		t.Errorf("cancelled %d, of which stopped %d", rep.ByStatus[messages.StatusCancelled.String()], rep.ByError["stopped"])
	}
	if rep.StoppedAttempts == 0 || rep.StoppedStreams == 0 {
		t.Errorf("the stop cancelled %d HTTP attempts, %d of them streams", rep.StoppedAttempts, rep.StoppedStreams)
	}
	if rep.InFlightAfterStop != 0 {
		t.Errorf("%d HTTP attempts open after StopNow", rep.InFlightAfterStop)
	}
	if rep.Submitted < n/2 || rep.Refused == 0 || rep.Submitted+rep.Refused != n {
		t.Errorf("%d submitted and %d refused of %d, stop after %d", rep.Submitted, rep.Refused, n, rep.StopAfter)
	}
	if !errors.Is(rep.PostStopSubmit, messages.ErrStopped) {
		t.Errorf("Submit after StopNow: %v, want ErrStopped", rep.PostStopSubmit)
	}
}

// TestRestartStorm panics every call with a small restart budget: the
// supervisor restarts callers MaxRestarts times, then fails every pending
// request with ErrRestartStorm and stops the executor, whose Stop returns
// at once.
func TestRestartStorm(t *testing.T) {
	const maxRestarts = 3
	rep := runChecked(t, Options{Requests: 300, PanicRate: 1, MaxRestarts: maxRestarts, RestartWindow: time.Minute,
		NoFaults: true, Mix: Mix{OpenAIChat: 1, AnthropicChat: 1, Embeddings: 1}})
	if !errors.Is(rep.ExecutorErr, messages.ErrRestartStorm) {
		t.Fatalf("executor error %v, want ErrRestartStorm", rep.ExecutorErr)
	}
	if rep.Restarts != maxRestarts+1 {
		t.Errorf("%d restarts counted, want %d (the last one is the storm)", rep.Restarts, maxRestarts+1)
	}
	if c := rep.ByError["caller_crashed"]; c == 0 || c > maxRestarts {
		t.Errorf("%d requests failed with a caller crash, want 1 to %d", c, maxRestarts)
	}
	if rep.ByError["restart_storm"] == 0 || rep.ByStatus[messages.StatusCompleted.String()] != 0 {
		t.Errorf("terminal %v, errors %v: want the pending requests FAILED with restart_storm", rep.ByStatus, rep.ByError)
	}
	if rep.Refused == 0 {
		t.Error("no request was refused after the storm stopped the executor")
	}
	if !errors.Is(rep.PostStopSubmit, messages.ErrStopped) || !errors.Is(rep.PostStopSubmit, messages.ErrRestartStorm) {
		t.Errorf("Submit after the storm: %v, want ErrStopped and ErrRestartStorm", rep.PostStopSubmit)
	}
	if rep.FinalStop > 5*time.Second {
		t.Errorf("Stop after the storm took %v", rep.FinalStop)
	}
}
