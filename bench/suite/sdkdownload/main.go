// Command sdkdownload downloads with aws-sdk-go-v2's feature/s3/manager
// Downloader, as a Go program using the SDK would: one object, or every
// object under a prefix with -objects downloads at once (the manager has no
// prefix download of its own; each object is one Download call on one
// shared Downloader).
//
// By default the Downloader and the HTTP client are the SDK's defaults
// (5 MiB parts, 5 at once per object). -tuned sets 8 MiB parts, 8 at once,
// and an HTTP client keeping enough idle connections for them.
//
//	sdkdownload -endpoint URL -bucket B -key big.bin -out /data/big.bin
//	sdkdownload -endpoint URL -bucket B -prefix logs/ -out /data/logs -tuned
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/bench/suite/internal/s3util"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdkdownload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sdkdownload", flag.ContinueOnError)
	var src s3util.Source
	src.Bind(fs)
	tuned := fs.Bool("tuned", false, "8 MiB parts, 8 at once, 64 idle connections (default: the SDK's defaults)")
	objects := fs.Int("objects", 8, "objects of a prefix downloaded at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := src.Check(); err != nil {
		return err
	}
	if *objects < 1 {
		return fmt.Errorf("-objects: must be at least 1, got %d", *objects)
	}

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
	d := manager.NewDownloader(c, func(d *manager.Downloader) {
		if *tuned {
			d.PartSize = 8 << 20
			d.Concurrency = 8
		}
	})

	var objs []s3util.Object
	if src.Key != "" {
		// No HEAD: the Downloader learns the size from its first GET.
		objs = []s3util.Object{{Key: src.Key, Path: src.Out}}
	} else if objs, err = s3util.List(ctx, c, src); err != nil {
		return err
	}

	return s3util.Each(ctx, objs, *objects, func(ctx context.Context, _ int, o s3util.Object) error {
		return download(ctx, d, src.Bucket, o)
	})
}

func download(ctx context.Context, d *manager.Downloader, bucket string, o s3util.Object) error {
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := d.Download(ctx, f, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.Key)}); err != nil {
		f.Close()
		return fmt.Errorf("download s3://%s/%s: %w", bucket, o.Key, err)
	}
	return f.Close()
}
