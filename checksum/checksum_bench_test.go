package checksum_test

import (
	"crypto/md5"
	"crypto/sha256"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/checksum"
)

const benchBuf = 256 << 10 // 256 KiB, a read's worth

// reportCPU reports CPU-s/GiB: the seconds of CPU it takes to checksum a
// GiB, from the elapsed time per byte. The benchmark runs on a single
// goroutine that never blocks, so its wall time is its CPU time.
func reportCPU(b *testing.B, bytes int64) {
	if bytes > 0 {
		b.ReportMetric(b.Elapsed().Seconds()/float64(bytes)*(1<<30), "CPU-s/GiB")
	}
}

// BenchmarkUpdate hashes a 256 KiB buffer over and over: this package's
// three CRCs, hash/crc32's CRC-32C (which this package's CRC32C
// replaces on CPUs with AVX-512), hash/crc64 with the NVME table (the slow
// reference CRC64NVME replaces), and SHA256 and MD5 for comparison.
func BenchmarkUpdate(b *testing.B) {
	buf := randBytes(rand.New(rand.NewPCG(1, 1)), benchBuf)
	for _, a := range crcs {
		b.Run(string(a), func(b *testing.B) {
			b.SetBytes(benchBuf)
			var crc uint64
			n := int64(0)
			for b.Loop() {
				crc = checksum.Update(a, crc, buf)
				n += benchBuf
			}
			reportCPU(b, n)
		})
	}
	for _, ref := range []struct {
		name   string
		update func(crc uint64, p []byte) uint64
	}{
		{"hash-crc32-Castagnoli", func(crc uint64, p []byte) uint64 { return uint64(crc32.Update(uint32(crc), castagnoliTable, p)) }},
		{"hash-crc64-NVME-table", func(crc uint64, p []byte) uint64 { return crc64.Update(crc, nvmeTable, p) }},
	} {
		b.Run(ref.name, func(b *testing.B) {
			b.SetBytes(benchBuf)
			var crc uint64
			n := int64(0)
			for b.Loop() {
				crc = ref.update(crc, buf)
				n += benchBuf
			}
			reportCPU(b, n)
		})
	}
	for _, c := range []struct {
		name string
		new  func() hash.Hash
	}{{"SHA256", sha256.New}, {"MD5", md5.New}} {
		b.Run(c.name, func(b *testing.B) {
			h := c.new()
			b.SetBytes(benchBuf)
			n := int64(0)
			for b.Loop() {
				h.Write(buf)
				n += benchBuf
			}
			reportCPU(b, n)
		})
	}
}

// BenchmarkUpdateAfterRead hashes each 256 KiB just read from a file in
// the page cache, as a chunk hashes what it has just read from its
// socket: the bytes the kernel copied in are in the cache, so the CRC
// costs what it does in BenchmarkUpdate (bench/README.md compares it with
// the CRC's share of a worker's profile). Only the hashing is timed.
func BenchmarkUpdateAfterRead(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "data")
	if err := os.WriteFile(path, randBytes(rand.New(rand.NewPCG(2, 2)), size), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, benchBuf)
	for _, a := range crcs {
		b.Run(string(a), func(b *testing.B) {
			b.SetBytes(benchBuf)
			var crc uint64
			n, off := int64(0), int64(0)
			for b.Loop() {
				b.StopTimer()
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off = (off + benchBuf) % size
				b.StartTimer()
				crc = checksum.Update(a, crc, buf)
				n += benchBuf
			}
			reportCPU(b, n)
		})
	}
}

// BenchmarkCombine is the cost of one Combine, by length of the second
// range: an 8 MiB chunk, a 5 GiB part, and the longest length there is.
func BenchmarkCombine(b *testing.B) {
	for _, a := range crcs {
		for _, c := range []struct {
			name string
			n    int64
		}{{"8MiB", 8 << 20}, {"5GiB", 5 << 30}, {"2^63-1", 1<<63 - 1}} {
			b.Run(string(a)+"/"+c.name, func(b *testing.B) {
				crc := checksum.Update(a, 0, []byte("123456789"))
				for b.Loop() {
					crc = checksum.Combine(a, crc, 0x12345678, c.n)
				}
			})
		}
	}
}

// BenchmarkCombineFullRun5GiB is the full run: for each CRC, once, it
// hashes 5 GiB + 3 bytes of zeros with Update and fails unless that equals
// the CRC Combine builds from 1 MiB runs, then hashes them again after
// "123456789" and fails unless that equals one Combine with lenB = 5 GiB +
// 3 (fullRun5GiB). It reports the hashing's throughput as Update-GB/s;
// its ns/op is then one Combine over 5 GiB + 3 bytes.
func BenchmarkCombineFullRun5GiB(b *testing.B) {
	for _, a := range crcs {
		b.Run(string(a), func(b *testing.B) {
			start := time.Now()
			n := fullRun5GiB(b, a)
			secs := time.Since(start).Seconds()
			crc := checksum.Update(a, 0, []byte("123456789")) // not 0, which Combine skips
			// b.Loop resets the timer and the metrics: report after it.
			for b.Loop() {
				crc = checksum.Combine(a, crc, crc, n)
			}
			b.ReportMetric(float64(n)/secs/1e9, "Update-GB/s")
			b.ReportMetric(secs/float64(n)*(1<<30), "CPU-s/GiB")
		})
	}
}
