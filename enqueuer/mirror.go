package enqueuer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/location"
)

// mirror (--delete) adds to the job the deletion of every destination
// object under the destination prefix that the source no longer has:
// after the source's listing completed without error and found something
// (never for an empty source), each destination key is looked for at the
// source (a HEAD, or an lstat for an upload), as --include/--exclude
// select. Over MaxDelete of them, none is deleted and the job says why.
// Memory stays bounded by MaxDelete (or one listing page without a cap).
func (s *submission) mirror(ctx context.Context) error {
	if atomic.LoadInt64(&s.sum.Objects) == 0 {
		return nil // an empty source deletes nothing
	}
	src, dst := s.srcs[0], s.destObj
	api, err := s.e.api(ctx, dst.Remote)
	if err != nil {
		return err
	}
	var doomed []object
	flush := func() error {
		for _, o := range doomed {
			if err := s.add(ctx, o, false); err != nil {
				return err
			}
		}
		doomed = doomed[:0]
		return s.flushBatch(ctx)
	}
	p := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(dst.Bucket), Prefix: aws.String(dst.Key), EncodingType: types.EncodingTypeUrl})
	var n int64
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("--delete: list %s: %s (nothing deleted)", dst, s3client.Describe(err))
		}
		for _, c := range out.Contents {
			key, err := s3client.ListedKey(out, c.Key)
			if err != nil {
				return fmt.Errorf("--delete: list %s: %w (nothing more deleted)", dst, err)
			}
			rel := strings.TrimPrefix(key, dst.Key)
			o := object{src: dst, key: key, size: aws.ToInt64(c.Size), etag: aws.ToString(c.ETag), delete: true}
			if rel == "" || !s.wanted(o) {
				continue
			}
			gone, err := s.absentAtSource(ctx, src, rel)
			if err != nil {
				return fmt.Errorf("--delete: %w (nothing more deleted)", err)
			}
			if !gone {
				continue
			}
			if n++; s.req.MaxDelete > 0 && n > s.req.MaxDelete {
				return fmt.Errorf("--delete: more than %d destination objects are absent at the source (--max-delete): none deleted", s.req.MaxDelete)
			}
			doomed = append(doomed, o)
		}
		if s.req.MaxDelete <= 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	atomic.AddInt64(&s.sum.Deletes, n)
	return flush()
}

// absentAtSource reports whether the source has nothing at rel below its
// prefix (or directory).
func (s *submission) absentAtSource(ctx context.Context, src location.Source, rel string) (bool, error) {
	if s.local {
		_, err := os.Lstat(filepath.Join(src.Key, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	api, err := s.e.api(ctx, src.Remote)
	if err != nil {
		return false, err
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(src.Bucket), Key: aws.String(src.Key + rel)}
	if err := s.req.setOptions(in); err != nil {
		return false, err
	}
	_, err = api.HeadObject(ctx, in)
	switch {
	case err == nil:
		return false, nil
	case s3client.HTTPStatus(err) == 404:
		return true, nil
	}
	return false, fmt.Errorf("head %s: %s", location.Source{Remote: src.Remote, Bucket: src.Bucket, Key: src.Key + rel}, s3client.Describe(err))
}
