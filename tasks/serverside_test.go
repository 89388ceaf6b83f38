package tasks

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// pagedBucket answers ListObjectsV2 from a set of keys as S3 does (UTF-8
// binary order, Prefix, StartAfter, MaxKeys, a continuation token), or as
// a server that breaks the rules would: unsorted, or failing. The real
// servers' side is in worker's TestServerSideCopyRequests.
type pagedBucket struct {
	keys     []string
	unsorted bool // pages in reverse order
	encode   bool // EncodingType=url honoured
	noFlag   bool // pages without IsTruncated
	noToken  bool // truncated pages without a continuation token
	err      error
	calls    []s3.ListObjectsV2Input
}

func (b *pagedBucket) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	b.calls = append(b.calls, *in)
	if b.err != nil {
		return nil, b.err
	}
	keys := slices.Clone(b.keys)
	sort.Strings(keys)
	after := aws.ToString(in.StartAfter)
	if in.ContinuationToken != nil {
		after = *in.ContinuationToken
	}
	var page []string
	for _, k := range keys {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > after {
			page = append(page, k)
		}
	}
	out := &s3.ListObjectsV2Output{}
	if n := int(aws.ToInt32(in.MaxKeys)); len(page) > n {
		page = page[:n]
		out.IsTruncated, out.NextContinuationToken = aws.Bool(true), aws.String(page[n-1])
	} else {
		out.IsTruncated = aws.Bool(false)
	}
	if b.noFlag {
		out.IsTruncated = nil
	}
	if b.noToken {
		out.NextContinuationToken = nil
	}
	if b.unsorted {
		slices.Reverse(page)
	}
	if b.encode {
		out.EncodingType = types.EncodingTypeUrl
	}
	for _, k := range page {
		if b.encode {
			k = url.QueryEscape(k)
		}
		out.Contents = append(out.Contents, types.Object{Key: aws.String(k)})
	}
	return out, nil
}

func TestFreeKeys(t *testing.T) {
	batch := func(lo, n int) []string {
		var ks []string
		for i := lo; i < lo+n; i++ {
			ks = append(ks, "dst/o"+string(rune('0'+i/100))+string(rune('0'+i/10%10))+string(rune('0'+i%10)))
		}
		return ks
	}
	ctx := context.Background()
	cases := []struct {
		name      string
		bucket    pagedBucket
		ask       []string
		want      []string
		wantErr   string
		wantCalls int
	}{
		{name: "an empty destination: every key is free, in one call",
			ask: batch(10, 5), want: batch(10, 5), wantCalls: 1},
		{name: "keys copied already (by other batches, before and after) and one of the batch's",
			bucket: pagedBucket{keys: append(append(batch(0, 10), "dst/o012"), batch(15, 900)...)},
			ask:    batch(10, 5), want: []string{"dst/o010", "dst/o011", "dst/o013", "dst/o014"}, wantCalls: 1},
		{name: "others between the batch's keys: more pages, until past the last",
			bucket: pagedBucket{keys: []string{"dst/o010a", "dst/o010b", "dst/o010c", "dst/o010d", "dst/o010e", "dst/o010f", "dst/o010g", "dst/o011a", "dst/o011b", "dst/o011c", "dst/o011d", "dst/o011e", "dst/o012a"}},
			ask:    batch(10, 3), want: batch(10, 3), wantCalls: 2},
		{name: "more pages than maxListPages: the keys past the last listed are left to a HEAD",
			bucket: pagedBucket{keys: batch(100, 100)},
			ask:    []string{"dst/o000", "dst/o001", "dst/o150", "dst/o250"}, want: []string{"dst/o000", "dst/o001"}, wantCalls: maxListPages},
		{name: "every key there: the first page reaches past the last key, and the listing stops",
			bucket: pagedBucket{keys: batch(0, 100)},
			ask:    batch(10, 3), wantCalls: 1},
		{name: "a range with keys all through it: pages until past the last key",
			bucket: pagedBucket{keys: slices.DeleteFunc(batch(0, 1000), func(k string) bool { return k == "dst/o020" })},
			ask:    []string{"dst/o010", "dst/o020"}, want: []string{"dst/o020"}, wantCalls: 3},
		{name: "keys of one character: no StartAfter",
			bucket: pagedBucket{keys: []string{"b"}},
			ask:    []string{"a", "b", "c"}, want: []string{"a", "c"}, wantCalls: 1},
		{name: "a page that does not say whether it is the last vouches for nothing",
			bucket: pagedBucket{keys: []string{"dst/o011"}, noFlag: true},
			ask:    batch(10, 5), wantErr: "does not say", wantCalls: 1},
		{name: "a truncated page without a token vouches for nothing",
			bucket: pagedBucket{keys: batch(10, 100), noToken: true},
			ask:    []string{"dst/o000", "dst/o500"}, wantErr: "without a continuation token", wantCalls: 1},
		{name: "URL-encoded keys, decoded",
			bucket: pagedBucket{keys: []string{"dst/a b+c", "dst/new\nline"}, encode: true},
			ask:    []string{"dst/a b+c", "dst/a%41", "dst/new\nline"}, want: []string{"dst/a%41"}, wantCalls: 1},
		{name: "a listing out of order vouches for nothing",
			bucket: pagedBucket{keys: []string{"dst/o011", "dst/o013"}, unsorted: true},
			ask:    batch(10, 5), wantErr: "not in key order", wantCalls: 1},
		{name: "a refused listing vouches for nothing",
			bucket: pagedBucket{err: errors.New("AccessDenied")},
			ask:    batch(10, 5), wantErr: "AccessDenied", wantCalls: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := freeKeys(ctx, &c.bucket, "bkt", c.ask)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || got != nil {
					t.Fatalf("free %q, err %v; want none and an error with %q", got, err, c.wantErr)
				}
			} else if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("free %q, err %v; want %q", got, err, c.want)
			}
			if len(c.bucket.calls) != c.wantCalls {
				t.Errorf("%d ListObjectsV2 calls, want %d", len(c.bucket.calls), c.wantCalls)
			}
			first := c.bucket.calls[0]
			if !strings.HasPrefix(c.ask[0], aws.ToString(first.Prefix)) || !strings.HasPrefix(c.ask[len(c.ask)-1], aws.ToString(first.Prefix)) ||
				aws.ToString(first.StartAfter) >= c.ask[0] || first.EncodingType != types.EncodingTypeUrl {
				t.Errorf("first call: prefix %q, start after %q, encoding %q; asked for %q", aws.ToString(first.Prefix), aws.ToString(first.StartAfter), first.EncodingType, c.ask)
			}
		})
	}
}

func TestCommonPrefix(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"dst/o010", "dst/o014", "dst/o01"},
		{"a", "a", "a"},
		{"", "x", ""},
		{"p/日本", "p/日曜", "p/日"},
		{"p/é", "p/è", "p/"}, // é and è share their first byte
	} {
		if got := commonPrefix(c.a, c.b); got != c.want {
			t.Errorf("commonPrefix(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestExactKey(t *testing.T) {
	for k, want := range map[string]bool{
		"to/k07": true, "a b/日本/q?x=1": true, "new\nline": true, "dots.in.name/..x": true,
		"to//k07": false, "/k": false, "to/": false, "to/./k": false, "to/../k": false, "..": false, "": false,
	} {
		if got := exactKey(k); got != want {
			t.Errorf("exactKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestWrittenAsKMSKey: an object is under the KMS key the job named when
// its key ARN is that name or ends in "/" and it, not merely in its
// characters.
func TestWrittenAsKMSKey(t *testing.T) {
	const arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-0000-0000-0000-000000000001"
	out := &s3.HeadObjectOutput{ServerSideEncryption: types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String(arn)}
	for id, want := range map[string]bool{
		arn: true, "1234abcd-0000-0000-0000-000000000001": true, "1": false, "000000000001": false, "other": false,
	} {
		if got := writtenAs(out, &ledger.Write{SSE: "aws:kms", SSEKMSKeyID: id}); got != want {
			t.Errorf("writtenAs(key %s, asked %q) = %v, want %v", arn, id, got, want)
		}
	}
}

// TestObjectMetaEqual: headers compare by value, a missing one as empty.
func TestObjectMetaEqual(t *testing.T) {
	when := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a := metaOfHead(&s3.HeadObjectOutput{ContentType: aws.String("text/plain"), Expires: &when, Metadata: map[string]string{"k": "v"}})
	b := metaOfHead(&s3.HeadObjectOutput{ContentType: aws.String("text/plain"), Expires: aws.Time(when.Local()), Metadata: map[string]string{"k": "v"},
		CacheControl: aws.String("")})
	if !a.equal(b) {
		t.Errorf("%+v and %+v: not equal", a, b)
	}
	for what, c := range map[string]*s3.HeadObjectOutput{
		"type":     {ContentType: aws.String("text/html"), Expires: &when, Metadata: map[string]string{"k": "v"}},
		"metadata": {ContentType: aws.String("text/plain"), Expires: &when, Metadata: map[string]string{"k": "w"}},
		"expires":  {ContentType: aws.String("text/plain"), Metadata: map[string]string{"k": "v"}},
		"encoding": {ContentType: aws.String("text/plain"), Expires: &when, Metadata: map[string]string{"k": "v"}, ContentEncoding: aws.String("gzip")},
	} {
		if a.equal(metaOfHead(c)) {
			t.Errorf("another %s: equal", what)
		}
	}
}

// TestPutBy: the object a PUT's If-None-Match found is the PUT's own when
// its CRC and its MD5 ETag are the bytes'; a CRC alone, forged, is not
// enough. Under a KMS key, whose ETag is no MD5, the headers cannot be
// sure (holds then reads the object back).
func TestPutBy(t *testing.T) {
	buf := []byte("hello")
	const md5Hello, crc = `"5d41402abc4b2a76b9719d911017c592"`, "AAAAAAAAAAE="
	head := func(etag string, sse types.ServerSideEncryption) *s3.HeadObjectOutput {
		return &s3.HeadObjectOutput{ETag: aws.String(etag), ChecksumCRC64NVME: aws.String(crc), ChecksumType: types.ChecksumTypeFullObject, ServerSideEncryption: sse}
	}
	for _, c := range []struct {
		what string
		out  *s3.HeadObjectOutput
		want bool
	}{
		{"its CRC and MD5", head(md5Hello, ""), true},
		{"its CRC, another MD5", head(`"b9878e4dd0fb13aff347d74a039d3d0c"`, ""), false},
		{"its CRC, a multipart ETag", head(`"b9878e4dd0fb13aff347d74a039d3d0c-2"`, ""), false},
		{"its CRC under a KMS key (not sure)", head(`"b9878e4dd0fb13aff347d74a039d3d0c"`, types.ServerSideEncryptionAwsKms), true},
		{"another CRC", &s3.HeadObjectOutput{ETag: aws.String(md5Hello), ChecksumCRC64NVME: aws.String("AAAAAAAAAAI=")}, false},
	} {
		if got, sure := putBy(c.out, checksum.CRC64NVME, crc, buf); got != c.want || sure != (c.out.ServerSideEncryption == "") {
			t.Errorf("%s: %v (sure %v), want %v", c.what, got, sure, c.want)
		}
	}
}

// bodyGetter answers GetObject with body, under the headers of head (and
// contentType, when set), or with err; it counts the calls and keeps the
// last input.
type bodyGetter struct {
	head        *s3.HeadObjectOutput
	body        []byte
	contentType string
	err         error
	gets        int
	in          *s3.GetObjectInput
}

func (g *bodyGetter) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	g.gets++
	g.in = in
	if g.err != nil {
		return nil, g.err
	}
	out := &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(g.body)), ContentLength: aws.Int64(int64(len(g.body)))}
	if h := g.head; h != nil {
		out.ETag, out.ServerSideEncryption, out.SSEKMSKeyId, out.SSECustomerAlgorithm = h.ETag, h.ServerSideEncryption, h.SSEKMSKeyId, h.SSECustomerAlgorithm
		out.ContentType, out.Metadata, out.TagCount, out.StorageClass = h.ContentType, h.Metadata, h.TagCount, h.StorageClass
	}
	if g.contentType != "" {
		out.ContentType = aws.String(g.contentType)
	}
	return out, nil
}

// TestHolds: an object under a KMS or customer key whose CRC matches is
// read back, pinned to the ETag its HEAD saw, and compared byte for byte
// and header for header; one whose ETag tells is not read. A read that
// fails, or finds the object changed since its HEAD, is an error, not a
// verdict.
func TestHolds(t *testing.T) {
	buf := []byte("hello")
	const crc = "AAAAAAAAAAE="
	ctx := context.Background()
	dst := location.Source{Bucket: "b", Key: "k"}
	kms := &s3.HeadObjectOutput{ETag: aws.String(`"b9878e4dd0fb13aff347d74a039d3d0c"`), ChecksumCRC64NVME: aws.String(crc), ServerSideEncryption: types.ServerSideEncryptionAwsKms}
	ssec := &s3.HeadObjectOutput{ETag: aws.String(`"b9878e4dd0fb13aff347d74a039d3d0c"`), ChecksumCRC64NVME: aws.String(crc), SSECustomerAlgorithm: aws.String("AES256")}
	changed := &smithy.GenericAPIError{Code: "PreconditionFailed"}
	for what, c := range map[string]struct {
		out         *s3.HeadObjectOutput
		body        []byte
		contentType string
		err         error
		want        bool
		wantErr     bool
		gets        int
	}{
		"KMS, its bytes":                    {out: kms, body: buf, want: true, gets: 1},
		"KMS, other bytes":                  {out: kms, body: []byte("hellp"), gets: 1},
		"KMS, longer":                       {out: kms, body: []byte("hello!"), gets: 1},
		"KMS, its bytes, another type":      {out: kms, body: buf, contentType: "text/x-other", gets: 1},
		"KMS, the read fails":               {out: kms, err: errors.New("connection reset"), wantErr: true, gets: 1},
		"KMS, changed since its HEAD (412)": {out: kms, err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusPreconditionFailed}}, Err: changed}}, wantErr: true, gets: 1},
		"SSE-C, its bytes":                  {out: ssec, body: buf, want: true, gets: 1},
		"plain, its MD5":                    {out: &s3.HeadObjectOutput{ETag: aws.String(`"5d41402abc4b2a76b9719d911017c592"`), ChecksumCRC64NVME: aws.String(crc)}, want: true},
		"KMS, another CRC":                  {out: &s3.HeadObjectOutput{ChecksumCRC64NVME: aws.String("AAAAAAAAAAI="), ServerSideEncryption: types.ServerSideEncryptionAwsKms}, body: buf},
	} {
		g := &bodyGetter{head: c.out, body: c.body, contentType: c.contentType, err: c.err}
		got, err := holds(ctx, g, dst, c.out, checksum.CRC64NVME, crc, buf, nil)
		if got != c.want || (err != nil) != c.wantErr || g.gets != c.gets {
			t.Errorf("%s: %v, %v after %d GETs, want %v (an error: %v) after %d", what, got, err, g.gets, c.want, c.wantErr, c.gets)
		}
		if g.in != nil && aws.ToString(g.in.IfMatch) != aws.ToString(c.out.ETag) {
			t.Errorf("%s: the read back is pinned to %q, want the HEAD's ETag %q", what, aws.ToString(g.in.IfMatch), aws.ToString(c.out.ETag))
		}
	}
}

// TestBytesDiffer: what two HEADs of objects of one size say of their
// bytes. Differing MD5 ETags do, unless either is under a KMS or customer
// key; differing full-object checksums of one algorithm do; a multipart
// ETag, or checksums of two algorithms, say nothing.
func TestBytesDiffer(t *testing.T) {
	t.Parallel()
	const m1, m2 = `"5d41402abc4b2a76b9719d911017c592"`, `"b9878e4dd0fb13aff347d74a039d3d0c"`
	h := func(etag string, f func(*s3.HeadObjectOutput)) *s3.HeadObjectOutput {
		o := &s3.HeadObjectOutput{ETag: aws.String(etag)}
		if f != nil {
			f(o)
		}
		return o
	}
	kms := func(o *s3.HeadObjectOutput) { o.ServerSideEncryption = types.ServerSideEncryptionAwsKms }
	crc := func(v string) func(*s3.HeadObjectOutput) {
		return func(o *s3.HeadObjectOutput) {
			o.ChecksumCRC64NVME, o.ChecksumType = aws.String(v), types.ChecksumTypeFullObject
		}
	}
	for _, c := range []struct {
		what     string
		src, dst *s3.HeadObjectOutput
		want     bool
	}{
		{"the same MD5", h(m1, nil), h(m1, nil), false},
		{"two MD5s", h(m1, nil), h(m2, nil), true},
		{"two MD5-shaped ETags, the copy's under KMS", h(m1, nil), h(m2, kms), false},
		{"two MD5-shaped ETags, the source's under KMS", h(m1, kms), h(m2, nil), false},
		{"a multipart source", h(`"5d41402abc4b2a76b9719d911017c592-2"`, nil), h(m2, nil), false},
		{"a multipart source, another CRC64NVME", h(`"5d41402abc4b2a76b9719d911017c592-2"`, crc("AAAAAAAAAAE=")), h(m2, crc("AAAAAAAAAAI=")), true},
		{"a multipart source, its CRC64NVME", h(`"5d41402abc4b2a76b9719d911017c592-2"`, crc("AAAAAAAAAAE=")), h(m2, crc("AAAAAAAAAAE=")), false},
		{"CRCs of two algorithms", h(`"x-2"`, crc("AAAAAAAAAAE=")), h(m2, func(o *s3.HeadObjectOutput) {
			o.ChecksumCRC32C, o.ChecksumType = aws.String("AAAAAQ=="), types.ChecksumTypeFullObject
		}), false},
	} {
		if got := bytesDiffer(c.src, c.dst); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}
