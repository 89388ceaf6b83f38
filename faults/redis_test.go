package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/ledger"
)

// TestRedisOutage takes Redis (AOF on) away mid-job while two workers
// download a 512 MiB object and `enqueue --wait` follows it: first a crash
// and restart on the same port and data directory (down 2 s), then a
// freeze of 20 s (SIGSTOP: the port stays open, nothing answers). The
// workers and the waiting enqueue reconnect, the job completes with every
// byte right, and no object is marked failed for the outage.
func TestRedisOutage(t *testing.T) {
	tier(t)
	f := newFleet(t, withRedisArgs("--appendonly", "yes", "--appendfsync", "everysec"))
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", "big.bin", 512*mib)
	f.proxy.SetRule(throttle(4 * mib)) // 8 streams: about 16 s
	workers := []*proc{
		f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4"),
		f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4"),
	}
	for _, tc := range []struct {
		name   string
		outage func(t *testing.T) string
	}{
		{"restart", func(t *testing.T) string {
			down := f.redis.Restart(t, syscall.SIGKILL, 2*time.Second)
			return "SIGKILL and restart on the same port and AOF: " + down.Round(100*time.Millisecond).String() + " without Redis"
		}},
		{"unreachable 20s", func(t *testing.T) string {
			f.redis.Pause(t, 20*time.Second)
			return "SIGSTOP for 20 s, then SIGCONT"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			job := "redis-" + strings.ReplaceAll(tc.name, " ", "-")
			enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/big.bin", dest+"/", "--wait", "--job", job)
			j := f.waitProgress(t, job, 2*time.Minute, "30%", func(j ledger.Job) bool { return fraction(j) >= 0.3 })
			if j.Done() {
				t.Fatal("the job finished before the outage")
			}
			began := time.Now()
			what := tc.outage(t)
			back := time.Now()
			t.Logf("%s at %.0f%% of the job", what, 100*fraction(j))
			code, ok := enq.wait(5 * time.Minute)
			if !ok {
				t.Fatalf("enqueue --wait did not end within 5 minutes after Redis came back: %+v", f.job(t, job))
			}
			// Whatever enqueue did, the job itself must end.
			final := f.waitProgress(t, job, 5*time.Minute, "the job's end", ledger.Job.Done)
			done := time.Since(back)
			for _, w := range workers {
				if !w.alive() {
					t.Errorf("%s exited: %s", w.name, tail(w.log(), 1500))
				}
			}
			attempts, chunks := f.attempts(t, job)
			if code != 0 {
				t.Errorf("BUG: enqueue --wait exited %d %s after the outage began, instead of reconnecting and following the job (which ended by itself: %d succeeded, %d failed):\n%s",
					code, enq.ended.Sub(began).Round(100*time.Millisecond), final.Succeeded, final.Failed, tail(enq.log(), 1500))
			}
			if final.Failed != 0 {
				t.Errorf("%d object(s) marked failed for the outage: %+v", final.Failed, f.objects(t, job))
			}
			if got, err := fileSHA(filepath.Join(dest, "big.bin")); err != nil || got != want {
				t.Errorf("big.bin: SHA-256 differs (%v)", err)
			}
			summary(t, "%s at %.0f%%: enqueue --wait exit %d; job done %s after Redis was back; %d failed; %d attempts for %d chunks; workers alive",
				what, 100*fraction(j), code, done.Round(100*time.Millisecond), final.Failed, attempts, chunks)
		})
	}
	info, _ := f.rdb.Info(context.Background(), "persistence").Result()
	if !strings.Contains(info, "aof_enabled:1") {
		t.Errorf("Redis ran without AOF: %s", info)
	}
}

// TestRedisLost empties Redis (no persistence: FLUSHALL, as a restart
// without AOF) while two workers download a 96 MiB object. `enqueue
// --wait` says Redis lost the job and how to resume, and exits 1; the part
// file stays on disk. Running the same command again downloads the object
// and removes the lost run's part file: none is left behind.
func TestRedisLost(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", "obj.bin", 96*mib)
	f.proxy.SetRule(throttle(2 * mib))
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4")
	dest := t.TempDir()
	args := []string{"s3://bkt/obj.bin", dest + "/", "--wait", "--job", "lost"}
	enq := f.startEnqueue(t, "enqueue", nil, args...)
	f.waitProgress(t, "lost", time.Minute, "a first chunk", func(j ledger.Job) bool { return j.BytesDone > 0 })
	if err := f.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	code, ok := enq.wait(30 * time.Second)
	if !ok || code != 1 || !strings.Contains(enq.log(), "Redis lost it") || !strings.Contains(enq.log(), "run the same command again to resume") {
		t.Fatalf("enqueue --wait after Redis lost the job: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 2000))
	}
	orphans := partFiles(dest)
	if len(orphans) == 0 {
		t.Fatal("no part file after the loss: the test did not catch the job mid-way")
	}
	f.proxy.SetRule(nil)
	code, out := f.enqueue(t, args...)
	if code != 0 {
		t.Fatalf("the same command again: exit %d:\n%s", code, tail(out, 2000))
	}
	if got, err := fileSHA(filepath.Join(dest, "obj.bin")); err != nil || got != want {
		t.Fatalf("obj.bin: SHA-256 differs (%v)", err)
	}
	if left := partFiles(dest); len(left) != 0 {
		t.Errorf("part files left after the re-run: %v (the lost run's: %v)", left, orphans)
	}
	summary(t, "FLUSHALL mid-job: --wait exit 1 saying Redis lost the job; %d part file(s) left by the lost run; the same command again: exit 0, SHA-256 ok, no part file left",
		len(orphans))
}

// TestRedisLostSmall empties Redis while two workers download small
// objects in batches, once some files have landed. The same command again
// skips the files the lost run placed (they carry its transfer's mark),
// as the --wait message promises, fetches the rest, and exits 0; before,
// it refused every landed file as "already exists".
func TestRedisLostSmall(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_BATCH_OBJECTS=4"))
	f.createBucket(t, "bkt")
	const n = 48
	want := putMany(t, f.s3c, "bkt", n, func(i int) string { return fmt.Sprintf("small/%02d", i) }, func(int) int64 { return 16 * kib })
	f.proxy.SetRule(throttle(32 * kib)) // half a second an object
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=2")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=2")
	dest := t.TempDir()
	args := []string{"s3://bkt/small/", dest + "/", "--wait", "--job", "lostsmall"}
	enq := f.startEnqueue(t, "enqueue", nil, args...)
	landed := func() int {
		ents, _ := os.ReadDir(dest)
		k := 0
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".part") {
				k++
			}
		}
		return k
	}
	for deadline := time.Now().Add(time.Minute); landed() < 8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 8 files landed within a minute: %d", landed())
		}
	}
	if err := f.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before := landed()
	if code, ok := enq.wait(30 * time.Second); !ok || code != 1 || !strings.Contains(enq.log(), "run the same command again to resume") {
		t.Fatalf("enqueue --wait after Redis lost the job: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 2000))
	}
	if before >= n {
		t.Fatal("every file landed before Redis was emptied: the test did not catch the job mid-way")
	}
	f.proxy.SetRule(nil)
	code, out := f.enqueue(t, args...)
	if code != 0 {
		t.Fatalf("the same command again: exit %d (%d files had landed):\n%s", code, before, tail(out, 2000))
	}
	skipped := "0"
	if m := regexp.MustCompile(`(\d+) already done`).FindStringSubmatch(out); m != nil {
		skipped = m[1]
	}
	if skipped == "0" {
		t.Errorf("the re-run skipped none of the %d files the lost run placed:\n%s", before, tail(out, 2000))
	}
	for key, sum := range want {
		if got, err := fileSHA(filepath.Join(dest, strings.TrimPrefix(key, "small/"))); err != nil || got != sum {
			t.Fatalf("%s: SHA-256 differs (%v)", key, err)
		}
	}
	if left := partFiles(dest); len(left) != 0 {
		t.Errorf("part files left after the re-run: %v", left)
	}
	summary(t, "FLUSHALL mid-job of %d small objects, %d landed: --wait exit 1; the same command again: exit 0, %s already done, SHA-256 ok, no part file left",
		n, before, skipped)
}
