package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/ledger"
)

// TypeAssemble verifies a complete object, moves it to its final name and
// records the result.
const TypeAssemble = "s3fleet:assemble"

// AssemblePayload names the transfer to finalize. The rest (chunks,
// checksums, Last-Modified) is read from the fleet's records.
type AssemblePayload struct {
	Job      string `json:"job"`
	Transfer string `json:"transfer"`
	Gen      int64  `json:"gen"`
	Epoch    int64  `json:"epoch,omitempty"` // see RunID
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Dest     string `json:"dest"`
	Size     int64  `json:"size"`
}

// AssembleTaskID is the assembler's asynq task ID: one per transfer
// generation, so it is enqueued once however many chunks race to it.
func AssembleTaskID(transfer string, gen, epoch int64) string {
	return "assemble:" + transfer + ":" + RunID(gen, epoch)
}

// NewAssembleTask builds an assembler task on the assemble queue, its result
// kept for a week (opts override that and the other defaults).
func NewAssembleTask(k *TaskKeys, p AssemblePayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode assemble payload: %w", err)
	}
	defaults := []asynq.Option{
		asynq.Queue(QueueAssemble), asynq.MaxRetry(10), asynq.Timeout(30 * time.Minute),
		asynq.Retention(7 * 24 * time.Hour), asynq.TaskID(AssembleTaskID(p.Transfer, p.Gen, p.Epoch)),
	}
	return k.newTask(TypeAssemble, b, append(defaults, opts...)...), nil
}

// objectAssembler is the step that finalizes an object.
type objectAssembler interface {
	Assemble(ctx context.Context, transfer string, gen int64) (assembler.Record, error)
}

var _ objectAssembler = (*assembler.Assembler)(nil)

// failRecorder records an object's failure.
type failRecorder interface {
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
	retryLedger
}

// AssembleHandler runs assembler tasks and writes each record as the task's
// result, where the asynq web UI shows it.
type AssembleHandler struct {
	Assembler objectAssembler
	Ledger    failRecorder
	Log       *slog.Logger
	Metrics   *metrics.Worker // nil counts nothing
	// RetryFor ends the retries of an assembly failing this long with no
	// progress (retry_for; 0: only max_retries).
	RetryFor time.Duration
}

// ProcessTask finalizes the object.
func (h *AssembleHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p AssemblePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return permanent("decode assemble payload: %v", err)
	}
	if p.Transfer == "" || p.Gen < 1 {
		return permanent("invalid assemble payload: transfer %q generation %d", p.Transfer, p.Gen)
	}
	log := logger(h.Log).With("job", p.Job, "transfer", p.Transfer, "bucket", p.Bucket, "key", p.Key)
	rec, err := h.Assembler.Assemble(ctx, p.Transfer, p.Gen)
	if err != nil && ctx.Err() == nil && !liveness.LeaseOf(ctx).Lost() {
		err = outOfTime(ctx, h.Ledger, h.RetryFor, p.Transfer, p.Gen, err)
	}
	if err != nil {
		if ctx.Err() == nil && finalAttempt(ctx, err) && !errors.Is(err, assembler.ErrRecorded) {
			if _, ferr := h.Ledger.Fail(context.WithoutCancel(ctx), p.Transfer, p.Gen, causeOf(err), false, time.Now()); ferr != nil {
				return ferr
			}
		}
		log.Error("assembly failed", "err", err)
		if finalAttempt(ctx, err) {
			h.Metrics.ObjectFinalized("failed")
		}
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if w := t.ResultWriter(); w != nil {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write result of %s: %w", p.Transfer, err)
		}
	}
	if rec.Finalized {
		h.Metrics.ObjectFinalized(rec.State)
		if rec.State == ledger.Success {
			h.Metrics.ObjectVerified(rec.Check)
		}
	}
	log.Info("object finalized", "path", rec.Path, "bytes", rec.Size, "check", rec.Check, "state", rec.State)
	return nil
}
