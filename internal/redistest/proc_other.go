//go:build !linux

package redistest

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie the server's life
// to the test binary's: a server left behind by a crashed test must be
// killed by hand there.
func dieWithParent(*exec.Cmd) {}
