package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"

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
	_, dst, _, _ := location.ParseDest(o.Dest) // validated
	if err := h.Access.checkRead(o.Object); err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	if err := h.Access.checkWrite(dst); err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	api, err := client(ctx, h.S3, dst.Remote, o.DestFP)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	out, body, subject, ev, err := h.getWhole(ctx, o)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, err
	}
	defer out.Body.Close()
	what := o.get("", "").what()
	if h.Limit != nil {
		body = &limitedReader{ctx: ctx, r: body, lim: h.Limit}
	}
	buf := make([]byte, o.Size)
	if _, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrShortBody, err)
		}
		return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := body.Read(make([]byte, 1)); n > 0 {
		return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%s: body longer than the %d bytes enqueued", what, o.Size)
	}
	ev.CRC = checksum.Update(ev.CRCAlgorithm, 0, buf)
	check, reason, err := assembler.Decide(subject, ev, nil)
	if err != nil {
		return ledger.BatchResult{}, assembler.Record{}, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	sum := checksum.Encode(ev.CRCAlgorithm, ev.CRC)
	in := &s3.PutObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), Body: bytes.NewReader(buf), ContentLength: aws.Int64(o.Size)}
	assembler.SetSum(ev.CRCAlgorithm, sum, &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME)
	metaOfGet(out).put(in)
	if !o.Overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := api.PutObject(ctx, in, unsignedPayload); err != nil {
		if s3client.HTTPStatus(err) == http.StatusPreconditionFailed {
			return ledger.BatchResult{}, assembler.Record{}, permanent("destination %s already exists (use --overwrite to replace it)", dst)
		}
		return ledger.BatchResult{}, assembler.Record{}, s3Failure("put "+dst.String(), err)
	}
	res := ledger.Result{Computed: sum, Algorithm: string(ev.CRCAlgorithm), Check: check, Reason: reason}
	rec := assembler.Record{Transfer: o.Transfer, Source: o.URL(), VersionID: o.VersionID, ETag: o.ETag, Size: o.Size,
		Checksum: sum, ChecksumAlgorithm: res.Algorithm, Check: check, CheckReason: reason, Chunks: 1, Attempts: 1, Path: o.Dest, State: ledger.Success}
	return ledger.BatchResult{BatchItem: ledger.BatchItem{ID: o.Transfer, Gen: o.Gen}, Size: o.Size, Result: res}, rec, nil
}
