package assembler

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/checksum"
)

// BenchmarkReadBack is what verify_disk costs: a 256 MiB flushed file read
// back from the device with O_DIRECT and its CRC64NVME computed, in MB/s
// and CPU-seconds (user and system, this process) per GiB.
func BenchmarkReadBack(b *testing.B) {
	const size = 256 << 20
	f, err := os.Create(filepath.Join(b.TempDir(), "part"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	cpu0 := cpuTime()
	for b.Loop() {
		if _, _, err := ReadBack(f, checksum.CRC64NVME, size); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(b.N)*size/(1<<30)), "CPU-s/GiB")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
