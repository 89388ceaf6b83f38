package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

func TestMain(m *testing.M) {
	fleettest.SetCredentials()
	os.Exit(m.Run())
}

const mib = 1 << 20

// noPartFiles fails if any part file is left under dir. A failed object's
// part file goes just after its failure is recorded (tasks.ChunkHandler:
// the cause first), so a test that saw the failure gives it a moment.
func noPartFiles(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.Contains(d.Name(), ".s3fleet-") {
				left = append(left, p)
			}
			return nil
		})
		if len(left) == 0 || time.Now().After(deadline) {
			for _, p := range left {
				t.Errorf("part file left behind: %s", p)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrefixDownload downloads a prefix of objects of awkward sizes and
// names with two workers: every byte lands, checksums are checked where S3
// has them, mtimes follow Last-Modified, and no part file remains.
func TestPrefixDownload(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	sizes := map[string]int64{
		"data/empty":               0,
		"data/one":                 1,
		"data/below chunk":         mib - 1,
		"data/exact chunk":         mib,
		"data/above chunk":         mib + 1,
		"data/deep/ü ñ/many.bin":   3*mib + 12345,
		"data/deep/x/y/z/last.txt": 4096,
	}
	want := map[string][]byte{}
	for key, size := range sizes {
		want[key] = f.S3.PutRandom(t, "bkt", key, size, !strings.Contains(key, "one"))
	}
	f.S3.PutRandom(t, "bkt", "other/not-in-prefix", 10, false)

	cfg := f.Config()
	fleettest.StartWorker(t, cfg)
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dest := t.TempDir() + "/out/"
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/data/", dest))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Objects != int64(len(sizes)) || sum.New != int64(len(sizes)) {
		t.Fatalf("summary %+v, want %d new objects", sum, len(sizes))
	}
	j := c.Wait(t, sum.Job, time.Minute)
	if j.Succeeded != int64(len(sizes)) || j.Failed != 0 {
		t.Fatalf("job %+v", j)
	}
	objs := c.Objects(t, sum.Job)
	for key, data := range want {
		path := filepath.Join(dest, strings.TrimPrefix(key, "data/"))
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes differ from the %d uploaded", key, len(got), len(data))
		}
		o := objs[key]
		if o.State != ledger.Success || o.Dest != path {
			t.Errorf("%s: state %s dest %s", key, o.State, o.Dest)
		}
		// Uploaded with a CRC32C, or with none asked (then the SDK sends a
		// CRC32, or the server makes a CRC64NVME): every one is checked.
		head, err := f.S3.Client(t).HeadObject(context.Background(), &s3.HeadObjectInput{
			Bucket: aws.String("bkt"), Key: aws.String(key), ChecksumMode: "ENABLED"})
		if err != nil {
			t.Fatal(err)
		}
		wantCheck := assembler.SumOf(head).Algorithm.Check()
		if o.Check != wantCheck || wantCheck == "" || (key != "data/one" && wantCheck != "crc32c") {
			t.Errorf("%s: check %q, want %q (S3 keeps %+v)", key, o.Check, wantCheck, assembler.SumOf(head))
		}
		st, _ := os.Stat(path)
		if lm := time.UnixMilli(o.LastModified); o.LastModified == 0 || !st.ModTime().Equal(lm) {
			t.Errorf("%s: mtime %v, want Last-Modified %v", key, st.ModTime(), lm)
		}
	}
	if j.BytesDone != j.BytesTotal {
		t.Errorf("bytes done %d of %d", j.BytesDone, j.BytesTotal)
	}
	var checked int64
	for _, n := range j.Checks {
		checked += n
	}
	if checked != j.Succeeded || j.Checks["none"] != 0 {
		t.Errorf("the job counts checks %v for %d objects, want every one checked", j.Checks, j.Succeeded)
	}
	noPartFiles(t, dest)
}

// TestChecksum: an object uploaded with a full-object CRC32C verifies as
// crc32c; the same object through a proxy that flips one byte fails with a
// checksum error and leaves no file, final or partial.
func TestChecksum(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := f.S3.PutRandom(t, "bkt", "obj.bin", 5*mib+77, true)
	head, err := f.S3.Client(t).HeadObject(context.Background(), &s3.HeadObjectInput{
		Bucket: aws.String("bkt"), Key: aws.String("obj.bin"), ChecksumMode: "ENABLED"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("verifies", func(t *testing.T) {
		cfg := f.Config()
		fleettest.StartWorker(t, cfg)
		c := fleettest.NewClient(t, cfg)
		dest := filepath.Join(t.TempDir(), "obj.bin")
		sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj.bin", dest))
		if err != nil {
			t.Fatal(err)
		}
		c.Wait(t, sum.Job, time.Minute)
		o := c.Objects(t, sum.Job)["obj.bin"]
		if o.State != ledger.Success || o.Check != "crc32c" || o.Computed != aws.ToString(head.ChecksumCRC32C) {
			t.Fatalf("state %s check %q crc %q, want success crc32c %q (%s)", o.State, o.Check, o.Computed, aws.ToString(head.ChecksumCRC32C), o.Error)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
		}
	})

	t.Run("flipped byte fails", func(t *testing.T) {
		proxy := testenv.StartProxy(t, f.S3.Endpoint)
		var flipped atomic.Int64
		proxy.SetTamper(func(r *http.Request, resp *http.Response) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.Header.Get("Range"), "bytes=2097152-") && flipped.Add(1) == 1 {
				resp.Body = testenv.FlipByte(resp.Body, 1000)
			}
		})
		cfg := f.Config()
		cfg.Endpoint = proxy.URL
		fleettest.StartWorker(t, cfg)
		c := fleettest.NewClient(t, cfg)
		dir := t.TempDir()
		dest := filepath.Join(dir, "obj.bin")
		sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj.bin", dest))
		if err != nil {
			t.Fatal(err)
		}
		j := c.Wait(t, sum.Job, time.Minute)
		o := c.Objects(t, sum.Job)["obj.bin"]
		if j.Failed != 1 || o.State != ledger.Failed || !strings.Contains(o.Error, "checksum mismatch") {
			t.Fatalf("job %+v, object %s: %q; want failed with a checksum mismatch", j, o.State, o.Error)
		}
		if flipped.Load() == 0 {
			t.Fatal("the proxy flipped nothing")
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("final file exists after a checksum failure: %v", err)
		}
		noPartFiles(t, dir)
	})
}

// TestSourceChanged: the object is overwritten between enqueue and
// download; the chunk's If-Match fails, the object fails with "source
// changed", and enqueueing again fetches the new version.
func TestSourceChanged(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "obj", 3*mib, false)
	cfg := f.Config()
	c := fleettest.NewClient(t, cfg)
	dest := filepath.Join(t.TempDir(), "obj")
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj", dest))
	if err != nil {
		t.Fatal(err)
	}
	newData := f.S3.PutRandom(t, "bkt", "obj", 2*mib+5, false)
	fleettest.StartWorker(t, cfg)
	c.Wait(t, sum.Job, time.Minute)
	o := c.Objects(t, sum.Job)["obj"]
	if o.State != ledger.Failed || !strings.Contains(o.Error, "source changed") || strings.Contains(o.Error, "skip retry") {
		t.Fatalf("object %s: %q, want failed: source changed (without asynq's markers)", o.State, o.Error)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("final file exists: %v", err)
	}
	noPartFiles(t, filepath.Dir(dest)) // the old version's bytes are of no use
	sum2, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/obj", dest))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum2.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("second job %+v", j)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, newData) {
		t.Fatal("the new version was not downloaded")
	}
}

// TestNoDuplicateWork: a second enqueue of an object in flight attaches to
// it, and one already downloaded is skipped: S3 serves each chunk once.
func TestNoDuplicateWork(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	for i := range 5 {
		f.S3.PutRandom(t, "bkt", fmt.Sprintf("p/%d", i), int64(i)*mib+3, false)
	}
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	var gets atomic.Int64
	proxy.SetTamper(func(r *http.Request, _ *http.Response) {
		if isObjectGET(r) {
			gets.Add(1)
		}
	})
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	c := fleettest.NewClient(t, cfg)
	dest := t.TempDir() + "/"
	first, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dest))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dest))
	if err != nil {
		t.Fatal(err)
	}
	// The small object waits in the first job's batch with no record yet
	// (ledger.Pend): the second job pends it again, and whichever batch
	// starts first makes its record; the other joins it and fetches nothing.
	if second.Attached != 4 || second.New != 1 || second.Chunks != 1 {
		t.Fatalf("second enqueue while in flight: %+v, want 4 attached and one small object pending again", second)
	}
	fleettest.StartWorker(t, cfg)
	for _, job := range []string{first.Job, second.Job} {
		if j := c.Wait(t, job, time.Minute); j.Succeeded != 5 {
			t.Fatalf("job %s: %+v", job, j)
		}
	}
	if want := first.Chunks; gets.Load() != want {
		t.Fatalf("%d object GETs for %d chunks and batched objects", gets.Load(), want)
	}
	third, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dest))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, third.Job, time.Minute); third.Skipped != 5 || j.Skipped != 5 {
		t.Fatalf("third enqueue after success: %+v / %+v, want 5 skipped", third, j)
	}
	if want := first.Chunks; gets.Load() != want {
		t.Fatalf("%d object GETs after a re-run, want still %d", gets.Load(), want)
	}
}

// TestRetryFetchesOnlyMissingChunks: one chunk fails every retry, so the
// object fails with the cause; resuming the job once the fault is gone
// downloads only that chunk.
func TestRetryFetchesOnlyMissingChunks(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := f.S3.PutRandom(t, "bkt", "obj", 4*mib, false)
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	var broken atomic.Bool
	broken.Store(true)
	var gets atomic.Int64
	proxy.SetTamper(func(r *http.Request, resp *http.Response) {
		if r.Method != http.MethodGet || r.Header.Get("Range") == "" {
			return
		}
		gets.Add(1)
		if broken.Load() && strings.HasPrefix(r.Header.Get("Range"), "bytes=3145728-") {
			resp.StatusCode = http.StatusInternalServerError
			resp.Body = http.NoBody
			resp.ContentLength = 0
			resp.Header.Del("Content-Length")
		}
	})
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	cfg.MaxRetries = 1
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dest := filepath.Join(t.TempDir(), "obj")
	req := fleettest.Request("s3://bkt/obj", dest)
	req.Job = "flaky"
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	j := c.Wait(t, sum.Job, time.Minute)
	o := c.Objects(t, "flaky")["obj"]
	if j.Failed != 1 || o.State != ledger.Failed || !strings.Contains(o.Error, "500") {
		t.Fatalf("job %+v object %s %q: want failed with the 500", j, o.State, o.Error)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("a failed object left a final file")
	}
	broken.Store(false)
	before := gets.Load()
	again, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Resumed != 1 || again.Chunks != 1 {
		t.Fatalf("resume: %+v, want 1 resumed object with 1 chunk", again)
	}
	j = c.Wait(t, "flaky", time.Minute)
	if j.Succeeded != 1 || j.Failed != 0 || j.Objects != 1 {
		t.Fatalf("resumed job %+v", j)
	}
	if n := gets.Load() - before; n != 1 {
		t.Fatalf("resume made %d ranged GETs, want 1", n)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after resume")
	}
}

// TestBadInput: each mistake gives its error and leaves nothing behind.
func TestBadInput(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "obj", 10, false)
	cfg := f.Config()
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, dest, want string
	}{
		{"unknown bucket", "s3://nobucket/obj", dir + "/x", `bucket "nobucket" does not exist`},
		{"missing key", "s3://bkt/nokey", dir + "/x", `no such key "nokey" in bucket "bkt"`},
		{"unknown bucket prefix", "s3://nobucket/p/", dir + "/", `bucket "nobucket" does not exist`},
		{"empty prefix", "s3://bkt/nothing/", dir + "/", "no objects under s3://bkt/nothing/"},
		{"neither URL nor file", "bkt/obj", dir + "/x", "neither an object URL"},
		{"upload to a path", dir, dir + "/x", "a local source uploads to S3"},
		{"existing destination", "s3://bkt/obj", existing, "already exists"},
		{"unknown remote", "s3://bkt/obj", "dst://bkt/copy", `unknown remote "dst"`},
		{"unknown source remote", "r2://bkt/obj", dir + "/x", `unknown remote "r2"`},
		{"prefix to an S3 key", "s3://bkt/p/", "s3://bkt/copy", "end s3://bkt/copy with /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Submit(context.Background(), fleettest.Request(tc.src, tc.dest))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if got, _ := os.ReadFile(existing); string(got) != "keep me" {
		t.Fatal("the existing file changed")
	}
	rdb := f.Redis.Client(t)
	if keys, _ := rdb.Keys(context.Background(), "*").Result(); len(keys) != 0 {
		t.Fatalf("bad input left keys in Redis: %v", keys)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("bad input left files: %v", entries)
	}
}

// TestUnreachableRedis fails within seconds.
func TestUnreachableRedis(t *testing.T) {
	t.Parallel()
	f := fleettest.Fleet{S3: testenv.StartS3(t)}
	cfg := (&fleettest.Fleet{Redis: &testenv.Redis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))}, S3: f.S3}).Config()
	cfg.ConnectTimeout = 2 * time.Second
	start := time.Now()
	err := (func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return runWorker(ctx, cfg)
	})()
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("worker error %v, want unreachable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to fail", d)
	}
}

// TestExistingFileInPrefix: within a prefix, an object whose file exists is
// recorded failed with the cause, and the others download.
func TestExistingFileInPrefix(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "p/a", 100, false)
	f.S3.PutRandom(t, "bkt", "p/b", 100, false)
	cfg := f.Config()
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/p/", dir+"/"))
	if err != nil {
		t.Fatal(err)
	}
	j := c.Wait(t, sum.Job, time.Minute)
	objs := c.Objects(t, sum.Job)
	if j.Failed != 1 || j.Succeeded != 1 || !strings.Contains(objs["p/a"].Error, "already exists") {
		t.Fatalf("job %+v, a: %s %q", j, objs["p/a"].State, objs["p/a"].Error)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "mine" {
		t.Fatal("existing file overwritten")
	}
	if sum.Refused != 1 {
		t.Fatalf("summary %+v, want 1 refused", sum)
	}
	_ = enqueuer.ErrUsage
}

// isObjectGET reports whether a request through the proxy fetches object
// bytes: a GET that is no bucket listing.
func isObjectGET(r *http.Request) bool {
	return r.Method == http.MethodGet && !r.URL.Query().Has("list-type") && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1
}

// TestSameJobAfterSourceChanged: an object whose source changed fails its
// job; the same job enqueued again fetches the new version under a new
// transfer, and that is what the job counts now: one object, succeeded,
// no failure (issue 14: it used to keep the old failure and exit 1
// forever). A failure no new transfer replaces would stay.
func TestSameJobAfterSourceChanged(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "p/obj", 3*mib, false)
	f.S3.PutRandom(t, "bkt", "p/keep", 1000, false)
	cfg := f.Config()
	c := fleettest.NewClient(t, cfg)
	dir := t.TempDir()
	req := fleettest.Request("s3://bkt/p/", dir+"/")
	req.Job = "nightly"
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	newData := f.S3.PutRandom(t, "bkt", "p/obj", 2*mib+5, false)
	fleettest.StartWorker(t, cfg)
	if j := c.Wait(t, "nightly", time.Minute); j.Failed != 1 || j.Succeeded != 1 {
		t.Fatalf("first run: %+v, want obj failed (source changed) and keep done", j)
	}
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	j := c.Wait(t, "nightly", time.Minute)
	if j.Objects != 2 || j.Failed != 0 || j.Succeeded+j.Skipped != 2 || j.BytesTotal != j.BytesDone {
		c.LogObjects(t, "nightly")
		t.Fatalf("the job again: %+v, want 2 objects, none failed", j)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "obj")); !bytes.Equal(got, newData) {
		t.Fatal("the new version was not downloaded")
	}
}
