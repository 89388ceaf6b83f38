package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiskFull downloads a prefix onto a 20 MiB tmpfs: a 32 MiB object
// that cannot fit fails with ENOSPC ("no space left on device") and its
// part file is removed; the ten small objects of the same job land.
func TestDiskFull(t *testing.T) {
	tier(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	f := newFleet(t)
	f.createBucket(t, "bkt")
	small := putMany(t, f.s3c, "bkt", 10, func(i int) string { return fmt.Sprintf("d/small-%d", i) }, func(int) int64 { return 64 * kib })
	putLarge(t, f.s3c, "bkt", "d/huge.bin", 32*mib)
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4")

	code, out := f.enqueue(t, "s3://bkt/d/", mnt+"/", "--wait", "--job", "full")
	if code != 1 || !strings.Contains(out, "failed s3://bkt/d/huge.bin") || !strings.Contains(out, "no space left on device") {
		t.Fatalf("exit %d, want 1 with huge.bin failed for no space:\n%s", code, tail(out, 3000))
	}
	o := f.objects(t, "full")["d/huge.bin"]
	if o.State != "failed" || !strings.Contains(o.Error, "no space left on device") {
		t.Fatalf("huge.bin: %s %q", o.State, o.Error)
	}
	if left := partFiles(mnt); len(left) != 0 {
		t.Errorf("part files left on the full disk: %v", left)
	}
	if _, err := os.Stat(filepath.Join(mnt, "huge.bin")); !os.IsNotExist(err) {
		t.Errorf("huge.bin has a final file: %v", err)
	}
	ok := verify(t, mnt, "d/", small)
	if j := f.job(t, "full"); j.Succeeded != 10 || j.Failed != 1 {
		t.Errorf("job %+v, want 10 succeeded and 1 failed", j)
	}
	var st unix.Statfs_t
	_ = unix.Statfs(mnt, &st)
	summary(t, "32 MiB object onto a 20 MiB tmpfs: failed with %q; part file removed; %d/10 small objects verified; %.1f MiB free after",
		tail(o.Error, 100), ok, float64(st.Bavail*uint64(st.Bsize))/mib)
}
