package tasks

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// copySource is the x-amz-copy-source of an object: bucket/key with the
// key's segments URL-escaped ("+" too: servers read it as a space), and
// its version.
func copySource(o Object) string {
	segs := strings.Split(o.Key, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	src := o.Bucket + "/" + strings.Join(segs, "/")
	if o.VersionID != "" {
		src += "?versionId=" + url.QueryEscape(o.VersionID)
	}
	return src
}

// copyOptions are the request options of a copy's source: who pays, whose
// bucket it must be, and the SSE-C key it was encrypted with (the
// worker's own copy of the key the task names by MD5).
type copyOptions struct {
	payer                 types.RequestPayer
	owner                 *string
	keyAlg, key, keyMD5   *string
	hasKey                bool
	ifMatch, copySrc, rng *string
}

func (h *ChunkHandler) copyOptions(o Object) (copyOptions, error) {
	return copyOptionsOf(o, h.SSECKeys)
}

func copyOptionsOf(o Object, keys map[string][]byte) (copyOptions, error) {
	c := copyOptions{payer: types.RequestPayer(o.RequestPayer), copySrc: aws.String(copySource(o)), ifMatch: aws.String(o.ETag)}
	if o.ExpectedOwner != "" {
		c.owner = aws.String(o.ExpectedOwner)
	}
	if o.SSECKeyMD5 != "" {
		k, err := s3client.SSECKey(keys, o.SSECKeyMD5)
		if err != nil {
			return c, err
		}
		c.hasKey = true
		c.keyAlg, c.key, c.keyMD5 = aws.String("AES256"), aws.String(base64.StdEncoding.EncodeToString(k)), aws.String(o.SSECKeyMD5)
	}
	return c, nil
}

// copyPart has S3 copy the chunk's range of the source into part Chunk+1
// of the upload (UploadPartCopy, pinned with x-amz-copy-source-if-match):
// no byte passes through the worker, so the worker's bandwidth cap does
// not apply, there is no CRC of the bytes to record (the assembler
// compares the copy's checksum with the source's instead), and no
// progress to report while S3 copies: nothing watches the call (see
// stragglers.go), and the part's bytes count once it lands.
func (h *ChunkHandler) copyPart(ctx context.Context, api *s3.Client, p ChunkPayload, dst location.Source, id string) (int64, string, error) {
	r := p.Range()
	o, err := h.copyOptions(p.Object)
	if err != nil {
		return 0, "", fmt.Errorf("%w: copy %s: %w", asynq.SkipRetry, p.what(), err)
	}
	in := &s3.UploadPartCopyInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), UploadId: aws.String(id),
		PartNumber: aws.Int32(int32(p.Chunk + 1)), CopySource: o.copySrc, CopySourceRange: aws.String(r.Header()),
		CopySourceIfMatch: o.ifMatch, RequestPayer: o.payer, ExpectedSourceBucketOwner: o.owner,
		CopySourceSSECustomerAlgorithm: o.keyAlg, CopySourceSSECustomerKey: o.key, CopySourceSSECustomerKeyMD5: o.keyMD5}
	out, err := api.UploadPartCopy(ctx, in)
	switch status := s3client.HTTPStatus(err); {
	case err == nil:
		if out.CopyPartResult == nil {
			return 0, "", fmt.Errorf("copy %s into part %d of %s: no result", p.what(), p.Chunk+1, dst)
		}
		return r.Len(), aws.ToString(out.CopyPartResult.ETag), nil
	case s3client.ErrorCode(err) == "NoSuchUpload":
		return 0, "", fmt.Errorf("%w: %w: copy part %d of %s: the multipart upload was aborted", asynq.SkipRetry, errPartGone, p.Chunk+1, dst)
	case status == http.StatusNotFound || status == http.StatusPreconditionFailed:
		return 0, "", fmt.Errorf("%w: %w: copy %s: %s", asynq.SkipRetry, errSourceGone, p.what(), s3client.Describe(err))
	}
	return 0, "", s3Failure(fmt.Sprintf("copy %s into part %d of %s", p.what(), p.Chunk+1, dst), err)
}

// copyWhole has S3 copy a small object whole (CopyObject, pinned to the
// source's ETag, its headers and metadata copied, If-None-Match unless
// Overwrite), then compares the copy's single-part ETag, or its checksum,
// with the source's.
//
// absent says the batch's listing of the destination (listAbsent) showed
// the key free: no HEAD is needed to know it.
func (h *BatchHandler) copyWhole(ctx context.Context, o BatchObject, absent bool) (ledger.BatchResult, assembler.Record, error) {
	dst, api, err := h.destOf(ctx, o)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	opts, err := copyOptionsOf(o.Object, h.SSECKeys)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: copy %s: %w", asynq.SkipRetry, o.URL(), err)
	}
	in := &s3.CopyObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), CopySource: opts.copySrc,
		CopySourceIfMatch: opts.ifMatch, MetadataDirective: types.MetadataDirectiveCopy, RequestPayer: opts.payer,
		ExpectedSourceBucketOwner: opts.owner, CopySourceSSECustomerAlgorithm: opts.keyAlg, CopySourceSSECustomerKey: opts.key,
		CopySourceSSECustomerKeyMD5: opts.keyMD5}
	if !o.Overwrite {
		// versitygw and MinIO ignore If-None-Match on CopyObject (they keep
		// it on PutObject and CompleteMultipartUpload): look first too,
		// unless the batch's listing showed the key free.
		in.IfNoneMatch = aws.String("*")
		if !absent {
			if v, err := h.copiedBefore(ctx, api, dst, o); err != nil || v != nil {
				return copyResult(o, v, err)
			}
		}
	}
	var head *s3.HeadObjectOutput
	if o.Write != nil && len(o.Write.Metadata) > 0 {
		// Metadata added to the source's: CopyObject takes it only by
		// replacing all of it, so the source's is read first.
		if head, err = h.headSource(ctx, api, o); err != nil {
			return ledger.BatchResult{}, assembler.Record{}, err
		}
		in.MetadataDirective = types.MetadataDirectiveReplace
	}
	var meta objectMeta
	if head != nil {
		meta = metaOfHead(head)
	}
	setWrite(in, meta, o.Write)
	// The source's checksum costs a HEAD: when only it is missing and the
	// source's ETag is an MD5, the copy's ETag is tried first (see
	// assembler.CopiedByETag), and the HEAD comes after the copy only if that cannot
	// tell (the copy encrypted otherwise, say). A source whose ETag cannot
	// tell (multipart, SSE-C) is HEADed first, as the copy would be removed
	// if that HEAD failed after it.
	var src assembler.Sum
	_, md5 := assembler.MD5ETag(o.ETag)
	later := o.Checksum == "" && o.Verify != assembler.VerifyOff && head == nil && md5 && o.SSECKeyMD5 == ""
	if !later {
		if src, err = h.sourceSum(ctx, api, o, head); err != nil {
			return ledger.BatchResult{}, assembler.Record{}, err
		}
	}
	began := time.Now()
	out, err := api.CopyObject(ctx, in)
	if err != nil {
		switch status := s3client.HTTPStatus(err); {
		case status == http.StatusPreconditionFailed && o.Overwrite:
			return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: %w: copy %s: %s", asynq.SkipRetry, errSourceGone, o.URL(), s3client.Describe(err))
		case status == http.StatusPreconditionFailed:
			// The source changed, or the destination exists (this copy,
			// its answer lost and the SDK's retry refused, or another):
			// which?
			if v, herr := h.copiedBefore(ctx, api, dst, o); herr != nil || v != nil {
				return copyResult(o, v, herr)
			}
			return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: %w: copy %s: %s", asynq.SkipRetry, errSourceGone, o.URL(), s3client.Describe(err))
		case status == http.StatusNotFound:
			return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: %w: copy %s: %s", asynq.SkipRetry, errSourceGone, o.URL(), s3client.Describe(err))
		}
		return ledger.BatchResult{}, assembler.Record{}, s3Failure("copy "+o.URL()+" to "+dst.String(), err)
	}
	v, byETag := assembler.CopyCheck{}, false
	if later {
		v, byETag = assembler.CopiedByETag(o.ETag, out.CopyObjectResult)
	}
	switch {
	case byETag:
	case later:
		if src, err = h.sourceSum(ctx, api, o, nil); err != nil {
			return ledger.BatchResult{}, assembler.Record{}, assembler.RemoveCopy(ctx, api, dst, err)
		}
		fallthrough
	default:
		v, err = assembler.CheckCopied(ctx, api, dst, o.Size, src, o.Verify, out.CopyObjectResult)
	}
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: %w", asynq.SkipRetry, assembler.RemoveCopy(ctx, api, dst, err))
	}
	h.Metrics.ChunkDone(0, time.Since(began))
	return copyResult(o, &v, nil)
}

// copyResult is a small copy's result and record once v judged it, or
// err.
func copyResult(o BatchObject, v *assembler.CopyCheck, err error) (ledger.BatchResult, assembler.Record, error) {
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	res := ledger.Result{Computed: v.Value, Algorithm: string(v.Algorithm), Check: v.Check, Reason: v.Reason}
	rec := assembler.Record{Transfer: o.Transfer, Source: o.URL(), VersionID: o.VersionID, ETag: o.ETag, Size: o.Size,
		Checksum: v.Value, ChecksumAlgorithm: string(v.Algorithm), Check: v.Check, CheckReason: v.Reason, Chunks: 1, Attempts: 1, Path: o.Dest, State: ledger.Success}
	return ledger.BatchResult{BatchItem: ledger.BatchItem{ID: o.Transfer, Gen: o.Gen}, Size: o.Size, Result: res}, rec, nil
}

// copiedBefore is noObject for a small copy: an object at the destination
// that is this copy already (a run of the batch copied it and was lost
// before recording it, or the copy's answer was lost) is the copy's
// result, not "already exists", as a PUT's own object is (see put). It
// must have the source's size and bytes, the source's content headers,
// user metadata and tag count (one more HEAD, of the source), and the
// storage class and encryption the copy would get; a copy under a
// customer key (SSE-C) or with metadata of the job's is not compared. The
// bytes are the source's when its MD5 ETag is (assembler.AlreadyCopied);
// when the ETags cannot tell (a multipart source's is no MD5, nor is one
// under a KMS key) and nothing says they differ (bytesDiffer), both
// objects are read and compared (readBytes, sameBytes). nil, nil: no
// object there.
func (h *BatchHandler) copiedBefore(ctx context.Context, api copiedAPI, dst location.Source, o BatchObject) (*assembler.CopyCheck, error) {
	out, err := headDest(ctx, api, dst)
	if err != nil || out == nil {
		return nil, err
	}
	exists := permanent("destination %s already exists (use --overwrite to replace it)", dst)
	if o.SSECKeyMD5 != "" || o.Write != nil && len(o.Write.Metadata) > 0 || !writtenAs(out, o.Write) ||
		(o.Write == nil || o.Write.StorageClass == "") && out.StorageClass != "" && out.StorageClass != types.StorageClassStandard ||
		aws.ToInt64(out.ContentLength) != o.Size {
		return nil, exists
	}
	src, err := h.headSource(ctx, api, o)
	switch {
	case errors.Is(err, errSourceGone):
		return nil, exists // no longer the source enqueued: nothing to compare with
	case err != nil:
		return nil, err
	case !metaOfHead(src).equal(metaOfHead(out)) || aws.ToInt32(src.TagCount) != aws.ToInt32(out.TagCount):
		return nil, exists
	}
	if v, ok := assembler.AlreadyCopied(o.ETag, o.Size, out); ok {
		v.Reason = "found at the destination with the source's size, MD5 ETag and headers: not copied again"
		return &v, nil
	}
	// The ETags do not say the bytes are the source's. Read both, unless
	// something already says they differ, or the object is under a KMS
	// key the copy was not asked for (a bucket's default key, or another
	// writer's: not told apart here), or too large to hold.
	if bytesDiffer(src, out) || o.Size > MaxPutObject ||
		(o.Write == nil || o.Write.SSE == "") && assembler.KeyEncrypted(out.ServerSideEncryption, out.SSECustomerAlgorithm) {
		return nil, exists
	}
	w, _, _, err := h.readBytes(ctx, o)
	switch {
	case errors.Is(err, errSourceGone):
		return nil, exists
	case err != nil:
		return nil, err
	}
	switch same, err := sameBytes(ctx, api, dst, out, w.buf, h.Limit); {
	case err != nil:
		return nil, err
	case !same:
		return nil, exists
	}
	v := assembler.CopyCheck{Algorithm: w.ev.CRCAlgorithm, Value: checksum.Encode(w.ev.CRCAlgorithm, w.ev.CRC), Check: w.check,
		Reason: "found at the destination with the source's bytes (both read and compared) and headers: not copied again"}
	if w.reason != "" {
		v.Reason += "; the source's bytes: " + w.reason
	}
	return &v, nil
}

// bytesDiffer reports whether the headers of two objects of one size (src,
// dst: their HEADs) show their bytes differ: single-part MD5 ETags, both
// MD5s of the bytes (neither under a KMS or customer key), that differ,
// or full-object checksums of one algorithm that differ. A CRC that
// matches says nothing (anyone can make one match); one that differs
// does.
func bytesDiffer(src, dst *s3.HeadObjectOutput) bool {
	a, aok := assembler.MD5ETag(aws.ToString(src.ETag))
	b, bok := assembler.MD5ETag(aws.ToString(dst.ETag))
	if aok && bok && a != b && !assembler.KeyEncrypted(src.ServerSideEncryption, src.SSECustomerAlgorithm) &&
		!assembler.KeyEncrypted(dst.ServerSideEncryption, dst.SSECustomerAlgorithm) {
		return true
	}
	x, y := assembler.SumOf(src), assembler.SumOf(dst)
	return x.Value != "" && y.Value != "" && x.Algorithm == y.Algorithm && !x.Composite() && !y.Composite() && x.Value != y.Value
}

// copiedAPI is what copiedBefore asks of the destination's endpoint.
type copiedAPI interface {
	headObjectAPI
	rangeGetter
}

// sourceSum is the checksum S3 keeps for a batch object's source: as
// enqueued, or from head, or read by a HEAD pinned to its ETag (the
// source's endpoint is the destination's, api).
func (h *BatchHandler) sourceSum(ctx context.Context, api headObjectAPI, o BatchObject, head *s3.HeadObjectOutput) (assembler.Sum, error) {
	switch {
	case o.Checksum != "" || o.Verify == assembler.VerifyOff:
		return assembler.Sum{Algorithm: checksum.Algorithm(o.ChecksumAlgorithm), Type: o.ChecksumType, Value: o.Checksum}, nil
	case head != nil:
		return assembler.SumOf(head), nil
	}
	head, err := h.headSource(ctx, api, o)
	if err != nil {
		return assembler.Sum{}, err
	}
	return assembler.SumOf(head), nil
}

// headSource HEADs a batch object's source, pinned to its ETag, with its
// checksum.
func (h *BatchHandler) headSource(ctx context.Context, api headObjectAPI, o BatchObject) (*s3.HeadObjectOutput, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key), ChecksumMode: types.ChecksumModeEnabled, IfMatch: aws.String(o.ETag)}
	if o.VersionID != "" {
		in.VersionId = aws.String(o.VersionID)
	}
	if err := SetRequestOptions(in, o.RequestPayer, o.ExpectedOwner, o.SSECKeyMD5, h.SSECKeys); err != nil {
		return nil, fmt.Errorf("%w: head %s: %w", asynq.SkipRetry, o.URL(), err)
	}
	out, err := api.HeadObject(ctx, in)
	switch status := s3client.HTTPStatus(err); {
	case err == nil:
		return out, nil
	case status == http.StatusNotFound || status == http.StatusPreconditionFailed:
		return nil, fmt.Errorf("%w: %w: head %s: %s", asynq.SkipRetry, errSourceGone, o.URL(), s3client.Describe(err))
	}
	return nil, s3Failure("head "+o.URL(), err)
}

// headObjectAPI reads an object's headers.
type headObjectAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// listAbsent lists the destination of the batch's server-side copies
// that must not overwrite, and returns those whose key the listing shows
// free (by transfer), so that their copies need no HEAD each: one
// ListObjectsV2 of the range of keys the batch writes, per bucket, rather
// than a HEAD per object. A key it cannot vouch for is left out and its
// HEAD decides, as before: when the listing is refused or fails, is not
// in order, or runs past maxListPages before the batch's last key. A key
// the listing shows is left out too: its HEAD then says what is there.
func (h *BatchHandler) listAbsent(ctx context.Context, objs []BatchObject, states []string, log *slog.Logger) map[string]bool {
	type group struct {
		api    *s3.Client
		bucket string
	}
	keys := map[group]map[string][]string{} // key -> its transfers
	for i, o := range objs {
		if states[i] != ledger.Running || !o.ServerSide || o.Overwrite || o.Delete || !location.IsURL(o.Dest) {
			continue
		}
		dst, api, err := h.destOf(ctx, o)
		if err != nil || expressBucket(dst.Bucket) || !exactKey(dst.Key) {
			continue // its copy reports the error; see expressBucket and exactKey
		}
		g := group{api, dst.Bucket}
		if keys[g] == nil {
			keys[g] = map[string][]string{}
		}
		keys[g][dst.Key] = append(keys[g][dst.Key], o.Transfer)
	}
	absent := map[string]bool{}
	for g, byKey := range keys {
		free, err := freeKeys(ctx, g.api, g.bucket, slices.Sorted(maps.Keys(byKey)))
		if err != nil {
			log.Debug("destination listing: each copy HEADs its key", "bucket", g.bucket, "err", err)
		}
		for _, k := range free {
			for _, id := range byKey[k] {
				absent[id] = true
			}
		}
	}
	return absent
}

// maxListPages is how many pages listAbsent reads per bucket and batch
// before it leaves the keys past them to a HEAD each.
const maxListPages = 4

// listTrust is how long a batch trusts its listing of the destination:
// the copies after that list the rest again. Between a look and its copy,
// an object another writer puts at the key is replaced (on servers that
// ignore If-None-Match on CopyObject, as versitygw and MinIO do); a HEAD
// just before each copy made that window one round trip.
const listTrust = 2 * time.Second

// exactKey reports a key that a server on a filesystem stores under
// itself: no empty, "." or ".." segment. versitygw maps "a//b" and
// "a/./b" to the file of "a/b", which a listing shows as "a/b" but a HEAD
// of "a//b" finds: such a key gets its HEAD.
func exactKey(k string) bool { return !location.HasSegment(k, "", ".", "..") }

// expressBucket reports an S3 Express directory bucket's name, whose
// listings are not in key order.
func expressBucket(b string) bool { return strings.HasSuffix(b, "--x-s3") }

// objectLister lists a bucket.
type objectLister interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// freeKeys returns the keys of sorted (ascending, distinct) that a
// listing of bucket shows absent. It lists from just before the first
// key, under the keys' common prefix, in pages of about twice as many
// keys as it asks about, and stops at the first key past the last one:
// a key between the first and the last key listed that the listing does
// not show is absent, as S3 lists in UTF-8 binary order. A listing out of
// that order vouches for nothing.
func freeKeys(ctx context.Context, api objectLister, bucket string, sorted []string) ([]string, error) {
	if len(sorted) == 0 {
		return nil, nil
	}
	lo, hi := sorted[0], sorted[len(sorted)-1]
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(commonPrefix(lo, hi)),
		EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(int32(min(1000, 2*len(sorted)+1)))}
	if _, n := utf8.DecodeLastRuneInString(lo); n < len(lo) {
		in.StartAfter = aws.String(lo[:len(lo)-n]) // sorts before lo, as any proper prefix of it
	}
	seen := map[string]bool{}
	last, done := "", false
	for page := 0; page < maxListPages && !done; page++ {
		out, err := api.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %s", bucket, aws.ToString(in.Prefix), s3client.Describe(err))
		}
		for _, c := range out.Contents {
			k, err := s3client.ListedKey(out, c.Key)
			if err != nil {
				return nil, err
			}
			if k < last {
				return nil, fmt.Errorf("list %s/%s: %q came after %q: not in key order", bucket, aws.ToString(in.Prefix), k, last)
			}
			seen[k], last = true, k
		}
		switch {
		case out.IsTruncated == nil:
			return nil, fmt.Errorf("list %s/%s: a page that does not say whether it is the last", bucket, aws.ToString(in.Prefix))
		case !*out.IsTruncated:
			last, done = hi, true // the rest of the listing is empty
		case last >= hi:
			done = true
		case aws.ToString(out.NextContinuationToken) == "":
			return nil, fmt.Errorf("list %s/%s: a truncated page without a continuation token", bucket, aws.ToString(in.Prefix))
		default:
			in.ContinuationToken, in.StartAfter = out.NextContinuationToken, nil
		}
	}
	var free []string
	for _, k := range sorted {
		if k > last {
			break
		}
		if !seen[k] {
			free = append(free, k)
		}
	}
	return free, nil
}

// commonPrefix is the longest prefix a and b share, cut back to a whole
// UTF-8 character.
func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && n < len(a) && !utf8.RuneStart(a[n]) {
		n--
	}
	return a[:n]
}
