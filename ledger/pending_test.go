package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/ledger"
)

// pendJob pends a batch of n small objects in a new job and returns them.
func pendJob(t *testing.T, l *ledger.Ledger, job, batch string, n int) []ledger.Transfer {
	t.Helper()
	ctx := context.Background()
	if err := l.CreateJob(ctx, job, "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	var xs []ledger.Transfer
	var bytes int64
	for i, c := 0, 0; i < n; c++ {
		x := transfer(fmt.Sprintf("%s/%s/k%d", job, batch, c), 100+int64(i), 1)
		if i > 0 && l.ShardOf(x.ID) != l.ShardOf(xs[0].ID) {
			continue // a batch's objects are in one shard, as the enqueuer makes them
		}
		i++
		x.Gen, x.Batch = 1, batch
		xs = append(xs, x)
		bytes += x.Size
	}
	for range 2 { // counted once, however often
		if err := l.Pend(ctx, job, l.ShardOf(xs[0].ID), batch, "q", n, bytes); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetListed(ctx, job, nil); err != nil {
		t.Fatal(err)
	}
	return xs
}

// TestPendThenMaterialize: a pending batch's objects count in the job with
// no records; its first start makes them, queued, and the job counts each
// once; a second start changes nothing.
func TestPendThenMaterialize(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	xs := pendJob(t, l, "j1", "batch:1", 3)
	j := job(t, l, "j1")
	if j.Objects != 3 || j.Pending != 3 || j.BytesTotal != 303 || j.Done() {
		t.Fatalf("pended job %+v", j)
	}
	if _, err := l.GetTransfer(ctx, xs[0].ID); err == nil {
		t.Fatal("a pending object has a record")
	}
	for i, want := range []bool{true, false} {
		ok, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j1", ID: "batch:1", Objects: xs}, time.Now())
		if err != nil || ok != want {
			t.Fatalf("materialize %d: %v %v, want %v", i, ok, err, want)
		}
	}
	j = job(t, l, "j1")
	if j.Objects != 3 || j.Pending != 0 || j.BytesTotal != 303 {
		t.Fatalf("materialized job %+v", j)
	}
	for _, x := range xs {
		got, err := l.GetTransfer(ctx, x.ID)
		if err != nil || got.State != ledger.Queued || got.Gen != 1 || got.Batch != "batch:1" || got.Size != x.Size || got.Dest != x.Dest {
			t.Fatalf("record %+v %v", got, err)
		}
	}
	states, err := l.StartBatch(ctx, "batch:1", []ledger.BatchItem{{ID: xs[0].ID, Gen: 1}}, time.Now())
	if err != nil || states[0] != ledger.Running {
		t.Fatalf("start: %v %v", states, err)
	}
	if _, err := l.SucceedBatch(ctx, []ledger.BatchResult{{BatchItem: ledger.BatchItem{ID: xs[0].ID, Gen: 1}, Size: xs[0].Size}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j = job(t, l, "j1"); j.Succeeded != 1 || j.BytesDone != xs[0].Size {
		t.Fatalf("job after one success %+v", j)
	}
}

// TestMaterializeJoinsExisting: an object another job recorded while the
// batch waited is joined, not created again, and counted once.
func TestMaterializeJoinsExisting(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	xs := pendJob(t, l, "j1", "batch:1", 2)
	create(t, l, "j2", xs[1])
	if _, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j1", ID: "batch:1", Objects: xs}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j := job(t, l, "j1"); j.Objects != 2 || j.Pending != 0 {
		t.Fatalf("job %+v", j)
	}
	if _, err := l.Cancel(ctx, xs[1].ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"j1", "j2"} {
		if j := job(t, l, id); j.Cancelled != 1 {
			t.Fatalf("job %s does not count the shared transfer's cancel: %+v", id, j)
		}
	}
}

// TestCancelledPending: a batch materialized in a job marked cancelled
// makes cancelled records; a forgotten one counts its objects cancelled
// with no record; either way the job ends.
func TestCancelledPending(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	xs := pendJob(t, l, "j1", "batch:1", 2)
	ys := pendJob(t, l, "j1", "batch:2", 3)
	if err := l.MarkCancelled(ctx, "j1", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j1", ID: "batch:1", Objects: xs}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		if got, err := l.GetTransfer(ctx, x.ID); err != nil || got.State != ledger.Cancelled {
			t.Fatalf("record %+v %v", got, err)
		}
	}
	if ok, err := l.ForgetPending(ctx, "j1", l.ShardOf(ys[0].ID), "batch:2"); err != nil || !ok {
		t.Fatalf("forget: %v %v", ok, err)
	}
	if _, err := l.GetTransfer(ctx, ys[0].ID); err == nil {
		t.Fatal("a forgotten object has a record")
	}
	if j := job(t, l, "j1"); j.Objects != 5 || j.Cancelled != 5 || j.Pending != 0 || !j.Done() {
		t.Fatalf("job %+v", j)
	}
}

// TestMaterializeJoinsMixed: a batch whose objects are new, queued in
// another job, and finished in another job counts each in its job as its
// record stands (the job's counters move once, at the end of the script).
func TestMaterializeJoinsMixed(t *testing.T) {
	l, rdb := ledgerOf(t, shards)
	ctx := context.Background()
	xs := pendJob(t, l, "j1", "batch:1", 3)
	shard := l.ShardOf(xs[0].ID)
	create(t, l, "j2", xs[1])
	create(t, l, "j2", xs[2])
	item := ledger.BatchItem{ID: xs[2].ID, Gen: 1}
	if st, err := l.StartBatch(ctx, "", []ledger.BatchItem{item}, time.Now()); err != nil || st[0] != ledger.Running {
		t.Fatalf("start: %v %v", st, err)
	}
	if ok, err := l.SucceedBatch(ctx, []ledger.BatchResult{{BatchItem: item, Size: xs[2].Size}}, time.Now()); err != nil || !ok[0] {
		t.Fatalf("succeed: %v %v", ok, err)
	}
	seq := job(t, l, "j1").Seqs[shard]
	if _, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j1", ID: "batch:1", Objects: xs}, time.Now()); err != nil {
		t.Fatal(err)
	}
	j := job(t, l, "j1")
	// Each object's attach has the job's next seq, in the batch's order
	// (Supersede tells a run's transfers from earlier runs' by them).
	if j.Seqs[shard] != seq+3 {
		t.Fatalf("the job's seq went from %d to %d for 3 objects", seq, j.Seqs[shard])
	}
	keys, err := rdb.Keys(ctx, "*job:j1:xfers").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range xs {
		var got float64
		for _, k := range keys {
			if s, err := rdb.ZScore(ctx, k, x.ID).Result(); err == nil {
				got = s
			}
		}
		if int64(got) != seq+1+int64(i) {
			t.Fatalf("object %d's seq in the job is %v, want %d", i, got, seq+1+int64(i))
		}
	}
	total := xs[0].Size + xs[1].Size + xs[2].Size
	if j.Objects != 3 || j.Pending != 0 || j.BytesTotal != total || j.Succeeded != 1 || j.BytesDone != xs[2].Size {
		t.Fatalf("job %+v: want 3 objects of %d bytes, 1 succeeded with %d bytes", j, total, xs[2].Size)
	}
	if j2 := job(t, l, "j2"); j2.Objects != 2 || j2.Succeeded != 1 || j2.BytesDone != xs[2].Size {
		t.Fatalf("j2, which j1 joined, changed: %+v", j2)
	}
	got, err := l.GetTransfer(ctx, xs[0].ID)
	if err != nil || got.State != ledger.Queued || got.Gen != 1 || got.Size != xs[0].Size {
		t.Fatalf("the new record %+v %v", got, err)
	}
	// The new record's job is in it: its success counts in j1.
	item = ledger.BatchItem{ID: xs[0].ID, Gen: 1}
	if _, err := l.StartBatch(ctx, "batch:1", []ledger.BatchItem{item}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SucceedBatch(ctx, []ledger.BatchResult{{BatchItem: item, Size: xs[0].Size}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j = job(t, l, "j1"); j.Succeeded != 2 || j.BytesDone != xs[0].Size+xs[2].Size {
		t.Fatalf("job after the new record's success %+v", j)
	}
}

// TestBatchCommandsPerObject: the Redis commands a batch of small objects
// costs, an object, from its records' making to their success (each is
// Redis CPU for every object the fleet moves): at most 5 to make a record,
// 2 to start it and 6 to record its success. Before the ledger moved a
// job's counters once a batch these were 14, 3 and 7.
func TestBatchCommandsPerObject(t *testing.T) {
	l, rdb := ledgerOf(t, shards)
	ctx := context.Background()
	const n = 100
	xs := pendJob(t, l, "j1", "batch:1", n)
	items := make([]ledger.BatchItem, n)
	results := make([]ledger.BatchResult, n)
	var total int64
	for i, x := range xs {
		items[i] = ledger.BatchItem{ID: x.ID, Gen: 1}
		results[i] = ledger.BatchResult{BatchItem: items[i], Size: x.Size}
		total += x.Size
	}
	for _, step := range []struct {
		name    string
		per     int64
		perCall int64 // commands once a batch
		run     func() error
	}{
		{"make the records", 5, 12, func() error {
			_, err := l.Materialize(ctx, ledger.PendingBatch{Job: "j1", ID: "batch:1", Objects: xs}, time.Now())
			return err
		}},
		{"start them", 2, 0, func() error {
			_, err := l.StartBatch(ctx, "batch:1", items, time.Now())
			return err
		}},
		{"record their success", 6, 20, func() error {
			_, err := l.SucceedBatch(ctx, results, time.Now())
			return err
		}},
	} {
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := dataCommands(t, rdb)
		t.Logf("%s: %d commands for %d objects", step.name, got, n)
		if got > step.per*n+step.perCall {
			t.Errorf("%s: %d commands for %d objects, want at most %d an object and %d a batch", step.name, got, n, step.per, step.perCall)
		}
	}
	if j := job(t, l, "j1"); j.Objects != n || j.Pending != 0 || j.Succeeded != n || j.BytesDone != total || !j.Done() {
		t.Fatalf("job %+v", j)
	}
}

// dataCommands is how many commands Redis ran since its stats were reset,
// those of scripts included, the scripts' calls and the test's own not.
func dataCommands(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(name, "eval"), strings.HasPrefix(name, "script"), name == "info", strings.HasPrefix(name, "config"), name == "hello", name == "client|setinfo":
			continue
		}
		var calls int64
		if _, err := fmt.Sscanf(rest, "calls=%d", &calls); err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		sum += calls
	}
	return sum
}
