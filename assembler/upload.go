package assembler

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// SetSum sets the field of algorithm alg, among an S3 input's checksum
// fields, to value (S3's base64); other algorithms set nothing.
func SetSum(alg checksum.Algorithm, value string, crc32, crc32c, crc64nvme **string) {
	switch alg {
	case checksum.CRC32:
		*crc32 = aws.String(value)
	case checksum.CRC32C:
		*crc32c = aws.String(value)
	case checksum.CRC64NVME:
		*crc64nvme = aws.String(value)
	}
}

// sumField reads the field of algorithm alg among an S3 output's checksum
// fields.
func sumField(alg checksum.Algorithm, crc32, crc32c, crc64nvme *string) string {
	switch alg {
	case checksum.CRC32:
		return aws.ToString(crc32)
	case checksum.CRC32C:
		return aws.ToString(crc32c)
	case checksum.CRC64NVME:
		return aws.ToString(crc64nvme)
	}
	return ""
}

// completeUpload finalizes a transfer to S3: the combined CRC is first
// judged against the source's checksum (as a file's is, but with no second
// read: the bytes are not here), so that a wrong object never appears
// under its key; then CompleteMultipartUpload hands S3 each part's CRC
// and the FULL_OBJECT one, which S3 checks against the bytes it stored,
// with If-None-Match unless Overwrite. The object exists under its key
// only from then on. A checksum the destination then reports that is not
// the one computed removes the object and fails it. A server-side copy
// (no bytes passed through a worker, so no CRC was computed) completes
// without checksums and is judged by the copy's checksum instead
// (CheckCopy).
func (a *Assembler) completeUpload(ctx context.Context, t ledger.Transfer, ev Evidence, dst location.Source) (Record, error) {
	api, err := a.client(ctx, dst.Remote, t.DestFP)
	if err == nil {
		// A copy of an SSE-C object is encrypted with its key: completing
		// it, and reading its checksum back, take the key.
		api, err = s3client.DestWithSSEC(api, a.S3.Secure(dst.Remote), dst.Remote, t.SSECKeyMD5, a.SSECKeys)
	}
	if err != nil {
		return Record{}, a.fail(ctx, t, err, true)
	}
	var v verified
	var src Sum
	if t.ServerSide {
		if src, err = a.sourceSum(ctx, t); err != nil {
			return Record{}, err
		}
	} else if v, err = a.verify(ctx, t, ev, nil); err != nil {
		return Record{}, err
	}
	chunks, err := a.Ledger.Chunks(ctx, t.ID)
	if err != nil {
		return Record{}, err
	}
	parts := make([]types.CompletedPart, t.Chunks)
	for i := range t.Chunks {
		c := chunks[i]
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(c.PartETag)}
		if !t.ServerSide {
			SetSum(ev.CRCAlgorithm, checksum.Encode(ev.CRCAlgorithm, c.CRC), &parts[i].ChecksumCRC32, &parts[i].ChecksumCRC32C, &parts[i].ChecksumCRC64NVME)
		}
	}
	want := checksum.Encode(ev.CRCAlgorithm, ev.CRC)
	in := &s3.CompleteMultipartUploadInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), UploadId: aws.String(t.PartToken),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}
	if !t.ServerSide {
		in.ChecksumType = types.ChecksumTypeFullObject
		SetSum(ev.CRCAlgorithm, want, &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME)
	}
	if !t.Overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := api.CompleteMultipartUpload(ctx, in)
	got := ""
	switch status := s3client.HTTPStatus(err); {
	case err == nil:
		got = sumField(ev.CRCAlgorithm, out.ChecksumCRC32, out.ChecksumCRC32C, out.ChecksumCRC64NVME)
	case (s3client.ErrorCode(err) == "NoSuchUpload" || status == http.StatusPreconditionFailed) && !madeBy(ctx, api, dst, parts):
		// Another object is there: its ETag is not the one these parts
		// make (below, a CRC alone would be compared, which anyone can
		// forge to match).
		if status == http.StatusPreconditionFailed {
			return Record{}, a.fail(ctx, t, fmt.Errorf("destination %s already exists (use --overwrite to replace it)", dst), true)
		}
		return Record{}, a.fail(ctx, t, fmt.Errorf("complete the upload to %s: the multipart upload is gone, and the object there is not this one (its ETag is not the one its parts make)", dst), true)
	case s3client.ErrorCode(err) == "NoSuchUpload" && t.ServerSide:
		// Completed by an earlier run that could not record it, or aborted:
		// the object under the key tells, if it can be compared at all (an
		// older object of the same size proves nothing).
		if c, cerr := CheckCopy(ctx, api, dst, t.Size, src, t.Verify); cerr != nil || c.Check == CheckNone {
			return Record{}, a.fail(ctx, t, fmt.Errorf("complete the copy to %s: the multipart upload is gone, and the object there is not shown to be this copy", dst), true)
		}
	case s3client.ErrorCode(err) == "NoSuchUpload":
		if got, err = DestSum(ctx, api, dst, ev.CRCAlgorithm); err != nil || got != want {
			return Record{}, a.fail(ctx, t, fmt.Errorf("complete the upload to %s: the multipart upload is gone and the object there (checksum %q, %v) is not this one", dst, got, err), true)
		}
	case status == http.StatusPreconditionFailed && t.ServerSide:
		// Another object is there, or this copy is, its response lost (the
		// SDK retried with If-None-Match): CheckCopy below tells, unless it
		// cannot compare them.
		if c, cerr := CheckCopy(ctx, api, dst, t.Size, src, t.Verify); cerr != nil || c.Check == CheckNone {
			return Record{}, a.fail(ctx, t, fmt.Errorf("destination %s already exists (use --overwrite to replace it)", dst), true)
		}
	case status == http.StatusPreconditionFailed:
		// The same, by the checksum of the bytes this upload sent.
		if got, err = DestSum(ctx, api, dst, ev.CRCAlgorithm); err != nil || got != want {
			return Record{}, a.fail(ctx, t, fmt.Errorf("destination %s already exists (use --overwrite to replace it)", dst), true)
		}
	case s3client.ErrorCode(err) == "BadDigest" || s3client.ErrorCode(err) == "InvalidDigest":
		return Record{}, a.fail(ctx, t, fmt.Errorf("%w: complete the upload to %s: %s", ErrChecksum, dst, s3client.Describe(err)), true)
	case s3client.Permanent(err):
		return Record{}, a.fail(ctx, t, fmt.Errorf("complete the upload to %s: %s", dst, s3client.Describe(err)), true)
	default:
		return Record{}, fmt.Errorf("complete the upload to %s: %w", dst, err)
	}
	if t.ServerSide {
		c, err := CheckCopy(ctx, api, dst, t.Size, src, t.Verify)
		if err != nil {
			return Record{}, a.fail(ctx, t, RemoveCopy(ctx, api, dst, err), true)
		}
		return a.succeed(ctx, t, verified{computed: c.Value, algorithm: string(c.Algorithm), check: c.Check, reason: c.Reason})
	}
	if got == "" {
		if got, err = DestSum(ctx, api, dst, ev.CRCAlgorithm); err != nil {
			return Record{}, err
		}
	}
	if got != "" && got != want {
		return Record{}, a.fail(ctx, t, RemoveCopy(ctx, api, dst, fmt.Errorf("%w: %s: the destination's %s is %s, the bytes copied have %s",
			ErrChecksum, dst, ev.CRCAlgorithm, got, want)), true)
	}
	return a.succeed(ctx, t, v)
}

// UploadETag is the ETag S3 gives an object completed from parts: the MD5
// of their MD5s, then "-" and how many, as lower-case hex. False when a
// part's ETag is no MD5 (under a KMS or customer key it need not be).
func UploadETag(parts []types.CompletedPart) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		m, ok := MD5ETag(aws.ToString(p.ETag))
		if !ok {
			return "", false
		}
		b, _ := hex.DecodeString(m)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)), true
}

// madeBy reports whether the object at dst, found where an upload's
// completion was refused (If-None-Match) or its upload was gone, can be
// the one its parts made (its answer lost, or an earlier run completed
// it): its ETag is theirs (UploadETag). When that cannot be known (a
// part's ETag is no MD5, the object is under a KMS or customer key, whose
// ETags servers make otherwise) it may be: the checksum checks after this
// one decide alone.
func madeBy(ctx context.Context, api headAPI, dst location.Source, parts []types.CompletedPart) bool {
	want, ok := UploadETag(parts)
	if !ok {
		return true
	}
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key)})
	if err != nil || KeyEncrypted(out.ServerSideEncryption, out.SSECustomerAlgorithm) {
		return true // the checks after this one refuse it, or decide alone
	}
	return strings.ToLower(strings.Trim(aws.ToString(out.ETag), `"`)) == want
}

// deleter removes an object.
type deleter interface {
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// RemoveCopy removes a copy that failed its check from under its key, and
// returns cause, saying whether that worked.
func RemoveCopy(ctx context.Context, api deleter, dst location.Source, cause error) error {
	_, err := api.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key)})
	if err != nil {
		return fmt.Errorf("%w (and removing the copy failed: %s)", cause, s3client.Describe(err))
	}
	return fmt.Errorf("%w (the copy was removed)", cause)
}

// headAPI reads an object's headers.
type headAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// CopyCheck is what CheckCopy found of a server-side copy.
type CopyCheck struct {
	Algorithm     checksum.Algorithm // of Value, the copy's checksum ("" if it has none)
	Value         string
	Check, Reason string // as Decide names them
}

// CheckCopy judges a server-side copy, whose bytes no worker saw: it must
// have the source's size, and the full-object checksum it reports must be
// the source's when both have one of the same algorithm (S3 computed it
// from the bytes it copied). A copy nothing can be compared with is check
// none, with the reason, or under VerifyRequired an error wrapping
// ErrUnverified; a mismatch wraps ErrChecksum.
func CheckCopy(ctx context.Context, api headAPI, dst location.Source, size int64, src Sum, mode string) (CopyCheck, error) {
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return CopyCheck{}, fmt.Errorf("head the copy %s: %s", dst, s3client.Describe(err))
	}
	return judgeCopy(dst, size, aws.ToInt64(out.ContentLength), SumOf(out), src, mode)
}

// CheckCopied judges a CopyObject by the checksum its result reports,
// when that one can be compared with the source's (or verify is off): no
// HEAD of the copy, which has the source's size (the copy was pinned to
// the source's ETag, and CopyObject copies whole). Otherwise it is
// CheckCopy.
func CheckCopied(ctx context.Context, api headAPI, dst location.Source, size int64, src Sum, mode string, res *types.CopyObjectResult) (CopyCheck, error) {
	if d := SumOf(res); mode == VerifyOff || comparable(src, d) {
		return judgeCopy(dst, size, size, d, src, mode)
	}
	return CheckCopy(ctx, api, dst, size, src, mode)
}

// CopiedByETag judges a single-part server-side copy by its ETag: when
// the copy's (from CopyObject's result) is its source's single-part ETag
// (MD5ETag), the MD5 of the bytes that S3 computes as it writes the copy,
// the copy has the source's bytes as surely as equal CRCs would say, with
// no HEAD of the source for its checksum (check md5; the copy's checksum
// from the result is what it records). A multipart source's ETag, or a
// copy's that differs (encrypted otherwise), cannot say: false. Like the
// checksum a copy's result reports, this takes the server's word: one that
// copied the ETag without the bytes would pass it.
func CopiedByETag(srcETag string, res *types.CopyObjectResult) (CopyCheck, bool) {
	if res == nil {
		return CopyCheck{}, false
	}
	return sameETag(srcETag, aws.ToString(res.ETag), SumOf(res))
}

// sameETag is CopiedByETag for a copy whose ETag is cp and checksum d.
func sameETag(srcETag, cp string, d Sum) (CopyCheck, bool) {
	src, ok := MD5ETag(srcETag)
	if !ok {
		return CopyCheck{}, false
	}
	if cp, ok := MD5ETag(cp); !ok || cp != src {
		return CopyCheck{}, false
	}
	return CopyCheck{Algorithm: d.Algorithm, Value: d.Value, Check: CheckMD5}, true
}

// AlreadyCopied judges an object found at a copy's destination before
// the copy (out, its HEAD): it has the copy's bytes when its size is the
// source's and its single-part ETag is the source's (as CopiedByETag: the
// MD5 of the bytes; a CRC, which anyone can forge to match, is not
// enough). Its check is then md5. The caller compares what else the copy
// would carry (headers, storage class, encryption).
func AlreadyCopied(srcETag string, size int64, out *s3.HeadObjectOutput) (CopyCheck, bool) {
	if out == nil || aws.ToInt64(out.ContentLength) != size {
		return CopyCheck{}, false
	}
	return sameETag(srcETag, aws.ToString(out.ETag), SumOf(out))
}

// comparable reports whether two full-object checksums can be compared.
func comparable(a, b Sum) bool {
	return a.Value != "" && b.Value != "" && a.Algorithm == b.Algorithm && !a.Composite() && !b.Composite()
}

// judgeCopy judges a copy of n bytes whose checksum is d.
func judgeCopy(dst location.Source, size, n int64, d, src Sum, mode string) (CopyCheck, error) {
	c := CopyCheck{Algorithm: d.Algorithm, Value: d.Value}
	switch {
	case n != size:
		return c, fmt.Errorf("%w: %s: the copy has %d bytes, the source %d", ErrChecksum, dst, n, size)
	case mode == VerifyOff:
		c.Check, c.Reason = CheckNone, "verify is off"
	case comparable(src, d):
		if d.Value != src.Value {
			return c, fmt.Errorf("%w: %s: the copy's %s is %s, the source's %s", ErrChecksum, dst, d.Algorithm, d.Value, src.Value)
		}
		c.Check = d.Algorithm.Check()
	default:
		why := fmt.Sprintf("server-side copy: the source's checksum (%s %s) and the copy's (%s %s) are not of one algorithm",
			orNone(string(src.Algorithm)), src.Type, orNone(string(d.Algorithm)), d.Type)
		if mode == VerifyRequired {
			return c, fmt.Errorf("%w: %s: %s (verify: required)", ErrUnverified, dst, why)
		}
		c.Check, c.Reason = CheckNone, why
	}
	return c, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// DestSum reads the destination object's full-object checksum of
// algorithm alg ("" if it keeps none of that algorithm).
func DestSum(ctx context.Context, api headAPI, dst location.Source, alg checksum.Algorithm) (string, error) {
	out, err := HeadDest(ctx, api, dst)
	if err != nil {
		return "", err
	}
	return FullObjectSum(out, alg), nil
}

// HeadDest HEADs a destination object, with its checksum.
func HeadDest(ctx context.Context, api headAPI, dst location.Source) (*s3.HeadObjectOutput, error) {
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return nil, fmt.Errorf("head %s for its checksum: %s", dst, s3client.Describe(err))
	}
	return out, nil
}

// FullObjectSum is the full-object checksum of algorithm alg a HEAD
// reports ("" if none of that algorithm).
func FullObjectSum(out *s3.HeadObjectOutput, alg checksum.Algorithm) string {
	if out.ChecksumType != "" && out.ChecksumType != types.ChecksumTypeFullObject {
		return ""
	}
	return sumField(alg, out.ChecksumCRC32, out.ChecksumCRC32C, out.ChecksumCRC64NVME)
}

// abort aborts a multipart upload, best effort (the worker that made it
// sweeps it too).
func (a *Assembler) abort(api *s3.Client, dst location.Source, id string) {
	_, err := api.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{
		Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), UploadId: aws.String(id)})
	if err != nil && a.Log != nil && s3client.HTTPStatus(err) != http.StatusNotFound {
		a.Log.Warn("abort multipart upload", "dest", dst.String(), "err", s3client.Describe(err))
	}
}

// client resolves a remote; one this worker does not know, or knows as
// another endpoint, fails the object.
func (a *Assembler) client(ctx context.Context, remote, fingerprint string) (*s3.Client, error) {
	c, err := a.S3.Client(ctx, remote, fingerprint)
	if errors.Is(err, s3client.ErrRemote) {
		return nil, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	return c, err
}
