//go:build race

package main

// raceEnabled: the race detector slows the test's own reading too much for
// the throughput checks.
const raceEnabled = true
