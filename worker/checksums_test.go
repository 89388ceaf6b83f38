package worker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// ckKind is one way an SDK makes an object: a single PutObject or a
// multipart upload, with a checksum algorithm (and, for a multipart
// upload, a checksum type) or with none asked at all.
type ckKind struct {
	name      string
	size      int
	multipart bool
	alg       types.ChecksumAlgorithm // "" with bare
	typ       types.ChecksumType      // multipart only
	// bare: the client computes no checksum it is not required to
	// (RequestChecksumCalculationWhenRequired), so none is sent.
	bare bool
}

// Sizes: single PUTs are chunked (3 chunks of 2 MiB) or batched (< 1 MiB);
// multipart uploads have parts of 5 MiB + 1, 5 MiB + 1 and 1 MiB + 7, whose
// boundaries fall inside the fleet's 2 MiB chunks.
const (
	ckChunk     = 2 * mib
	ckPutSize   = 5*mib + 3
	ckSmallSize = 300<<10 + 5
	ckPart      = 5*mib + 1
	ckMPUSize   = 2*ckPart + mib + 7
	ckFlipAt    = 1000 // the byte of a body the flipping proxy inverts
)

func ckKinds() []ckKind {
	var ks []ckKind
	for _, a := range []types.ChecksumAlgorithm{"CRC32", "CRC32C", "CRC64NVME", "SHA256", "SHA1", ""} {
		name := strings.ToLower(string(a))
		if a == "" {
			name = "none"
		}
		ks = append(ks,
			ckKind{name: "put-" + name, size: ckPutSize, alg: a, bare: a == ""},
			ckKind{name: "small-" + name, size: ckSmallSize, alg: a, bare: a == ""})
	}
	for _, a := range []types.ChecksumAlgorithm{"CRC64NVME", "CRC32", "CRC32C"} {
		ks = append(ks, ckKind{name: "mpu-full-" + strings.ToLower(string(a)), size: ckMPUSize, multipart: true,
			alg: a, typ: types.ChecksumTypeFullObject})
	}
	for _, a := range []types.ChecksumAlgorithm{"CRC32C", "SHA256"} {
		ks = append(ks, ckKind{name: "mpu-composite-" + strings.ToLower(string(a)), size: ckMPUSize, multipart: true,
			alg: a, typ: types.ChecksumTypeComposite})
	}
	return append(ks, ckKind{name: "mpu-none", size: ckMPUSize, multipart: true, bare: true})
}

func (k ckKind) batch() bool { return k.size <= mib }

// ckSDK is an S3 client as an application builds one, with the SDK's
// defaults (it sends a CRC32 on every upload unless told another
// algorithm), or with bare, none unless the operation requires one.
func ckSDK(endpoint string, bare bool) *s3.Client {
	o := s3.Options{
		Region: testenv.Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKey, testenv.SecretKey, ""),
	}
	if bare {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	}
	return s3.New(o)
}

// ckUpload makes the object as the SDK does for its kind.
func ckUpload(ctx context.Context, c *s3.Client, bucket, key string, k ckKind, data []byte) error {
	if !k.multipart {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(data), ChecksumAlgorithm: k.alg})
		return err
	}
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ChecksumAlgorithm: k.alg, ChecksumType: k.typ})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	var parts []types.CompletedPart
	for n, off := int32(1), 0; off < len(data); n++ {
		end := min(off+ckPart, len(data))
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: cr.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(data[off:end]), ChecksumAlgorithm: k.alg})
		if err != nil {
			return fmt.Errorf("part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: up.ETag,
			ChecksumCRC32: up.ChecksumCRC32, ChecksumCRC32C: up.ChecksumCRC32C, ChecksumCRC64NVME: up.ChecksumCRC64NVME,
			ChecksumSHA1: up.ChecksumSHA1, ChecksumSHA256: up.ChecksumSHA256})
		off = end
	}
	in := &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, ChecksumType: k.typ}
	if k.typ == types.ChecksumTypeFullObject {
		// As the SDK's transfer manager does: the whole object's CRC, for
		// S3 to check against the parts'.
		a := checksum.Algorithm(k.alg)
		v := aws.String(checksum.Encode(a, checksum.Update(a, 0, data)))
		switch a {
		case checksum.CRC32:
			in.ChecksumCRC32 = v
		case checksum.CRC32C:
			in.ChecksumCRC32C = v
		case checksum.CRC64NVME:
			in.ChecksumCRC64NVME = v
		}
	}
	if _, err := c.CompleteMultipartUpload(ctx, in); err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	return nil
}

// ckWant is the outcome expected of one object in one job.
type ckWant struct {
	fail   bool
	check  string // on success
	reason string // on success with check none: a part of check_reason
	err    string // on failure: a part of the error
}

func (w ckWant) String() string {
	if w.fail {
		return fmt.Sprintf("failed (%q)", w.err)
	}
	if w.check == assembler.CheckNone {
		return fmt.Sprintf("none (%q)", w.reason)
	}
	return w.check
}

// ckExpect derives an object's outcome from what S3 keeps (a HEAD with
// checksum mode on), how it is fetched (whole in a batch, or in chunks),
// whether the enqueuer learnt the checksum's algorithm before the chunks
// ran (a single key's HEAD, a listing that names it, or a HEAD at enqueue
// when it does not) and the verify mode:
//
//   - a FULL_OBJECT CRC is combined from the chunks' CRCs: its name;
//   - another FULL_OBJECT checksum (SHA-256, SHA-1), or a single-part
//     ETag standing for an MD5, is computed while a batch streams, and
//     re-read for a chunked object under required only: its name, or
//     none with a reason that asks for a second read;
//   - a COMPOSITE checksum is checked against chunks cut along the
//     upload's parts, from their CRCs when the enqueuer knew the CRC to
//     compute, else by re-reading each part under required:
//     "<alg>-composite", or none under auto;
//   - a multipart ETag with no checksum is the MD5 of the parts' MD5s,
//     re-read under required only: md5, or none under auto.
func ckExpect(sum assembler.Sum, etag string, batch, known bool, mode string) ckWant {
	required := mode == assembler.VerifyRequired
	secondRead := func(check string) ckWant {
		if batch || required {
			return ckWant{check: check}
		}
		return ckWant{check: assembler.CheckNone, reason: "second read"}
	}
	_, multipart := assembler.MultipartETag(etag)
	switch {
	case sum.Value != "" && sum.Composite():
		if sum.Algorithm.Combinable() && known || required {
			return ckWant{check: sum.Algorithm.Check() + "-composite"}
		}
		return ckWant{check: assembler.CheckNone, reason: "COMPOSITE"}
	case sum.Value != "" && sum.Algorithm.Combinable():
		return ckWant{check: sum.Algorithm.Check()}
	case sum.Value != "":
		return secondRead(sum.Algorithm.Check())
	case !multipart:
		return secondRead(assembler.CheckMD5)
	case required:
		return ckWant{check: assembler.CheckMD5}
	}
	return ckWant{check: assembler.CheckNone, reason: "no checksum"}
}

// flipped is the outcome when one byte of the object's GETs is inverted:
// whatever is verified fails with a mismatch, and what is not verified
// succeeds (its bytes are then wrong, as auto allows).
func (w ckWant) flipped() ckWant {
	if !w.fail && w.check != assembler.CheckNone {
		return ckWant{fail: true, err: "checksum mismatch"}
	}
	return w
}

// ckObject is one uploaded object and what S3 says it keeps.
type ckObject struct {
	kind   ckKind
	key    string
	data   []byte
	sum    assembler.Sum
	etag   string
	listed bool // the listing names its checksum's algorithm
}

// ckRun is one job: a prefix of all the objects, or one key.
type ckRun struct {
	name    string // auto/prefix, required/single, flip-auto/prefix, …
	mode    string
	flip    bool
	single  bool
	job     string
	c       *fleettest.Client
	dest    func(o *ckObject) string
	objects []*ckObject
}

// ckResult is one object's outcome in one run.
type ckResult struct {
	run  *ckRun
	obj  ledger.JobObject
	want ckWant
}

// shape says what a checksum value looks like: its raw size, and "-N"
// for a composite.
func shape(v string) string {
	if v == "" {
		return "-"
	}
	b64, n, composite := strings.Cut(v, "-")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "not base64: " + v
	}
	if composite {
		return fmt.Sprintf("%d bytes + \"-%s\"", len(raw), n)
	}
	return fmt.Sprintf("%d bytes", len(raw))
}

// needMinIOBinary skips without MinIO (make tools builds it), but not under
// CI, where a missing server is a broken setup.
func needMinIOBinary(t *testing.T) {
	t.Helper()
	if _, err := testenv.MinIOBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("MinIO half skipped: %v", err)
	}
}

// TestChecksumKinds builds objects as the SDKs do -- single PUTs with
// each algorithm or none (chunked, and small ones batched), FULL_OBJECT
// and COMPOSITE multipart uploads with parts that do not line up with the
// chunks, a multipart upload with no checksum -- on versitygw and MinIO,
// and downloads each as a single key and in a prefix, under verify auto
// and required, directly and through a proxy that flips a byte of every
// object: the recorded check follows what S3 keeps (ckExpect), the bytes
// on disk are the uploaded ones, a failure leaves no file, final or part,
// and each job counts the checks its objects made. Then the records are
// fed back as a manifest (--from) and must verify again. The log shows
// what each server stores (STORED) and every outcome (RESULT).
func TestChecksumKinds(t *testing.T) {
	t.Parallel()
	for _, server := range []string{"versitygw", "minio"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			var f *fleettest.Fleet
			if server == "minio" {
				needMinIOBinary(t)
				// The fleet finds versitygw's credentials in the environment:
				// MinIO is given the same root user.
				m := testenv.StartMinIO(t, testenv.MinIOOptions{AccessKey: testenv.AccessKey, SecretKey: testenv.SecretKey})
				f = &fleettest.Fleet{Redis: testenv.StartRedis(t), S3: &testenv.S3{Endpoint: m.Endpoint}}
			} else {
				f = fleettest.New(t)
			}
			ckServerRun(t, server, f)
		})
	}
}

func ckServerRun(t *testing.T, server string, f *fleettest.Fleet) {
	ctx := context.Background()
	f.S3.CreateBucket(t, "bkt")
	sdk, bare := ckSDK(f.S3.Endpoint, false), ckSDK(f.S3.Endpoint, true)
	objs := make([]*ckObject, 0, 20)
	g, gctx := errgroup.WithContext(ctx)
	for _, k := range ckKinds() {
		o := &ckObject{kind: k, key: "objs/" + k.name, data: make([]byte, k.size)}
		_, _ = rand.Read(o.data)
		objs = append(objs, o)
		g.Go(func() error {
			c := sdk
			if k.bare {
				c = bare
			}
			if err := ckUpload(gctx, c, "bkt", o.key, k, o.data); err != nil {
				return fmt.Errorf("upload %s: %w", k.name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	admin := f.S3.Client(t)
	list, err := admin.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("bkt"), Prefix: aws.String("objs/")})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, c := range list.Contents {
		listed[aws.ToString(c.Key)] = fmt.Sprintf("%v/%s", c.ChecksumAlgorithm, c.ChecksumType)
	}
	for _, o := range objs {
		head, err := admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(o.key),
			ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		o.sum, o.etag = assembler.SumOf(head), aws.ToString(head.ETag)
		o.listed = !strings.HasPrefix(listed[o.key], "[]")
		t.Logf("STORED %-9s %-20s type=%-11s algorithm=%-9s value=%-17s etag=%s listing=%s", server, o.kind.name,
			o.sum.Type, o.sum.Algorithm, shape(o.sum.Value), o.etag, listed[o.key])
	}

	cfg := f.Config()
	cfg.ChunkSize = ckChunk
	cfg.Threshold = mib
	cfg.BatchMaxObject = mib
	cfg.Concurrency = 8
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)

	// The flipping fleet: its own Redis and worker, S3 through a proxy
	// that inverts one byte of every batch GET and of every chunk GET at
	// offset 2 MiB (the second chunk, or the first of the second part).
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	var flipMu sync.Mutex
	flips := map[string]int{}
	proxy.SetTamper(func(r *http.Request, resp *http.Response) {
		rng := r.Header.Get("Range")
		if !testenv.IsObjectGET(r) || resp.StatusCode/100 != 2 || (rng != "" && !strings.HasPrefix(rng, fmt.Sprintf("bytes=%d-", ckChunk))) {
			return
		}
		flipMu.Lock()
		flips[r.URL.Path]++
		flipMu.Unlock()
		resp.Body = testenv.FlipByte(resp.Body, ckFlipAt)
	})
	fcfg := (&fleettest.Fleet{Redis: testenv.StartRedis(t), S3: f.S3}).Config()
	fcfg.Endpoint = proxy.URL
	fcfg.ChunkSize, fcfg.Threshold, fcfg.BatchMaxObject, fcfg.Concurrency = cfg.ChunkSize, cfg.Threshold, cfg.BatchMaxObject, cfg.Concurrency
	fleettest.StartWorker(t, fcfg)
	fc := fleettest.NewClient(t, fcfg)

	root := t.TempDir()
	var runs []*ckRun
	submit := func(r *ckRun, req enqueuer.Request) {
		t.Helper()
		req.Verify = r.mode
		sum, err := r.c.Submit(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		r.job = sum.Job
		runs = append(runs, r)
	}
	for _, mode := range []string{assembler.VerifyAuto, assembler.VerifyRequired} {
		dir := filepath.Join(root, mode, "prefix") + "/"
		submit(&ckRun{name: mode + "/prefix", mode: mode, c: c, objects: objs,
			dest: func(o *ckObject) string { return dir + strings.TrimPrefix(o.key, "objs/") }},
			fleettest.Request("s3://bkt/objs/", dir))
		fdir := filepath.Join(root, "flip-"+mode, "prefix") + "/"
		submit(&ckRun{name: "flip-" + mode + "/prefix", mode: mode, flip: true, c: fc, objects: objs,
			dest: func(o *ckObject) string { return fdir + strings.TrimPrefix(o.key, "objs/") }},
			fleettest.Request("s3://bkt/objs/", fdir))
		for _, o := range objs {
			dest := filepath.Join(root, mode, "single", o.kind.name)
			submit(&ckRun{name: mode + "/single", mode: mode, single: true, c: c, objects: []*ckObject{o},
				dest: func(*ckObject) string { return dest }},
				fleettest.Request("s3://bkt/"+o.key, dest))
			fdest := filepath.Join(root, "flip-"+mode, "single", o.kind.name)
			submit(&ckRun{name: "flip-" + mode + "/single", mode: mode, single: true, flip: true, c: fc, objects: []*ckObject{o},
				dest: func(*ckObject) string { return fdest }},
				fleettest.Request("s3://bkt/"+o.key, fdest))
		}
	}

	results := map[*ckObject][]ckResult{}
	for _, r := range runs {
		j := r.c.Wait(t, r.job, 2*time.Minute)
		got := r.c.Objects(t, r.job)
		counted := map[string]int64{}
		for _, o := range r.objects {
			jo, ok := got[o.key]
			if !ok {
				t.Errorf("%s: %s is not in job %s", r.name, o.key, r.job)
				continue
			}
			// The enqueuer always learns the algorithm of a chunked object: a
			// single key's HEAD, a listing that names it, or (MinIO's
			// listings never do) a HEAD at enqueue.
			want := ckExpect(o.sum, o.etag, o.kind.batch(), true, r.mode)
			if r.flip {
				want = want.flipped()
			}
			results[o] = append(results[o], ckResult{r, jo, want})
			if jo.JobState == ledger.Success {
				counted[jo.Check]++
			}
		}
		checks := map[string]int64{}
		for k, n := range j.Checks {
			if n != 0 {
				checks[k] = n
			}
		}
		if fmt.Sprint(checks) != fmt.Sprint(counted) || j.Succeeded != ckTotal(counted) || j.Succeeded+j.Failed != int64(len(r.objects)) {
			t.Errorf("%s job %s: checks %v, %d succeeded, %d failed; its %d objects: %v",
				r.name, r.job, j.Checks, j.Succeeded, j.Failed, len(r.objects), counted)
		}
	}

	var table []string
	for _, o := range objs {
		line := fmt.Sprintf("%-9s %-20s", server, o.kind.name)
		t.Run(o.kind.name, func(t *testing.T) {
			for _, res := range results[o] {
				r, jo, want, dest := res.run, res.obj, res.want, res.run.dest(o)
				line += fmt.Sprintf(" | %s: %s", r.name, ckOutcome(jo))
				if want.fail {
					if jo.JobState != ledger.Failed || !strings.Contains(jo.Error, want.err) {
						t.Errorf("%s: %s, check %q (%s), error %q; want %s", r.name, jo.JobState, jo.Check, jo.CheckReason, jo.Error, want)
					}
					if _, err := os.Lstat(dest); jo.JobState == ledger.Failed && !os.IsNotExist(err) {
						t.Errorf("%s: the failed object left %s (%v)", r.name, dest, err)
					}
					continue
				}
				if jo.JobState != ledger.Success || jo.Check != want.check ||
					(want.check == assembler.CheckNone && !strings.Contains(jo.CheckReason, want.reason)) {
					t.Errorf("%s: %s, check %q (%s), error %q; want %s", r.name, jo.JobState, jo.Check, jo.CheckReason, jo.Error, want)
				}
				if jo.JobState != ledger.Success {
					continue
				}
				got, err := os.ReadFile(dest)
				switch {
				case err != nil:
					t.Errorf("%s: %v", r.name, err)
				case r.flip && bytes.Equal(got, o.data):
					t.Errorf("%s: the proxy flipped no byte of %s", r.name, o.key)
				case !r.flip && !bytes.Equal(got, o.data):
					t.Errorf("%s: %d bytes on disk differ from the %d uploaded", r.name, len(got), len(o.data))
				}
			}
		})
		table = append(table, line)
	}
	for _, l := range table {
		t.Logf("RESULT %s", l)
	}
	flipMu.Lock()
	for _, o := range objs {
		if flips["/bkt/"+o.key] == 0 {
			t.Errorf("the proxy flipped no GET of %s", o.key)
		}
	}
	flipMu.Unlock()

	t.Run("manifest replay", func(t *testing.T) {
		ckManifestReplay(t, c, objs, results, filepath.Join(root, "replay")+"/")
	})
	noPartFiles(t, root)
}

// ckManifestReplay feeds the records of the chunked objects that
// required/prefix checked against one of S3's algorithms back as a
// manifest (as enqueue --manifest writes it and --from reads it) under
// verify required: each must verify again as it did. A record's checksum
// is the CRC the fleet computed, of the algorithm checksum_algorithm names;
// --from takes it for S3's only when the check was that algorithm.
func ckManifestReplay(t *testing.T, c *fleettest.Client, objs []*ckObject, results map[*ckObject][]ckResult, dest string) {
	var lines bytes.Buffer
	want := map[string]*ckObject{}
	checks := map[string]string{}
	for _, o := range objs {
		for _, res := range results[o] {
			jo := res.obj
			if res.run.name != assembler.VerifyRequired+"/prefix" || o.kind.batch() || jo.JobState != ledger.Success {
				continue
			}
			if _, err := checksum.Parse(jo.Check); err != nil {
				continue // md5, none, a composite: no checksum of S3's to carry
			}
			// The record keeps the CRC computed over the bytes and its
			// algorithm; when the check was that algorithm, it is S3's value.
			if jo.Computed == "" || !checksum.Algorithm(jo.ComputedAlgorithm).Combinable() {
				t.Errorf("%s: computed %q of algorithm %q, want a CRC", o.kind.name, jo.Computed, jo.ComputedAlgorithm)
			}
			if strings.EqualFold(jo.Check, jo.ComputedAlgorithm) && jo.Computed != o.sum.Value {
				t.Errorf("%s: check %s, computed %q, but S3's %s is %q", o.kind.name, jo.Check, jo.Computed, o.sum.Algorithm, o.sum.Value)
			}
			rec := assembler.RecordOf(jo.Transfer)
			rec.State = jo.JobState
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			lines.Write(append(b, '\n'))
			want[o.key], checks[o.key] = o, jo.Check
		}
	}
	if len(want) == 0 {
		t.Fatal("no record to replay")
	}
	req := enqueuer.Request{From: &lines, Dest: dest, Verify: assembler.VerifyRequired}
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, 2*time.Minute)
	got := c.Objects(t, sum.Job)
	for key, o := range want {
		jo := got[key]
		if jo.JobState != ledger.Success || jo.Check != checks[key] {
			t.Errorf("%s from its manifest line: %s, check %q, error %q; want %s as recorded", o.kind.name, jo.JobState, jo.Check, jo.Error, checks[key])
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dest, key)); err != nil || !bytes.Equal(b, o.data) {
			t.Errorf("%s from its manifest line: the bytes differ (%v)", o.kind.name, err)
		}
	}
}

func ckTotal(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// ckOutcome renders an object's result for the log.
func ckOutcome(o ledger.JobObject) string {
	switch {
	case o.JobState == ledger.Failed:
		msg := o.Error
		for _, s := range []string{"checksum mismatch", "nothing to verify against"} {
			if strings.Contains(msg, s) {
				msg = s
			}
		}
		return "FAILED " + msg
	case o.Check == assembler.CheckNone:
		return "none"
	}
	return o.Check
}
