package tasks

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/location"
)

// Endpoints resolves the remote a task names to this worker's own client
// for it (s3client.Set): a task carries a remote's name and fingerprint,
// never its endpoint or credentials.
type Endpoints interface {
	Client(ctx context.Context, remote, fingerprint string) (*s3.Client, error)
	// Secure reports whether the remote is reached over TLS, where an
	// upload part can stream with a trailing checksum.
	Secure(remote string) bool
}

var _ Endpoints = (*s3client.Set)(nil)

// Access is what a worker may touch beyond its downloads: the objects it
// may read (empty Read: whatever its credentials can), those it may write
// (empty Write: none), and the local files it may upload (no Source root:
// none). A task outside them is refused,
// so a task forged in Redis cannot copy a private bucket away or write
// where the worker's owner did not say.
type Access struct {
	Read, Write location.Prefixes
	// Delete are the object URL prefixes a worker may delete under
	// (allow_delete); empty: none.
	Delete location.Prefixes
	// Source are the local roots a worker may upload from (allow_source);
	// with none it uploads nothing.
	Source location.Guard
}

// checkRead refuses a source outside allow_read.
func (a Access) checkRead(o Object) error {
	if a.Read.Empty() || o.Path != "" {
		return nil
	}
	if err := a.Read.Check(location.Source{Remote: o.Remote, Bucket: o.Bucket, Key: o.Key}); err != nil {
		return fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	return nil
}

// checkWrite refuses a destination object outside allow_write.
func (a Access) checkWrite(dst location.Source) error {
	if err := a.Write.Check(dst); err != nil {
		return fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	return nil
}

// client resolves a remote; a worker that does not know it, or knows it
// as another endpoint, refuses the task for good.
func client(ctx context.Context, eps Endpoints, remote, fingerprint string) (*s3.Client, error) {
	c, err := eps.Client(ctx, remote, fingerprint)
	if errors.Is(err, s3client.ErrRemote) {
		return nil, fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	return c, err
}

// destClient resolves an S3 destination's endpoint. A copy of an SSE-C
// object (keyMD5 names its key) is written encrypted with the same key,
// the worker's own copy of it: every request to the destination object
// carries it (s3client.DestWithSSEC).
func destClient(ctx context.Context, eps Endpoints, remote, fingerprint, keyMD5 string, keys map[string][]byte) (*s3.Client, error) {
	c, err := client(ctx, eps, remote, fingerprint)
	if err != nil {
		return nil, err
	}
	if c, err = s3client.DestWithSSEC(c, eps.Secure(remote), remote, keyMD5, keys); err != nil {
		return nil, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	return c, nil
}
