package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// failRecorder records an object failed, or a job's listing ended.
type failRecorder interface {
	Materialize(ctx context.Context, b ledger.PendingBatch, now time.Time) (bool, error)
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
	GetJob(ctx context.Context, id string) (ledger.Job, error)
	SetListed(ctx context.Context, id string, listErr error) error
}

// archiveLister is the part of asynq.Inspector the reconciler reads.
type archiveLister interface {
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	ListArchivedTasks(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
}

// reconcile records as failed the objects whose task asynq archived without
// running its handler: a worker that died during a task's last attempt
// leaves the task to expire its lease, and asynq's recoverer archives it
// silently. Without this the object would stay "running" and its job would
// never end. Every worker does it; Fail is idempotent.
func reconcile(ctx context.Context, insp archiveLister, led failRecorder, queues map[string]int, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for q := range queues {
			reconcileQueue(ctx, insp, led, q, log)
		}
	}
}

func reconcileQueue(ctx context.Context, insp archiveLister, led failRecorder, q string, log *slog.Logger) {
	const page = 200
	info, err := insp.GetQueueInfo(q)
	if err != nil || info.Archived == 0 {
		return
	}
	last := (info.Archived + page - 1) / page // the newest archived tasks
	archived, err := insp.ListArchivedTasks(q, asynq.PageSize(page), asynq.Page(last))
	if err != nil {
		return
	}
	reconcileTasks(ctx, archived, led, log)
}

// reconcileTasks fails the objects of recently archived tasks that are
// still queued or running in that generation.
func reconcileTasks(ctx context.Context, archived []*asynq.TaskInfo, led failRecorder, log *slog.Logger) {
	for _, ti := range archived {
		if time.Since(ti.LastFailedAt) > 15*time.Minute {
			continue
		}
		if ti.Type == tasks.TypeList {
			endListing(ctx, ti, led, log)
			continue
		}
		if ti.Type == tasks.TypeBatch {
			// A batch archived before it ever started has no records yet:
			// make them, to be failed below.
			if p, err := tasks.DecodeBatch(ti.Payload); err == nil && p.Pending {
				if err := tasks.Materialize(ctx, led, p, ti.Queue, false); err != nil {
					log.Warn("cannot record the objects of an archived batch", "task_id", ti.ID, "err", err)
				}
			}
		}
		for _, ref := range taskTransfers(ti) {
			cause := "task archived after its last attempt: " + ti.LastErr
			if changed, err := led.Fail(ctx, ref.id, ref.gen, cause, false, time.Now()); err == nil && changed {
				log.Warn("object failed: its task was archived", "task_id", ti.ID, "transfer", ref.id, "err", ti.LastErr)
			}
		}
	}
}

// endListing ends the listing of a job whose list task was archived
// without its handler saying why (its worker died in its last attempt):
// the job would wait for objects nobody adds.
func endListing(ctx context.Context, ti *asynq.TaskInfo, led failRecorder, log *slog.Logger) {
	var p tasks.ListPayload
	if json.Unmarshal(ti.Payload, &p) != nil || p.Job == "" {
		return
	}
	j, err := led.GetJob(ctx, p.Job)
	if err != nil || j.Listed || j.ListTask != ti.ID {
		return // ended, or listed by a later task
	}
	if err := led.SetListed(ctx, p.Job, errors.New("its list task was archived after its last attempt: "+ti.LastErr)); err == nil {
		log.Warn("job's listing ended: its list task was archived", "job", p.Job, "task_id", ti.ID, "err", ti.LastErr)
	}
}

type transferRef struct {
	id  string
	gen int64
}

// taskTransfers lists the transfers a task works on.
func taskTransfers(ti *asynq.TaskInfo) []transferRef {
	switch ti.Type {
	case tasks.TypeChunk, tasks.TypeAssemble:
		var p struct {
			Transfer string `json:"transfer"`
			Gen      int64  `json:"gen"`
		}
		if json.Unmarshal(ti.Payload, &p) == nil && p.Transfer != "" {
			return []transferRef{{p.Transfer, p.Gen}}
		}
	case tasks.TypeBatch:
		if p, err := tasks.DecodeBatch(ti.Payload); err == nil {
			refs := make([]transferRef, len(p.Objects))
			for i, o := range p.Objects {
				refs[i] = transferRef{o.Transfer, o.Gen}
			}
			return refs
		}
	}
	return nil
}
