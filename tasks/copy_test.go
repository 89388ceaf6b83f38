package tasks

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/location"
)

// memFile is an io.WriterAt over a byte slice.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.b[off:], p), nil
}

type failingWriter struct{}

func (failingWriter) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

// stuckReader returns nothing and no error, forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

// sizedReader returns at most size bytes a Read, like a socket.
type sizedReader struct {
	r    io.Reader
	size int
}

func (s sizedReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.size)]) }

// writeSizes records the length of every WriteAt.
type writeSizes struct {
	memFile
	sizes []int
}

func (w *writeSizes) WriteAt(p []byte, off int64) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.memFile.WriteAt(p, off)
}

// TestCopyAtGathersReads checks that CopyAt gathers short reads (a TLS
// record each, at most 16 KiB) into writes of minWrite, and writes the
// range's tail as it is: a fenced write per record was what made the
// workers spend twice s5cmd's CPU over HTTPS (tasks/chunk.go).
func TestCopyAtGathersReads(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1<<20+10<<10)
	_, _ = rand.Read(data)
	dst := &writeSizes{memFile: memFile{b: make([]byte, len(data))}}
	n, _, err := CopyAt(dst, sizedReader{bytes.NewReader(data), 16 << 10}, 0, int64(len(data)), make([]byte, bufSize), checksum.CRC32C)
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.b, data) {
		t.Fatalf("n=%d err=%v, bytes equal %v", n, err, bytes.Equal(dst.b, data))
	}
	want := []int{minWrite, minWrite, minWrite, minWrite, 10 << 10}
	if !slices.Equal(dst.sizes, want) {
		t.Fatalf("write sizes %v, want %v", dst.sizes, want)
	}
}

// TestCopyAt: exactly the range's bytes land at its offset, with their
// CRC; a body short or long is an error.
func TestCopyAt(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3<<20+17)
	_, _ = rand.Read(data)
	for _, tc := range []struct {
		name    string
		src     func() io.Reader
		off     int64
		want    int64
		wantErr string
	}{
		{"exact", func() io.Reader { return bytes.NewReader(data) }, 0, int64(len(data)), ""},
		{"at an offset", func() io.Reader { return bytes.NewReader(data[:1000]) }, 5000, 1000, ""},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:3000])) }, 0, 3000, ""},
		{"pieces of 100 KiB", func() io.Reader { return sizedReader{bytes.NewReader(data), 100 << 10} }, 4096, int64(len(data)), ""},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data[:200000])) }, 7, 200000, ""},
		{"short body", func() io.Reader { return bytes.NewReader(data[:999]) }, 0, 1000, "body shorter than the range"},
		{"long body", func() io.Reader { return bytes.NewReader(data[:1001]) }, 0, 1000, "body longer than the range"},
		{"reset mid-body", func() io.Reader {
			return io.MultiReader(bytes.NewReader(data[:500]), iotest.ErrReader(errors.New("connection reset")))
		}, 0, 1000, "connection reset"},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data[:70000])) }, 3, 70000, ""},
		{"short body with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data[:999])) }, 0, 1000, "body shorter than the range"},
		{"no progress", func() io.Reader { return stuckReader{} }, 0, 1000, io.ErrNoProgress.Error()},
		{"empty", func() io.Reader { return bytes.NewReader(nil) }, 0, 0, ""},
	} {
		// whole (a direct chunk's copy): every write but the last fills
		// the buffer, so that it stays aligned.
		for _, whole := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s whole=%v", tc.name, whole), func(t *testing.T) {
				src := tc.src()
				const bufLen = 2 * minWrite // more than CopyAt gathers, so whole shows
				dst := &writeSizes{memFile: memFile{b: make([]byte, tc.off+tc.want+10)}}
				n, crc, err := copyAt(dst, src, tc.off, tc.want, make([]byte, bufLen), checksum.CRC32C, whole)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("error %v, want %q", err, tc.wantErr)
					}
					return
				}
				if err != nil || n != tc.want {
					t.Fatalf("n=%d err=%v", n, err)
				}
				if !bytes.Equal(dst.b[tc.off:tc.off+n], data[:n]) {
					t.Fatal("bytes differ")
				}
				if want := uint64(crc32.Checksum(data[:n], crc32.MakeTable(crc32.Castagnoli))); crc != want {
					t.Fatalf("crc %08x, want %08x", crc, want)
				}
				for i, w := range dst.sizes {
					if whole && i < len(dst.sizes)-1 && w != bufLen {
						t.Fatalf("write %d of %d is %d bytes, want the whole buffer (%d): %v", i+1, len(dst.sizes), w, bufLen, dst.sizes)
					}
				}
			})
		}
	}
	t.Run("write error", func(t *testing.T) {
		t.Parallel()
		_, _, err := CopyAt(failingWriter{}, bytes.NewReader(data[:10]), 0, 10, make([]byte, 64), checksum.CRC32C)
		if !errors.Is(err, errWrite) || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestChunkPayloadValidate(t *testing.T) {
	t.Parallel()
	good := ChunkPayload{Transfer: "x", Gen: 1, Chunks: 2, Object: Object{Bucket: "b", Key: "k", Size: 10}, Chunk: 1, First: 5, Last: 9, Dest: "/d/k", CRC: "CRC32C"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good payload: %v", err)
	}
	if old := (ChunkPayload{Transfer: "x", Gen: 1, Chunks: 1, Object: Object{Bucket: "b", Key: "k", Size: 10}, Last: 9, Dest: "/d/k"}); old.Validate() != nil || old.crc() != checksum.CRC64NVME {
		t.Fatalf("a payload without a CRC (as before it was named) is refused or not CRC64NVME: %v", old.Validate())
	}
	for name, mutate := range map[string]func(*ChunkPayload){
		"no transfer":       func(p *ChunkPayload) { p.Transfer = "" },
		"generation 0":      func(p *ChunkPayload) { p.Gen = 0 },
		"negative first":    func(p *ChunkPayload) { p.First = -1 },
		"last before first": func(p *ChunkPayload) { p.Last = 4 },
		"past the size":     func(p *ChunkPayload) { p.Last = 10 },
		"chunk past count":  func(p *ChunkPayload) { p.Chunk = 2 },
		"zero size":         func(p *ChunkPayload) { p.Size = 0 },
		"relative dest":     func(p *ChunkPayload) { p.Dest = "d/k" },
		"unclean dest":      func(p *ChunkPayload) { p.Dest = "/d/../etc/k" },
		"not a CRC":         func(p *ChunkPayload) { p.CRC = "SHA256" },
	} {
		p := good
		mutate(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
}

func TestPreallocateAndFlush(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "part"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := preallocate(f, 1<<20); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 1<<20 {
		t.Fatalf("size %d after preallocate", st.Size())
	}
	if _, err := f.WriteAt([]byte("hello"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := flushRange(f, 4096, 5); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCopyAt(b *testing.B) {
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	f, err := os.Create(filepath.Join(b.TempDir(), "part"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, bufSize)
	src := bytes.NewReader(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs() // 0 allocs/op: nothing is allocated per buffer or per copy
	for b.Loop() {
		src.Reset(data)
		if _, _, err := CopyAt(f, src, 0, int64(len(data)), buf, checksum.CRC32C); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRemoveStalePartsEscapesKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := BatchObject{Transfer: "x1", Dest: filepath.Join(dir, "we[ir]d*?.txt")}
	other := BatchObject{Transfer: "x1", Dest: filepath.Join(dir, "weid.txt")}
	keep := location.PartPath(other.Dest, other.Transfer, location.NewPartToken())
	for _, name := range []string{location.PartPath(o.Dest, o.Transfer, location.NewPartToken()), keep} {
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	newBatchDirs().removeStaleParts(o)
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != filepath.Base(keep) {
		t.Fatalf("left %v", left)
	}
}

// TestRemoveStalePartsListsOnce removes every object's stale part files,
// and only those, reading each directory once a batch run, not once an
// object.
func TestRemoveStalePartsListsOnce(t *testing.T) {
	t.Parallel()
	dirs := []string{t.TempDir(), t.TempDir()}
	var objs []BatchObject
	var keep []string
	for i := range 10 {
		dir := dirs[i%2]
		o := BatchObject{Transfer: fmt.Sprintf("x%d", i), Dest: filepath.Join(dir, fmt.Sprintf("f%d", i))}
		objs = append(objs, o)
		// Two stale part files of the object, another transfer's part
		// file of the same name, and an ordinary file.
		mine := []string{location.PartPath(o.Dest, o.Transfer, location.NewPartToken()), location.PartPath(o.Dest, o.Transfer, location.NewPartToken())}
		others := []string{location.PartPath(o.Dest, o.Transfer+"y", location.NewPartToken()), o.Dest + ".part"}
		for _, name := range append(mine, others...) {
			if err := os.WriteFile(name, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		keep = append(keep, others...)
	}
	d := newBatchDirs()
	for _, o := range objs {
		d.removeStaleParts(o)
	}
	var left []string
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			left = append(left, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(left)
	slices.Sort(keep)
	if !slices.Equal(left, keep) {
		t.Errorf("left %q, want %q", left, keep)
	}
	if d.listings != len(dirs) {
		t.Errorf("%d directory listings for %d objects in %d directories, want one a directory", d.listings, len(objs), len(dirs))
	}
}

// TestCopyAtAllocatesNothing holds the copy path to no allocation per
// buffer or per copy.
func TestCopyAtAllocatesNothing(t *testing.T) {
	data := make([]byte, 1<<20)
	dst := &memFile{b: make([]byte, len(data))}
	src := bytes.NewReader(data)
	buf := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(20, func() {
		src.Reset(data)
		if _, _, err := CopyAt(dst, src, 0, int64(len(data)), buf, checksum.CRC32C); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("CopyAt allocates %.1f times a copy, want 0", allocs)
	}
}

// TestEnqueuedSum: a batch object's bytes are held to the checksum
// enqueued with it (a HEAD's, a manifest line's), not only to what the GET
// says; another value of the same algorithm is another version.
func TestEnqueuedSum(t *testing.T) {
	t.Parallel()
	o := BatchObject{ChecksumAlgorithm: "CRC32C", Checksum: "AQIDBA=="}
	want := assembler.Sum{Algorithm: checksum.CRC32C, Value: "AQIDBA=="}
	for _, tc := range []struct {
		name string
		o    BatchObject
		got  assembler.Sum
		want assembler.Sum
		err  bool
	}{
		{"nothing enqueued: the GET's", BatchObject{}, assembler.Sum{Algorithm: checksum.CRC32, Value: "x"}, assembler.Sum{Algorithm: checksum.CRC32, Value: "x"}, false},
		{"the GET names none: the enqueued", o, assembler.Sum{}, want, false},
		{"the GET names another algorithm: the enqueued", o, assembler.Sum{Algorithm: checksum.CRC64NVME, Value: "y"}, want, false},
		{"the same", o, want, want, false},
		{"another value: another version", o, assembler.Sum{Algorithm: checksum.CRC32C, Value: "BAUGBw=="}, assembler.Sum{}, true},
	} {
		got, err := enqueuedSum(tc.o, tc.got, "get s3://b/k")
		if tc.err != (err != nil) || (!tc.err && got != tc.want) {
			t.Errorf("%s: %+v %v, want %+v (error %v)", tc.name, got, err, tc.want, tc.err)
		}
	}
}
