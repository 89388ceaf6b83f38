package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"maps"
	mrand "math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"
)

// object is one uploaded object.
type object struct {
	key  string
	size int64
	sum  [sha256.Size]byte
}

// workload is what a contender downloads in one run: one key, or every key
// under a prefix.
type workload struct {
	id      string // big, small, mixed
	title   string
	key     string // the one object, or
	prefix  string // the objects under it (ends with /)
	objects []object
	total   int64
	// local is the directory holding the workload's bytes as files, at
	// their rel paths, for the uploads; empty without an upload cell.
	local string
}

func (w *workload) single() bool { return w.key != "" }

// gib is the workload's size in GiB.
func (w *workload) gib() float64 { return float64(w.total) / (1 << 30) }

// relKey is an object's key below a destination prefix: its last
// segment for one key, its key below the workload's prefix otherwise.
func (w *workload) relKey(key string) string {
	if w.single() {
		return path.Base(key)
	}
	return strings.TrimPrefix(key, w.prefix)
}

// rel is where an object lands under a run's output directory.
func (w *workload) rel(key string) string { return filepath.FromSlash(w.relKey(key)) }

// buildWorkloads lays out the objects of the chosen workloads: names and
// sizes only; upload fills in the bytes' sums.
func buildWorkloads(o options) []*workload {
	var out []*workload
	for _, id := range o.workloads {
		w := &workload{id: id}
		switch id {
		case "big":
			w.key = "big.bin"
			w.title = fmt.Sprintf("one %s object", humanize.IBytes(uint64(o.bigSize)))
			w.objects = []object{{key: w.key, size: o.bigSize}}
		case "small":
			w.prefix = "small/"
			w.title = fmt.Sprintf("%s objects of %s", humanize.Comma(int64(o.smallCount)), humanize.IBytes(uint64(o.smallSize)))
			for i := range o.smallCount {
				w.objects = append(w.objects, object{key: fmt.Sprintf("small/%06d.bin", i), size: o.smallSize})
			}
		case "mixed":
			// The big objects spread evenly through the listing; the small
			// ones from 1 KiB to 128 KiB.
			w.prefix = "mixed/"
			w.title = fmt.Sprintf("mixed: %d × %s among %s small (1–128 KiB)", o.mixedBig,
				humanize.IBytes(uint64(o.mixedBigSize)), humanize.Comma(int64(o.mixedSmall)))
			sizes := mrand.New(mrand.NewPCG(1, 2))
			every := o.mixedSmall / (o.mixedBig + 1)
			for i := range o.mixedSmall {
				if every > 0 && i > 0 && i%every == 0 && i/every <= o.mixedBig {
					w.objects = append(w.objects, object{key: fmt.Sprintf("mixed/%06d-big.bin", i), size: o.mixedBigSize})
				}
				w.objects = append(w.objects, object{key: fmt.Sprintf("mixed/%06d.bin", i), size: 1024 + sizes.Int64N(127*1024+1)})
			}
		}
		for _, ob := range w.objects {
			w.total += ob.size
		}
		out = append(out, w)
	}
	return out
}

// uploadFileAbove is the size from which an object is written to a file
// and uploaded from it rather than from memory. The SDK reads a body twice
// over plain HTTP (its payload hash, then the request), so it must seek.
const uploadFileAbove = 16 << 20

// upload writes each object's random bytes and uploads them with a
// CRC32C, as s3fleet's full-object check wants, a few at once, recording
// each object's SHA-256. The workloads named in keep keep their bytes as
// files under dir/ID, the uploads' sources.
func upload(ctx context.Context, c *s3.Client, ws []*workload, dir string, keep []string) error {
	for _, b := range []string{bucket, dstBucket} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, w := range ws {
		if slices.Contains(keep, w.id) {
			w.local = filepath.Join(dir, w.id)
		}
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, w := range ws {
		for i := range w.objects {
			ob := &w.objects[i]
			seed[0]++
			rng := mrand.NewChaCha8(seed)
			file := ""
			if w.local != "" {
				file = filepath.Join(w.local, w.rel(ob.key))
			}
			g.Go(func() error {
				return uploadOne(ctx, c, ob, rng, dir, file)
			})
		}
	}
	return g.Wait()
}

// uploadOne uploads an object, its bytes written to keepFile first when
// given (and kept), else to a temporary file when large.
func uploadOne(ctx context.Context, c *s3.Client, ob *object, rng io.Reader, dir, keepFile string) error {
	h := sha256.New()
	var body io.ReadSeeker
	if ob.size > uploadFileAbove || keepFile != "" {
		path := keepFile
		if path == "" {
			path = filepath.Join(dir, strings.ReplaceAll(ob.key, "/", "_"))
			defer os.Remove(path)
		} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(io.MultiWriter(f, h), rng, ob.size); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		body = f
	} else {
		b := make([]byte, ob.size)
		_, _ = io.ReadFull(rng, b)
		h.Write(b)
		body = bytes.NewReader(b)
	}
	copy(ob.sum[:], h.Sum(nil))
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(ob.key), Body: body,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	}); err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", bucket, ob.key, err)
	}
	return nil
}

// verify checks that dir holds exactly the workload's objects, each with
// the uploaded bytes' SHA-256, and nothing else.
func (w *workload) verify(dir string) error {
	want := make(map[string]*object, len(w.objects))
	for i := range w.objects {
		want[w.rel(w.objects[i].key)] = &w.objects[i]
	}
	var extra []string
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if want[rel] == nil {
			extra = append(extra, rel)
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk the output: %w", err)
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%d files that are no object, e.g. %s", len(extra), extra[0])
	}
	if len(files) != len(want) {
		seen := make(map[string]bool, len(files))
		for _, f := range files {
			seen[f] = true
		}
		for rel := range want {
			if !seen[rel] {
				return fmt.Errorf("%d of %d objects missing, e.g. %s", len(want)-len(files), len(want), rel)
			}
		}
	}

	g := new(errgroup.Group)
	g.SetLimit(runtime.NumCPU())
	for _, rel := range files {
		ob := want[rel]
		g.Go(func() error {
			sum, size, err := fileSHA256(filepath.Join(dir, rel))
			if err != nil {
				return err
			}
			if size != ob.size {
				return fmt.Errorf("%s: %d bytes, want %d", rel, size, ob.size)
			}
			if sum != ob.sum {
				return fmt.Errorf("%s: SHA-256 %x differs from the object's %x", rel, sum, ob.sum)
			}
			return nil
		})
	}
	return g.Wait()
}

var hashBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func fileSHA256(path string) (sum [sha256.Size]byte, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	buf := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(buf)
	size, err = io.CopyBuffer(h, f, *buf)
	if err != nil {
		return sum, 0, fmt.Errorf("hash %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, size, nil
}

// verifyS3 checks that the bucket holds under prefix exactly the
// workload's objects (at their relKey), each with the uploaded bytes'
// SHA-256, read back with a GET, and that no multipart upload is left in
// progress under the prefix. sizesOnly checks the names and sizes alone
// (a ceiling writes bytes of its own).
func (w *workload) verifyS3(ctx context.Context, c *s3.Client, bkt, prefix string, sizesOnly bool) error {
	want := make(map[string]*object, len(w.objects))
	for i := range w.objects {
		want[prefix+w.relKey(w.objects[i].key)] = &w.objects[i]
	}
	got, err := listKeys(ctx, c, bkt, prefix)
	if err != nil {
		return err
	}
	var extra []string
	for key, size := range got {
		ob := want[key]
		if ob == nil {
			extra = append(extra, key)
			continue
		}
		if size != ob.size {
			return fmt.Errorf("s3://%s/%s: %d bytes, want %d", bkt, key, size, ob.size)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%d objects that are no copy of the workload's, e.g. s3://%s/%s", len(extra), bkt, extra[0])
	}
	if len(got) != len(want) {
		for key := range want {
			if _, ok := got[key]; !ok {
				return fmt.Errorf("%d of %d objects missing, e.g. s3://%s/%s", len(want)-len(got), len(want), bkt, key)
			}
		}
	}
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bkt), Prefix: aws.String(prefix)})
	if err != nil {
		return fmt.Errorf("list the multipart uploads of s3://%s/%s: %w", bkt, prefix, err)
	}
	if n := len(ups.Uploads); n > 0 {
		return fmt.Errorf("%d multipart uploads left in progress, e.g. s3://%s/%s", n, bkt, aws.ToString(ups.Uploads[0].Key))
	}
	if sizesOnly {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for key, ob := range want {
		g.Go(func() error {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bkt), Key: aws.String(key)})
			if err != nil {
				return fmt.Errorf("get s3://%s/%s: %w", bkt, key, err)
			}
			defer out.Body.Close()
			h := sha256.New()
			buf := hashBufs.Get().(*[]byte)
			defer hashBufs.Put(buf)
			if _, err := io.CopyBuffer(h, out.Body, *buf); err != nil {
				return fmt.Errorf("read s3://%s/%s: %w", bkt, key, err)
			}
			if sum := h.Sum(nil); !bytes.Equal(sum, ob.sum[:]) {
				return fmt.Errorf("s3://%s/%s: SHA-256 %x differs from the object's %x", bkt, key, sum, ob.sum)
			}
			return nil
		})
	}
	return g.Wait()
}

// listKeys returns the keys under prefix with their sizes.
func listKeys(ctx context.Context, c *s3.Client, bkt, prefix string) (map[string]int64, error) {
	got := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bkt), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", bkt, prefix, err)
		}
		for _, o := range page.Contents {
			got[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return got, nil
}

// cleanS3 deletes every object under prefix and aborts every multipart
// upload there, so that the next run finds the destination empty.
func cleanS3(ctx context.Context, c *s3.Client, bkt, prefix string) error {
	got, err := listKeys(ctx, c, bkt, prefix)
	if err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(got))
	for batch := range slices.Chunk(keys, 1000) {
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bkt), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("delete under s3://%s/%s: %w", bkt, prefix, err)
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("delete s3://%s/%s: %s", bkt, aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
	}
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bkt), Prefix: aws.String(prefix)})
	if err != nil {
		return fmt.Errorf("list the multipart uploads of s3://%s/%s: %w", bkt, prefix, err)
	}
	for _, u := range ups.Uploads {
		if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bkt), Key: u.Key, UploadId: u.UploadId}); err != nil {
			return fmt.Errorf("abort the upload of s3://%s/%s: %w", bkt, aws.ToString(u.Key), err)
		}
	}
	return nil
}
