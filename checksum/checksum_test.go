package checksum_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/minio/crc64nvme"

	"github.com/s3fleet/s3fleet/checksum"
)

// nvmePoly is CRC-64/NVME's polynomial, reversed, written out here rather
// than taken from the package under test or from minio/crc64nvme.
const nvmePoly = 0x9A6C9329AC4BC9B5

var (
	castagnoliTable = crc32.MakeTable(crc32.Castagnoli)
	nvmeTable       = crc64.MakeTable(nvmePoly)
)

var crcs = []checksum.Algorithm{checksum.CRC32, checksum.CRC32C, checksum.CRC64NVME}

// stdCRC is the standard library's CRC of p continued from crc: the
// reference Update is checked against.
func stdCRC(a checksum.Algorithm, crc uint64, p []byte) uint64 {
	switch a {
	case checksum.CRC32:
		return uint64(crc32.Update(uint32(crc), crc32.IEEETable, p))
	case checksum.CRC32C:
		return uint64(crc32.Update(uint32(crc), castagnoliTable, p))
	case checksum.CRC64NVME:
		return crc64.Update(crc, nvmeTable, p)
	}
	panic(a)
}

// params returns the CRC's width in bits and its reversed polynomial: the
// parameters the matrix reference below works from.
func params(a checksum.Algorithm) (width uint, poly uint64) {
	switch a {
	case checksum.CRC32:
		return 32, crc32.IEEE
	case checksum.CRC32C:
		return 32, crc32.Castagnoli
	case checksum.CRC64NVME:
		return 64, nvmePoly
	}
	panic(a)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestUpdateMatchesStandardLibrary(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	data := randBytes(r, 1<<20+77)
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, uint64(len(a)))) // one source each: the subtests run in parallel
			for _, n := range []int{0, 1, 2, 7, 8, 15, 16, 63, 64, 127, 128, 129, 1023, 1024, 4096, 65537, len(data)} {
				// Unaligned starts exercise minio's alignment prologue.
				for _, off := range []int{0, 1, 5} {
					if off+n > len(data) {
						continue
					}
					p := data[off : off+n]
					if got, want := checksum.Update(a, 0, p), stdCRC(a, 0, p); got != want {
						t.Errorf("len %d off %d: Update %#x, standard library %#x", n, off, got, want)
					}
				}
			}
			// Streamed in random pieces, continued from a previous CRC.
			for range 50 {
				var got uint64
				for off := 0; off < len(data); {
					n := min(r.IntN(1<<16), len(data)-off)
					got = checksum.Update(a, got, data[off:off+n])
					off += n
				}
				if want := stdCRC(a, 0, data); got != want {
					t.Fatalf("streamed %#x, want %#x", got, want)
				}
			}
		})
	}
}

// TestCRC64NVMEDefinition checks that CRC64NVME is CRC-64/NVME: minio's
// implementation, hash/crc64 with the reversed polynomial 0x9A6C9329AC4BC9B5
// (init and xorout all ones, reflected, as hash/crc64 does every CRC) and
// Update agree on random data.
func TestCRC64NVMEDefinition(t *testing.T) {
	t.Parallel()
	if crc64nvme.NVME != nvmePoly {
		t.Fatalf("minio/crc64nvme's polynomial is %#x, want %#x", uint64(crc64nvme.NVME), uint64(nvmePoly))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		p := randBytes(r, r.IntN(20000))
		u, m, s := checksum.Update(checksum.CRC64NVME, 0, p), crc64nvme.Checksum(p), crc64.Checksum(p, nvmeTable)
		if u != m || u != s {
			t.Fatalf("len %d: Update %#x, minio %#x, hash/crc64 %#x", len(p), u, m, s)
		}
	}
}

// TestCheckValues: the catalogue check values (CRC of "123456789").
func TestCheckValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a    checksum.Algorithm
		want uint64
	}{
		{checksum.CRC32, 0xCBF43926},
		{checksum.CRC32C, 0xE3069283},
		{checksum.CRC64NVME, 0xAE8B14860A799888},
	} {
		if got := checksum.Update(c.a, 0, []byte("123456789")); got != c.want {
			t.Errorf("%s(123456789) = %#x, want %#x", c.a, got, c.want)
		}
		if got := stdCRC(c.a, 0, []byte("123456789")); got != c.want {
			t.Errorf("standard library %s(123456789) = %#x, want %#x", c.a, got, c.want)
		}
	}
}

// sdkVectors are the x-amz-checksum-* values of "hello world" in
// aws-sdk-go-v2's service/internal/checksum tests (algorithms_test.go);
// MD5's is the well-known 5eb63bbbe01eeed093cb22bb8f5acdc3.
var sdkVectors = map[checksum.Algorithm]string{
	checksum.CRC32:     "DUoRhQ==",
	checksum.CRC32C:    "yZRlqg==",
	checksum.CRC64NVME: "jSnVw/bqjr4=",
	checksum.SHA1:      "Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
	checksum.SHA256:    "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
	checksum.SHA512:    "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw==",
	checksum.MD5:       "XrY7u+Ae7tCTyyK7j1rNww==",
}

func TestSDKVectors(t *testing.T) {
	t.Parallel()
	for a, want := range sdkVectors {
		h, err := checksum.New(a)
		if err != nil {
			t.Fatalf("New(%s): %v", a, err)
		}
		h.Write([]byte("hello "))
		h.Write([]byte("world"))
		if got := checksum.EncodeSum(h); got != want {
			t.Errorf("New(%s) over hello world: %s, want %s", a, got, want)
		}
		if a.Combinable() {
			if got := checksum.Encode(a, checksum.Update(a, 0, []byte("hello world"))); got != want {
				t.Errorf("Encode(Update(%s)): %s, want %s", a, got, want)
			}
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	p := randBytes(r, 100_000)
	std := map[checksum.Algorithm]func() hash.Hash{
		checksum.CRC32:     func() hash.Hash { return crc32.NewIEEE() },
		checksum.CRC32C:    func() hash.Hash { return crc32.New(castagnoliTable) },
		checksum.CRC64NVME: func() hash.Hash { return crc64.New(nvmeTable) },
		checksum.SHA1:      sha1.New,
		checksum.SHA256:    sha256.New,
		checksum.SHA512:    sha512.New,
		checksum.MD5:       md5.New,
	}
	for _, a := range checksum.Algorithms() {
		h, err := checksum.New(a)
		mk, ok := std[a]
		if !ok {
			if err == nil || !strings.Contains(err.Error(), "not supported") || !strings.Contains(err.Error(), string(a)) {
				t.Errorf("New(%s): %v, %v; want an error saying %s is not supported", a, h, err, a)
			}
			continue
		}
		if err != nil {
			t.Fatalf("New(%s): %v", a, err)
		}
		if h.Size() != a.Size() {
			t.Errorf("New(%s).Size() = %d, Size() %d", a, h.Size(), a.Size())
		}
		want := mk()
		h.Write(p)
		want.Write(p)
		if got, want := h.Sum(nil), want.Sum(nil); !bytes.Equal(got, want) {
			t.Errorf("New(%s) sum %x, standard library %x", a, got, want)
		}
		if a.Combinable() {
			if got, want := checksum.EncodeSum(h), checksum.Encode(a, checksum.Update(a, 0, p)); got != want {
				t.Errorf("%s: EncodeSum %s, Encode(Update) %s", a, got, want)
			}
		}
	}
	if _, err := checksum.New("ADLER32"); err == nil || !strings.Contains(err.Error(), "ADLER32") {
		t.Errorf("New(ADLER32): %v, want an error naming it", err)
	}
}

// TestCombineRandomSplits cuts random data at random points into chunks
// of random lengths, 0 and 1 among them, and folds the chunks' CRCs left
// to right with Combine, as the assembler does.
func TestCombineRandomSplits(t *testing.T) {
	t.Parallel()
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(7, uint64(len(a))))
			data := randBytes(r, 1<<18)
			whole := stdCRC(a, 0, data)
			for round := range 300 {
				n := r.IntN(len(data) + 1)
				p := data[:n]
				want := whole
				if n != len(data) {
					want = stdCRC(a, 0, p)
				}
				var got uint64
				for off := 0; off < n; {
					var l int
					switch r.IntN(5) {
					case 0:
						l = 0
					case 1:
						l = 1
					case 2:
						l = r.IntN(16)
					default:
						l = r.IntN(n/4 + 1)
					}
					l = min(l, n-off)
					got = checksum.Combine(a, got, stdCRC(a, 0, p[off:off+l]), int64(l))
					off += l
				}
				if got != want {
					t.Fatalf("round %d, %d bytes: folded %#x, want %#x", round, n, got, want)
				}
				// One cut, both orders of the empty side.
				cut := r.IntN(n + 1)
				if got := checksum.Combine(a, stdCRC(a, 0, p[:cut]), stdCRC(a, 0, p[cut:]), int64(n-cut)); got != want {
					t.Fatalf("round %d, cut %d of %d: %#x, want %#x", round, cut, n, got, want)
				}
			}
			if got := checksum.Combine(a, 0, 0, 0); got != 0 {
				t.Errorf("Combine of two empty ranges: %#x, want 0", got)
			}
		})
	}
}

// matrixCombine is an independent reference for Combine: zlib's original
// crc32_combine (before 1.2.12), which applies the operator "feed one zero
// bit to the register" as a width×width matrix over GF(2), squared up to
// 8·len2 zero bits, instead of multiplying polynomials modulo P.
func matrixCombine(width uint, poly, crc1, crc2 uint64, len2 uint64) uint64 {
	times := func(mat *[64]uint64, vec uint64) uint64 {
		var sum uint64
		for i := 0; vec != 0; i, vec = i+1, vec>>1 {
			if vec&1 != 0 {
				sum ^= mat[i]
			}
		}
		return sum
	}
	square := func(sq, mat *[64]uint64) {
		for n := range width {
			sq[n] = times(mat, mat[n])
		}
	}
	var odd, even [64]uint64
	odd[0] = poly // one zero bit: the register's bit 0 shifts out, the polynomial comes in
	for n := uint(1); n < width; n++ {
		odd[n] = 1 << (n - 1)
	}
	square(&even, &odd) // two zero bits
	square(&odd, &even) // four
	for len2 != 0 {
		square(&even, &odd) // 8, 32, 128, ... zero bits: one zero byte, 4, 16, ...
		if len2&1 != 0 {
			crc1 = times(&even, crc1)
		}
		len2 >>= 1
		if len2 == 0 {
			break
		}
		square(&odd, &even)
		if len2&1 != 0 {
			crc1 = times(&odd, crc1)
		}
		len2 >>= 1
	}
	return crc1 ^ crc2
}

func TestCombineMatrixReference(t *testing.T) {
	t.Parallel()
	lengths := []uint64{0, 1, 2, 3, 255, 1 << 20, 1<<32 - 1, 1 << 32, 1<<32 + 1, 5<<30 + 3, 1 << 40, 1 << 61, 1 << 62, math.MaxInt64}
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			width, poly := params(a)
			mask := uint64(math.MaxUint64) >> (64 - width)
			r := rand.New(rand.NewPCG(11, uint64(width)))
			ls := append([]uint64(nil), lengths...)
			for range 40 {
				ls = append(ls, r.Uint64N(math.MaxInt64)>>r.IntN(63))
			}
			for _, n := range ls {
				a1, b1 := r.Uint64()&mask, r.Uint64()&mask
				if got, want := checksum.Combine(a, a1, b1, int64(n)), matrixCombine(width, poly, a1, b1, n); got != want {
					t.Errorf("Combine(%#x, %#x, %d) = %#x, matrix reference %#x", a1, b1, n, got, want)
				}
			}
		})
	}
}

// zeros is a 1 MiB run of zero bytes.
var zeros = make([]byte, 1<<20)

// zeroCRC computes the CRC of n zero bytes the slow, independent way: by
// Update over the 1 MiB zero buffer, repeated.
func zeroCRC(a checksum.Algorithm, crc uint64, n int64) uint64 {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		crc = checksum.Update(a, crc, zeros[:k])
		n -= k
	}
	return crc
}

// zeroRuns returns z[k], the CRC of 2^k zero bytes for k = 0..62, built
// from the CRC of one zero byte by combining each run with itself.
func zeroRuns(a checksum.Algorithm) (z [63]uint64) {
	z[0] = checksum.Update(a, 0, []byte{0})
	for k := 1; k < len(z); k++ {
		z[k] = checksum.Combine(a, z[k-1], z[k-1], 1<<(k-1))
	}
	return z
}

// zeroRun is the CRC of n zero bytes from the runs of zeroRuns, one for
// each bit of n.
func zeroRun(a checksum.Algorithm, z *[63]uint64, n int64) uint64 {
	var crc uint64
	for k := 62; k >= 0; k-- {
		if n&(1<<k) != 0 {
			crc = checksum.Combine(a, crc, z[k], 1<<k)
		}
	}
	return crc
}

// TestZeroRunsAgainstUpdate ties combined zero runs to real data: for n up
// to 3 MiB, the doubling construction equals Update over n zero bytes, and
// Combine(crcA, crc(zeros(n)), n) equals Update continued from crcA over n
// zero bytes.
func TestZeroRunsAgainstUpdate(t *testing.T) {
	t.Parallel()
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(13, uint64(len(a))))
			z := zeroRuns(a)
			ns := []int64{1, 2, 3, 1 << 20, 1<<20 + 1, 3 << 20}
			for range 12 {
				ns = append(ns, 1+r.Int64N(3<<20))
			}
			for _, n := range ns {
				zn := zeroCRC(a, 0, n)
				if got := zeroRun(a, &z, n); got != zn {
					t.Errorf("%d zero bytes: doubling %#x, Update %#x", n, got, zn)
				}
				crcA := checksum.Update(a, 0, randBytes(r, 1+r.IntN(300)))
				if got, want := checksum.Combine(a, crcA, zn, n), zeroCRC(a, crcA, n); got != want {
					t.Errorf("%d zero bytes after A: Combine %#x, Update %#x", n, got, want)
				}
			}
		})
	}
}

// TestZeroRunsPast4GiB builds the CRCs of zero runs up to 10 GiB several
// ways, none hashing more than 1 MiB: left to right from 1 MiB runs (whose
// CRC is Update over real zeros, so each step is a Combine of only 1 MiB),
// as two halves (one Combine over 2.5 GiB, one over 5 GiB), and by doubling
// from one zero byte. And it puts real data in front: A followed by 5 GiB
// of zeros, folded 1 MiB at a time from crc(A), must equal one Combine of
// crc(A) with the 5 GiB run. A length cut to 32 bits anywhere would show.
func TestZeroRunsPast4GiB(t *testing.T) {
	t.Parallel()
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			z := zeroRuns(a)
			mib := zeroCRC(a, 0, 1<<20)
			crcA := checksum.Update(a, 0, []byte("real data in front of the zeros"))
			fold := map[int64]uint64{}
			var crc, withA uint64 = 0, crcA
			for i := int64(1); i <= 10<<10; i++ {
				crc = checksum.Combine(a, crc, mib, 1<<20)
				if i <= 5<<10 {
					withA = checksum.Combine(a, withA, mib, 1<<20)
				}
				fold[i<<20] = crc
			}
			for _, n := range []int64{1 << 32, 5 << 30, 8 << 30, 10 << 30, 1<<32 + 1<<20, 1<<32 - 1<<20} {
				if got := zeroRun(a, &z, n); got != fold[n] {
					t.Errorf("%d zero bytes: doubling %#x, fold %#x", n, got, fold[n])
				}
			}
			z5 := fold[5<<30]
			if got := checksum.Combine(a, fold[5<<29], fold[5<<29], 5<<29); got != z5 {
				t.Errorf("5 GiB of zeros: halves %#x, fold %#x", got, z5)
			}
			if got, want := checksum.Combine(a, z5, z5, 5<<30), fold[10<<30]; got != want {
				t.Errorf("10 GiB of zeros: halves %#x, fold %#x", got, want)
			}
			if got := checksum.Combine(a, crcA, z5, 5<<30); got != withA {
				t.Errorf("A and 5 GiB of zeros: Combine %#x, fold from crc(A) %#x", got, withA)
			}
			three := zeroCRC(a, 0, 3)
			if got, want := checksum.Combine(a, z5, three, 3), zeroRun(a, &z, 5<<30+3); got != want {
				t.Errorf("5 GiB + 3 of zeros: %#x, doubling %#x", got, want)
			}
			for _, n := range []int64{1<<32 - 1, 1 << 32, 1<<32 + 1} {
				// n zero bytes = (n - 1 MiB) zero bytes, then 1 MiB.
				if got, want := checksum.Combine(a, zeroRun(a, &z, n-1<<20), mib, 1<<20), zeroRun(a, &z, n); got != want {
					t.Errorf("%d zero bytes: %#x, doubling %#x", n, got, want)
				}
			}
		})
	}
}

// TestCombineAssociativity: (A·Z_m)·B = A·(Z_m·B) for zero runs Z_m up
// to 2^40 bytes (and a few near 2^62), with A and B real random data.
func TestCombineAssociativity(t *testing.T) {
	t.Parallel()
	for _, a := range crcs {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(17, uint64(len(a))))
			z := zeroRuns(a)
			ms := []int64{1 << 40, 1<<40 - 1, 1 << 61, 1<<62 - 12345}
			for range 100 {
				ms = append(ms, 1+r.Int64N(1<<40))
			}
			for _, m := range ms {
				crcA := checksum.Update(a, 0, randBytes(r, r.IntN(200)))
				pb := randBytes(r, r.IntN(5000))
				crcB, lenB := checksum.Update(a, 0, pb), int64(len(pb))
				zm := zeroRun(a, &z, m)
				left := checksum.Combine(a, checksum.Combine(a, crcA, zm, m), crcB, lenB)
				right := checksum.Combine(a, crcA, checksum.Combine(a, zm, crcB, lenB), m+lenB)
				if left != right {
					t.Fatalf("m = %d, lenB = %d: (A·Z)·B %#x, A·(Z·B) %#x", m, lenB, left, right)
				}
			}
		})
	}
}

// fullRun5GiB is the exact check of lengths past 4 GiB, by hashing them:
// Update over 5 GiB + 3 bytes of zeros must equal the CRC Combine builds
// from 1 MiB runs, and Update continued from crc(A) over as many zeros
// must equal one Combine of crc(A) with that run, lenB = 5 GiB + 3. It
// hashes the zeros twice and returns the bytes hashed.
func fullRun5GiB(tb testing.TB, a checksum.Algorithm) int64 {
	const n = 5<<30 + 3
	mib := checksum.Update(a, 0, zeros)
	var combined uint64
	for range 5 << 10 {
		combined = checksum.Combine(a, combined, mib, 1<<20)
	}
	combined = checksum.Combine(a, combined, checksum.Update(a, 0, zeros[:3]), 3)
	if hashed := zeroCRC(a, 0, n); combined != hashed {
		tb.Fatalf("%s of %d zero bytes: Combine %#x, Update %#x", a, int64(n), combined, hashed)
	}
	crcA := checksum.Update(a, 0, []byte("123456789"))
	if got, want := checksum.Combine(a, crcA, combined, n), zeroCRC(a, crcA, n); got != want {
		tb.Fatalf("%s of 123456789 and %d zero bytes: Combine %#x, Update %#x", a, int64(n), got, want)
	}
	return 2 * n
}

// TestCombineFullRun5GiB is the full run as a test, for S3FLEET_LONG=1 and
// not -short (BenchmarkCombineFullRun5GiB runs it under make gobench).
func TestCombineFullRun5GiB(t *testing.T) {
	if testing.Short() || os.Getenv("S3FLEET_LONG") != "1" {
		t.Skip("hashes 30 GiB: set S3FLEET_LONG=1 (and no -short)")
	}
	for _, a := range crcs {
		fullRun5GiB(t, a)
	}
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(19, 20))
	for _, a := range []checksum.Algorithm{checksum.CRC32, checksum.CRC32C, checksum.CRC64NVME, checksum.XXHASH64, checksum.XXHASH3} {
		mask := uint64(math.MaxUint64) >> (64 - 8*a.Size())
		for _, v := range []uint64{0, 1, mask, r.Uint64() & mask, r.Uint64() & mask} {
			s := checksum.Encode(a, v)
			if len(s) != base64.StdEncoding.EncodedLen(a.Size()) {
				t.Errorf("Encode(%s, %#x) = %q: %d characters, want %d", a, v, s, len(s), base64.StdEncoding.EncodedLen(a.Size()))
			}
			got, err := checksum.Decode(a, s)
			if err != nil || got != v {
				t.Errorf("Decode(%s, %q) = %#x, %v; want %#x", a, s, got, err, v)
			}
		}
	}
	// CRC32C as assembler.EncodeCRC32C renders it: base64 of the 4
	// big-endian bytes.
	for range 100 {
		c := r.Uint32()
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], c)
		if got, want := checksum.Encode(checksum.CRC32C, uint64(c)), base64.StdEncoding.EncodeToString(b[:]); got != want {
			t.Fatalf("Encode(CRC32C, %#x) = %s, want %s", c, got, want)
		}
	}
	if got := checksum.Encode(checksum.CRC32C, 0xC99465AA); got != "yZRlqg==" {
		t.Errorf("Encode(CRC32C, 0xC99465AA) = %s, want yZRlqg==", got)
	}
	for _, c := range []struct {
		a    checksum.Algorithm
		s    string
		want string
	}{
		{checksum.CRC32C, "DUoRhQ==-12", "COMPOSITE"},
		{checksum.CRC32C, "jSnVw/bqjr4=", "decodes to 8 bytes, want 4"},
		{checksum.CRC64NVME, "yZRlqg==", "decodes to 4 bytes, want 8"},
		{checksum.CRC32, "DUoRhQ", "illegal base64"},
		{checksum.CRC32, "DUo*hQ==", "illegal base64"},
		{checksum.SHA256, "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=", "does not fit"},
		{"ADLER32", "AAAAAA==", "does not fit"},
	} {
		if v, err := checksum.Decode(c.a, c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%s, %q) = %#x, %v; want an error with %q", c.a, c.s, v, err, c.want)
		}
	}
	mustPanic(t, "Encode(SHA256)", func() { checksum.Encode(checksum.SHA256, 1) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestNotACRC(t *testing.T) {
	t.Parallel()
	mustPanic(t, "Update(SHA256)", func() { checksum.Update(checksum.SHA256, 0, nil) })
	mustPanic(t, "Combine(MD5)", func() { checksum.Combine(checksum.MD5, 0, 0, 1) })
	mustPanic(t, "Composite(SHA1)", func() { checksum.Composite(checksum.SHA1, nil) })
	mustPanic(t, "Combine with a negative length", func() { checksum.Combine(checksum.CRC32C, 0, 0, -1) })
}

// TestComposite splits known data into parts and checks Composite against
// S3's rule computed here with the standard library: the CRC of the
// concatenated big-endian part CRCs, base64, "-N".
func TestComposite(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(23, 24))
	data := randBytes(r, 3<<20+12345)
	for _, a := range crcs {
		for _, cuts := range [][]int{
			{len(data)},                         // one part
			{1 << 20, 2 << 20, len(data)},       // three
			{12345, 5 << 19, len(data)},         // uneven
			{1, 2, 3, 4, 5, 6, 7, 8, len(data)}, // many small
		} {
			var parts []uint64
			var cat []byte
			prev := 0
			for _, c := range cuts {
				p := data[prev:c]
				prev = c
				v := stdCRC(a, 0, p)
				parts = append(parts, v)
				if a.Size() == 4 {
					cat = binary.BigEndian.AppendUint32(cat, uint32(v))
				} else {
					cat = binary.BigEndian.AppendUint64(cat, v)
				}
			}
			var raw []byte
			if a.Size() == 4 {
				raw = binary.BigEndian.AppendUint32(nil, uint32(stdCRC(a, 0, cat)))
			} else {
				raw = binary.BigEndian.AppendUint64(nil, stdCRC(a, 0, cat))
			}
			want := fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(raw), len(parts))
			if got := checksum.Composite(a, parts); got != want {
				t.Errorf("%s Composite of %d parts: %s, want %s", a, len(parts), got, want)
			}
			var sums [][]byte
			for i := 0; i < len(cat); i += a.Size() {
				sums = append(sums, cat[i:i+a.Size()])
			}
			if got, err := checksum.CompositeSums(a, sums); err != nil || got != want {
				t.Errorf("%s CompositeSums of %d parts: %s, %v, want %s", a, len(parts), got, err, want)
			}
		}
	}
	// SHA256, COMPOSITE as S3 does it for SHA checksums.
	var sums [][]byte
	cat := sha256.New()
	for _, p := range [][]byte{data[:1<<20], data[1<<20 : 2<<20], data[2<<20:]} {
		s := sha256.Sum256(p)
		sums = append(sums, s[:])
		cat.Write(s[:])
	}
	want := base64.StdEncoding.EncodeToString(cat.Sum(nil)) + "-3"
	if got, err := checksum.CompositeSums(checksum.SHA256, sums); err != nil || got != want {
		t.Errorf("SHA256 CompositeSums: %s, %v, want %s", got, err, want)
	}
	if _, err := checksum.CompositeSums(checksum.SHA256, [][]byte{sums[0][:31]}); err == nil {
		t.Error("CompositeSums took a 31-byte SHA256 sum")
	}
	if _, err := checksum.CompositeSums(checksum.XXHASH3, nil); err == nil {
		t.Error("CompositeSums computed XXHASH3")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, a := range checksum.Algorithms() {
		for _, s := range []string{string(a), strings.ToLower(string(a)), a.Check(), mixCase(string(a))} {
			got, err := checksum.Parse(s)
			if err != nil || got != a {
				t.Errorf("Parse(%q) = %q, %v; want %q", s, got, err, a)
			}
		}
	}
	if _, err := checksum.Parse(""); err == nil {
		t.Error("Parse(\"\") took an empty name")
	}
	for _, s := range []string{"ADLER32", "crc64", "sha-256", " crc32", "CRC32C\n"} {
		if a, err := checksum.Parse(s); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
			t.Errorf("Parse(%q) = %q, %v; want an error naming it", s, a, err)
		}
	}
}

func mixCase(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i += 2 {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

func TestProperties(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a          checksum.Algorithm
		check      string
		size       int
		combinable bool
	}{
		{checksum.CRC32, "crc32", 4, true},
		{checksum.CRC32C, "crc32c", 4, true},
		{checksum.CRC64NVME, "crc64nvme", 8, true},
		{checksum.SHA1, "sha1", 20, false},
		{checksum.SHA256, "sha256", 32, false},
		{checksum.SHA512, "sha512", 64, false},
		{checksum.MD5, "md5", 16, false},
		{checksum.XXHASH64, "xxhash64", 8, false},
		{checksum.XXHASH3, "xxhash3", 8, false},
		{checksum.XXHASH128, "xxhash128", 16, false},
		{"ADLER32", "adler32", 0, false},
	} {
		if got := c.a.Check(); got != c.check {
			t.Errorf("%s.Check() = %q, want %q", c.a, got, c.check)
		}
		if got := c.a.Size(); got != c.size {
			t.Errorf("%s.Size() = %d, want %d", c.a, got, c.size)
		}
		if got := c.a.Combinable(); got != c.combinable {
			t.Errorf("%s.Combinable() = %v, want %v", c.a, got, c.combinable)
		}
	}
	if len(checksum.Algorithms()) != 10 {
		t.Errorf("%d algorithms, want S3's 10", len(checksum.Algorithms()))
	}
}

// The CRC of a file from its chunks' CRCs, without reading it again.
func ExampleCombine() {
	chunks := []string{"hello ", "", "w", "orld"}
	var crc uint64
	for _, c := range chunks {
		// Each chunk's CRC is computed where the chunk was downloaded.
		chunkCRC := checksum.Update(checksum.CRC64NVME, 0, []byte(c))
		crc = checksum.Combine(checksum.CRC64NVME, crc, chunkCRC, int64(len(c)))
	}
	fmt.Println(checksum.Encode(checksum.CRC64NVME, crc))
	fmt.Println(checksum.Encode(checksum.CRC64NVME, checksum.Update(checksum.CRC64NVME, 0, []byte("hello world"))))
	// Output:
	// jSnVw/bqjr4=
	// jSnVw/bqjr4=
}
