package worker_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// copyRig is two S3 servers with different credentials: versitygw as the
// top-level endpoint (s3://, credentials from the environment) and MinIO
// as the remote "minio" (minio://, credentials from an AWS profile), with
// a fleet whose workers may write to minio://dst/ and s3://back/ only.
type copyRig struct {
	f      *fleettest.Fleet
	m      *testenv.MinIO
	vc, mc *s3.Client // versitygw's and MinIO's clients
	cfg    config.Config
	c      *fleettest.Client
}

// newCopyRig starts the servers (MinIO over TLS when tls), the buckets and
// the configuration; workers are for the test to start. It sets the
// process's environment (the profile's files, the CA bundle), so its
// tests do not run in parallel.
func newCopyRig(t *testing.T, tls bool) *copyRig {
	t.Helper()
	return newCopyRigWith(t, testenv.MinIOOptions{TLS: tls})
}

// newCopyRigWith is newCopyRig with MinIO started with opts.
func newCopyRigWith(t *testing.T, opts testenv.MinIOOptions) *copyRig {
	t.Helper()
	needMinIOBinary(t)
	tls := opts.TLS
	r := &copyRig{f: fleettest.New(t), m: testenv.StartMinIO(t, opts)}
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[minio]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		r.m.AccessKey, r.m.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	if tls {
		t.Setenv("AWS_CA_BUNDLE", r.m.CAFile)
	}
	r.vc, r.mc = r.f.S3.Client(t), r.m.Client(t)
	r.f.S3.CreateBucket(t, "src")
	r.f.S3.CreateBucket(t, "back")
	for _, b := range []string{"dst", "other"} {
		if _, err := r.mc.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	r.cfg = r.f.Config()
	r.cfg.Remotes = map[string]config.Remote{"minio": {Endpoint: r.m.Endpoint, Region: testenv.Region, PathStyle: true, Profile: "minio"}}
	r.cfg.AllowWrite = []string{"minio://dst/", "s3://back/"}
	r.c = fleettest.NewClient(t, r.cfg)
	return r
}

// put stores an object with content headers and user metadata.
func put(t *testing.T, c *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentType: aws.String("application/x-test"), CacheControl: aws.String("max-age=60"), ContentDisposition: aws.String("attachment"),
		Metadata: map[string]string{"origin": "s3fleet-test"}})
	if err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCopied checks that the object at bucket/key has exactly data, the
// test's content headers and metadata, and a FULL_OBJECT checksum of the
// source's algorithm (CRC32, as the SDK puts objects by default) that is
// the data's.
func wantCopied(t *testing.T, c *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("get %s/%q: %v", bucket, key, err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("%s/%q: %d bytes differ from the source's %d", bucket, key, len(got), len(data))
	}
	if aws.ToString(out.ContentType) != "application/x-test" || aws.ToString(out.CacheControl) != "max-age=60" ||
		aws.ToString(out.ContentDisposition) != "attachment" || out.Metadata["origin"] != "s3fleet-test" {
		t.Errorf("%s/%q lost its headers or metadata: type %q cache %q disposition %q metadata %v", bucket, key,
			aws.ToString(out.ContentType), aws.ToString(out.CacheControl), aws.ToString(out.ContentDisposition), out.Metadata)
	}
	want := checksum.Encode(checksum.CRC32, checksum.Update(checksum.CRC32, 0, data))
	if got := aws.ToString(out.ChecksumCRC32); got != want || out.ChecksumType != types.ChecksumTypeFullObject {
		t.Errorf("%s/%q: CRC32 %q (type %s), want %q FULL_OBJECT", bucket, key, got, out.ChecksumType, want)
	}
}

// noUploads fails unless bucket has no multipart upload in progress
// (waiting a little: a worker's sweep may still be aborting one).
func noUploads(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
		if err != nil {
			t.Fatalf("list uploads of %s: %v", bucket, err)
		}
		if len(out.Uploads) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d multipart uploads left in %s, first %q", len(out.Uploads), bucket, aws.ToString(out.Uploads[0].Key))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantCopiedBytes checks the bytes of an object and its metadata only.
func wantCopiedBytes(t *testing.T, c *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	if out := sameBytes(t, c, bucket, key, data); out.Metadata["origin"] != "s3fleet-test" {
		t.Errorf("%s/%q lost its metadata: %v", bucket, key, out.Metadata)
	}
}

// sameBytes checks an object's bytes, and returns its headers.
func sameBytes(t *testing.T, c *s3.Client, bucket, key string, data []byte) *s3.GetObjectOutput {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%q: %v", bucket, key, err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("%s/%q: %d bytes differ from the source's %d (%v)", bucket, key, len(got), len(data), err)
	}
	return out
}

// uploadStarted waits (30 s at most) until bucket has a multipart upload
// in progress.
func uploadStarted(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
		if err == nil && len(out.Uploads) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no multipart upload started")
		}
	}
}

func noObject(t *testing.T, c *s3.Client, bucket, key string) {
	t.Helper()
	if _, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil {
		t.Errorf("%s/%q exists", bucket, key)
	}
}

// oddKeys are keys a copy must keep as they are (versitygw, a POSIX
// gateway, folds "a//b" and "./" itself: those are tested where the
// store keeps them).
var oddKeys = []string{"p/sp ace+plus", "p/ü/日本語.txt", "p/" + strings.Repeat("n", 250), "p/%41", "p/new\nline", "p/q?x=1&y=#h"}

// TestCopyAcrossEndpoints copies a prefix from versitygw to MinIO (each
// with its own credentials) and back: a large object through multipart
// uploads (chunks streamed into parts), small ones with odd keys whole in
// batches. Every byte arrives, with its headers and metadata, under a
// checksum S3 itself checked, and no upload is left.
func TestCopyAcrossEndpoints(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "tls"}[tls], func(t *testing.T) {
			r := newCopyRig(t, tls)
			fleettest.StartWorker(t, r.cfg)
			fleettest.StartWorker(t, r.cfg)
			size := 48*mib + 12345
			if !tls {
				size = 256*mib + 12345
			}
			big := randomBytes(t, size)
			put(t, r.vc, "src", "p/big.bin", big)
			small := map[string][]byte{}
			for i, k := range oddKeys {
				small[k] = randomBytes(t, 1000*i+1)
				put(t, r.vc, "src", k, small[k])
			}
			ctx := context.Background()
			sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/p/", "minio://dst/copy/"))
			if err != nil {
				t.Fatal(err)
			}
			j := r.c.Wait(t, sum.Job, 3*time.Minute)
			if j.Succeeded != int64(len(oddKeys)+1) || j.Failed != 0 {
				r.c.LogObjects(t, sum.Job)
				t.Fatalf("job %+v", j)
			}
			for _, o := range r.c.Objects(t, sum.Job) {
				if o.Check != "crc32" {
					t.Errorf("%s: check %q (%s), want crc32 (the source's)", o.Key, o.Check, o.CheckReason)
				}
			}
			wantCopied(t, r.mc, "dst", "copy/big.bin", big)
			for k, data := range small {
				wantCopied(t, r.mc, "dst", "copy/"+strings.TrimPrefix(k, "p/"), data)
			}
			noUploads(t, r.mc, "dst")

			// Back, from the remote to the top-level endpoint.
			sum, err = r.c.Submit(ctx, fleettest.Request("minio://dst/copy/", "s3://back/"))
			if err != nil {
				t.Fatal(err)
			}
			if j := r.c.Wait(t, sum.Job, 3*time.Minute); j.Succeeded != int64(len(oddKeys)+1) {
				t.Fatalf("copy back: %+v", j)
			}
			wantCopied(t, r.vc, "back", "big.bin", big)
			for k, data := range small {
				wantCopied(t, r.vc, "back", strings.TrimPrefix(k, "p/"), data)
			}
			noUploads(t, r.vc, "back")
		})
	}
}

// TestCopyRefusals: an existing destination is not replaced without
// --overwrite (large and small, and nothing is uploaded), and a
// destination outside allow_write is refused by the workers.
func TestCopyRefusals(t *testing.T) {
	r := newCopyRig(t, false)
	fleettest.StartWorker(t, r.cfg)
	ctx := context.Background()
	big, small := randomBytes(t, 12*mib), randomBytes(t, 100)
	put(t, r.vc, "src", "in/big", big)
	put(t, r.vc, "src", "in/small", small)
	for _, k := range []string{"out/big", "out/small"} {
		put(t, r.mc, "dst", k, []byte("already here"))
	}
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/in/", "minio://dst/out/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for k, o := range r.c.Objects(t, sum.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists (use --overwrite") {
			t.Errorf("%s over an existing object: %s %q", k, o.State, o.Error)
		}
	}
	noUploads(t, r.mc, "dst")

	req := fleettest.Request("s3://src/in/", "minio://dst/out/")
	req.Overwrite, req.Job = true, "again"
	if _, err := r.c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, "again", time.Minute); j.Succeeded != 2 {
		t.Fatalf("with --overwrite: %+v", j)
	}
	wantCopied(t, r.mc, "dst", "out/big", big)
	wantCopied(t, r.mc, "dst", "out/small", small)

	sum, err = r.c.Submit(ctx, fleettest.Request("s3://src/in/", "minio://other/x/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for k, o := range r.c.Objects(t, sum.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "allow_write") {
			t.Errorf("%s to a bucket outside allow_write: %s %q", k, o.State, o.Error)
		}
	}
	noObject(t, r.mc, "other", "x/big")
	noObject(t, r.mc, "other", "x/small")
	noUploads(t, r.mc, "other")

	_, err = r.c.Submit(ctx, fleettest.Request("s3://src/in/", "dst://out/x/"))
	if !errors.Is(err, enqueuer.ErrUsage) || !strings.Contains(err.Error(), "the configured remotes are minio") {
		t.Errorf("an unknown remote: %v, want a usage error listing minio", err)
	}
}

// TestPutFoundDone: a small copy across endpoints (a PUT with
// If-None-Match) that finds at its key an object with its bytes, as when
// its answer was lost or its batch ran again, counts it done: its CRC and
// MD5 ETag are the bytes'. An object of other bytes forged to the same
// size and CRC32 (the source's algorithm) is refused and left alone.
func TestPutFoundDone(t *testing.T) {
	r := newCopyRig(t, false)
	fleettest.StartWorker(t, r.cfg)
	ctx := context.Background()
	same := randomBytes(t, 300)
	forged := forgeCRC32(t, same)
	put(t, r.vc, "src", "in/same", same)
	put(t, r.vc, "src", "in/forged", same)
	for k, b := range map[string][]byte{"out/same": same, "out/forged": forged} {
		if _, err := r.mc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("dst"), Key: aws.String(k), Body: bytes.NewReader(b),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/in/", "minio://dst/out/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	objs := r.c.Objects(t, sum.Job)
	if o := objs["in/same"]; o.State != ledger.Success {
		t.Errorf("in/same over its own bytes: %s %q, want success", o.State, o.Error)
	}
	if o := objs["in/forged"]; o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
		t.Errorf("in/forged over other bytes of its CRC32: %s %q, want refused", o.State, o.Error)
	}
	sameBytes(t, r.mc, "dst", "out/forged", forged)
}

// TestUploadFoundDone: a large copy across endpoints whose completion's
// answer is lost (the proxy turns it into a 500; the SDK retries and is
// refused) finds its own object and succeeds; one whose key gets, just
// before its completion, an object of other bytes forged to the same size
// and CRC32 is refused, as the found object's ETag is not the one its
// parts make, and that object stays.
func TestUploadFoundDone(t *testing.T) {
	r := newCopyRig(t, false)
	proxy := testenv.StartProxy(t, r.m.Endpoint)
	cfg := r.cfg
	cfg.Remotes = maps.Clone(r.cfg.Remotes)
	remote := cfg.Remotes["minio"]
	remote.Endpoint = proxy.URL
	cfg.Remotes["minio"] = remote
	vproxy := testenv.StartProxy(t, r.f.S3.Endpoint) // versitygw, a destination too (s3://back/)
	cfg.Endpoint = vproxy.URL
	fleettest.StartWorker(t, cfg)
	ctx := context.Background()
	big := randomBytes(t, 12*mib)
	forged := forgeCRC32(t, big)
	put(t, r.vc, "src", "in/lost", big)
	put(t, r.vc, "src", "in/forged", big)
	completion := func(q *http.Request, path string) bool {
		return q.Method == http.MethodPost && q.URL.Path == path && q.URL.Query().Has("uploadId")
	}
	var planted, lost atomic.Bool
	proxy.SetGate(func(q *http.Request) {
		if completion(q, "/dst/out/forged") && !planted.Swap(true) {
			if _, err := r.mc.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("dst"), Key: aws.String("out/forged"),
				Body: bytes.NewReader(forged), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32}); err != nil {
				t.Error(err)
			}
		}
	})
	// loseAnswer turns the first answer to a completion at path into a 500.
	loseAnswer := func(path string, lost *atomic.Bool) func(*http.Request, *http.Response) {
		return func(q *http.Request, resp *http.Response) {
			if completion(q, path) && resp.StatusCode == http.StatusOK && !lost.Swap(true) {
				body := []byte("<Error><Code>InternalError</Code><Message>lost</Message></Error>")
				resp.StatusCode, resp.Status = http.StatusInternalServerError, "500 Internal Server Error"
				resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
				resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			}
		}
	}
	var lostBack atomic.Bool
	proxy.SetTamper(loseAnswer("/dst/out/lost", &lost))
	vproxy.SetTamper(loseAnswer("/back/lost", &lostBack))
	c := fleettest.NewClient(t, cfg) // the remote's fingerprint is the proxy's
	sum, err := c.Submit(ctx, fleettest.Request("s3://src/in/", "minio://dst/out/"))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	objs := c.Objects(t, sum.Job)
	if o := objs["in/lost"]; o.State != ledger.Success || !lost.Load() {
		t.Errorf("in/lost, its completion's answer lost (%v): %s %q, want success", lost.Load(), o.State, o.Error)
	}
	if o := objs["in/forged"]; o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") || !planted.Load() {
		t.Errorf("in/forged, other bytes of its CRC32 put at its key (%v): %s %q, want refused", planted.Load(), o.State, o.Error)
	}
	sameBytes(t, r.mc, "dst", "out/lost", big)
	sameBytes(t, r.mc, "dst", "out/forged", forged)

	// The same lost answer from versitygw, whose multipart ETags are made
	// the same way.
	sum, err = c.Submit(ctx, fleettest.Request("s3://src/in/lost", "s3://back/lost"))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 || !lostBack.Load() {
		c.LogObjects(t, sum.Job)
		t.Errorf("to versitygw, its completion's answer lost (%v): %+v, want success", lostBack.Load(), j)
	}
	sameBytes(t, r.vc, "back", "lost", big)
}

// forgeCRC32 returns other bytes of b's length and CRC32: CRC32 is affine
// over GF(2), so among the changes of one bit in b's first 5 bytes (40,
// each moving the CRC by a 32-bit vector) some set moves it by nothing;
// Gaussian elimination finds one.
func forgeCRC32(t *testing.T, b []byte) []byte {
	t.Helper()
	zero := crc32.ChecksumIEEE(make([]byte, len(b)))
	type row struct {
		v   uint32 // the CRC's move
		set uint64 // the bits flipped to make it
	}
	var basis []row
	e := make([]byte, len(b))
	for i := range 40 {
		e[i/8] = 1 << (i % 8)
		r := row{crc32.ChecksumIEEE(e) ^ zero, 1 << i}
		e[i/8] = 0
		for _, p := range basis {
			if r.v^p.v < r.v {
				r.v, r.set = r.v^p.v, r.set^p.set
			}
		}
		if r.v == 0 {
			out := slices.Clone(b)
			for j := range 40 {
				if r.set&(1<<j) != 0 {
					out[j/8] ^= 1 << (j % 8)
				}
			}
			if crc32.ChecksumIEEE(out) != crc32.ChecksumIEEE(b) || bytes.Equal(out, b) {
				t.Fatal("forgeCRC32: no forgery")
			}
			return out
		}
		basis = append(basis, r)
		slices.SortFunc(basis, func(a, b row) int { return cmp.Compare(b.v, a.v) })
	}
	t.Fatal("forgeCRC32: 40 bits and no dependency")
	return nil
}

// TestCopySourceChanged: a source overwritten while its chunks are being
// copied fails the object with that cause, leaves no object at the
// destination and aborts the upload.
func TestCopySourceChanged(t *testing.T) {
	r := newCopyRig(t, false)
	proxy := testenv.StartProxy(t, r.f.S3.Endpoint)
	var gets atomic.Int32
	proxy.SetGate(func(req *http.Request) {
		if req.Method == http.MethodGet && req.Header.Get("Range") != "" && gets.Add(1) == 3 {
			put(t, r.vc, "src", "obj", randomBytes(t, 20*mib)) // a new version, mid-copy
		}
	})
	wcfg := r.cfg
	wcfg.Endpoint = proxy.URL
	fleettest.StartWorker(t, wcfg)
	put(t, r.vc, "src", "obj", randomBytes(t, 20*mib))
	sum, err := r.c.Submit(context.Background(), fleettest.Request("s3://src/obj", "minio://dst/obj"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	o := r.c.Objects(t, sum.Job)["obj"]
	if o.State != ledger.Failed || !strings.Contains(o.Error, "source changed") {
		t.Fatalf("object %s %q, want failed: source changed", o.State, o.Error)
	}
	noObject(t, r.mc, "dst", "obj")
	noUploads(t, r.mc, "dst")
}

// TestCopyCancel: cancelling a job mid-copy aborts its upload.
func TestCopyCancel(t *testing.T) {
	r := newCopyRig(t, false)
	wcfg := r.cfg
	wcfg.Bandwidth = 4 * mib // slow enough to cancel mid-copy
	fleettest.StartWorker(t, wcfg)
	put(t, r.vc, "src", "slow", randomBytes(t, 40*mib))
	ctx := context.Background()
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/slow", "minio://dst/slow"))
	if err != nil {
		t.Fatal(err)
	}
	uploadStarted(t, r.mc, "dst")
	if _, err := r.c.Cancel(ctx, sum.Job); err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Cancelled != 1 {
		t.Fatalf("job %+v", j)
	}
	noUploads(t, r.mc, "dst")
	noObject(t, r.mc, "dst", "slow")
}

// TestCopyRemoteFingerprint: a worker whose remote of the same name is
// another endpoint refuses the enqueuer's tasks for it rather than copy
// to the wrong store.
func TestCopyRemoteFingerprint(t *testing.T) {
	r := newCopyRig(t, false)
	proxy := testenv.StartProxy(t, r.m.Endpoint) // the same store, but another endpoint as far as names go
	wcfg := r.cfg
	wcfg.Remotes = map[string]config.Remote{"minio": {Endpoint: proxy.URL, Region: testenv.Region, PathStyle: true, Profile: "minio"}}
	fleettest.StartWorker(t, wcfg)
	put(t, r.vc, "src", "k", randomBytes(t, 10))
	sum, err := r.c.Submit(context.Background(), fleettest.Request("s3://src/k", "minio://dst/k"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	if o := r.c.Objects(t, sum.Job)["k"]; o.State != ledger.Failed || !strings.Contains(o.Error, "means another endpoint") {
		t.Fatalf("object %s %q, want refused: another endpoint", o.State, o.Error)
	}
	noObject(t, r.mc, "dst", "k")
}

// TestServerSideCopy: within one endpoint S3 copies the bytes itself
// (UploadPartCopy for a large object, CopyObject for small ones): no GET
// of the source's bytes reaches S3 from a worker, the copies keep their
// headers and metadata, and the copy's checksum is compared with the
// source's where both are of one algorithm (versitygw gives a copy
// without one CRC64NVME, as S3 does).
func TestServerSideCopy(t *testing.T) {
	r := newCopyRig(t, false)
	proxy := testenv.StartProxy(t, r.f.S3.Endpoint)
	wcfg := r.cfg
	wcfg.Endpoint = proxy.URL // the workers' own view of s3://: seen by the proxy
	fleettest.StartWorker(t, wcfg)
	ctx := context.Background()
	big := randomBytes(t, 20*mib+5)
	_, err := r.vc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String("ss/big"), Body: bytes.NewReader(big),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme, ContentType: aws.String("application/x-test"),
		CacheControl: aws.String("max-age=60"), ContentDisposition: aws.String("attachment"), Metadata: map[string]string{"origin": "s3fleet-test"}})
	if err != nil {
		t.Fatal(err)
	}
	crc32Big := randomBytes(t, 6*mib)
	put(t, r.vc, "src", "ss/crc32-big", crc32Big) // CRC32: the copy's CRC64NVME is not comparable
	small := map[string][]byte{}
	for i, k := range oddKeys {
		small[k] = randomBytes(t, 100*i+1)
		put(t, r.vc, "src", "ss/"+strings.TrimPrefix(k, "p/"), small[k])
	}
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/ss/", "s3://back/ss/"))
	if err != nil {
		t.Fatal(err)
	}
	j := r.c.Wait(t, sum.Job, 2*time.Minute)
	objs := r.c.Objects(t, sum.Job)
	if j.Succeeded != int64(len(oddKeys)+2) {
		for _, o := range objs {
			t.Logf("%s: %s %s", o.Key, o.State, o.Error)
		}
		t.Fatalf("job %+v", j)
	}
	for _, seen := range proxy.Requests() {
		if seen.Method == http.MethodGet && strings.HasPrefix(seen.Path, "/src/") && !strings.HasPrefix(seen.Query, "tagging") {
			t.Errorf("a worker read the source's bytes: %s %s?%s %s", seen.Method, seen.Path, seen.Query, seen.Range)
		}
	}
	if o := objs["ss/big"]; o.Check != "crc64nvme" || o.Chunks < 1 {
		t.Errorf("big: check %q (%s), chunks %d; want crc64nvme", o.Check, o.CheckReason, o.Chunks)
	}
	if o := objs["ss/crc32-big"]; o.Check != "none" || !strings.Contains(o.CheckReason, "not of one algorithm") {
		t.Errorf("crc32-big: check %q (%s), want none: not of one algorithm", o.Check, o.CheckReason)
	}
	got, err := r.vc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("back"), Key: aws.String("ss/big")})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !bytes.Equal(data, big) || aws.ToString(got.ContentType) != "application/x-test" || got.Metadata["origin"] != "s3fleet-test" {
		t.Errorf("big copy: %d bytes (equal %v), type %q, metadata %v", len(data), bytes.Equal(data, big), aws.ToString(got.ContentType), got.Metadata)
	}
	for k, data := range small {
		wantCopied(t, r.vc, "back", "ss/"+strings.TrimPrefix(k, "p/"), data)
	}
	noUploads(t, r.vc, "back")

	// MinIO copies server-side too (a copy it keeps no checksum for: none).
	put(t, r.mc, "dst", "in/big", big)
	sum, err = r.c.Submit(ctx, fleettest.Request("minio://dst/in/big", "minio://dst/out/big"))
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("server-side on MinIO: %+v %+v", j, r.c.Objects(t, sum.Job))
	}
	wantCopiedBytes(t, r.mc, "dst", "out/big", big)
	noUploads(t, r.mc, "dst")

	// Under --verify required the copy goes through the workers, where
	// every byte is checked against the source's checksum.
	req := fleettest.Request("s3://src/ss/crc32-big", "s3://back/req/crc32-big")
	req.Verify = "required"
	sum, err = r.c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	if o := r.c.Objects(t, sum.Job)["ss/crc32-big"]; o.State != ledger.Success || o.Check != "crc32" {
		t.Errorf("required: %s check %q (%s %s), want success crc32", o.State, o.Check, o.CheckReason, o.Error)
	}
}

// newCountedRig starts versitygw with bucket bkt (vc: a client straight
// to it), and a worker that may write under s3://bkt/to/ and reaches it
// through proxy, which notes its every request.
func newCountedRig(t *testing.T) (*fleettest.Fleet, *s3.Client, *testenv.Proxy) {
	t.Helper()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	cfg.AllowWrite = []string{"s3://bkt/to/"}
	fleettest.StartWorker(t, cfg)
	return f, f.S3.Client(t), proxy
}

// TestServerSideCopyRequests counts what a server-side copy of small
// objects asks of S3: a CopyObject an object and a listing a batch, with
// no HEAD of a destination (the batch's listing shows its keys free) nor
// of a source (the copy's ETag is the source's MD5: check md5). An
// object already at its destination is still refused, after a HEAD, and
// one whose ETag is no MD5 (a multipart upload's) is checked by its
// checksum, after a HEAD of its source.
func TestServerSideCopyRequests(t *testing.T) {
	t.Parallel()
	f, vc, proxy := newCountedRig(t)
	ctx := context.Background()
	const n = 40
	data := map[string][]byte{}
	for i := range n {
		k := fmt.Sprintf("k%02d", i)
		data[k] = randomBytes(t, 100*i+1)
		put(t, vc, "bkt", "from/"+k, data[k])
	}
	put(t, vc, "bkt", "to/k07", []byte("precious"))
	data["mp"] = randomBytes(t, 1000)
	putOnePart(t, vc, "bkt", "from/mp", data["mp"])

	// k05's copy result names another MD5: its ETag cannot vouch for it,
	// and its source's checksum is read instead. Each copy takes 60 ms, so
	// the batch outlives its listing's trust and lists the rest again.
	eTagOf := regexp.MustCompile(`(<ETag>(?:&#34;|&quot;|")?)[0-9a-f]{32}`)
	proxy.SetTamper(func(r *http.Request, resp *http.Response) {
		if r.Method != http.MethodPut || r.URL.Path != "/bkt/to/k05" || resp.StatusCode != http.StatusOK {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		b = eTagOf.ReplaceAll(b, []byte("${1}00000000000000000000000000000000"))
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	})
	proxy.SetGate(func(r *http.Request) {
		if r.Method == http.MethodPut {
			time.Sleep(60 * time.Millisecond)
		}
	})
	c := fleettest.NewClient(t, f.Config()) // enqueues past the proxy: it counts the workers
	sum, err := c.Submit(ctx, fleettest.Request("s3://bkt/from/", "s3://bkt/to/"))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	for k, o := range c.Objects(t, sum.Job) {
		k = strings.TrimPrefix(k, "from/")
		switch {
		case k == "k07":
			if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
				t.Errorf("%s over an existing object: %s %q, want refused", k, o.State, o.Error)
			}
			sameBytes(t, vc, "bkt", "to/k07", []byte("precious"))
		case o.State != ledger.Success:
			t.Errorf("%s: %s %q", k, o.State, o.Error)
		case (k == "mp" || k == "k05") && o.Check == "md5":
			t.Errorf("%s: check md5, but its ETag %q is a multipart upload's, or its copy's another", k, o.ETag)
		case k != "mp" && k != "k05" && o.Check != "md5":
			t.Errorf("%s: check %q (%s), want md5", k, o.Check, o.CheckReason)
		default:
			sameBytes(t, vc, "bkt", "to/"+k, data[k])
		}
	}

	heads, copies, lists := map[string]int{}, 0, 0
	var listedAt []time.Time
	for _, r := range proxy.Requests() {
		switch {
		case r.Method == http.MethodHead:
			heads[r.Path]++
		case r.Method == http.MethodPut && strings.HasPrefix(r.Path, "/bkt/to/"):
			copies++
		case r.Method == http.MethodGet && strings.Contains(r.Query, "list-type=2"):
			lists++
			listedAt = append(listedAt, r.At)
		default:
			t.Errorf("a worker asked %s %s?%s", r.Method, r.Path, r.Query)
		}
	}
	if want := map[string]int{"/bkt/to/k07": 1, "/bkt/from/mp": 1, "/bkt/from/k05": 1}; !maps.Equal(heads, want) {
		t.Errorf("HEADs %v, want only %v", heads, want)
	}
	// 40 copies of 60 ms in one batch a Redis shard (a sharded ledger
	// splits them): each batch lists once, and again once its listing is
	// 2 s old (listTrust), never sooner, however slow the machine. So no
	// more listings than batches fall within 1.5 s (the slack is the time
	// from a batch's clock to the proxy's).
	batches := max(f.Config().RedisShards, 1)
	if copies != n || lists < 2 {
		t.Errorf("%d copies and %d listings, want %d copies (one an object, k07 refused) and 2 or more listings (one a batch, and one more each listTrust)", copies, lists, n)
	}
	for i, at := range listedAt {
		within := 0
		for _, b := range listedAt[i:] {
			if b.Sub(at) < 1500*time.Millisecond {
				within++
			}
		}
		if within > batches {
			t.Errorf("listings %d and on: %d within 1.5 s, want at most %d (one a batch each listTrust): a listing an object?", i+1, within, batches)
			break
		}
	}

	// A destination key with an empty segment is stored by versitygw as
	// the key without it, which a listing shows under another name: its
	// HEAD still finds the object there, which stays.
	proxy.SetTamper(nil)
	proxy.SetGate(nil)
	put(t, vc, "bkt", "to/dd/k00", []byte("precious"))
	sum, err = c.Submit(ctx, fleettest.Request("s3://bkt/from/", "s3://bkt/to/dd//"))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	if o := c.Objects(t, sum.Job)["from/k00"]; o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
		t.Errorf("k00 to to/dd//k00, where versitygw keeps to/dd/k00: %s %q, want refused", o.State, o.Error)
	}
	sameBytes(t, vc, "bkt", "to/dd/k00", []byte("precious"))
}

// TestCopyFoundDone: a small copy whose destination already holds it (a
// run of its batch copied it and was lost before recording it, made here
// by hand) succeeds without copying again, judged by its size, MD5 ETag
// and headers against the source's, or, copied from a multipart source
// (whose ETag cannot say), by both objects' bytes. An object there with
// other bytes (of a single-part source or of a multipart one), or with the
// same bytes but another Content-Type, is refused and left alone.
func TestCopyFoundDone(t *testing.T) {
	t.Parallel()
	f, vc, proxy := newCountedRig(t)
	ctx := context.Background()
	data := map[string][]byte{"a": randomBytes(t, 3000), "b": randomBytes(t, 3000), "c": randomBytes(t, 10), "d": randomBytes(t, 20),
		"mp": randomBytes(t, 2000), "mq": randomBytes(t, 2000)}
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, vc, "bkt", "from/"+k, data[k])
	}
	putOnePart(t, vc, "bkt", "from/mp", data["mp"])
	putOnePart(t, vc, "bkt", "from/mq", data["mq"])
	// The lost run's copies of a and mp (a multipart source, whose ETag
	// cannot tell: its bytes are read); b's and mq's keys hold other bytes
	// of their sizes, c's the same bytes as another type.
	for _, k := range []string{"a", "mp"} {
		if _, err := vc.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("bkt"), Key: aws.String("to/" + k), CopySource: aws.String("bkt/from/" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	other, otherMQ := randomBytes(t, 3000), randomBytes(t, 2000)
	put(t, vc, "bkt", "to/b", other)
	put(t, vc, "bkt", "to/mq", otherMQ)
	if _, err := vc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("to/c"), Body: bytes.NewReader(data["c"]), ContentType: aws.String("text/x-other")}); err != nil {
		t.Fatal(err)
	}

	c := fleettest.NewClient(t, f.Config())
	sum, err := c.Submit(ctx, fleettest.Request("s3://bkt/from/", "s3://bkt/to/"))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	for k, o := range c.Objects(t, sum.Job) {
		switch k = strings.TrimPrefix(k, "from/"); k {
		case "b", "c", "mq":
			if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
				t.Errorf("%s over another object: %s %q, want refused", k, o.State, o.Error)
			}
		case "a":
			if o.State != ledger.Success || o.Check != "md5" || !strings.Contains(o.CheckReason, "not copied again") {
				t.Errorf("a, found copied: %s check %q (%s %s), want success md5, not copied again", o.State, o.Check, o.CheckReason, o.Error)
			}
		case "mp":
			if o.State != ledger.Success || o.Check == "md5" || o.Check == "" || !strings.Contains(o.CheckReason, "both read and compared") {
				t.Errorf("mp, found copied: %s check %q (%s %s), want success by its bytes, not copied again", o.State, o.Check, o.CheckReason, o.Error)
			}
		default:
			if o.State != ledger.Success || o.Check != "md5" || o.CheckReason != "" {
				t.Errorf("%s: %s check %q (%s %s), want success md5", k, o.State, o.Check, o.CheckReason, o.Error)
			}
		}
	}
	sameBytes(t, vc, "bkt", "to/b", other)
	sameBytes(t, vc, "bkt", "to/mq", otherMQ)
	for _, k := range []string{"a", "c", "d", "mp"} {
		sameBytes(t, vc, "bkt", "to/"+k, data[k])
	}
	if h, err := vc.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("to/c")}); err != nil || aws.ToString(h.ContentType) != "text/x-other" {
		t.Errorf("to/c: %v, %v; want left as it was", h, err)
	}
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodPut && r.Path != "/bkt/to/d" {
			t.Errorf("a copy to %s, which held an object already", r.Path)
		}
	}
}

// TestCopyFoundDoneMinIO is TestCopyFoundDone's core on MinIO, the
// second implementation: a copy found made (by MinIO's own CopyObject,
// of a single-part source and of a multipart one) is done, not copied
// again; other bytes are refused; a free key is copied.
func TestCopyFoundDoneMinIO(t *testing.T) {
	r := newCopyRig(t, false)
	fleettest.StartWorker(t, r.cfg)
	ctx := context.Background()
	data := map[string][]byte{"a": randomBytes(t, 3000), "b": randomBytes(t, 3000), "d": randomBytes(t, 20), "mp": randomBytes(t, 2000)}
	for _, k := range []string{"a", "b", "d"} {
		put(t, r.mc, "dst", "from/"+k, data[k])
	}
	putOnePart(t, r.mc, "dst", "from/mp", data["mp"])
	for _, k := range []string{"a", "mp"} {
		if _, err := r.mc.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("dst"), Key: aws.String("to/" + k), CopySource: aws.String("dst/from/" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	other := randomBytes(t, 3000)
	put(t, r.mc, "dst", "to/b", other)
	sum, err := r.c.Submit(ctx, fleettest.Request("minio://dst/from/", "minio://dst/to/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for k, o := range r.c.Objects(t, sum.Job) {
		switch k = strings.TrimPrefix(k, "from/"); k {
		case "a":
			if o.State != ledger.Success || o.Check != "md5" || !strings.Contains(o.CheckReason, "not copied again") {
				t.Errorf("a, found copied: %s check %q (%s %s), want success md5, not copied again", o.State, o.Check, o.CheckReason, o.Error)
			}
		case "mp":
			if o.State != ledger.Success || !strings.Contains(o.CheckReason, "not copied again") {
				t.Errorf("mp (a multipart source), found copied: %s check %q (%s %s), want success, not copied again", o.State, o.Check, o.CheckReason, o.Error)
			}
		case "b":
			if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
				t.Errorf("b over another object: %s %q, want refused", o.State, o.Error)
			}
		default:
			if o.State != ledger.Success || o.CheckReason != "" {
				t.Errorf("%s: %s check %q (%s %s), want success, copied", k, o.State, o.Check, o.CheckReason, o.Error)
			}
		}
	}
	sameBytes(t, r.mc, "dst", "to/a", data["a"])
	sameBytes(t, r.mc, "dst", "to/mp", data["mp"])
	sameBytes(t, r.mc, "dst", "to/b", other)
	sameBytes(t, r.mc, "dst", "to/d", data["d"])
}

// putOnePart stores data as a multipart upload of one part: an object
// whose ETag ("…-1") is no MD5 of its bytes.
func putOnePart(t *testing.T, c *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	ctx := context.Background()
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	part, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}}); err != nil {
		t.Fatal(err)
	}
}

// TestUpload uploads a local tree through the fleet: a large file in
// parts read with pread, small files whole in batches, to MinIO and to
// versitygw; each object has the file's bytes under a CRC64NVME S3
// checked, a Content-Type from its extension and the file's mtime in its
// metadata. A symlink is left out. A file that changes while it uploads
// fails its object with no object and no upload left, and a worker
// without allow_source uploads nothing.
func TestUpload(t *testing.T) {
	r := newCopyRig(t, false)
	root := t.TempDir()
	files := map[string][]byte{"big.bin": randomBytes(t, 17*mib+3), "notes.txt": []byte("hello\n"), "ü/sp ace.json": []byte(`{"a":1}`), "empty": nil}
	testenv.WriteTree(t, root, files)
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "notes.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	noSource := fleettest.StartWorker(t, r.cfg) // no allow_source
	sum, err := r.c.Submit(ctx, fleettest.Request(root+"/", "minio://dst/refused/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for _, o := range r.c.Objects(t, sum.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "no allow_source") {
			t.Errorf("%s without allow_source: %s %q", o.Source(), o.State, o.Error)
		}
	}
	noSource()
	noUploads(t, r.mc, "dst")

	wcfg := r.cfg
	wcfg.AllowSource = []string{root}
	fast := fleettest.StartWorker(t, wcfg)
	for _, dest := range []struct {
		url    string
		c      *s3.Client
		bucket string
	}{{"minio://dst/up/", r.mc, "dst"}, {"s3://back/up/", r.vc, "back"}} {
		sum, err := r.c.Submit(ctx, fleettest.Request(root+"/", dest.url))
		if err != nil {
			t.Fatal(err)
		}
		j := r.c.Wait(t, sum.Job, time.Minute)
		if j.Succeeded != int64(len(files)) || j.Objects != int64(len(files)) {
			r.c.LogObjects(t, sum.Job)
			t.Fatalf("upload to %s: %+v", dest.url, j)
		}
		for name, data := range files {
			key := "up/" + name
			out, err := dest.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dest.bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatalf("get %s %s: %v", dest.bucket, key, err)
			}
			got, _ := io.ReadAll(out.Body)
			out.Body.Close()
			want := checksum.Encode(checksum.CRC64NVME, checksum.Update(checksum.CRC64NVME, 0, data))
			if !bytes.Equal(got, data) || aws.ToString(out.ChecksumCRC64NVME) != want {
				t.Errorf("%s %s: %d bytes (equal %v), CRC64NVME %q want %q", dest.bucket, key, len(got), bytes.Equal(got, data), aws.ToString(out.ChecksumCRC64NVME), want)
			}
			if name == "notes.txt" && (!strings.HasPrefix(aws.ToString(out.ContentType), "text/plain") || out.Metadata["mtime"] != "1748779200.123456789") {
				t.Errorf("%s %s: type %q, metadata %v", dest.bucket, key, aws.ToString(out.ContentType), out.Metadata)
			}
		}
		noObject(t, dest.c, dest.bucket, "up/link")
		noUploads(t, dest.c, dest.bucket)
	}

	// A file that changes mid-upload: the only worker is slowed, and the
	// file is rewritten once its upload has begun (a fast one could read
	// every byte first, and the upload would rightly succeed).
	fast()
	slow := wcfg
	slow.Bandwidth = 4 * mib
	fleettest.StartWorker(t, slow)
	big := filepath.Join(root, "big.bin")
	sum, err = r.c.Submit(ctx, fleettest.Request(big, "minio://dst/changing.bin"))
	if err != nil {
		t.Fatal(err)
	}
	uploadStarted(t, r.mc, "dst")
	if err := os.WriteFile(big, randomBytes(t, 17*mib+3), 0o644); err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for _, o := range r.c.Objects(t, sum.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "changed while it was uploading") {
			t.Errorf("a file changed mid-upload: %s %q", o.State, o.Error)
		}
	}
	noObject(t, r.mc, "dst", "changing.bin")
	noUploads(t, r.mc, "dst")
}

// TestCopyOneUpload: however many chunks start at once, an object's
// multipart upload is created once (the others wait for its ID).
func TestCopyOneUpload(t *testing.T) {
	r := newCopyRig(t, false)
	proxy := testenv.StartProxy(t, r.m.Endpoint)
	var creates atomic.Int32
	proxy.SetGate(func(req *http.Request) {
		if req.Method == http.MethodPost && req.URL.Query().Has("uploads") {
			creates.Add(1)
		}
	})
	cfg := r.cfg
	cfg.Remotes = map[string]config.Remote{"minio": {Endpoint: proxy.URL, Region: testenv.Region, PathStyle: true, Profile: "minio"}}
	cfg.Concurrency = 8
	fleettest.StartWorker(t, cfg)
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	data := randomBytes(t, 40*mib)
	put(t, r.vc, "src", "obj", data)
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://src/obj", "minio://dst/obj"))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("job %+v", j)
	}
	if n := creates.Load(); n != 1 {
		t.Errorf("%d multipart uploads created for one object, want 1", n)
	}
	wantCopied(t, r.mc, "dst", "obj", data)
	noUploads(t, r.mc, "dst")
}

// TestCopyChecksumKinds copies objects made as the SDKs make them (each
// algorithm or none, single PUTs chunked and batched, FULL_OBJECT and
// COMPOSITE multipart uploads) from versitygw to MinIO: every copy has
// its source's bytes, and each is checked against the source's checksum
// wherever one can be: a COMPOSITE CRC32C through the source's own parts,
// which the copy takes as its parts.
func TestCopyChecksumKinds(t *testing.T) {
	r := newCopyRig(t, false)
	fleettest.StartWorker(t, r.cfg)
	ctx := context.Background()
	want := map[string]string{}
	data := map[string][]byte{}
	for _, k := range ckKinds() {
		key := "kinds/" + k.name
		data[key] = randomBytes(t, int(k.size))
		if err := ckUpload(ctx, ckSDK(r.f.S3.Endpoint, k.bare), "src", key, k, data[key]); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		switch {
		case k.name == "mpu-composite-crc32c":
			want[key] = "crc32c-composite"
		case k.name == "mpu-composite-sha256" || k.name == "put-sha256" || k.name == "put-sha1":
			want[key] = "none" // chunked: a SHA is not combined from chunks, and a copy has no second read
		}
	}
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/kinds/", "minio://dst/kinds/"))
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, 2*time.Minute)
	for key, o := range r.c.Objects(t, sum.Job) {
		w, ok := want[key]
		switch {
		case o.State != ledger.Success:
			t.Errorf("%s: %s %s", key, o.State, o.Error)
		case ok && o.Check != w:
			t.Errorf("%s: check %q (%s), want %q", key, o.Check, o.CheckReason, w)
		case !ok && o.Check == "none":
			t.Errorf("%s: check none (%s), want its checksum checked", key, o.CheckReason)
		}
		sameBytes(t, r.mc, "dst", key, data[key])
	}
	noUploads(t, r.mc, "dst")
}

// TestDelete: enqueue rm deletes a prefix through the fleet (DeleteObjects,
// many keys a call) and nothing else; a dry run lists what it would delete
// and deletes nothing; keys outside allow_delete, and all of them for a
// worker without it, fail with that cause and stay.
func TestDelete(t *testing.T) {
	r := newCopyRig(t, false)
	ctx := context.Background()
	keep := []string{"keep/a", "tmpx/b"} // tmpx/ shares tmp's first letters, not its prefix
	gone := []string{"tmp/big"}
	for _, k := range oddKeys {
		gone = append(gone, "tmp/"+strings.TrimPrefix(k, "p/"))
	}
	for _, k := range append(append([]string{}, keep...), gone...) {
		put(t, r.vc, "src", k, randomBytes(t, 10))
	}
	put(t, r.vc, "src", "tmp/big", randomBytes(t, 20*mib)) // many chunks' worth: still one key to delete

	req := enqueuer.Request{Delete: true, Sources: []string{"s3://src/tmp/"}, DryRun: true}
	var planned atomic.Int32
	req.Planned = func(p enqueuer.PlannedObject) {
		if p.Action == "delete" {
			planned.Add(1)
		}
	}
	sum, err := r.c.Submit(ctx, req)
	if err != nil || sum.Objects != int64(len(gone)) || planned.Load() != int32(len(gone)) {
		t.Fatalf("dry run: %+v, %d planned deletes, %v; want %d", sum, planned.Load(), err, len(gone))
	}

	noDelete := fleettest.StartWorker(t, r.cfg) // no allow_delete
	sum, err = r.c.Submit(ctx, enqueuer.Request{Delete: true, Sources: []string{"s3://src/tmp/"}, Job: "refused"})
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, "refused", time.Minute); j.Failed != int64(len(gone)) {
		t.Fatalf("without allow_delete: %+v", j)
	}
	for _, o := range r.c.Objects(t, "refused") {
		if !strings.Contains(o.Error, "allow_delete") {
			t.Errorf("%s: %q, want a refusal naming allow_delete", o.Key, o.Error)
		}
	}
	noDelete()

	wcfg := r.cfg
	wcfg.AllowDelete = []string{"s3://src/tmp/"}
	fleettest.StartWorker(t, wcfg)
	sum, err = r.c.Submit(ctx, enqueuer.Request{Delete: true, Sources: []string{"s3://src/tmp/", "s3://src/keep/a"}})
	if err != nil {
		t.Fatal(err)
	}
	j := r.c.Wait(t, sum.Job, time.Minute)
	if j.Succeeded != int64(len(gone)) || j.Failed != 1 {
		t.Fatalf("rm: %+v", j)
	}
	for k, o := range r.c.Objects(t, sum.Job) {
		if k == "keep/a" && !strings.Contains(o.Error, "allow_delete") {
			t.Errorf("keep/a outside allow_delete: %s %q", o.State, o.Error)
		}
	}
	for _, k := range gone {
		noObject(t, r.vc, "src", k)
	}
	for _, k := range keep {
		if _, err := r.vc.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("src"), Key: aws.String(k)}); err != nil {
			t.Errorf("%s was deleted: %v", k, err)
		}
	}
}

// TestOnHost: a job enqueued with --on runs every task on that host's
// workers only. Two hosts' workers share Redis; host-b may write nowhere
// host-a's job goes, so a single task of it run there would fail.
func TestOnHost(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	for i := range 12 {
		f.S3.PutRandom(t, "bkt", fmt.Sprintf("p/small-%02d", i), 1000, false)
	}
	big := f.S3.PutRandom(t, "bkt", "p/big", 6*mib, false)
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := f.Config(), f.Config()
	a.Host, a.AllowDest = "host-a", []string{dirA}
	b.Host, b.AllowDest = "host-b", []string{dirB}
	fleettest.StartWorker(t, a)
	fleettest.StartWorker(t, b)
	c := fleettest.NewClient(t, a)
	req := fleettest.Request("s3://bkt/p/", dirA+"/")
	req.On = "host-a"
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 13 || j.Failed != 0 {
		c.LogObjects(t, sum.Job)
		t.Fatalf("job on host-a: %+v", j)
	}
	if got, _ := os.ReadFile(filepath.Join(dirA, "big")); !bytes.Equal(got, big) {
		t.Fatal("big: the bytes differ")
	}
	req.On, req.Job = "bad host", ""
	if _, err := c.Submit(context.Background(), req); !errors.Is(err, enqueuer.ErrUsage) {
		t.Errorf("--on with a space: %v, want a usage error", err)
	}
}

// TestCopySync: --sync to S3 skips what the destination holds already
// (same size and checksum or single-part ETag; for an upload, the mtime
// kept in its metadata) and copies what differs, replacing it.
func TestCopySync(t *testing.T) {
	r := newCopyRig(t, false)
	wcfg := r.cfg
	root := t.TempDir()
	wcfg.AllowSource = []string{root}
	fleettest.StartWorker(t, wcfg)
	ctx := context.Background()
	for i := range 5 {
		put(t, r.vc, "src", fmt.Sprintf("s/k%d", i), randomBytes(t, 100+i))
	}
	put(t, r.vc, "src", "s/big", randomBytes(t, 12*mib))
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d", i)), randomBytes(t, 50+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	syncJob := func(src, dest string) ledger.Job {
		t.Helper()
		req := fleettest.Request(src, dest)
		req.Sync = true
		sum, err := r.c.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return r.c.Wait(t, sum.Job, time.Minute)
	}
	if j := syncJob("s3://src/s/", "minio://dst/s/"); j.Succeeded != 6 || j.Skipped != 0 {
		t.Fatalf("first sync: %+v", j)
	}
	if j := syncJob(root+"/", "minio://dst/up/"); j.Succeeded != 3 {
		t.Fatalf("first upload sync: %+v", j)
	}
	changed := randomBytes(t, 103)
	put(t, r.vc, "src", "s/k3", changed)
	if j := syncJob("s3://src/s/", "minio://dst/s/"); j.Skipped != 5 || j.Succeeded != 1 {
		t.Fatalf("second sync: %+v, want 5 skipped and 1 copied", j)
	}
	sameBytes(t, r.mc, "dst", "s/k3", changed)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(root, "f1"), later, later); err != nil {
		t.Fatal(err)
	}
	if j := syncJob(root+"/", "minio://dst/up/"); j.Skipped != 2 || j.Succeeded != 1 {
		t.Fatalf("second upload sync: %+v, want 2 skipped and 1 uploaded", j)
	}
	noUploads(t, r.mc, "dst")
}

// TestCopyDeadCreator: a worker that died between CreateMultipartUpload and
// recording the upload leaves an upload no record names; the chunk that
// claims the transfer's upload after it finds and aborts it.
func TestCopyDeadCreator(t *testing.T) {
	r := newCopyRig(t, false)
	ctx := context.Background()
	data := randomBytes(t, 12*mib)
	put(t, r.vc, "src", "obj", data)
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/obj", "minio://dst/obj"))
	if err != nil {
		t.Fatal(err)
	}
	o := r.c.Objects(t, sum.Job)["obj"]
	// The dead worker: it claimed, created, and died before the record.
	if c, err := r.c.Ledger.ClaimPart(ctx, o.ID, o.Gen, "dead (pid 1)", time.Minute); err != nil || !c.Held {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if _, err := r.mc.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("dst"), Key: aws.String("obj")}); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Ledger.ReleasePart(ctx, o.ID, o.Gen, "dead (pid 1)"); err != nil { // as its claim lapses
		t.Fatal(err)
	}
	fleettest.StartWorker(t, r.cfg)
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("job %+v", j)
	}
	sameBytes(t, r.mc, "dst", "obj", data)
	noUploads(t, r.mc, "dst")
}

// TestUploadTLS: over HTTPS an upload part streams from the file with a
// trailing checksum (over plain HTTP the file is read twice instead).
func TestUploadTLS(t *testing.T) {
	r := newCopyRig(t, true)
	root := t.TempDir()
	data := randomBytes(t, 13*mib+7)
	if err := os.WriteFile(filepath.Join(root, "f.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	wcfg := r.cfg
	wcfg.AllowSource = []string{root}
	fleettest.StartWorker(t, wcfg)
	sum, err := r.c.Submit(context.Background(), fleettest.Request(root+"/", "minio://dst/tls/"))
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("job %+v %+v", j, r.c.Objects(t, sum.Job))
	}
	sameBytes(t, r.mc, "dst", "tls/f.bin", data)
	noUploads(t, r.mc, "dst")
}

// TestCopyMirror: --sync --delete makes a destination prefix the source's
// mirror: what differs is copied, what the source no longer has is deleted
// (as --include/--exclude select), never more than --max-delete, and
// nothing for an empty source.
func TestCopyMirror(t *testing.T) {
	r := newCopyRig(t, false)
	wcfg := r.cfg
	wcfg.AllowDelete = []string{"minio://dst/"}
	fleettest.StartWorker(t, wcfg)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "sub/c"} {
		put(t, r.vc, "src", "m/"+k, randomBytes(t, 100))
	}
	for _, k := range []string{"x", "sub/y", "keep.log"} {
		put(t, r.mc, "dst", "m/"+k, []byte("stale"))
	}
	put(t, r.mc, "dst", "other/z", []byte("outside the prefix"))
	mirror := func(job string, maxDelete int64, exclude ...string) (enqueuer.Summary, error) {
		req := fleettest.Request("s3://src/m/", "minio://dst/m/")
		req.Sync, req.Mirror, req.MaxDelete, req.Exclude, req.Job = true, true, maxDelete, exclude, job
		return r.c.Submit(ctx, req)
	}
	exists := func(key string) bool {
		_, err := r.mc.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("dst"), Key: aws.String(key)})
		return err == nil
	}
	// x and sub/y are absent at the source: two, over a cap of one.
	if _, err := mirror("capped", 1, "*.log"); err == nil || !strings.Contains(err.Error(), "more than 1") {
		t.Fatalf("--max-delete 1 with 2 to delete: %v, want refused", err)
	}
	r.c.Wait(t, "capped", time.Minute)
	if !exists("m/x") || !exists("m/sub/y") {
		t.Fatal("over --max-delete, objects were deleted")
	}
	sum, err := mirror("mirror", 0, "*.log")
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, "mirror", time.Minute); j.Failed != 0 || j.Succeeded != 2 || sum.Deletes != 2 {
		t.Fatalf("mirror: %+v, %d deletes", j, sum.Deletes)
	}
	for key, want := range map[string]bool{"m/a": true, "m/b": true, "m/sub/c": true, "m/x": false, "m/sub/y": false, "m/keep.log": true, "other/z": true} {
		if exists(key) != want {
			t.Errorf("%s exists: %v, want %v", key, !want, want)
		}
	}
	req := fleettest.Request("s3://src/empty/", "minio://dst/m/")
	req.Sync, req.Mirror = true, true
	if _, err := r.c.Submit(ctx, req); !errors.Is(err, enqueuer.ErrNoObjects) || !exists("m/a") {
		t.Errorf("an empty source: %v, and m/a exists %v; want no objects and nothing deleted", err, exists("m/a"))
	}
}

// TestUploadsList: enqueue uploads lists the fleet's uploads only, and
// --abort aborts the stray ones, never one a live transfer owns nor
// another tool's.
func TestUploadsList(t *testing.T) {
	r := newCopyRig(t, false)
	ctx := context.Background()
	create := func(key string) string {
		out, err := r.mc.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("dst"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UploadId)
	}
	other := create("u/theirs") // another tool's
	stray := create("u/stray")  // the fleet's, its record gone
	if err := r.c.Ledger.NoteUpload(ctx, stray, "no-such-transfer"); err != nil {
		t.Fatal(err)
	}
	put(t, r.vc, "src", "live", randomBytes(t, 10))
	sum, err := r.c.Submit(ctx, fleettest.Request("s3://src/live", "minio://dst/u/live")) // no worker: it stays queued
	if err != nil {
		t.Fatal(err)
	}
	x := r.c.Objects(t, sum.Job)["live"]
	live := create("u/live")
	if err := r.c.Ledger.NoteUpload(ctx, live, x.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Ledger.PartReady(ctx, x.ID, x.Gen, live, "host-a (pid 1)"); err != nil {
		t.Fatal(err)
	}
	list := func(abort bool) map[string]enqueuer.Upload {
		got := map[string]enqueuer.Upload{}
		if err := r.c.Uploads(ctx, "minio://dst/u/", abort, func(u enqueuer.Upload) error { got[u.UploadID] = u; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := list(false)
	if _, ok := got[other]; ok || len(got) != 2 || !got[stray].Stray || got[live].Stray || got[live].State != ledger.Queued {
		t.Fatalf("uploads: %+v", got)
	}
	if got = list(true); !got[stray].Aborted || got[live].Aborted {
		t.Fatalf("--abort: %+v", got)
	}
	out, err := r.mc.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("dst")})
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, u := range out.Uploads {
		left[aws.ToString(u.UploadId)] = true
	}
	if !left[other] || !left[live] || left[stray] {
		t.Fatalf("after --abort: %v (theirs %s, live %s, stray %s)", left, other, live, stray)
	}
}

// TestCopyReviewed holds what a red-team pass found, each now refused or
// right: overlapping prefixes (a mirror deleted its own source), a
// server-side copy over an existing object (stores ignore If-None-Match on
// CopyObject), a retried rm (it became a copy onto itself), an rm of a
// single key.
func TestCopyReviewed(t *testing.T) {
	r := newCopyRig(t, false)
	wcfg := r.cfg
	wcfg.AllowDelete = []string{"s3://back/"}
	stop := fleettest.StartWorker(t, wcfg)
	ctx := context.Background()
	put(t, r.vc, "back", "p/sub/x", randomBytes(t, 100))
	req := fleettest.Request("s3://back/p/sub/", "s3://back/p/")
	req.Sync, req.Mirror = true, true
	if _, err := r.c.Submit(ctx, req); !errors.Is(err, enqueuer.ErrUsage) || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("a source under its destination: %v, want refused", err)
	}
	for _, c := range []struct {
		c    *s3.Client
		b, r string
	}{{r.vc, "back", "s3"}, {r.mc, "dst", "minio"}} {
		put(t, c.c, c.b, "ss/src/x", []byte("new bytes"))
		put(t, c.c, c.b, "ss/dst/x", []byte("precious"))
		sum, err := r.c.Submit(ctx, fleettest.Request(c.r+"://"+c.b+"/ss/src/", c.r+"://"+c.b+"/ss/dst/"))
		if err != nil {
			t.Fatal(err)
		}
		r.c.Wait(t, sum.Job, time.Minute)
		if o := r.c.Objects(t, sum.Job)["ss/src/x"]; o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
			t.Errorf("%s: a server-side copy over an existing object: %s %q", c.r, o.State, o.Error)
		}
		sameBytes(t, c.c, c.b, "ss/dst/x", []byte("precious"))
	}
	put(t, r.vc, "back", "one", randomBytes(t, 10))
	sum, err := r.c.Submit(ctx, enqueuer.Request{Delete: true, Sources: []string{"s3://back/one"}})
	if err != nil {
		t.Fatalf("rm of a single key: %v", err)
	}
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
		t.Fatalf("rm of a single key: %+v", j)
	}
	noObject(t, r.vc, "back", "one")

	stop()
	noDelete := fleettest.StartWorker(t, r.cfg)
	put(t, r.vc, "back", "tmp/a", randomBytes(t, 100))
	if _, err := r.c.Submit(ctx, enqueuer.Request{Delete: true, Sources: []string{"s3://back/tmp/"}, Job: "rm"}); err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, "rm", time.Minute); j.Failed != 1 {
		t.Fatalf("rm without allow_delete: %+v", j)
	}
	noDelete()
	fleettest.StartWorker(t, wcfg)
	if _, err := r.c.Retry(ctx, "rm"); err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, "rm", time.Minute); j.Succeeded != 1 || j.Failed != 0 {
		t.Fatalf("retried rm: %+v %+v", j, r.c.Objects(t, "rm"))
	}
	noObject(t, r.vc, "back", "tmp/a")
}

// TestOnHostAttach: a second job that attaches to an --on job's objects
// (the same copy, without --on) leaves their tasks on the first job's
// host: the other host, which may not write there, runs none of them.
func TestOnHostAttach(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	for i := range 3 {
		f.S3.PutRandom(t, "bkt", fmt.Sprintf("p/k%d", i), 6*mib, false)
	}
	f.S3.PutRandom(t, "bkt", "p/small", 1000, false)
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := f.Config(), f.Config()
	a.Host, a.AllowDest, a.Bandwidth = "host-a", []string{dirA}, 8*mib
	b.Host, b.AllowDest = "host-b", []string{dirB}
	fleettest.StartWorker(t, a)
	fleettest.StartWorker(t, b)
	c := fleettest.NewClient(t, a)
	req := fleettest.Request("s3://bkt/p/", dirA+"/")
	req.On, req.Job = "host-a", "ja"
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	req.On, req.Job = "", "jb"
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"ja", "jb"} {
		if j := c.Wait(t, job, 2*time.Minute); j.Succeeded+j.Skipped != 4 || j.Failed != 0 {
			c.LogObjects(t, job)
			t.Fatalf("%s: %+v", job, j)
		}
	}
}

// TestListingOddKeys: listings ask for URL-encoded keys. On MinIO, which
// encodes, a key with a control character no longer aborts the listing of
// its prefix: the other objects land and that one lands or fails on its
// own; on versitygw, which ignores the parameter and sends raw keys, keys
// with % and + are not decoded into other names (it names the control
// character's key wrongly itself, and that object fails).
func TestListingOddKeys(t *testing.T) {
	r := newCopyRig(t, false)
	keys := map[string][]byte{"odd/plain": randomBytes(t, 100), "odd/ctl\x01key": randomBytes(t, 100), "odd/sp ace+plus%41": randomBytes(t, 100)}
	for k, data := range keys {
		put(t, r.mc, "dst", k, data)
		put(t, r.vc, "src", k, data)
	}
	fleettest.StartWorker(t, r.cfg)
	for _, src := range []string{"minio://dst/odd/", "s3://src/odd/"} {
		dir := t.TempDir()
		sum, err := r.c.Submit(context.Background(), fleettest.Request(src, dir+"/"))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		j := r.c.Wait(t, sum.Job, time.Minute)
		if j.ListError != "" || j.Objects != int64(len(keys)) {
			t.Fatalf("%s: listed %d objects, list error %q; want all %d", src, j.Objects, j.ListError, len(keys))
		}
		for k, o := range r.c.Objects(t, sum.Job) {
			if _, ok := keys[k]; !ok {
				// versitygw writes a control character in XML as U+FFFD:
				// that name is not the object's, which must then fail.
				if !strings.Contains(k, "\uFFFD") || o.State != ledger.Failed {
					t.Errorf("%s: listed a key that is not there: %q (%s %q)", src, k, o.State, o.Error)
				}
				t.Logf("%s: listed as %q: %s %q", src, k, o.State, o.Error)
				continue
			}
			if o.State != ledger.Success {
				t.Logf("%s: %q %s %q", src, k, o.State, o.Error)
				if k != "odd/ctl\x01key" {
					t.Errorf("%s: %q did not land", src, k)
				}
				continue
			}
			got, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(k, "odd/")))
			if err != nil || !bytes.Equal(got, keys[k]) {
				t.Errorf("%s: %q landed with other bytes (%v)", src, k, err)
			}
		}
	}
}
