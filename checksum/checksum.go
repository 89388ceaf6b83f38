// Package checksum knows every checksum algorithm S3 keeps on an object:
// CRC32, CRC32C, CRC64NVME, SHA1, SHA256, SHA512, MD5, XXHASH64, XXHASH3
// and XXHASH128, under the upper-case names the S3 API spells
// (x-amz-checksum-algorithm, ChecksumAlgorithm).
//
// It streams them: [Update] continues one of the three CRCs over more
// bytes with the fastest implementation at hand (hash/crc32, which uses
// AVX-512 and VPCLMULQDQ on amd64, for CRC32; this package's own AVX-512
// code for CRC32C, where hash/crc32 has only SSE4.2; minio/crc64nvme for
// CRC64NVME), and [New] returns a [hash.Hash] for every algorithm it can
// compute.
//
// It combines CRCs: [Combine] turns the CRCs of two consecutive ranges and
// the length of the second into the CRC of both, in O(log length) and
// without reading a byte, so an object's FULL_OBJECT checksum comes from
// its chunks' CRCs, computed where each chunk was downloaded, without
// reading the file again.
//
// And it renders them as S3 does: [Encode] and [EncodeSum] print the
// base64 of the big-endian raw value, as in the x-amz-checksum-* headers,
// and [Composite] computes S3's COMPOSITE multipart checksum, the
// "checksum of checksums" of the parts followed by "-N".
package checksum

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/minio/crc64nvme"
)

// Algorithm is one of S3's checksum algorithms, named as the S3 API spells
// it: upper case, as in x-amz-checksum-algorithm and ChecksumAlgorithm.
type Algorithm string

// S3's checksum algorithms.
const (
	CRC32     Algorithm = "CRC32"     // CRC-32 (IEEE, as zlib and hash/crc32.IEEE), 4 bytes
	CRC32C    Algorithm = "CRC32C"    // CRC-32C (Castagnoli), 4 bytes
	CRC64NVME Algorithm = "CRC64NVME" // CRC-64/NVME, 8 bytes
	SHA1      Algorithm = "SHA1"      // SHA-1, 20 bytes
	SHA256    Algorithm = "SHA256"    // SHA-256, 32 bytes
	SHA512    Algorithm = "SHA512"    // SHA-512, 64 bytes
	MD5       Algorithm = "MD5"       // MD5, 16 bytes
	XXHASH64  Algorithm = "XXHASH64"  // XXH64, 8 bytes (named only: New does not compute it)
	XXHASH3   Algorithm = "XXHASH3"   // XXH3 64-bit, 8 bytes (named only: New does not compute it)
	XXHASH128 Algorithm = "XXHASH128" // XXH3 128-bit, 16 bytes (named only: New does not compute it)
)

// all is every algorithm, the CRCs first.
var all = [...]Algorithm{CRC32, CRC32C, CRC64NVME, SHA1, SHA256, SHA512, MD5, XXHASH64, XXHASH3, XXHASH128}

// Algorithms lists every algorithm of this package, the CRCs first (a
// copy each call).
func Algorithms() []Algorithm { return append([]Algorithm(nil), all[:]...) }

// Parse returns the Algorithm named s, matched without regard to case
// ("crc64nvme", "Crc32C", "SHA256"). An empty or unknown name is an error,
// which names it.
func Parse(s string) (Algorithm, error) {
	if s == "" {
		return "", errors.New("checksum: empty algorithm name")
	}
	for _, a := range all {
		if strings.EqualFold(s, string(a)) {
			return a, nil
		}
	}
	return "", fmt.Errorf("checksum: unknown algorithm %q", s)
}

// String returns the algorithm's name as the S3 API spells it.
func (a Algorithm) String() string { return string(a) }

// Combinable reports whether the CRCs of consecutive ranges combine into
// the CRC of the whole ([Combine]): true for CRC32, CRC32C and CRC64NVME.
// These are the algorithms [Update], [Combine] and [Composite] take.
func (a Algorithm) Combinable() bool { return model(a) != nil }

// Check returns the algorithm's name in lower case, as a record of which
// check was made spells it: "crc64nvme", "crc32", "crc32c", "sha256", ...
// It is also the suffix of the algorithm's x-amz-checksum- header.
func (a Algorithm) Check() string { return strings.ToLower(string(a)) }

// Size returns the number of bytes of the algorithm's raw value: 4 for
// CRC32 and CRC32C, 8 for CRC64NVME, XXHASH64 and XXHASH3, 16 for MD5 and
// XXHASH128, 20 for SHA1, 32 for SHA256, 64 for SHA512; 0 for a name this
// package does not know.
func (a Algorithm) Size() int {
	switch a {
	case CRC32, CRC32C:
		return 4
	case CRC64NVME, XXHASH64, XXHASH3:
		return 8
	case MD5, XXHASH128:
		return 16
	case SHA1:
		return sha1.Size
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

// castagnoli is hash/crc32's Castagnoli table. MakeTable returns the
// package's own table for it, which is what makes crc32.Update take the
// SSE4.2 path.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32Update is hash/crc32's CRC-32C, for what updateCastagnoli does not
// take to its vector code.
func crc32Update(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// Update returns the CRC of the bytes that crc covers followed by p, as
// crc32.Update does: crc 0 is the CRC of no bytes. a must be one of the
// CRCs (a.Combinable()), or Update panics. A 32-bit CRC is held in the low
// 32 bits of the uint64; its high bits are ignored on the way in and zero
// on the way out.
//
// CRC32 uses hash/crc32, CRC64NVME github.com/minio/crc64nvme (hash/crc64
// with the NVME table computes the same value about 20 times slower), and
// CRC32C this package's AVX-512 code where the CPU has it (about twice
// hash/crc32's speed, which is the rest of the time).
func Update(a Algorithm, crc uint64, p []byte) uint64 {
	switch a {
	case CRC32:
		return uint64(crc32.Update(uint32(crc), crc32.IEEETable, p))
	case CRC32C:
		return uint64(updateCastagnoli(uint32(crc), p))
	case CRC64NVME:
		return crc64nvme.Update(crc, p)
	}
	panic(notCRC("Update", a))
}

// Combine returns the CRC of A followed by B, given crcA (the CRC of A),
// crcB (the CRC of B) and lenB (B's length in bytes), without either's
// bytes. Its cost is O(log lenB), for any lenB from 0 to 2^63-1. The CRC of
// a file is the left fold of Combine over its consecutive chunks' CRCs,
// starting from 0. a must be one of the CRCs (a.Combinable()), and lenB
// not negative, or Combine panics.
func Combine(a Algorithm, crcA, crcB uint64, lenB int64) uint64 {
	m := model(a)
	if m == nil {
		panic(notCRC("Combine", a))
	}
	if lenB < 0 {
		panic("checksum: Combine: negative length " + strconv.FormatInt(lenB, 10))
	}
	return m.combine(crcA&m.mask, crcB&m.mask, uint64(lenB))
}

// Encode renders v, a raw value of a.Size() bytes held in a uint64, as S3
// prints it in an x-amz-checksum-* header: the base64 (standard, padded) of
// its big-endian bytes. It takes the algorithms whose values fit: the CRCs,
// XXHASH64 and XXHASH3; it panics for the others, whose values [EncodeSum]
// renders.
func Encode(a Algorithm, v uint64) string {
	n := a.Size()
	if n == 0 || n > 8 {
		panic(fmt.Sprintf("checksum: Encode: a %s value does not fit in a uint64", a))
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return base64.StdEncoding.EncodeToString(b[8-n:])
}

// Decode parses what [Encode] prints: the base64 of a.Size() big-endian
// bytes, for the CRCs, XXHASH64 and XXHASH3. A COMPOSITE value (one ending
// in "-N"), a wrong length, bad base64 or another algorithm is an error.
func Decode(a Algorithm, s string) (uint64, error) {
	n := a.Size()
	if n == 0 || n > 8 {
		return 0, fmt.Errorf("checksum: a %s value does not fit in a uint64", a)
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		return 0, fmt.Errorf("checksum: %s %q is a COMPOSITE checksum of %s parts, not a value", a, s, s[i+1:])
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("checksum: %s %q: %w", a, s, err)
	}
	if len(b) != n {
		return 0, fmt.Errorf("checksum: %s %q decodes to %d bytes, want %d", a, s, len(b), n)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// Composite returns S3's COMPOSITE multipart checksum of an object whose
// parts have the CRCs parts, in part order: the algorithm's CRC over the
// concatenation of the parts' big-endian raw values (a.Size() bytes each),
// base64, then "-" and the number of parts (three parts: "<base64>-3"). a must be
// one of the CRCs, or Composite panics. (S3 keeps CRC64NVME as FULL_OBJECT
// only, but the rule computes for it all the same.) [CompositeSums] takes
// raw sums of any algorithm [New] computes, SHA1 and SHA256 included.
func Composite(a Algorithm, parts []uint64) string {
	m := model(a)
	if m == nil {
		panic(notCRC("Composite", a))
	}
	n := a.Size()
	var crc uint64
	var b [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(b[:], p)
		crc = Update(a, crc, b[8-n:])
	}
	return Encode(a, crc) + "-" + strconv.Itoa(len(parts))
}

// CompositeSums is [Composite] for raw sums, the algorithm's hash over the
// concatenated raw part sums (each a.Size() bytes, as hash.Hash.Sum gives
// them), base64, then "-N": for any algorithm [New] computes, such as
// SHA256, whose sums do not fit in a uint64.
func CompositeSums(a Algorithm, parts [][]byte) (string, error) {
	h, err := New(a)
	if err != nil {
		return "", err
	}
	for i, p := range parts {
		if len(p) != a.Size() {
			return "", fmt.Errorf("checksum: %s part %d is %d bytes, want %d", a, i+1, len(p), a.Size())
		}
		h.Write(p)
	}
	return EncodeSum(h) + "-" + strconv.Itoa(len(parts)), nil
}

// New returns a streaming hash.Hash of the algorithm, whose Sum is the raw
// big-endian value S3 keeps: for the CRCs, SHA1, SHA256, SHA512 and MD5.
// The XXHASH family is named but not computed (no implementation of S3's
// definition is among this module's requirements): New returns an error
// saying so, as it does for an unknown name.
func New(a Algorithm) (hash.Hash, error) {
	switch a {
	case CRC32:
		return crc32.NewIEEE(), nil
	case CRC32C:
		return new(crc32c), nil
	case CRC64NVME:
		return crc64nvme.New(), nil
	case SHA1:
		return sha1.New(), nil
	case SHA256:
		return sha256.New(), nil
	case SHA512:
		return sha512.New(), nil
	case MD5:
		return md5.New(), nil
	case XXHASH64, XXHASH3, XXHASH128:
		return nil, fmt.Errorf("checksum: %s is not supported (no implementation of it here)", a)
	}
	return nil, fmt.Errorf("checksum: unknown algorithm %q", string(a))
}

// EncodeSum renders h's Sum as S3 prints a checksum: base64 (standard,
// padded) of the raw bytes.
func EncodeSum(h hash.Hash) string {
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func notCRC(fn string, a Algorithm) string {
	return fmt.Sprintf("checksum: %s: %q is not a CRC (CRC32, CRC32C or CRC64NVME)", fn, string(a))
}
