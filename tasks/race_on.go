//go:build race

package tasks

// raceEnabled says the race detector is on: buffers then come from Go's
// heap, where it watches them.
const raceEnabled = true
