package assembler

import (
	"crypto/rand"
	"hash/crc32"
	"testing"
)

var table = crc32.MakeTable(crc32.Castagnoli)

func TestCombineCRC32C(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1<<16+3)
	_, _ = rand.Read(data)
	whole := crc32.Checksum(data, table)
	for _, cut := range []int{0, 1, 7, 4096, 1 << 15, len(data) - 1, len(data)} {
		a, b := data[:cut], data[cut:]
		got := CombineCRC32C(crc32.Checksum(a, table), crc32.Checksum(b, table), int64(len(b)))
		if got != whole {
			t.Errorf("cut at %d: combined %08x, want %08x", cut, got, whole)
		}
	}
}

// TestCombineManyChunks folds unequal chunks left to right, as the
// assembler does.
func TestCombineManyChunks(t *testing.T) {
	t.Parallel()
	data := make([]byte, 100_003)
	_, _ = rand.Read(data)
	var crc uint32
	for off, n := 0, 1; off < len(data); off, n = off+n, n*3+1 {
		end := min(off+n, len(data))
		crc = CombineCRC32C(crc, crc32.Checksum(data[off:end], table), int64(end-off))
	}
	if want := crc32.Checksum(data, table); crc != want {
		t.Fatalf("combined %08x, want %08x", crc, want)
	}
}

// TestCombineHugeLength checks a length past 4 GiB against the slow way:
// appending zeros' CRC equals combining with the CRC of zeros.
func TestCombineHugeLength(t *testing.T) {
	t.Parallel()
	zeros := make([]byte, 1<<20)
	z := crc32.Checksum(zeros, table)
	// CRC of 5 GiB of zeros built by combination, twice over different splits.
	var a, b uint32
	for range 5 << 10 {
		a = CombineCRC32C(a, z, 1<<20)
	}
	half := uint32(0)
	for range 5 << 9 {
		half = CombineCRC32C(half, z, 1<<20)
	}
	b = CombineCRC32C(half, half, 5<<29)
	if a != b {
		t.Fatalf("5 GiB of zeros: %08x by 1 MiB steps, %08x by halves", a, b)
	}
}

func TestEncodeCRC32C(t *testing.T) {
	t.Parallel()
	// CRC32C("123456789") is e3069283, the standard check value.
	c := crc32.Checksum([]byte("123456789"), table)
	if c != 0xe3069283 {
		t.Fatalf("check value %08x", c)
	}
	if got := EncodeCRC32C(c); got != "4waSgw==" {
		t.Fatalf("EncodeCRC32C = %q", got)
	}
}

func BenchmarkCombineCRC32C(b *testing.B) {
	b.ReportAllocs()
	var c uint32
	for b.Loop() {
		c = CombineCRC32C(c, 0xdeadbeef, 8<<20)
	}
	_ = c
}
