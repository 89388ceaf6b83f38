package tasks

import (
	"context"
	"encoding/base64"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/time/rate"

	"github.com/s3fleet/s3fleet/internal/s3client"
)

// requestOptions is what GetObject and HeadObject inputs share of
// s3transfer's extra_args.
type requestOptions interface {
	*s3.GetObjectInput | *s3.HeadObjectInput
}

// SetRequestOptions applies a task's S3 request options to a GET or HEAD:
// the request payer, the expected bucket owner, and the SSE-C key whose MD5
// the task names, from the worker's own keys. A worker without that key
// refuses: the key never travels in a task.
func SetRequestOptions[T requestOptions](in T, payer, owner, keyMD5 string, keys map[string][]byte) error {
	var key []byte
	if keyMD5 != "" {
		k, err := s3client.SSECKey(keys, keyMD5)
		if err != nil {
			return err
		}
		key = k
	}
	set := func(rp *types.RequestPayer, ebo, alg, ckey, cmd5 **string) {
		if payer != "" {
			*rp = types.RequestPayer(payer)
		}
		if owner != "" {
			*ebo = aws.String(owner)
		}
		if key != nil {
			*alg = aws.String("AES256")
			*ckey = aws.String(base64.StdEncoding.EncodeToString(key))
			*cmd5 = aws.String(keyMD5)
		}
	}
	switch v := any(in).(type) {
	case *s3.GetObjectInput:
		set(&v.RequestPayer, &v.ExpectedBucketOwner, &v.SSECustomerAlgorithm, &v.SSECustomerKey, &v.SSECustomerKeyMD5)
	case *s3.HeadObjectInput:
		set(&v.RequestPayer, &v.ExpectedBucketOwner, &v.SSECustomerAlgorithm, &v.SSECustomerKey, &v.SSECustomerKeyMD5)
	}
	return nil
}

// limitedReader spends a shared rate limiter's tokens on every read, so all
// of a worker's chunks together stay under its bandwidth cap.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if b := l.lim.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// NewLimiter returns a limiter for bytesPerSec, or nil for no cap.
func NewLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(min(bytesPerSec, bufSize)))
}
