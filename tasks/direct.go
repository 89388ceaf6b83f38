package tasks

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/internal/fence"
)

// Direct I/O (direct_io): a chunk written with O_DIRECT goes from the copy
// buffer to the device, past the page cache. Measured on the benchmarks'
// VM (bench/README.md), it cut the workers' CPU for a 1 GiB download by a
// tenth (durable) to a quarter (scratch): no copy into the page cache, no
// pages to allocate, write back and drop. A part file is preallocated (unwritten extents), so
// ext4 and XFS take concurrent aligned direct writes under a shared lock.
const (
	// DirectAuto writes with O_DIRECT on ext4 and XFS, unless KeepCache;
	// anywhere else (NFS, tmpfs, FUSE) through the page cache.
	DirectAuto = "auto"
	// DirectOn writes with O_DIRECT wherever the filesystem takes it,
	// unless KeepCache.
	DirectOn = "on"
	// DirectOff always writes through the page cache.
	DirectOff = "off"
)

// directAlign is the alignment of a direct write's offset, length and
// buffer: a page (at least 4 KiB), a multiple of the logical block size of
// the devices ext4 and XFS sit on (512 or 4096 bytes). A page, so that no
// page holds both bytes written direct and bytes written through the
// cache by another chunk.
var directAlign = max(4096, os.Getpagesize())

// directBufSize is the copy buffer of a direct chunk, one per running
// chunk, and so the size of its writes. Each direct write is an I/O the
// chunk waits for: a microbenchmark of 16 writers of a preallocated 1 GiB
// file on the VM spent 0.22-0.27 system CPU-s with 256 KiB writes and
// 0.10-0.15 with 1 MiB (4 MiB: no better). 16 of them are 16 MiB.
const directBufSize = 1 << 20

// directPool holds the direct chunks' copy buffers.
var directPool hugeBufs

// hugeBufs hands out directBufSize buffers cut from 2 MiB regions that the
// kernel is asked to back with transparent huge pages (MADV_HUGEPAGE; the
// usual "madvise" setting honours it). A direct write pins its buffer's
// pages for the I/O, page by page: a 1 MiB write from 4 KiB pages pins 256
// of them, from a huge page one folio. perf on the hand-run fleet put the
// pinning and unpinning (gup_fast_fallback, __bio_release_pages) at 9 % of
// the workers' samples for a 1 GiB download (bench/README.md). The
// buffers are kept for the worker's life (as many as ran at once: 16 MiB
// at the default concurrency); where the mapping fails, and under the race
// detector (which sees only Go's heap), they are alignedBuf's.
type hugeBufs struct {
	mu   sync.Mutex
	free []*[]byte
}

// hugePage is the size of an x86-64 transparent huge page, the size and
// alignment of the regions hugeBufs cuts its buffers from.
const hugePage = 2 << 20

// A region holds at least one buffer: this does not compile otherwise.
const _ uint = hugePage/directBufSize - 1

// Get returns a *[]byte of directBufSize bytes, aligned for O_DIRECT.
func (h *hugeBufs) Get() any {
	h.mu.Lock()
	if n := len(h.free); n > 0 {
		b := h.free[n-1]
		h.free = h.free[:n-1]
		h.mu.Unlock()
		return b
	}
	h.mu.Unlock()
	var region []byte
	if !raceEnabled { // the race detector watches Go's heap only
		region, _ = hugeRegion() // nil when the mapping fails
	}
	if region == nil {
		b := alignedBuf(directBufSize)
		return &b
	}
	var bufs []*[]byte
	for off := 0; off+directBufSize <= len(region); off += directBufSize {
		b := region[off : off+directBufSize : off+directBufSize]
		bufs = append(bufs, &b)
	}
	h.mu.Lock()
	h.free = append(h.free, bufs[1:]...)
	h.mu.Unlock()
	return bufs[0]
}

// Put gives back a buffer Get returned.
func (h *hugeBufs) Put(x any) {
	h.mu.Lock()
	h.free = append(h.free, x.(*[]byte))
	h.mu.Unlock()
}

// hugeRegion maps hugePage bytes of anonymous memory on a hugePage
// boundary, advised MADV_HUGEPAGE. It is never unmapped.
func hugeRegion() ([]byte, error) {
	m, err := unix.Mmap(-1, 0, 2*hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map copy buffers: %w", err)
	}
	start := int((hugePage - uintptr(unsafe.Pointer(&m[0]))%hugePage) % hugePage)
	region := m[start : start+hugePage : start+hugePage]
	// The rest of the mapping is left as it is: unix.Munmap takes only a
	// whole mapping it made, and 2 MiB of untouched address space costs
	// no memory.
	_ = unix.Madvise(region, unix.MADV_HUGEPAGE) // advice: without it, 4 KiB pages
	return region, nil
}

// alignedBuf is a buffer of n bytes that starts on a directAlign boundary,
// as O_DIRECT wants.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%uintptr(directAlign))) % directAlign
	return b[skip : skip+n : skip+n]
}

// directFS reports whether a filesystem is one DirectAuto writes to with
// O_DIRECT: ext4 or XFS, local block filesystems whose direct writes are
// cheap and safe (over NFS each would be a synchronous RPC).
func directFS(fsType int64) bool {
	return fsType == unix.EXT4_SUPER_MAGIC || fsType == unix.XFS_SUPER_MAGIC
}

// openDirect opens the part file f a second time with O_DIRECT when a
// chunk at offset off may be written past the page cache: mode allows it
// (on; auto, and the file is on ext4 or XFS), keepCache does not forbid it,
// and off is aligned. It reopens f itself (/proc/self/fd), not its name,
// which someone may have replaced meanwhile (with a FIFO, whose open would
// block). It returns nil otherwise, or when the filesystem refuses
// O_DIRECT (or /proc is not there): the chunk is then written through the
// page cache.
func openDirect(mode string, keepCache bool, f *os.File, off int64) *os.File {
	if keepCache || mode == DirectOff || off%int64(directAlign) != 0 {
		return nil
	}
	if mode != DirectOn {
		var st unix.Statfs_t
		if unix.Fstatfs(int(f.Fd()), &st) != nil || !directFS(int64(st.Type)) {
			return nil
		}
	}
	fd, err := openFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(fd), f.Name())
	if !sameFile(d, f) {
		d.Close()
		return nil
	}
	return d
}

// sameFile reports whether two open files are one file.
func sameFile(a, b *os.File) bool {
	sa, erra := a.Stat()
	sb, errb := b.Stat()
	return erra == nil && errb == nil && os.SameFile(sa, sb)
}

// directWriter writes a chunk through its part file's fence: the whole
// blocks of a write at an aligned offset with O_DIRECT, the rest (an
// object's last, partial block) through the page cache. A filesystem that
// refuses a direct write with EINVAL (an alignment it does not take) gets
// the rest of the chunk through the page cache (in writes of a MiB, slower
// than CopyAt's); any other error fails the write.
type directWriter struct {
	w      *fence.Writer
	dio    *os.File
	direct int64 // bytes written with O_DIRECT
}

// WriteAt writes b at off.
func (d *directWriter) WriteAt(b []byte, off int64) (int, error) {
	k := 0
	if d.dio != nil && off%int64(directAlign) == 0 {
		k = len(b) / directAlign * directAlign
	}
	if k > 0 {
		err := d.w.Do(off, int64(k), func() error {
			_, err := d.dio.WriteAt(b[:k], off)
			return err
		})
		switch {
		case errors.Is(err, unix.EINVAL):
			d.close()
			k = 0
		case err != nil:
			return 0, fmt.Errorf("direct write: %w", err)
		default:
			d.direct += int64(k)
		}
	}
	if k == len(b) {
		return k, nil
	}
	m, err := d.w.WriteAt(b[k:], off+int64(k))
	return k + m, err
}

// close closes the O_DIRECT descriptor; writes go through the page cache
// after it.
func (d *directWriter) close() {
	if d.dio != nil {
		d.dio.Close()
		d.dio = nil
	}
}

// openFile is unix.Open retried on EINTR, as os.OpenFile does (a FUSE or
// NFS open the runtime's signals interrupt).
func openFile(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
