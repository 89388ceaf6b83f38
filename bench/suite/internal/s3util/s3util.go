// Package s3util holds what the suite's Go contenders (sdkdownload,
// plainget) share: their S3 client and the listing of what to download.
package s3util

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Source is what to download and where, from the common flags.
type Source struct {
	Endpoint string
	Region   string
	Bucket   string
	Key      string // one object, or
	Prefix   string // every object under it (ends with /)
	Out      string // the file for Key, the directory for Prefix
}

// Bind registers the common flags on fs.
func (s *Source) Bind(fs *flag.FlagSet) {
	fs.StringVar(&s.Endpoint, "endpoint", "", "S3 endpoint URL (path-style addressing)")
	fs.StringVar(&s.Region, "region", "us-east-1", "S3 region")
	fs.StringVar(&s.Bucket, "bucket", "", "bucket")
	fs.StringVar(&s.Key, "key", "", "the one object to download (to the file -out)")
	fs.StringVar(&s.Prefix, "prefix", "", "download every object under this prefix (to the directory -out)")
	fs.StringVar(&s.Out, "out", "", "destination: a file for -key, a directory for -prefix")
}

// Check reports a missing or conflicting flag.
func (s *Source) Check() error {
	switch {
	case s.Endpoint == "" || s.Bucket == "":
		return errors.New("-endpoint and -bucket are required")
	case (s.Key == "") == (s.Prefix == ""):
		return errors.New("give exactly one of -key and -prefix")
	case s.Out == "":
		return errors.New("-out is required")
	}
	return nil
}

// NewClient is an S3 client for the endpoint, path-style, credentials from
// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), using hc as
// its HTTP client (nil: the SDK's default). Extra options come last.
func NewClient(ctx context.Context, s Source, hc *awshttp.BuildableClient, opts ...func(*s3.Options)) (*s3.Client, error) {
	loadOpts := []func(*config.LoadOptions) error{config.WithRegion(s.Region)}
	if hc != nil {
		loadOpts = append(loadOpts, config.WithHTTPClient(hc))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	all := append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
		o.UsePathStyle = true
	}}, opts...)
	return s3.NewFromConfig(cfg, all...), nil
}

// HTTPClient is the SDK's buildable HTTP client with room for idle
// connections to one host: Go's default keeps 2, the SDK's 10.
func HTTPClient(idlePerHost int) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = max(t.MaxIdleConns, idlePerHost)
		t.MaxIdleConnsPerHost = idlePerHost
	})
}

// Object is one object to download and its destination path.
type Object struct {
	Key  string
	Size int64
	Path string
}

// List returns the objects to download: the one -key (HEAD), or every
// object under -prefix (ListObjectsV2), each with its destination.
func List(ctx context.Context, c *s3.Client, s Source) ([]Object, error) {
	if s.Key != "" {
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.Key)})
		if err != nil {
			return nil, fmt.Errorf("head s3://%s/%s: %w", s.Bucket, s.Key, err)
		}
		return []Object{{Key: s.Key, Size: aws.ToInt64(h.ContentLength), Path: s.Out}}, nil
	}
	var objs []Object
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(s.Prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, s.Prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			rel := strings.TrimPrefix(key, s.Prefix)
			if rel == "" || strings.HasSuffix(rel, "/") || !filepath.IsLocal(rel) {
				continue // a directory marker, or a key that would escape -out
			}
			objs = append(objs, Object{Key: key, Size: aws.ToInt64(o.Size), Path: filepath.Join(s.Out, filepath.FromSlash(path.Clean(rel)))})
		}
	}
	return objs, nil
}

// Each runs fn on every item, n at once, and returns the first error
// fn returned (the others then take no more items) or the context's.
func Each[T any](ctx context.Context, items []T, n int, fn func(ctx context.Context, i int, item T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range items {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i, items[i]); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
