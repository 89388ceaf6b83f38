package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/ledger"
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

// TestDiskFullWaits downloads three 40 MiB objects onto a 100 MiB tmpfs:
// two fit, the third would only once space is freed. Before, each object
// reserved its size at once and ENOSPC failed it for good (0–1 of 3
// landed). Now two land, the third waits (its part file given up, so it
// holds no space) and `enqueue --wait` says what it waits for; once one
// finished file is deleted, the third lands and the job succeeds.
func TestDiskFullWaits(t *testing.T) {
	tier(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a tmpfs (needs root): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	f := newFleet(t)
	f.createBucket(t, "bkt")
	want := map[string][32]byte{}
	for i := range 3 {
		key := fmt.Sprintf("w/obj-%d", i)
		want[key] = putLarge(t, f.s3c, "bkt", key, 40*mib)
	}
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4")
	enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/w/", mnt+"/", "--wait", "--job", "waits")
	j := f.waitProgress(t, "waits", 2*time.Minute, "two objects landed", func(j ledger.Job) bool { return j.Succeeded >= 2 })
	time.Sleep(3 * time.Second) // the third keeps trying, and failing for space
	if j = f.job(t, "waits"); j.Succeeded != 2 || j.Failed != 0 {
		t.Fatalf("with room for two: %+v, want 2 landed and the third waiting", j)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(enq.log(), "waiting: "); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("enqueue --wait did not say the job waits for space:\n%s", tail(enq.log(), 2000))
		}
	}
	note := firstLine(enq.log(), "waiting: ")
	var landed []string
	for k := range want {
		if _, err := os.Stat(filepath.Join(mnt, strings.TrimPrefix(k, "w/"))); err == nil {
			landed = append(landed, k)
		}
	}
	if len(landed) != 2 {
		t.Fatalf("%d objects on the disk, want 2", len(landed))
	}
	freed := time.Now()
	if err := os.Remove(filepath.Join(mnt, strings.TrimPrefix(landed[0], "w/"))); err != nil {
		t.Fatal(err)
	}
	code, ok := enq.wait(2 * time.Minute)
	if !ok || code != 0 {
		t.Fatalf("after space was freed: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 3000))
	}
	after := time.Since(freed)
	delete(want, landed[0])
	if n := verify(t, mnt, "w/", want); n != 2 {
		t.Fatalf("%d of 2 objects right", n)
	}
	if left := partFiles(mnt); len(left) != 0 {
		t.Errorf("part files left: %v", left)
	}
	summary(t, "3 × 40 MiB onto a 100 MiB tmpfs: 2 landed, the third waited (%q); one file deleted, the third landed %s later; job exit 0",
		tail(note, 120), after.Round(100*time.Millisecond))
}
