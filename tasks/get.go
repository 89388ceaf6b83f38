package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/location"
)

// errSourceGone marks a source deleted or changed since enqueue, or one
// whose version the responses do not pin; the bytes landed for it are of no
// use. Its text is left out of messages (causeOf).
var errSourceGone = errors.New("source gone")

// getRequest is one GET of a chunk or a whole object, pinned to the
// version seen at enqueue.
type getRequest struct {
	Remote, RemoteFP             string // the endpoint's name and fingerprint
	Bucket, Key, VersionID, ETag string
	Range                        string // an HTTP Range header; empty: the whole object
	// Checksum asks for S3's checksum (whole objects only) by the
	// x-amz-checksum-mode header alone: the SDK would otherwise hash the
	// body a second time to validate it, and the fleet checks it itself.
	Checksum             bool
	Payer, Owner, KeyMD5 string // request payer, expected owner, SSE-C key fingerprint
	Size                 int64  // the object's size as enqueued
}

func (g getRequest) what() string {
	w := "get " + location.Source{Remote: g.Remote, Bucket: g.Bucket, Key: g.Key}.String()
	if g.Range != "" {
		w += " " + g.Range
	}
	return w
}

// get sends the GET. Failures a retry cannot mend (404, 403, 412, a worker
// without the SSE-C key) wrap asynq.SkipRetry; the others are returned as
// they are, for asynq to retry.
func get(ctx context.Context, api rangeGetter, g getRequest, keys map[string][]byte) (*s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(g.Bucket), Key: aws.String(g.Key)}
	if g.Range != "" {
		in.Range = aws.String(g.Range)
	}
	if g.VersionID != "" {
		in.VersionId = aws.String(g.VersionID)
	}
	if g.ETag != "" {
		in.IfMatch = aws.String(g.ETag)
	}
	if err := SetRequestOptions(in, g.Payer, g.Owner, g.KeyMD5, keys); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", asynq.SkipRetry, g.what(), err)
	}
	var opts []func(*s3.Options)
	if g.Checksum {
		opts = append(opts, askChecksum)
	}
	out, err := api.GetObject(ctx, in, opts...)
	switch status := s3client.HTTPStatus(err); {
	case err == nil:
		return out, nil
	case status == http.StatusNotFound || status == http.StatusPreconditionFailed:
		// The object is gone or changed: the bytes landed so far are of no use.
		return nil, fmt.Errorf("%w: %w: %s: %s", asynq.SkipRetry, errSourceGone, g.what(), s3client.Describe(err))
	case status == http.StatusRequestedRangeNotSatisfiable:
		return nil, fmt.Errorf("%w: %w: %s: the object is smaller than the %d bytes enqueued: %s",
			asynq.SkipRetry, errSourceGone, g.what(), g.Size, s3client.Describe(err))
	case s3client.Permanent(err):
		if desc, ssec := s3client.DescribeSSEC(err, g.KeyMD5 != ""); ssec {
			// Without the right key no byte can come: what landed goes.
			return nil, fmt.Errorf("%w: %w: %s: %s", asynq.SkipRetry, errSourceGone, g.what(), desc)
		}
		return nil, fmt.Errorf("%w: %s: %s", asynq.SkipRetry, g.what(), s3client.Describe(err))
	}
	return nil, fmt.Errorf("%s: %w", g.what(), err)
}

// askChecksum sends x-amz-checksum-mode: ENABLED, so that S3 returns the
// object's checksum, without setting the input's ChecksumMode, which
// would make the SDK validate the body with its own (slower) hash.
func askChecksum(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Build.Add(middleware.BuildMiddlewareFunc("s3fleet:ChecksumMode",
			func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					req.Header.Set("x-amz-checksum-mode", "ENABLED")
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
	})
}

// copyBody streams want bytes of body to offset off of f through a pooled
// buffer (and the worker's rate limiter, if any), and returns them with
// their CRC of algorithm alg. A directWriter gets an aligned buffer of
// directBufSize, written whole.
func copyBody(ctx context.Context, f io.WriterAt, body io.Reader, off, want int64, alg checksum.Algorithm, lim *rate.Limiter, what string) (int64, uint64, error) {
	if lim != nil {
		body = &limitedReader{ctx: ctx, r: body, lim: lim}
	}
	var pool interface {
		Get() any
		Put(any)
	} = &bufPool
	_, direct := f.(*directWriter)
	if direct {
		pool = &directPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	n, crc, err := copyAt(f, body, off, want, *bp, alg, direct)
	switch {
	case err == nil:
		return n, crc, nil
	case errors.Is(err, errWrite):
		return n, crc, wrapLocal(what, err)
	}
	return n, crc, fmt.Errorf("%s: %w", what, err)
}
