package tasks

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSync runs 32 concurrent flushes of one file: each returns only
// after an fdatasync that began after it asked, far fewer than 32 run, and
// a failure reaches exactly the callers it covered.
func TestGroupSync(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "part"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := &groupSyncs{files: map[fileID]*groupSync{}}

	var started, finished atomic.Int64 // fdatasyncs begun and ended
	var calls atomic.Int64
	asked := func() uint64 { // tickets handed out for the file so far
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, s := range g.files {
			return s.asked
		}
		return 0
	}
	fake := func(*os.File) error {
		calls.Add(1)
		started.Add(1)
		if started.Load() == 1 {
			// The first fdatasync lasts until every caller has asked, so
			// the other 31 all wait for, and share, the next one.
			for deadline := time.Now().Add(10 * time.Second); asked() < 32; runtime.Gosched() {
				if time.Now().After(deadline) {
					t.Error("the 32 callers never all asked")
					break
				}
			}
		}
		finished.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := started.Load()
			if err := g.syncWith(f, fake); err != nil {
				t.Error(err)
			}
			// An fdatasync that began after the call has finished.
			if finished.Load() <= before {
				t.Errorf("returned with %d fdatasyncs finished, %d begun before the call", finished.Load(), before)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 2 {
		t.Errorf("%d fdatasyncs for 32 callers, want 2 (the first, and one the other 31 share)", n)
	}
	if len(g.files) != 0 {
		t.Errorf("%d entries left after every caller returned", len(g.files))
	}

	// A failure goes to the callers it covered, not to later ones.
	boom := errors.New("EIO")
	if err := g.syncWith(f, func(*os.File) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed fdatasync: %v", err)
	}
	if err := g.syncWith(f, func(*os.File) error { return nil }); err != nil {
		t.Fatalf("after a failure, a good fdatasync: %v", err)
	}
	// The real one.
	if err := g.sync(f); err != nil {
		t.Fatal(err)
	}

	// Another file of the same name (the first removed) is another group:
	// a sync running on the old one does not cover it.
	os.Remove(f.Name())
	f2, err := os.Create(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	release, inOld := make(chan struct{}), make(chan struct{})
	go func() {
		_ = g.syncWith(f, func(*os.File) error { close(inOld); <-release; return nil })
	}()
	<-inOld
	defer close(release)
	var ran atomic.Bool
	done := make(chan error, 1)
	go func() { done <- g.syncWith(f2, func(*os.File) error { ran.Store(true); return nil }) }()
	select {
	case err := <-done:
		if err != nil || !ran.Load() {
			t.Fatalf("the new file's sync: ran %v, %v (covered by the old file's)", ran.Load(), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new file's sync waited for the old file's")
	}
}
