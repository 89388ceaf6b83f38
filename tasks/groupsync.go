package tasks

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// partSyncs shares the fdatasyncs of the chunks of a part file within
// this worker.
var partSyncs = &groupSyncs{files: map[string]*groupSync{}}

// groupSyncs is a group commit of fdatasync per file: a chunk that asks
// for one while another is running waits for it to end and then runs one
// more for every chunk that asked meanwhile. ext4's fdatasync writes the
// whole file's dirty pages and commits the journal, so 16 chunks each
// calling it queue behind one another for the same work; grouped, the
// 128 chunks of a 1 GiB object take a few dozen fdatasyncs rather than
// 128. Written here because no library offers it for a file: it is a
// dozen lines of sync.Cond.
type groupSyncs struct {
	mu    sync.Mutex
	files map[string]*groupSync
}

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
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.files[f.Name()]
	if s == nil {
		s = &groupSync{}
		s.cond.L = &g.mu
		g.files[f.Name()] = s
	}
	s.users++
	defer func() {
		if s.users--; s.users == 0 {
			delete(g.files, f.Name())
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
