package assembler

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/location"
)

// headCounter answers HEADs with out and counts them.
type headCounter struct {
	out   *s3.HeadObjectOutput
	heads int
}

func (h *headCounter) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	h.heads++
	return h.out, nil
}

// TestCheckCopied: a CopyObject whose result reports a checksum of the
// source's algorithm is judged by it, with no HEAD (a mismatch fails it);
// one whose result cannot be compared is judged by a HEAD of the copy.
func TestCheckCopied(t *testing.T) {
	dst := location.Source{Bucket: "b", Key: "k"}
	src := Sum{Algorithm: checksum.CRC64NVME, Type: "FULL_OBJECT", Value: "AAAAAAAAAAE="}
	ctx := context.Background()

	h := &headCounter{}
	res := &types.CopyObjectResult{ChecksumCRC64NVME: aws.String(src.Value), ChecksumType: types.ChecksumTypeFullObject}
	c, err := CheckCopied(ctx, h, dst, 10, src, VerifyAuto, res)
	if err != nil || c.Check != "crc64nvme" || h.heads != 0 {
		t.Errorf("a comparable result: %+v, %v, %d HEADs; want crc64nvme and none", c, err, h.heads)
	}
	res.ChecksumCRC64NVME = aws.String("AAAAAAAAAAI=")
	if _, err := CheckCopied(ctx, h, dst, 10, src, VerifyAuto, res); !errors.Is(err, ErrChecksum) {
		t.Errorf("a result with another checksum: %v, want ErrChecksum", err)
	}

	h = &headCounter{out: &s3.HeadObjectOutput{ContentLength: aws.Int64(10), ChecksumCRC64NVME: aws.String(src.Value), ChecksumType: types.ChecksumTypeFullObject}}
	c, err = CheckCopied(ctx, h, dst, 10, src, VerifyAuto, &types.CopyObjectResult{})
	if err != nil || c.Check != "crc64nvme" || h.heads != 1 {
		t.Errorf("a result with no checksum: %+v, %v, %d HEADs; want crc64nvme by one HEAD", c, err, h.heads)
	}
	h.out.ContentLength = aws.Int64(9)
	if _, err := CheckCopied(ctx, h, dst, 10, src, VerifyAuto, nil); !errors.Is(err, ErrChecksum) {
		t.Errorf("a copy of another size: %v, want ErrChecksum", err)
	}
}

// TestCopiedByETag: a copy is judged by its ETag only when both ETags are
// one single-part MD5; it records the copy's own checksum with check md5.
func TestCopiedByETag(t *testing.T) {
	const md5 = "713433d697c65e24f8bfaa92eed65943"
	for _, c := range []struct {
		src, cp string
		want    bool
	}{
		{`"` + md5 + `"`, `"` + md5 + `"`, true},
		{md5, `"` + strings.ToUpper(md5) + `"`, true},
		{md5, "b9878e4dd0fb13aff347d74a039d3d0c", false},
		{`"` + md5 + `-2"`, `"` + md5 + `-2"`, false}, // multipart: not an MD5 of the bytes
		{"", "", false},
		{"zz3433d697c65e24f8bfaa92eed65943", "zz3433d697c65e24f8bfaa92eed65943", false},
		{md5[:31], md5[:31], false},
	} {
		res := &types.CopyObjectResult{ETag: aws.String(c.cp), ChecksumCRC64NVME: aws.String("AAAAAAAAAAA=")}
		v, ok := CopiedByETag(c.src, res)
		if ok != c.want {
			t.Errorf("CopiedByETag(%s, %s) = %v, want %v", c.src, c.cp, ok, c.want)
		}
		if ok && (v.Check != CheckMD5 || v.Algorithm != checksum.CRC64NVME || v.Value != "AAAAAAAAAAA=") {
			t.Errorf("CopiedByETag(%s, %s): %+v, want check md5 with the copy's CRC64NVME", c.src, c.cp, v)
		}
	}
	if _, ok := CopiedByETag(md5, nil); ok {
		t.Error("CopiedByETag without a result: true")
	}
}

// TestAlreadyCopied: an object found at a copy's destination has its
// bytes when its size and single-part ETag are the source's; a matching
// CRC alone, another size or a multipart ETag are another object.
func TestAlreadyCopied(t *testing.T) {
	const md5 = `"713433d697c65e24f8bfaa92eed65943"`
	head := func(etag string, n int64) *s3.HeadObjectOutput {
		return &s3.HeadObjectOutput{ETag: aws.String(etag), ChecksumCRC64NVME: aws.String("AAAAAAAAAAE="), ChecksumType: types.ChecksumTypeFullObject, ContentLength: aws.Int64(n)}
	}
	for _, c := range []struct {
		what    string
		srcETag string
		out     *s3.HeadObjectOutput
		want    bool
	}{
		{"its ETag", md5, head(md5, 10), true},
		{"another size", md5, head(md5, 11), false},
		{"other bytes, the same CRC", md5, head(`"b9878e4dd0fb13aff347d74a039d3d0c"`, 10), false},
		{"a multipart source", `"713433d697c65e24f8bfaa92eed65943-2"`, head(`"713433d697c65e24f8bfaa92eed65943-2"`, 10), false},
		{"no HEAD", md5, nil, false},
	} {
		v, ok := AlreadyCopied(c.srcETag, 10, c.out)
		if ok != c.want || ok && v.Check != CheckMD5 {
			t.Errorf("%s: %+v, %v; want %v (check md5)", c.what, v, ok, c.want)
		}
	}
}

// TestUploadETag: the ETag of an object completed from parts is the MD5
// of their MD5s and their count; a part whose ETag is no MD5 leaves it
// unknown.
func TestUploadETag(t *testing.T) {
	// Two parts whose MD5s are those of "a" and "b": md5(md5("a") || md5("b")).
	parts := []types.CompletedPart{{ETag: aws.String(`"0cc175b9c0f1b6a831c399e269772661"`)}, {ETag: aws.String("92EB5FFEE6AE2FEC3AD71C777531578F")}}
	if got, ok := UploadETag(parts); !ok || got != "96e024ba2074fe77e8e965ba43a704be-2" {
		t.Errorf("UploadETag = %q, %v; want 96e024ba2074fe77e8e965ba43a704be-2", got, ok)
	}
	parts[1].ETag = aws.String(`"92eb5ffee6ae2fec3ad71c777531578f-3"`)
	if _, ok := UploadETag(parts); ok {
		t.Error("a part's ETag that is no MD5: known")
	}
}
