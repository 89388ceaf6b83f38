// Package enqueuer turns sources into a job: one S3 object, every object
// under a prefix (ListObjectsV2 pages streamed as they come), a manifest,
// or a local tree to upload. It reads what it needs of each object (a
// HEAD, or the listing; a file's pin), decides from the fleet's records
// and the destination whether it is new, in flight, done already or to be
// retried, and enqueues the chunk or batch tasks that are missing: to
// download it, copy it to S3, upload it, or delete it (rm).
//
// The files follow a submission's path: request.go (what is asked),
// sources.go (listing and describing the objects), plan.go (each object's
// transfer and what to do with it), submit.go (recording and enqueueing),
// mirror.go (--delete), liston.go (a tree listed on its --on host),
// uploads.go (the fleet's uploads), control.go (cancel, retry).
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
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bmatcuk/doublestar/v4"
	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/config"
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

// remoteSet resolves the remotes of the configuration (s3client.Set).
type remoteSet interface {
	Client(ctx context.Context, name, fingerprint string) (*s3.Client, error)
	Fingerprint(name string) (string, error)
	Names() []string
}

// taskEnqueuer is the part of asynq.Client the enqueuer uses.
type taskEnqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueuer submits jobs.
type Enqueuer struct {
	// S3 is the top-level endpoint (s3://), Remotes the configured others
	// (NAME://); nil Remotes: none.
	S3      sourceAPI
	Remotes remoteSet
	Ledger  *ledger.Ledger
	Queue   taskEnqueuer
	// Control deletes and cancels tasks, for Cancel.
	Control taskControl
	Log     *slog.Logger

	ChunkSize int64
	Threshold int64
	// ChunkOptions and AssembleOptions are added to every task (retries,
	// timeout, retention).
	ChunkOptions    []asynq.Option
	AssembleOptions []asynq.Option
	// Parallel bounds the objects handled at once (default 16).
	Parallel int
	// Objects up to BatchMaxObject bytes (0: none) go whole into batch
	// tasks of at most BatchObjects objects and BatchBytes bytes.
	BatchMaxObject, BatchObjects, BatchBytes int64
	// BatchOptions are added to every batch task (retries, retention).
	BatchOptions []asynq.Option
	// Host is the host this enqueuer runs on (its host setting; empty:
	// the host name). Local sources of an --on job for another host are
	// listed there, by a list task.
	Host string
	// Keys sign every task it enqueues (nil: unsigned).
	Keys *tasks.TaskKeys
}

// New is the enqueuer cfg describes, over its endpoints (s3c the
// top-level one), records and queue: chunking and batching as configured,
// tasks with its retries, timeout and retention, signed with its
// task_key.
func New(cfg config.Config, s3c sourceAPI, remotes remoteSet, led *ledger.Ledger, q taskEnqueuer, ctl taskControl, log *slog.Logger) (*Enqueuer, error) {
	keys, err := tasks.LoadTaskKeys(cfg.TaskKeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &Enqueuer{
		S3: s3c, Remotes: remotes, Ledger: led, Queue: q, Control: ctl, Log: log,
		ChunkSize: int64(cfg.ChunkSize), Threshold: int64(cfg.Threshold), Parallel: 16,
		ChunkOptions:    []asynq.Option{asynq.MaxRetry(cfg.MaxRetries), asynq.Timeout(cfg.ChunkTimeout)},
		AssembleOptions: []asynq.Option{asynq.MaxRetry(cfg.MaxRetries), asynq.Retention(cfg.Retention)},
		BatchMaxObject:  int64(cfg.BatchMaxObject), BatchObjects: int64(cfg.BatchObjects), BatchBytes: int64(cfg.BatchBytes),
		BatchOptions: []asynq.Option{asynq.MaxRetry(cfg.MaxRetries), asynq.Timeout(cfg.ChunkTimeout), asynq.Retention(cfg.Retention)},
		Host:         cfg.Host, Keys: keys,
	}, nil
}

// walkedOn reports whether the local sources of req are listed on its
// --on host rather than here: the path names that host's files.
func (s *submission) walkedOn(req Request) bool {
	if req.On == "" || req.Delete {
		return false
	}
	here := s.e.Host
	if here == "" {
		here, _ = os.Hostname()
	}
	return req.On != here
}

// ErrUsage marks errors in the request itself.
var ErrUsage = errors.New("usage")

// ErrNoObjects reports sources with nothing in them.
var ErrNoObjects = errors.New("no objects")

// NewJobID makes a job ID that sorts by time.
func NewJobID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Submit runs one enqueue command. Nothing is recorded or enqueued when the
// only source cannot be read; objects that cannot be downloaded (an unsafe
// key, an existing file, a missing key among several) are recorded failed
// with the cause.
func (e *Enqueuer) Submit(ctx context.Context, req Request) (Summary, error) {
	s, err := e.newSubmission(req)
	if err != nil {
		return Summary{}, err
	}
	if s.elsewhere {
		return s.listOn(ctx)
	}
	if req.single() {
		src := s.srcs[0]
		obj, err := e.head(ctx, src, req)
		if err != nil {
			return Summary{}, err
		}
		if _, err := s.target(obj); err != nil && !req.Delete {
			return Summary{}, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if !s.wanted(obj) {
			return Summary{}, fmt.Errorf("%s is excluded by --include/--exclude", src)
		}
		if err := s.refused(ctx, obj); err != nil {
			return Summary{}, err // before the job exists: nothing is recorded
		}
		one := []object{obj}
		s.describe(ctx, one)
		obj = one[0]
		if err := s.begin(ctx); err != nil {
			return Summary{}, err
		}
		return s.finish(ctx, s.add(ctx, obj, true))
	}
	err = s.each(ctx, func(objs []object) error {
		if err := s.begin(ctx); err != nil {
			return err
		}
		s.describe(ctx, objs)
		rest, err := s.addNew(ctx, objs)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(e.Parallel, 1))
		for _, o := range rest {
			g.Go(func() error { return s.add(gctx, o, false) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
		return s.flushBatch(ctx)
	})
	if err == nil && s.begun && req.Mirror {
		err = s.mirror(ctx)
	}
	switch {
	case !s.begun && err == nil:
		return s.sum, fmt.Errorf("%w under %s", ErrNoObjects, strings.Join(req.Sources, " "))
	case !s.begun:
		return Summary{}, err
	}
	return s.finish(ctx, err)
}

func (e *Enqueuer) newSubmission(req Request) (*submission, error) {
	if len(req.Sources) == 0 && req.From == nil {
		return nil, fmt.Errorf("%w: no source", ErrUsage)
	}
	s := &submission{e: e, req: req, sum: Summary{Job: req.Job, DryRun: req.DryRun}}
	for i, raw := range req.Sources {
		if local := !location.IsURL(raw); i > 0 && local != s.local {
			return nil, fmt.Errorf("%w: sources are all objects or all local files, not both", ErrUsage)
		} else if local && s.walkedOn(req) {
			// The files are on the --on host's disk: only it can look.
			if !filepath.IsAbs(raw) {
				return nil, fmt.Errorf("%w: source %s is on host %s: give its absolute path there", ErrUsage, raw, req.On)
			}
			key := filepath.Clean(raw)
			if strings.HasSuffix(raw, "/") && key != "/" {
				key += "/"
			}
			s.local, s.elsewhere, s.srcs = true, true, append(s.srcs, location.Source{Key: key})
			continue
		} else if local {
			src, err := localSource(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUsage, err)
			}
			s.local, s.srcs = true, append(s.srcs, src)
			continue
		}
		src, err := location.ParseURL(raw, e.remoteNames())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		s.srcs = append(s.srcs, src)
	}
	var err error
	if req.Delete {
		if s.local || req.Dest != "" || req.Sync || req.Overwrite || req.ExpectedSize != nil || req.VersionID != "" {
			return nil, fmt.Errorf("%w: rm takes object URLs only (no DEST, --sync, --overwrite, --expected-size or --version-id)", ErrUsage)
		}
	} else if location.IsURL(req.Dest) {
		if s.destObj, err = location.ParseURL(req.Dest, e.remoteNames()); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		s.toS3, s.dest = true, s.destObj.String()
		if s.destFP, err = e.fingerprint(s.destObj.Remote); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
	} else if s.dest, s.destIsDir, err = absDest(req.Dest); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if !req.single() && (req.ExpectedSize != nil || req.VersionID != "") {
		return nil, fmt.Errorf("%w: --expected-size and --version-id apply to a single key", ErrUsage)
	}
	if req.ExpectedSize != nil && *req.ExpectedSize < 0 {
		return nil, fmt.Errorf("%w: --expected-size %d is negative", ErrUsage, *req.ExpectedSize)
	}
	if s.req.Verify, err = assembler.ParseVerify(req.Verify); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if req.ExpectedSize != nil && s.req.Verify == assembler.VerifyRequired {
		return nil, fmt.Errorf("%w: --expected-size sends no HEAD, so --verify required has no checksum to compare with; "+
			"give the object as a --from manifest line with its checksum instead", ErrUsage)
	}
	if !req.Delete && (len(s.srcs) > 1 || req.From != nil) && !strings.HasSuffix(req.Dest, "/") && !s.destIsDir && !(s.toS3 && s.destObj.IsPrefix()) {
		return nil, fmt.Errorf("%w: with several sources DEST must be a directory (end it with /)", ErrUsage)
	}
	if s.toS3 && !s.destObj.IsPrefix() && slices.ContainsFunc(s.srcs, location.Source.IsPrefix) {
		return nil, fmt.Errorf("%w: a prefix is copied under a prefix: end %s with /", ErrUsage, req.Dest)
	}
	for _, src := range s.srcs {
		if s.toS3 && !s.local && src.Remote == s.destObj.Remote && src.Bucket == s.destObj.Bucket &&
			(strings.HasPrefix(src.Key, s.destObj.Key) || strings.HasPrefix(s.destObj.Key, src.Key)) && src.IsPrefix() {
			return nil, fmt.Errorf("%w: %s and %s overlap: a copy would nest itself (and --delete would delete the source)", ErrUsage, src, s.destObj)
		}
	}
	if req.Mirror && (!req.Sync || !s.toS3 || !s.destObj.IsPrefix() || len(s.srcs) != 1 || !s.srcs[0].IsPrefix() || req.From != nil) {
		return nil, fmt.Errorf("%w: --delete mirrors one source prefix (or directory) to an S3 prefix, with --sync", ErrUsage)
	}
	if s.elsewhere && (req.DryRun || req.ExpectedSize != nil || req.VersionID != "") {
		return nil, fmt.Errorf("%w: the files of an --on job are listed on host %s: --dry-run, --expected-size and --version-id do not apply", ErrUsage, req.On)
	}
	if s.local && !req.Delete && (!s.toS3 || req.From != nil || req.ExpectedSize != nil || req.VersionID != "") {
		return nil, fmt.Errorf("%w: a local source uploads to S3: give a REMOTE://bucket/key or prefix/ destination (and no --from, --expected-size or --version-id)", ErrUsage)
	}
	if !req.Write.IsZero() && !s.toS3 {
		return nil, fmt.Errorf("%w: %s set what an object written to S3 gets: DEST must be on S3 (REMOTE://bucket/…)", ErrUsage, req.Write.Flags())
	}
	if err := req.Write.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if s.toS3 && req.SSECKeyMD5 != "" && (req.Write.SSE != "" || req.Write.SSEKMSKeyID != "") {
		return nil, fmt.Errorf("%w: --sse-c-key-file encrypts the copies with that key: --sse and --sse-kms-key-id do not apply", ErrUsage)
	}
	if s.queue, err = tasks.ChunkQueue(req.Priority); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if req.On != "" {
		if err := tasks.ValidHost(req.On); err != nil {
			return nil, fmt.Errorf("%w: --on: %w", ErrUsage, err)
		}
		s.queue = tasks.HostQueue(req.On)
	}
	for _, p := range append(append([]string{}, req.Include...), req.Exclude...) {
		if !doublestar.ValidatePattern(p) {
			return nil, fmt.Errorf("%w: bad glob pattern %q", ErrUsage, p)
		}
	}
	if s.sum.Job == "" {
		s.sum.Job = NewJobID(time.Now())
	} else if strings.ContainsAny(s.sum.Job, " /:{}") {
		return nil, fmt.Errorf("%w: job name %q may not contain spaces, '/', ':' or braces", ErrUsage, s.sum.Job)
	}
	return s, nil
}

// api is the client of a source's endpoint.
func (e *Enqueuer) api(ctx context.Context, remote string) (sourceAPI, error) {
	if remote == "" {
		return e.S3, nil
	}
	if e.Remotes == nil {
		return nil, fmt.Errorf("%w: remote %q: no remotes are configured", ErrUsage, remote)
	}
	return e.Remotes.Client(ctx, remote, "")
}

// remoteNames are the configured remotes' names.
func (e *Enqueuer) remoteNames() []string {
	if e.Remotes == nil {
		return nil
	}
	return e.Remotes.Names()
}

// fingerprint is a remote's fingerprint as tasks carry it. The top-level
// endpoint has none: s3:// is each worker's own endpoint, which may well
// be reached by another URL than the enqueuer's (a proxy, a load
// balancer), as downloads always allowed.
func (e *Enqueuer) fingerprint(remote string) (string, error) {
	switch {
	case remote == "":
		return "", nil
	case e.Remotes == nil:
		return "", fmt.Errorf("remote %q: no remotes are configured", remote)
	}
	return e.Remotes.Fingerprint(remote)
}

func (e *Enqueuer) logger() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}
