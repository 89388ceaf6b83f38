package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestPendingBatches: the small objects of a first run wait in batch tasks
// with no record each (ledger.Pend): the job counts them queued, Redis holds
// no transfer key for them, a cancel before any worker runs makes them
// cancelled records (retry then fetches every one), and once workers run
// each lands, is recorded and counted once.
func TestPendingBatches(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	const n = 250
	want := map[string][]byte{}
	for i := range n {
		key := fmt.Sprintf("small/%03d", i)
		want[key] = f.S3.PutRandom(t, "bkt", key, int64(100+i), false)
	}
	big := f.S3.PutRandom(t, "bkt", "small/zz-big", 3*mib, false)
	cfg := f.Config()
	c := fleettest.NewClient(t, cfg)
	rdb := f.Redis.Client(t)
	ctx := context.Background()
	dest := t.TempDir() + "/"
	req := fleettest.Request("s3://bkt/small/", dest)
	req.Job = "pend"
	sum, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if sum.New != n+1 {
		t.Fatalf("summary %+v, want %d new", sum, n+1)
	}
	j, err := c.Ledger.GetJob(ctx, "pend")
	if err != nil || j.Objects != n+1 || j.Pending != n || j.Done() {
		t.Fatalf("job %+v (%v), want %d objects, %d of them pending", j, err, n+1, n)
	}
	if keys, _ := rdb.Keys(ctx, "{s3fleet*}:xfer:*").Result(); len(keys) != 1 {
		t.Fatalf("%d transfer keys, want the big object's only: %v", len(keys), keys)
	}
	// 3 batches of at most 100 (the fleet's batch_objects), one pending
	// entry each; in a sharded ledger, batches of one shard each.
	entries, err := c.Ledger.PendingBatches(ctx, "pend")
	if err != nil {
		t.Fatal(err)
	}
	var pended int64
	for _, e := range entries {
		pended += e.Objects
		if e.Objects > 100 {
			t.Errorf("pending batch %+v: more than 100 objects", e)
		}
	}
	if shards := c.Ledger.NumShards(); pended != n || len(entries) < 3 || len(entries) > 3+shards-1 {
		t.Fatalf("%d pending batches of %d objects, want %d objects in 3 batches (up to %d in %d shards): %+v",
			len(entries), pended, n, 3+shards-1, shards, entries)
	}

	cancelled, err := c.Cancel(ctx, "pend")
	if err != nil || cancelled != n+1 {
		t.Fatalf("cancel: %d objects, %v; want %d", cancelled, err, n+1)
	}
	j = c.Wait(t, "pend", 10*time.Second)
	if j.Cancelled != n+1 || j.Pending != 0 {
		t.Fatalf("job after cancel %+v", j)
	}
	if objs := c.Objects(t, "pend"); len(objs) != n+1 {
		t.Fatalf("%d records after cancel, want %d", len(objs), n+1)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if q := chunkQueues(t, insp, c.Ledger.NumShards()); q.Pending != 0 {
		t.Fatalf("chunk queues after cancel: %+v", q)
	}

	fleettest.StartWorker(t, cfg)
	fleettest.StartWorker(t, cfg)
	rs, err := c.Retry(ctx, "pend")
	if err != nil || rs.Resumed != n+1 {
		t.Fatalf("retry: %+v %v", rs, err)
	}
	j = c.Wait(t, "pend", time.Minute)
	if j.Succeeded != n+1 || j.Objects != n+1 || j.Failed+j.Cancelled != 0 || j.BytesDone != j.BytesTotal {
		t.Fatalf("job after retry %+v", j)
	}
	want["small/zz-big"] = big
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(dest, filepath.Base(key)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, %v", key, len(got), err)
		}
	}

	// A second job of new objects, run by the workers straight away.
	for i := range n {
		f.S3.PutRandom(t, "bkt", fmt.Sprintf("more/%03d", i), 10, false)
	}
	sum, err = c.Submit(ctx, fleettest.Request("s3://bkt/more/", t.TempDir()+"/"))
	if err != nil {
		t.Fatal(err)
	}
	j = c.Wait(t, sum.Job, time.Minute)
	if j.Succeeded != n || j.Objects != n || j.Pending != 0 {
		t.Fatalf("second job %+v", j)
	}
	for k, o := range c.Objects(t, sum.Job) {
		if o.State != ledger.Success || o.Batch == "" || o.Attempts != 1 {
			t.Fatalf("%s: %+v", k, o.Transfer)
		}
	}
}

// TestRunIDAfterRedisLost: a transfer enqueued again after Redis lost
// everything (a restart without AOF) has the same transfer ID and
// generation, but its tasks are named apart from the lost run's, which a
// worker may still be finishing: asynq would otherwise take that finish
// for the new task's, drop its message, and the object would never end.
func TestRunIDAfterRedisLost(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "big", 3*mib, false)
	c := fleettest.NewClient(t, f.Config())
	rdb := f.Redis.Client(t)
	ctx := context.Background()
	taskIDs := func() []string {
		t.Helper()
		insp := asynq.NewInspectorFromRedisClient(rdb)
		queues, err := insp.Queues()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, q := range queues {
			infos, err := insp.ListPendingTasks(q)
			if err != nil {
				t.Fatal(err)
			}
			for _, ti := range infos {
				ids = append(ids, ti.ID)
			}
		}
		if len(ids) != 3 {
			t.Fatalf("%d pending tasks, want 3 chunks: %v", len(ids), ids)
		}
		return ids
	}
	req := fleettest.Request("s3://bkt/big", t.TempDir()+"/big")
	if _, err := c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	lost := taskIDs()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // another millisecond: another record
	// The same command again: another enqueue process.
	if _, err := fleettest.NewClient(t, f.Config()).Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	again := taskIDs()
	for _, a := range again {
		for _, l := range lost {
			if a == l {
				t.Fatalf("task %s of the lost run is named again after Redis lost it", a)
			}
		}
	}
}
