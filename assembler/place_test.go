package assembler

import (
	"os"
	"path/filepath"
	"testing"

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
		if err := a.place(x, f, part); err != nil {
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
