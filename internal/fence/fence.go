// Package fence keeps a stale writer out of a file it no longer owns.
//
// A chunk writes into its object's part file through a Writer: each write
// takes a shared open-file-description lock on its range, checks that the
// worker still holds its lease and that the part file's name still leads
// to the file written, writes, and unlocks. The assembler takes an
// exclusive lock on the whole file (Exclusive) before it verifies and
// renames it. So a writer paused anywhere (even between its check and its
// write) either holds its lock, and the assembler waits for it, or finds
// on waking that the file was renamed (the object is finished) or that
// its lease is lost (the chunk runs elsewhere), and writes nothing.
package fence

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Holder is the lease a writer must hold (liveness.Lease): Check reports
// whether it is held now; Await waits for a lapsed one to be renewed
// (nil) or lost.
type Holder interface {
	Check() error
	Await(limit time.Duration) error
}

// ErrMoved reports a part file whose name no longer leads to the file
// being written: it was renamed to its final name (its object is
// finished) or removed.
var ErrMoved = errors.New("the part file was renamed or removed")

// ErrBusy reports a file whose lock a writer kept past the wait.
var ErrBusy = errors.New("a writer holds the part file")

// Writer writes one part file, fenced: see the package doc.
type Writer struct {
	f        *os.File
	path     string
	dev, ino uint64
	lease    Holder
}

// NewWriter fences writes to f, opened at path for reading and writing (a
// shared lock needs both), by lease (nil: none).
func NewWriter(f *os.File, path string, lease Holder) (*Writer, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	return &Writer{f: f, path: path, dev: st.Dev, ino: st.Ino, lease: lease}, nil
}

// Is reports whether path names the file written (the assembler renamed
// it there).
func (w *Writer) Is(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Dev == w.dev && st.Ino == w.ino
}

// File is the file written.
func (w *Writer) File() *os.File { return w.f }

// WriteAt writes b at off, fenced.
func (w *Writer) WriteAt(b []byte, off int64) (int, error) {
	var n int
	err := w.Do(off, int64(len(b)), func() (err error) {
		n, err = w.f.WriteAt(b, off)
		return err
	})
	return n, err
}

// Do runs fn (a write to [off, off+n), or an allocation) under a shared
// lock on that range once the lease is held and the part file is still
// there. A lapsed lease is waited for; a lost one, or a moved file, is
// the error and fn does not run.
func (w *Writer) Do(off, n int64, fn func() error) error {
	for {
		locked, err := lock(w.f, unix.F_OFD_SETLKW, unix.F_RDLCK, off, n)
		if err != nil {
			return fmt.Errorf("lock %s: %w", w.path, err)
		}
		var leaseErr error
		if w.lease != nil {
			leaseErr = w.lease.Check()
		}
		if leaseErr == nil {
			if err = w.moved(); err == nil {
				err = fn()
			}
		}
		if locked {
			_, _ = lock(w.f, unix.F_OFD_SETLK, unix.F_UNLCK, off, n)
		}
		if leaseErr == nil {
			return err
		}
		if err := w.lease.Await(30 * time.Second); err != nil {
			return err
		}
	}
}

// moved reports ErrMoved unless path still leads to the file.
func (w *Writer) moved() error {
	var st unix.Stat_t
	err := unix.Stat(w.path, &st)
	switch {
	case errors.Is(err, unix.ENOENT) || (err == nil && (st.Dev != w.dev || st.Ino != w.ino)):
		return fmt.Errorf("%w: %s", ErrMoved, w.path)
	case err != nil:
		return fmt.Errorf("stat %s: %w", w.path, err)
	}
	return nil
}

// Exclusive takes an exclusive lock on all of f, waiting up to limit for
// writers to finish their writes; it is released when f is closed. A
// filesystem without locks is not waited for.
func Exclusive(f *os.File, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := lock(f, unix.F_OFD_SETLK, unix.F_WRLCK, 0, 0)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES):
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		case time.Now().After(deadline):
			return fmt.Errorf("%w: %s is still locked by a writer after %s (a worker paused mid-write?)", ErrBusy, f.Name(), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lock sets an open-file-description lock of type typ on [off, off+n)
// (n 0: to the end and beyond) with cmd. It reports false, and no error,
// where the filesystem has no locks.
func lock(f *os.File, cmd int, typ int16, off, n int64) (bool, error) {
	fl := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: n}
	for {
		err := unix.FcntlFlock(f.Fd(), cmd, &fl)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
			return false, nil
		}
		return false, err
	}
}
