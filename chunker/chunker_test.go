package chunker

import (
	"errors"
	"math"
	"slices"
	"testing"
)

const mib = 1 << 20

func TestPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		size, chunk, threshold int64
		wantCount              int64
		wantLast               Range // the last chunk, when wantCount > 0
	}{
		{"empty", 0, 8 * mib, 8 * mib, 0, Range{}},
		{"one byte", 1, 8 * mib, 8 * mib, 1, Range{0, 0, 0}},
		{"below threshold", 8*mib - 1, 8 * mib, 8 * mib, 1, Range{0, 0, 8*mib - 2}},
		{"exactly threshold and chunk", 8 * mib, 8 * mib, 8 * mib, 1, Range{0, 0, 8*mib - 1}},
		{"threshold plus one", 8*mib + 1, 8 * mib, 8 * mib, 2, Range{1, 8 * mib, 8 * mib}},
		{"exact multiple", 32 * mib, 8 * mib, 8 * mib, 4, Range{3, 24 * mib, 32*mib - 1}},
		{"multiple minus one", 32*mib - 1, 8 * mib, 8 * mib, 4, Range{3, 24 * mib, 32*mib - 2}},
		{"multiple plus one", 32*mib + 1, 8 * mib, 8 * mib, 5, Range{4, 32 * mib, 32 * mib}},
		{"large threshold keeps one chunk", 100 * mib, 8 * mib, 1 << 30, 1, Range{0, 0, 100*mib - 1}},
		{"zero threshold", 3, 1, 0, 3, Range{2, 2, 2}},
		{"five TiB", 5 << 40, 8 * mib, 8 * mib, 655360, Range{655359, 5<<40 - 8*mib, 5<<40 - 1}},
		{"max int64", math.MaxInt64, 8 * mib, 8 * mib, math.MaxInt64/(8*mib) + 1,
			Range{math.MaxInt64 / (8 * mib), math.MaxInt64 / (8 * mib) * 8 * mib, math.MaxInt64 - 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(tc.size, tc.chunk, tc.threshold)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := p.Count(); got != tc.wantCount {
				t.Fatalf("Count() = %d, want %d", got, tc.wantCount)
			}
			if tc.wantCount == 0 {
				return
			}
			if got := p.Chunk(tc.wantCount - 1); got != tc.wantLast {
				t.Errorf("last chunk = %+v, want %+v", got, tc.wantLast)
			}
			if first := p.Chunk(0); first.First != 0 {
				t.Errorf("first chunk starts at %d", first.First)
			}
		})
	}
}

// TestPlanCoversEveryByte walks small plans chunk by chunk: ranges are
// contiguous, never empty, never overlap, and add up to the size.
func TestPlanCoversEveryByte(t *testing.T) {
	t.Parallel()
	for size := int64(0); size <= 40; size++ {
		for chunk := int64(1); chunk <= 9; chunk++ {
			for _, threshold := range []int64{0, chunk, 20} {
				p, err := New(size, chunk, threshold)
				if err != nil {
					t.Fatal(err)
				}
				var next, total int64
				for i := range p.Count() {
					r := p.Chunk(i)
					if r.Index != i || r.First != next || r.Len() <= 0 {
						t.Fatalf("size %d chunk %d threshold %d: chunk %d = %+v, want start %d", size, chunk, threshold, i, r, next)
					}
					next = r.Last + 1
					total += r.Len()
				}
				if total != size {
					t.Fatalf("size %d chunk %d: chunks cover %d bytes", size, chunk, total)
				}
			}
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ size, chunk, threshold int64 }{
		{-1, 8, 8}, {10, 0, 8}, {10, -8, 8}, {10, 8, -1},
	} {
		if _, err := New(tc.size, tc.chunk, tc.threshold); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%d, %d, %d) error = %v, want ErrInvalid", tc.size, tc.chunk, tc.threshold, err)
		}
	}
}

func TestChunkOutOfRangePanics(t *testing.T) {
	t.Parallel()
	p, _ := New(10, 4, 0)
	defer func() {
		if recover() == nil {
			t.Fatal("Chunk(3) of a 3-chunk plan did not panic")
		}
	}()
	p.Chunk(3)
}

func TestRangeHeader(t *testing.T) {
	t.Parallel()
	if got := (Range{First: 8, Last: 15}).Header(); got != "bytes=8-15" {
		t.Fatalf("Header() = %q", got)
	}
}

func BenchmarkPlanChunk(b *testing.B) {
	p, _ := New(1<<40, 8*mib, 8*mib)
	n := p.Count()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = p.Chunk(int64(i) % n)
	}
}

func FuzzPlan(f *testing.F) {
	f.Add(int64(0), int64(8), int64(8))
	f.Add(int64(17), int64(8), int64(8))
	f.Add(int64(math.MaxInt64), int64(1<<23), int64(1<<23))
	f.Fuzz(func(t *testing.T, size, chunk, threshold int64) {
		p, err := New(size, chunk, threshold)
		if err != nil {
			return
		}
		n := p.Count()
		if n == 0 {
			if size != 0 {
				t.Fatalf("size %d has no chunks", size)
			}
			return
		}
		last := p.Chunk(n - 1)
		if last.Last != size-1 || last.Len() <= 0 || last.Len() > p.ChunkSize {
			t.Fatalf("size %d chunk %d: last chunk %+v", size, chunk, last)
		}
		if p.Chunk(0).First != 0 {
			t.Fatal("first chunk does not start at 0")
		}
	})
}

// TestAligned cuts objects of several part layouts and checks that the
// chunks tile the object in order, none crosses a part boundary or exceeds
// the chunk size, and PartOf names the part each lies in.
func TestAligned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		parts     []Run
		chunkSize int64
		count     int64
	}{
		{"parts a multiple of the chunk", []Run{{8 * mib, 3}, {3 * mib, 1}}, 2 * mib, 3*4 + 2},
		{"parts that do not line up", []Run{{5*mib + 1, 2}, {7, 1}}, 2 * mib, 3 + 3 + 1},
		{"chunk larger than every part", []Run{{5 * mib, 4}}, 64 * mib, 4},
		{"chunk equal to the part", []Run{{5 * mib, 2}, {1, 1}}, 5 * mib, 3},
		{"one part", []Run{{100, 1}}, 7, 15},
		{"runs of varied sizes", []Run{{10, 2}, {3, 1}, {10, 1}, {1, 5}}, 4, 3*2 + 1 + 3 + 5},
		{"10,000 parts", []Run{{5 * mib, 9999}, {17, 1}}, 8 * mib, 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Aligned(tc.parts, tc.chunkSize)
			if err != nil {
				t.Fatal(err)
			}
			if p.Count() != tc.count {
				t.Fatalf("Count() = %d, want %d", p.Count(), tc.count)
			}
			var bounds []int64 // each part's first byte, and the end
			var off int64
			for _, r := range tc.parts {
				for range r.Count {
					bounds = append(bounds, off)
					off += r.Size
				}
			}
			bounds = append(bounds, off)
			if p.Size != off || p.PartCount() != int64(len(bounds)-1) {
				t.Fatalf("size %d parts %d, want %d and %d", p.Size, p.PartCount(), off, len(bounds)-1)
			}
			next, lastPart := int64(0), int64(0)
			for i := range p.Count() {
				c := p.Chunk(i)
				part := p.PartOf(i)
				if c.Index != i || c.First != next || c.Len() <= 0 || c.Len() > tc.chunkSize {
					t.Fatalf("chunk %d = %+v after byte %d", i, c, next)
				}
				if part < lastPart || part >= int64(len(bounds)-1) || c.First < bounds[part] || c.Last >= bounds[part+1] {
					t.Fatalf("chunk %d %+v is not inside part %d [%d,%d)", i, c, part, bounds[part], bounds[part+1])
				}
				next, lastPart = c.Last+1, part
			}
			if next != p.Size {
				t.Fatalf("chunks end at %d of %d", next, p.Size)
			}
			round, err := ParseParts(EncodeParts(tc.parts))
			if err != nil || !slices.Equal(round, tc.parts) {
				t.Fatalf("ParseParts(EncodeParts) = %v %v", round, err)
			}
		})
	}
}

func TestAlignedInvalid(t *testing.T) {
	t.Parallel()
	for name, parts := range map[string][]Run{
		"none":          nil,
		"empty part":    {{0, 1}},
		"no count":      {{5, 0}},
		"negative size": {{-1, 2}},
		"overflow":      {{math.MaxInt64 / 2, 3}},
	} {
		if _, err := Aligned(parts, 8); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Aligned([]Run{{5, 1}}, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero chunk size: %v", err)
	}
	for _, s := range []string{"5", "5x", "x3", "5x0", "0x5", "5x3,", "ax1"} {
		if _, err := ParseParts(s); err == nil {
			t.Errorf("ParseParts(%q) accepted", s)
		}
	}
	if got := RunsOf([]int64{5, 5, 5, 3, 5}); !slices.Equal(got, []Run{{5, 3}, {3, 1}, {5, 1}}) {
		t.Errorf("RunsOf = %v", got)
	}
}

func TestPartSize(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct{ size, chunk, want int64 }{
		{100 * mib, 32 * mib, 32 * mib},
		{100 * mib, 1 * mib, 5 * mib},           // S3's minimum part
		{10_000 * 32 * mib, 32 * mib, 32 * mib}, // exactly 10,000 parts
		{10_000*32*mib + 1, 32 * mib, 33 * mib}, // one byte more: larger parts
		{5 << 40, 32 * mib, 525 * mib},          // 5 TiB, S3's largest object
		{100 << 30, 8 << 30, 5 << 30},           // a chunk_size over S3's 5 GiB part
	} {
		got := PartSize(tc.size, tc.chunk)
		if got != tc.want {
			t.Errorf("PartSize(%d, %d) = %d, want %d", tc.size, tc.chunk, got, tc.want)
		}
		if p, _ := New(tc.size, got, 0); p.Count() > MaxParts {
			t.Errorf("PartSize(%d, %d) gives %d parts", tc.size, tc.chunk, p.Count())
		}
	}
}
