package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestEnqueuerKilled kills `enqueue --wait` with SIGKILL halfway through
// enqueuing a prefix of 3000 small objects (each listing page of 1000 is
// held back 1.5 s by the proxy so the kill lands between pages), while two
// workers download what it enqueued. The same command run again under the
// same job finishes the job: 3000 objects, none counted twice, each
// fetched once.
func TestEnqueuerKilled(t *testing.T) {
	tier(t)
	const n = 3000
	f := newFleet(t)
	f.createBucket(t, "bkt")
	began := time.Now()
	want := putMany(t, f.s3c, "bkt", n, func(i int) string { return fmt.Sprintf("many/%02d/obj-%04d", i%50, i) },
		func(i int) int64 { return int64(1 + (i*7919)%(4*kib)) })
	t.Logf("uploaded %d objects in %s", n, time.Since(began).Round(100*time.Millisecond))
	f.proxy.SetRule(func(r *http.Request) testenv.Fault {
		if testenv.IsList(r) {
			return testenv.Fault{Delay: 1500 * time.Millisecond}
		}
		return testenv.Fault{}
	})
	f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=8", "S3FLEET_LOG_LEVEL=info")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=8", "S3FLEET_LOG_LEVEL=info")
	dest := t.TempDir()
	args := []string{"s3://bkt/many/", dest + "/", "--wait", "--job", "halfway"}

	enq := f.startEnqueue(t, "enqueue-1", nil, args...)
	j := f.waitProgress(t, "halfway", 2*time.Minute, "10% of the objects enqueued",
		func(j ledger.Job) bool { return j.Objects >= n/10 })
	if j.Objects > n*9/10 || j.Listed {
		t.Fatalf("too late to kill the enqueuer: %+v", j)
	}
	enq.signal(t, syscall.SIGKILL)
	enq.wait(10 * time.Second)
	killedAt := f.job(t, "halfway")
	t.Logf("SIGKILL enqueue at %d of %d objects enqueued (%d finished)", killedAt.Objects, n, killedAt.Finished())

	code, out := f.enqueue(t, args...)
	if code != 0 {
		t.Fatalf("the same enqueue again: exit %d:\n%s", code, tail(out, 3000))
	}
	final := f.job(t, "halfway")
	members, _ := f.rdb.ZCard(context.Background(), "{s3fleet}:job:halfway:xfers").Result()
	if final.Objects != n || members != n || final.Succeeded+final.Skipped != n || final.Failed != 0 {
		t.Errorf("job %+v with %d transfers, want %d objects, each once, all done", final, members, n)
	}
	ok := verify(t, dest, "many/", want)
	gets := f.proxy.ObjectGETs()
	twice, never := 0, 0
	for key := range want {
		switch c := gets["/bkt/"+key]; {
		case c == 0:
			never++
		case c > 1:
			twice++
		}
	}
	// Nothing was in flight in the enqueuer's hands at the kill: the
	// workers kept running, so no object should be fetched twice.
	if twice > 0 || never > 0 {
		t.Errorf("%d objects fetched more than once, %d never", twice, never)
	}
	summary(t, "SIGKILL enqueue at %d/%d objects enqueued; re-run: %s; %d objects in the job, %d verified, %d fetched twice",
		killedAt.Objects, n, firstLine(out, "objects ("), final.Objects, ok, twice)
}

// firstLine returns the first line of out that contains s, trimmed.
func firstLine(out, s string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
