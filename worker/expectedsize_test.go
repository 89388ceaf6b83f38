package worker_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// esSeen is one request the recording proxy received, and the answer S3
// gave it (Status 0: none came back).
// esSeen is a request the proxy saw.
type esSeen = testenv.Seen

// esProxy is the recording proxy in front of S3 (testenv.Proxy): every
// request with its answer, and a gate that can hold requests.
type esProxy struct{ *testenv.Proxy }

func startESProxy(t *testing.T, target string) *esProxy {
	return &esProxy{testenv.StartProxy(t, target)}
}

func (p *esProxy) setGate(g func(*http.Request)) { p.SetGate(g) }

func (p *esProxy) requests() []esSeen { return p.Requests() }

// count counts the requests seen with this method.
func (p *esProxy) count(method string) int {
	n := 0
	for _, s := range p.requests() {
		if s.Method == method {
			n++
		}
	}
	return n
}

// objectGETs returns the GETs of one key (path /bkt/key).
func (p *esProxy) objectGETs(path string) []esSeen {
	var out []esSeen
	for _, s := range p.requests() {
		if s.Method == http.MethodGet && s.Path == path {
			out = append(out, s)
		}
	}
	return out
}

// esRig is one test's fleet: its own Redis (so that no other test's
// workers take its tasks), the shared S3 server behind a recording proxy
// that the enqueuer and the workers both use.
type esRig struct {
	f     *fleettest.Fleet
	cfg   config.Config
	proxy *esProxy
	c     *fleettest.Client
	dir   string
}

func newESRig(t *testing.T, srv *testenv.S3, concurrency int) *esRig {
	t.Helper()
	f := &fleettest.Fleet{Redis: testenv.StartRedis(t), S3: srv}
	proxy := startESProxy(t, srv.Endpoint)
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	cfg.ChunkSize = 2 * mib
	cfg.Threshold = 1 * mib
	cfg.Concurrency = concurrency
	// A generous retry budget with slow retries: a failure that waited for
	// it would take minutes (10 retries from 1 s, doubling), and a retry at
	// all shows as a second GET of a range.
	cfg.MaxRetries = 10
	cfg.RetryDelay = time.Second
	return &esRig{f: f, cfg: cfg, proxy: proxy, c: fleettest.NewClient(t, cfg), dir: t.TempDir()}
}

// esRun is one enqueued object and how it ended.
type esRun struct {
	dest string
	sum  enqueuer.Summary
	job  ledger.Job
	obj  ledger.JobObject
	took time.Duration // from Submit to the job's end seen by the poll
}

// submit enqueues s3://bkt/key with the given expected size (nil: none).
func (r *esRig) submit(t *testing.T, key string, size *int64) (esRun, time.Time) {
	t.Helper()
	run := esRun{dest: filepath.Join(r.dir, key)}
	req := fleettest.Request("s3://bkt/"+key, run.dest)
	req.ExpectedSize = size
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	sum, err := r.c.Submit(ctx, req)
	if err != nil {
		t.Fatalf("submit %s: %v", key, err)
	}
	run.sum = sum
	return run, began
}

// wait waits (at most limit) for the run's job to end.
func (r *esRig) wait(t *testing.T, run esRun, began time.Time, limit time.Duration) esRun {
	t.Helper()
	run.job = r.c.Wait(t, run.sum.Job, limit)
	run.took = time.Since(began)
	objs := r.c.Objects(t, run.sum.Job)
	if len(objs) != 1 {
		t.Fatalf("job has %d objects, want 1: %+v", len(objs), objs)
	}
	for _, o := range objs {
		run.obj = o
	}
	return run
}

// recorded is how long the ledger says the transfer took, creation to end.
func (run esRun) recorded() time.Duration {
	return time.Duration(run.obj.Finished-run.obj.Created) * time.Millisecond
}

func esSize(n int64) *int64 { return &n }

// esNoFile fails when the destination exists.
func esNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failure (%v)", path, err)
	}
}

// esEventually polls cond until it holds or limit passes.
func esEventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// TestExpectedSize: --expected-size sends no HEAD, at enqueue or assembly;
// a size that differs from the object's fails it at once, with both sizes,
// on the chunked path and the batch path; 0 is a size (a GET proves the
// object empty); an object overwritten during the download fails rather
// than mixing versions; --verify required with it is a usage error.
func TestExpectedSize(t *testing.T) {
	t.Parallel()
	srv := testenv.StartS3(t)
	srv.CreateBucket(t, "bkt")
	const bigSize, smallSize = 10 * mib, 100 << 10
	bigData := srv.PutRandom(t, "bkt", "big.bin", bigSize, true)
	smallData := srv.PutRandom(t, "bkt", "small.bin", smallSize, true)
	srv.PutRandom(t, "bkt", "empty.bin", 0, false)
	srv.PutRandom(t, "bkt", "ten.bin", 10, false)
	direct := srv.Client(t)
	etagOf := func(t *testing.T, key string) string {
		h, err := direct.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(h.ETag)
	}
	bigETag := etagOf(t, "big.bin")

	t.Run("exact chunked: no HEAD, later chunks pinned by If-Match", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 1) // one chunk at a time: every chunk after the first knows the ETag
		run, began := r.submit(t, "big.bin", esSize(bigSize))
		if n := len(r.proxy.requests()); n != 0 {
			t.Errorf("the enqueue sent %d requests to S3 (%v), want none", n, r.proxy.requests())
		}
		fleettest.StartWorker(t, r.cfg)
		run = r.wait(t, run, began, 30*time.Second)
		if run.obj.State != ledger.Success || run.job.Succeeded != 1 {
			t.Fatalf("object %s %q, job %+v: want success", run.obj.State, run.obj.Error, run.job)
		}
		if got, _ := os.ReadFile(run.dest); !bytes.Equal(got, bigData) {
			t.Fatalf("%d bytes on disk differ from the %d uploaded", len(got), len(bigData))
		}
		if n := r.proxy.count(http.MethodHead); n != 0 {
			t.Fatalf("%d HEAD requests reached S3, want none: %+v", n, r.proxy.requests())
		}
		if run.obj.SourceETag != bigETag {
			t.Errorf("source_etag %q, want the object's ETag %q", run.obj.SourceETag, bigETag)
		}
		gets := r.proxy.objectGETs("/bkt/big.bin")
		unpinned := 0
		for _, g := range gets {
			switch {
			case g.IfMatch == "":
				unpinned++
			case g.IfMatch != bigETag:
				t.Errorf("GET %s sent If-Match %q, want %q", g.Range, g.IfMatch, bigETag)
			}
			if g.Status != http.StatusPartialContent {
				t.Errorf("GET %s answered %d", g.Range, g.Status)
			}
		}
		if len(gets) != 5 || unpinned != 1 {
			t.Errorf("%d ranged GETs, %d without If-Match; want 5 chunks, only the first unpinned: %+v", len(gets), unpinned, gets)
		}
		xattr := make([]byte, 256)
		xn, xerr := unix.Getxattr(run.dest, assembler.XattrETag, xattr)
		st, _ := os.Stat(run.dest)
		t.Logf("exact chunked: record etag %q source_etag %q; file xattr etag %q (%v); mtime %s, last_modified %d",
			run.obj.ETag, run.obj.SourceETag, xattr[:max(xn, 0)], xerr, st.ModTime().UTC().Format(time.RFC3339), run.obj.LastModified)
		t.Logf("exact chunked: success in %s; check %q (%s); %d GETs, %d requests in all, 0 HEAD",
			run.took.Round(time.Millisecond), run.obj.Check, run.obj.CheckReason, len(gets), len(r.proxy.requests()))
	})

	t.Run("control without expected size sends HEADs", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 4)
		fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, "big.bin", nil)
		run = r.wait(t, run, began, 30*time.Second)
		if run.obj.State != ledger.Success {
			t.Fatalf("object %s %q", run.obj.State, run.obj.Error)
		}
		if got, _ := os.ReadFile(run.dest); !bytes.Equal(got, bigData) {
			t.Fatal("bytes differ")
		}
		n := r.proxy.count(http.MethodHead)
		if n == 0 {
			t.Fatalf("no HEAD counted without --expected-size: the counter sees nothing (%+v)", r.proxy.requests())
		}
		t.Logf("control: %d HEAD(s), check %q", n, run.obj.Check)
	})

	// A size other than the object's: every case fails at once (no range
	// fetched twice, far inside the retry budget), both sizes in the cause,
	// nothing left on disk.
	for _, tc := range []struct {
		name     string
		key      string
		actual   int64
		expected int64
		larger   bool
	}{
		{"chunked too small by one", "big.bin", bigSize, bigSize - 1, false},
		{"chunked too small by half", "big.bin", bigSize, bigSize / 2, false},
		{"chunked too large by one", "big.bin", bigSize, bigSize + 1, true},
		{"chunked too large twice", "big.bin", bigSize, bigSize * 2, true},
		{"batch too small by one", "small.bin", smallSize, smallSize - 1, false},
		{"batch too small by half", "small.bin", smallSize, smallSize / 2, false},
		{"batch too large by one", "small.bin", smallSize, smallSize + 1, true},
		{"batch too large twice", "small.bin", smallSize, smallSize * 2, true},
		{"zero for a 10-byte object", "ten.bin", 10, 0, false},
		{"zero for a 10 MiB object", "big.bin", bigSize, 0, false},
		{"chunked size for a 100 KiB object", "small.bin", smallSize, bigSize, true},
		{"chunked size for an empty object", "empty.bin", 0, bigSize, true},
		{"batch size for an empty object", "empty.bin", 0, smallSize, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newESRig(t, srv, 4)
			stop := fleettest.StartWorker(t, r.cfg)
			run, began := r.submit(t, tc.key, esSize(tc.expected))
			run = r.wait(t, run, began, 10*time.Second)
			stop() // no chunk still in flight when the directory is checked
			o := run.obj
			if o.State != ledger.Failed || run.job.Failed != 1 {
				t.Fatalf("object %s %q, job %+v: want failed", o.State, o.Error, run.job)
			}
			want, got := strconv.FormatInt(tc.expected, 10), strconv.FormatInt(tc.actual, 10)
			if !strings.Contains(o.Error, want) || !(strings.Contains(o.Error, got) || tc.larger && strings.Contains(o.Error, "smaller than")) {
				t.Errorf("cause %q: want both sizes (%s given, %s real)", o.Error, want, got)
			}
			if strings.Contains(o.Error, "skip retry") || strings.Contains(o.Error, "source gone") {
				t.Errorf("cause %q carries internal markers", o.Error)
			}
			ranges := map[string]int{}
			for _, g := range r.proxy.objectGETs("/bkt/" + tc.key) {
				if ranges[g.Range]++; ranges[g.Range] == 2 {
					t.Errorf("GET %q sent twice: the failure was retried", g.Range)
				}
			}
			if n := r.proxy.count(http.MethodHead); n != 0 {
				t.Errorf("%d HEAD requests, want none", n)
			}
			if run.took > 5*time.Second {
				t.Errorf("the failure took %s to be recorded, want it at once", run.took)
			}
			esNoFile(t, run.dest)
			noPartFiles(t, r.dir)
			var statuses []string
			for _, g := range r.proxy.objectGETs("/bkt/" + tc.key) {
				statuses = append(statuses, strconv.Itoa(g.Status))
			}
			t.Logf("%s: failed after %s (ledger %s), %d GETs [%s]: %s", tc.name, run.took.Round(time.Millisecond),
				run.recorded(), len(statuses), strings.Join(statuses, " "), o.Error)
		})
	}

	// Hold every GET of a range the object has until the object failed:
	// the chunks past its end are answered 416 first, and that alone fails
	// it, saying the object is smaller than the size given.
	t.Run("chunked too large: a range past the end answers 416", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 10) // all 10 chunks of 20 MiB at once
		release := make(chan struct{})
		var once sync.Once
		defer once.Do(func() { close(release) })
		r.proxy.setGate(func(q *http.Request) {
			if q.Method != http.MethodGet || q.URL.Path != "/bkt/big.bin" {
				return
			}
			first, _, _ := strings.Cut(strings.TrimPrefix(q.Header.Get("Range"), "bytes="), "-")
			if n, err := strconv.ParseInt(first, 10, 64); err == nil && n < bigSize {
				select {
				case <-release:
				case <-q.Context().Done():
				}
			}
		})
		stop := fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, "big.bin", esSize(2*bigSize))
		run = r.wait(t, run, began, 10*time.Second)
		once.Do(func() { close(release) })
		stop()
		want := "smaller than the " + strconv.Itoa(2*bigSize) + " bytes enqueued"
		if run.obj.State != ledger.Failed || !strings.Contains(run.obj.Error, want) {
			t.Fatalf("object %s %q: want failed, %q", run.obj.State, run.obj.Error, want)
		}
		var statuses []string
		n416 := 0
		for _, g := range r.proxy.objectGETs("/bkt/big.bin") {
			statuses = append(statuses, g.Range+":"+strconv.Itoa(g.Status))
			if g.Status == http.StatusRequestedRangeNotSatisfiable {
				n416++
			}
		}
		if n416 == 0 {
			t.Errorf("no 416 seen: %v", statuses)
		}
		esNoFile(t, run.dest)
		noPartFiles(t, r.dir)
		t.Logf("416: failed after %s (ledger %s) [%s]: %s", run.took.Round(time.Millisecond), run.recorded(),
			strings.Join(statuses, " "), run.obj.Error)
	})

	t.Run("exact batch: no HEAD, checked by the GET's checksum", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 4)
		fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, "small.bin", esSize(smallSize))
		run = r.wait(t, run, began, 20*time.Second)
		if run.obj.State != ledger.Success {
			t.Fatalf("object %s %q", run.obj.State, run.obj.Error)
		}
		if got, _ := os.ReadFile(run.dest); !bytes.Equal(got, smallData) {
			t.Fatal("bytes differ")
		}
		if n := r.proxy.count(http.MethodHead); n != 0 {
			t.Fatalf("%d HEAD requests, want none", n)
		}
		if gets := r.proxy.objectGETs("/bkt/small.bin"); len(gets) != 1 || gets[0].Range != "" {
			t.Errorf("GETs %+v, want one whole-object GET", gets)
		}
		if run.obj.Check != "crc32c" {
			t.Errorf("check %q (%s), want crc32c from the GET's checksum", run.obj.Check, run.obj.CheckReason)
		}
		t.Logf("exact batch: success in %s, check %q; record etag %q source_etag %q", run.took.Round(time.Millisecond),
			run.obj.Check, run.obj.ETag, run.obj.SourceETag)
	})

	t.Run("zero for an empty object", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 4)
		fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, "empty.bin", esSize(0))
		run = r.wait(t, run, began, 20*time.Second)
		if run.obj.State != ledger.Success {
			t.Fatalf("object %s %q", run.obj.State, run.obj.Error)
		}
		if st, err := os.Stat(run.dest); err != nil || st.Size() != 0 || !st.Mode().IsRegular() {
			t.Fatalf("destination: %v %v, want an empty file", st, err)
		}
		if n := r.proxy.count(http.MethodHead); n != 0 {
			t.Fatalf("%d HEAD requests, want none", n)
		}
		if gets := r.proxy.objectGETs("/bkt/empty.bin"); len(gets) != 1 || gets[0].Status != http.StatusOK {
			t.Fatalf("GETs %+v, want the one GET that proves it empty", gets)
		}
		t.Logf("zero, empty object: success in %s, check %q", run.took.Round(time.Millisecond), run.obj.Check)
	})

	t.Run("nil expected size HEADs the empty object", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 4)
		fleettest.StartWorker(t, r.cfg)
		var req enqueuer.Request // the zero value: no expected size
		if req.ExpectedSize != nil {
			t.Fatal("the zero Request has an expected size")
		}
		run, began := r.submit(t, "empty.bin", req.ExpectedSize)
		run = r.wait(t, run, began, 20*time.Second)
		if run.obj.State != ledger.Success {
			t.Fatalf("object %s %q", run.obj.State, run.obj.Error)
		}
		if st, err := os.Stat(run.dest); err != nil || st.Size() != 0 {
			t.Fatalf("destination: %v %v", st, err)
		}
		if n := r.proxy.count(http.MethodHead); n == 0 {
			t.Fatal("no HEAD without an expected size")
		}
	})

	// The object is replaced (same size, new bytes) after the first chunk
	// landed and before the second is fetched: the second GET carries
	// If-Match with the first chunk's ETag, S3 refuses it, and the object
	// fails rather than mixing versions.
	t.Run("overwritten: later chunk pinned by If-Match", func(t *testing.T) {
		t.Parallel()
		key := "changing-pinned.bin"
		srv.PutRandom(t, "bkt", key, bigSize, false)
		oldETag := etagOf(t, key)
		r := newESRig(t, srv, 1)
		release, held := make(chan struct{}), make(chan struct{})
		var releaseOnce, heldOnce sync.Once
		defer releaseOnce.Do(func() { close(release) })
		var gets atomic.Int64
		r.proxy.setGate(func(q *http.Request) {
			if q.Method != http.MethodGet || q.URL.Path != "/bkt/"+key || gets.Add(1) == 1 {
				return // the first chunk passes
			}
			heldOnce.Do(func() { close(held) })
			select {
			case <-release:
			case <-q.Context().Done():
			}
		})
		stop := fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, key, esSize(bigSize))
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("no second chunk GET within 20s")
		}
		x, err := r.c.Ledger.GetTransfer(context.Background(), run.sumTransfer(t, r))
		if err != nil {
			t.Fatal(err)
		}
		if x.SourceETag != oldETag || x.BytesDone != 2*mib {
			t.Fatalf("before the overwrite: source_etag %q bytes %d, want %q and one chunk", x.SourceETag, x.BytesDone, oldETag)
		}
		srv.PutRandom(t, "bkt", key, bigSize, false)
		if newETag := etagOf(t, key); newETag == oldETag {
			t.Fatalf("the overwrite kept the ETag %s", oldETag)
		}
		releaseOnce.Do(func() { close(release) })
		run = r.wait(t, run, began, 20*time.Second)
		stop()
		if run.obj.State != ledger.Failed || !strings.Contains(run.obj.Error, "changed") {
			t.Fatalf("object %s %q: want failed because the source changed", run.obj.State, run.obj.Error)
		}
		esNoFile(t, run.dest)
		noPartFiles(t, r.dir)
		all := r.proxy.objectGETs("/bkt/" + key)
		if len(all) < 2 || all[0].IfMatch != "" || all[1].IfMatch != oldETag || all[1].Status != http.StatusPreconditionFailed {
			t.Errorf("GETs %+v: want the first unpinned, the second pinned to %s and refused with 412", all, oldETag)
		}
		t.Logf("overwritten, pinned: failed %s after the release (%d GETs): %s", run.took.Round(time.Millisecond), len(all), run.obj.Error)
	})

	// A server (or a proxy) that sends no ETag and no total size leaves
	// nothing to tie the chunks to one version: the object fails rather
	// than land whatever the chunks got (found by a red-team run: a file
	// mixing two versions was recorded a success).
	t.Run("responses without ETag or total size fail", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 2)
		r.proxy.SetTamper(func(q *http.Request, resp *http.Response) {
			if q.Method == http.MethodGet && q.URL.Path == "/bkt/big.bin" {
				resp.Header.Del("ETag")
				if cr := resp.Header.Get("Content-Range"); cr != "" {
					resp.Header.Set("Content-Range", cr[:strings.LastIndexByte(cr, '/')]+"/*")
				}
			}
		})
		fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, "big.bin", esSize(bigSize))
		run = r.wait(t, run, began, 20*time.Second)
		if run.obj.State != ledger.Failed || !strings.Contains(run.obj.Error, "names no ETag or no total size") {
			t.Fatalf("object %s %q: want failed, the responses tying nothing together", run.obj.State, run.obj.Error)
		}
		esNoFile(t, run.dest)
		noPartFiles(t, r.dir)
	})

	// Two chunks are fetched at once, before any ETag is known, so neither
	// is pinned; the object is replaced between the two: the second chunk's
	// response carries another ETag, and the object fails.
	t.Run("overwritten: concurrent chunk sees another ETag", func(t *testing.T) {
		t.Parallel()
		key := "changing-concurrent.bin"
		srv.PutRandom(t, "bkt", key, bigSize, false)
		oldETag := etagOf(t, key)
		r := newESRig(t, srv, 2)
		second, releaseSecond, releaseRest := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var once1, once2 sync.Once
		defer once1.Do(func() { close(releaseSecond) })
		defer once2.Do(func() { close(releaseRest) })
		var gets atomic.Int64
		r.proxy.setGate(func(q *http.Request) {
			if q.Method != http.MethodGet || q.URL.Path != "/bkt/"+key {
				return
			}
			var wait <-chan struct{}
			switch gets.Add(1) {
			case 1:
				wait = second // the first waits for the second, so neither knows the ETag
			case 2:
				close(second)
				wait = releaseSecond
			default:
				wait = releaseRest
			}
			select {
			case <-wait:
			case <-q.Context().Done():
			}
		})
		stop := fleettest.StartWorker(t, r.cfg)
		run, began := r.submit(t, key, esSize(bigSize))
		id := run.sumTransfer(t, r)
		esEventually(t, 20*time.Second, "the first chunk landed", func() bool {
			x, err := r.c.Ledger.GetTransfer(context.Background(), id)
			return err == nil && x.SourceETag != "" && x.BytesDone == 2*mib
		})
		if x, _ := r.c.Ledger.GetTransfer(context.Background(), id); x.SourceETag != oldETag {
			t.Fatalf("source_etag %q, want %q", x.SourceETag, oldETag)
		}
		srv.PutRandom(t, "bkt", key, bigSize, false)
		once1.Do(func() { close(releaseSecond) })
		run = r.wait(t, run, began, 20*time.Second)
		once2.Do(func() { close(releaseRest) })
		stop()
		if run.obj.State != ledger.Failed || !strings.Contains(run.obj.Error, "changed during the download") {
			t.Fatalf("object %s %q: want failed, changed during the download", run.obj.State, run.obj.Error)
		}
		esNoFile(t, run.dest)
		noPartFiles(t, r.dir)
		// The first two GETs, in the order they reached the proxy, which
		// need not be the order the gate let them on: one got the old
		// ETag, the other (held until the object was replaced) the new.
		all := r.proxy.objectGETs("/bkt/" + key)
		if len(all) < 2 || all[0].IfMatch != "" || all[1].IfMatch != "" ||
			(all[0].ETag == oldETag) == (all[1].ETag == oldETag) || all[0].Status != http.StatusPartialContent || all[1].Status != http.StatusPartialContent {
			t.Errorf("GETs %+v: want two unpinned, answered 206, one with the old ETag %s and one with the new", all, oldETag)
		}
		t.Logf("overwritten, concurrent: failed (%d GETs): %s", len(all), run.obj.Error)
	})

	t.Run("usage errors record nothing", func(t *testing.T) {
		t.Parallel()
		r := newESRig(t, srv, 4)
		for _, tc := range []struct {
			name string
			req  enqueuer.Request
		}{
			{"verify required", enqueuer.Request{Sources: []string{"s3://bkt/big.bin"}, Dest: r.dir + "/a", ExpectedSize: esSize(bigSize), Verify: "required"}},
			{"verify required, zero", enqueuer.Request{Sources: []string{"s3://bkt/empty.bin"}, Dest: r.dir + "/b", ExpectedSize: esSize(0), Verify: "required"}},
			{"negative", enqueuer.Request{Sources: []string{"s3://bkt/big.bin"}, Dest: r.dir + "/c", ExpectedSize: esSize(-1)}},
			{"prefix", enqueuer.Request{Sources: []string{"s3://bkt/"}, Dest: r.dir + "/", ExpectedSize: esSize(bigSize)}},
			{"two keys", enqueuer.Request{Sources: []string{"s3://bkt/big.bin", "s3://bkt/small.bin"}, Dest: r.dir + "/", ExpectedSize: esSize(bigSize)}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := r.c.Submit(ctx, tc.req)
			cancel()
			if !errors.Is(err, enqueuer.ErrUsage) {
				t.Errorf("%s: error %v, want a usage error", tc.name, err)
			} else {
				t.Logf("%s: %v", tc.name, err)
			}
		}
		if keys, _ := r.f.Redis.Client(t).Keys(context.Background(), "*").Result(); len(keys) != 0 {
			t.Errorf("usage errors left keys in Redis: %v", keys)
		}
		if n := len(r.proxy.requests()); n != 0 {
			t.Errorf("usage errors sent %d requests to S3", n)
		}
		if entries, _ := os.ReadDir(r.dir); len(entries) != 0 {
			t.Errorf("usage errors left files: %v", entries)
		}
	})
}

// sumTransfer returns the ID of the run's one transfer.
func (run esRun) sumTransfer(t *testing.T, r *esRig) string {
	t.Helper()
	var id string
	err := r.c.Ledger.JobObjects(context.Background(), run.sum.Job, func(o ledger.JobObject) error {
		id = o.ID
		return nil
	})
	if err != nil || id == "" {
		t.Fatalf("the job's transfer: %q %v", id, err)
	}
	return id
}
