package worker_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestCopySSEC: an SSE-C object is copied to S3 encrypted with the same
// key (the workers' own copy of it; only its MD5 travels in a task):
// server-side within MinIO (CopyObject, UploadPartCopy), through the
// workers (--verify required: a GET and PutObject, ranged GETs and upload
// parts), and a local file uploaded with the key, by the enqueuer and
// listed on its --on host. The copies read back with the key, byte for
// byte, and not without it; objects there under another key are found,
// not replaced.
// MinIO takes SSE-C over TLS only.
func TestCopySSEC(t *testing.T) {
	r := newCopyRigWith(t, testenv.MinIOOptions{TLS: true})
	key := randomBytes(t, 32)
	sum := md5.Sum(key)
	keyMD5 := base64.StdEncoding.EncodeToString(sum[:])
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	wcfg := r.cfg
	wcfg.SSECKeyFile = keyFile
	wcfg.Host = "ssec-host" // not the enqueuer's: an upload --on it is listed there
	root := t.TempDir()
	wcfg.AllowSource = []string{root}
	fleettest.StartWorker(t, wcfg)
	ctx := context.Background()
	ssec := func(in *s3.PutObjectInput) {
		in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = aws.String("AES256"), aws.String(base64.StdEncoding.EncodeToString(key)), aws.String(keyMD5)
	}
	objs := map[string][]byte{"big": randomBytes(t, 12*mib+5), "small": randomBytes(t, 900)}
	for k, data := range objs {
		in := &s3.PutObjectInput{Bucket: aws.String("other"), Key: aws.String("enc/" + k), Body: bytes.NewReader(data), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c}
		ssec(in)
		if _, err := r.mc.PutObject(ctx, in); err != nil {
			t.Fatalf("put an SSE-C object: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "up.bin"), objs["big"], 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ name, src, dest, verify, on string }{
		{"server-side", "minio://other/enc/", "minio://dst/side/", "", ""},
		{"through the workers", "minio://other/enc/", "minio://dst/through/", assembler.VerifyRequired, ""},
		{"upload", root + "/up.bin", "minio://dst/up/big", "", ""},
		{"upload listed on its host", root + "/", "minio://dst/onhost/", "", "ssec-host"},
	} {
		req := fleettest.Request(c.src, c.dest)
		req.SSECKeyMD5, req.SSECKey, req.Verify, req.On = keyMD5, key, c.verify, c.on
		s, err := r.c.Submit(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		j := r.c.Wait(t, s.Job, 2*time.Minute)
		if j.Failed != 0 || j.Succeeded == 0 {
			r.c.LogObjects(t, s.Job)
			t.Fatalf("%s: %+v", c.name, j)
		}
	}
	for _, k := range []string{"side/big", "side/small", "through/big", "through/small", "up/big", "onhost/up.bin"} {
		want := objs[filepath.Base(k)]
		if k == "onhost/up.bin" {
			want = objs["big"]
		}
		if _, err := r.mc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("dst"), Key: aws.String(k)}); err == nil {
			t.Errorf("%s: read without the key: the copy is not encrypted with it", k)
		}
		out, err := r.mc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("dst"), Key: aws.String(k),
			SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: aws.String(base64.StdEncoding.EncodeToString(key)), SSECustomerKeyMD5: aws.String(keyMD5)})
		if err != nil {
			t.Fatalf("%s with the key: %v", k, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want the source's %d", k, len(got), err, len(want))
		}
	}
	noUploads(t, r.mc, "dst")

	// Copied without --overwrite onto objects encrypted with another key:
	// they are found (a HEAD without any key answers 400), not replaced.
	key2 := randomBytes(t, 32)
	sum2 := md5.Sum(key2)
	for k := range objs {
		in := &s3.PutObjectInput{Bucket: aws.String("dst"), Key: aws.String("taken/" + k), Body: bytes.NewReader([]byte("another key's")),
			SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: aws.String(base64.StdEncoding.EncodeToString(key2)),
			SSECustomerKeyMD5: aws.String(base64.StdEncoding.EncodeToString(sum2[:]))}
		if _, err := r.mc.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	req := fleettest.Request("minio://other/enc/", "minio://dst/taken/")
	req.SSECKeyMD5, req.SSECKey = keyMD5, key
	again, err := r.c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r.c.Wait(t, again.Job, time.Minute)
	for k, o := range r.c.Objects(t, again.Job) {
		if o.State != ledger.Failed || !strings.Contains(o.Error, "already exists") {
			t.Errorf("%s over an object encrypted with another key: %s %q, want refused (already exists)", k, o.State, o.Error)
		}
	}
}

// TestSSECErrors: an object encrypted with a customer key, fetched without
// it or with another key, fails saying SSE-C (not a bare 400 or 403), at
// enqueue for a single key (its HEAD) and in the workers for a prefix
// (their GETs), and leaves no part file behind.
func TestSSECErrors(t *testing.T) {
	r := newCopyRigWith(t, testenv.MinIOOptions{TLS: true})
	key, other := randomBytes(t, 32), randomBytes(t, 32)
	ctx := context.Background()
	for _, k := range []string{"big", "small"} {
		sum := md5.Sum(key)
		in := &s3.PutObjectInput{Bucket: aws.String("other"), Key: aws.String("enc/" + k), Body: bytes.NewReader(randomBytes(t, map[string]int{"big": 12 * mib, "small": 900}[k])),
			SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: aws.String(base64.StdEncoding.EncodeToString(key)), SSECustomerKeyMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:]))}
		if _, err := r.mc.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, other, 0o600); err != nil {
		t.Fatal(err)
	}
	wcfg := r.cfg
	wcfg.SSECKeyFile = keyFile
	fleettest.StartWorker(t, wcfg)
	otherSum := md5.Sum(other)
	for _, c := range []struct {
		name, md5 string
		want      string
	}{
		{"no key", "", "encrypted with a customer key (SSE-C)"},
		{"another key", base64.StdEncoding.EncodeToString(otherSum[:]), "SSE-C"},
	} {
		dir := t.TempDir()
		req := fleettest.Request("minio://other/enc/big", filepath.Join(dir, "big"))
		req.SSECKeyMD5 = c.md5
		if c.md5 != "" {
			req.SSECKey = other
		}
		if _, err := r.c.Submit(ctx, req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s, one key: %v, want an error saying %q", c.name, err, c.want)
		}
		req = fleettest.Request("minio://other/enc/", dir+"/")
		req.SSECKeyMD5 = c.md5
		if c.md5 != "" {
			req.SSECKey = other
		}
		s, err := r.c.Submit(ctx, req)
		if err != nil {
			t.Fatalf("%s, prefix: %v", c.name, err)
		}
		r.c.Wait(t, s.Job, time.Minute)
		for k, o := range r.c.Objects(t, s.Job) {
			if o.State != ledger.Failed || !strings.Contains(o.Error, c.want) {
				t.Errorf("%s, %s: %s %q, want failed saying %q", c.name, k, o.State, o.Error, c.want)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s: left %v", c.name, names)
		}
	}
}
