// Package enqueuer turns a source (one S3 object, or every object under a
// prefix) into a job: it reads each object's size and version (HeadObject,
// or ListObjectsV2 pages streamed as they come), decides from the fleet's
// records whether the object is new, in flight, already downloaded or to be
// retried, and enqueues the chunk tasks that are missing.
package enqueuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// sourceAPI is what the enqueuer asks S3.
type sourceAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	s3.ListObjectsV2APIClient
}

var _ sourceAPI = (*s3.Client)(nil)

// taskEnqueuer is the part of asynq.Client the enqueuer uses.
type taskEnqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueuer submits jobs.
type Enqueuer struct {
	S3     sourceAPI
	Ledger *ledger.Ledger
	Queue  taskEnqueuer
	Log    *slog.Logger

	ChunkSize int64
	Threshold int64
	// ChunkOptions and AssembleOptions are added to every task (retries,
	// timeout, retention).
	ChunkOptions    []asynq.Option
	AssembleOptions []asynq.Option
	// Parallel bounds the objects handled at once (default 16).
	Parallel int
}

// Request is one enqueue command.
type Request struct {
	Job          string // resume this job, or name a new one; empty: generate
	Source       string // s3://bucket/key or s3://bucket/prefix/
	Dest         string // a file, or a directory when it ends in "/" or is one
	ExpectedSize int64  // skip the HEAD when >= 0 (a single key only)
	VersionID    string // pin this version (a single key only)
	Overwrite    bool
	Verify       bool
}

// Summary says what an enqueue did.
type Summary struct {
	Job      string `json:"job"`
	Objects  int64  `json:"objects"`
	Bytes    int64  `json:"bytes"`
	New      int64  `json:"new"`      // enqueued for the first time
	Attached int64  `json:"attached"` // already in flight
	Resumed  int64  `json:"resumed"`  // failed, cancelled or gone, enqueued again
	Skipped  int64  `json:"skipped"`  // already downloaded
	Refused  int64  `json:"refused"`  // recorded failed at once (unsafe key, existing file)
	Chunks   int64  `json:"chunks"`   // chunk tasks newly enqueued
}

// ErrUsage marks errors in the request itself.
var ErrUsage = errors.New("usage")

// ErrNoObjects reports a prefix with nothing under it.
var ErrNoObjects = errors.New("no objects")

// NewJobID makes a job ID that sorts by time.
func NewJobID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// object is one source object as the listing or HEAD described it.
type object struct {
	key          string
	size         int64
	etag         string
	versionID    string
	lastModified time.Time
	checksum     string // full-object CRC32C from a HEAD
	checksumType string
	checksumSeen bool // a HEAD was made, so checksum is all there is
}

// Submit runs one enqueue command. Nothing is recorded or enqueued when the
// source cannot be read; objects that cannot be downloaded (an unsafe key,
// an existing file) are recorded failed with the cause.
func (e *Enqueuer) Submit(ctx context.Context, req Request) (Summary, error) {
	src, err := location.ParseS3URL(req.Source)
	if err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	dest, destIsDir, err := absDest(req.Dest)
	if err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if src.IsPrefix() && (req.ExpectedSize >= 0 || req.VersionID != "") {
		return Summary{}, fmt.Errorf("%w: --expected-size and --version-id apply to a single key, not the prefix %s", ErrUsage, src)
	}
	job := req.Job
	if job == "" {
		job = NewJobID(time.Now())
	} else if strings.ContainsAny(job, " /:{}") {
		return Summary{}, fmt.Errorf("%w: job name %q may not contain spaces, '/', ':' or braces", ErrUsage, job)
	}
	s := &submission{e: e, req: req, src: src, dest: dest, destIsDir: destIsDir, sum: Summary{Job: job}}

	if !src.IsPrefix() {
		obj, err := e.head(ctx, src, req)
		if err != nil {
			return Summary{}, err
		}
		if _, err := location.Target(src, obj.key, dest, destIsDir); err != nil {
			return Summary{}, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if err := s.refused(ctx, obj); err != nil {
			return Summary{}, err // before the job exists: nothing is recorded
		}
		if err := s.begin(ctx); err != nil {
			return Summary{}, err
		}
		err = s.add(ctx, obj, true)
		return s.finish(ctx, err)
	}
	err = e.list(ctx, src, func(objs []object) error {
		if err := s.begin(ctx); err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(e.Parallel, 1))
		for _, o := range objs {
			g.Go(func() error { return s.add(gctx, o, false) })
		}
		return g.Wait()
	})
	if err == nil && !s.begun {
		return Summary{}, fmt.Errorf("%w under %s", ErrNoObjects, src)
	}
	if !s.begun {
		return Summary{}, err
	}
	return s.finish(ctx, err)
}

// absDest makes the destination absolute, keeping a trailing "/", and says
// whether it is an existing directory on this host.
func absDest(d string) (string, bool, error) {
	if d == "" {
		return "", false, errors.New("empty destination")
	}
	if strings.HasPrefix(d, "s3://") {
		return "", false, fmt.Errorf("destination %q must be a local path (uploads are not supported)", d)
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", false, fmt.Errorf("destination %q: %w", d, err)
	}
	st, err := os.Stat(abs)
	isDir := err == nil && st.IsDir()
	if strings.HasSuffix(d, "/") {
		abs += "/"
	}
	return abs, isDir, nil
}

// head reads one object's size, ETag, version and checksum, or takes the
// size the user gave. A 404 says whether the bucket or the key is missing.
func (e *Enqueuer) head(ctx context.Context, src location.Source, req Request) (object, error) {
	if req.ExpectedSize >= 0 {
		return object{key: src.Key, size: req.ExpectedSize, versionID: req.VersionID}, nil
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(src.Bucket), Key: aws.String(src.Key), ChecksumMode: types.ChecksumModeEnabled}
	if req.VersionID != "" {
		in.VersionId = aws.String(req.VersionID)
	}
	out, err := e.S3.HeadObject(ctx, in)
	if err != nil {
		if s3client.HTTPStatus(err) == 404 {
			if _, berr := e.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(src.Bucket)}); s3client.HTTPStatus(berr) == 404 {
				return object{}, fmt.Errorf("head %s: bucket %q does not exist", src, src.Bucket)
			}
			return object{}, fmt.Errorf("head %s: no such key %q in bucket %q", src, src.Key, src.Bucket)
		}
		return object{}, fmt.Errorf("head %s: %s", src, s3client.Describe(err))
	}
	o := object{
		key: src.Key, size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag),
		versionID: aws.ToString(out.VersionId), lastModified: aws.ToTime(out.LastModified),
		checksum: aws.ToString(out.ChecksumCRC32C), checksumType: string(out.ChecksumType), checksumSeen: true,
	}
	if req.VersionID == "" {
		o.versionID = "" // pin by ETag; a version ID is only sent when the user asked for one
	}
	return o, nil
}

// list streams the objects under a prefix, a page at a time.
func (e *Enqueuer) list(ctx context.Context, src location.Source, page func([]object) error) error {
	p := s3.NewListObjectsV2Paginator(e.S3, &s3.ListObjectsV2Input{Bucket: aws.String(src.Bucket), Prefix: aws.String(src.Key)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			if s3client.ErrorCode(err) == "NoSuchBucket" {
				return fmt.Errorf("list %s: bucket %q does not exist", src, src.Bucket)
			}
			return fmt.Errorf("list %s: %s", src, s3client.Describe(err))
		}
		objs := make([]object, 0, len(out.Contents))
		for _, c := range out.Contents {
			key := aws.ToString(c.Key)
			if strings.HasSuffix(key, "/") && aws.ToInt64(c.Size) == 0 {
				continue // a folder marker
			}
			o := object{key: key, size: aws.ToInt64(c.Size), etag: aws.ToString(c.ETag), lastModified: aws.ToTime(c.LastModified)}
			// Without a CRC32C at upload there is nothing to compare with, and
			// the assembler need not ask.
			o.checksumSeen = !hasFullCRC32C(c)
			objs = append(objs, o)
		}
		if len(objs) > 0 {
			if err := page(objs); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasFullCRC32C(o types.Object) bool {
	for _, a := range o.ChecksumAlgorithm {
		if a == types.ChecksumAlgorithmCrc32c {
			return o.ChecksumType == "" || o.ChecksumType == types.ChecksumTypeFullObject
		}
	}
	return false
}

// submission is the state of one Submit call.
type submission struct {
	e         *Enqueuer
	req       Request
	src       location.Source
	dest      string
	destIsDir bool
	begun     bool
	sum       Summary
}

func (s *submission) begin(ctx context.Context) error {
	if s.begun {
		return nil
	}
	if err := s.e.Ledger.CreateJob(ctx, s.sum.Job, s.src.String(), s.dest, time.Now()); err != nil {
		return err
	}
	s.begun = true
	return nil
}

func (s *submission) finish(ctx context.Context, err error) (Summary, error) {
	if lerr := s.e.Ledger.SetListed(context.WithoutCancel(ctx), s.sum.Job, err); lerr != nil && err == nil {
		err = lerr
	}
	return s.sum, err
}

// add attaches one object to the job and enqueues what it still needs.
// single says the object was named on its own: an existing file is then an
// error for the command rather than a failed object of the job.
func (s *submission) add(ctx context.Context, o object, single bool) error {
	t, cause := s.transfer(o)
	for range 10 {
		cur, err := s.e.Ledger.GetTransfer(ctx, t.ID)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
		mode, keep, c := s.decide(cur, t, cause)
		if single && c != "" {
			return fmt.Errorf("%s: %s", t.Source(), c)
		}
		req := ledger.AttachRequest{Job: s.sum.Job, Mode: mode, Expect: cur, New: t, Cause: c, KeepData: keep}
		state, gen, err := s.e.Ledger.Attach(ctx, req, time.Now())
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
		t.Gen = gen
		return s.enqueue(ctx, t)
	}
	return fmt.Errorf("attach %s: the record kept changing", t.Source())
}

// refused says why a single object cannot be downloaded, as add would
// record it, without recording anything.
func (s *submission) refused(ctx context.Context, o object) error {
	t, cause := s.transfer(o)
	cur, err := s.e.Ledger.GetTransfer(ctx, t.ID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return err
	}
	if _, _, c := s.decide(cur, t, cause); c != "" {
		return fmt.Errorf("%s: %s", t.Source(), c)
	}
	return nil
}

// transfer describes the object's transfer, and why it cannot be made.
func (s *submission) transfer(o object) (ledger.Transfer, string) {
	t := ledger.Transfer{
		Bucket: s.src.Bucket, Key: o.key, VersionID: o.versionID, ETag: o.etag, Size: o.size,
		ChecksumCRC32C: o.checksum, ChecksumType: o.checksumType, ChecksumKnown: o.checksumSeen,
		Verify: s.req.Verify, Overwrite: s.req.Overwrite,
	}
	if !o.lastModified.IsZero() {
		t.LastModified = o.lastModified.UnixMilli()
	}
	final, err := location.Target(s.src, o.key, s.dest, s.destIsDir)
	t.Dest = final
	t.ID = ledger.TransferID(t.Bucket, t.Key, t.ETag, t.VersionID, t.Size, final)
	if err != nil {
		return t, err.Error()
	}
	plan, err := chunker.New(o.size, s.e.ChunkSize, s.e.Threshold)
	if err != nil {
		return t, err.Error()
	}
	t.ChunkSize, t.Chunks = plan.ChunkSize, plan.Count()
	return t, ""
}

// decide picks what to do with an object from its record and what this
// host sees of its destination.
func (s *submission) decide(cur, t ledger.Transfer, cause string) (mode string, keepData bool, c string) {
	switch cur.State {
	case "":
		if cause == "" && !t.Overwrite && exists(t.Dest) {
			cause = fmt.Sprintf("destination %s already exists (use --overwrite to replace it)", t.Dest)
		}
		return ledger.ModeCreate, false, cause
	case ledger.Queued, ledger.Running:
		return ledger.ModeAttach, false, ""
	case ledger.Success:
		if s.finalStillThere(cur) {
			return ledger.ModeSkip, false, ""
		}
		return ledger.ModeRestart, false, ""
	default: // failed, cancelled: fetch only what is missing
		return ledger.ModeRestart, true, ""
	}
}

// finalStillThere reports whether a downloaded object's file is still at its
// destination with its size, as this host sees it. A file this host cannot
// see is downloaded again: a needless download is better than a lost file.
func (s *submission) finalStillThere(t ledger.Transfer) bool {
	st, err := os.Stat(t.Dest)
	return err == nil && st.Mode().IsRegular() && st.Size() == t.Size
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func (s *submission) count(mode, cause string, size int64) {
	field := map[string]*int64{
		ledger.ModeCreate: &s.sum.New, ledger.ModeAttach: &s.sum.Attached,
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
	if len(missing) == 0 {
		task, err := tasks.NewAssembleTask(tasks.AssemblePayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Bucket: t.Bucket, Key: t.Key, Dest: t.Dest, Size: t.Size,
		}, s.e.AssembleOptions...)
		if err != nil {
			return err
		}
		_, err = s.put(ctx, task, t)
		return err
	}
	plan := chunker.Plan{Size: t.Size, ChunkSize: t.ChunkSize}
	for _, i := range missing {
		r := plan.Chunk(i)
		task, err := tasks.NewChunkTask(tasks.ChunkPayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Bucket: t.Bucket, Key: t.Key,
			VersionID: t.VersionID, ETag: t.ETag, Size: t.Size, Chunks: t.Chunks,
			Chunk: i, First: r.First, Last: r.Last, Dest: t.Dest, Overwrite: t.Overwrite,
		}, s.e.ChunkOptions...)
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
