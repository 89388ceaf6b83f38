package worker_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// slowBodies makes every ranged GET through the proxy take at least d.
func slowBodies(p *testenv.Proxy, d time.Duration) {
	p.SetTamper(func(r *http.Request, _ *http.Response) {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			time.Sleep(d)
		}
	})
}

// TestCancelAndRetry: cancel stops a running job (pending chunks deleted,
// running ones revoked, part file removed, nothing retried), and retry
// completes it afterwards.
func TestCancelAndRetry(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := f.S3.PutRandom(t, "bkt", "big", 24*mib, false)
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	slowBodies(proxy, 150*time.Millisecond)
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	cfg.Concurrency = 2
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	dest := filepath.Join(dir, "big")
	req := fleettest.Request("s3://bkt/big", dest)
	req.Job = "to-cancel"
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if j, _ := c.Ledger.GetJob(context.Background(), "to-cancel"); j.BytesDone >= 2*mib {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress to cancel")
		}
	}
	n, err := c.Cancel(context.Background(), "to-cancel")
	if err != nil || n != 1 {
		t.Fatalf("cancel: %d objects, %v", n, err)
	}
	j := c.Wait(t, "to-cancel", 10*time.Second)
	if j.Cancelled != 1 || j.Succeeded != 0 {
		t.Fatalf("job after cancel: %+v", j)
	}
	insp := asynq.NewInspectorFromRedisClient(f.Redis.Client(t))
	queue := c.Objects(t, "to-cancel")["big"].Queue // chunks, or its shard's (chunks.N)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		q, err := insp.GetQueueInfo(queue)
		entries, _ := os.ReadDir(dir)
		if err == nil && q.Pending+q.Active+q.Retry+q.Scheduled == 0 && len(entries) == 0 {
			t.Logf("after cancel: queue %+v", q)
			if q.Archived != 0 {
				t.Fatalf("%d chunk tasks archived: cancelled chunks must be revoked, not failed", q.Archived)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after cancel: queue %+v (err %v), files %v", q, err, entries)
		}
	}
	if o := c.Objects(t, "to-cancel")["big"]; o.State != ledger.Cancelled {
		t.Fatalf("object %s, want cancelled", o.State)
	}

	slowBodies(proxy, 0)
	sum, err := c.Retry(context.Background(), "to-cancel")
	if err != nil || sum.Resumed != 1 || sum.Chunks != 24 {
		t.Fatalf("retry: %+v %v", sum, err)
	}
	if j := c.Wait(t, "to-cancel", time.Minute); j.Succeeded != 1 || j.Cancelled != 0 {
		t.Fatalf("job after retry: %+v", j)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after retry")
	}
}

// TestSelection: include/exclude filters, dry run, priority queues and
// several sources.
func TestSelection(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	for _, k := range []string{"p/a.log", "p/b.txt", "p/sub/c.log", "p/sub/d.log", "q/e.log"} {
		f.S3.PutRandom(t, "bkt", k, 3*mib/2, false)
	}
	cfg := f.Config()
	c := fleettest.NewClient(t, cfg)
	rdb := f.Redis.Client(t)

	dry := fleettest.Request("s3://bkt/p/", t.TempDir()+"/")
	dry.DryRun = true
	dry.Include = []string{"**/*.log"}
	dry.Exclude = []string{"sub/d.*"}
	sum, err := c.Submit(context.Background(), dry)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Objects != 2 || sum.New != 2 || sum.Filtered != 2 || sum.Chunks != 4 || sum.Bytes != 3*mib {
		t.Fatalf("dry run %+v: want a.log and sub/c.log, 2 chunks each", sum)
	}
	if keys, _ := rdb.Keys(context.Background(), "*").Result(); len(keys) != 0 {
		t.Fatalf("a dry run wrote to Redis: %v", keys)
	}

	dest := t.TempDir() + "/"
	req := enqueuerRequest([]string{"s3://bkt/p/", "s3://bkt/q/"}, dest)
	req.Include = []string{"**/*.log"}
	req.Exclude = []string{"sub/d.*"}
	req.Priority = "high"
	sum, err = c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var high []*asynq.TaskInfo
	for n := range c.Ledger.NumShards() { // chunks-high, and with shards chunks-high.N
		q := tasks.ShardQueue(tasks.QueueChunksHigh, n)
		tis, err := insp.ListPendingTasks(q)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatalf("tasks on %s: %v", q, err)
		}
		high = append(high, tis...)
	}
	if len(high) != 6 || sum.Objects != 3 {
		t.Fatalf("%d tasks on %s, summary %+v: want 6 chunks of 3 objects", len(high), tasks.QueueChunksHigh, sum)
	}
	fleettest.StartWorker(t, cfg)
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 3 {
		t.Fatalf("job %+v", j)
	}
	var got []string
	_ = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, p)
			got = append(got, rel)
		}
		return nil
	})
	sort.Strings(got)
	if strings.Join(got, ",") != "a.log,e.log,sub/c.log" {
		t.Fatalf("downloaded %v", got)
	}
}

// TestSync: --sync skips files that are there with the recorded size and
// ETag (from the record, or from the file's xattr when Redis forgot),
// downloads what is missing and replaces what differs.
func TestSync(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := map[string][]byte{}
	for _, k := range []string{"a", "b", "c"} {
		data[k] = f.S3.PutRandom(t, "bkt", "p/"+k, 100_000, false)
	}
	cfg := f.Config()
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dest := t.TempDir() + "/"
	first, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dest))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, first.Job, time.Minute)
	buf := make([]byte, 64)
	if _, err := unix.Getxattr(dest+"a", assembler.XattrETag, buf); err != nil {
		t.Skipf("no user xattrs on %s: %v", dest, err)
	}

	// The records are lost (another Redis, or expired); one file is gone,
	// one was changed by hand.
	if err := f.Redis.Client(t).FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	os.Remove(dest + "b")
	if err := os.WriteFile(dest+"c", []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := fleettest.Request("s3://bkt/p/", dest)
	req.Sync = true
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 1 || sum.New != 2 {
		t.Fatalf("sync: %+v, want a skipped and b, c downloaded", sum)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 2 || j.Skipped != 1 || j.Failed != 0 {
		t.Fatalf("sync job %+v", j)
	}
	for k, want := range data {
		if got, _ := os.ReadFile(dest + k); !bytes.Equal(got, want) {
			t.Errorf("%s differs after sync", k)
		}
	}
}

// TestRequestOptions: the expected bucket owner and the SSE-C fingerprint
// travel with every GET; a worker without the SSE-C key refuses the object.
func TestRequestOptions(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "obj", 2*mib, false)
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	var seenMD5 atomic.Value
	seenMD5.Store("")
	proxy.SetTamper(func(r *http.Request, _ *http.Response) {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			seenMD5.Store(r.Header.Get("X-Amz-Server-Side-Encryption-Customer-Key-Md5"))
		}
	})
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	c := fleettest.NewClient(t, cfg)

	// A worker without the key.
	stop := fleettest.StartWorker(t, cfg)
	req := fleettest.Request("s3://bkt/obj", filepath.Join(t.TempDir(), "obj"))
	req.SSECKeyMD5 = "B0sHcSxomCfj7S9EVz6qXg=="
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	if o := c.Objects(t, sum.Job)["obj"]; o.State != ledger.Failed || !strings.Contains(o.Error, "no SSE-C key with MD5") {
		t.Fatalf("without the key: %s %q", o.State, o.Error)
	}
	stop()

	// A worker with it sends the key's fingerprint.
	cfg.SSECKeyFile = keyFile
	keys, err := cfg.SSECKeys()
	if err != nil {
		t.Fatal(err)
	}
	var fingerprint string
	for k := range keys {
		fingerprint = k
	}
	fleettest.StartWorker(t, cfg)
	req = fleettest.Request("s3://bkt/obj", filepath.Join(t.TempDir(), "obj"))
	req.SSECKeyMD5 = fingerprint
	sum, err = c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 || seenMD5.Load() != fingerprint {
		t.Fatalf("with the key: %+v, GET carried key MD5 %q, want %q", j, seenMD5.Load(), fingerprint)
	}

	// A bucket owned by someone else is refused by S3.
	req = fleettest.Request("s3://bkt/obj", filepath.Join(t.TempDir(), "obj"))
	req.ExpectedOwner = "111122223333"
	if _, err := c.Submit(context.Background(), req); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("wrong owner: %v", err)
	}
}

// TestBandwidthCap: a worker capped at 2 MiB/s cannot fetch 5 MiB in less
// than the cap allows (a lower bound only: it never depends on the
// machine's speed).
func TestBandwidthCap(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "obj", 5*mib, false)
	cfg := f.Config()
	cfg.Bandwidth = 2 * mib
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	start := time.Now()
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj", filepath.Join(t.TempDir(), "obj")))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	// 1 MiB of burst, then 4 MiB at 2 MiB/s.
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Fatalf("5 MiB at a 2 MiB/s cap took only %s", d)
	}
}

// TestAllowDest: a worker with allow_dest writes under its roots only;
// a job (or a task forged in Redis) aimed elsewhere fails without a byte
// written there, and the worker keeps serving.
func TestAllowDest(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "obj", 2*mib, false)
	allowed, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	cfg := f.Config()
	cfg.AllowDest = []string{allowed}
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	for _, dest := range []string{filepath.Join(elsewhere, "obj"), filepath.Join(allowed, "escape", "obj")} {
		sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj", dest))
		if err != nil {
			t.Fatal(err)
		}
		c.Wait(t, sum.Job, time.Minute)
		if o := c.Objects(t, sum.Job)["obj"]; o.State != ledger.Failed || !strings.Contains(o.Error, "outside the allowed roots") {
			t.Fatalf("%s: %s %q", dest, o.State, o.Error)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("the worker wrote outside its roots: %v", entries)
	}
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj", filepath.Join(allowed, "in", "obj")))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("a job inside the root: %+v", j)
	}
	insp := asynq.NewInspectorFromRedisClient(f.Redis.Client(t))
	if q := chunkQueues(t, insp, c.Ledger.NumShards()); q.Retry != 0 || q.Archived == 0 {
		t.Fatalf("refused tasks must be archived at once, not retried: %+v", q)
	}
}

// chunkQueues adds up the default priority's chunk queues of a fleet of
// shards ledger shards (chunks, chunks.1, …; those that do not exist yet
// hold nothing).
func chunkQueues(t *testing.T, insp *asynq.Inspector, shards int) asynq.QueueInfo {
	t.Helper()
	var sum asynq.QueueInfo
	existing, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	for n := range shards {
		name := tasks.ShardQueue(tasks.QueueChunks, n)
		if !slices.Contains(existing, name) {
			continue
		}
		q, err := insp.GetQueueInfo(name)
		if err != nil {
			t.Fatal(err)
		}
		sum.Pending += q.Pending
		sum.Active += q.Active
		sum.Retry += q.Retry
		sum.Scheduled += q.Scheduled
		sum.Archived += q.Archived
	}
	return sum
}

// TestNoAllowDestWritesNoFile: deny by default. A worker without
// allow_dest refuses every task that would write a local file (a chunked
// object and a batch of small ones fail, naming the setting, with nothing
// written), and still serves work that only touches S3 (a server-side
// copy).
func TestNoAllowDestWritesNoFile(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "big", 3*mib, false)
	f.S3.PutRandom(t, "bkt", "small/a", 10, false)
	cfg := f.Config()
	cfg.AllowDest = nil
	cfg.AllowWrite = []string{"s3://bkt/copies/"}
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	for _, src := range []string{"s3://bkt/big", "s3://bkt/small/"} {
		sum, err := c.Submit(context.Background(), fleettest.Request(src, dir+"/"))
		if err != nil {
			t.Fatal(err)
		}
		c.Wait(t, sum.Job, time.Minute)
		for k, o := range c.Objects(t, sum.Job) {
			if o.State != ledger.Failed || !strings.Contains(o.Error, "allow_dest is not set") {
				t.Errorf("%s without allow_dest: %s %q, want failed naming allow_dest", k, o.State, o.Error)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a worker without allow_dest wrote %v", entries)
	}
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/big", "s3://bkt/copies/big"))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		c.LogObjects(t, sum.Job)
		t.Fatalf("an S3-only copy without allow_dest: %+v", j)
	}
}

// TestOneMode: an object fetched whole in a batch and one assembled from
// chunks land with the same mode, the one the worker's umask gives a new
// file.
func TestOneMode(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "p/big", 3*mib, false)
	f.S3.PutRandom(t, "bkt", "p/small", 100, false)
	cfg := f.Config()
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dir+"/"))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 2 {
		t.Fatalf("job: %+v", j)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"big", "small"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want.Mode() {
			t.Errorf("%s landed with mode %v, want %v (a new file's under this umask)", name, st.Mode(), want.Mode())
		}
	}
}

// TestOneOwnerAndClashes: two jobs that write different objects to one
// file at once: the later fails at enqueue, naming the object in flight,
// and the file holds the first one's bytes (before, both said success).
// A key whose file would sit where another key's directory is, or under
// another key's file, fails saying so, not "already exists".
func TestOneOwnerAndClashes(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	big := f.S3.PutRandom(t, "bkt", "big", 3*mib, false)
	f.S3.PutRandom(t, "bkt", "other", 2*mib, false)
	f.S3.PutRandom(t, "bkt", "x/y", 100, false)
	f.S3.PutRandom(t, "bkt", "p/b", 100, false)
	cfg := f.Config()
	cfg.Bandwidth = 1 * mib // the first job is in flight for seconds
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	ctx := context.Background()
	dir := t.TempDir()
	one := filepath.Join(dir, "one")
	first, err := c.Submit(ctx, fleettest.Request("s3://bkt/big", one))
	if err != nil {
		t.Fatal(err)
	}
	req := fleettest.Request("s3://bkt/other", one)
	req.Overwrite = true
	second, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, second.Job, time.Minute)
	if o := c.Objects(t, second.Job)["other"]; o.State != ledger.Failed || !strings.Contains(o.Error, "is also that of s3://bkt/big") {
		t.Errorf("the second job to %s: %s %q, want failed naming s3://bkt/big", one, o.State, o.Error)
	}
	if j := c.Wait(t, first.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("the first job: %+v", j)
	}
	if got, _ := os.ReadFile(one); !bytes.Equal(got, big) {
		t.Error("the file does not hold the first job's object")
	}

	if err := os.MkdirAll(filepath.Join(dir, "b", "c"), 0o755); err != nil { // as if key p/b/c had landed
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("key x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, dest, key, want string }{
		{"s3://bkt/p/", dir + "/", "p/b", "is a directory: another key has b/ as a prefix"},
		{"s3://bkt/x/y", filepath.Join(dir, "x", "y"), "x/y", filepath.Join(dir, "x") + " is a file, so " + filepath.Join(dir, "x", "y") + " cannot be made under it"},
	} {
		key, want := tc.key, tc.want
		sum, err := c.Submit(ctx, fleettest.Request(tc.src, tc.dest))
		if err != nil {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", key, err, want)
			}
			continue
		}
		c.Wait(t, sum.Job, time.Minute)
		if o := c.Objects(t, sum.Job)[key]; o.State != ledger.Failed || !strings.Contains(o.Error, want) {
			t.Errorf("%s: %s %q, want failed saying %q", key, o.State, o.Error, want)
		}
	}
}

// TestRetryFor: retries are bounded by time, not by count. With every GET
// answered 503 and max_retries far away, an object fails once its tasks
// have failed for retry_for with no progress, saying so; an outage shorter
// than retry_for is ridden out.
func TestRetryFor(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := f.S3.PutRandom(t, "bkt", "big", 3*mib, false)
	f.S3.PutRandom(t, "bkt", "small", 100, false)
	proxy := testenv.StartFaultProxy(t, f.S3.Endpoint)
	var down atomic.Bool
	down.Store(true)
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		if testenv.IsObjectGET(r) && down.Load() {
			return testenv.Fault{Action: testenv.Status, Status: 503, Code: "ServiceUnavailable"}
		}
		return testenv.Fault{}
	})
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	cfg.MaxRetries, cfg.RetryFor, cfg.RetryDelay = 1000, 2*time.Second, 20*time.Millisecond
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	for _, key := range []string{"big", "small"} { // chunked, and whole in a batch
		began := time.Now()
		sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/"+key, filepath.Join(dir, key)))
		if err != nil {
			t.Fatal(err)
		}
		c.Wait(t, sum.Job, time.Minute)
		o := c.Objects(t, sum.Job)[key]
		if o.State != ledger.Failed || !strings.Contains(o.Error, "with no progress (retry_for 2s)") {
			t.Fatalf("%s under a lasting outage: %s %q, want failed naming retry_for", key, o.State, o.Error)
		}
		t.Logf("%s failed after %s (%d attempts): %s", key, time.Since(began).Round(100*time.Millisecond), o.Attempts, o.Error)
	}

	// An outage of 1 s against a budget of 2 s is ridden out.
	cfg.RetryFor = 4 * time.Second
	c2 := fleettest.NewClient(t, cfg)
	go func() { time.Sleep(time.Second); down.Store(false) }()
	sum, err := c2.Submit(context.Background(), fleettest.Request("s3://bkt/big", filepath.Join(dir, "again")))
	if err != nil {
		t.Fatal(err)
	}
	if j := c2.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		c2.LogObjects(t, sum.Job)
		t.Fatalf("a short outage: %+v", j)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "again")); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}
