// Package chunker splits an object of a known size into the inclusive byte
// ranges that the fleet downloads as separate tasks. It is pure arithmetic:
// no I/O, no allocation per chunk, so a plan for a 5 TiB object costs the
// same as one for 5 bytes.
package chunker

import (
	"errors"
	"fmt"
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
	ChunkSize int64 // bytes per chunk; the last chunk may be shorter
}

// ErrInvalid reports a plan that cannot be built from the given numbers.
var ErrInvalid = errors.New("invalid chunk plan")

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
	return (p.Size-1)/p.ChunkSize + 1
}

// Chunk returns chunk i of the plan. It panics if i is out of range, as a
// slice index would.
func (p Plan) Chunk(i int64) Range {
	if i < 0 || i >= p.Count() {
		panic(fmt.Sprintf("chunker: chunk %d out of range [0,%d)", i, p.Count()))
	}
	first := i * p.ChunkSize
	last := first + min(p.ChunkSize, p.Size-first) - 1 // no overflow near MaxInt64
	return Range{Index: i, First: first, Last: last}
}
