package budget

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, remote layers
// included.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
