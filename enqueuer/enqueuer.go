// Package enqueuer turns a source (one S3 object, or every object under a
// prefix) into a job: it reads each object's size and version (HeadObject,
// or ListObjectsV2 pages streamed as they come), decides from the fleet's
// records whether the object is new, in flight, already downloaded or to be
// retried, and enqueues the chunk tasks that are missing.
package enqueuer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/bmatcuk/doublestar/v4"
	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
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
}

// Request is one enqueue command.
type Request struct {
	Job     string   // resume this job, or name a new one; empty: generate
	Sources []string // s3://bucket/key or s3://bucket/prefix/ URLs
	// From holds more sources, one a line: an s3:// URL, or a JSON line of
	// a manifest (its "source", "size" and "etag" spare the HEAD). Keys read
	// from it land at their key's path under Dest, as a listing's do.
	From io.Reader
	Dest string // a file, or a directory when it ends in "/" or is one
	// ExpectedSize is the object's size, when the caller knows it: no HEAD
	// is sent at all (a single key only), and every chunk's response must
	// agree on the size and the ETag. nil: HEAD the object.
	ExpectedSize *int64
	VersionID    string // pin this version (a single key only)
	Overwrite    bool
	// Verify is off, auto (empty means auto) or required: see assembler.
	Verify string
	// Delete deletes the sources' objects (enqueue rm) rather than copy
	// them: Dest is empty.
	Delete bool
	// Sync skips objects whose file is there with the same size and ETag
	// (from the fleet's record or the file's xattr) and replaces the rest.
	Sync bool
	// DryRun counts what would be downloaded and records nothing; Planned,
	// when set, is called (from several goroutines) with each object and
	// what would be done with it.
	DryRun  bool
	Planned func(PlannedObject)
	// Include and Exclude are glob patterns (with **) matched against the
	// key below the prefix (or the whole key, for a single key).
	Include, Exclude []string
	Priority         string // high, default or low
	RequestPayer     string // "requester" to pay for requester-pays buckets
	ExpectedOwner    string // the account that must own the bucket
	SSECKeyMD5       string // base64 MD5 of the SSE-C key the objects use
	// SSECKey is the enqueuer's own copy of that key, for its HEADs only;
	// it never leaves this process.
	SSECKey []byte
}

// single reports whether the request names exactly one key.
func (r Request) single() bool {
	if len(r.Sources) != 1 || r.From != nil {
		return false
	}
	_, rest, _ := strings.Cut(r.Sources[0], "://")
	return strings.Count(rest, "/") > 0 && !strings.HasSuffix(rest, "/")
}

// Summary says what an enqueue did (or, with DryRun, would do).
type Summary struct {
	Job      string `json:"job"`
	Objects  int64  `json:"objects"`
	Bytes    int64  `json:"bytes"`
	New      int64  `json:"new"`      // enqueued for the first time
	Attached int64  `json:"attached"` // already in flight
	Resumed  int64  `json:"resumed"`  // failed, cancelled or gone, enqueued again
	Skipped  int64  `json:"skipped"`  // already downloaded
	Refused  int64  `json:"refused"`  // recorded failed at once (unsafe key, existing file)
	Filtered int64  `json:"filtered"` // left out by --include/--exclude
	Chunks   int64  `json:"chunks"`   // chunk tasks newly enqueued (planned, with DryRun)
	DryRun   bool   `json:"dry_run,omitempty"`
}

// PlannedObject is one object of a dry run and what enqueue would do with
// it.
type PlannedObject struct {
	Source string `json:"source"`
	Path   string `json:"path,omitempty"`
	Size   int64  `json:"size"`
	// Action is download, attach (in flight already), resume (failed or
	// cancelled before, or its file is gone), skip (done already), refuse
	// (with Cause), filter (left out by --include/--exclude), or delete
	// (enqueue rm).
	Action string `json:"action"`
	Cause  string `json:"cause,omitempty"`
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

// object is one source object as the listing or HEAD described it.
type object struct {
	src          location.Source // the URL it came from (key or prefix)
	key          string
	size         int64
	etag         string
	versionID    string
	lastModified time.Time
	sum          assembler.Sum // S3's checksum: the algorithm from a listing, all of it from a HEAD
	checksumSeen bool          // sum is all there is: no HEAD is to be made for it
	parts        []chunker.Run // the upload's parts, when the chunks are to be aligned to them
	noHead       bool          // --expected-size: nothing but the chunks' responses describes it
	cause        string        // why it cannot be downloaded (a failed HEAD)
	path, pin    string        // a local file to upload, and its pin (location.FilePin)
}

// url renders the object as its URL (a local file as its path).
func (o object) url() string {
	if o.path != "" {
		return o.path
	}
	return location.Source{Remote: o.src.Remote, Bucket: o.src.Bucket, Key: o.key}.String()
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
	if req.single() {
		src := s.srcs[0]
		obj, err := e.head(ctx, src, req)
		if err != nil {
			return Summary{}, err
		}
		if _, err := s.target(obj); err != nil {
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
	if s.local && !req.Delete && (!s.toS3 || req.From != nil || req.ExpectedSize != nil || req.VersionID != "") {
		return nil, fmt.Errorf("%w: a local source uploads to S3: give a REMOTE://bucket/key or prefix/ destination (and no --from, --expected-size or --version-id)", ErrUsage)
	}
	if s.toS3 && req.SSECKeyMD5 != "" {
		return nil, fmt.Errorf("%w: SSE-C objects are not copied to S3: the copy would not be encrypted", ErrUsage)
	}
	if s.toS3 && req.Sync {
		return nil, fmt.Errorf("%w: --sync to S3 is not supported yet", ErrUsage)
	}
	if s.queue, err = tasks.ChunkQueue(req.Priority); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
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

// each calls page with the objects of every source, a page at a time:
// listings as S3 pages them, keys in batches HEADed in parallel.
func (s *submission) each(ctx context.Context, page func([]object) error) error {
	var keys []location.Source
	fromFile := false // keys read from --from land at their key's path, as a listing's do
	flushKeys := func() error {
		if len(keys) == 0 {
			return nil
		}
		objs := make([]object, len(keys))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(s.e.Parallel, 1))
		for i, k := range keys {
			g.Go(func() error {
				o, err := s.e.head(gctx, k, s.req)
				if err != nil {
					o = object{src: k, key: k.Key, cause: err.Error()}
				}
				if fromFile {
					o.src = location.Source{Remote: k.Remote, Bucket: k.Bucket} // the bucket as prefix
				}
				objs[i] = o
				return nil
			})
		}
		_ = g.Wait()
		keys = keys[:0]
		return page(objs)
	}
	source := func(src location.Source) error {
		if s.local {
			return s.walk(ctx, src, page)
		}
		if src.IsPrefix() {
			if err := flushKeys(); err != nil {
				return err
			}
			return s.e.list(ctx, src, s.req, page)
		}
		keys = append(keys, src)
		if len(keys) >= 256 {
			return flushKeys()
		}
		return nil
	}
	for _, src := range s.srcs {
		if err := source(src); err != nil {
			return err
		}
	}
	if err := flushKeys(); err != nil {
		return err
	}
	if s.req.From != nil {
		fromFile = true
		sc := bufio.NewScanner(s.req.From)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var listed []object
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, "{") {
				o, err := manifestObject(line, s.e.remoteNames())
				if err != nil {
					return fmt.Errorf("%w: --from line %d: %w", ErrUsage, n, err)
				}
				if listed = append(listed, o); len(listed) >= 1000 {
					if err := page(listed); err != nil {
						return err
					}
					listed = nil
				}
				continue
			}
			src, err := location.ParseURL(line, s.e.remoteNames())
			if err != nil {
				return fmt.Errorf("%w: --from line %d: %w", ErrUsage, n, err)
			}
			if err := source(src); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read --from: %w", err)
		}
		if len(listed) > 0 {
			if err := page(listed); err != nil {
				return err
			}
		}
	}
	return flushKeys()
}

// manifestObject reads one line of a manifest (as --manifest writes it):
// the object's source, size and ETag, so no HEAD is needed.
func manifestObject(line string, remotes []string) (object, error) {
	var m struct {
		Source    string `json:"source"`
		Size      *int64 `json:"size"`
		ETag      string `json:"etag"`
		VersionID string `json:"version_id"`
		// S3's checksum, when the manifest knows it: then no HEAD is made
		// for it at assembly either. A line of the fleet's own manifest
		// (it has a check) holds the CRC the fleet computed, which is S3's
		// only when the check was against that algorithm.
		Checksum          string `json:"checksum"`
		Check             string `json:"check"`
		ChecksumAlgorithm string `json:"checksum_algorithm"`
		ChecksumType      string `json:"checksum_type"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return object{}, fmt.Errorf("not a manifest line: %w", err)
	}
	src, err := location.ParseURL(m.Source, remotes)
	if err != nil {
		return object{}, err
	}
	if src.IsPrefix() || m.Size == nil || *m.Size < 0 {
		return object{}, fmt.Errorf("manifest line for %q needs a key and a size", m.Source)
	}
	o := object{src: location.Source{Remote: src.Remote, Bucket: src.Bucket}, key: src.Key, size: *m.Size, etag: m.ETag, versionID: m.VersionID}
	if m.Check != "" && !strings.EqualFold(m.Check, m.ChecksumAlgorithm) {
		m.ChecksumAlgorithm, m.Checksum = "", "" // computed, but not compared with S3's: no evidence
	}
	if m.ChecksumAlgorithm != "" {
		a, err := checksum.Parse(m.ChecksumAlgorithm)
		if err != nil {
			return object{}, fmt.Errorf("manifest line for %q: %w", m.Source, err)
		}
		o.sum = assembler.Sum{Algorithm: a, Type: m.ChecksumType, Value: m.Checksum}
		o.checksumSeen = m.Checksum != ""
	}
	// Like every key read from --from, it lands at its key's path under DEST.
	return o, nil
}

// localSource reads a local source: a file, or a directory (a prefix:
// its files land at their paths below it), as an absolute path.
func localSource(raw string) (location.Source, error) {
	abs, err := filepath.Abs(raw)
	if err != nil {
		return location.Source{}, fmt.Errorf("source %q: %w", raw, err)
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil:
		return location.Source{}, fmt.Errorf("source %s: %w", raw, err)
	case st.IsDir():
		return location.Source{Key: strings.TrimSuffix(abs, "/") + "/"}, nil
	case !st.Mode().IsRegular():
		return location.Source{}, fmt.Errorf("source %s is not a regular file or a directory", raw)
	}
	return location.Source{Key: abs}, nil
}

// walk lists the files of a local source, a page at a time, each pinned
// (size, times, inode) as it is now. Symlinks and special files are left
// out, with a warning: an upload does not follow links out of the tree.
func (s *submission) walk(ctx context.Context, src location.Source, page func([]object) error) error {
	var objs []object
	add := func(path string) error {
		p, err := location.PinPath(path)
		if err != nil {
			return err
		}
		objs = append(objs, object{src: src, key: filepath.ToSlash(path), size: p.Size, lastModified: p.MTime, path: path, pin: p.Pin, checksumSeen: true})
		if len(objs) < 1000 {
			return nil
		}
		err = page(objs)
		objs = nil
		return err
	}
	if !src.IsPrefix() {
		if err := add(src.Key); err != nil {
			return err
		}
	} else {
		err := filepath.WalkDir(strings.TrimSuffix(src.Key, "/"), func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return fmt.Errorf("walk %s: %w", path, err)
			case ctx.Err() != nil:
				return ctx.Err()
			case d.IsDir():
				return nil
			case !d.Type().IsRegular():
				s.e.logger().Warn("not uploaded: not a regular file", "path", path, "type", d.Type().String())
				return nil
			}
			return add(path)
		})
		if err != nil {
			return err
		}
	}
	if len(objs) == 0 {
		return nil
	}
	return page(objs)
}

// absDest makes the destination absolute, keeping a trailing "/", and says
// whether it is an existing directory on this host.
func absDest(d string) (string, bool, error) {
	if d == "" {
		return "", false, errors.New("empty destination")
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
	if req.ExpectedSize != nil && req.single() {
		// No HEAD, now or at assembly: the chunks' responses must agree.
		return object{src: src, key: src.Key, size: *req.ExpectedSize, versionID: req.VersionID, checksumSeen: true, noHead: true}, nil
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(src.Bucket), Key: aws.String(src.Key), ChecksumMode: types.ChecksumModeEnabled}
	if req.VersionID != "" {
		in.VersionId = aws.String(req.VersionID)
	}
	if err := tasks.SetRequestOptions(in, req.RequestPayer, req.ExpectedOwner, req.SSECKeyMD5,
		map[string][]byte{req.SSECKeyMD5: req.SSECKey}); err != nil {
		return object{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	api, err := e.api(ctx, src.Remote)
	if err != nil {
		return object{}, err
	}
	out, err := api.HeadObject(ctx, in)
	if err != nil {
		if s3client.HTTPStatus(err) == 404 {
			if _, berr := api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(src.Bucket)}); s3client.HTTPStatus(berr) == 404 {
				return object{}, fmt.Errorf("head %s: bucket %q does not exist", src, src.Bucket)
			}
			return object{}, fmt.Errorf("head %s: no such key %q in bucket %q", src, src.Key, src.Bucket)
		}
		return object{}, fmt.Errorf("head %s: %s", src, s3client.Describe(err))
	}
	o := object{
		src: src, key: src.Key, size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag),
		versionID: aws.ToString(out.VersionId), lastModified: aws.ToTime(out.LastModified),
		sum: assembler.SumOf(out), checksumSeen: true,
	}
	if req.VersionID == "" {
		o.versionID = "" // pin by ETag; a version ID is only sent when the user asked for one
	}
	return o, nil
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

// describe completes what a listing leaves out of the objects that are
// not fetched whole (whose batch GET brings their checksum):
//   - a listing names a checksum's algorithm at most (MinIO's never do),
//     and a manifest line may name one without its value: a HEAD pinned to
//     the ETag reads the checksum now rather than at assembly, so that the
//     chunks compute the object's own CRC (one HEAD either way);
//   - an object whose checksum is its parts' checksums (COMPOSITE; under
//     verify: required, a multipart ETag with no checksum) has its parts
//     read, a HEAD with partNumber per part, so that its chunks are cut
//     along them.
//
// Several objects at once. An object these cannot be read for is planned
// as usual, and its check says why.
func (s *submission) describe(ctx context.Context, objs []object) {
	if s.req.DryRun || s.req.Delete || s.req.Verify == assembler.VerifyOff {
		return
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.e.Parallel, 1))
	for i := range objs {
		o := &objs[i]
		if o.cause != "" || o.path != "" || (s.e.BatchMaxObject > 0 && o.size <= s.e.BatchMaxObject) {
			continue
		}
		g.Go(func() error {
			if !o.checksumSeen {
				if sum, err := s.e.checksumOf(gctx, o, s.req); err == nil {
					o.sum, o.checksumSeen = sum, true
				} else {
					s.e.logger().Warn("cannot read the object's checksum now: the assembler will", "bucket", o.src.Bucket, "key", o.key, "err", err)
				}
			}
			n, ok := assembler.MultipartETag(o.etag)
			if s.serverSide(*o) || !ok || n < 2 || !(o.sum.Composite() || o.sum.Algorithm == "" && s.req.Verify == assembler.VerifyRequired) {
				return nil
			}
			parts, err := s.e.partSizes(gctx, o, n, s.req)
			if err != nil {
				s.e.logger().Warn("cannot read the upload's parts: its checksum of checksums will not be checked",
					"bucket", o.src.Bucket, "key", o.key, "err", err)
				return nil
			}
			o.parts = parts
			return nil
		})
	}
	_ = g.Wait()
}

// checksumOf HEADs a listed object, pinned to its ETag, for its checksum.
func (e *Enqueuer) checksumOf(ctx context.Context, o *object, req Request) (assembler.Sum, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(o.src.Bucket), Key: aws.String(o.key), ChecksumMode: types.ChecksumModeEnabled}
	if o.etag != "" {
		in.IfMatch = aws.String(o.etag)
	}
	if err := tasks.SetRequestOptions(in, req.RequestPayer, req.ExpectedOwner, req.SSECKeyMD5,
		map[string][]byte{req.SSECKeyMD5: req.SSECKey}); err != nil {
		return assembler.Sum{}, err
	}
	api, err := e.api(ctx, o.src.Remote)
	if err != nil {
		return assembler.Sum{}, err
	}
	out, err := api.HeadObject(ctx, in)
	if err != nil {
		return assembler.Sum{}, fmt.Errorf("head %s for its checksum: %s", o.url(), s3client.Describe(err))
	}
	return assembler.SumOf(out), nil
}

// partSizes reads the sizes of an object's n upload parts.
func (e *Enqueuer) partSizes(ctx context.Context, o *object, n int, req Request) ([]chunker.Run, error) {
	sizes := make([]int64, n)
	api, err := e.api(ctx, o.src.Remote)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(e.Parallel, 1))
	for i := range sizes {
		g.Go(func() error {
			in := &s3.HeadObjectInput{Bucket: aws.String(o.src.Bucket), Key: aws.String(o.key),
				PartNumber: aws.Int32(int32(i + 1)), IfMatch: aws.String(o.etag)}
			if o.versionID != "" {
				in.VersionId = aws.String(o.versionID)
			}
			if err := tasks.SetRequestOptions(in, req.RequestPayer, req.ExpectedOwner, req.SSECKeyMD5,
				map[string][]byte{req.SSECKeyMD5: req.SSECKey}); err != nil {
				return err
			}
			out, err := api.HeadObject(gctx, in)
			if err != nil {
				return fmt.Errorf("head part %d of %s: %s", i+1, o.url(), s3client.Describe(err))
			}
			if sizes[i] = aws.ToInt64(out.ContentLength); sizes[i] <= 0 {
				return fmt.Errorf("part %d of %s has %d bytes", i+1, o.url(), sizes[i])
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return chunker.RunsOf(sizes), nil
}

// list streams the objects under a prefix, a page at a time.
func (e *Enqueuer) list(ctx context.Context, src location.Source, req Request, page func([]object) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(src.Bucket), Prefix: aws.String(src.Key)}
	if req.RequestPayer != "" {
		in.RequestPayer = types.RequestPayer(req.RequestPayer)
	}
	if req.ExpectedOwner != "" {
		in.ExpectedBucketOwner = aws.String(req.ExpectedOwner)
	}
	api, err := e.api(ctx, src.Remote)
	if err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(api, in)
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
			o := object{src: src, key: key, size: aws.ToInt64(c.Size), etag: aws.ToString(c.ETag), lastModified: aws.ToTime(c.LastModified)}
			// A listing names the checksum's algorithm (which the chunks then
			// compute) but never its value: the assembler HEADs for it, and a
			// batch GET returns it. A listing that names none is not trusted
			// to mean there is none.
			o.sum = listedSum(c)
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

// listedSum is what a listing says of an object's checksum: its algorithm
// and type.
func listedSum(o types.Object) assembler.Sum {
	s := assembler.Sum{Type: string(o.ChecksumType)}
	for _, a := range o.ChecksumAlgorithm {
		if alg, err := checksum.Parse(string(a)); err == nil {
			s.Algorithm = alg
			break
		}
	}
	return s
}

// submission is the state of one Submit call.
type submission struct {
	e         *Enqueuer
	req       Request
	srcs      []location.Source
	dest      string // an absolute path, or the destination's URL when toS3
	destIsDir bool
	toS3      bool            // the destination is an object or a prefix on S3
	local     bool            // the sources are local files and directories (an upload)
	destObj   location.Source // the destination, when toS3
	destFP    string          // its endpoint's fingerprint
	queue     string
	begun     bool
	sum       Summary

	batchMu    sync.Mutex
	batch      []tasks.BatchObject
	batchBytes int64
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
	return nil
}

func (s *submission) finish(ctx context.Context, err error) (Summary, error) {
	if s.req.DryRun {
		return s.sum, err
	}
	if ferr := s.flushBatch(ctx); err == nil {
		err = ferr
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
	var fresh []object
	for _, o := range objs {
		if !s.wanted(o) {
			atomic.AddInt64(&s.sum.Filtered, 1)
			continue
		}
		t, cause := s.transfer(o)
		if cause == "" && !t.Overwrite && !s.toS3 && !t.Delete && exists(t.Dest) {
			cause = fmt.Sprintf("destination %s already exists (use --overwrite to replace it)", t.Dest)
		}
		reqs = append(reqs, ledger.AttachRequest{Job: s.sum.Job, Mode: ledger.ModeCreate, New: t, Cause: cause})
		fresh = append(fresh, o)
	}
	results, err := s.e.Ledger.AttachMany(ctx, reqs, time.Now())
	if err != nil {
		return nil, err
	}
	for i, r := range results {
		if r.Err != nil {
			rest = append(rest, fresh[i]) // known already (or a blip): the careful path
			continue
		}
		t := reqs[i].New
		s.count(ledger.ModeCreate, reqs[i].Cause, t.Size)
		if r.State != ledger.Queued {
			continue
		}
		t.Gen = r.Gen
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

// transfer describes the object's transfer, and why it cannot be made.
func (s *submission) transfer(o object) (ledger.Transfer, string) {
	t := ledger.Transfer{
		Remote: o.src.Remote, Bucket: o.src.Bucket, Key: o.key, VersionID: o.versionID, ETag: o.etag, Size: o.size,
		ChecksumAlgorithm: string(o.sum.Algorithm), ChecksumType: o.sum.Type, Checksum: o.sum.Value,
		ChecksumKnown: o.checksumSeen || s.req.Verify == assembler.VerifyOff, NoHead: o.noHead,
		Verify: s.req.Verify, Overwrite: s.req.Overwrite, Queue: s.queue,
		RequestPayer: s.req.RequestPayer, ExpectedOwner: s.req.ExpectedOwner, SSECKeyMD5: s.req.SSECKeyMD5,
	}
	if !o.lastModified.IsZero() {
		t.LastModified = o.lastModified.UnixMilli()
	}
	if fp, err := s.e.fingerprint(o.src.Remote); err == nil {
		t.RemoteFP = fp
	}
	if o.path != "" {
		t.Key, t.SourcePath, t.SourcePin, t.ChecksumKnown = "", o.path, o.pin, true
	}
	final, err := s.target(o)
	if s.req.Delete {
		final, err = o.url(), nil
		t.Delete = true
	}
	t.Dest, t.DestFP = final, s.destFP
	t.ID = ledger.TransferID(t.Remote, t.Bucket, t.Key, t.ETag, t.VersionID, t.Size, final)
	if t.Delete {
		t.ID = ledger.TransferID(t.Remote, t.Bucket, t.Key, t.ETag, t.VersionID, t.Size, "delete:"+final)
	}
	if o.path != "" {
		t.ID = ledger.TransferID("file:", "", o.path, o.pin, "", t.Size, final)
	}
	if o.cause != "" {
		return t, o.cause
	}
	if err != nil {
		return t, err.Error()
	}
	chunkSize := s.e.ChunkSize
	// On one endpoint S3 copies the bytes itself, pinned by the ETag, where
	// nothing of them reaches a worker to check: not under --verify
	// required, which copies through the workers.
	t.ServerSide = s.serverSide(o)
	switch {
	case t.ServerSide:
		chunkSize = chunker.PartSize(o.size, max(chunkSize, serverSidePart))
	case s.toS3:
		chunkSize = chunker.PartSize(o.size, chunkSize)
	}
	threshold := s.e.Threshold
	if s.toS3 {
		threshold = min(threshold, chunker.MaxPartSize) // one part holds at most 5 GiB
	}
	plan, err := chunker.New(o.size, chunkSize, threshold)
	if err != nil {
		return t, err.Error()
	}
	if o.parts != nil && !t.ServerSide {
		// A copy to S3 takes the source's parts as its own, one chunk each
		// (they were upload parts, so they fit S3's limits), so that a
		// checksum of the parts' checksums can be checked.
		size := s.e.ChunkSize
		if s.toS3 {
			size = chunker.MaxPartSize
		}
		if aligned, err := chunker.Aligned(o.parts, size); err == nil && aligned.Size == o.size {
			plan, t.Parts = aligned, chunker.EncodeParts(o.parts)
		}
	}
	t.ChunkSize, t.Chunks = plan.ChunkSize, plan.Count()
	return t, ""
}

// serverSide reports whether S3 copies the object itself: its destination
// is on its endpoint and its ETag pins it, and --verify required does not
// ask that every byte be checked on its way through a worker.
func (s *submission) serverSide(o object) bool {
	return s.toS3 && o.path == "" && o.src.Remote == s.destObj.Remote && o.etag != "" && s.req.Verify != assembler.VerifyRequired
}

// serverSidePart is the smallest part of a server-side copy: no byte
// passes through a worker, so larger parts only mean fewer requests.
const serverSidePart = 256 << 20

// target is where the object lands: its path, or its destination URL.
func (s *submission) target(o object) (string, error) {
	several := s.destIsDir || len(s.srcs) > 1 || s.req.From != nil
	if !s.toS3 {
		return location.Target(o.src, o.key, s.dest, several)
	}
	dest := s.destObj
	key, err := location.TargetKey(o.src, o.key, dest)
	if err != nil {
		return "", err
	}
	dest.Key = key
	return dest.String(), nil
}

// decide picks what to do with an object from its record and what this
// host sees of its destination. With --sync a file that differs is to be
// replaced, so t may come back with Overwrite set.
//
// For an S3 destination, whether an object is there already is for the
// workers to find (a HEAD before the upload, If-None-Match when it
// completes): a HEAD here per listed object would slow a large listing
// down, and proves nothing by the time the object is written.
func (s *submission) decide(ctx context.Context, cur ledger.Transfer, t *ledger.Transfer, cause string) (mode string, keepData bool, c string) {
	switch cur.State {
	case "":
		switch {
		case cause != "":
		case s.req.Sync && sameFile(t.Dest, t.Size, t.ETag):
			return ledger.ModePresent, false, ""
		case s.req.Sync:
			t.Overwrite = true
		case !t.Overwrite && !s.toS3 && !t.Delete && exists(t.Dest):
			cause = fmt.Sprintf("destination %s already exists (use --overwrite to replace it)", t.Dest)
		}
		return ledger.ModeCreate, false, cause
	case ledger.Queued, ledger.Running:
		return ledger.ModeAttach, false, ""
	case ledger.Success:
		if cur.Delete {
			return ledger.ModeRestart, false, "" // listed again: a new object under the key
		}
		if s.finalStillThere(ctx, cur) {
			return ledger.ModeSkip, false, ""
		}
		if s.req.Sync {
			t.Overwrite = true
		}
		return ledger.ModeRestart, false, ""
	default: // failed, cancelled: fetch only what is missing
		return ledger.ModeRestart, true, ""
	}
}

// sameFile reports whether path holds the object already: its size and the
// ETag a finished download recorded in the file's xattr.
func sameFile(path string, size int64, etag string) bool {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() != size {
		return false
	}
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, assembler.XattrETag, buf)
	return err == nil && etag != "" && string(buf[:n]) == etag
}

// finalStillThere reports whether a downloaded object's file is still at its
// destination with its size, as this host sees it. A file this host cannot
// see is downloaded again: a needless download is better than a lost file.
func (s *submission) finalStillThere(ctx context.Context, t ledger.Transfer) bool {
	if s.toS3 {
		return s.objectThere(ctx, t)
	}
	st, err := os.Stat(t.Dest)
	return err == nil && st.Mode().IsRegular() && st.Size() == t.Size
}

// objectThere reports whether a copied object is still at its
// destination with its size.
func (s *submission) objectThere(ctx context.Context, t ledger.Transfer) bool {
	_, dst, _, err := location.ParseDest(t.Dest)
	if err != nil {
		return false
	}
	api, err := s.e.api(ctx, dst.Remote)
	if err != nil {
		return false
	}
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key)})
	return err == nil && aws.ToInt64(out.ContentLength) == t.Size
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
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
		task, err := tasks.NewAssembleTask(tasks.AssemblePayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Bucket: t.Bucket, Key: t.Key, Dest: t.Dest, Size: t.Size,
		}, s.e.AssembleOptions...)
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
	for _, i := range missing {
		r := plan.Chunk(i)
		task, err := tasks.NewChunkTask(tasks.ChunkPayload{
			Job: s.sum.Job, Transfer: t.ID, Gen: t.Gen, Object: tasks.ObjectOf(t), Chunks: t.Chunks,
			Chunk: i, First: r.First, Last: r.Last, Dest: t.Dest, DestFP: t.DestFP, ServerSide: t.ServerSide, Overwrite: t.Overwrite,
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

// addToBatch adds an object to the batch being filled, and enqueues the
// batch once it is full.
func (s *submission) addToBatch(ctx context.Context, t ledger.Transfer) error {
	s.batchMu.Lock()
	s.batch = append(s.batch, tasks.BatchObject{
		Transfer: t.ID, Gen: t.Gen, Object: tasks.ObjectOf(t), Dest: t.Dest, DestFP: t.DestFP, ServerSide: t.ServerSide, Delete: t.Delete,
		LastModified: t.LastModified, Overwrite: t.Overwrite, Verify: t.Verify,
		ChecksumAlgorithm: t.ChecksumAlgorithm, ChecksumType: t.ChecksumType, Checksum: t.Checksum,
	})
	s.batchBytes += t.Size
	full := int64(len(s.batch)) >= max(s.e.BatchObjects, 1) || s.batchBytes >= s.e.BatchBytes
	if t.Delete {
		full = len(s.batch) >= 1000 // S3's most keys in one DeleteObjects; nothing is moved
	}
	s.batchMu.Unlock()
	if full {
		return s.flushBatch(ctx)
	}
	return nil
}

// flushBatch enqueues the batch being filled, if any.
func (s *submission) flushBatch(ctx context.Context) error {
	s.batchMu.Lock()
	objs := s.batch
	s.batch, s.batchBytes = nil, 0
	s.batchMu.Unlock()
	if len(objs) == 0 {
		return nil
	}
	task, err := tasks.NewBatchTask(tasks.BatchPayload{Job: s.sum.Job, Objects: objs},
		append(s.e.BatchOptions, asynq.Queue(s.queue))...)
	if err != nil {
		return err
	}
	ids := make([]string, len(objs))
	for i, o := range objs {
		ids[i] = o.Transfer
	}
	// Recorded first: an enqueue killed between the two leaves objects whose
	// batch does not exist, which a re-run enqueues again.
	if err := s.e.Ledger.SetBatch(ctx, ids, tasks.BatchTaskID(tasks.BatchPayload{Objects: objs})); err != nil {
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
