package enqueuer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// headOnly is a fake S3 that knows which keys exist, and their sizes.
type headOnly struct{ sizes map[string]int64 }

func (h headOnly) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	n, ok := h.sizes[aws.ToString(in.Key)]
	if !ok {
		return nil, errors.New("not found")
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(n)}, nil
}

func (headOnly) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return nil, errors.New("unused")
}

func (headOnly) ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return nil, errors.New("unused")
}

// TestDecide is the enqueuer's decision table: what a record and what is
// at the destination make of an object, for files and S3 destinations.
func TestDecide(t *testing.T) {
	dir := t.TempDir()
	there := filepath.Join(dir, "there")
	if err := os.WriteFile(there, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	marked := filepath.Join(dir, "marked") // a finished download: its ETag in the xattr
	if err := os.WriteFile(marked, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	xattrs := unix.Setxattr(marked, assembler.XattrETag, []byte(`"e1"`), 0) == nil
	// placed: a file this transfer placed, whose record went with Redis.
	placed, stranger := filepath.Join(dir, "placed"), filepath.Join(dir, "stranger")
	for _, p := range []string{placed, stranger} {
		if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
		x := ledger.Transfer{Bucket: "b", Key: "k", ETag: `"e1"`, Size: 10, Dest: placed}
		_ = unix.Setxattr(p, assembler.XattrTransfer, []byte(ledger.New(nil, 0).IDFor(x)), 0) // stranger: another destination's ID
	}
	gone := filepath.Join(dir, "gone")
	e := &Enqueuer{S3: headOnly{sizes: map[string]int64{"copied": 10}}}
	obj := func(dest string) ledger.Transfer {
		t := ledger.Transfer{Bucket: "b", Key: "k", ETag: `"e1"`, Size: 10, Dest: dest}
		t.ID = ledger.New(nil, 0).IDFor(t)
		return t
	}
	rec := func(state, dest string) ledger.Transfer {
		t := obj(dest)
		t.State, t.Gen = state, 3
		return t
	}
	tests := []struct {
		name          string
		req           Request
		toS3          bool
		cur, t        ledger.Transfer
		cause         string
		mode          string
		keep, overw   bool
		causeContains string
		needXattr     bool
	}{
		{name: "new", t: obj(gone), mode: ledger.ModeCreate},
		{name: "new, refused by the listing", t: obj(gone), cause: "unsafe key", mode: ledger.ModeCreate, causeContains: "unsafe key"},
		{name: "new, a file is there", t: obj(there), mode: ledger.ModeCreate, causeContains: "already exists"},
		{name: "new, a file is there, --overwrite", req: Request{Overwrite: true}, t: func() ledger.Transfer { x := obj(there); x.Overwrite = true; return x }(),
			mode: ledger.ModeCreate, overw: true},
		{name: "new, --sync, the same file is there", req: Request{Sync: true}, t: obj(marked), mode: ledger.ModePresent, needXattr: true},
		{name: "new, the file this transfer placed is there (its record lost)", t: obj(placed), mode: ledger.ModePresent, needXattr: true},
		{name: "new, a file marked by another transfer is there", t: obj(stranger), mode: ledger.ModeCreate, causeContains: "already exists", needXattr: true},
		{name: "new, --sync, another file is there", req: Request{Sync: true}, t: obj(there), mode: ledger.ModeCreate, overw: true},
		{name: "new, to S3: the workers look", toS3: true, t: obj("s3://bb2/copied"), mode: ledger.ModeCreate},
		{name: "new delete, --sync: never present", req: Request{Sync: true}, toS3: true, t: func() ledger.Transfer { x := obj("s3://bb2/copied"); x.Delete = true; return x }(), mode: ledger.ModeCreate},
		{name: "queued", cur: rec(ledger.Queued, gone), t: obj(gone), mode: ledger.ModeAttach},
		{name: "running", cur: rec(ledger.Running, gone), t: obj(gone), mode: ledger.ModeAttach},
		{name: "succeeded, its file there", cur: rec(ledger.Success, there), t: obj(there), mode: ledger.ModeSkip},
		{name: "succeeded, its file gone", cur: rec(ledger.Success, gone), t: obj(gone), mode: ledger.ModeRestart},
		{name: "succeeded, its file gone, --sync", req: Request{Sync: true}, cur: rec(ledger.Success, gone), t: obj(gone), mode: ledger.ModeRestart, overw: true},
		{name: "copied, its object there", toS3: true, cur: rec(ledger.Success, "s3://bb2/copied"), t: obj("s3://bb2/copied"), mode: ledger.ModeSkip},
		{name: "copied, its object gone", toS3: true, cur: rec(ledger.Success, "s3://bb2/removed"), t: obj("s3://bb2/removed"), mode: ledger.ModeRestart},
		{name: "deleted, listed again", cur: func() ledger.Transfer { x := rec(ledger.Success, "s3://bkt/k"); x.Delete = true; return x }(), t: obj("s3://bkt/k"), mode: ledger.ModeRestart},
		{name: "failed: only the missing chunks", cur: rec(ledger.Failed, gone), t: obj(gone), mode: ledger.ModeRestart, keep: true},
		{name: "cancelled: only the missing chunks", cur: rec(ledger.Cancelled, gone), t: obj(gone), mode: ledger.ModeRestart, keep: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needXattr && !xattrs {
				t.Skip("this filesystem takes no user xattrs")
			}
			s := &submission{e: e, req: tc.req, toS3: tc.toS3}
			x := tc.t
			mode, keep, cause := s.decide(context.Background(), tc.cur, &x, tc.cause)
			if mode != tc.mode || keep != tc.keep || x.Overwrite != tc.overw {
				t.Errorf("decide = %s keep %v overwrite %v, want %s keep %v overwrite %v", mode, keep, x.Overwrite, tc.mode, tc.keep, tc.overw)
			}
			if (tc.causeContains == "") != (cause == "") || !strings.Contains(cause, tc.causeContains) {
				t.Errorf("cause %q, want one containing %q", cause, tc.causeContains)
			}
		})
	}
}

func TestArchived(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		class, restore, status string
		want                   string // a part of the cause; "" for readable
	}{
		{"STANDARD", "", "", ""},
		{"", "", "", ""},
		{"GLACIER_IR", "", "", ""},
		{"GLACIER", "", "", "archived in GLACIER: restore it first"},
		{"DEEP_ARCHIVE", `ongoing-request="true"`, "", "its restore still running"},
		{"GLACIER", `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`, "", ""},
		{"INTELLIGENT_TIERING", "", "ARCHIVE_ACCESS", "archived in INTELLIGENT_TIERING ARCHIVE_ACCESS"},
		{"INTELLIGENT_TIERING", `ongoing-request="false", expiry-date="x"`, "DEEP_ARCHIVE_ACCESS", ""},
	} {
		got := archived(c.class, c.restore, c.status)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("archived(%q, %q, %q) = %q, want %q", c.class, c.restore, c.status, got, c.want)
		}
	}
}

// TestListPayloadCarriesRequest: an upload's request reaches its host's
// list task and comes back whole, through the task's JSON; every field of
// the payload but the chunking (the enqueuer's own) is the request's.
func TestListPayloadCarriesRequest(t *testing.T) {
	t.Parallel()
	req := Request{Job: "j", On: "host-7", Sources: []string{"/data/out/", "/data/one.bin"}, Dest: "s3://bkt/out/",
		Overwrite: true, Sync: true, Mirror: true, MaxDelete: 5, Include: []string{"**/*.gz"}, Exclude: []string{"tmp/**"},
		Priority: "high", Verify: "required", SSECKeyMD5: "B0sHcSxomCfj7S9EVz6qXg==",
		Write: ledger.Write{StorageClass: "STANDARD_IA", Metadata: map[string]string{"team": "data"}}}
	p := listPayload(req)
	v := reflect.ValueOf(p)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; name != "ChunkSize" && name != "Threshold" && v.Field(i).IsZero() {
			t.Errorf("ListPayload.%s is not taken from the request", name)
		}
	}
	task, _, err := tasks.NewListTask(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	var back tasks.ListPayload
	if err := json.Unmarshal(task.Payload(), &back); err != nil {
		t.Fatal(err)
	}
	if got := requestOf(back); !reflect.DeepEqual(got, req) {
		t.Errorf("the request on its host:\n%+v\nwant\n%+v", got, req)
	}
}

// headFixed is a fake S3 whose every HEAD answers out.
type headFixed struct {
	headOnly
	out s3.HeadObjectOutput
}

func (h headFixed) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out := h.out
	return &out, nil
}

// TestSameObject is --sync's judgement of an S3 destination: the same
// size and full-object checksum, or the same single-part ETag when that
// is an MD5 on both ends, and nothing else.
func TestSameObject(t *testing.T) {
	t.Parallel()
	const etag = `"0123456789abcdef0123456789abcdef"`
	src := ledger.Transfer{Bucket: "b", Key: "k", ETag: etag, Size: 10, Dest: "s3://bb2/k"}
	withSum := src
	withSum.ChecksumAlgorithm, withSum.Checksum = "CRC32C", "AAAAAA=="
	plain := s3.HeadObjectOutput{ContentLength: aws.Int64(10), ETag: aws.String(etag)}
	with := func(f func(*s3.HeadObjectOutput)) s3.HeadObjectOutput { o := plain; f(&o); return o }
	for _, c := range []struct {
		name string
		t    ledger.Transfer
		out  s3.HeadObjectOutput
		want bool
	}{
		{"the same MD5 ETag", src, plain, true},
		{"another size", src, with(func(o *s3.HeadObjectOutput) { o.ContentLength = aws.Int64(11) }), false},
		{"another ETag", src, with(func(o *s3.HeadObjectOutput) { o.ETag = aws.String(`"ffffffffffffffffffffffffffffffff"`) }), false},
		{"a multipart ETag", ledger.Transfer{Bucket: "b", Key: "k", ETag: `"0123456789abcdef0123456789abcdef-2"`, Size: 10, Dest: "s3://bb2/k"},
			with(func(o *s3.HeadObjectOutput) { o.ETag = aws.String(`"0123456789abcdef0123456789abcdef-2"`) }), false},
		{"under SSE-S3", src, with(func(o *s3.HeadObjectOutput) { o.ServerSideEncryption = types.ServerSideEncryptionAes256 }), true},
		{"under SSE-KMS", src, with(func(o *s3.HeadObjectOutput) { o.ServerSideEncryption = types.ServerSideEncryptionAwsKms }), false},
		{"under DSSE-KMS", src, with(func(o *s3.HeadObjectOutput) { o.ServerSideEncryption = types.ServerSideEncryptionAwsKmsDsse }), false},
		{"under a customer key", src, with(func(o *s3.HeadObjectOutput) { o.SSECustomerAlgorithm = aws.String("AES256") }), false},
		{"the same CRC32C", withSum, with(func(o *s3.HeadObjectOutput) {
			o.ETag, o.ChecksumCRC32C, o.ChecksumType = aws.String(`"other"`), aws.String("AAAAAA=="), types.ChecksumTypeFullObject
		}), true},
		{"another CRC32C, the same ETag", withSum, with(func(o *s3.HeadObjectOutput) {
			o.ChecksumCRC32C, o.ChecksumType = aws.String("AAAAAQ=="), types.ChecksumTypeFullObject
		}), false},
	} {
		s := &submission{e: &Enqueuer{S3: headFixed{out: c.out}}, req: Request{Sync: true}, toS3: true}
		if got := s.sameObject(context.Background(), c.t); got != c.want {
			t.Errorf("%s: sameObject = %v, want %v", c.name, got, c.want)
		}
	}
}
