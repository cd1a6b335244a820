//go:build !race

package main

// raceEnabled tells whether the tests run with the race detector, so that a
// binary built by a test reuses the packages the test build compiled.
const raceEnabled = false
