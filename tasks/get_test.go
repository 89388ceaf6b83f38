package tasks

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// captureGetter records the GET it is asked for.
type captureGetter struct {
	in   *s3.GetObjectInput
	opts []func(*s3.Options)
}

func (c *captureGetter) GetObject(_ context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.in, c.opts = in, opts
	return nil, errors.New("captured")
}

// TestChecksumAskedByHeaderOnly: a whole-object GET asks S3 for its
// checksum with the x-amz-checksum-mode header alone, never the input's
// ChecksumMode, which would make the SDK hash the body a second time.
func TestChecksumAskedByHeaderOnly(t *testing.T) {
	t.Parallel()
	var c captureGetter
	_, _ = get(context.Background(), &c, getRequest{Bucket: "b", Key: "k", Checksum: true}, nil)
	if c.in == nil || c.in.ChecksumMode != "" {
		t.Fatalf("input %+v: ChecksumMode set, so the SDK would validate the body itself", c.in)
	}
	var o s3.Options
	for _, f := range c.opts {
		f(&o)
	}
	stack := middleware.NewStack("GetObject", smithyhttp.NewStackRequest)
	for _, f := range o.APIOptions {
		if err := f(stack); err != nil {
			t.Fatal(err)
		}
	}
	handler := middleware.DecorateHandler(middleware.HandlerFunc(func(ctx context.Context, in any) (any, middleware.Metadata, error) {
		req := in.(*smithyhttp.Request)
		if got := req.Header.Get("x-amz-checksum-mode"); got != "ENABLED" {
			t.Errorf("x-amz-checksum-mode %q, want ENABLED", got)
		}
		return &smithyhttp.Response{Response: &http.Response{StatusCode: 200}}, middleware.Metadata{}, nil
	}), stack)
	if _, _, err := handler.Handle(context.Background(), struct{}{}); err != nil {
		t.Fatal(err)
	}
	var ranged captureGetter
	_, _ = get(context.Background(), &ranged, getRequest{Bucket: "b", Key: "k", Range: "bytes=0-9"}, nil)
	if len(ranged.opts) != 0 || ranged.in.ChecksumMode != "" {
		t.Error("a ranged GET asks for a checksum S3 does not send for ranges")
	}
}
