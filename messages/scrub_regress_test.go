package messages_test

import (
	"strings"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestScrubDoesNotReformASecretAtAReplacement(t *testing.T) {
	// "D]abc" starts with the end of "[REDACTED]": one pass would turn
	// "D]abcabc" into "[REDACTED]abc", which holds the secret again.
	got := messages.Scrub("D]abcabc", []string{"D]abc"})
	if strings.Contains(got, "D]abc") {
		t.Fatalf("Scrub left the secret in %q", got)
	}
	// A secret inside the marker itself cannot be hidden by it; Scrub must
	// still end.
	if got := messages.Scrub("xEDACx", []string{"EDAC"}); !strings.Contains(got, messages.Redacted) {
		t.Fatalf("Scrub(%q) = %q", "xEDACx", got)
	}
}
