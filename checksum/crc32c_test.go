package checksum

import (
	"bytes"
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestUpdateCastagnoli compares updateCastagnoli with hash/crc32 for every
// length up to 4 KiB and some long ones, at every alignment mod 64, from a
// random CRC, and castagnoliAVX512 itself at every length it takes.
func TestUpdateCastagnoli(t *testing.T) {
	if !hasCastagnoliAVX512 {
		t.Log("this CPU has no AVX-512 VPCLMULQDQ: updateCastagnoli is hash/crc32's (compared all the same)")
	}
	r := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 3<<20+64)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	lengths := []int{3 << 20, 1<<20 + 1, 1<<20 - 63, 65536 + 17}
	for n := 0; n <= 4096; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 7, 8, 15, 16, 31, 63} {
			if n+off > len(buf) {
				continue
			}
			p := buf[off : off+n]
			init := r.Uint32()
			if got, want := updateCastagnoli(init, p), crc32.Update(init, castagnoli, p); got != want {
				t.Fatalf("len %d, offset %d, from %#08x: %#08x, hash/crc32 says %#08x", n, off, init, got, want)
			}
			if hasCastagnoliAVX512 && n >= 256 && n%64 == 0 {
				if got, want := ^castagnoliAVX512(^init, p), crc32.Update(init, castagnoli, p); got != want {
					t.Fatalf("castagnoliAVX512: len %d, offset %d, from %#08x: %#08x, hash/crc32 says %#08x", n, off, init, got, want)
				}
			}
		}
	}
}

// TestCastagnoliSparse runs inputs that are mostly zero, all ones, or one
// bit set: the patterns a wrong constant in one lane would pass unnoticed
// by random bytes only if it were never used.
func TestCastagnoliSparse(t *testing.T) {
	for _, n := range []int{256, 320, 512, 1024, 4096, 65536} {
		for bit := 0; bit < n*8; bit += 61 {
			p := make([]byte, n)
			p[bit/8] = 1 << (bit % 8)
			for _, init := range []uint32{0, 0xffffffff} {
				if got, want := updateCastagnoli(init, p), crc32.Update(init, castagnoli, p); got != want {
					t.Fatalf("len %d, bit %d set, from %#08x: %#08x, hash/crc32 says %#08x", n, bit, init, got, want)
				}
			}
		}
		ones := bytes.Repeat([]byte{0xff}, n)
		if got, want := updateCastagnoli(0, ones), crc32.Update(0, castagnoli, ones); got != want {
			t.Fatalf("len %d, all ones: %#08x, hash/crc32 says %#08x", n, got, want)
		}
	}
}

// FuzzUpdateCastagnoli compares updateCastagnoli with hash/crc32 on any
// input, split anywhere.
func FuzzUpdateCastagnoli(f *testing.F) {
	f.Add(uint32(0), bytes.Repeat([]byte{0xa5}, 3000), 1000)
	f.Fuzz(func(t *testing.T, init uint32, p []byte, split int) {
		if split < 0 || split > len(p) {
			split = len(p) / 2
		}
		got := updateCastagnoli(updateCastagnoli(init, p[:split]), p[split:])
		if want := crc32.Update(init, castagnoli, p); got != want {
			t.Fatalf("len %d split at %d from %#08x: %#08x, hash/crc32 says %#08x", len(p), split, init, got, want)
		}
	})
}

// TestCastagnoliConstants derives crc32c_amd64.s's constants from the
// Castagnoli polynomial, as crc32c_amd64.go says they are made, and the
// same derivation gives hash/crc32's IEEE constants (its ieeeCLMUL).
func TestCastagnoliConstants(t *testing.T) {
	const ieee, castag = 0x104C11DB7, 0x11EDC6F41
	// x^n mod P, with P given with its x^32 bit.
	xpow := func(n int, p uint64) uint64 {
		r := uint64(1)
		for range n {
			r <<= 1
			if r&(1<<32) != 0 {
				r ^= p
			}
		}
		return r
	}
	k := func(n int, p uint64) uint64 { return uint64(bits.Reverse32(uint32(xpow(n, p)))) << 1 }
	// floor(x^64 / P), 33 bits.
	quot := func(p uint64) uint64 {
		var q, hi, lo uint64 = 0, 1, 0 // x^64 as (hi: bit 64, lo: bits 0..63)
		for d := 64; d >= 32; d-- {
			c := lo >> uint(d) & 1
			if d == 64 {
				c = hi & 1
			}
			if c == 1 {
				q |= 1 << uint(d-32)
				s := uint(d - 32)
				lo ^= p << s
				if s > 31 {
					hi ^= p >> (64 - s)
				}
			}
		}
		return q
	}
	refl33 := func(v uint64) uint64 { return bits.Reverse64(v) >> 31 }
	for _, c := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"IEEE k(544), hash/crc32's r2r1", k(544, ieee), 0x154442bd4},
		{"IEEE k(480)", k(480, ieee), 0x1c6e41596},
		{"IEEE k(160), hash/crc32's r4r3", k(160, ieee), 0x1751997d0},
		{"IEEE k(96)", k(96, ieee), 0x0ccaa009e},
		{"IEEE k(64), hash/crc32's r5", k(64, ieee), 0x163cd6124},
		{"IEEE P reflected, hash/crc32's rupoly", refl33(ieee), 0x1db710641},
		{"IEEE floor(x^64/P) reflected", refl33(quot(ieee)), 0x1f7011641},
		{"k2048 low", k(2080, castag), 0x0dcb17aa4},
		{"k2048 high", k(2016, castag), 0x0b9e02b86},
		{"k512 low", k(544, castag), 0x0740eef02},
		{"k512 high", k(480, castag), 0x09e4addf8},
		{"k128 low", k(160, castag), 0x0f20c0dfe},
		{"k128 high", k(96, castag), 0x14cd00bd6},
		{"k64", k(64, castag), 0x0dd45aab8},
		{"kpoly P", refl33(castag), 0x105ec76f1},
		{"kpoly floor(x^64/P)", refl33(quot(castag)), 0x0dea713f1},
	} {
		if c.got != c.want {
			t.Errorf("%s: derived %#x, written %#x", c.name, c.got, c.want)
		}
	}
}
