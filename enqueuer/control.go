package enqueuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// taskControl is the part of asynq.Inspector that cancel uses.
type taskControl interface {
	DeleteTask(queue, id string) error
	CancelProcessing(id string) error
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

var _ taskControl = (*asynq.Inspector)(nil)

// Cancel stops a job: its queued and running objects become cancelled,
// their pending chunk tasks are deleted, running ones are told to stop (they
// see the cancelled record and return asynq.RevokeTask, so nothing retries
// them), and a worker removes each part file. It returns how many objects
// it cancelled.
func (e *Enqueuer) Cancel(ctx context.Context, job string) (int64, error) {
	j, err := e.Ledger.GetJob(ctx, job)
	if err != nil {
		return 0, err
	}
	if j.ListTask != "" && !j.Listed {
		// Its files are still being listed on their host: stop that first,
		// so that it adds nothing after the objects below are cancelled.
		if err := e.stopTask(j.ListQueue, j.ListTask); err != nil {
			return 0, err
		}
		if err := e.Ledger.SetListed(ctx, job, errors.New("cancelled before its files were all listed")); err != nil {
			return 0, err
		}
	}
	n, err := e.cancelPending(ctx, job)
	if err != nil {
		return n, err
	}
	err = e.Ledger.JobObjects(ctx, job, func(o ledger.JobObject) error {
		if o.State != ledger.Queued && o.State != ledger.Running {
			return nil
		}
		missing, err := e.Ledger.MissingChunks(ctx, o.Transfer)
		if err != nil {
			return err
		}
		changed, err := e.Ledger.Cancel(ctx, o.ID, o.Gen, time.Now())
		if err != nil || !changed {
			return err
		}
		n++
		queue := o.Queue
		if queue == "" {
			queue = tasks.QueueChunks
		}
		for _, i := range missing {
			if err := e.stopTask(queue, tasks.ChunkTaskID(o.ID, o.Gen, o.Created, i)); err != nil {
				return err
			}
		}
		if err := e.stopTask(tasks.AssembleQueue(queue), tasks.AssembleTaskID(o.ID, o.Gen, o.Created)); err != nil {
			return err
		}
		task, err := tasks.NewCleanupTask(e.Keys, tasks.CleanupPayload{Job: job, Transfer: o.ID, Gen: o.Gen, Epoch: o.Created}, asynq.Queue(tasks.AssembleQueue(queue)))
		if err != nil {
			return err
		}
		if _, err := e.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("enqueue cleanup of %s: %w", o.Source(), err)
		}
		return nil
	})
	return n, err
}

// cancelPending cancels the job's batches whose objects have no records
// yet. From the mark on, a batch that starts makes its records cancelled;
// one still waiting makes them here, cancelled, and is deleted; one that
// runs is told to stop (its records, made before the mark, are cancelled
// with the job's others); one whose task is gone counts its objects
// cancelled. It returns how many objects it cancelled.
func (e *Enqueuer) cancelPending(ctx context.Context, job string) (int64, error) {
	if err := e.Ledger.MarkCancelled(ctx, job, true, time.Now()); err != nil {
		return 0, err
	}
	pending, err := e.Ledger.PendingBatches(ctx, job)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, b := range pending {
		info, err := e.Control.GetTaskInfo(b.Queue, b.ID)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			if ok, err := e.Ledger.ForgetPending(ctx, job, b.Shard, b.ID); err != nil {
				return n, err
			} else if ok {
				n += b.Objects
			}
			continue
		case err != nil:
			return n, fmt.Errorf("read batch %s of job %s: %w", b.ID, job, err)
		case info.State != asynq.TaskStateActive:
			p, err := tasks.DecodeBatch(info.Payload)
			if err != nil {
				return n, fmt.Errorf("batch %s of job %s: %w", b.ID, job, err)
			}
			if err := tasks.Materialize(ctx, e.Ledger, p, b.Queue, true); err != nil {
				return n, err
			}
			n += b.Objects
		}
		if err := e.stopTask(b.Queue, b.ID); err != nil {
			return n, err
		}
	}
	return n, nil
}

// stopTask deletes a task that waits, or cancels one that runs.
func (e *Enqueuer) stopTask(queue, id string) error {
	err := e.Control.DeleteTask(queue, id)
	switch {
	case err == nil, errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return nil
	}
	// Active tasks cannot be deleted: cancel them where they run.
	if cerr := e.Control.CancelProcessing(id); cerr != nil {
		return fmt.Errorf("cancel task %s: %w (delete: %v)", id, cerr, err)
	}
	return nil
}

// Retry enqueues again the failed and cancelled objects of a job; each
// fetches only the chunks it has not recorded.
func (e *Enqueuer) Retry(ctx context.Context, job string) (Summary, error) {
	if _, err := e.Ledger.GetJob(ctx, job); err != nil {
		return Summary{}, err
	}
	if err := e.Ledger.MarkCancelled(ctx, job, false, time.Now()); err != nil {
		return Summary{}, err
	}
	s := &submission{e: e, sum: Summary{Job: job}}
	err := e.Ledger.JobObjects(ctx, job, func(o ledger.JobObject) error {
		if o.JobState != ledger.Failed && o.JobState != ledger.Cancelled {
			return nil
		}
		if o.Dest == "" || o.Chunks == 0 && o.Size > 0 && !o.Delete {
			return nil // refused at enqueue (unsafe key): nothing to retry
		}
		t := o.Transfer
		state, gen, err := e.Ledger.Attach(ctx, ledger.AttachRequest{
			Job: job, Mode: ledger.ModeRestart, Expect: t, New: t, KeepData: true,
		}, time.Now())
		if errors.Is(err, ledger.ErrConflict) {
			return nil // changed meanwhile: someone else handles it
		}
		if err != nil {
			return err
		}
		s.count(ledger.ModeRestart, "", t.Size)
		if state != ledger.Queued {
			return nil
		}
		t.Gen = gen
		if t.Delete {
			return s.addToBatch(ctx, t) // a delete is a batch's, never a chunk's
		}
		return s.enqueue(ctx, t)
	})
	if ferr := s.flushBatch(ctx); err == nil {
		err = ferr
	}
	return s.sum, err
}
