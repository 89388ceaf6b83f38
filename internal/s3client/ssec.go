package s3client

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"

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

// The SSE-C request headers.
const (
	hdrSSECAlgorithm = "X-Amz-Server-Side-Encryption-Customer-Algorithm"
	hdrSSECKey       = "X-Amz-Server-Side-Encryption-Customer-Key"
	hdrSSECKeyMD5    = "X-Amz-Server-Side-Encryption-Customer-Key-Md5"
)

// ssecClients caches the clients WithSSEC made, by base client and key:
// one per endpoint and key for the life of the process, not one a task.
var ssecClients sync.Map // ssecClientKey → *s3.Client

type ssecClientKey struct {
	base   *s3.Client
	keyMD5 string
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
	ck := ssecClientKey{c, md5b64}
	if w, ok := ssecClients.Load(ck); ok {
		return w.(*s3.Client), nil
	}
	add := middleware.BuildMiddlewareFunc("s3fleetSSEC", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok && ssecOps[middleware.GetOperationName(ctx)] {
			req.Header.Set(hdrSSECAlgorithm, "AES256")
			req.Header.Set(hdrSSECKey, b64)
			req.Header.Set(hdrSSECKeyMD5, md5b64)
		}
		return next.HandleBuild(ctx, in)
	})
	w := s3.New(c.Options(), func(o *s3.Options) {
		// A new slice: the copy of the options shares the client's.
		o.APIOptions = append(slices.Clip(o.APIOptions), func(s *middleware.Stack) error { return s.Build.Add(add, middleware.After) })
		// The S3 Express provider is the base client's, and s3.New would
		// rebind it to this client while others use it: a new one.
		o.ExpressCredentials = nil
	})
	actual, _ := ssecClients.LoadOrStore(ck, w)
	return actual.(*s3.Client), nil
}

// SSECKey returns the worker's SSE-C key whose MD5 a task names (keys by
// MD5, as the configuration gives them). The key never travels in a task:
// a worker without it refuses.
func SSECKey(keys map[string][]byte, keyMD5 string) ([]byte, error) {
	k, ok := keys[keyMD5]
	if !ok {
		return nil, fmt.Errorf("this worker has no SSE-C key with MD5 %s (configure sse_c_key_file)", keyMD5)
	}
	return k, nil
}

// DestWithSSEC is the client for a destination object: c itself, or, for
// one written with the SSE-C key of MD5 keyMD5, c with that key
// (WithSSEC), over HTTPS only (secure): S3 refuses SSE-C over plain HTTP
// after the key has crossed the network in the clear, so it is never sent.
func DestWithSSEC(c *s3.Client, secure bool, remote, keyMD5 string, keys map[string][]byte) (*s3.Client, error) {
	if keyMD5 == "" {
		return c, nil
	}
	key, err := SSECKey(keys, keyMD5)
	if err != nil {
		return nil, err
	}
	if !secure {
		return nil, fmt.Errorf("an SSE-C key is sent over HTTPS only, and the endpoint of %q is plain HTTP", remote)
	}
	return WithSSEC(c, key)
}

// WithoutSSEC is a request option that sends no SSE-C key, even through a
// client of WithSSEC: a HEAD that asks whether any object is there.
func WithoutSSEC(o *s3.Options) {
	o.APIOptions = append(slices.Clip(o.APIOptions), func(s *middleware.Stack) error {
		return s.Build.Add(middleware.BuildMiddlewareFunc("s3fleetNoSSEC", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				req.Header.Del(hdrSSECAlgorithm)
				req.Header.Del(hdrSSECKey)
				req.Header.Del(hdrSSECKeyMD5)
			}
			return next.HandleBuild(ctx, in)
		}), middleware.After)
	})
}
