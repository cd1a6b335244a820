package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no workload leaves a goroutine behind: executors,
// simulators, connections and queued calls must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
