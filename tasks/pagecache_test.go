package tasks_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
// (flush=none), unless KeepCache; and the file assembled from such chunks
// holds the object's bytes.
func TestChunkPagesLeaveTheCache(t *testing.T) {
	t.Parallel()
	dir := diskDir(t)
	guard, err := location.NewGuard([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name             string
		noFlush, keep    bool
		wantCachedChunk0 bool
	}{
		{"durable", false, false, false},
		{"scratch", true, false, false},
		{"durable keep_cache", false, true, true},
		{"scratch keep_cache", true, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.chunk.Guard = guard
			r.chunk.NoFlush, r.chunk.KeepCache = c.noFlush, c.keep
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
			const chunk = 1 << 20 // enqueueObject's chunk size
			cached := residentPages(t, location.PartPath(dest, x.ID, rec.PartToken), 0, chunk)
			pages := chunk / os.Getpagesize()
			switch {
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

// diskDir is a temporary directory on a filesystem whose clean pages can
// be dropped: the test's own, unless TMPDIR is a tmpfs (whose pages are
// the files), then one in the package's directory, on the checkout's disk.
func diskDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if !onTmpfs(t, d) {
		return d
	}
	d, err := os.MkdirTemp(".", "pagecache-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if d, err = filepath.Abs(d); err != nil {
		t.Fatal(err)
	}
	if onTmpfs(t, d) {
		t.Skipf("TMPDIR and the checkout are both on tmpfs, whose pages cannot leave the cache")
	}
	return d
}

func onTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return st.Type == unix.TMPFS_MAGIC
}
