package assembler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/checksum"
)

// ErrDiskMismatch reports a file whose bytes read back from the device
// differ from those downloaded.
var ErrDiskMismatch = errors.New("bytes read back from disk differ from those downloaded")

// readBackBuf is the read-back's buffer: O_DIRECT wants it aligned to the
// device's blocks (4 KiB covers every common one).
const (
	readBackBuf   = 1 << 20
	readBackAlign = 4096
)

// ReadBack reads a flushed file from the device rather than the page cache
// and returns the CRC (of algorithm alg) of its first size bytes: with
// O_DIRECT where the filesystem has it, else after dropping the file's
// clean pages from the cache (posix_fadvise DONTNEED, which evicts pages
// an fsync has written), so that the CRC is of what the disk holds. It
// reports which of the two it used. A re-read from the page cache would
// prove nothing.
func ReadBack(f *os.File, alg checksum.Algorithm, size int64) (crc uint64, direct bool, err error) {
	raw := make([]byte, readBackBuf+readBackAlign)
	buf := alignBuf(raw)
	d, err := os.OpenFile(f.Name(), os.O_RDONLY|syscall.O_DIRECT|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err == nil {
		defer d.Close()
		crc, err = crcOf(d, alg, size, buf)
		return crc, true, err
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return 0, false, fmt.Errorf("open %s to read it back: %w", f.Name(), err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, false, fmt.Errorf("drop %s from the page cache: %w", f.Name(), err)
	}
	crc, err = crcOf(io.NewSectionReader(f, 0, size), alg, size, buf)
	return crc, false, err
}

// alignBuf returns the readBackBuf bytes of raw that start on a block
// boundary.
func alignBuf(raw []byte) []byte {
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (readBackAlign - 1))
	if off != 0 {
		off = readBackAlign - off
	}
	return raw[off : off+readBackBuf]
}

// crcOf reads size bytes of r in whole buffers and returns their CRC.
func crcOf(r io.Reader, alg checksum.Algorithm, size int64, buf []byte) (uint64, error) {
	var crc uint64
	var n int64
	for n < size {
		m, err := r.Read(buf) // whole aligned blocks: the last read of the file is short
		if m > 0 {
			m = int(min(int64(m), size-n))
			crc = checksum.Update(alg, crc, buf[:m])
			n += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read back after %d of %d bytes: %w", n, size, err)
		}
	}
	if n != size {
		return 0, fmt.Errorf("read back %d of %d bytes", n, size)
	}
	return crc, nil
}
