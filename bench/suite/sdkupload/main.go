// Command sdkupload uploads a file with aws-sdk-go-v2's feature/s3/manager
// Uploader, as a Go program using the SDK would: one Upload call with the
// opened file as its body (an *os.File, so the Uploader reads each part
// with ReadAt, no copy into buffers of its own).
//
// By default the Uploader and the HTTP client are the SDK's defaults
// (5 MiB parts, 5 at once, the SDK's default checksum on each part).
// -tuned sets 8 MiB parts, 8 at once, and an HTTP client keeping enough
// idle connections for them.
//
//	sdkupload -endpoint URL -bucket B -key big.bin -file /data/big.bin [-tuned]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/bench/suite/internal/s3util"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdkupload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sdkupload", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint URL (path-style addressing)")
	region := fs.String("region", "us-east-1", "S3 region")
	bucket := fs.String("bucket", "", "bucket")
	key := fs.String("key", "", "the object to write")
	file := fs.String("file", "", "the file to upload")
	tuned := fs.Bool("tuned", false, "8 MiB parts, 8 at once, 64 idle connections (default: the SDK's defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *endpoint == "" || *bucket == "" || *key == "" || *file == "" {
		return errors.New("-endpoint, -bucket, -key and -file are required")
	}
	src := s3util.Source{Endpoint: *endpoint, Region: *region}
	var c *s3.Client
	var err error
	if *tuned {
		c, err = s3util.NewClient(ctx, src, s3util.HTTPClient(64))
	} else {
		c, err = s3util.NewClient(ctx, src, nil)
	}
	if err != nil {
		return err
	}
	u := manager.NewUploader(c, func(u *manager.Uploader) {
		if *tuned {
			u.PartSize = 8 << 20
			u.Concurrency = 8
		}
	})
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := u.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(*bucket), Key: aws.String(*key), Body: f}); err != nil {
		return fmt.Errorf("upload %s to s3://%s/%s: %w", *file, *bucket, *key, err)
	}
	return nil
}
