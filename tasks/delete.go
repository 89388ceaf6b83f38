package tasks

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// maxDeleteKeys is S3's limit of keys in one DeleteObjects call.
const maxDeleteKeys = 1000

// deleteAll deletes a batch's objects, DeleteObjects per remote and bucket
// (1000 keys a call), and returns those deleted, and those to retry with
// their errors; an object refused (outside allow_delete) or one S3 names
// among the Errors of its reply fails for good. A per-key ETag condition
// is not sent: versitygw ignores it, so it would promise what some stores
// do not keep.
func (h *BatchHandler) deleteAll(ctx context.Context, objs []BatchObject, log *slog.Logger) ([]ledger.BatchResult, []assembler.Record, []error, []BatchObject) {
	var results []ledger.BatchResult
	var records []assembler.Record
	var retry []error
	var retryObjs []BatchObject
	groups := map[[3]string][]BatchObject{}
	var order [][3]string
	for _, o := range objs {
		if err := h.Access.checkDelete(o.Object); err != nil {
			h.failNow(ctx, o, err, log)
			continue
		}
		k := [3]string{o.Remote, o.RemoteFP, o.Bucket}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o)
	}
	for _, k := range order {
		g := groups[k]
		api, err := client(ctx, h.S3, k[0], k[1])
		for start := 0; start < len(g); start += maxDeleteKeys {
			part := g[start:min(start+maxDeleteKeys, len(g))]
			var deleted map[string]bool
			var failed map[string]string
			if err == nil {
				deleted, failed, err = deleteObjects(ctx, api, k[2], part)
			}
			for _, o := range part {
				switch {
				case err != nil && IsPermanent(err):
					h.failNow(ctx, o, err, log)
				case err != nil:
					retry, retryObjs = append(retry, err), append(retryObjs, o)
				case failed[o.Key] != "":
					h.failNow(ctx, o, permanent("delete %s: %s", o.URL(), failed[o.Key]), log)
				case deleted[o.Key]:
					results = append(results, ledger.BatchResult{BatchItem: ledger.BatchItem{ID: o.Transfer, Gen: o.Gen}, Size: o.Size,
						Result: ledger.Result{Check: "deleted"}})
					records = append(records, assembler.Record{Transfer: o.Transfer, Source: o.URL(), ETag: o.ETag, Size: o.Size,
						Check: "deleted", Chunks: 1, Attempts: 1, Path: o.Dest, State: ledger.Success})
				default:
					err := fmt.Errorf("delete %s: S3's reply names it neither deleted nor failed", o.URL())
					retry, retryObjs = append(retry, err), append(retryObjs, o)
				}
			}
		}
	}
	return results, records, retry, retryObjs
}

// deleteObjects deletes up to 1000 keys of one bucket and returns which
// the reply says were deleted, and the others' errors.
func deleteObjects(ctx context.Context, api *s3.Client, bucket string, objs []BatchObject) (map[string]bool, map[string]string, error) {
	ids := make([]types.ObjectIdentifier, len(objs))
	for i, o := range objs {
		ids[i] = types.ObjectIdentifier{Key: aws.String(o.Key)}
	}
	in := &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(false)}}
	if o := objs[0]; o.RequestPayer != "" || o.ExpectedOwner != "" {
		in.RequestPayer = types.RequestPayer(o.RequestPayer)
		if o.ExpectedOwner != "" {
			in.ExpectedBucketOwner = aws.String(o.ExpectedOwner)
		}
	}
	out, err := api.DeleteObjects(ctx, in)
	if err != nil {
		return nil, nil, s3Failure(fmt.Sprintf("delete %d keys of bucket %s", len(objs), bucket), err)
	}
	deleted := make(map[string]bool, len(out.Deleted))
	for _, d := range out.Deleted {
		deleted[aws.ToString(d.Key)] = true
	}
	failed := map[string]string{}
	for _, e := range out.Errors {
		failed[aws.ToString(e.Key)] = fmt.Sprintf("%s: %s", aws.ToString(e.Code), aws.ToString(e.Message))
	}
	return deleted, failed, nil
}

// checkDelete refuses an object outside allow_delete (every one, when it
// is empty).
func (a Access) checkDelete(o Object) error {
	if err := a.Delete.Check(location.Source{Remote: o.Remote, Bucket: o.Bucket, Key: o.Key}); err != nil {
		return fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	return nil
}
