package tasks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// MaxPutObject bounds the objects a batch copies whole to S3: each is
// held in memory between its GET and its PutObject (so that the PUT can
// carry its checksum, which S3 checks, and cannot stop half-way under its
// key). The enqueuer batches objects up to batch_max_object (1 MiB by
// default); this refuses a forged payload's larger ones.
const MaxPutObject = 64 << 20

// put copies a small object whole to its S3 destination: a GET (pinned,
// held to the enqueued checksum, judged as a download's bytes are) into
// memory, then a PutObject with the CRC of the bytes, the source's content
// headers and metadata, and If-None-Match unless Overwrite, so two writers
// cannot both win.
func (h *BatchHandler) put(ctx context.Context, o BatchObject) (ledger.BatchResult, assembler.Record, error) {
	dst, api, err := h.destOf(ctx, o)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	var w whole
	if o.Path != "" {
		w, err = h.readLocal(o)
	} else {
		w, err = h.readWhole(ctx, o)
	}
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	buf, ev, check, reason := w.buf, w.ev, w.check, w.reason
	sum := checksum.Encode(ev.CRCAlgorithm, ev.CRC)
	in := &s3.PutObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), Body: bytes.NewReader(buf), ContentLength: aws.Int64(o.Size)}
	assembler.SetSum(ev.CRCAlgorithm, sum, &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME)
	setWrite(in, w.meta, o.Write)
	if !o.Overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := api.PutObject(ctx, in, unsignedPayload); err != nil {
		if s3client.HTTPStatus(err) != http.StatusPreconditionFailed {
			return ledger.BatchResult{}, assembler.Record{}, s3Failure("put "+dst.String(), err)
		}
		// Another object is there, or this one is, its response lost (the
		// SDK retried) or its batch run again: its checksum tells.
		exists := permanent("destination %s already exists (use --overwrite to replace it)", dst)
		out, herr := assembler.HeadDest(ctx, api, dst)
		if herr != nil || !writtenAs(out, o.Write) {
			return ledger.BatchResult{}, assembler.Record{}, exists
		}
		switch ours, err := holds(ctx, api, dst, out, ev.CRCAlgorithm, sum, buf, h.Limit); {
		case err != nil:
			return ledger.BatchResult{}, assembler.Record{}, err
		case !ours:
			return ledger.BatchResult{}, assembler.Record{}, exists
		}
	}
	res := ledger.Result{Computed: sum, Algorithm: string(ev.CRCAlgorithm), Check: check, Reason: reason}
	rec := assembler.Record{Transfer: o.Transfer, Source: o.URL(), VersionID: o.VersionID, ETag: o.ETag, Size: o.Size,
		Checksum: sum, ChecksumAlgorithm: res.Algorithm, Check: check, CheckReason: reason, Chunks: 1, Attempts: 1, Path: o.Dest, State: ledger.Success}
	return ledger.BatchResult{BatchItem: ledger.BatchItem{ID: o.Transfer, Gen: o.Gen}, Size: o.Size, Result: res}, rec, nil
}

// holds reports whether the object a PUT's If-None-Match found at dst
// (out, its HEAD) holds buf, the PUT's bytes (sum their CRC of algorithm
// alg): putBy, or, when its ETag cannot tell, the object read back
// (sameBytes, through lim). An error is a read that failed: it says
// neither.
func holds(ctx context.Context, api rangeGetter, dst location.Source, out *s3.HeadObjectOutput, alg checksum.Algorithm, sum string, buf []byte, lim *rate.Limiter) (bool, error) {
	ours, sure := putBy(out, alg, sum, buf)
	if !ours || sure {
		return ours, nil
	}
	return sameBytes(ctx, api, dst, out, buf, lim)
}

// sameBytes reports whether the object that out, a HEAD of dst, found
// holds exactly buf with out's headers. Its GET is pinned to out's ETag
// (and version) and its headers are compared with out's, so that the
// bytes read are those of the object whose headers were judged; the bytes
// are compared as they come (through lim), and the first that differs
// ends the read. An error is a read that failed or an object that changed
// meanwhile: it says neither, and is worth a retry unless S3 said
// otherwise.
func sameBytes(ctx context.Context, api rangeGetter, dst location.Source, out *s3.HeadObjectOutput, buf []byte, lim *rate.Limiter) (bool, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), IfMatch: out.ETag}
	if v := aws.ToString(out.VersionId); v != "" {
		in.VersionId = aws.String(v)
	}
	got, err := api.GetObject(ctx, in)
	if err != nil {
		if st := s3client.HTTPStatus(err); st == http.StatusNotFound || st == http.StatusPreconditionFailed {
			return false, fmt.Errorf("%s changed while it was compared with what it should hold: %s", dst, s3client.Describe(err))
		}
		return false, s3Failure("read back "+dst.String(), err)
	}
	defer got.Body.Close()
	class := func(c types.StorageClass) types.StorageClass { return cmp.Or(c, types.StorageClassStandard) }
	if aws.ToInt64(got.ContentLength) != int64(len(buf)) || !metaOfGet(got).equal(metaOfHead(out)) ||
		aws.ToInt32(got.TagCount) != aws.ToInt32(out.TagCount) || class(got.StorageClass) != class(out.StorageClass) ||
		got.ServerSideEncryption != out.ServerSideEncryption || aws.ToString(got.SSEKMSKeyId) != aws.ToString(out.SSEKMSKeyId) {
		return false, nil
	}
	var body io.Reader = got.Body
	if lim != nil {
		body = &limitedReader{ctx: ctx, r: body, lim: lim}
	}
	chunk, rest := make([]byte, 64<<10), buf
	for {
		n, err := body.Read(chunk)
		if n > len(rest) || !bytes.Equal(chunk[:n], rest[:n]) {
			return false, nil
		}
		rest = rest[n:]
		switch {
		case errors.Is(err, io.EOF):
			return len(rest) == 0, nil
		case err != nil:
			return false, fmt.Errorf("read back %s: %w", dst, err)
		}
	}
}

// putBy judges the object a PUT's If-None-Match found at its key (out,
// its HEAD) by its headers: its full-object CRC (of algorithm alg) must be
// the PUT's bytes', sum, and its ETag their MD5, as a CRC alone anyone can
// forge to match. Under a KMS or customer key the ETag is no MD5 of the
// bytes: not sure, they must be read to tell.
func putBy(out *s3.HeadObjectOutput, alg checksum.Algorithm, sum string, buf []byte) (ours, sure bool) {
	if assembler.FullObjectSum(out, alg) != sum {
		return false, true
	}
	if assembler.KeyEncrypted(out.ServerSideEncryption, out.SSECustomerAlgorithm) {
		return true, false
	}
	etag, ok := assembler.MD5ETag(aws.ToString(out.ETag))
	m := md5.Sum(buf)
	return ok && etag == hex.EncodeToString(m[:]), true
}

// destOf checks a batch object's source and S3 destination against the
// worker's allow lists and resolves the destination's endpoint.
func (h *BatchHandler) destOf(ctx context.Context, o BatchObject) (location.Source, *s3.Client, error) {
	_, dst, _, _ := location.ParseDest(o.Dest) // validated
	if err := h.Access.checkRead(o.Object); err != nil {
		return dst, nil, err
	}
	if err := h.Access.checkWrite(dst); err != nil {
		return dst, nil, err
	}
	api, err := destClient(ctx, h.S3, dst.Remote, o.DestFP, o.SSECKeyMD5, h.SSECKeys)
	return dst, api, err
}

// whole is an object read whole into memory, judged, with the headers its
// copy gets.
type whole struct {
	buf           []byte
	ev            assembler.Evidence
	check, reason string
	meta          objectMeta
}

// readBytes GETs a small object into memory and judges its bytes as a
// download's are; it returns them with the version the GET read and its
// tag count (its tags are not read).
func (h *BatchHandler) readBytes(ctx context.Context, o BatchObject) (whole, string, int32, error) {
	out, body, subject, ev, err := h.getWhole(ctx, o)
	if err != nil {
		return whole{}, "", 0, err
	}
	defer out.Body.Close()
	what := o.get("", "").what()
	if h.Limit != nil {
		body = &limitedReader{ctx: ctx, r: body, lim: h.Limit}
	}
	buf, err := readExactly(body, o.Size, what)
	if err != nil {
		return whole{}, "", 0, err
	}
	ev.CRC = checksum.Update(ev.CRCAlgorithm, 0, buf)
	check, reason, err := assembler.Decide(subject, ev, nil)
	if err != nil {
		return whole{}, "", 0, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	return whole{buf: buf, ev: ev, check: check, reason: reason, meta: metaOfGet(out)}, aws.ToString(out.VersionId), aws.ToInt32(out.TagCount), nil
}

// readWhole is readBytes, and the source's tags, which its copy gets.
func (h *BatchHandler) readWhole(ctx context.Context, o BatchObject) (whole, error) {
	w, version, tags, err := h.readBytes(ctx, o)
	if err != nil || tags == 0 {
		return w, err
	}
	api, err := client(ctx, h.S3, o.Remote, o.RemoteFP)
	if err != nil {
		return whole{}, err
	}
	if w.meta.tags, err = sourceTags(ctx, api, o.Object, version, h.Log); err != nil {
		return whole{}, err
	}
	return w, nil
}

// readLocal reads a small local file into memory, checked against its pin
// before and after. What S3 checks is then the CRC of these very bytes.
func (h *BatchHandler) readLocal(o BatchObject) (whole, error) {
	f, err := h.Access.openLocal(o.Object)
	if err != nil {
		return whole{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if h.Limit != nil {
		r = &limitedReader{ctx: context.Background(), r: r, lim: h.Limit}
	}
	buf, err := readExactly(r, o.Size, o.Path)
	if err != nil {
		return whole{}, fmt.Errorf("%w: %w: %w", asynq.SkipRetry, errSourceGone, err)
	}
	if err := checkPin(f, o.Object); err != nil {
		return whole{}, err
	}
	ev := assembler.Evidence{CRCAlgorithm: checksum.CRC64NVME, Size: o.Size, CRC: checksum.Update(checksum.CRC64NVME, 0, buf)}
	return whole{buf: buf, ev: ev, check: ev.CRCAlgorithm.Check(), meta: localMeta(o.Object)}, nil
}

// readExactly reads exactly n bytes of r, no more and no fewer.
func readExactly(r io.Reader, n int64, what string) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrShortBody, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if m, _ := r.Read(make([]byte, 1)); m > 0 {
		return nil, fmt.Errorf("%s: longer than the %d bytes enqueued", what, n)
	}
	return buf, nil
}
