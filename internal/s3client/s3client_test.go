package s3client_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestCABundle: with AWS_CA_BUNDLE set, as many users have it, the client
// with its tuned transport still loads and talks to S3.
func TestCABundle(t *testing.T) {
	bundle := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); err != nil {
		t.Skipf("no system CA bundle at %s", bundle)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	srv := testenv.StartS3(t)
	c, err := s3client.New(context.Background(), srv.Options(""))
	if err != nil {
		t.Fatalf("New with AWS_CA_BUNDLE: %v", err)
	}
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("none")})
	if s3client.HTTPStatus(err) != 404 || !s3client.Permanent(err) || s3client.Describe(err) != "not found (404 NotFound)" {
		t.Fatalf("missing key: status %d permanent %v %q", s3client.HTTPStatus(err), s3client.Permanent(err), s3client.Describe(err))
	}
}
