package tasks_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestChunkPagesLeaveTheCache: when a chunk ends, its pages are written
// to disk and dropped from the page cache, durable (flush=sync) or not
// (flush=none), unless KeepCache; on ext4 and XFS (direct_io=auto) they
// never enter it, the chunk written with O_DIRECT, which its debug log
// says; and the file assembled from such chunks holds the object's bytes.
// On a filesystem that keeps every page (tmpfs) the cache checks cannot
// tell, and the test says it skipped them.
func TestChunkPagesLeaveTheCache(t *testing.T) {
	t.Parallel()
	dir, why := dropDir(t)
	guard, err := location.NewGuard([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	direct := unix.Statfs(dir, &st) == nil && (st.Type == unix.EXT4_SUPER_MAGIC || st.Type == unix.XFS_SUPER_MAGIC)
	for _, c := range []struct {
		name             string
		noFlush, keep    bool
		directIO         string
		wantCachedChunk0 bool
	}{
		{"durable", false, false, tasks.DirectAuto, false},
		{"scratch", true, false, tasks.DirectAuto, false},
		{"durable direct_io=off", false, false, tasks.DirectOff, false},
		{"scratch direct_io=off", true, false, tasks.DirectOff, false},
		{"durable keep_cache", false, true, tasks.DirectAuto, true},
		{"scratch keep_cache", true, true, tasks.DirectAuto, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.chunk.Guard = guard
			r.chunk.NoFlush, r.chunk.KeepCache, r.chunk.DirectIO = c.noFlush, c.keep, c.directIO
			var logs bytes.Buffer
			r.chunk.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			r.asm.Assembler = &assembler.Assembler{S3: r.s3.Endpoints(), Ledger: r.led, Guard: guard, NoFlush: c.noFlush}
			r.s3.CreateBucket(t, "bkt")
			data := r.s3.PutRandom(t, "bkt", "obj", 3<<20+5, false)
			dest := filepath.Join(dir, filepath.Base(t.Name()))
			x, chunks := r.enqueueObject(t, "obj", int64(len(data)), dest)
			if err := r.chunk.ProcessTask(context.Background(), chunks[0]); err != nil {
				t.Fatal(err)
			}
			rec, err := r.led.GetTransfer(context.Background(), x.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantDirect := direct && !c.keep && c.directIO == tasks.DirectAuto
			if got := strings.Contains(logs.String(), fmt.Sprintf("direct_bytes=%d ", rec.ChunkSize)); got != wantDirect {
				t.Errorf("the first chunk written with O_DIRECT: %v, want %v (on ext4 or XFS: %v); its log:\n%s", got, wantDirect, direct, logs.String())
			}
			cached := residentPages(t, location.PartPath(dest, x.ID, rec.PartToken), 0, int(rec.ChunkSize))
			pages := int(rec.ChunkSize) / os.Getpagesize()
			switch {
			case why != "":
			case c.wantCachedChunk0 && cached != pages:
				t.Errorf("%d of the first chunk's %d pages in the page cache, want all: KeepCache keeps them", cached, pages)
			case !c.wantCachedChunk0 && cached != 0:
				t.Errorf("%d of the first chunk's %d pages still in the page cache once it ended, want none", cached, pages)
			}
			for _, task := range chunks[1:] {
				if err := r.chunk.ProcessTask(context.Background(), task); err != nil {
					t.Fatal(err)
				}
			}
			pending, err := r.insp.ListPendingTasks(tasks.QueueAssemble)
			if err != nil || len(pending) != 1 {
				t.Fatalf("%d assembler tasks pending (%v), want 1", len(pending), err)
			}
			if err := r.asm.ProcessTask(context.Background(), asynq.NewTask(pending[0].Type, pending[0].Payload)); err != nil {
				t.Fatalf("assemble: %v", err)
			}
			if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("final file: %v (its bytes equal the object's: %v)", err, bytes.Equal(got, data))
			}
			if why != "" {
				t.Skipf("the file is right, but the page cache was not checked: %s", why)
			}
		})
	}
}

// residentPages counts the pages of [off, off+n) of the file at path that
// are in the page cache (mincore of a mapping, which faults none in).
func residentPages(t *testing.T, path string, off, n int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), int64(off), n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	defer unix.Munmap(mem)
	vec := make([]byte, (n+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys/unix has no Mincore.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", path, errno)
	}
	cached := 0
	for _, v := range vec {
		cached += int(v & 1)
	}
	return cached
}

// dropDir is a temporary directory on a filesystem that drops a file's
// clean pages when asked: the test's own, else one in the package's
// directory, on the checkout's disk (TMPDIR may be a tmpfs). Where neither
// does, it returns the test's own with why the cache cannot be checked.
func dropDir(t *testing.T) (dir, why string) {
	t.Helper()
	d := t.TempDir()
	whyNot := dropsPages(t, d)
	if whyNot == "" {
		return d, ""
	}
	local, err := os.MkdirTemp(".", "pagecache-test-")
	if err != nil {
		return d, fmt.Sprintf("%s drops no pages (%s), and no directory can be made in the checkout: %v", d, whyNot, err)
	}
	t.Cleanup(func() { os.RemoveAll(local) })
	if local, err = filepath.Abs(local); err != nil {
		t.Fatal(err)
	}
	if w := dropsPages(t, local); w != "" {
		return d, fmt.Sprintf("neither %s (%s) nor %s (%s) drops pages", d, whyNot, local, w)
	}
	return local, ""
}

// dropsPages writes a file in dir, flushes it and drops its pages, and
// says why not when some stay in the cache.
func dropsPages(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "probe")
	defer os.Remove(path)
	const n = 64 << 10
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Sprintf("fsync: %v", err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Sprintf("posix_fadvise: %v", err)
	}
	if k := residentPages(t, path, 0, n); k != 0 {
		return fmt.Sprintf("%d of %d pages stayed cached after fsync and posix_fadvise(DONTNEED)", k, n/os.Getpagesize())
	}
	return ""
}
