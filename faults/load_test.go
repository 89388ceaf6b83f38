package faults

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLoad runs one job of 20,000 small objects (1–16 KiB) and three of
// 64 MiB with three worker processes (16 tasks each): everything lands and
// verifies. Figures, not assertions: objects/s, MB/s, Redis memory before
// the job, after it and once its records expired (retention 150 s: longer than the
// queue's backlog, since a queued object's record expires retention after
// its enqueue), the
// peak RSS of each worker and of the enqueuer.
func TestLoad(t *testing.T) {
	tier(t)
	const small, large = 20000, 3
	f := newFleet(t, withEnv("S3FLEET_RETENTION=150s"))
	f.createBucket(t, "bkt")
	began := time.Now()
	want := putMany(t, f.s3c, "bkt", small, func(i int) string { return fmt.Sprintf("load/%03d/obj-%05d", i%200, i) },
		func(i int) int64 { return int64(1*kib + (i*7919)%(15*kib+1)) })
	var total int64
	for i := range large {
		key := fmt.Sprintf("load/large-%d.bin", i)
		want[key] = putLarge(t, f.s3c, "bkt", key, 64*mib)
		total += 64 * mib
	}
	if len(want) != small+large {
		t.Fatalf("uploaded %d objects, want %d", len(want), small+large)
	}
	for i := range small {
		total += int64(1*kib + (i*7919)%(15*kib+1))
	}
	t.Logf("uploaded %d objects (%.0f MB) in %s", len(want), mb(total), time.Since(began).Round(100*time.Millisecond))

	workers := make([]*proc, 3)
	for i := range workers {
		workers[i] = f.startWorker(t, fmt.Sprintf("worker-%d", i+1), "S3FLEET_CONCURRENCY=16", "S3FLEET_LOG_LEVEL=warn")
	}
	time.Sleep(500 * time.Millisecond)
	memBefore := usedMemory(t, f.rdb)
	dest := t.TempDir()

	began = time.Now()
	enq := f.startEnqueue(t, "enqueue", []string{"S3FLEET_LOG_LEVEL=warn"}, "s3://bkt/load/", dest+"/", "--wait", "--job", "load")
	var enqPeak int64
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() { // the enqueuer ends by itself: sample its peak RSS meanwhile
		for {
			if r := peakRSS(enq.pid()); r > 0 {
				mu.Lock()
				enqPeak = max(enqPeak, r)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	code, ok := enq.wait(10 * time.Minute)
	took := time.Since(began)
	close(stop)
	if !ok || code != 0 {
		t.Fatalf("enqueue --wait: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 3000))
	}
	memAfter := usedMemory(t, f.rdb)
	keysAfter, _ := f.rdb.DBSize(context.Background()).Result()
	j := f.job(t, "load")
	if j.Succeeded != small+large || j.Failed != 0 {
		t.Errorf("job %+v", j)
	}

	verified := verify(t, dest, "load/", want)

	// The fleet's records expire 150 s after their last change; the workers
	// keep running meanwhile (asynq's janitor, in each worker, deletes
	// completed tasks whose results expired).
	expired := time.Now()
	var left []string
	for deadline := time.Now().Add(4 * time.Minute); ; {
		keys, err := f.rdb.Keys(context.Background(), "{s3fleet}:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		// The jobs index, the live workers' members, the fleet's epoch
		// (one short string) and its redis_shards stay.
		left = slices.DeleteFunc(keys, func(k string) bool {
			return k == "{s3fleet}:jobs" || k == "{s3fleet}:members" || k == "{s3fleet}:epoch" || k == "{s3fleet}:shards"
		})
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if len(left) > 0 {
		t.Errorf("%d fleet keys still in Redis %s after the job, with a retention of 150 s: %.10q", len(left), time.Since(expired).Round(time.Second), left)
	}
	memExpired := usedMemory(t, f.rdb)
	results1 := countKeys(t, f.rdb, "asynq:{assemble}:t:*")
	time.Sleep(20 * time.Second)
	results2 := countKeys(t, f.rdb, "asynq:{assemble}:t:*")
	memLater := usedMemory(t, f.rdb)
	janitor := float64(results1-results2) / 20
	if results2 > 0 {
		t.Logf("asynq keeps %d expired assembler results %s after the job; its janitors delete %.1f a second: %s to clear them",
			results2, time.Since(expired).Round(time.Second), janitor, time.Duration(float64(results2)/max(janitor, 0.01)*float64(time.Second)).Round(time.Second))
	}

	var rss []string
	for _, w := range workers {
		rss = append(rss, fmt.Sprintf("%s %.0f MiB", w.name, float64(peakRSS(w.pid()))/mib))
		w.signal(t, syscall.SIGTERM)
	}
	for _, w := range workers {
		if code, ok := w.wait(time.Minute); !ok || code != 0 {
			t.Errorf("%s: SIGTERM: ended %v, exit %d", w.name, ok, code)
		}
	}
	mu.Lock()
	peak := enqPeak
	mu.Unlock()
	summary(t, "%d objects (%.0f MB) in %s: %.0f objects/s, %.1f MB/s; %d verified; Redis used_memory %.1f MiB before, %.1f MiB after (%d keys), %.1f MiB once the fleet's records expired, %.1f MiB 20 s later (%d expired asynq results left, janitors delete %.1f/s); peak RSS %s, enqueue %.0f MiB",
		small+large, mb(total), took.Round(100*time.Millisecond), float64(small+large)/took.Seconds(), mb(total)/took.Seconds(), verified,
		float64(memBefore)/mib, float64(memAfter)/mib, keysAfter, float64(memExpired)/mib, float64(memLater)/mib, results2, janitor,
		strings.Join(rss, ", "), float64(peak)/mib)
}

// usedMemory is Redis's INFO memory used_memory, in bytes.
func usedMemory(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// countKeys counts the keys matching pattern, with SCAN.
func countKeys(t *testing.T, rdb redis.UniversalClient, pattern string) int64 {
	t.Helper()
	var n int64
	iter := rdb.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
