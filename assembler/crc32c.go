package assembler

import (
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
)

// castagnoliPoly is CRC32C's polynomial, bit-reversed as hash/crc32 uses it.
const castagnoliPoly = crc32.Castagnoli

// x2n[k] is x^(2^k) modulo the polynomial, for CombineCRC32C.
var x2n = func() (t [64]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// multModP multiplies a and b modulo the polynomial (reflected bit order).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; ; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliPoly
		} else {
			b >>= 1
		}
	}
}

// CombineCRC32C returns the CRC32C of A followed by B, given crcA, the
// CRC32C of B and B's length, without reading either (zlib's
// crc32_combine). It costs O(log lenB), so an object's checksum comes from
// its chunks' checksums without reading the file again.
func CombineCRC32C(crcA, crcB uint32, lenB int64) uint32 {
	// Multiply crcA by x^(8*lenB): lenB bytes, 3 more doublings for bits.
	p := uint32(1) << 31 // x^0
	for k := 3; lenB != 0; k++ {
		if lenB&1 != 0 {
			p = multModP(x2n[k&63], p)
		}
		lenB >>= 1
	}
	return multModP(p, crcA) ^ crcB
}

// EncodeCRC32C renders a CRC32C as S3 does in x-amz-checksum-crc32c:
// base64 of the big-endian bytes.
func EncodeCRC32C(c uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return base64.StdEncoding.EncodeToString(b[:])
}
