package faults

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestS3Faults breaks S3's answers through the fault proxy, one kind of
// fault per subtest, while two workers download a 48 MiB object in 4 MiB
// chunks and 20 small ones: 503 SlowDown and 500 on a fifth of the GETs,
// connections reset or cut mid-body, and bodies that stall for ever, which
// the workers' read timeout (2 s) must turn into a retry. Every job
// completes with every byte right.
func TestS3Faults(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_READ_TIMEOUT=2s", "S3FLEET_CHUNK_SIZE=4MiB", "S3FLEET_THRESHOLD=4MiB"))
	f.createBucket(t, "bkt")
	want := map[string][32]byte{"src/big.bin": putLarge(t, f.s3c, "bkt", "src/big.bin", 48*mib)}
	for k, v := range putMany(t, f.s3c, "bkt", 20, func(i int) string { return fmt.Sprintf("src/small-%02d", i) },
		func(i int) int64 { return int64(1 + i*3331) }) {
		want[k] = v
	}
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4")

	// every returns a picker true for one ranged GET in n.
	every := func(n int64) func(*http.Request) bool {
		var c atomic.Int64
		return func(*http.Request) bool { return c.Add(1)%n == 0 }
	}
	// firstN is true for the first n GETs of big.bin after its first chunk,
	// so a stall hits mid-object.
	firstN := func(n int64) func(*http.Request) bool {
		var c atomic.Int64
		return func(r *http.Request) bool {
			return strings.HasSuffix(r.URL.Path, "/big.bin") && !strings.HasPrefix(r.Header.Get("Range"), "bytes=0-") && c.Add(1) <= n
		}
	}
	for _, tc := range []struct {
		name  string
		pick  func(*http.Request) bool
		fault testenv.Fault
	}{
		{"503 SlowDown on 20%", every(5), testenv.Fault{Action: testenv.Status, Status: 503, Code: "SlowDown"}},
		{"500 on 20%", every(5), testenv.Fault{Action: testenv.Status, Status: 500, Code: "InternalError"}},
		{"reset mid-body", every(4), testenv.Fault{Action: testenv.Reset, After: 512 * kib}},
		{"body cut short", every(4), testenv.Fault{Action: testenv.Cut, After: 100}},
		{"body stalls", firstN(3), testenv.Fault{Action: testenv.Stall, After: 64 * kib}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			injected := f.proxy.Injected.Load()
			gets := f.proxy.TotalObjectGETs()
			f.proxy.SetRule(objectRule(tc.pick, tc.fault))
			defer f.proxy.SetRule(nil)
			dest := t.TempDir()
			job := "s3-" + strings.NewReplacer(" ", "-", "%", "").Replace(tc.name)
			began := time.Now()
			code, out := f.enqueue(t, "s3://bkt/src/", dest+"/", "--wait", "--job", job)
			took := time.Since(began)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, tail(out, 3000))
			}
			n := f.proxy.Injected.Load() - injected
			if n == 0 {
				t.Fatal("the proxy injected no fault")
			}
			ok := verify(t, dest, "src/", want)
			attempts, chunks := f.attempts(t, job)
			if j := f.job(t, job); j.Failed != 0 || j.Succeeded != int64(len(want)) {
				t.Errorf("job %+v", j)
			}
			if left := partFiles(dest); len(left) != 0 {
				t.Errorf("part files left: %v", left)
			}
			if took > 3*time.Minute {
				t.Errorf("the job took %s", took)
			}
			summary(t, "%d faults injected (%s) in %d ranged GETs; %d chunk attempts for %d chunks (%d asynq retries); %d/%d objects verified; %s",
				n, tc.fault.Action, f.proxy.TotalObjectGETs()-gets, attempts, chunks, attempts-chunks, ok, len(want), took.Round(time.Millisecond))
		})
	}
}

// TestSourceChanged overwrites the source object while the job downloads
// it: the object fails with "source changed" (412 on If-Match) and no file
// under its final name; enqueueing it again downloads the new version.
func TestSourceChanged(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.createBucket(t, "bkt")
	putLarge(t, f.s3c, "bkt", "obj.bin", 64*mib)
	f.proxy.SetRule(throttle(2 * mib)) // 8 chunks, 2 at a time at 2 MiB/s: about 16 s
	f.startWorker(t, "worker", "S3FLEET_CONCURRENCY=2")
	dir := t.TempDir()
	dest := filepath.Join(dir, "obj.bin")
	enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/obj.bin", dest, "--wait", "--job", "changed")
	j := f.waitProgress(t, "changed", time.Minute, "a first chunk", func(j ledger.Job) bool { return j.BytesDone > 0 })
	newSum := putLarge(t, f.s3c, "bkt", "obj.bin", 40*mib+7)
	t.Logf("overwrote obj.bin (64 MiB -> 40 MiB+7) at %d of %d bytes", j.BytesDone, j.BytesTotal)
	code, ok := enq.wait(3 * time.Minute)
	if !ok {
		t.Fatal("enqueue --wait did not end within 3 minutes of the overwrite")
	}
	out := enq.log()
	if code != 1 || !strings.Contains(out, "source changed") {
		t.Fatalf("exit %d, want 1 with \"source changed\":\n%s", code, tail(out, 3000))
	}
	o := f.objects(t, "changed")["obj.bin"]
	if o.State != ledger.Failed || !strings.Contains(o.Error, "source changed") {
		t.Fatalf("object %s %q, want failed: source changed", o.State, o.Error)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("a final file exists after the source changed: %v", err)
	}
	leftParts := partFiles(dir)

	f.proxy.SetRule(nil)
	code, out = f.enqueue(t, "s3://bkt/obj.bin", dest, "--wait")
	if code != 0 {
		t.Fatalf("re-run: exit %d:\n%s", code, tail(out, 3000))
	}
	if got, err := fileSHA(dest); err != nil || got != newSum {
		t.Fatalf("re-run did not land the new version: %v", err)
	}
	summary(t, "overwritten at %.0f%%: failed with %q; no final file; re-run landed the new version (SHA-256 ok); %d stale part file(s) of the old version left",
		100*fraction(j), o.Error, len(leftParts))
}

// TestRetriesExhausted: with S3FLEET_MAX_RETRIES=2 the proxy answers 500 to
// every GET of one chunk of one object: that object fails with the last
// error and the job exits 1, the others land; once the fault is gone the
// same enqueue under the same job fetches only the missing chunk.
func TestRetriesExhausted(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_MAX_RETRIES=2"))
	f.createBucket(t, "bkt")
	want := putMany(t, f.s3c, "bkt", 3, func(i int) string { return fmt.Sprintf("p/ok-%d", i) }, func(int) int64 { return 10 * kib })
	want["p/bad.bin"] = putLarge(t, f.s3c, "bkt", "p/bad.bin", 20*mib) // 3 chunks of 8 MiB
	var broken atomic.Bool
	broken.Store(true)
	f.proxy.SetRule(objectRule(func(r *http.Request) bool {
		return broken.Load() && strings.HasSuffix(r.URL.Path, "/bad.bin") && strings.HasPrefix(r.Header.Get("Range"), "bytes=8388608-")
	}, testenv.Fault{Action: testenv.Status, Status: 500, Code: "InternalError"}))
	f.startWorker(t, "worker")
	dest := t.TempDir()
	args := []string{"s3://bkt/p/", dest + "/", "--wait", "--job", "exhausted"}
	began := time.Now()
	code, out := f.enqueue(t, args...)
	took := time.Since(began)
	if code != 1 || !strings.Contains(out, "failed s3://bkt/p/bad.bin") || !strings.Contains(out, "500") {
		t.Fatalf("exit %d, want 1 naming bad.bin's 500:\n%s", code, tail(out, 3000))
	}
	o := f.objects(t, "exhausted")["p/bad.bin"]
	if o.State != ledger.Failed || !strings.Contains(o.Error, "500") {
		t.Fatalf("bad.bin: %s %q, want failed with the 500", o.State, o.Error)
	}
	st, _ := f.status(t, "exhausted")
	if st.State != "failed" || st.Counts.Failed != 1 || st.Counts.Succeeded != 3 {
		t.Fatalf("status --json: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dest, "bad.bin")); !os.IsNotExist(err) {
		t.Fatal("a failed object has a final file")
	}
	injected := f.proxy.Injected.Load()

	broken.Store(false)
	before := f.proxy.ObjectGETs()["/bkt/p/bad.bin"]
	code, out = f.enqueue(t, args...)
	if code != 0 {
		t.Fatalf("retry: exit %d:\n%s", code, tail(out, 3000))
	}
	refetched := f.proxy.ObjectGETs()["/bkt/p/bad.bin"] - before
	if refetched != 1 {
		t.Errorf("the retry made %d ranged GETs of bad.bin, want 1 (only the missing chunk)", refetched)
	}
	ok := verify(t, dest, "p/", want)
	how := "enqueue SRC DEST --job exhausted --wait"
	_ = refetched

	// `enqueue retry JOB`, where it exists.
	if _, help := f.enqueue(t, "retry", "--help"); strings.Contains(help, "enqueue retry") {
		broken.Store(true)
		dest2 := t.TempDir()
		if code, out := f.enqueue(t, "s3://bkt/p/", dest2+"/", "--wait", "--job", "exhausted-2"); code != 1 {
			t.Fatalf("second round: exit %d, want 1:\n%s", code, tail(out, 3000))
		}
		broken.Store(false)
		before := f.proxy.ObjectGETs()["/bkt/p/bad.bin"]
		retryArgs := []string{"retry", "exhausted-2"}
		if strings.Contains(help, "--wait") {
			retryArgs = append(retryArgs, "--wait")
		}
		code, out := f.enqueue(t, retryArgs...)
		if code != 0 {
			t.Fatalf("enqueue %v: exit %d:\n%s", retryArgs, code, tail(out, 3000))
		}
		f.waitProgress(t, "exhausted-2", 2*time.Minute, "the retried job's end", ledger.Job.Done)
		if j := f.job(t, "exhausted-2"); j.Failed != 0 {
			t.Errorf("after enqueue retry: %+v", j)
		}
		ok += verify(t, dest2, "p/", want)
		n := f.proxy.ObjectGETs()["/bkt/p/bad.bin"] - before
		if n != 1 {
			t.Errorf("enqueue retry made %d ranged GETs of bad.bin, want 1", n)
		}
		how += fmt.Sprintf(" (1 chunk) and enqueue retry JOB (%d chunk)", n)
	} else {
		t.Log("enqueue retry does not exist yet: only the re-enqueue under the job's name was tried")
	}
	summary(t, "%d 500s injected; bad.bin failed after %s with %q (exit 1); %s refetched only the missing chunk; %d objects verified",
		injected, took.Round(100*time.Millisecond), tail(o.Error, 120), how, ok)
}
