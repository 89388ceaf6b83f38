// Package chunker splits an object of a known size into the inclusive byte
// ranges that the fleet downloads as separate tasks, optionally aligned to
// the parts of its multipart upload. It is pure arithmetic: no I/O, no
// allocation per chunk, so a plan for a 5 TiB object costs the same as one
// for 5 bytes.
package chunker

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Range is one chunk of an object: the inclusive byte range First..Last,
// as an HTTP Range header names it.
type Range struct {
	Index int64 // position of the chunk in the object, from 0
	First int64 // offset of the first byte
	Last  int64 // offset of the last byte (inclusive)
}

// Len is the number of bytes in the range.
func (r Range) Len() int64 { return r.Last - r.First + 1 }

// Header renders the range as an HTTP Range header value.
func (r Range) Header() string { return fmt.Sprintf("bytes=%d-%d", r.First, r.Last) }

// Plan describes how one object is cut into chunks.
type Plan struct {
	Size      int64 // object size in bytes
	ChunkSize int64 // bytes per chunk; the last chunk (of each part) may be shorter
	// Parts, when set (Aligned), are the object's upload parts: chunks
	// never cross their boundaries.
	Parts []Run
}

// ErrInvalid reports a plan that cannot be built from the given numbers.
var ErrInvalid = errors.New("invalid chunk plan")

// S3's multipart limits: every part but the last has at least
// MinPartSize bytes, none more than MaxPartSize, and an upload has at most
// MaxParts parts.
const (
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	MaxParts    = 10_000
)

// PartSize is the chunk size of an object copied to S3, where each chunk
// is an upload part: chunkSize, raised to S3's minimum part size, and for
// a huge object so that it has at most MaxParts parts (rounded up to a
// whole MiB), and at most MaxPartSize.
func PartSize(size, chunkSize int64) int64 {
	c := min(max(chunkSize, MinPartSize), MaxPartSize)
	if need := (size + MaxParts - 1) / MaxParts; need > c {
		const mib = 1 << 20
		c = (need + mib - 1) / mib * mib
	}
	return c
}

// New returns the plan for an object of size bytes. Objects smaller than
// threshold are one chunk, whatever chunkSize is, as s3transfer does.
func New(size, chunkSize, threshold int64) (Plan, error) {
	switch {
	case size < 0:
		return Plan{}, fmt.Errorf("%w: negative size %d", ErrInvalid, size)
	case chunkSize <= 0:
		return Plan{}, fmt.Errorf("%w: chunk size %d must be positive", ErrInvalid, chunkSize)
	case threshold < 0:
		return Plan{}, fmt.Errorf("%w: negative threshold %d", ErrInvalid, threshold)
	}
	if size < threshold || size <= chunkSize {
		// One chunk holds the whole object (an empty object has none).
		return Plan{Size: size, ChunkSize: max(size, 1)}, nil
	}
	return Plan{Size: size, ChunkSize: chunkSize}, nil
}

// Count is the number of chunks: 0 for an empty object.
func (p Plan) Count() int64 {
	if p.Size == 0 {
		return 0
	}
	if len(p.Parts) > 0 {
		var n int64
		for _, r := range p.Parts {
			n += r.Count * p.perPart(r.Size)
		}
		return n
	}
	return (p.Size-1)/p.ChunkSize + 1
}

// Chunk returns chunk i of the plan. It panics if i is out of range, as a
// slice index would.
func (p Plan) Chunk(i int64) Range {
	if i < 0 || i >= p.Count() {
		panic(fmt.Sprintf("chunker: chunk %d out of range [0,%d)", i, p.Count()))
	}
	if len(p.Parts) > 0 {
		_, r := p.locate(i)
		r.Index = i
		return r
	}
	first := i * p.ChunkSize
	last := first + min(p.ChunkSize, p.Size-first) - 1 // no overflow near MaxInt64
	return Range{Index: i, First: first, Last: last}
}

// Run is Count consecutive parts of Size bytes each: a multipart upload's
// parts, as runs of equal sizes (most uploads are one run and a shorter
// last part).
type Run struct{ Size, Count int64 }

// Aligned returns the plan of an object uploaded in the given parts: each
// part is cut into chunks of at most chunkSize bytes and no chunk crosses
// a part boundary, so each part's checksum can be computed from its
// chunks'. A chunkSize of at least the largest part makes each part one
// chunk.
func Aligned(parts []Run, chunkSize int64) (Plan, error) {
	if chunkSize <= 0 {
		return Plan{}, fmt.Errorf("%w: chunk size %d must be positive", ErrInvalid, chunkSize)
	}
	var size, n int64
	for _, r := range parts {
		if r.Size <= 0 || r.Count <= 0 {
			return Plan{}, fmt.Errorf("%w: a run of %d parts of %d bytes", ErrInvalid, r.Count, r.Size)
		}
		if r.Size > (math.MaxInt64-size)/r.Count || n > math.MaxInt64-r.Count {
			return Plan{}, fmt.Errorf("%w: parts overflow", ErrInvalid)
		}
		size += r.Size * r.Count
		n += r.Count
	}
	if n == 0 {
		return Plan{}, fmt.Errorf("%w: no parts", ErrInvalid)
	}
	return Plan{Size: size, ChunkSize: chunkSize, Parts: parts}, nil
}

// perPart is how many chunks a part of size bytes is cut into.
func (p Plan) perPart(size int64) int64 { return (size-1)/p.ChunkSize + 1 }

// PartCount is the number of parts of an aligned plan (0 otherwise).
func (p Plan) PartCount() int64 {
	var n int64
	for _, r := range p.Parts {
		n += r.Count
	}
	return n
}

// PartOf returns the index, from 0, of the part that chunk i of an aligned
// plan lies in. It panics if i is out of range or the plan is not aligned.
func (p Plan) PartOf(i int64) int64 {
	part, _ := p.locate(i)
	return part
}

// locate finds chunk i of an aligned plan: its part and its range.
func (p Plan) locate(i int64) (part int64, r Range) {
	if len(p.Parts) == 0 || i < 0 {
		panic(fmt.Sprintf("chunker: chunk %d of a plan without parts", i))
	}
	var base, parts int64
	for _, run := range p.Parts {
		per := p.perPart(run.Size)
		if i < per*run.Count {
			j, k := i/per, i%per
			first := base + j*run.Size + k*p.ChunkSize
			last := first + min(p.ChunkSize, run.Size-k*p.ChunkSize) - 1
			return parts + j, Range{First: first, Last: last}
		}
		i -= per * run.Count
		base += run.Size * run.Count
		parts += run.Count
	}
	panic(fmt.Sprintf("chunker: chunk out of range [0,%d)", p.Count()))
}

// EncodeParts renders runs as "SIZExCOUNT,…", as records keep them.
func EncodeParts(parts []Run) string {
	s := make([]string, len(parts))
	for i, r := range parts {
		s[i] = strconv.FormatInt(r.Size, 10) + "x" + strconv.FormatInt(r.Count, 10)
	}
	return strings.Join(s, ",")
}

// ParseParts reads what EncodeParts renders; empty is no parts.
func ParseParts(s string) ([]Run, error) {
	if s == "" {
		return nil, nil
	}
	var out []Run
	for _, f := range strings.Split(s, ",") {
		size, count, ok := strings.Cut(f, "x")
		a, err1 := strconv.ParseInt(size, 10, 64)
		b, err2 := strconv.ParseInt(count, 10, 64)
		if !ok || err1 != nil || err2 != nil || a <= 0 || b <= 0 {
			return nil, fmt.Errorf("%w: parts %q", ErrInvalid, s)
		}
		out = append(out, Run{Size: a, Count: b})
	}
	return out, nil
}

// RunsOf groups part sizes, in order, into runs.
func RunsOf(sizes []int64) []Run {
	var out []Run
	for _, s := range sizes {
		if n := len(out); n > 0 && out[n-1].Size == s {
			out[n-1].Count++
			continue
		}
		out = append(out, Run{Size: s, Count: 1})
	}
	return out
}
