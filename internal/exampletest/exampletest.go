// Package exampletest holds what the tests of the example programs share.
package exampletest

import (
	"os"
	"testing"
)

// CaptureStdout returns what f writes to os.Stdout, as an example's main
// does.
func CaptureStdout(t *testing.T, f func()) string {
	t.Helper()
	file, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	defer func(stdout *os.File) { os.Stdout = stdout }(os.Stdout)
	os.Stdout = file
	f()
	b, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
