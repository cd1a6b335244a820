package budget

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, remote layers
// included. Started by BenchmarkGrantLatencyUnderFlood with floodEnv set,
// the test binary floods a service instead.
func TestMain(m *testing.M) {
	if spec := os.Getenv(floodEnv); spec != "" {
		os.Exit(floodProcess(spec))
	}
	goleak.VerifyTestMain(m)
}
