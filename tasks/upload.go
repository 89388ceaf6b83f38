package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// partWriter is the S3 API a chunk uses to write an S3 destination.
type partWriter interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, optFns ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
}

var _ partWriter = (*s3.Client)(nil)

// upload copies the chunk's range from its source into part Chunk+1 of
// the transfer's multipart upload and records it, with the part's ETag
// and the CRC of its bytes (which CompleteMultipartUpload hands back to
// S3, part by part and combined, for S3 to check). It returns what
// aborts the upload, and how many chunks have landed, of how many.
func (h *ChunkHandler) upload(ctx context.Context, p ChunkPayload, dst location.Source, start ledger.ChunkStart, log *slog.Logger) (undo func(), landed, total int64, err error) {
	undo = func() {}
	api, err := destClient(ctx, h.S3, dst.Remote, p.DestFP, p.SSECKeyMD5, h.SSECKeys)
	if err != nil {
		return undo, 0, 0, err
	}
	etag := p.ETag
	if etag == "" {
		etag = start.SourceETag // enqueued without a HEAD: pin what earlier chunks saw
	}
	id, err := h.openUpload(ctx, api, p, dst, start, etag, log)
	if id != "" {
		undo = func() { h.Parts.drop(uploadKey(id), abortUpload(api, dst, id)) }
	}
	if err != nil {
		return undo, 0, 0, err
	}
	began := time.Now()
	if p.ServerSide {
		n, partETag, err := h.copyPart(ctx, api, p, dst, id)
		if err != nil {
			return undo, 0, 0, err
		}
		landed, total, err = h.landed(ctx, p, ledger.Landing{Index: p.Chunk, Part: id, Length: n, PartETag: partETag}, began, log)
		return undo, landed, total, err
	}
	if p.Path != "" {
		landed, total, err = h.uploadLocal(ctx, api, p, dst, id, began, log)
		return undo, landed, total, err
	}
	out, g, err := h.getRange(ctx, p, etag)
	if err != nil {
		return undo, 0, 0, err
	}
	defer out.Body.Close()
	n, crc, partETag, err := h.putPart(ctx, api, p, dst, id, out.Body, h.watcher(ctx, p, false), g.what())
	if err != nil {
		return undo, 0, 0, err
	}
	landed, total, err = h.landed(ctx, p, ledger.Landing{Index: p.Chunk, Part: id, CRC: crc, Length: n,
		ETag: aws.ToString(out.ETag), PartETag: partETag}, began, log)
	return undo, landed, total, err
}

// uploadLocal sends the chunk's range of a local file (pread, through a
// section of it) as its upload part, the file checked against its pin
// before and after.
func (h *ChunkHandler) uploadLocal(ctx context.Context, api partWriter, p ChunkPayload, dst location.Source, id string, began time.Time, log *slog.Logger) (landed, total int64, err error) {
	f, err := h.Access.openLocal(p.Object)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := p.Range()
	n, crc, partETag, err := h.putPart(ctx, api, p, dst, id, io.NewSectionReader(f, r.First, r.Len()), h.watcher(ctx, p, false), p.what())
	if perr := checkPin(f, p.Object); perr != nil {
		return 0, 0, perr // the cause of whatever else went wrong
	}
	if err != nil {
		return 0, 0, err
	}
	return h.landed(ctx, p, ledger.Landing{Index: p.Chunk, Part: id, CRC: crc, Length: n, PartETag: partETag}, began, log)
}

func uploadKey(id string) string { return "upload:" + id }

// openUpload returns the transfer's multipart upload, creating it when
// the ledger names none yet: the first chunk to record its own wins, and
// the others abort theirs. An existing destination object fails the
// object at once, unless Overwrite (CompleteMultipartUpload checks again,
// with If-None-Match). The upload carries the source's content headers
// and user metadata (read by a HEAD pinned to the source's ETag), and,
// unless S3 copies the bytes itself, asks for a FULL_OBJECT checksum of
// the chunks' algorithm.
func (h *ChunkHandler) openUpload(ctx context.Context, api partWriter, p ChunkPayload, dst location.Source, start ledger.ChunkStart, etag string, log *slog.Logger) (string, error) {
	if start.PartReady {
		return start.PartToken, nil
	}
	// One chunk creates the upload; the others of the first wave wait for
	// its ID rather than each create one and abort it.
	who := h.Worker + " " + location.NewPartToken() // this chunk's: another of this worker's must not release it
	claim, err := h.Ledger.ClaimPart(ctx, p.Transfer, p.Gen, who, partClaimTTL)
	if err != nil {
		return "", err
	}
	if !claim.Held {
		return h.awaitUpload(ctx, p)
	}
	defer h.Ledger.ReleasePart(context.WithoutCancel(ctx), p.Transfer, p.Gen, who) //nolint:errcheck // it lapses anyway
	if !claim.Since.IsZero() {
		// An earlier claim: its holder recorded the upload and let go (then
		// it is in the record now), or died, perhaps leaving one unrecorded.
		if id, err := h.recordedUpload(ctx, p); id != "" || err != nil {
			return id, err
		}
		h.abortStrays(ctx, api, p, dst, claim.Since, log)
	}
	if !p.Overwrite {
		if err := noObject(ctx, api, dst); err != nil {
			return "", err
		}
	}
	meta, err := h.sourceMeta(ctx, p, etag)
	if err != nil {
		return "", err
	}
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key)}
	if !p.ServerSide {
		// A server-side copy's upload asks for none: versitygw copies the
		// source's whole-object checksum into each part when the algorithms
		// match, and Complete then fails or stores a wrong value.
		in.ChecksumAlgorithm, in.ChecksumType = types.ChecksumAlgorithm(p.crc()), types.ChecksumTypeFullObject
	}
	setWrite(in, meta, p.Write)
	out, err := api.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", s3Failure("create a multipart upload of "+dst.String(), err)
	}
	id := aws.ToString(out.UploadId)
	abort := abortUpload(api, dst, id)
	if err := h.Ledger.NoteUpload(ctx, id, p.Transfer); err != nil {
		_ = abort()
		return "", err
	}
	won, err := h.Ledger.PartReady(ctx, p.Transfer, p.Gen, id, h.Worker)
	if err != nil || won.Token != id {
		_ = abort() // lost the race (or cannot tell): the upload is of no use
	}
	switch {
	case err != nil:
		return "", err
	case won.State != ledger.Running && won.State != ledger.Queued:
		if won.Token == id {
			_ = abort()
		}
		return "", errNothingToDo
	case won.Token != id:
		return won.Token, nil
	}
	h.Parts.add(p.Transfer, id, uploadKey(id), abort)
	return id, nil
}

// abortStrays aborts the uploads of the destination key initiated since an
// earlier claim of this transfer was taken (less a minute for clocks that
// disagree): its holder died between CreateMultipartUpload and recording
// the upload, so no record names them and nothing else would abort them.
// An upload another writer started to the very key in that window would go
// too; one to any other key never does.
func (h *ChunkHandler) abortStrays(ctx context.Context, api partWriter, p ChunkPayload, dst location.Source, since time.Time, log *slog.Logger) {
	out, err := api.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(dst.Bucket), Prefix: aws.String(dst.Key)})
	if err != nil {
		log.Warn("list the uploads a dead worker may have left", "dest", dst.String(), "err", s3client.Describe(err))
		return
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != dst.Key || u.Initiated == nil || u.Initiated.Before(since.Add(-time.Minute)) {
			continue
		}
		// A holder taken for dead may have recorded its upload meanwhile.
		if rec, err := h.recordedUpload(ctx, p); err != nil || rec == aws.ToString(u.UploadId) {
			continue
		}
		if err := abortUpload(api, dst, aws.ToString(u.UploadId))(); err != nil {
			log.Warn("abort an upload a dead worker left", "dest", dst.String(), "err", err)
			continue
		}
		log.Info("aborted an upload a dead worker left unrecorded", "dest", dst.String(), "initiated", *u.Initiated)
	}
}

// partClaimTTL bounds how long the chunks of an object wait for another
// to create its upload: a claim whose holder died lapses after it.
const partClaimTTL = 30 * time.Second

// awaitUpload waits for the chunk that claimed it to record the transfer's
// upload, and returns its ID; if the claim lapses first, the chunk is
// retried (and may claim it itself).
func (h *ChunkHandler) awaitUpload(ctx context.Context, p ChunkPayload) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(partClaimTTL)
	for time.Now().Before(deadline) {
		if id, err := h.recordedUpload(ctx, p); id != "" || err != nil {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
	return "", fmt.Errorf("%s: the multipart upload was not created within %s by the chunk that claimed it", p.what(), partClaimTTL)
}

// recordedUpload returns the upload the record names for the chunk's
// generation ("" if none yet), or errNothingToDo when the transfer is no
// longer running in it.
func (h *ChunkHandler) recordedUpload(ctx context.Context, p ChunkPayload) (string, error) {
	x, err := h.Ledger.GetTransfer(ctx, p.Transfer)
	switch {
	case err != nil:
		return "", err
	case x.Gen != p.Gen || (x.State != ledger.Running && x.State != ledger.Queued):
		return "", errNothingToDo
	}
	return x.PartToken, nil
}

// sourceMeta reads the source's content headers, user metadata and tags,
// for the copy to keep (an upload part carries none of them).
func (h *ChunkHandler) sourceMeta(ctx context.Context, p ChunkPayload, etag string) (objectMeta, error) {
	if p.Path != "" {
		return localMeta(p.Object), nil
	}
	api, err := client(ctx, h.S3, p.Remote, p.RemoteFP)
	if err != nil {
		return objectMeta{}, err
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(p.Key)}
	if p.VersionID != "" {
		in.VersionId = aws.String(p.VersionID)
	}
	if etag != "" {
		in.IfMatch = aws.String(etag)
	}
	if err := SetRequestOptions(in, p.RequestPayer, p.ExpectedOwner, p.SSECKeyMD5, h.SSECKeys); err != nil {
		return objectMeta{}, fmt.Errorf("%w: head %s: %w", asynq.SkipRetry, p.URL(), err)
	}
	out, err := api.HeadObject(ctx, in)
	switch status := s3client.HTTPStatus(err); {
	case err == nil:
		m := metaOfHead(out)
		m.tags, err = sourceTags(ctx, api, p.Object, aws.ToString(out.VersionId), h.Log)
		return m, err
	case status == http.StatusNotFound || status == http.StatusPreconditionFailed:
		return objectMeta{}, fmt.Errorf("%w: %w: head %s: %s", asynq.SkipRetry, errSourceGone, p.URL(), s3client.Describe(err))
	}
	return objectMeta{}, s3Failure("head "+p.URL(), err)
}

// putPart streams the chunk's bytes into its upload part, computing their
// CRC on the way. Over TLS the body streams straight through, the SDK
// sending the part's checksum as a trailer (aws-chunked). Over plain HTTP
// the SDK cannot stream an unseekable body, and a part's checksum header
// must precede its bytes: the chunk is spooled to an unlinked temporary
// file (in $TMPDIR; at most one chunk per running chunk task, so
// concurrency × chunk_size bytes of temporary disk, through the page
// cache; memory stays one copy buffer), then sent with its CRC as the
// checksum header. Either way S3 checks the part's bytes against a
// checksum, and the payload is not hashed a second time for signing.
//
// w watches the send as watch does a download's body (progress, and a
// stop when a copy of the chunk landed, but no speculative copy). It sits
// on in.Body, what the SDK reads as it sends, and on nothing below it:
// only there are the bytes read the bytes sent. Below, over plain HTTP,
// the same range is read once before for its CRC (a local file) or
// fetched into the spool, and a figure counted there would run ahead of
// the send, or count the bytes twice. Wrapping body before the call would
// also hide the *io.SectionReader a local file is recognised by. Over
// plain HTTP in.Body must stay seekable, so it is a watchedSection, whose
// figure is its position (an SDK retry rewinds it); the first pass only
// looks, with nothing sent (unsentPass). Over TLS the body is read once,
// as it is sent: a watchedBody over the crcReader (whose LimitReader
// keeps the figure within the range).
func (h *ChunkHandler) putPart(ctx context.Context, api partWriter, p ChunkPayload, dst location.Source, id string, body io.Reader, w *watcher, what string) (int64, uint64, string, error) {
	r, alg := p.Range(), p.crc()
	in := &s3.UploadPartInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), UploadId: aws.String(id),
		PartNumber: aws.Int32(int32(p.Chunk + 1)), ContentLength: aws.Int64(r.Len())}
	var n int64
	var crc uint64
	var out *s3.UploadPartOutput
	var err error
	if h.S3.Secure(dst.Remote) {
		if h.Limit != nil {
			body = &limitedReader{ctx: ctx, r: body, lim: h.Limit}
		}
		cr := &crcReader{r: io.LimitReader(body, r.Len()), alg: alg}
		in.Body, in.ChecksumAlgorithm = &watchedBody{r: cr, w: w}, types.ChecksumAlgorithm(alg)
		out, err = api.UploadPart(ctx, in, func(o *s3.Options) { o.RetryMaxAttempts = 1 }) // the body cannot rewind: asynq retries
		n, crc = cr.n, cr.crc
		if err == nil && n != r.Len() {
			return n, crc, "", fmt.Errorf("%s: %w: got %d of %d bytes", what, ErrShortBody, n, r.Len())
		}
	} else {
		// A local file is its own spool: its range is read once for the
		// CRC, then again (from the page cache) as the body.
		sec, seekable := body.(*io.SectionReader)
		if !seekable {
			f, serr := spoolFile()
			if serr != nil {
				return 0, 0, "", wrapLocal("spool a chunk for "+dst.String(), serr)
			}
			defer f.Close()
			if n, crc, err = copyBody(ctx, f, unsentPass{r: body, w: w}, 0, r.Len(), alg, h.Limit, what); err != nil {
				return n, crc, "", err
			}
			sec = io.NewSectionReader(f, 0, n)
		} else {
			var src io.Reader = unsentPass{r: sec, w: w}
			if h.Limit != nil {
				src = &limitedReader{ctx: ctx, r: src, lim: h.Limit}
			}
			cr := &crcReader{r: src, alg: alg}
			if _, err := io.Copy(io.Discard, cr); err != nil {
				return cr.n, cr.crc, "", wrapLocal("read "+what, err)
			}
			if n, crc = cr.n, cr.crc; n != r.Len() {
				return n, crc, "", fmt.Errorf("%w: %s: %w: got %d of %d bytes", asynq.SkipRetry, what, errSourceGone, n, r.Len())
			}
			if _, err := sec.Seek(0, io.SeekStart); err != nil {
				return n, crc, "", err
			}
		}
		in.Body = &watchedSection{s: sec, w: w}
		assembler.SetSum(alg, checksum.Encode(alg, crc), &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME)
		out, err = api.UploadPart(ctx, in, unsignedPayload)
	}
	if err != nil {
		if s3client.ErrorCode(err) == "NoSuchUpload" {
			return n, crc, "", fmt.Errorf("%w: %w: upload part %d of %s: the multipart upload was aborted", asynq.SkipRetry, errPartGone, p.Chunk+1, dst)
		}
		return n, crc, "", s3Failure(fmt.Sprintf("upload part %d of %s", p.Chunk+1, dst), err)
	}
	return n, crc, aws.ToString(out.ETag), nil
}

// unsignedPayload signs a request without hashing its body (the body's
// checksum header, which S3 checks, covers it), so that a part's bytes
// are not read twice.
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// spoolFile opens an unlinked temporary file in the system's temporary
// directory ($TMPDIR): it leaves nothing behind, even when the worker is
// killed.
func spoolFile() (*os.File, error) {
	dir := os.TempDir()
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(spool)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("open a temporary file in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "s3fleet-spool-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	return f, nil
}

// crcReader computes the CRC of what is read through it.
type crcReader struct {
	r   io.Reader
	alg checksum.Algorithm
	crc uint64
	n   int64
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = checksum.Update(c.alg, c.crc, p[:n])
	c.n += int64(n)
	return n, err
}

// noObject fails for good when the destination object exists.
func noObject(ctx context.Context, api headObjectAPI, dst location.Source) error {
	if out, err := headDest(ctx, api, dst); err != nil || out == nil {
		return err
	}
	return permanent("destination %s already exists (use --overwrite to replace it)", dst)
}

// headDest HEADs a destination to learn what is there: the object's
// headers, nil when there is none, or a permanent "already exists" for one
// encrypted with a customer key.
func headDest(ctx context.Context, api headObjectAPI, dst location.Source) (*s3.HeadObjectOutput, error) {
	// Asked without an SSE-C key: any object there answers, one encrypted
	// with a customer key (ours or another) with 400.
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key)}, s3client.WithoutSSEC)
	switch {
	case err == nil:
		return out, nil
	case s3client.HTTPStatus(err) == http.StatusBadRequest:
		return nil, permanent("destination %s already exists, encrypted with a customer key (use --overwrite to replace it)", dst)
	case s3client.HTTPStatus(err) == http.StatusNotFound:
		return nil, nil
	case s3client.HTTPStatus(err) == http.StatusForbidden:
		// Without s3:ListBucket S3 answers 403 for a missing key: unknown,
		// and If-None-Match decides when the upload completes.
		return nil, nil
	}
	return nil, s3Failure("head "+dst.String(), err)
}

// abortUpload is the drop of a multipart upload: one gone already (aborted
// or completed) counts as removed.
func abortUpload(api partWriter, dst location.Source, id string) func() error {
	return func() error {
		_, err := api.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), UploadId: aws.String(id)})
		if err != nil && s3client.HTTPStatus(err) != http.StatusNotFound {
			return fmt.Errorf("abort the multipart upload of %s: %s", dst, s3client.Describe(err))
		}
		return nil
	}
}

// s3Failure names the operation of a failed S3 call, permanent (asynq
// does not retry it) when a retry cannot help.
func s3Failure(op string, err error) error {
	if s3client.Permanent(err) {
		return fmt.Errorf("%w: %s: %s", asynq.SkipRetry, op, s3client.Describe(err))
	}
	return fmt.Errorf("%s: %w", op, err)
}
