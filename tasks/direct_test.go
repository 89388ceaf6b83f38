package tasks

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/internal/fence"
)

// directDir is a directory on ext4 or XFS, where DirectAuto writes with
// O_DIRECT: the test's own, else one in the package's directory (on the
// checkout's disk: TMPDIR may be a tmpfs); "" when neither is.
func directDir(t *testing.T) string {
	t.Helper()
	for _, mk := range []func() (string, error){
		func() (string, error) { return t.TempDir(), nil },
		func() (string, error) {
			d, err := os.MkdirTemp(".", "direct-test-")
			if err == nil {
				t.Cleanup(func() { os.RemoveAll(d) })
				d, err = filepath.Abs(d)
			}
			return d, err
		},
	} {
		d, err := mk()
		var st unix.Statfs_t
		if err == nil && unix.Statfs(d, &st) == nil && directFS(int64(st.Type)) {
			return d
		}
	}
	return ""
}

// TestDirectWriter: on ext4 or XFS a chunk's whole blocks go with
// O_DIRECT and an object's last partial block through the page cache, the
// file holding every byte; a direct write the filesystem refuses (EINVAL:
// here an unaligned buffer) leaves the rest to the page cache, still
// right; and openDirect declines keep_cache, direct_io=off and unaligned
// chunks.
func TestDirectWriter(t *testing.T) {
	t.Parallel()
	dir := directDir(t)
	if dir == "" {
		t.Skip("not run: neither TMPDIR nor the checkout is on ext4 or XFS, where direct_io=auto writes with O_DIRECT")
	}
	size := 2*directBufSize + 3*directAlign + 100
	data := make([]byte, size)
	_, _ = rand.Read(data)
	part := filepath.Join(dir, "obj.part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := preallocate(f, int64(size)); err != nil {
		t.Fatal(err)
	}
	w, err := fence.NewWriter(f, part, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		mode      string
		keep      bool
		off       int64
		wantNoDIO bool
	}{
		{"keep_cache", DirectOn, true, 0, true},
		{"off", DirectOff, false, 0, true},
		{"unaligned chunk", DirectAuto, false, 100, true},
		{"auto on ext4 or XFS", DirectAuto, false, 0, false},
		{"empty mode is auto", "", false, 1 << 20, false},
	} {
		if d := openDirect(c.mode, c.keep, f, c.off); (d == nil) != c.wantNoDIO {
			t.Errorf("%s: openDirect gave O_DIRECT: %v, want %v", c.name, d != nil, !c.wantNoDIO)
		} else if d != nil {
			d.Close()
		}
	}
	// The part file's name taken over by another file (here a FIFO, whose
	// open by name would block): openDirect reopens the file it holds.
	moved := part + ".moved"
	if err := os.Rename(part, moved); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(part, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := openDirect(DirectAuto, false, f, 0); d == nil || !sameFile(d, f) {
		t.Errorf("with its name taken over, openDirect gave %v, want the part file itself", d)
	} else {
		d.Close()
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, part); err != nil {
		t.Fatal(err)
	}
	if directFS(0x01021994) { // TMPFS_MAGIC
		t.Error("auto would write tmpfs with O_DIRECT")
	}

	d := &directWriter{w: w, dio: openDirect(DirectAuto, false, f, 0)}
	if d.dio == nil {
		t.Fatalf("no O_DIRECT descriptor for %s", part)
	}
	bp := directPool.Get().(*[]byte)
	defer directPool.Put(bp)
	buf := *bp
	// The first MiB, aligned: all of it direct.
	copy(buf, data[:directBufSize])
	if n, err := d.WriteAt(buf, 0); err != nil || n != directBufSize {
		t.Fatalf("aligned write: %d, %v", n, err)
	}
	if d.direct != directBufSize {
		t.Fatalf("%d bytes written direct, want %d", d.direct, directBufSize)
	}
	// The next MiB from a buffer one byte off alignment: refused with
	// EINVAL, written through the page cache, and so the rest.
	odd := make([]byte, directBufSize+1)[1:]
	copy(odd, data[directBufSize:2*directBufSize])
	if n, err := d.WriteAt(odd, directBufSize); err != nil || n != directBufSize {
		t.Fatalf("unaligned buffer: %d, %v", n, err)
	}
	if d.dio != nil || d.direct != directBufSize {
		t.Fatalf("after EINVAL: O_DIRECT still open %v, %d bytes direct; want closed, %d", d.dio != nil, d.direct, directBufSize)
	}
	// A fresh writer: the tail's whole blocks direct, its last 100 bytes not.
	d2 := &directWriter{w: w, dio: openDirect(DirectAuto, false, f, 2*directBufSize)}
	defer d2.close()
	tail := buf[:size-2*directBufSize]
	copy(tail, data[2*directBufSize:])
	if n, err := d2.WriteAt(tail, 2*directBufSize); err != nil || n != len(tail) {
		t.Fatalf("tail: %d, %v", n, err)
	}
	if want := int64(len(tail) / directAlign * directAlign); d2.direct != want {
		t.Fatalf("tail: %d bytes direct, want %d", d2.direct, want)
	}
	got, err := os.ReadFile(part)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the part file: %v; its bytes are the data's: %v", err, bytes.Equal(got, data))
	}
}

// BenchmarkChunkWrites times the writing of a preallocated file by 16
// writers (its 16 parts, then an fdatasync each): through the page cache
// in 256 KiB writes, then written out and dropped (what a chunk does
// without direct I/O), against O_DIRECT writes of 256 KiB, 1 MiB and
// 4 MiB; it reports the system CPU-s a GiB (bench/README.md, "Direct
// I/O"). On ext4 or XFS:
//
//	go test -run '^$' -bench ChunkWrites -benchtime 4x ./tasks
func BenchmarkChunkWrites(b *testing.B) {
	var dir string
	for _, d := range []string{b.TempDir(), "."} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && directFS(int64(st.Type)) {
			dir = d
			break
		}
	}
	if dir == "" {
		b.Skip("neither TMPDIR nor the package's directory is on ext4 or XFS")
	}
	const size, writers = 1 << 30, 16
	for _, c := range []struct {
		name   string
		direct bool
		write  int
	}{
		{"cache-256KiB", false, 256 << 10},
		{"direct-256KiB", true, 256 << 10},
		{"direct-1MiB", true, 1 << 20},
		{"direct-4MiB", true, 4 << 20},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(dir, "bench-chunk-writes")
			defer os.Remove(path)
			var sys time.Duration
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				os.Remove(path)
				f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				if err := preallocate(f, size); err != nil {
					b.Fatal(err)
				}
				f.Close()
				before := sysTime(b)
				b.StartTimer()
				var g errgroup.Group
				for w := range writers {
					g.Go(func() error { return writePart(path, int64(w)*size/writers, size/writers, c.write, c.direct) })
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				sys += sysTime(b) - before
			}
			b.ReportMetric(sys.Seconds()/float64(b.N)*float64(1<<30)/size, "sys-s/GiB")
		})
	}
}

// writePart writes n bytes at off of the file at path in writes of w
// bytes, direct or through the cache (then written out and dropped), and
// fdatasyncs.
func writePart(path string, off, n int64, w int, direct bool) error {
	flags := unix.O_WRONLY | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := alignedBuf(w)
	for o := off; o < off+n; o += int64(w) {
		if _, err := unix.Pwrite(fd, buf, o); err != nil {
			return err
		}
	}
	if !direct {
		if err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			return err
		}
		_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	}
	return unix.Fdatasync(fd)
}

// sysTime is the process's system CPU time so far.
func sysTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Stime.Nano())
}

// TestHugeBufs: the direct chunks' buffers are directBufSize, aligned for
// O_DIRECT, apart from each other, and given again once put back; and
// (where the kernel has transparent huge pages) the regions they are cut
// from are advised MADV_HUGEPAGE, the "hg" of their mapping's VmFlags.
// Under the race detector the buffers are Go's, and only the region is
// checked.
func TestHugeBufs(t *testing.T) {
	var h hugeBufs
	var got []*[]byte
	for range 5 {
		bp := h.Get().(*[]byte)
		b := *bp
		if len(b) != directBufSize || cap(b) != directBufSize {
			t.Fatalf("buffer of len %d cap %d, want %d", len(b), cap(b), directBufSize)
		}
		if p := uintptr(unsafe.Pointer(&b[0])); p%uintptr(directAlign) != 0 {
			t.Fatalf("buffer at %#x, not on a %d boundary", p, directAlign)
		}
		for i := range b {
			b[i] = byte(len(got))
		}
		got = append(got, bp)
	}
	for i, bp := range got {
		if b := *bp; b[0] != byte(i) || b[len(b)-1] != byte(i) {
			t.Fatalf("buffer %d overwritten by another: %d %d", i, b[0], b[len(b)-1])
		}
	}
	h.Put(got[3])
	if again := h.Get().(*[]byte); again != got[3] {
		t.Error("a buffer put back was not given again")
	}

	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Logf("no transparent huge pages in this kernel (%v): the buffers are plain pages", err)
		return
	}
	region, err := hugeRegion()
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	if p := uintptr(unsafe.Pointer(&region[0])); len(region) != hugePage || p%hugePage != 0 {
		t.Fatalf("region of %d bytes at %#x, want %d on a %d boundary", len(region), p, hugePage, hugePage)
	}
	addr := uint64(uintptr(unsafe.Pointer(&region[0])))
	var in bool
	for _, line := range strings.Split(string(smaps), "\n") {
		var lo, hi uint64
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			if !slices.Contains(strings.Fields(line), "hg") {
				t.Errorf("the region's mapping is not advised MADV_HUGEPAGE: %s", line)
			}
			return
		}
	}
	t.Errorf("no mapping in /proc/self/smaps holds the region at %#x", addr)
}
