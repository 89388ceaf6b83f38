package worker_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// testTags are a source's tags, with characters the x-amz-tagging header
// must escape.
var testTags = map[string]string{"team": "data lake", "mix": "a+b=c/d: x_y.z-1@"}

func putTags(t *testing.T, c *s3.Client, bucket, key string) {
	t.Helper()
	var set []types.Tag
	for k, v := range testTags {
		set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := c.PutObjectTagging(context.Background(), &s3.PutObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Tagging: &types.Tagging{TagSet: set}}); err != nil {
		t.Fatalf("tag %s/%s: %v", bucket, key, err)
	}
}

// wantWritten checks what a copy set on bucket/key besides the bytes: the
// source's tags, its metadata with the added keys, and the storage class
// and encryption asked for ("" for any), and the content headers put
// gave the source.
func wantWritten(t *testing.T, c *s3.Client, bucket, key string, added map[string]string, class types.StorageClass, sse types.ServerSideEncryption, kmsKey string) {
	t.Helper()
	ctx := context.Background()
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head %s/%s: %v", bucket, key, err)
	}
	want := maps.Clone(added)
	want["origin"] = "s3fleet-test"
	if !maps.Equal(head.Metadata, want) {
		t.Errorf("%s/%s: metadata %v, want %v", bucket, key, head.Metadata, want)
	}
	if aws.ToString(head.ContentType) != "application/x-test" || aws.ToString(head.CacheControl) != "max-age=60" {
		t.Errorf("%s/%s lost its content headers: type %q cache %q", bucket, key, aws.ToString(head.ContentType), aws.ToString(head.CacheControl))
	}
	if class != "" && head.StorageClass != class {
		t.Errorf("%s/%s: storage class %q, want %q", bucket, key, head.StorageClass, class)
	}
	if sse != "" && head.ServerSideEncryption != sse {
		t.Errorf("%s/%s: encryption %q, want %q", bucket, key, head.ServerSideEncryption, sse)
	}
	if kmsKey != "" && !strings.HasSuffix(aws.ToString(head.SSEKMSKeyId), kmsKey) {
		t.Errorf("%s/%s: KMS key %q, want %q", bucket, key, aws.ToString(head.SSEKMSKeyId), kmsKey)
	}
	tags, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("tags of %s/%s: %v", bucket, key, err)
	}
	got := map[string]string{}
	for _, tg := range tags.TagSet {
		got[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if !maps.Equal(got, testTags) {
		t.Errorf("%s/%s: tags %v, want the source's %v", bucket, key, got, testTags)
	}
}

// TestCopyWriteOptions: --storage-class, --sse aws:kms with a key ID and
// --metadata set the destination's, on top of what the copy keeps of its
// source (bytes, content headers, metadata, tags), for an object copied
// in chunks (a multipart upload) and one copied whole (PutObject), across
// endpoints; and server-side, where CopyObject must replace the metadata
// to add to it (the source's is kept all the same) and UploadPartCopy's
// upload is given it.
func TestCopyWriteOptions(t *testing.T) {
	r := newCopyRigWith(t, testenv.MinIOOptions{KMSKey: "fleet-key"})
	fleettest.StartWorker(t, r.cfg)
	ctx := context.Background()
	objs := map[string][]byte{"w/big.bin": randomBytes(t, 12*mib+7), "w/small.txt": randomBytes(t, 1000)}
	for k, data := range objs {
		put(t, r.vc, "src", k, data)
		putTags(t, r.vc, "src", k)
	}
	added := map[string]string{"owner": "fleet", "origin-note": "copied"}
	req := fleettest.Request("s3://src/w/", "minio://dst/w/")
	req.Write = ledger.Write{StorageClass: "REDUCED_REDUNDANCY", SSE: "aws:kms", SSEKMSKeyID: "fleet-key", Metadata: added}
	sum, err := r.c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, 2*time.Minute); j.Succeeded != 2 {
		r.c.LogObjects(t, sum.Job)
		t.Fatalf("copy with write options: %+v", j)
	}
	for k, data := range objs {
		wantCopied(t, r.mc, "dst", k, data)
		wantWritten(t, r.mc, "dst", k, added, types.StorageClassReducedRedundancy, types.ServerSideEncryptionAwsKms, "fleet-key")
	}
	noUploads(t, r.mc, "dst")

	// The same copy with other options is another transfer, not "already
	// done": without --overwrite the objects there are not replaced.
	again := fleettest.Request("s3://src/w/", "minio://dst/w/")
	again.Write = ledger.Write{StorageClass: "STANDARD"}
	if sum, err = r.c.Submit(ctx, again); err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, sum.Job, time.Minute)
	for k, o := range r.c.Objects(t, sum.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
			t.Errorf("%s again with another storage class: %s %q, want refused (already exists)", k, o.State, o.Error)
		}
	}

	// Server-side, within versitygw (which keeps no storage class and has
	// no KMS): metadata added, the source's kept, tags kept.
	req = fleettest.Request("s3://src/w/", "s3://back/w/")
	req.Write = ledger.Write{Metadata: added}
	if sum, err = r.c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, 2*time.Minute); j.Succeeded != 2 {
		r.c.LogObjects(t, sum.Job)
		t.Fatalf("server-side copy with metadata: %+v", j)
	}
	for k, data := range objs {
		wantCopiedBytes(t, r.vc, "back", k, data)
		wantWritten(t, r.vc, "back", k, added, "", "", "")
	}
	noUploads(t, r.vc, "back")
}

// TestArchivedSource: a GET that S3 answers 403 InvalidObjectState (an
// object in GLACIER or DEEP_ARCHIVE, not restored) fails the object with
// that cause, not "access denied".
func TestArchivedSource(t *testing.T) {
	f := fleettest.New(t)
	proxy := testenv.StartFaultProxy(t, f.S3.Endpoint)
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/cold/") {
			return testenv.Fault{Action: testenv.Status, Status: http.StatusForbidden, Code: "InvalidObjectState"}
		}
		return testenv.Fault{}
	})
	f.S3.CreateBucket(t, "arch")
	c := f.S3.Client(t)
	put(t, c, "arch", "cold/a.bin", randomBytes(t, 3*mib))
	put(t, c, "arch", "cold/b.txt", randomBytes(t, 10))
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	dir := t.TempDir()
	cfg.AllowDest = []string{dir}
	fleettest.StartWorker(t, cfg)
	cl := fleettest.NewClient(t, cfg)
	sum, err := cl.Submit(context.Background(), fleettest.Request("s3://arch/cold/", dir+"/"))
	if err != nil {
		t.Fatal(err)
	}
	if j := cl.Wait(t, sum.Job, time.Minute); j.Failed != 2 {
		t.Fatalf("job %+v, want both objects failed", j)
	}
	for k, o := range cl.Objects(t, sum.Job) {
		if !strings.Contains(o.Error, "archived: restore it first") || !strings.Contains(o.Error, "InvalidObjectState") {
			t.Errorf("%s: %q, want the archive named as the cause", k, o.Error)
		}
	}
}

// TestArchivedAtEnqueue: a proxy makes versitygw report objects under
// cold/ as GLACIER (HEAD and listing), cold/thawed as restored. The
// enqueue refuses the archived one with that cause and downloads the
// restored one; a single archived key is an error before anything is
// recorded; rm plans to delete archived objects (a DELETE needs no
// restore).
func TestArchivedAtEnqueue(t *testing.T) {
	f := fleettest.New(t)
	proxy := testenv.StartProxy(t, f.S3.Endpoint)
	proxy.SetTamper(func(r *http.Request, resp *http.Response) {
		switch {
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/cold/"):
			resp.Header.Set("x-amz-storage-class", "GLACIER")
			if strings.HasSuffix(r.URL.Path, "/thawed") {
				resp.Header.Set("x-amz-restore", `ongoing-request="false", expiry-date="Fri, 21 Dec 2035 00:00:00 GMT"`)
			}
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return
			}
			// Each <Contents> of a cold/ key: its class is GLACIER.
			parts := strings.Split(string(body), "<Contents>")
			for i, p := range parts {
				if strings.Contains(p, "<Key>cold/") {
					parts[i] = strings.Replace(p, "<StorageClass>STANDARD</StorageClass>", "<StorageClass>GLACIER</StorageClass>", 1)
				}
			}
			out := strings.Join(parts, "<Contents>")
			resp.Body = io.NopCloser(strings.NewReader(out))
			resp.ContentLength = int64(len(out))
			resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		}
	})
	f.S3.CreateBucket(t, "arch")
	c := f.S3.Client(t)
	thawed := randomBytes(t, 2000)
	put(t, c, "arch", "cold/frozen", randomBytes(t, 1000))
	put(t, c, "arch", "cold/thawed", thawed)
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	dir := t.TempDir()
	cfg.AllowDest = []string{dir}
	fleettest.StartWorker(t, cfg)
	cl := fleettest.NewClient(t, cfg)
	ctx := context.Background()

	if _, err := cl.Submit(ctx, fleettest.Request("s3://arch/cold/frozen", dir+"/one")); err == nil || !strings.Contains(err.Error(), "archived in GLACIER: restore it first") {
		t.Errorf("a single archived key: %v, want an error naming the archive", err)
	}
	sum, err := cl.Submit(ctx, fleettest.Request("s3://arch/cold/", dir+"/all/"))
	if err != nil {
		t.Fatal(err)
	}
	cl.Wait(t, sum.Job, time.Minute)
	objs := cl.Objects(t, sum.Job)
	if o := objs["cold/frozen"]; o.State != ledger.Failed || !strings.Contains(o.Error, "archived in GLACIER: restore it first") {
		t.Errorf("cold/frozen: %s %q, want refused as archived", o.State, o.Error)
	}
	if o := objs["cold/thawed"]; o.State != ledger.Success {
		t.Errorf("cold/thawed (restored): %s %q, want downloaded", o.State, o.Error)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "all", "thawed")); !bytes.Equal(got, thawed) {
		t.Error("cold/thawed: the bytes differ")
	}

	var actions []string
	var mu sync.Mutex
	req := enqueuer.Request{Sources: []string{"s3://arch/cold/"}, Delete: true, DryRun: true,
		Planned: func(p enqueuer.PlannedObject) {
			mu.Lock()
			actions = append(actions, p.Action+" "+p.Source)
			mu.Unlock()
		}}
	if _, err := cl.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	slices.Sort(actions)
	if want := []string{"delete s3://arch/cold/frozen", "delete s3://arch/cold/thawed"}; !slices.Equal(actions, want) {
		t.Errorf("rm --dry-run of archived objects: %q, want %q", actions, want)
	}
}

// TestCopyFrom: --from works for copies too: object URLs read from a list
// land at their keys' paths under an S3 destination prefix, checked as a
// prefix's are.
func TestCopyFrom(t *testing.T) {
	r := newCopyRig(t, false)
	fleettest.StartWorker(t, r.cfg)
	objs := map[string][]byte{"f/a.bin": randomBytes(t, 9*mib+1), "f/sub/b.txt": randomBytes(t, 700)}
	var list strings.Builder
	for k, data := range objs {
		put(t, r.vc, "src", k, data)
		list.WriteString("s3://src/" + k + "\n")
	}
	req := enqueuer.Request{From: strings.NewReader(list.String()), Dest: "minio://dst/listed/"}
	sum, err := r.c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if j := r.c.Wait(t, sum.Job, time.Minute); j.Succeeded != 2 || j.Failed != 0 {
		r.c.LogObjects(t, sum.Job)
		t.Fatalf("--from to S3: %+v", j)
	}
	for k, data := range objs {
		wantCopied(t, r.mc, "dst", "listed/"+k, data)
	}
	noUploads(t, r.mc, "dst")
}
