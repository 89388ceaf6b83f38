package s3fleet

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"time"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/ledger"
)

// Job asks for many objects: every object under each source prefix (or
// each key named, or each local file under a directory to upload), to
// Dest, as the enqueue command does. No field's zero value does anything
// but the default.
type Job struct {
	// ID names the job: a job of that ID submitted again resumes it (its
	// done objects are skipped). Empty: a new ID.
	ID string
	// Sources are s3://bucket/prefix/ or s3://bucket/key URLs (or
	// REMOTE://… of a configured remote), or local files and directories
	// to upload (all of one kind).
	Sources []string
	// From holds more sources, one a line: a URL, or a JSON line of a
	// manifest (JobHandle.WriteManifest writes one), whose size and ETag
	// spare the HEAD.
	From io.Reader
	// Dest is a directory (ending in "/"), a file for one key, or an
	// object URL to copy or upload to.
	Dest string
	// Include and Exclude are glob patterns (with **) matched against each
	// key below its prefix.
	Include, Exclude []string
	Overwrite        bool   // replace files (or objects) already there
	Sync             bool   // skip those there with the same size and ETag, replace the rest
	Verify           string // off, auto (empty) or required
	Priority         string // high, default (empty) or low
	// Mirror, with Sync to S3, also deletes the destination objects absent
	// at the source (once the listing is complete and not empty);
	// MaxDelete, when positive, caps how many: over it, none is.
	Mirror    bool
	MaxDelete int64
	// Remove deletes the objects Sources name (every one under a prefix)
	// rather than transferring them; Dest is empty. Workers delete only
	// under their allow_delete.
	Remove bool
	// On runs the job on the workers of this host only (their host
	// setting), for a destination or a source on that host's own disk.
	On string
	// RequestPayer ("requester") pays for a requester-pays bucket;
	// ExpectedOwner is the account that must own the buckets.
	RequestPayer, ExpectedOwner string
	// SSECKey is the objects' SSE-C key (32 bytes, or their base64): the
	// client uses it for its HEADs, and only its MD5 is enqueued (workers
	// hold the key). It prints as "[redacted]".
	SSECKey SecretKey
	// Write is what a copy or an upload sets on each destination object:
	// storage class, encryption, metadata added to the source's.
	Write Write
}

// Write is what a copy or an upload sets on the objects it writes.
type Write = ledger.Write

// SecretKey is key material that never prints: fmt's verbs, slog and JSON
// all show "[redacted]" (a Job logged with %+v must not leak its key).
type SecretKey []byte

const redacted = "[redacted]"

// String is "[redacted]".
func (SecretKey) String() string { return redacted }

// GoString is "[redacted]".
func (SecretKey) GoString() string { return redacted }

// Format writes "[redacted]" for every verb.
func (SecretKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue is "[redacted]".
func (SecretKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON is "[redacted]", as a JSON string.
func (SecretKey) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// request is the job as the enqueuer takes it, with the options set.
func (j Job) request(set settings) (enqueuer.Request, error) {
	req := set.req // ExpectedSize, VersionID, and the options a Job field may also set
	req.Job, req.Sources, req.From, req.Dest = j.ID, j.Sources, j.From, j.Dest
	req.Include, req.Exclude, req.Sync = j.Include, j.Exclude, j.Sync
	req.Overwrite = req.Overwrite || j.Overwrite
	req.Verify = cmp.Or(j.Verify, req.Verify)
	req.Priority = cmp.Or(j.Priority, req.Priority, "default")
	req.Mirror, req.MaxDelete, req.Delete, req.On = j.Mirror, j.MaxDelete, j.Remove, j.On
	req.RequestPayer, req.ExpectedOwner, req.Write = j.RequestPayer, j.ExpectedOwner, j.Write
	if j.SSECKey != nil {
		key, sum, err := config.ParseSSECKey(j.SSECKey)
		if err != nil {
			return req, fmt.Errorf("%w: SSE-C key: %w", ErrInvalid, err)
		}
		req.SSECKey, req.SSECKeyMD5 = key, sum
	}
	return req, nil
}

// JobHandle is a submitted job, or one found by its ID (Client.Job).
type JobHandle struct {
	c        *Client
	id       string
	summary  enqueuer.Summary
	progress func(Progress) // OnProgress, told by Wait
	notice   func(string)   // OnNotice, told by Wait
}

// Submit enqueues a job and returns once every object is enqueued (a
// listing of a million keys takes tens of seconds); the bytes land later
// (Wait). ExpectedSize and VersionID apply to a job of one key;
// OnProgress and OnNotice are told by Wait. An error in the request
// itself (no source, a bad pattern, a key for ExpectedSize) wraps
// ErrInvalid, and enqueues nothing.
func (c *Client) Submit(ctx context.Context, j Job, opts ...Option) (*JobHandle, error) {
	set := apply(opts)
	req, err := j.request(set)
	if err != nil {
		return nil, err
	}
	enq, err := c.enqueuer(ctx)
	if err != nil {
		return nil, err
	}
	sum, err := enq.Submit(ctx, req)
	if err != nil {
		if sum.Job != "" {
			return nil, fmt.Errorf("job %s: %w", sum.Job, err)
		}
		return nil, err
	}
	return &JobHandle{c: c, id: sum.Job, summary: sum, progress: set.progress, notice: set.notice}, nil
}

// Plan is a dry run of Submit: it lists and HEADs as Submit would, calls
// each (when not nil; from several goroutines) with every object and what
// would be done with it, and records and enqueues nothing.
func (c *Client) Plan(ctx context.Context, j Job, each func(PlannedObject), opts ...Option) (Summary, error) {
	req, err := j.request(apply(opts))
	if err != nil {
		return Summary{}, err
	}
	req.DryRun, req.Planned = true, each
	enq, err := c.enqueuer(ctx)
	if err != nil {
		return Summary{}, err
	}
	sum, err := enq.Submit(ctx, req)
	return sum, err
}

// Summary is what a Submit (or a Plan, or a Retry) enqueued: new objects,
// ones already in flight, resumed, skipped, refused.
type Summary = enqueuer.Summary

// PlannedObject is one object of a Plan and what Submit would do with it.
type PlannedObject = enqueuer.PlannedObject

// ErrInvalid marks an error in a request itself (it enqueued nothing).
var ErrInvalid = enqueuer.ErrUsage

// ErrUnknownJob: no job of that ID (never submitted, or expired).
var ErrUnknownJob = errors.New("unknown job")

// Job finds a job by its ID (one Submit returned, or the enqueue
// command printed), to follow or steer it. OnProgress and OnNotice are
// told by Wait.
func (c *Client) Job(ctx context.Context, id string, opts ...Option) (*JobHandle, error) {
	if _, err := c.led.GetJob(ctx, id); errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("%w %q", ErrUnknownJob, id)
	} else if err != nil {
		return nil, err
	}
	set := apply(opts)
	return &JobHandle{c: c, id: id, progress: set.progress, notice: set.notice}, nil
}

// Jobs are the newest jobs, at most limit (at least 1), newest first.
func (c *Client) Jobs(ctx context.Context, limit int64) ([]JobStatus, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: jobs: a limit of %d (at least 1)", ErrInvalid, limit)
	}
	jobs, err := c.led.RecentJobs(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]JobStatus, len(jobs))
	for i, j := range jobs {
		out[i] = statusOf(j)
	}
	return out, nil
}

// ID is the job's ID (for the enqueue command's status, wait, cancel and
// retry).
func (j *JobHandle) ID() string { return j.id }

// Summary is what Submit enqueued: new objects, ones already in flight,
// skipped, refused. A handle from Client.Job has none.
func (j *JobHandle) Summary() Summary { return j.summary }

// Progress is how a job (or one Download) stands.
type Progress struct {
	Objects   int64 // in the job
	Succeeded int64 // landed, every byte checked
	Skipped   int64 // already there
	Failed    int64
	Cancelled int64
	// BytesTotal is the size of all the objects, BytesDone what has landed
	// (in whole chunks) or was there already (BytesSkipped of it), and
	// BytesInFlight what of the chunks still streaming has arrived (workers
	// report it every 2 s of a chunk).
	BytesTotal, BytesDone, BytesSkipped, BytesInFlight int64
	// Done says every object has ended and the listing is complete.
	Done bool
}

// Finished counts the objects that have ended.
func (p Progress) Finished() int64 { return p.Succeeded + p.Skipped + p.Failed + p.Cancelled }

// JobStatus is a job's record: its Progress, and what it was asked.
type JobStatus struct {
	Progress
	ID, Source, Dest string // Source: the first source, and how many more
	Created          time.Time
	// Listed says every object has been enqueued; ListError why the
	// listing stopped early (the job then fails).
	Listed    bool
	ListError string
	// Pending counts the objects, among Objects, queued in batches that
	// no worker has started: Objects lists them once one has.
	Pending int64
	// Checks counts the succeeded objects by the check their bytes
	// passed (crc64nvme, md5, none, …).
	Checks map[string]int64
	// Note is what the job last waited for (space on a full disk), and
	// NoteAt when.
	Note   string
	NoteAt time.Time
}

// State sums the job up in one word: running, failed, cancelled or
// success.
func (s JobStatus) State() string {
	switch {
	case !s.Done:
		return "running"
	case s.Failed > 0 || s.ListError != "":
		return "failed"
	case s.Cancelled > 0:
		return "cancelled"
	}
	return "success"
}

func statusOf(r ledger.Job) JobStatus {
	s := JobStatus{Progress: Progress{Objects: r.Objects, Succeeded: r.Succeeded, Skipped: r.Skipped, Failed: r.Failed,
		Cancelled: r.Cancelled, BytesTotal: r.BytesTotal, BytesDone: r.BytesDone, BytesSkipped: r.BytesSkip,
		BytesInFlight: max(r.Moving, 0), Done: r.Done()},
		ID: r.ID, Source: r.Source, Dest: r.Dest, Created: time.UnixMilli(r.Created), Listed: r.Listed,
		ListError: r.ListError, Pending: r.Pending, Checks: r.Checks, Note: r.Note}
	if r.NoteAt > 0 {
		s.NoteAt = time.UnixMilli(r.NoteAt)
	}
	return s
}

// Status reads the job's record now; an error wrapping ErrUnknownJob when
// it is gone (expired, or lost by Redis).
func (j *JobHandle) Status(ctx context.Context) (JobStatus, error) {
	rec, err := j.c.led.GetJob(ctx, j.id)
	if errors.Is(err, ledger.ErrNotFound) {
		return JobStatus{}, fmt.Errorf("%w %q", ErrUnknownJob, j.id)
	}
	if err != nil {
		return JobStatus{}, err
	}
	return statusOf(rec), nil
}

// Progress reads the job's counters now.
func (j *JobHandle) Progress(ctx context.Context) (Progress, error) {
	s, err := j.Status(ctx)
	return s.Progress, err
}

// Errors Wait wraps.
var (
	// ErrJobFailed reports a job that ended with objects failed or
	// cancelled, or whose listing stopped early.
	ErrJobFailed = errors.New("objects failed or were cancelled")
	// ErrJobLost reports a job whose record vanished while Wait followed
	// it: Redis lost it (restarted or flushed without persistence).
	// Submitting the same job again resumes it: what landed is kept.
	ErrJobLost = errors.New("Redis lost it")
)

// waitEvery is how often Wait reads the job's counters: every 10 ms at
// first, then a fiftieth of the time followed so far, at most every
// 500 ms. A short job ends within 10 ms of its last object (a 1 GiB
// download takes well under a second); a long one costs Redis 2 reads a
// second, and ends within 2 % of its time.
func waitEvery(followed time.Duration) time.Duration {
	return min(max(followed/50, 10*time.Millisecond), 500*time.Millisecond)
}

// Wait blocks until every object of the job has ended, and returns its
// final Progress; an error wrapping ErrJobFailed when any failed or was
// cancelled (Objects tells which, and why), ErrJobLost when Redis lost the
// job, or ctx's if it ends first. While Redis does not answer, Wait keeps
// asking every second. OnProgress is told each change of the counters;
// OnNotice what the job waits for (a worker's note such as space on a
// full disk, queues with tasks waiting that no live worker serves, Redis
// unreachable and back). Those given to Wait replace those given to
// Submit or Job; other options do nothing here.
func (j *JobHandle) Wait(ctx context.Context, opts ...Option) (Progress, error) {
	start := time.Now()
	set := settings{progress: j.progress, notice: j.notice}
	for _, o := range opts {
		o(&set)
	}
	tell := set.notice
	if tell == nil {
		tell = func(string) {}
	}
	notes := notices{tell: tell, job: j.id, start: start, insp: j.c.insp}
	var last Progress
	var seen bool // the job was read once
	var outage time.Time
	for {
		s, err := j.Status(ctx)
		switch {
		case errors.Is(err, ErrUnknownJob) && seen:
			return last, fmt.Errorf("job %s is gone from Redis while it ran: %w (restarted or flushed without persistence: run it with appendonly yes)", j.id, ErrJobLost)
		case errors.Is(err, ErrUnknownJob):
			return last, err
		case err != nil && ctx.Err() == nil:
			// Redis restarting or unreachable: the job goes on; keep asking.
			if outage.IsZero() {
				outage = time.Now()
				tell(fmt.Sprintf("redis unreachable (%v); still waiting for job %s", err, j.id))
			}
			if err := j.pause(ctx, time.Second); err != nil {
				return last, err
			}
			continue
		case err != nil:
			return last, j.stopped(ctx)
		}
		if !outage.IsZero() {
			tell(fmt.Sprintf("redis is back after %s", time.Since(outage).Round(time.Second)))
			outage = time.Time{}
		}
		seen = true
		p := s.Progress
		if set.progress != nil && p != last {
			set.progress(p)
		}
		last = p
		if p.Done {
			if s.ListError != "" {
				return p, fmt.Errorf("job %s: its listing stopped early (%s); %d of %d enqueued %w", j.id, s.ListError,
					p.Failed+p.Cancelled, p.Objects, ErrJobFailed)
			}
			if p.Failed+p.Cancelled > 0 {
				return p, fmt.Errorf("job %s: %d of %d %w", j.id, p.Failed+p.Cancelled, p.Objects, ErrJobFailed)
			}
			return p, nil
		}
		notes.note(s)
		notes.idle()
		if err := j.pause(ctx, waitEvery(time.Since(start))); err != nil {
			return p, err
		}
	}
}

// pause waits d, or less when ctx ends or a Local client's workers stop.
func (j *JobHandle) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return j.stopped(ctx)
	case <-j.c.dead:
		return fmt.Errorf("job %s: %w", j.id, j.c.deadErr)
	case <-t.C:
		return nil
	}
}

func (j *JobHandle) stopped(ctx context.Context) error {
	return fmt.Errorf("stopped following job %s: %w", j.id, context.Cause(ctx))
}

// Objects walks the job's objects with their records, a page at a time
// (a job of a million objects is never held in memory at once). Small
// objects still waiting in their batch, with no record yet, are not among
// them until a worker starts the batch. An object another job also
// waits for is as this job sees it (Skipped when it found it there).
func (j *JobHandle) Objects(ctx context.Context) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		stop := errors.New("stop")
		err := j.c.led.JobObjects(ctx, j.id, func(o ledger.JobObject) error {
			t := &Transfer{meta: metaOf(o.Transfer, j.id)}
			rec := o.Transfer
			rec.State = o.JobState
			if !yield(t.record(rec), nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Record{}, err)
		}
	}
}

// WriteManifest writes one JSON line per object of the job, with its
// record as the assembler made it (source, path, size, ETag, checksums,
// check, state, cause): a manifest that Job.From reads back.
func (j *JobHandle) WriteManifest(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	err := j.c.led.JobObjects(ctx, j.id, func(o ledger.JobObject) error {
		rec := assembler.RecordOf(o.Transfer)
		rec.State = o.JobState
		return enc.Encode(rec)
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("manifest of job %s: %w", j.id, err)
	}
	return nil
}

// Cancel stops the job: its queued and running objects are cancelled and
// their part files removed. It returns how many objects it cancelled.
func (j *JobHandle) Cancel(ctx context.Context) (int64, error) {
	enq, err := j.c.enqueuer(ctx)
	if err != nil {
		return 0, err
	}
	return enq.Cancel(ctx, j.id)
}

// Retry enqueues the job's failed and cancelled objects again; each
// fetches only the chunks it has not recorded. Wait then follows them.
func (j *JobHandle) Retry(ctx context.Context) (Summary, error) {
	enq, err := j.c.enqueuer(ctx)
	if err != nil {
		return Summary{}, err
	}
	return enq.Retry(ctx, j.id)
}
