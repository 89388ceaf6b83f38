package tasks

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// partSyncs shares the fdatasyncs of the chunks of a part file within
// this worker.
var partSyncs = &groupSyncs{files: map[fileID]*groupSync{}}

// groupSyncs is a group commit of fdatasync per file: a chunk that asks
// for one while another is running waits for it to end and then runs one
// more for every chunk that asked meanwhile. ext4's fdatasync writes the
// whole file's dirty pages and commits the journal, so 16 chunks each
// calling it queue behind one another for the same work; grouped, they
// share a few. Files are told apart by device and inode, not by name: a
// part file removed and created again is another file. Written here
// because no library offers it for a file: it is a dozen lines of
// sync.Cond.
type groupSyncs struct {
	mu    sync.Mutex
	files map[fileID]*groupSync
}

// fileID names a file: its device and inode.
type fileID struct{ dev, ino uint64 }

// groupSync is the group commit of one file.
type groupSync struct {
	cond    sync.Cond // on groupSyncs.mu
	users   int       // chunks using this entry; removed at 0
	asked   uint64    // tickets handed out
	synced  uint64    // every ticket up to this one is covered by a finished fdatasync
	running bool
	failed  uint64 // tickets up to this one were covered by a failed fdatasync
	err     error  // that failure
}

// sync returns once an fdatasync of f that began after this call has
// finished, and that fdatasync's error.
func (g *groupSyncs) sync(f *os.File) error {
	return g.syncWith(f, func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) })
}

func (g *groupSyncs) syncWith(f *os.File, fdatasync func(*os.File) error) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.files[id]
	if s == nil {
		s = &groupSync{}
		s.cond.L = &g.mu
		g.files[id] = s
	}
	s.users++
	defer func() {
		if s.users--; s.users == 0 {
			delete(g.files, id)
		}
	}()
	s.asked++
	ticket := s.asked
	for s.synced < ticket {
		if s.running {
			s.cond.Wait()
			continue
		}
		// Run one for everything asked so far.
		s.running = true
		upTo := s.asked
		g.mu.Unlock()
		err := fdatasync(f)
		g.mu.Lock()
		s.running = false
		s.synced = upTo
		if err != nil {
			s.failed, s.err = upTo, err
		}
		s.cond.Broadcast()
	}
	if ticket <= s.failed {
		return s.err
	}
	return nil
}
