package enqueuer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// Upload is one multipart upload in progress the fleet created, as
// enqueue uploads shows it.
type Upload struct {
	URL       string    `json:"url"`
	UploadID  string    `json:"upload_id"`
	Initiated time.Time `json:"initiated"`
	Transfer  string    `json:"transfer"`
	// State is its transfer's (gone: the record expired or was never
	// made); Stray says no transfer will complete or abort it: the record
	// is gone, names another upload, or ended in success or cancel.
	State   string `json:"state"`
	Stray   bool   `json:"stray"`
	Aborted bool   `json:"aborted,omitempty"`
	Error   string `json:"error,omitempty"`
}

// uploadAPI lists and aborts a bucket's uploads.
type uploadAPI interface {
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, optFns ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

// Uploads lists the multipart uploads in progress under an object URL's
// bucket and prefix that the fleet created (never another tool's: each
// is known by the note its creator left in Redis), and with abort aborts
// the stray ones. fn is called with each, in the listing's order.
func (e *Enqueuer) Uploads(ctx context.Context, raw string, abort bool, fn func(Upload) error) error {
	src, err := location.ParseURL(raw, e.remoteNames())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	c, err := e.api(ctx, src.Remote)
	if err != nil {
		return err
	}
	api, ok := c.(uploadAPI)
	if !ok {
		return errors.New("this endpoint's client cannot list uploads")
	}
	// MinIO lists the uploads of one key for a prefix, and none under a
	// prefix: a prefix is filtered here instead, a key asked for as is.
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(src.Bucket)}
	if !src.IsPrefix() {
		in.Prefix = aws.String(src.Key)
	}
	for {
		out, err := api.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("list the uploads of %s: %s", src, s3client.Describe(err))
		}
		ids := make([]string, len(out.Uploads))
		for i, u := range out.Uploads {
			ids[i] = aws.ToString(u.UploadId)
		}
		owners, err := e.Ledger.UploadOwners(ctx, ids)
		if err != nil {
			return err
		}
		for _, u := range out.Uploads {
			id := aws.ToString(u.UploadId)
			xfer, ours := owners[id]
			if !ours || !strings.HasPrefix(aws.ToString(u.Key), src.Key) {
				continue
			}
			up := Upload{URL: location.Source{Remote: src.Remote, Bucket: src.Bucket, Key: aws.ToString(u.Key)}.String(),
				UploadID: id, Initiated: aws.ToTime(u.Initiated), Transfer: xfer, State: "gone"}
			t, err := e.Ledger.GetTransfer(ctx, xfer)
			switch {
			case errors.Is(err, ledger.ErrNotFound):
				up.Stray = true
			case err != nil:
				return err
			default:
				up.State = t.State
				up.Stray = t.PartToken != id || t.State == ledger.Success || t.State == ledger.Cancelled
			}
			if abort && up.Stray {
				_, err := api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(src.Bucket), Key: u.Key, UploadId: u.UploadId})
				if up.Aborted = err == nil; err != nil {
					up.Error = s3client.Describe(err)
				}
			}
			if err := fn(up); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
