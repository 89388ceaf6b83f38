//go:build !race

package tasks

// raceEnabled says the race detector is on (race_on.go).
const raceEnabled = false
