package fence

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// holder is a lease whose answer the test sets.
type holder struct{ err error }

func (h *holder) Check() error              { return h.err }
func (h *holder) Await(time.Duration) error { return h.err }

func openPart(t *testing.T) (*os.File, string) {
	t.Helper()
	part := filepath.Join(t.TempDir(), "obj.part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(8); err != nil {
		t.Fatal(err)
	}
	return f, part
}

// TestMovedFileIsNotWritten: once the part file is renamed (finalized) or
// replaced, a writer still holding it writes nothing.
func TestMovedFileIsNotWritten(t *testing.T) {
	f, part := openPart(t)
	w, err := NewWriter(f, part, &holder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("ab"), 0); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(filepath.Dir(part), "obj")
	if err := os.Rename(part, final); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(final)
	if _, err := w.WriteAt([]byte("XY"), 2); !errors.Is(err, ErrMoved) {
		t.Fatalf("write after rename: %v, want ErrMoved", err)
	}
	// Another file under the part file's name is not this one either.
	if err := os.WriteFile(part, make([]byte, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("XY"), 2); !errors.Is(err, ErrMoved) {
		t.Fatalf("write after replace: %v, want ErrMoved", err)
	}
	got, _ := os.ReadFile(final)
	after, _ := os.Stat(final)
	if string(got) != "ab\x00\x00\x00\x00\x00\x00" || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("finalized file changed: %q, mtime %v then %v", got, before.ModTime(), after.ModTime())
	}
}

// TestLostLeaseWritesNothing: a writer whose lease is lost writes nothing,
// with the lease's error.
func TestLostLeaseWritesNothing(t *testing.T) {
	f, part := openPart(t)
	lost := errors.New("lost")
	w, err := NewWriter(f, part, &holder{err: lost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("ab"), 0); !errors.Is(err, lost) {
		t.Fatalf("write: %v, want the lease's error", err)
	}
	if got, _ := os.ReadFile(part); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("file: %q", got)
	}
}

// TestExclusiveWaitsForWriter: a writer stopped between its check and its
// write (as a paused process) holds its range; the assembler's exclusive
// lock waits for it, and gets the file once the write is done.
func TestExclusiveWaitsForWriter(t *testing.T) {
	f, part := openPart(t)
	w, err := NewWriter(f, part, nil)
	if err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- w.Do(0, 4, func() error {
			close(inside)
			<-release
			_, err := f.WriteAt([]byte("abcd"), 0)
			return err
		})
	}()
	<-inside
	g, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := Exclusive(g, 100*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive lock during a write: %v, want ErrBusy", err)
	}
	close(release)
	if err := Exclusive(g, 5*time.Second); err != nil {
		t.Fatalf("exclusive lock after the write: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Held by the assembler, the lock keeps the next write waiting until
	// the file is closed (renamed first: then the write finds it moved).
	next := make(chan error)
	go func() { _, err := w.WriteAt([]byte("zz"), 4); next <- err }()
	select {
	case err := <-next:
		t.Fatalf("a write went through the exclusive lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.Rename(part, part+".final"); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := <-next; !errors.Is(err, ErrMoved) {
		t.Fatalf("write after the assembler renamed and closed: %v, want ErrMoved", err)
	}
}
