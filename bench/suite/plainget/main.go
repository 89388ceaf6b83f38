// Command plainget is the suite's plain parallel downloader: a fixed number
// of goroutines, each taking the next byte range (-part-size, 8 MiB) of the
// next object, doing one ranged GetObject and copying the body with
// io.CopyBuffer through its own buffer (-buffer, 1 MiB) into
// io.NewOffsetWriter(file, offset). Objects up to -part-size are one GET
// without a Range header. Nothing else: no checksum, no fsync, no retries
// beyond the SDK's.
//
// With -discard the bytes go nowhere (no file is created): the ceiling, the
// most any downloader can get from that server on this machine.
//
//	plainget -endpoint URL -bucket B -key big.bin -out /data/big.bin
//	plainget -endpoint URL -bucket B -prefix logs/ -out /data/logs -discard
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet/bench/suite/internal/s3util"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "plainget:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plainget", flag.ContinueOnError)
	var src s3util.Source
	src.Bind(fs)
	concurrency := fs.Int("concurrency", 8, "goroutines, each with one GET at a time")
	partText := fs.String("part-size", "8MiB", "bytes per ranged GET")
	bufText := fs.String("buffer", "1MiB", "each goroutine's copy buffer")
	discard := fs.Bool("discard", false, "throw the bytes away instead of writing files (the ceiling)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := src.Check(); err != nil {
		return err
	}
	partSize, err := humanize.ParseBytes(*partText)
	if err != nil || partSize == 0 {
		return fmt.Errorf("-part-size: want a positive size, got %q", *partText)
	}
	bufSize, err := humanize.ParseBytes(*bufText)
	if err != nil || bufSize == 0 {
		return fmt.Errorf("-buffer: want a positive size, got %q", *bufText)
	}
	if *concurrency < 1 {
		return fmt.Errorf("-concurrency: must be at least 1, got %d", *concurrency)
	}

	// No response checksum: the loop is as lean as a download can be.
	c, err := s3util.NewClient(ctx, src, s3util.HTTPClient(2**concurrency), func(o *s3.Options) {
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if err != nil {
		return err
	}
	objs, err := s3util.List(ctx, c, src)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	parts := make(chan part, 4**concurrency)
	go func() {
		defer close(parts)
		for i := range objs {
			o := &object{Object: objs[i], discard: *discard}
			n := max(1, (o.Size+int64(partSize)-1)/int64(partSize))
			o.left.Store(n)
			for off := int64(0); off < o.Size || off == 0; off += int64(partSize) {
				p := part{obj: o, off: off, n: min(int64(partSize), o.Size-off), whole: n == 1}
				select {
				case parts <- p:
				case <-ctx.Done():
					return
				}
				if o.Size == 0 {
					break
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for range *concurrency {
		wg.Go(func() {
			buf := make([]byte, bufSize)
			for p := range parts {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := p.fetch(ctx, c, src.Bucket, buf); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	// The suite checks the ceiling's byte count, as it cannot check files.
	fmt.Printf("plainget: %d objects, %d bytes\n", len(objs), fetched.Load())
	return nil
}

// fetched counts the bytes received.
var fetched atomic.Int64

// object is one object being downloaded: its file, opened by the first of
// its parts, closed by the last.
type object struct {
	s3util.Object
	discard bool
	once    sync.Once
	f       *os.File
	err     error
	left    atomic.Int64 // parts not yet done
}

func (o *object) open() (*os.File, error) {
	o.once.Do(func() {
		if err := os.MkdirAll(filepath.Dir(o.Path), 0o755); err != nil {
			o.err = err
			return
		}
		o.f, o.err = os.OpenFile(o.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	})
	return o.f, o.err
}

// done closes the file after the object's last part.
func (o *object) done() error {
	if o.left.Add(-1) > 0 || o.f == nil {
		return nil
	}
	return o.f.Close()
}

// part is one ranged GET.
type part struct {
	obj   *object
	off   int64
	n     int64
	whole bool // the object is one part: GET without Range
}

// writerOnly hides io.Discard's ReadFrom, which would read through its own
// small buffer instead of ours.
type writerOnly struct{ io.Writer }

func (p part) fetch(ctx context.Context, c *s3.Client, bucket string, buf []byte) error {
	var w io.Writer = writerOnly{io.Discard}
	if !p.obj.discard {
		f, err := p.obj.open()
		if err != nil {
			return err
		}
		w = io.NewOffsetWriter(f, p.off)
	}
	if p.n > 0 {
		in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(p.obj.Key)}
		if !p.whole {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", p.off, p.off+p.n-1))
		}
		out, err := c.GetObject(ctx, in)
		if err != nil {
			return fmt.Errorf("get s3://%s/%s at %d: %w", bucket, p.obj.Key, p.off, err)
		}
		got, err := io.CopyBuffer(w, out.Body, buf)
		out.Body.Close()
		fetched.Add(got)
		if err != nil {
			return fmt.Errorf("copy s3://%s/%s at %d: %w", bucket, p.obj.Key, p.off, err)
		}
		if got != p.n {
			return fmt.Errorf("s3://%s/%s at %d: got %d bytes, want %d", bucket, p.obj.Key, p.off, got, p.n)
		}
	}
	if err := p.obj.done(); err != nil {
		return errors.Join(fmt.Errorf("close %s", p.obj.Path), err)
	}
	return nil
}
