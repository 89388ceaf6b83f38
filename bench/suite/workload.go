package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
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
}

func (w *workload) single() bool { return w.key != "" }

// gib is the workload's size in GiB.
func (w *workload) gib() float64 { return float64(w.total) / (1 << 30) }

// rel is where an object lands under a run's output directory.
func (w *workload) rel(key string) string {
	if w.single() {
		return filepath.Base(key)
	}
	return filepath.FromSlash(strings.TrimPrefix(key, w.prefix))
}

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
// each object's SHA-256.
func upload(ctx context.Context, c *s3.Client, ws []*workload, dir string) error {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
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
			g.Go(func() error {
				return uploadOne(ctx, c, ob, rng, dir)
			})
		}
	}
	return g.Wait()
}

func uploadOne(ctx context.Context, c *s3.Client, ob *object, rng io.Reader, dir string) error {
	h := sha256.New()
	var body io.ReadSeeker
	if ob.size > uploadFileAbove {
		path := filepath.Join(dir, strings.ReplaceAll(ob.key, "/", "_"))
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer os.Remove(path)
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
