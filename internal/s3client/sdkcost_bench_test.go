package s3client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/internal/s3client"
)

// BenchmarkSmallGet prices the AWS SDK's request path for a small object:
// a 16 KiB GetObject through this package's client ("sdk") against the
// same GET by bare net/http ("raw"), both from an in-process server. The
// difference is what the SDK costs a small object (bench/README.md).
// Compare them with -cpu 1 and /usr/bin/time, e.g.
//
//	go test -c -o /tmp/s3c.test ./internal/s3client &&
//	/usr/bin/time /tmp/s3c.test -test.run '^$' -test.bench SmallGet/sdk -test.benchtime 10000x -test.cpu 1
func BenchmarkSmallGet(b *testing.B) {
	body := make([]byte, 16<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"abc"`)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx := context.Background()
	c, err := s3client.New(ctx, s3client.Options{Endpoint: srv.URL, Region: "us-east-1", PathStyle: true, Concurrency: 4,
		Credentials: credentials.NewStaticCredentialsProvider("AK", "SK", "")})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("small/000123"), IfMatch: aws.String(`"abc"`)})
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, out.Body, buf); err != nil || n != int64(len(body)) {
				b.Fatalf("body: %d bytes, %v", n, err)
			}
			out.Body.Close()
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
		for b.Loop() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/bkt/small/000123", nil)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, resp.Body, buf); err != nil || n != int64(len(body)) {
				b.Fatalf("body: %d bytes, %v", n, err)
			}
			resp.Body.Close()
		}
	})
}
