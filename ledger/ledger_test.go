package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// newLedger starts a redis-server for the test; each test gets its own.
// shards is the number of shards the tests' ledgers have:
// S3FLEET_REDIS_SHARDS, as the fleet reads it (make test runs the package
// with 1 and with 3).
var shards = func() int {
	n, _ := strconv.Atoi(os.Getenv("S3FLEET_REDIS_SHARDS"))
	return max(n, 1)
}()

func newLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, _ := ledgerOf(t, shards)
	return l
}

// ledgerOf is a ledger of n shards on a Redis of its own, and that Redis.
func ledgerOf(t *testing.T, n int) (*ledger.Ledger, redis.UniversalClient) {
	t.Helper()
	rdb := testenv.StartRedis(t).Client(t)
	return ledger.New(rdb, time.Hour, ledger.Shards(n)), rdb
}

// idFor is a transfer's ID in the tests' ledgers.
func idFor(x ledger.Transfer) string { return ledger.New(nil, 0, ledger.Shards(shards)).IDFor(x) }

func transfer(key string, size, chunks int64) ledger.Transfer {
	t := ledger.Transfer{Bucket: "b", Key: key, ETag: `"e"`, Size: size, ChunkSize: max(size/max(chunks, 1), 1), Chunks: chunks, Dest: "/d/" + key}
	t.ID = idFor(t)
	return t
}

// partReady records the part file "p" as the transfer's, as its first
// chunk does.
func partReady(t *testing.T, l *ledger.Ledger, id string, gen int64) {
	t.Helper()
	if p, err := l.PartReady(context.Background(), id, gen, "p", "host"); err != nil || p.Token != "p" {
		t.Fatalf("part ready: %+v %v", p, err)
	}
}

func create(t *testing.T, l *ledger.Ledger, job string, x ledger.Transfer) int64 {
	t.Helper()
	ctx := context.Background()
	if err := l.CreateJob(ctx, job, "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	st, gen, err := l.Attach(ctx, ledger.AttachRequest{Job: job, Mode: ledger.ModeCreate, New: x}, time.Now())
	if err != nil || st != ledger.Queued || gen != 1 {
		t.Fatalf("create: %s %d %v", st, gen, err)
	}
	if err := l.SetListed(ctx, job, nil); err != nil {
		t.Fatal(err)
	}
	return gen
}

func job(t *testing.T, l *ledger.Ledger, id string) ledger.Job {
	t.Helper()
	j, err := l.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestTransferIDIsDeterministic(t *testing.T) {
	t.Parallel()
	a := ledger.TransferID("", "b", "k", "e", "", 10, "/d/k")
	if a != ledger.TransferID("", "b", "k", "e", "", 10, "/d/k") {
		t.Fatal("same inputs, different IDs")
	}
	for _, other := range []string{
		ledger.TransferID("", "b", "k", "e2", "", 10, "/d/k"),
		ledger.TransferID("", "b", "k", "e", "v1", 10, "/d/k"),
		ledger.TransferID("", "b", "k", "e", "", 11, "/d/k"),
		ledger.TransferID("", "b", "k", "e", "", 10, "/d/k2"),
		ledger.TransferID("", "b", "ke", "", "", 10, "/d/k"), // field boundaries matter
		ledger.TransferID("r2", "b", "k", "e", "", 10, "/d/k"),
	} {
		if other == a {
			t.Fatalf("different inputs share the ID %s", a)
		}
	}
}

// TestIdentity: a record's ID is its identity; one whose source,
// destination, version or write options were rewritten no longer is.
func TestIdentity(t *testing.T) {
	t.Parallel()
	x := ledger.Transfer{Bucket: "b", Key: "k", ETag: "e", Size: 10, Dest: "/d/k"}
	x.ID = x.Identity()
	if x.ID != ledger.TransferID("", "b", "k", "e", "", 10, "/d/k") || x.CheckIdentity() != nil {
		t.Fatalf("identity %s of %+v", x.ID, x)
	}
	up := ledger.Transfer{SourcePath: "/src/f", SourcePin: "pin", Size: 3, Dest: "s3://b/f", WriteOpts: "w", SSECKeyMD5: "md5"}
	up.ID = up.Identity()
	if up.ID != ledger.TransferID("file:", "", "/src/f", "pin", "", 3, "s3://b/f\x00sse-c:md5\x00write:w") {
		t.Fatalf("upload identity %s", up.ID)
	}
	for name, rewrite := range map[string]func(*ledger.Transfer){
		"dest":    func(r *ledger.Transfer) { r.Dest = "/etc/passwd" },
		"key":     func(r *ledger.Transfer) { r.Key = "other" },
		"version": func(r *ledger.Transfer) { r.VersionID = "v0" },
		"write":   func(r *ledger.Transfer) { r.WriteOpts = "x" },
		"delete":  func(r *ledger.Transfer) { r.Delete = true },
	} {
		r := x
		rewrite(&r)
		if err := r.CheckIdentity(); !errors.Is(err, ledger.ErrForged) {
			t.Errorf("%s rewritten: %v, want ErrForged", name, err)
		}
	}
}

// TestChunkLifecycle walks a transfer from queued to success and checks
// the job's counters at each step, and that recording a chunk twice
// counts it once.
func TestChunkLifecycle(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 30, 3)
	gen := create(t, l, "j", x)
	if j := job(t, l, "j"); j.Objects != 1 || j.BytesTotal != 30 || j.Done() {
		t.Fatalf("after create: %+v", j)
	}
	st, err := l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	if err != nil || st.State != ledger.Running || st.PartReady {
		t.Fatalf("start: %+v %v", st, err)
	}
	if s, _ := l.StartChunk(ctx, x.ID, gen+1, 0, time.Now()); s.State != ledger.ChunkStale {
		t.Fatalf("a later generation's chunk: %+v", s)
	}
	if s, _ := l.StartChunk(ctx, "nope", 1, 0, time.Now()); s.State != ledger.ChunkGone {
		t.Fatalf("unknown transfer: %+v", s)
	}
	if p, _ := l.PartReady(ctx, x.ID, gen, "tok-a", "host-a"); p.State != ledger.Running || p.Token != "tok-a" || p.Host != "host-a" {
		t.Fatalf("part ready: %+v", p)
	}
	// A second creator loses: every chunk writes the first one's file.
	if p, _ := l.PartReady(ctx, x.ID, gen, "tok-b", "host-b"); p.State != ledger.Running || p.Token != "tok-a" || p.Host != "host-a" {
		t.Fatalf("second part ready: %+v", p)
	}
	if st, _ := l.StartChunk(ctx, x.ID, gen, 0, time.Now()); !st.PartReady || st.PartToken != "tok-a" || st.PartHost != "host-a" {
		t.Fatalf("start after part ready: %+v", st)
	}
	// A chunk written to another part file is not recorded.
	if _, _, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: 0, Part: "tok-b", CRC: 1, Length: 10}); !errors.Is(err, ledger.ErrPartMismatch) {
		t.Fatalf("chunk of another part file: %v", err)
	}
	for i, want := range []int64{1, 1, 2, 3} { // chunk 0 twice
		idx := []int64{0, 0, 1, 2}[i]
		landed, total, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: idx, Part: "tok-a", CRC: uint64(idx + 1), Length: 10, PartETag: fmt.Sprintf(`"etag-%d"`, idx)})
		if err != nil || landed != want || total != 3 {
			t.Fatalf("chunk %d: %d/%d %v", idx, landed, total, err)
		}
	}
	if s, _ := l.StartChunk(ctx, x.ID, gen, 1, time.Now()); s.State != ledger.ChunkLanded {
		t.Fatalf("a landed chunk starting again: %+v", s)
	}
	if j := job(t, l, "j"); j.BytesDone != 30 {
		t.Fatalf("bytes done %d, want 30", j.BytesDone)
	}
	crcs, err := l.Chunks(ctx, x.ID)
	if err != nil || len(crcs) != 3 || crcs[2].CRC != 3 || crcs[2].PartETag != `"etag-2"` {
		t.Fatalf("crcs %v %v", crcs, err)
	}
	ok, err := l.Succeed(ctx, x.ID, gen, ledger.Result{Computed: "AAAAAA==", Check: "crc32c"}, time.Now())
	if err != nil || !ok {
		t.Fatalf("succeed: %v %v", ok, err)
	}
	if again, _ := l.Succeed(ctx, x.ID, gen, ledger.Result{}, time.Now()); again {
		t.Fatal("a second Succeed changed the record")
	}
	if failed, _ := l.Fail(ctx, x.ID, gen, "late", false, time.Now()); failed {
		t.Fatal("Fail after success changed the record")
	}
	j := job(t, l, "j")
	if !j.Done() || j.Succeeded != 1 || j.Failed != 0 || j.BytesDone != 30 {
		t.Fatalf("after success: %+v", j)
	}
	got, _ := l.GetTransfer(ctx, x.ID)
	if got.State != ledger.Success || got.Computed != "AAAAAA==" || got.Attempts != 2 { // two chunk starts above
		t.Fatalf("record %+v", got)
	}
	if crcs, _ := l.Chunks(ctx, x.ID); len(crcs) != 0 {
		t.Fatal("chunk records kept after success")
	}
}

// TestConcurrentChunks: many goroutines record the same chunks at once;
// exactly one sees the set complete first time round, and bytes count once.
func TestConcurrentChunks(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 64*10, 64)
	gen := create(t, l, "j", x)
	partReady(t, l, x.ID, gen)
	if _, err := l.StartChunk(ctx, x.ID, gen, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	var complete atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range int64(64) {
				landed, total, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: (i + int64(w)*8) % 64, Part: "p", CRC: 1, Length: 10})
				if err != nil {
					t.Error(err)
					return
				}
				if landed == total {
					complete.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if j := job(t, l, "j"); j.BytesDone != 640 {
		t.Fatalf("bytes done %d, want 640", j.BytesDone)
	}
	if complete.Load() == 0 {
		t.Fatal("nobody saw the set complete")
	}
}

// TestAttachModes: a second job follows an object in flight and shares its
// progress; a failed object restarted keeps its chunks; counters follow.
func TestAttachModes(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 20, 2)
	gen := create(t, l, "j1", x)
	partReady(t, l, x.ID, gen)
	_, _ = l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	_, _, _ = l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: 0, Part: "p", CRC: 7, Length: 10})

	if err := l.CreateJob(ctx, "j2", "s3://b/k", "/d/k", time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = l.SetListed(ctx, "j2", nil)
	cur, _ := l.GetTransfer(ctx, x.ID)
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeAttach, Expect: cur, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j := job(t, l, "j2"); j.Objects != 1 || j.BytesDone != 10 {
		t.Fatalf("attached job %+v, want the 10 bytes already landed", j)
	}
	// A stale expectation is refused.
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeCreate, New: x}, time.Now()); err == nil {
		t.Fatal("create over an existing record succeeded")
	}

	if ok, _ := l.Fail(ctx, x.ID, gen, "boom", false, time.Now()); !ok {
		t.Fatal("fail")
	}
	for _, id := range []string{"j1", "j2"} {
		if j := job(t, l, id); j.Failed != 1 || !j.Done() {
			t.Fatalf("job %s after failure: %+v", id, j)
		}
	}
	cur, _ = l.GetTransfer(ctx, x.ID)
	st, gen2, err := l.Attach(ctx, ledger.AttachRequest{Job: "j1", Mode: ledger.ModeRestart, Expect: cur, New: x, KeepData: true}, time.Now())
	if err != nil || st != ledger.Queued || gen2 != gen+1 {
		t.Fatalf("restart: %s %d %v", st, gen2, err)
	}
	missing, _ := l.MissingChunks(ctx, ledger.Transfer{ID: x.ID, Chunks: 2})
	if len(missing) != 1 || missing[0] != 1 {
		t.Fatalf("missing after restart %v, want [1]", missing)
	}
	for _, id := range []string{"j1", "j2"} {
		if j := job(t, l, id); j.Failed != 0 || j.Objects != 1 || j.BytesDone != 10 || j.Done() {
			t.Fatalf("job %s after restart: %+v", id, j)
		}
	}
	// A task of the old generation has nothing to do.
	if s, _ := l.StartChunk(ctx, x.ID, gen, 1, time.Now()); s.State != ledger.ChunkStale {
		t.Fatalf("old generation: %+v", s)
	}
}

// TestSkipCountsOnce: a finished object added to a new job counts as
// skipped once, however often that job is resumed.
func TestSkipCountsOnce(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 5, 1)
	gen := create(t, l, "j1", x)
	partReady(t, l, x.ID, gen)
	_, _ = l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	_, _, _ = l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: 0, Part: "p", CRC: 1, Length: 5})
	_, _ = l.Succeed(ctx, x.ID, gen, ledger.Result{}, time.Now())
	if err := l.CreateJob(ctx, "j2", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = l.SetListed(ctx, "j2", nil)
	for range 2 {
		cur, _ := l.GetTransfer(ctx, x.ID)
		if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeSkip, Expect: cur, New: x}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	j := job(t, l, "j2")
	if j.Objects != 1 || j.Skipped != 1 || j.BytesSkip != 5 || !j.Done() {
		t.Fatalf("job %+v", j)
	}
	var states []string
	_ = l.JobObjects(ctx, "j2", func(o ledger.JobObject) error {
		states = append(states, o.JobState)
		return nil
	})
	if fmt.Sprint(states) != "[skipped]" {
		t.Fatalf("object states %v", states)
	}
}

// TestFailedOnCreate: an object refused at enqueue counts as failed.
func TestFailedOnCreate(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	if err := l.CreateJob(ctx, "j", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	x := transfer("../x", 5, 1)
	st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: x, Cause: "unsafe key"}, time.Now())
	if err != nil || st != ledger.Failed {
		t.Fatalf("%s %v", st, err)
	}
	if err := l.SetListed(ctx, "j", nil); err != nil {
		t.Fatal(err)
	}
	if j := job(t, l, "j"); j.Failed != 1 || !j.Done() {
		t.Fatalf("job %+v", j)
	}
	if _, err := l.GetJob(ctx, "unknown"); err == nil {
		t.Fatal("unknown job found")
	}
}

// TestRetentionRunsFromTheEnd: records of work still queued do not expire,
// however long the backlog; once an object ends, its records and its job's
// expire after the retention.
func TestRetentionRunsFromTheEnd(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	l := ledger.New(rdb, time.Hour)
	ctx := context.Background()
	x := transfer("k", 10, 1)
	gen := create(t, l, "j", x)
	partReady(t, l, x.ID, gen)
	for _, k := range []string{"{s3fleet}:xfer:" + x.ID, "{s3fleet}:job:j"} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl != -1 {
			t.Fatalf("%s of a queued object has a TTL of %s", k, ttl)
		}
	}
	_, _ = l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	_, _, _ = l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: 0, Part: "p", CRC: 1, Length: 10})
	if ttl, _ := rdb.TTL(ctx, "{s3fleet}:xfer:"+x.ID).Result(); ttl != -1 {
		t.Fatalf("a running object's record has a TTL of %s", ttl)
	}
	_, _ = l.Succeed(ctx, x.ID, gen, ledger.Result{}, time.Now())
	for _, k := range []string{"{s3fleet}:xfer:" + x.ID, "{s3fleet}:job:j", "{s3fleet}:job:j:xfers"} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 59*time.Minute {
			t.Fatalf("%s after the end: TTL %s, want the retention", k, ttl)
		}
	}
}

// TestClaimPart: one holder at a time; only the holder releases; a later
// claim of the same generation learns when the earlier one was taken.
func TestClaimPart(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("claim", 10, 1)
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a, err := l.ClaimPart(ctx, x.ID, 1, "a", time.Minute)
	if err != nil || !a.Held || !a.Since.IsZero() {
		t.Fatalf("first claim: %+v %v", a, err)
	}
	if b, _ := l.ClaimPart(ctx, x.ID, 1, "b", time.Minute); b.Held {
		t.Fatal("a second holder")
	}
	if err := l.ReleasePart(ctx, x.ID, 1, "b"); err != nil {
		t.Fatal(err)
	}
	if b, _ := l.ClaimPart(ctx, x.ID, 1, "b", time.Minute); b.Held {
		t.Fatal("a non-holder released the claim")
	}
	if err := l.ReleasePart(ctx, x.ID, 1, "a"); err != nil {
		t.Fatal(err)
	}
	b, err := l.ClaimPart(ctx, x.ID, 1, "b", time.Minute)
	if err != nil || !b.Held || b.Since.IsZero() {
		t.Fatalf("claim after a release: %+v %v, want held, with the earlier claim's time", b, err)
	}
}

// TestSupersede: a failed transfer attached before a run is taken out of
// its job, with its counts, when a transfer attached in the run has its
// destination: also in a later run, if the run that added the new one was
// cut short. A failure whose destination got none stays, and so does one
// the run restarted (it is this run's own, whatever became of it).
func TestSupersede(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	if err := l.CreateJob(ctx, "j", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	attach := func(mode string, x ledger.Transfer, expect ledger.Transfer, cause string) {
		t.Helper()
		if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: mode, New: x, Expect: expect, Cause: cause}, time.Now()); err != nil {
			t.Fatalf("attach %s %s: %v", mode, x.Key, err)
		}
	}
	old, other, again := transfer("k", 5, 1), transfer("k2", 7, 1), transfer("k3", 3, 1)
	for _, x := range []ledger.Transfer{old, other, again} {
		attach(ledger.ModeCreate, x, ledger.Transfer{}, "source changed")
	}
	version2 := func(x ledger.Transfer) ledger.Transfer { // the same destination, another version
		x.ETag = `"v2"`
		x.ID = idFor(x)
		return x
	}

	// A run that adds k's new version but is cut before it supersedes.
	run2 := job(t, l, "j").Seqs
	attach(ledger.ModeCreate, version2(old), ledger.Transfer{}, "")
	// The next run: k's new version again, k3 restarted (it fails again),
	// and a new version of k3's destination too (two sources, one dest).
	run3 := job(t, l, "j").Seqs
	if sum(run3) <= sum(run2) {
		t.Fatalf("seq %d then %d", run2, run3)
	}
	attach(ledger.ModeAttach, version2(old), ledger.Transfer{State: ledger.Queued, Gen: 1}, "")
	attach(ledger.ModeRestart, again, ledger.Transfer{State: ledger.Failed, Gen: 1}, "")
	if _, err := l.Fail(ctx, again.ID, 2, "failed again", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	attach(ledger.ModeCreate, version2(again), ledger.Transfer{}, "")
	n, err := l.Supersede(ctx, "j", run3)
	if err != nil || n != 1 {
		t.Fatalf("Supersede: %d, %v; want 1 (k's old version)", n, err)
	}
	j := job(t, l, "j")
	if j.Objects != 4 || j.Failed != 2 || j.BytesTotal != 5+7+3+3 {
		t.Errorf("job after: %+v; want 4 objects (k v2, k2, k3, k3 v2), 2 failed (k2, k3)", j)
	}
	if n, err := l.Supersede(ctx, "j", run3); err != nil || n != 0 {
		t.Errorf("Supersede again: %d, %v; want nothing more", n, err)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestRestartSkippedEmpty: an empty object counted skipped and then run
// again changes no byte counter (Redis takes no HINCRBY by "-0").
func TestRestartSkippedEmpty(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	if err := l.CreateJob(ctx, "j", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	x := transfer("empty", 0, 0)
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModePresent, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeRestart, New: x, Expect: ledger.Transfer{State: ledger.Success, Gen: 1}}, time.Now()); err != nil {
		t.Fatalf("restart of an empty object counted skipped: %v", err)
	}
	if j := job(t, l, "j"); j.Skipped != 0 || j.Objects != 1 {
		t.Errorf("job %+v; want 1 object, none skipped", j)
	}
}

// TestOneDestinationOneOwner: a transfer created for a destination that
// another transfer, still in flight, is to land at fails at once, naming
// the other object (keys p//q and p/q both map to /d/p/q; two jobs write
// one file). Once the first has ended, a new one may claim it.
func TestOneDestinationOneOwner(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	first := transfer("p/q", 10, 1)
	gen := create(t, l, "j1", first)
	second := ledger.Transfer{Bucket: "b", Key: "p//q", ETag: `"f"`, Size: 7, Chunks: 1, ChunkSize: 7, Dest: first.Dest}
	second.ID = idFor(second)
	if err := l.CreateJob(ctx, "j2", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeCreate, New: second}, time.Now())
	if err != nil || st != ledger.Failed {
		t.Fatalf("second transfer to %s while the first is in flight: %s %v, want failed", first.Dest, st, err)
	}
	got, _ := l.GetTransfer(ctx, second.ID)
	if !strings.Contains(got.Error, "destination /d/p/q is also that of s3://b/p/q (transfer "+first.ID+"), still in flight") {
		t.Fatalf("cause %q", got.Error)
	}
	if j := job(t, l, "j2"); j.Failed != 1 {
		t.Fatalf("job j2: %+v", j)
	}
	// Restarted (resumed, re-run) while the first is still in flight, the
	// second fails again, naming the first: a restart claims too.
	cur, _ := l.GetTransfer(ctx, second.ID)
	if st, gen2, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeRestart, Expect: cur, New: second}, time.Now()); err != nil || st != ledger.Failed || gen2 != 2 {
		t.Fatalf("restart of the second while the first is in flight: %s gen %d %v, want failed", st, gen2, err)
	}
	if got, _ := l.GetTransfer(ctx, second.ID); !strings.Contains(got.Error, "still in flight") {
		t.Fatalf("restarted second: cause %q", got.Error)
	}
	if j := job(t, l, "j2"); j.Failed != 1 || j.Objects != 1 {
		t.Fatalf("job j2 after the restart: %+v, want 1 object, failed", j)
	}
	// The first ends; a third transfer to the destination may run.
	if ok, _ := l.Succeed(ctx, first.ID, gen, ledger.Result{}, time.Now()); !ok {
		t.Fatal("succeed")
	}
	third := ledger.Transfer{Bucket: "b", Key: "other", ETag: `"g"`, Size: 3, Chunks: 1, ChunkSize: 3, Dest: first.Dest, Overwrite: true}
	third.ID = idFor(third)
	if st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeCreate, New: third}, time.Now()); err != nil || st != ledger.Queued {
		t.Fatalf("a transfer to the destination after the first ended: %s %v", st, err)
	}
	// The third holds it now: restarting the first (its file changed) fails.
	cur, _ = l.GetTransfer(ctx, first.ID)
	if st, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j1", Mode: ledger.ModeRestart, Expect: cur, New: first}, time.Now()); err != nil || st != ledger.Failed {
		t.Fatalf("restart of the first while the third is in flight: %s %v, want failed", st, err)
	}
	if j := job(t, l, "j1"); j.Succeeded != 0 || j.Failed != 1 {
		t.Fatalf("job j1 after the restart: %+v", j)
	}
}

// TestChunkTimes: the median of the landed chunks' times, for stragglers;
// the times go when the transfer ends.
func TestChunkTimes(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 40, 4)
	gen := create(t, l, "j", x)
	partReady(t, l, x.ID, gen)
	for i, ms := range []int64{300, 100, 200} {
		_, _ = l.StartChunk(ctx, x.ID, gen, int64(i), time.Now())
		if _, _, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: int64(i), Part: "p", Length: 10, Took: time.Duration(ms) * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if landed, _ := l.ChunkProgress(ctx, x.ID, gen, 1, 5); !landed {
		t.Error("chunk 1 landed, ChunkProgress says no")
	}
	if landed, _ := l.ChunkProgress(ctx, x.ID, gen, 3, 5); landed {
		t.Error("chunk 3 did not land, ChunkProgress says yes")
	}
	if med, n, err := l.ChunkTimes(ctx, x.ID); err != nil || n != 3 || med != 200*time.Millisecond {
		t.Fatalf("ChunkTimes = %s, %d, %v; want 200ms of 3", med, n, err)
	}
	if ok, _ := l.Fail(ctx, x.ID, gen, "boom", false, time.Now()); !ok {
		t.Fatal("fail")
	}
	if _, n, _ := l.ChunkTimes(ctx, x.ID); n != 0 {
		t.Errorf("%d chunk times kept after the transfer ended", n)
	}
}

// TestChunkProgress: the bytes a running chunk reports streaming count in
// its transfer's and its jobs' Moving, a report replacing the chunk's last
// one (a run again does not add); they go when the chunk lands (its bytes
// then count done) and all of them when the transfer ends; a report of
// another generation, or once ended, changes nothing.
func TestChunkProgress(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	ctx := context.Background()
	x := transfer("k", 40, 4)
	gen := create(t, l, "j", x)
	if err := l.CreateJob(ctx, "j2", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j2", Mode: ledger.ModeAttach, New: x, Expect: ledger.Transfer{State: ledger.Queued, Gen: gen}}, time.Now()); err != nil {
		t.Fatal(err) // a second job follows it
	}
	partReady(t, l, x.ID, gen)
	_, _ = l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	report := func(chunk, n int64) {
		t.Helper()
		if landed, err := l.ChunkProgress(ctx, x.ID, gen, chunk, n); err != nil || landed {
			t.Fatalf("progress of chunk %d: %v %v", chunk, landed, err)
		}
	}
	moving := func(want int64) {
		t.Helper()
		got, _ := l.GetTransfer(ctx, x.ID)
		j, j2 := job(t, l, "j"), job(t, l, "j2")
		if got.Moving != want || j.Moving != want || j2.Moving != want {
			t.Fatalf("moving: transfer %d, jobs %d and %d; want %d", got.Moving, j.Moving, j2.Moving, want)
		}
	}
	report(0, 4)
	report(1, 3)
	report(0, 7) // the same chunk again: replaces 4
	moving(10)
	if _, _, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: 0, Part: "p", Length: 10}); err != nil {
		t.Fatal(err)
	}
	moving(3)
	if j := job(t, l, "j"); j.BytesDone != 10 {
		t.Fatalf("bytes done %d, want chunk 0's 10", j.BytesDone)
	}
	if _, err := l.ChunkProgress(ctx, x.ID, gen+1, 2, 9); err != nil {
		t.Fatal(err)
	}
	moving(3) // another generation's report counts nothing
	if ok, _ := l.Fail(ctx, x.ID, gen, "boom", false, time.Now()); !ok {
		t.Fatal("fail")
	}
	moving(0)
	report(1, 5) // a late report of an ended transfer
	moving(0)
}

// TestThroughput: the bytes chunks and batches land count in their jobs'
// buckets of 10 s, which expire with the job.
func TestThroughput(t *testing.T) {
	t.Parallel()
	l, rdb := ledgerOf(t, shards)
	ctx := context.Background()
	x, small := transfer("k", 40, 4), transfer("s", 7, 1)
	gen := create(t, l, "j", x)
	if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: small}, time.Now()); err != nil {
		t.Fatal(err)
	}
	partReady(t, l, x.ID, gen)
	for i := range int64(4) {
		_, _ = l.StartChunk(ctx, x.ID, gen, i, time.Now())
		if _, _, err := l.ChunkDone(ctx, x.ID, gen, ledger.Landing{Index: i, Part: "p", Length: 10}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.StartBatch(ctx, "", []ledger.BatchItem{{ID: small.ID, Gen: 1}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SucceedBatch(ctx, []ledger.BatchResult{{BatchItem: ledger.BatchItem{ID: small.ID, Gen: 1}, Size: 7}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	bs, err := l.Throughput(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, b := range bs {
		sum += b.Bytes
		if time.Since(b.Start) > time.Minute || b.Start.After(time.Now()) {
			t.Errorf("bucket %+v: not of the last minute", b)
		}
	}
	if len(bs) == 0 || len(bs) > 2 || sum != 47 {
		t.Fatalf("buckets %+v, want 47 bytes in one or two", bs)
	}
	if _, err := l.Succeed(ctx, x.ID, gen, ledger.Result{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.SetListed(ctx, "j", nil); err != nil {
		t.Fatal(err)
	}
	if j := job(t, l, "j"); !j.Done() {
		t.Fatalf("job %+v", j)
	}
	// the job is done: every shard's throughput key it has expires with it
	n := 0
	for _, tag := range l.HashTags() {
		k := tag + ":job:j:tp"
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl > 0 {
			n++
		} else if ex, _ := rdb.Exists(ctx, k).Result(); ex == 1 {
			t.Errorf("%s never expires", k)
		}
	}
	if n == 0 {
		t.Error("no throughput key with an expiry")
	}
}

// TestLeave: a job that joins a transfer whose chunks are streaming counts
// their bytes in flight too, and one that leaves it (Leave, while another
// job still waits for it) takes them and the object out, and starts its
// retention; the transfer's only job cannot leave (it cancels instead).
// Every job's moving count ends at 0 (a review found -7 and 7).
func TestLeave(t *testing.T) {
	t.Parallel()
	l, rdb := ledgerOf(t, shards)
	ctx := context.Background()
	x := transfer("k", 40, 4)
	gen := create(t, l, "a", x)
	partReady(t, l, x.ID, gen)
	_, _ = l.StartChunk(ctx, x.ID, gen, 0, time.Now())
	if _, err := l.ChunkProgress(ctx, x.ID, gen, 0, 7); err != nil {
		t.Fatal(err)
	}
	if left, err := l.Leave(ctx, "a", x.ID); err != nil || left {
		t.Fatalf("the only job left: %v %v", left, err)
	}
	for _, j := range []string{"b", "c"} {
		if err := l.CreateJob(ctx, j, "s3://b/", "/d/", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Attach(ctx, ledger.AttachRequest{Job: j, Mode: ledger.ModeAttach, New: x, Expect: ledger.Transfer{State: ledger.Running, Gen: gen}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := l.SetListed(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if got := job(t, l, j).Moving; got != 7 {
			t.Fatalf("job %s joined with moving %d, want the transfer's 7", j, got)
		}
	}
	if left, err := l.Leave(ctx, "b", x.ID); err != nil || !left {
		t.Fatalf("leave: %v %v", left, err)
	}
	if b := job(t, l, "b"); b.Moving != 0 || b.Objects != 0 || b.BytesTotal != 0 || !b.Done() {
		t.Fatalf("job b after leaving: %+v", b)
	}
	if ttl, _ := rdb.TTL(ctx, l.HashTags()[0]+":job:b").Result(); ttl <= 0 {
		t.Errorf("job b, done after leaving, has TTL %v, want the retention", ttl)
	}
	if ok, _ := l.Fail(ctx, x.ID, gen, "boom", false, time.Now()); !ok {
		t.Fatal("fail")
	}
	for _, j := range []string{"a", "c"} {
		if got := job(t, l, j).Moving; got != 0 {
			t.Errorf("job %s ends with moving %d, want 0", j, got)
		}
	}
}
