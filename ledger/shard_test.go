package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestShardedJobs runs the ledger in 3 shards on a real 3-node Redis
// Cluster: 30 transfers spread over the shards, two jobs sharing 10 of
// them (created by one job, attached by the other), pending batches of
// one shard each made into records, chunks landed, objects succeeded,
// failed and cancelled. Every script stays in one slot (a CROSSSLOT would
// fail it), each job's counters, added up over the shards, are exact, its
// members are all listed, and each node holds one shard's keys.
func TestShardedJobs(t *testing.T) {
	t.Parallel()
	rc := testenv.StartRedisCluster(t, 3)
	rdb := rc.Client(t)
	l := ledger.New(rdb, time.Hour, ledger.Shards(3))
	ctx := context.Background()
	if err := l.AgreeShards(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, j := range []string{"j1", "j2"} {
		if err := l.CreateJob(ctx, j, "s3://b/", "/d/", now); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(key string, size int64) ledger.Transfer {
		x := ledger.Transfer{Bucket: "b", Key: key, ETag: `"e"`, Size: size, ChunkSize: size, Chunks: 1, Dest: "/d/" + key}
		x.ID = l.IDFor(x)
		return x
	}
	var xs []ledger.Transfer
	shardsSeen := map[int]int{}
	for i := range 30 {
		x := mk(fmt.Sprintf("k%02d", i), int64(10+i))
		xs = append(xs, x)
		shardsSeen[l.ShardOf(x.ID)]++
		if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j1", Mode: ledger.ModeCreate, New: x}, now); err != nil {
			t.Fatalf("attach %s: %v", x.Key, err)
		}
	}
	if len(shardsSeen) != 3 {
		t.Fatalf("30 transfers in shards %v, want all 3", shardsSeen)
	}
	for _, x := range xs[:10] { // j2 follows 10 of them
		if st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeAttach, New: x, Expect: ledger.Transfer{State: ledger.Queued, Gen: 1}}, now); err != nil || st != ledger.Queued {
			t.Fatalf("attach %s to j2: %s %v", x.Key, st, err)
		}
	}
	// j2's own small objects wait in pending batches, one per shard.
	pend := map[int][]ledger.Transfer{}
	for i := range 12 {
		x := mk(fmt.Sprintf("small/%02d", i), 5)
		x.Gen = 1
		pend[l.ShardOf(x.ID)] = append(pend[l.ShardOf(x.ID)], x)
	}
	for shard, objs := range pend {
		id := fmt.Sprintf("batch:%d", shard)
		for i := range objs {
			objs[i].Batch = id
		}
		if err := l.Pend(ctx, "j2", shard, id, "chunks", len(objs), 5*int64(len(objs))); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range []string{"j1", "j2"} {
		if err := l.SetListed(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
	}
	if j := job(t, l, "j2"); j.Objects != 22 || j.Pending != 12 || j.BytesTotal != 10*(10+19)/2+60 {
		t.Fatalf("j2 pended: %+v", j)
	}
	for shard, objs := range pend {
		if ok, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j2", ID: fmt.Sprintf("batch:%d", shard), Objects: objs}, now); err != nil || !ok {
			t.Fatalf("materialize shard %d: %v %v", shard, ok, err)
		}
	}

	// Run them: every chunk lands; then 20 of j1's succeed, 5 fail, 5 are
	// cancelled; j2's small objects succeed as a batch (over 3 shards).
	for i, x := range xs {
		if st, err := l.StartChunk(ctx, x.ID, 1, 0, now); err != nil || st.State != ledger.Running {
			t.Fatalf("start %s: %+v %v", x.Key, st, err)
		}
		partReady(t, l, x.ID, 1)
		if n, total, err := l.ChunkDone(ctx, x.ID, 1, ledger.Landing{Index: 0, Part: "p", Length: x.Size}); err != nil || n != 1 || total != 1 {
			t.Fatalf("chunk of %s: %d/%d %v", x.Key, n, total, err)
		}
		var ok bool
		var err error
		switch {
		case i < 20:
			ok, err = l.Succeed(ctx, x.ID, 1, ledger.Result{Check: "crc64nvme"}, now)
		case i < 25:
			ok, err = l.Fail(ctx, x.ID, 1, "boom", false, now)
		default:
			ok, err = l.Cancel(ctx, x.ID, 1, now)
		}
		if err != nil || !ok {
			t.Fatalf("end %s: %v %v", x.Key, ok, err)
		}
	}
	var items []ledger.BatchItem
	var results []ledger.BatchResult
	for _, objs := range pend {
		for _, x := range objs {
			items = append(items, ledger.BatchItem{ID: x.ID, Gen: 1})
			results = append(results, ledger.BatchResult{BatchItem: ledger.BatchItem{ID: x.ID, Gen: 1}, Size: 5, Result: ledger.Result{Check: "crc64nvme"}})
		}
	}
	// One batch task of every shard's objects: StartBatch and
	// SucceedBatch run a script per shard.
	states, err := l.StartBatch(ctx, "", items, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if st != ledger.Running && st != "elsewhere" {
			t.Fatalf("start batch: %s is %s", items[i].ID, st)
		}
	}
	changed, err := l.SucceedBatch(ctx, results, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changed {
		if !c {
			t.Fatalf("succeed batch: %s unchanged", results[i].ID)
		}
	}

	j1 := job(t, l, "j1")
	if j1.Objects != 30 || j1.Succeeded != 20 || j1.Failed != 5 || j1.Cancelled != 5 || !j1.Done() ||
		j1.BytesTotal != 30*10+29*30/2 || j1.Checks["crc64nvme"] != 20 || len(j1.Seqs) != 3 {
		t.Errorf("j1: %+v", j1)
	}
	j2 := job(t, l, "j2")
	if j2.Objects != 22 || j2.Succeeded != 22 || j2.Pending != 0 || !j2.Done() || j2.BytesDone != j2.BytesTotal {
		t.Errorf("j2: %+v", j2)
	}
	for id, want := range map[string]int{"j1": 30, "j2": 22} {
		n := 0
		if err := l.JobObjects(ctx, id, func(ledger.JobObject) error { n++; return nil }); err != nil || n != want {
			t.Errorf("job %s lists %d objects (%v), want %d", id, n, err, want)
		}
	}
	// The job's records expire with their last object, in every shard.
	for addr, tags := range rc.KeyTags(t) {
		n := 0
		for tag, k := range tags {
			if strings.HasPrefix(tag, "s3fleet") {
				n += k
			}
		}
		if n == 0 {
			t.Errorf("node %s holds none of the ledger's keys: %v", addr, tags)
		}
	}
	for _, tag := range l.HashTags() {
		k := tag + ":job:j1"
		if ttl, err := rdb.TTL(ctx, k).Result(); err != nil || ttl <= 0 {
			t.Errorf("%s: TTL %v %v, want the retention (the job is done)", k, ttl, err)
		}
	}
}

// TestAgreeShards: the first process records its redis_shards; one with
// another count is refused, naming both, and changes nothing.
func TestAgreeShards(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	if err := ledger.New(rdb, time.Hour, ledger.Shards(3)).AgreeShards(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ledger.New(rdb, time.Hour, ledger.Shards(3)).AgreeShards(ctx); err != nil {
		t.Fatalf("the same count again: %v", err)
	}
	err := ledger.New(rdb, time.Hour).AgreeShards(ctx)
	if !errors.Is(err, ledger.ErrShards) || !strings.Contains(err.Error(), "this process has 1, the fleet's Redis 3") {
		t.Fatalf("another count: %v", err)
	}
	if err := ledger.New(rdb, time.Hour, ledger.Shards(3)).AgreeShards(ctx); err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
}

// inShard is a transfer of l in the given shard (the key is tag/i for the
// first i that puts it there).
func inShard(l *ledger.Ledger, shard int, tag string) ledger.Transfer {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s/%d", tag, i)
		x := ledger.Transfer{Bucket: "b", Key: k, ETag: `"e"`, Size: 10, ChunkSize: 10, Chunks: 1, Dest: "/d/" + k}
		x.ID = l.IDFor(x)
		if l.ShardOf(x.ID) == shard {
			return x
		}
	}
}

// TestShardedRetention: a job whose last event in a shard was an object
// found present (no end follows there) and whose last object ends in
// another shard has every one of its keys expire with the retention, as
// with one shard (found by a review: the shard's keys stayed forever).
func TestShardedRetention(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		l, rdb := ledgerOf(t, n)
		ctx := context.Background()
		now := time.Now()
		if err := l.CreateJob(ctx, "j", "s3://b/", "/d/", now); err != nil {
			t.Fatal(err)
		}
		run, there := inShard(l, 1%n, "run"), inShard(l, 2%n, "there")
		if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: run}, now); err != nil {
			t.Fatal(err)
		}
		if st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModePresent, New: there}, now); err != nil || st != ledger.Success {
			t.Fatal(st, err)
		}
		if err := l.SetListed(ctx, "j", nil); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Fail(ctx, run.ID, 1, "boom", false, now); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if j := job(t, l, "j"); !j.Done() {
			t.Fatalf("%d shards: job %+v not done", n, j)
		}
		for _, tag := range l.HashTags() {
			for _, k := range []string{tag + ":job:j", tag + ":job:j:xfers", tag + ":job:j:skipped"} {
				if ttl, err := rdb.TTL(ctx, k).Result(); err != nil || ttl == -1 {
					t.Errorf("%d shards: %s has no expiry once the job is done (%v)", n, k, err)
				}
			}
		}
	}
}

// TestShardedCancelMark: a job cancelled before its listing first pends a
// batch in some shard still makes that batch's records cancelled (found by
// a review: the mark was only in shards the job had reached).
func TestShardedCancelMark(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		l, rdb := ledgerOf(t, n)
		ctx := context.Background()
		now := time.Now()
		if err := l.CreateJob(ctx, "j", "s3://b/", "/d/", now); err != nil {
			t.Fatal(err)
		}
		if err := l.MarkCancelled(ctx, "j", true, now); err != nil {
			t.Fatal(err)
		}
		x := inShard(l, 2%n, "late")
		x.Gen, x.Batch = 1, "batch:late"
		if err := l.Pend(ctx, "j", l.ShardOf(x.ID), "batch:late", "q", 1, 10); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j", ID: "batch:late", Objects: []ledger.Transfer{x}}, now); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if got, _ := l.GetTransfer(ctx, x.ID); got.State != ledger.Cancelled {
			t.Errorf("%d shards: a pending batch of a cancelled job made a %s record", n, got.State)
		}
		// A shard the job never reached has the mark, expiring with the
		// retention rather than never.
		if n > 1 {
			k := l.HashTags()[1] + ":job:j"
			if ttl, _ := rdb.TTL(ctx, k).Result(); ttl == -1 {
				t.Errorf("%s: the cancel mark never expires", k)
			}
		}
	}
}
