// Command plainput is the ceiling of the S3 server's writes, as plainget
// -discard is of its reads: the most a client can get from that server on
// this machine when it has nothing else to do.
//
// By default it writes -size bytes to one object as a multipart upload:
// -concurrency goroutines, each sending UploadPart requests of -part-size
// (8 MiB) from one buffer of random bytes in memory (no file read, no
// checksum, UNSIGNED-PAYLOAD, so no SHA-256 of the body either), then
// CompleteMultipartUpload.
//
// With -copy-from BUCKET/KEY it copies that object on the same server with
// a multipart upload of UploadPartCopy requests, -concurrency at once, of
// -copy-part-size (128 MiB); with -copy-from BUCKET/PREFIX/ and -prefix,
// every object under it with one CopyObject each, -concurrency at once.
//
// It prints "plainput: N objects, M bytes".
//
//	plainput -endpoint URL -bucket B -key big.bin -size 1073741824
//	plainput -endpoint URL -bucket B -key copy.bin -copy-from bench/big.bin
//	plainput -endpoint URL -bucket B -prefix copy/ -copy-from bench/small/ -concurrency 32
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet/bench/suite/internal/s3util"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "plainput:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plainput", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint URL (path-style addressing)")
	region := fs.String("region", "us-east-1", "S3 region")
	bucket := fs.String("bucket", "", "the destination bucket")
	key := fs.String("key", "", "the object to write")
	prefix := fs.String("prefix", "", "with -copy-from BUCKET/PREFIX/: where the copies go (ends with /)")
	size := fs.Int64("size", 0, "bytes to write from memory")
	copyFrom := fs.String("copy-from", "", "BUCKET/KEY (or BUCKET/PREFIX/) to copy on the server instead")
	concurrency := fs.Int("concurrency", 8, "requests at once")
	partText := fs.String("part-size", "8MiB", "bytes of each UploadPart")
	copyPartText := fs.String("copy-part-size", "128MiB", "bytes of each UploadPartCopy")
	checksum := fs.String("checksum", "", "a checksum algorithm for each UploadPart (e.g. CRC32; default none), sent as a trailer over HTTPS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	partSize, err := humanize.ParseBytes(*partText)
	if err != nil || partSize < 5<<20 {
		return fmt.Errorf("-part-size: want a size of at least 5 MiB, got %q", *partText)
	}
	copyPartSize, err := humanize.ParseBytes(*copyPartText)
	if err != nil || copyPartSize < 5<<20 {
		return fmt.Errorf("-copy-part-size: want a size of at least 5 MiB, got %q", *copyPartText)
	}
	switch {
	case *endpoint == "" || *bucket == "":
		return errors.New("-endpoint and -bucket are required")
	case *concurrency < 1:
		return fmt.Errorf("-concurrency: must be at least 1, got %d", *concurrency)
	case *copyFrom == "" && (*key == "" || *size < 1):
		return errors.New("give -key and -size, or -copy-from")
	case *copyFrom != "" && (*key == "") == (*prefix == ""):
		return errors.New("-copy-from: give exactly one of -key and -prefix")
	}

	// No request checksum, no payload hash: the leanest write there is.
	c, err := s3util.NewClient(ctx, s3util.Source{Endpoint: *endpoint, Region: *region}, s3util.HTTPClient(2**concurrency), func(o *s3.Options) {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	})
	if err != nil {
		return err
	}
	p := &writer{c: c, bucket: *bucket, concurrency: *concurrency, checksum: types.ChecksumAlgorithm(*checksum)}
	switch {
	case *copyFrom == "":
		err = p.put(ctx, *key, *size, int64(partSize))
	case *prefix != "":
		srcBucket, srcPrefix, _ := strings.Cut(*copyFrom, "/")
		err = p.copyPrefix(ctx, srcBucket, srcPrefix, *prefix)
	default:
		srcBucket, srcKey, _ := strings.Cut(*copyFrom, "/")
		err = p.copyObject(ctx, srcBucket, srcKey, *key, int64(copyPartSize))
	}
	if err != nil {
		return err
	}
	fmt.Printf("plainput: %d objects, %d bytes\n", p.objects.Load(), p.bytes.Load())
	return nil
}

// writer writes to one bucket, counting what it wrote.
type writer struct {
	c              *s3.Client
	bucket         string
	concurrency    int
	checksum       types.ChecksumAlgorithm
	objects, bytes atomic.Int64
}

// parts runs do(part number, offset, length) over size in parts of
// partSize, concurrency at once, and returns the parts in order.
func (p *writer) parts(ctx context.Context, size, partSize int64, do func(ctx context.Context, n int32, off, length int64) (types.CompletedPart, error)) ([]types.CompletedPart, error) {
	count := (size + partSize - 1) / partSize
	done := make([]types.CompletedPart, count)
	err := s3util.Each(ctx, done, p.concurrency, func(ctx context.Context, i int, _ types.CompletedPart) error {
		off := int64(i) * partSize
		part, err := do(ctx, int32(i+1), off, min(partSize, size-off))
		if err != nil {
			return err
		}
		done[i] = part
		return nil
	})
	return done, err
}

// multipart runs one multipart upload of key whose parts come from parts,
// aborting it on an error.
func (p *writer) multipart(ctx context.Context, key string, parts func(uploadID string) ([]types.CompletedPart, error)) error {
	up, err := p.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(p.bucket), Key: aws.String(key), ChecksumAlgorithm: p.checksum})
	if err != nil {
		return fmt.Errorf("create the upload of s3://%s/%s: %w", p.bucket, key, err)
	}
	done, err := parts(aws.ToString(up.UploadId))
	if err == nil {
		_, err = p.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(p.bucket), Key: aws.String(key),
			UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
		if err != nil {
			err = fmt.Errorf("complete s3://%s/%s: %w", p.bucket, key, err)
		}
	}
	if err != nil {
		_, _ = p.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(p.bucket), Key: aws.String(key), UploadId: up.UploadId})
		return err
	}
	p.objects.Add(1)
	return nil
}

// put writes size bytes from memory to key.
func (p *writer) put(ctx context.Context, key string, size, partSize int64) error {
	var seed atomic.Uint64
	bufs := sync.Pool{New: func() any {
		// Random bytes, fast: no server or network here compresses.
		b := make([]byte, partSize)
		_, _ = mrand.NewChaCha8([32]byte{byte(seed.Add(1))}).Read(b)
		return &b
	}}
	return p.multipart(ctx, key, func(id string) ([]types.CompletedPart, error) {
		return p.parts(ctx, size, partSize, func(ctx context.Context, n int32, _, length int64) (types.CompletedPart, error) {
			buf := bufs.Get().(*[]byte)
			defer bufs.Put(buf)
			out, err := p.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(p.bucket), Key: aws.String(key), UploadId: aws.String(id),
				PartNumber: aws.Int32(n), Body: bytes.NewReader((*buf)[:length]), ContentLength: aws.Int64(length), ChecksumAlgorithm: p.checksum})
			if err != nil {
				return types.CompletedPart{}, fmt.Errorf("upload part %d of s3://%s/%s: %w", n, p.bucket, key, err)
			}
			p.bytes.Add(length)
			return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32, ChecksumCRC32C: out.ChecksumCRC32C,
				ChecksumCRC64NVME: out.ChecksumCRC64NVME, ChecksumSHA1: out.ChecksumSHA1, ChecksumSHA256: out.ChecksumSHA256}, nil
		})
	})
}

// copyObject copies srcBucket/srcKey to key on the server, in parts.
func (p *writer) copyObject(ctx context.Context, srcBucket, srcKey, key string, partSize int64) error {
	h, err := p.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(srcBucket), Key: aws.String(srcKey)})
	if err != nil {
		return fmt.Errorf("head s3://%s/%s: %w", srcBucket, srcKey, err)
	}
	size := aws.ToInt64(h.ContentLength)
	source := aws.String(srcBucket + "/" + srcKey)
	return p.multipart(ctx, key, func(id string) ([]types.CompletedPart, error) {
		return p.parts(ctx, size, partSize, func(ctx context.Context, n int32, off, length int64) (types.CompletedPart, error) {
			out, err := p.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String(p.bucket), Key: aws.String(key), UploadId: aws.String(id),
				PartNumber: aws.Int32(n), CopySource: source, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1))})
			if err != nil {
				return types.CompletedPart{}, fmt.Errorf("copy part %d of s3://%s/%s: %w", n, p.bucket, key, err)
			}
			p.bytes.Add(length)
			return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.CopyPartResult.ETag}, nil
		})
	})
}

// copyPrefix copies every object under srcBucket/srcPrefix to the same
// key below prefix, one CopyObject each.
func (p *writer) copyPrefix(ctx context.Context, srcBucket, srcPrefix, prefix string) error {
	objs, err := s3util.List(ctx, p.c, s3util.Source{Bucket: srcBucket, Prefix: srcPrefix, Out: "."})
	if err != nil {
		return err
	}
	return s3util.Each(ctx, objs, p.concurrency, func(ctx context.Context, _ int, o s3util.Object) error {
		dst := prefix + strings.TrimPrefix(o.Key, srcPrefix)
		if _, err := p.c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(dst),
			CopySource: aws.String(srcBucket + "/" + o.Key)}); err != nil {
			return fmt.Errorf("copy s3://%s/%s: %w", srcBucket, o.Key, err)
		}
		p.objects.Add(1)
		p.bytes.Add(o.Size)
		return nil
	})
}
