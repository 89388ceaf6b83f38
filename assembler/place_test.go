package assembler

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/s3fleet/s3fleet/checksum"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// TestPlaceFlushes checks that place fsyncs the file and its directory by
// default and neither with NoFlush (flush=none), and renames either way.
func TestPlaceFlushes(t *testing.T) {
	for _, noFlush := range []bool{false, true} {
		var files, dirs int
		syncFile = func(f *os.File) error { files++; return f.Sync() }
		syncDir = func(d string) error { dirs++; return SyncDir(d) }
		t.Cleanup(func() { syncFile, syncDir = (*os.File).Sync, SyncDir })

		dir := t.TempDir()
		x := ledger.Transfer{ID: "x1", Dest: filepath.Join(dir, "obj"), ETag: `"e"`}
		part := location.PartPath(x.Dest, x.ID, location.NewPartToken())
		if err := os.WriteFile(part, []byte("bytes"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(part, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		a := &Assembler{NoFlush: noFlush}
		if err := a.place(x, f, part, Evidence{}); err != nil {
			t.Fatalf("NoFlush=%v: %v", noFlush, err)
		}
		f.Close()
		if b, err := os.ReadFile(x.Dest); err != nil || string(b) != "bytes" {
			t.Fatalf("NoFlush=%v: final file %q, %v", noFlush, b, err)
		}
		want := 1
		if noFlush {
			want = 0
		}
		if files != want || dirs != want {
			t.Errorf("NoFlush=%v: %d file and %d directory fsyncs, want %d of each", noFlush, files, dirs, want)
		}
	}
}

// TestReadBack reads a flushed file back from the device, with O_DIRECT
// where the filesystem has it and through a dropped page cache where it
// does not (tmpfs), and gets the CRC of what was written.
func TestReadBack(t *testing.T) {
	t.Parallel()
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "readback")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	data := make([]byte, 3<<20+5) // not a whole number of blocks
	_, _ = rand.Read(data)
	for _, dir := range dirs {
		f, err := os.Create(filepath.Join(dir, "part"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		crc, direct, err := ReadBack(f, checksum.CRC64NVME, int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if want := checksum.Update(checksum.CRC64NVME, 0, data); crc != want {
			t.Fatalf("%s: read back %x, want %x (direct I/O: %v)", dir, crc, want, direct)
		}
		t.Logf("%s: direct I/O %v", dir, direct)
		if _, _, err := ReadBack(f, checksum.CRC64NVME, int64(len(data))+1); err == nil {
			t.Errorf("%s: reading back more than the file holds succeeded", dir)
		}
	}
}

// TestPlaceVerifyDisk: with VerifyDisk a file whose bytes on disk are not
// the ones downloaded is not renamed to its final name.
func TestPlaceVerifyDisk(t *testing.T) {
	t.Parallel()
	data := []byte("the bytes that landed")
	for _, tc := range []struct {
		name string
		crc  uint64
		ok   bool
	}{
		{"same bytes", checksum.Update(checksum.CRC32C, 0, data), true},
		{"other bytes", checksum.Update(checksum.CRC32C, 0, []byte("the bytes that were sent")), false},
	} {
		dir := t.TempDir()
		x := ledger.Transfer{ID: "x1", Bucket: "b", Key: "k", Dest: filepath.Join(dir, "obj"), Size: int64(len(data))}
		part := location.PartPath(x.Dest, x.ID, location.NewPartToken())
		if err := os.WriteFile(part, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(part, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		a := &Assembler{VerifyDisk: true, NoFlush: true}
		err = a.place(x, f, part, Evidence{CRCAlgorithm: checksum.CRC32C, CRC: tc.crc})
		f.Close()
		_, statErr := os.Stat(x.Dest)
		switch {
		case tc.ok && (err != nil || statErr != nil):
			t.Errorf("%s: %v, final file: %v", tc.name, err, statErr)
		case !tc.ok && (!errors.Is(err, ErrDiskMismatch) || statErr == nil):
			t.Errorf("%s: %v, want ErrDiskMismatch and no final file (%v)", tc.name, err, statErr)
		}
	}
}
