package testenv

import (
	"fmt"
	"os"
	"slices"
	"sync"
)

// T is what the servers' starters need of a test: testing.TB has it, and
// so has Standalone, for a TestMain whose servers outlive every test (the
// package's runnable examples use them).
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Standalone is a T outside any test: its Fatal panics, and Close runs its
// cleanups (stopping the servers, removing the directories).
type Standalone struct {
	mu       sync.Mutex
	cleanups []func()
}

var _ T = (*Standalone)(nil)

// Helper does nothing.
func (*Standalone) Helper() {}

// Fatal panics with its arguments.
func (*Standalone) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// Fatalf panics with the message.
func (*Standalone) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// Cleanup runs f at Close, last added first.
func (s *Standalone) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// TempDir is a new directory, removed at Close.
func (s *Standalone) TempDir() string {
	dir, err := os.MkdirTemp("", "s3fleet-test-")
	if err != nil {
		panic(err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups.
func (s *Standalone) Close() {
	s.mu.Lock()
	fs := slices.Clone(s.cleanups)
	s.cleanups = nil
	s.mu.Unlock()
	for _, f := range slices.Backward(fs) {
		f()
	}
}
