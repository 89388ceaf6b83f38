package s3client

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ssecOps are the operations on an object that take its SSE-C key: those
// that write or read its bytes or headers. Others (listing, aborting an
// upload, deleting, tagging) take none, and S3 may refuse one sent.
var ssecOps = map[string]bool{
	"HeadObject": true, "GetObject": true, "PutObject": true, "CopyObject": true,
	"CreateMultipartUpload": true, "UploadPart": true, "UploadPartCopy": true, "CompleteMultipartUpload": true,
}

// WithSSEC returns a client of the same endpoint whose requests to an
// object carry an SSE-C key (customer-provided encryption): objects it
// writes are encrypted with key, and it can read their headers back. A
// copy's source key is the request's own (CopySourceSSECustomer…).
func WithSSEC(c *s3.Client, key []byte) (*s3.Client, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("an SSE-C key has 32 bytes, not %d", len(key))
	}
	sum := md5.Sum(key)
	b64, md5b64 := base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(sum[:])
	add := middleware.BuildMiddlewareFunc("s3fleetSSEC", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok && ssecOps[middleware.GetOperationName(ctx)] {
			req.Header.Set("X-Amz-Server-Side-Encryption-Customer-Algorithm", "AES256")
			req.Header.Set("X-Amz-Server-Side-Encryption-Customer-Key", b64)
			req.Header.Set("X-Amz-Server-Side-Encryption-Customer-Key-Md5", md5b64)
		}
		return next.HandleBuild(ctx, in)
	})
	return s3.New(c.Options(), func(o *s3.Options) {
		// A new slice: the copy of the options shares the client's.
		o.APIOptions = append(slices.Clip(o.APIOptions), func(s *middleware.Stack) error { return s.Build.Add(add, middleware.After) })
	}), nil
}
