package s3fleet

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/ledger"
)

// Job asks for many objects: every object under each source prefix (or
// each key named), to Dest, as the enqueue command does.
type Job struct {
	// ID names the job: a job of that ID submitted again resumes it (its
	// done objects are skipped). Empty: a new ID.
	ID      string
	Sources []string // s3://bucket/prefix/ or s3://bucket/key URLs
	Dest    string   // a directory (ending in "/"), or a file for one key
	// Include and Exclude are glob patterns (with **) matched against each
	// key below its prefix.
	Include, Exclude []string
	Overwrite        bool   // replace files already there
	Sync             bool   // skip files there with the same size and ETag, replace the rest
	Verify           string // off, auto (empty) or required
	Priority         string // high, default (empty) or low
}

// JobHandle is a submitted job.
type JobHandle struct {
	c        *Client
	id       string
	summary  enqueuer.Summary
	progress func(Progress) // OnProgress, told by Wait
}

// Submit enqueues a job and returns once every object is enqueued (a
// listing of a million keys takes tens of seconds); the bytes land later
// (Wait). Of the options, OnProgress counts: Wait tells it.
func (c *Client) Submit(ctx context.Context, j Job, opts ...Option) (*JobHandle, error) {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	req := enqueuer.Request{Job: j.ID, Sources: j.Sources, Dest: j.Dest, Include: j.Include, Exclude: j.Exclude,
		Overwrite: j.Overwrite, Sync: j.Sync, Verify: j.Verify, Priority: j.Priority}
	sum, err := c.enq.Submit(ctx, req)
	if err != nil {
		if sum.Job != "" {
			return nil, fmt.Errorf("job %s: %w", sum.Job, err)
		}
		return nil, err
	}
	return &JobHandle{c: c, id: sum.Job, summary: sum, progress: set.progress}, nil
}

// ID is the job's ID (for the enqueue command's status, wait, cancel and
// retry).
func (j *JobHandle) ID() string { return j.id }

// Summary is what Submit enqueued: new objects, ones already in flight,
// skipped, refused.
func (j *JobHandle) Summary() enqueuer.Summary { return j.summary }

// Progress is how a job (or one Download) stands.
type Progress struct {
	Objects   int64 // in the job
	Succeeded int64 // landed, every byte checked
	Skipped   int64 // already there
	Failed    int64
	Cancelled int64
	// BytesTotal is the size of all the objects, BytesDone what has landed
	// (in whole chunks) or was there already, and BytesInFlight what of the
	// chunks still streaming has arrived (workers report it every 2 s of a
	// chunk).
	BytesTotal, BytesDone, BytesInFlight int64
	// Done says every object has ended and the listing is complete.
	Done bool
}

// Progress reads the job's counters now.
func (j *JobHandle) Progress(ctx context.Context) (Progress, error) {
	rec, err := j.c.led.GetJob(ctx, j.id)
	if err != nil {
		return Progress{}, err
	}
	return Progress{Objects: rec.Objects, Succeeded: rec.Succeeded, Skipped: rec.Skipped, Failed: rec.Failed,
		Cancelled: rec.Cancelled, BytesTotal: rec.BytesTotal, BytesDone: rec.BytesDone, BytesInFlight: max(rec.Moving, 0),
		Done: rec.Done()}, nil
}

// ErrJobFailed reports a job that ended with objects failed or cancelled.
var ErrJobFailed = errors.New("objects failed or were cancelled")

// Wait blocks until every object of the job has ended, and returns its
// final Progress; an error wrapping ErrJobFailed when any failed or was
// cancelled (Objects tells which, and why), or ctx's if it ends first.
func (j *JobHandle) Wait(ctx context.Context) (Progress, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last Progress
	for {
		p, err := j.Progress(ctx)
		if err != nil {
			return p, err
		}
		if j.progress != nil && p != last {
			last = p
			j.progress(p)
		}
		if p.Done {
			if p.Failed+p.Cancelled > 0 {
				return p, fmt.Errorf("job %s: %d of %d %w", j.id, p.Failed+p.Cancelled, p.Objects, ErrJobFailed)
			}
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-tick.C:
		}
	}
}

// Objects walks the job's objects with their records, a page at a time
// (a job of a million objects is never held in memory at once). Small
// objects still waiting in their batch, with no record yet, are not among
// them until a worker starts the batch.
func (j *JobHandle) Objects(ctx context.Context) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		stop := errors.New("stop")
		err := j.c.led.JobObjects(ctx, j.id, func(o ledger.JobObject) error {
			t := &Transfer{meta: Meta{Source: o.Source(), VersionID: o.VersionID, Dest: o.Dest, Size: o.Size, TransferID: o.ID, JobID: j.id}}
			if !yield(t.record(o.Transfer), nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Record{}, err)
		}
	}
}

// Cancel stops the job: its queued and running objects are cancelled and
// their part files removed. It returns how many objects it cancelled.
func (j *JobHandle) Cancel(ctx context.Context) (int64, error) {
	return j.c.enq.Cancel(ctx, j.id)
}
