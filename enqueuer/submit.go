package enqueuer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// submission is the state of one Submit call.
type submission struct {
	e         *Enqueuer
	req       Request
	srcs      []location.Source
	dest      string // an absolute path, or the destination's URL when toS3
	destIsDir bool
	toS3      bool            // the destination is an object or a prefix on S3
	local     bool            // the sources are local files and directories (an upload)
	elsewhere bool            // they are on the --on host, which lists them (a list task)
	destObj   location.Source // the destination, when toS3
	destFP    string          // its endpoint's fingerprint
	queue     string
	begun     bool
	sum       Summary
	// resumedAt is the job's Seqs when this run began, if earlier runs of
	// it had failures (nil otherwise).
	resumedAt []int64

	// The batches being filled, by queue: of objects with records, and of
	// pending objects (see addPending). A shared queue's shard is the
	// ledger shard of its transfers (tasks.ShardQueue), so a pending
	// batch's objects are in one shard.
	batchMu sync.Mutex
	fills   map[fillKey]*batchFill
}

// fillKey names a batch being filled.
type fillKey struct {
	queue   string
	pending bool
}

// batchFill is a batch task being filled.
type batchFill struct {
	objs    []tasks.BatchObject
	bytes   int64
	queue   string // its objects' (Transfer.Queue)
	pending bool   // its objects have no records yet
	shard   int    // its objects' ledger shard (ledger.ShardOf), when pending
}

// wanted applies --include and --exclude to the key's path below its
// prefix (the whole key for a key named alone).
func (s *submission) wanted(o object) bool {
	rel := strings.TrimPrefix(o.key, o.src.Key)
	if !o.src.IsPrefix() {
		rel = o.key
	}
	if len(s.req.Include) > 0 && !slices.ContainsFunc(s.req.Include, func(p string) bool { return doublestar.MatchUnvalidated(p, rel) }) {
		return false
	}
	return !slices.ContainsFunc(s.req.Exclude, func(p string) bool { return doublestar.MatchUnvalidated(p, rel) })
}

func (s *submission) sourceText() string {
	text := strings.Join(s.req.Sources, " ")
	if s.req.From != nil {
		text = strings.TrimSpace(text + " (and --from)")
	}
	return text
}

func (s *submission) begin(ctx context.Context) error {
	if s.begun || s.req.DryRun {
		s.begun = true
		return nil
	}
	if err := s.e.Ledger.CreateJob(ctx, s.sum.Job, s.sourceText(), s.dest, time.Now()); err != nil {
		return err
	}
	s.begun = true
	if j, err := s.e.Ledger.GetJob(ctx, s.sum.Job); err == nil && j.Failed+j.Cancelled > 0 && j.Seq > 0 {
		s.resumedAt = j.Seqs // enqueued again after failures: see finish
	}
	return nil
}

func (s *submission) finish(ctx context.Context, err error) (Summary, error) {
	if s.req.DryRun {
		return s.sum, err
	}
	if ferr := s.flushBatch(ctx); err == nil {
		err = ferr
	}
	if s.resumedAt != nil && err == nil {
		// A failure of an earlier run whose destination this run gave a
		// new transfer (the source changed, say) is that transfer's now.
		if n, serr := s.e.Ledger.Supersede(ctx, s.sum.Job, s.resumedAt); serr != nil {
			s.e.logger().Warn("cannot take superseded failures out of the job", "job", s.sum.Job, "err", serr)
		} else if n > 0 {
			s.e.logger().Info("earlier failures superseded by new transfers of their destinations", "job", s.sum.Job, "objects", n)
		}
	}
	if lerr := s.e.Ledger.SetListed(context.WithoutCancel(ctx), s.sum.Job, err); lerr != nil && err == nil {
		err = lerr
	}
	return s.sum, err
}

// add attaches one object to the job and enqueues what it still needs.
// single says the object was named on its own: an existing file is then an
// error for the command rather than a failed object of the job.
func (s *submission) add(ctx context.Context, o object, single bool) error {
	if !s.wanted(o) {
		atomic.AddInt64(&s.sum.Filtered, 1)
		s.planned(PlannedObject{Source: o.url(), Size: o.size, Action: "filter"})
		return nil
	}
	t, cause := s.transfer(o)
	for range 10 {
		cur, err := s.e.Ledger.GetTransfer(ctx, t.ID)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
		mode, keep, c := s.decide(ctx, cur, &t, cause)
		if single && c != "" {
			return fmt.Errorf("%s: %s", t.Source(), c)
		}
		if s.req.DryRun {
			s.count(mode, c, t.Size)
			if c == "" && mode != ledger.ModeSkip && mode != ledger.ModePresent {
				atomic.AddInt64(&s.sum.Chunks, t.Chunks)
			}
			action := map[string]string{ledger.ModeCreate: "download", ledger.ModePresent: "skip", ledger.ModeSkip: "skip",
				ledger.ModeAttach: "attach", ledger.ModeRestart: "resume"}[mode]
			if t.Delete && (mode == ledger.ModeCreate || mode == ledger.ModeRestart) {
				action = "delete"
			}
			if c != "" {
				action = "refuse"
			}
			s.planned(PlannedObject{Source: t.Source(), Path: t.Dest, Size: t.Size, Action: action, Cause: c})
			return nil
		}
		req := ledger.AttachRequest{Job: s.sum.Job, Mode: mode, Expect: cur, New: t, Cause: c, KeepData: keep}
		now := time.Now()
		state, gen, err := s.e.Ledger.Attach(ctx, req, now)
		if errors.Is(err, ledger.ErrConflict) {
			continue // changed under us: read again
		}
		if err != nil {
			return err
		}
		s.count(mode, c, t.Size)
		if state != ledger.Queued && state != ledger.Running {
			return nil
		}
		t.Gen, t.Created = gen, cur.Created
		if mode == ledger.ModeCreate || mode == ledger.ModePresent {
			t.Created = now.UnixMilli() // the record's, made just now
		}
		if mode == ledger.ModeAttach && cur.Queue != "" {
			t.Queue = cur.Queue // its tasks are there (asynq's IDs are per queue): an --on job's stay on its host
		}
		if s.batchable(t) {
			if state == ledger.Running || (state == ledger.Queued && s.batchWaiting(cur)) {
				return nil // a batch task has it
			}
			return s.addToBatch(ctx, t)
		}
		return s.enqueue(ctx, t)
	}
	return fmt.Errorf("attach %s: the record kept changing", t.Source())
}

// addNew records, in one round trip, the objects of a page that the fleet
// has never seen (the common case of a first run) and enqueues them; it
// returns the others, which add handles one by one.
func (s *submission) addNew(ctx context.Context, objs []object) (rest []object, err error) {
	if s.req.Sync || s.req.DryRun {
		return objs, nil // these decide from what is on disk and in the records
	}
	var reqs []ledger.AttachRequest
	var fresh, pendable []object
	var pend []ledger.Transfer
	for _, o := range objs {
		if !s.wanted(o) {
			atomic.AddInt64(&s.sum.Filtered, 1)
			continue
		}
		t, cause := s.transfer(o)
		if cause == "" && !t.Overwrite && !s.toS3 && !t.Delete && exists(t.Dest) {
			if placedBy(t.Dest, t.Size, t.ID) {
				rest = append(rest, o) // placed by this transfer, its record lost: add decides
				continue
			}
			cause = location.Exists(t.Dest)
		}
		if cause == "" && s.pendable(t) {
			pend, pendable = append(pend, t), append(pendable, o)
			continue
		}
		reqs = append(reqs, ledger.AttachRequest{Job: s.sum.Job, Mode: ledger.ModeCreate, New: t, Cause: cause})
		fresh = append(fresh, o)
	}
	if len(pend) > 0 {
		ids := make([]string, len(pend))
		for i, t := range pend {
			ids[i] = t.ID
		}
		known, err := s.e.Ledger.Exist(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i, t := range pend {
			if known[i] {
				rest = append(rest, pendable[i]) // the fleet has a record of it: the careful path
				continue
			}
			s.count(ledger.ModeCreate, "", t.Size)
			t.Gen = 1
			if err := s.addPending(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	now := time.Now()
	results, err := s.e.Ledger.AttachMany(ctx, reqs, now)
	if err != nil {
		return nil, err
	}
	for i, r := range results {
		if r.Err != nil {
			rest = append(rest, fresh[i]) // known already (or a blip): the careful path
			continue
		}
		t := reqs[i].New
		cause := reqs[i].Cause
		if r.State == ledger.Failed && cause == "" {
			cause = "refused by the ledger" // another transfer in flight holds its destination
		}
		s.count(ledger.ModeCreate, cause, t.Size)
		if r.State != ledger.Queued {
			continue
		}
		t.Gen, t.Created = r.Gen, now.UnixMilli()
		if s.batchable(t) {
			err = s.addToBatch(ctx, t)
		} else {
			err = s.enqueueChunks(ctx, t, allChunks(t.Chunks))
		}
		if err != nil {
			return nil, err
		}
	}
	return rest, nil
}

func allChunks(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

// refused says why a single object cannot be downloaded, as add would
// record it, without recording anything.
func (s *submission) refused(ctx context.Context, o object) error {
	t, cause := s.transfer(o)
	cur, err := s.e.Ledger.GetTransfer(ctx, t.ID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return err
	}
	if _, _, c := s.decide(ctx, cur, &t, cause); c != "" {
		return fmt.Errorf("%s: %s", t.Source(), c)
	}
	return nil
}

// planned reports one object of a dry run to the caller.
func (s *submission) planned(p PlannedObject) {
	if s.req.DryRun && s.req.Planned != nil {
		s.req.Planned(p)
	}
}

func (s *submission) count(mode, cause string, size int64) {
	field := map[string]*int64{
		ledger.ModeCreate: &s.sum.New, ledger.ModePresent: &s.sum.Skipped, ledger.ModeAttach: &s.sum.Attached,
		ledger.ModeSkip: &s.sum.Skipped, ledger.ModeRestart: &s.sum.Resumed,
	}[mode]
	if cause != "" {
		field = &s.sum.Refused
	}
	atomic.AddInt64(field, 1)
	atomic.AddInt64(&s.sum.Objects, 1)
	atomic.AddInt64(&s.sum.Bytes, size)
}

// enqueue puts the transfer's missing chunk tasks on the queue (or its
// assembler, for an empty object or one whose chunks have all landed).
// Tasks already queued keep their IDs, so enqueueing again is a no-op.
func (s *submission) enqueue(ctx context.Context, t ledger.Transfer) error {
	missing, err := s.e.Ledger.MissingChunks(ctx, t)
	if err != nil {
		return err
	}
	return s.enqueueChunks(ctx, t, missing)
}

// enqueueChunks puts the given chunk tasks of a transfer on the queue, or
// its assembler when none is missing.
func (s *submission) enqueueChunks(ctx context.Context, t ledger.Transfer, missing []int64) error {
	if len(missing) == 0 {
		task, err := tasks.NewAssembleTask(s.e.Keys, tasks.AssemblePayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Epoch: t.Created, Bucket: t.Bucket, Key: t.Key, Dest: t.Dest, Size: t.Size,
		}, append(s.e.AssembleOptions, asynq.Queue(tasks.AssembleQueue(t.Queue)))...)
		if err != nil {
			return err
		}
		_, err = s.put(ctx, task, t)
		return err
	}
	plan, err := t.Plan()
	if err != nil {
		return err
	}
	write, err := tasks.WriteOf(t)
	if err != nil {
		return err
	}
	for _, i := range missing {
		r := plan.Chunk(i)
		task, err := tasks.NewChunkTask(s.e.Keys, tasks.ChunkPayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Epoch: t.Created, Object: tasks.ObjectOf(t), Chunks: t.Chunks,
			Chunk: i, First: r.First, Last: r.Last, Dest: t.Dest, DestFP: t.DestFP, ServerSide: t.ServerSide, Overwrite: t.Overwrite, Write: write,
			CRC: string(assembler.CRCFor(checksum.Algorithm(t.ChecksumAlgorithm))), NoHead: t.NoHead,
		}, append(s.e.ChunkOptions, asynq.Queue(t.Queue))...)
		if err != nil {
			return err
		}
		added, err := s.put(ctx, task, t)
		if err != nil {
			return err
		}
		if added {
			atomic.AddInt64(&s.sum.Chunks, 1)
		}
	}
	return nil
}

// batchable reports whether an object goes whole into a batch task. An
// empty object of unknown ETag (--expected-size 0) always does: the GET is
// what proves it empty.
func (s *submission) batchable(t ledger.Transfer) bool {
	if t.Delete {
		return true // one DeleteObjects for many keys
	}
	most := s.e.BatchMaxObject
	if s.toS3 {
		most = min(most, tasks.MaxPutObject) // held in memory on its way
	}
	return most > 0 && t.Size <= most && t.Chunks <= 1 || t.Size == 0 && (t.ETag == "" || s.toS3)
}

// batchWaiting reports whether the object's batch task is still to run.
func (s *submission) batchWaiting(t ledger.Transfer) bool {
	if t.Batch == "" || s.e.Control == nil {
		return false
	}
	info, err := s.e.Control.GetTaskInfo(t.Queue, t.Batch)
	return err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted
}

// pendable reports whether a new object can wait in a batch task with no
// record of its own until the batch starts (see ledger.Pend): a small one
// in a first run of its job (a job run again after failures needs every
// transfer recorded for Supersede), not bound to a host (another job of the
// same object finds an --on job's record, and follows it to its host's
// queue), unless the request wants every record made at once (Recorded).
func (s *submission) pendable(t ledger.Transfer) bool {
	return s.batchable(t) && s.resumedAt == nil && !s.req.DryRun && s.req.On == "" && !s.req.Recorded
}

// addToBatch adds an object with a record to the batch being filled, and
// enqueues the batch once it is full.
func (s *submission) addToBatch(ctx context.Context, t ledger.Transfer) error {
	return s.fill(ctx, false, t)
}

// addPending adds a new object, with no record, to the pending batch being
// filled: its record is made when the batch starts.
func (s *submission) addPending(ctx context.Context, t ledger.Transfer) error {
	return s.fill(ctx, true, t)
}

func (s *submission) fill(ctx context.Context, pending bool, t ledger.Transfer) error {
	queue := t.Queue
	if queue == "" {
		queue = s.queue
	}
	o, err := tasks.BatchObjectOf(t)
	if err != nil {
		return err
	}
	// An object whose record has another queue (attached to an --on job,
	// say) goes in a batch of its own queue.
	k := fillKey{queue, pending}
	s.batchMu.Lock()
	if s.fills == nil {
		s.fills = map[fillKey]*batchFill{}
	}
	b := s.fills[k]
	if b == nil {
		b = &batchFill{queue: queue, pending: pending, shard: s.e.Ledger.ShardOf(t.ID)}
		s.fills[k] = b
	}
	if pending && b.shard != s.e.Ledger.ShardOf(t.ID) {
		s.batchMu.Unlock()
		return fmt.Errorf("%s: queue %s is of ledger shard %d, its record of shard %d", t.Source(), queue, b.shard, s.e.Ledger.ShardOf(t.ID))
	}
	b.objs = append(b.objs, o)
	b.bytes += t.Size
	full := int64(len(b.objs)) >= max(s.e.BatchObjects, 1) || b.bytes >= s.e.BatchBytes
	if t.Delete {
		full = len(b.objs) >= 1000 // S3's most keys in one DeleteObjects; nothing is moved
	}
	s.batchMu.Unlock()
	if full {
		return s.flush(ctx, b)
	}
	return nil
}

// flushBatch enqueues the batches being filled, if any.
func (s *submission) flushBatch(ctx context.Context) error {
	s.batchMu.Lock()
	fills := slices.Collect(maps.Values(s.fills))
	s.batchMu.Unlock()
	var errs []error
	for _, b := range fills {
		errs = append(errs, s.flush(ctx, b))
	}
	return errors.Join(errs...)
}

// flush enqueues a batch being filled, if it has objects.
func (s *submission) flush(ctx context.Context, b *batchFill) error {
	s.batchMu.Lock()
	objs, queue, bytes := b.objs, b.queue, b.bytes
	b.objs, b.bytes = nil, 0
	s.batchMu.Unlock()
	if len(objs) == 0 {
		return nil
	}
	p := tasks.BatchPayload{Job: s.sum.Job, Objects: objs, Pending: b.pending}
	task, err := tasks.NewBatchTask(s.e.Keys, p, append(s.e.BatchOptions, asynq.Queue(queue))...)
	if err != nil {
		return err
	}
	id := tasks.BatchTaskID(p)
	// Recorded first: an enqueue killed between the two leaves objects whose
	// batch does not exist, which a re-run enqueues again (a pending batch
	// of the same objects has the same ID, and is counted once).
	if b.pending {
		err = s.e.Ledger.Pend(ctx, s.sum.Job, b.shard, id, queue, len(objs), bytes)
	} else {
		ids := make([]string, len(objs))
		for i, o := range objs {
			ids[i] = o.Transfer
		}
		err = s.e.Ledger.SetBatch(ctx, ids, id)
	}
	if err != nil {
		return err
	}
	if _, err := s.e.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue a batch of %d objects: %w", len(objs), err)
	}
	atomic.AddInt64(&s.sum.Chunks, int64(len(objs)))
	return nil
}

// put enqueues a task and reports whether it was new: a task whose ID is
// still queued, running or archived is left as it is.
func (s *submission) put(ctx context.Context, task *asynq.Task, t ledger.Transfer) (bool, error) {
	_, err := s.e.Queue.EnqueueContext(ctx, task)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("enqueue %s for %s: %w", task.Type(), t.Source(), err)
	}
	return true, nil
}
