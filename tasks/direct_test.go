package tasks

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

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
	const size = 2*directBufSize + 3*directAlign + 100
	data := make([]byte, size)
	_, _ = rand.Read(data)
	part := filepath.Join(dir, "obj.part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := preallocate(f, size); err != nil {
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
