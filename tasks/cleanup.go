package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// TypeCleanup removes the part file of a cancelled transfer, on a worker,
// since only workers are sure to see the destination, or aborts its
// multipart upload.
const TypeCleanup = "s3fleet:cleanup"

// CleanupPayload names the transfer whose part file goes. The path is
// taken from the fleet's record, not from the payload.
type CleanupPayload struct {
	Job      string `json:"job"`
	Transfer string `json:"transfer"`
	Gen      int64  `json:"gen"`
	Epoch    int64  `json:"epoch,omitempty"` // see RunID
}

// NewCleanupTask builds a cleanup task on the assemble queue.
func NewCleanupTask(k *TaskKeys, p CleanupPayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode cleanup payload: %w", err)
	}
	defaults := []asynq.Option{
		asynq.Queue(QueueAssemble), asynq.MaxRetry(3),
		asynq.TaskID("cleanup:" + p.Transfer + ":" + RunID(p.Gen, p.Epoch)),
	}
	return k.newTask(TypeCleanup, b, append(defaults, opts...)...), nil
}

// transferReader reads a transfer's record.
type transferReader interface {
	GetTransfer(ctx context.Context, id string) (ledger.Transfer, error)
}

// CleanupHandler runs cleanup tasks.
type CleanupHandler struct {
	Ledger transferReader
	Log    *slog.Logger
	Guard  location.Guard
	// S3 and Access abort the upload of a cancelled transfer to S3.
	S3     Endpoints
	Access Access
}

// ProcessTask removes the part file the cancel left, whatever became of
// the transfer since.
func (h *CleanupHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p CleanupPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return permanent("decode cleanup payload: %v", err)
	}
	x, err := h.Ledger.GetTransfer(ctx, p.Transfer)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil // expired: nothing to say where the file is
	}
	if err != nil {
		return err
	}
	if err := x.CheckIdentity(); err != nil {
		return fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	// The cancel dropped the part file's token (stale_part): no chunk
	// writes a file of that name again, even if the object was retried
	// since (a retry makes a part file of its own), so it can always go.
	_, dst, toS3, err := location.ParseDest(x.Dest)
	if err != nil {
		return permanent("transfer %s: %v", x.ID, err)
	}
	if x.StalePart == "" {
		return nil // no part file was made, or a later drop has its own cleanup
	}
	if toS3 {
		if err := h.Access.checkWrite(dst); err != nil {
			return fmt.Errorf("transfer %s: %w", x.ID, err)
		}
		api, err := client(ctx, h.S3, dst.Remote, x.DestFP)
		if err != nil {
			return err
		}
		if err := abortUpload(api, dst, x.StalePart)(); err != nil {
			return err
		}
		logger(h.Log).Info("multipart upload aborted", "job", p.Job, "transfer", x.ID, "dest", x.Dest)
		return nil
	}
	if err := h.Guard.Check(x.Dest); err != nil {
		return permanent("transfer %s: %v", x.ID, err)
	}
	part := location.PartPath(x.Dest, x.ID, x.StalePart)
	if err := os.Remove(part); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", part, err)
	}
	logger(h.Log).Info("part file removed", "job", p.Job, "transfer", x.ID, "path", part)
	return nil
}
