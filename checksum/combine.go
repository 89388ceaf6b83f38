package checksum

import (
	"hash/crc32"
	"math/bits"

	"github.com/minio/crc64nvme"
)

// reflected is a reflected CRC of width 32 or 64 bits whose initial value
// and final xor are equal (all ones, for all three of S3's CRCs), which is
// all that Combine needs to know of it.
//
// Its arithmetic is in GF(2)[x] modulo P, the CRC's polynomial, with a
// polynomial of degree < width held reflected as the CRC register holds
// it: the coefficient of x^i in bit width-1-i, so x^0 is the top bit.
//
// The CRC of A||B is crc(A)·x^(8·len(B)) + crc(B) mod P: with init = xorout
// = I the register after A is crc(A)+I, feeding B multiplies it by
// x^(8·len(B)) and adds the register B alone gives, and the I terms add up
// to crc(B). This is zlib's crc32_combine, for either width.
type reflected struct {
	poly uint64 // P without its x^width term, reflected
	one  uint64 // x^0: the top bit, 1<<(width-1)
	mask uint64 // the register's bits

	// x2n[k] is x^(2^k) mod P. 8·lenB < 2^66 for lenB < 2^63, so the
	// exponent has at most 66 bits and k runs up to 65.
	x2n [66]uint64
}

func newReflected(width uint, poly uint64) *reflected {
	m := &reflected{poly: poly, one: 1 << (width - 1), mask: 1<<(width-1)<<1 - 1}
	p := m.one >> 1 // x^1
	for k := range m.x2n {
		m.x2n[k] = p
		p = m.mulModP(p, p)
	}
	return m
}

// mulModP returns a·b mod P. a must not be 0 (the powers of x never are:
// P's constant term is 1). It walks a's bits from x^0 up, shifting b by
// one power of x each step and reducing, and stops after a's last bit.
func (m *reflected) mulModP(a, b uint64) uint64 {
	var p uint64
	for bit := m.one; ; bit >>= 1 {
		if a&bit != 0 {
			p ^= b
			if a&(bit-1) == 0 {
				return p
			}
		}
		b = b>>1 ^ m.poly&-(b&1) // b·x mod P
	}
}

// xPow8 returns x^(8·n) mod P: the product of x^(2^k) over the set bits k
// of 8·n, that is of n shifted by 3.
func (m *reflected) xPow8(n uint64) uint64 {
	p := m.one
	for n != 0 {
		k := bits.TrailingZeros64(n)
		p = m.mulModP(m.x2n[k+3], p)
		n &= n - 1
	}
	return p
}

func (m *reflected) combine(crcA, crcB, lenB uint64) uint64 {
	if crcA == 0 {
		return crcB
	}
	return m.mulModP(m.xPow8(lenB), crcA) ^ crcB
}

var (
	crc32Model     = newReflected(32, crc32.IEEE)
	crc32cModel    = newReflected(32, crc32.Castagnoli)
	crc64nvmeModel = newReflected(64, crc64nvme.NVME)
)

// model returns the CRC model of a, or nil if a is not a CRC.
func model(a Algorithm) *reflected {
	switch a {
	case CRC32:
		return crc32Model
	case CRC32C:
		return crc32cModel
	case CRC64NVME:
		return crc64nvmeModel
	}
	return nil
}
