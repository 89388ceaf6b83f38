package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/internal/fence"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// TypeChunk downloads one byte range of an object into its part file.
const TypeChunk = "s3fleet:chunk"

// ChunkPayload names one range of one object and where it lands.
type ChunkPayload struct {
	Job      string `json:"job"`
	Transfer string `json:"transfer"`
	Gen      int64  `json:"gen"`
	// Epoch is when the transfer's record was made (Unix ms): it names
	// this run in task IDs (see RunID).
	Epoch int64 `json:"epoch,omitempty"`
	Object
	Chunks int64 `json:"chunks"`
	Chunk  int64 `json:"chunk"`
	First  int64 `json:"first"`
	Last   int64 `json:"last"`
	// Dest is an absolute path, or an object URL (REMOTE://bucket/key)
	// with DestFP its endpoint's fingerprint.
	Dest   string `json:"dest"`
	DestFP string `json:"dest_fp,omitempty"`
	// ServerSide has S3 copy the range itself (UploadPartCopy): the
	// destination is on the source's endpoint.
	ServerSide bool `json:"server_side,omitempty"`
	Overwrite  bool `json:"overwrite,omitempty"`
	// Write is what a copy sets on its S3 destination (nil: nothing).
	Write *ledger.Write `json:"write,omitempty"`
	// CRC is the checksum algorithm the chunk computes over its bytes, for
	// the assembler to combine: the object's own when it is a CRC, else
	// CRC64NVME (assembler.CRCFor); empty means CRC64NVME.
	CRC string `json:"crc,omitempty"`
	// NoHead says the object was enqueued with --expected-size: the
	// chunks' responses are all that pin it (see checkRange).
	NoHead bool `json:"no_head,omitempty"`
	// Avoid names the worker a speculative copy of a straggling chunk
	// must not run on: the one running the straggler (see stragglers.go).
	Avoid string `json:"avoid,omitempty"`
}

// Range is the payload's byte range.
func (p ChunkPayload) Range() chunker.Range {
	return chunker.Range{Index: p.Chunk, First: p.First, Last: p.Last}
}

// Validate refuses payloads no enqueuer writes: they were forged or
// corrupted in Redis.
func (p ChunkPayload) Validate() error {
	if err := p.Object.validate(); err != nil {
		return err
	}
	switch {
	case p.Transfer == "":
		return errors.New("missing transfer")
	case p.Gen < 1:
		return fmt.Errorf("generation %d", p.Gen)
	case p.Size <= 0 || p.Chunks < 1 || p.Chunk < 0 || p.Chunk >= p.Chunks:
		return fmt.Errorf("chunk %d of %d of a %d-byte object", p.Chunk, p.Chunks, p.Size)
	case p.First < 0 || p.Last < p.First || p.Last >= p.Size:
		return fmt.Errorf("range %d-%d outside a %d-byte object", p.First, p.Last, p.Size)
	}
	_, dst, toS3, err := location.ParseDest(p.Dest)
	if err != nil {
		return err
	}
	if p.Path != "" && !toS3 {
		return errors.New("a local source needs an S3 destination")
	}
	if err := validWrite(p.Write, toS3); err != nil {
		return err
	}
	if p.ServerSide && (!toS3 || dst.Remote != p.Remote || p.ETag == "" || p.Path != "") {
		return errors.New("a server-side copy needs a destination on the source's endpoint and the source's ETag")
	}
	if !p.crc().Combinable() {
		return fmt.Errorf("checksum %q is not a CRC", p.CRC)
	}
	return nil
}

// validWrite refuses write options no enqueuer sends: for a destination
// that is not on S3, or that S3 would refuse.
func validWrite(w *ledger.Write, toS3 bool) error {
	switch {
	case w == nil:
		return nil
	case !toS3:
		return errors.New("write options (storage class, encryption, metadata) need an S3 destination")
	}
	return w.Validate()
}

// WriteOf is the write options a transfer's tasks carry: nil for none.
func WriteOf(t ledger.Transfer) (*ledger.Write, error) {
	w, err := ledger.DecodeWrite(t.WriteOpts)
	if err != nil || w.IsZero() {
		return nil, err
	}
	return &w, nil
}

// crc is the algorithm the chunk computes.
func (p ChunkPayload) crc() checksum.Algorithm {
	if p.CRC == "" {
		return checksum.CRC64NVME
	}
	return checksum.Algorithm(p.CRC)
}

// ChunkTaskID is the chunk's asynq task ID: enqueueing it twice is a no-op
// while the first is pending, running, retrying or archived.
func ChunkTaskID(transfer string, gen, epoch, chunk int64) string {
	return "chunk:" + transfer + ":" + RunID(gen, epoch) + ":" + strconv.FormatInt(chunk, 10)
}

// RunID names a run of a transfer in its tasks' IDs: its generation and
// when its record was made (epoch, Unix ms; 0 if unknown). A record Redis
// lost (a restart without AOF) and made again has the same transfer ID and
// generation, but not the same epoch: a worker that finishes a task of the
// lost run then completes that task, not the new run's of the same name
// (asynq would drop the new one's message, and its object would never end).
func RunID(gen, epoch int64) string {
	if epoch == 0 {
		return strconv.FormatInt(gen, 10)
	}
	return strconv.FormatInt(gen, 10) + "." + strconv.FormatInt(epoch, 36)
}

// NewChunkTask builds a chunk task on the chunks queue with its
// deterministic ID; opts (retries, timeout) override the defaults.
func NewChunkTask(k *TaskKeys, p ChunkPayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode chunk payload: %w", err)
	}
	defaults := []asynq.Option{
		asynq.Queue(QueueChunks), asynq.MaxRetry(10), asynq.Timeout(10 * time.Minute),
		asynq.TaskID(ChunkTaskID(p.Transfer, p.Gen, p.Epoch, p.Chunk)),
	}
	return k.newTask(TypeChunk, b, append(defaults, opts...)...), nil
}

// rangeGetter is the S3 call a chunk makes.
type rangeGetter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ rangeGetter = (*s3.Client)(nil)

// chunkLedger is what a chunk reads and records.
type chunkLedger interface {
	StartChunk(ctx context.Context, id string, gen, index int64, now time.Time) (ledger.ChunkStart, error)
	PartReady(ctx context.Context, id string, gen int64, token, host string) (ledger.Part, error)
	ClaimPart(ctx context.Context, id string, gen int64, who string, ttl time.Duration) (ledger.Claim, error)
	ReleasePart(ctx context.Context, id string, gen int64, who string) error
	NoteUpload(ctx context.Context, uploadID, transfer string) error
	ChunkDone(ctx context.Context, id string, gen int64, c ledger.Landing) (landed, total int64, err error)
	Landed(ctx context.Context, id string, gen int64) (landed, total int64, err error)
	GetTransfer(ctx context.Context, id string) (ledger.Transfer, error)
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
	jobNoter
	DropPart(ctx context.Context, id string, gen int64, token string) (bool, error)
	ChunkTimes(ctx context.Context, id string) (median time.Duration, n int64, err error)
	ChunkProgress(ctx context.Context, id string, gen, index, bytes int64) (landed bool, err error)
	retryLedger
}

// ChunkHandler runs chunk tasks.
type ChunkHandler struct {
	// S3 resolves the endpoints tasks name (the source's, an S3
	// destination's).
	S3     Endpoints
	Ledger chunkLedger
	Queue  taskEnqueuer
	Log    *slog.Logger
	// NoFlush skips making each chunk durable before it is recorded (for
	// scratch data; the assembler then skips its fsync too).
	NoFlush bool
	// KeepCache keeps each chunk's pages in the page cache. By default
	// they are written to disk when the chunk ends (flushRange; with
	// NoFlush writeOut, which waits for the write but commits no
	// metadata) and dropped (dropCache): on disk they are of no further
	// use to the fleet, a download of many GiB would otherwise fill the
	// cache and evict what the host's other programs use, and the pages
	// freed are the next chunks' (bench/README.md: on the benchmarks' VM
	// fresh pages cost the workers 1 to 3 CPU-s a GiB instead of 0.6).
	KeepCache bool
	// DirectIO says when chunks are written with O_DIRECT, past the page
	// cache: DirectAuto (also when empty), DirectOn or DirectOff (see
	// direct.go). Never with KeepCache.
	DirectIO string
	// AssembleOptions are passed to NewAssembleTask (retention, retries).
	AssembleOptions []asynq.Option
	// SSECKeys are the worker's SSE-C keys by their base64 MD5.
	SSECKeys map[string][]byte
	// Limit, when set, caps the worker's download rate (all chunks share it).
	Limit *rate.Limiter
	// Metrics counts chunks and bytes; nil counts nothing.
	Metrics *metrics.Worker
	// Guard refuses destinations outside the worker's allow_dest roots.
	Guard location.Guard
	// Access refuses sources outside allow_read and S3 destinations
	// outside allow_write.
	Access Access
	// Worker names this worker in the ledger and in causes (WorkerName).
	Worker string
	// Parts tracks the part files and uploads this worker made, so that it
	// removes those that lost their object (see SweepParts); nil tracks
	// nothing.
	Parts *PartFiles
	// Keys sign the assembly task it enqueues (nil: unsigned).
	Keys *TaskKeys
	// RetryFor ends the retries of an object whose tasks have failed for
	// this long with no chunk landing (retry_for; 0: only max_retries).
	RetryFor time.Duration
	// StragglerAfter is how long a chunk runs before it may be a
	// straggler (straggler_after; 0: never). See stragglers.go.
	StragglerAfter time.Duration
}

// bufSize is the copy buffer, one per running chunk or batch: as large as
// a socket read on loopback gets, so that few syscalls move the bytes, and
// small enough that 16 of them are 4 MiB (make bench-pipeline compares
// builds).
const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// ProcessTask downloads the chunk, records it, and enqueues the assembler
// when it completes the object.
func (h *ChunkHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p ChunkPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return permanent("decode chunk payload: %v", err)
	}
	if err := p.Validate(); err != nil {
		return permanent("invalid chunk payload for transfer %q: %v", p.Transfer, err)
	}
	log := logger(h.Log).With("job", p.Job, "transfer", p.Transfer, "source", p.URL(), "chunk", p.Chunk)
	undo, err := h.process(ctx, p, log)
	if err == nil {
		return nil
	}
	if errors.Is(err, errNothingToDo) || errors.Is(err, errLandedElsewhere) {
		return nil
	}
	if errors.Is(err, ErrAvoided) {
		return err // another worker takes it soon
	}
	if liveness.LeaseOf(ctx).Lost() {
		return err // the chunk runs on another worker now: nothing to record here
	}
	if ctx.Err() != nil && !IsPermanent(err) {
		// Stopped: by `enqueue cancel` (asynq cancels the running task, and
		// the job's record says so), by shutdown or by the task's timeout.
		if x, gerr := h.Ledger.GetTransfer(context.WithoutCancel(ctx), p.Transfer); gerr == nil && x.State == ledger.Cancelled {
			undo()
			log.Info("chunk stopped: the job was cancelled")
			h.Metrics.ChunkFailed("revoked")
			return fmt.Errorf("transfer %s cancelled: %w", p.Transfer, asynq.RevokeTask)
		}
		return err // asynq retries it
	}
	err = outOfTime(ctx, h.Ledger, h.RetryFor, p.Transfer, p.Gen, err)
	if finalAttempt(ctx, err) {
		// Without space, without its part file or with another's, with its
		// source gone or changed or sending short bodies to the last, an
		// object's landed bytes are of no use: they and the part file go.
		clearData := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
			errors.Is(err, errPartGone) || errors.Is(err, ledger.ErrPartMismatch) ||
			errors.Is(err, errSourceGone) || errors.Is(err, ledger.ErrSourceChanged) || errors.Is(err, ErrShortBody)
		// The cause is recorded before the part file goes: a chunk of the
		// object that finds it gone then sees the object failed already,
		// rather than record a missing part file as the cause.
		// Only the chunk that ended the object removes the file: one that
		// ended otherwise (finalized by a duplicate run, say) is not this
		// chunk's to touch.
		ended, ferr := h.Ledger.Fail(context.WithoutCancel(ctx), p.Transfer, p.Gen, causeOf(err), clearData, time.Now())
		if ferr != nil {
			log.Error("record failure", "err", ferr)
			return ferr // retry: the failure must be recorded
		}
		if clearData && ended {
			undo()
		}
		log.Error("object failed", "err", err)
		h.Metrics.ChunkFailed("failed")
		return err
	}
	noteNoSpace(ctx, h.Ledger, p.Transfer, p.URL(), err)
	log.Warn("chunk failed, will retry", "err", err)
	h.Metrics.ChunkFailed("retried")
	return err
}

var (
	errNothingToDo = errors.New("transfer is not running")
	errPartGone    = errors.New("part file was removed")
)

// process runs the chunk and returns, with its outcome, what removes the
// part file or aborts the upload it wrote to (if it got that far): for a
// failure that ends the object with its data.
func (h *ChunkHandler) process(ctx context.Context, p ChunkPayload, log *slog.Logger) (undo func(), err error) {
	undo = func() {}
	_, dst, toS3, _ := location.ParseDest(p.Dest) // validated
	if err := h.Access.checkRead(p.Object); err != nil {
		return undo, err
	}
	if err := h.Access.checkSource(p.Object); err != nil {
		return undo, err
	}
	if toS3 {
		err = h.Access.checkWrite(dst)
	} else if err = h.Guard.Check(p.Dest); err != nil {
		err = fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	if err != nil {
		return undo, err
	}
	start, err := h.Ledger.StartChunk(ctx, p.Transfer, p.Gen, p.Chunk, time.Now())
	if err != nil {
		return undo, err
	}
	if p.Avoid == h.Worker && start.State == ledger.Running {
		// A copy of a straggler, on the straggler's worker: not here.
		if retried, _ := asynq.GetRetryCount(ctx); retried >= maxAvoided {
			return undo, errNothingToDo // no other worker took it: the chunk goes on where it runs
		}
		return undo, ErrAvoided
	}
	var landed, total int64
	switch start.State {
	case ledger.Running:
		if toS3 {
			undo, landed, total, err = h.upload(ctx, p, dst, start, log)
		} else {
			var part string
			part, landed, total, err = h.download(ctx, p, start, log)
			undo = func() { h.Parts.remove(part) }
		}
	case ledger.ChunkLanded:
		// A duplicate run: only make sure the assembler was enqueued.
		landed, total, err = h.Ledger.Landed(ctx, p.Transfer, p.Gen)
	case ledger.ChunkGone:
		return undo, permanent("no record of transfer %s (expired or forged)", p.Transfer)
	default:
		log.Debug("chunk skipped", "state", start.State)
		return undo, errNothingToDo
	}
	if err != nil {
		return undo, err
	}
	return undo, h.completeIfLast(ctx, p, landed, total, log)
}

// download fetches the chunk into the part file and records it.
// It returns the part file's path, and how many of the object's chunks
// have landed, of how many.
func (h *ChunkHandler) download(ctx context.Context, p ChunkPayload, start ledger.ChunkStart, log *slog.Logger) (part string, landed, total int64, err error) {
	w, token, err := h.openPart(ctx, p, start)
	if err != nil {
		if token != "" {
			part = location.PartPath(p.Dest, p.Transfer, token)
		}
		return part, 0, 0, err
	}
	defer w.File().Close()
	part = w.File().Name()
	began := time.Now()
	etag := p.ETag
	if etag == "" {
		etag = start.SourceETag // enqueued without a HEAD: pin what earlier chunks saw
	}
	n, crc, seen, err := h.fetch(ctx, p, etag, w, log)
	if errors.Is(err, fence.ErrMoved) {
		if w.Is(p.Dest) {
			return part, 0, 0, errNothingToDo // the assembler placed it: this run is a late duplicate
		}
		return part, 0, 0, h.partGone(ctx, p, token, part, start.PartHost)
	}
	if err != nil {
		return part, 0, 0, err
	}
	landed, total, err = h.landed(ctx, p, ledger.Landing{Index: p.Chunk, Part: token, CRC: crc, Length: n, ETag: seen}, began, log)
	return part, landed, total, err
}

// landed records a chunk that landed in the sink.
func (h *ChunkHandler) landed(ctx context.Context, p ChunkPayload, l ledger.Landing, began time.Time, log *slog.Logger) (landed, total int64, err error) {
	l.Took = time.Since(began)
	landed, total, err = h.Ledger.ChunkDone(ctx, p.Transfer, p.Gen, l)
	seen, n := l.ETag, l.Length
	switch {
	case errors.Is(err, ledger.ErrPartMismatch):
		return 0, 0, fmt.Errorf("%w: %s: %w (another worker's part file or upload is the transfer's now)", asynq.SkipRetry, p.what(), err)
	case errors.Is(err, ledger.ErrSourceChanged):
		return 0, 0, fmt.Errorf("%w: %s: the object changed during the transfer (this chunk's ETag %s differs from the others'): %w",
			asynq.SkipRetry, p.what(), seen, err)
	case err == nil:
		h.Metrics.ChunkDone(n, time.Since(began))
		log.Debug("chunk landed", "bytes", n, "took", time.Since(began))
	}
	return landed, total, err
}

// what names the chunk's object and range for messages.
func (p ChunkPayload) what() string {
	return p.URL() + " " + p.Range().Header()
}

// completeIfLast enqueues the assembler once every chunk has landed. Every
// chunk that sees the set complete tries; the task ID lets one through.
func (h *ChunkHandler) completeIfLast(ctx context.Context, p ChunkPayload, landed, total int64, log *slog.Logger) error {
	if landed < 0 || landed < total {
		return nil
	}
	// The record's queue, not this task's: a chunk enqueued again by a job
	// that attached is the same object, whose assembly belongs where its
	// first job put it (its --on host).
	queue, _ := asynq.GetQueueName(ctx)
	if x, err := h.Ledger.GetTransfer(ctx, p.Transfer); err == nil && x.Queue != "" {
		queue = x.Queue
	}
	task, err := NewAssembleTask(h.Keys, AssemblePayload{
		Job: p.Job, Transfer: p.Transfer, Gen: p.Gen, Epoch: p.Epoch, Bucket: p.Bucket, Key: p.Key, Dest: p.Dest, Size: p.Size,
	}, append(h.AssembleOptions, asynq.Queue(AssembleQueue(queue)))...)
	if err != nil {
		return err
	}
	if _, err := h.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue assembly of %s: %w", p.URL(), err)
	}
	log.Info("object complete, assembly enqueued", "chunks", total)
	return nil
}

// openPart opens the transfer's part file for writing, fenced (see
// package fence), and returns it with its token (the token alone, with an
// error about the transfer's file). Once the ledger names a part file,
// every chunk writes that one, and a worker that cannot see it (it does
// not share DEST with the worker that made it, or the file was removed)
// fails the object: the part file is never made again, so a removed one is
// not resurrected with holes, and each host's own file is never taken for
// the object. The first chunks to find none each make their own, with a
// token of their own, and the first to record its token wins; the others
// remove theirs.
func (h *ChunkHandler) openPart(ctx context.Context, p ChunkPayload, start ledger.ChunkStart) (*fence.Writer, string, error) {
	if start.PartReady {
		w, err := h.openExisting(ctx, p, start.PartToken, start.PartHost)
		return w, start.PartToken, err
	}
	if !p.Overwrite {
		if _, err := os.Lstat(p.Dest); err == nil {
			return nil, "", permanent("%s", location.Exists(p.Dest))
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.Dest), 0o755); err != nil {
		return nil, "", wrapLocal("create destination directory", location.MkdirError(p.Dest, err))
	}
	token := location.NewPartToken()
	part := location.PartPath(p.Dest, p.Transfer, token)
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, "", wrapLocal("create part file", err)
	}
	won, err := h.Ledger.PartReady(ctx, p.Transfer, p.Gen, token, h.Worker)
	if err != nil || won.Token != token {
		f.Close()
		os.Remove(part) // lost the race (or cannot tell): the file is of no use
	}
	switch {
	case err != nil:
		return nil, "", err
	case won.State != ledger.Running && won.State != ledger.Queued:
		if won.Token == token {
			f.Close()
			os.Remove(part)
		}
		return nil, "", errNothingToDo
	case won.Token != token:
		w, err := h.openExisting(ctx, p, won.Token, won.Host)
		return w, won.Token, err
	}
	h.Parts.add(p.Transfer, token, part, removeFile(part))
	w, err := fence.NewWriter(f, part, liveness.LeaseOf(ctx))
	if err != nil {
		f.Close()
		return nil, token, err
	}
	// Only the winner reserves the object's blocks, so racing creators do
	// not each hold its size on disk for a moment.
	if err := w.Do(0, 0, func() error { return preallocate(f, p.Size) }); err != nil {
		f.Close()
		err = h.noSpace(ctx, p, token, part, err)
		return nil, token, wrapLocal(fmt.Sprintf("allocate %d bytes for %s", p.Size, part), err) // unless given up, the file goes once the failure is recorded
	}
	return w, token, nil
}

// openExisting opens the part file another chunk made, fenced. A worker
// that finds none does not share DEST with its maker, or the file was
// removed: either way the object fails with that cause, unless it has
// ended meanwhile (a failure that removed the file is the cause then).
func (h *ChunkHandler) openExisting(ctx context.Context, p ChunkPayload, token, maker string) (*fence.Writer, error) {
	part := location.PartPath(p.Dest, p.Transfer, token)
	f, err := os.OpenFile(part, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, h.partGone(ctx, p, token, part, maker)
	}
	if err != nil {
		return nil, wrapLocal("open part file", err)
	}
	w, err := fence.NewWriter(f, part, liveness.LeaseOf(ctx))
	if err == nil {
		err = h.awaitAllocated(ctx, p, w, token, part, maker)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// partGone is the error of a chunk whose part file is not there: nothing
// to do if its object has ended (a failure removed the file), else the
// workers do not share DEST.
func (h *ChunkHandler) partGone(ctx context.Context, p ChunkPayload, token, part, maker string) error {
	x, gerr := h.Ledger.GetTransfer(ctx, p.Transfer)
	switch {
	case gerr != nil:
	case x.Gen != p.Gen || (x.State != ledger.Running && x.State != ledger.Queued):
		return errNothingToDo
	case x.PartToken != token:
		// Given up for want of space (DropPart): the next run starts anew.
		return fmt.Errorf("%w: part file %s was given up for want of space: the chunk tries again", ErrNoSpace, part)
	}
	return fmt.Errorf("%w: %w: %s", asynq.SkipRetry, errPartGone, location.PartMissing(part, maker, h.Worker))
}

// awaitAllocated waits until the part file has the object's size: its
// maker records it, then reserves its blocks (preallocate). A chunk that
// wrote before then could fill a nearly full disk through a file whose
// reservation is failing, and fail other objects; a maker whose
// reservation failed removes the file, and its object has failed. A maker
// that died before reserving it leaves it to the chunk that waited.
func (h *ChunkHandler) awaitAllocated(ctx context.Context, p ChunkPayload, w *fence.Writer, token, part, maker string) error {
	f := w.File()
	deadline := time.Now().Add(partClaimTTL)
	for {
		st, err := f.Stat()
		switch {
		case err != nil:
			return wrapLocal("stat part file", err)
		case st.Size() >= p.Size:
			return nil
		}
		if _, err := os.Lstat(part); errors.Is(err, fs.ErrNotExist) {
			return h.partGone(ctx, p, token, part, maker)
		}
		if time.Now().After(deadline) {
			// Its maker died between recording the file and reserving it:
			// this chunk reserves it.
			err := w.Do(0, 0, func() error { return preallocate(f, p.Size) })
			if errors.Is(err, fence.ErrMoved) {
				return h.partGone(ctx, p, token, part, maker)
			}
			if err != nil {
				return wrapLocal(fmt.Sprintf("allocate %d bytes for %s (its maker %s did not)", p.Size, part, maker), h.noSpace(ctx, p, token, part, err))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// noSpace judges a part file's allocation that failed (see the function
// noSpace). When the object may fit once space is freed, the file is
// given up, so that it holds none of the space meanwhile, and the next
// run (this chunk's retry, or a chunk that was waiting for the file) makes
// it anew.
func (h *ChunkHandler) noSpace(ctx context.Context, p ChunkPayload, token, part string, err error) error {
	err = noSpace(filepath.Dir(part), p.Size, err)
	if errors.Is(err, ErrNoSpace) {
		if dropped, derr := h.Ledger.DropPart(context.WithoutCancel(ctx), p.Transfer, p.Gen, token); derr == nil && dropped {
			h.Parts.remove(part)
		}
	}
	return err
}

// WorkerName names this worker process in records and causes: its host
// name (the host setting, or the machine's) and its process ID.
func WorkerName(host string) string {
	if host == "" {
		host, _ = os.Hostname()
	}
	return fmt.Sprintf("%s (pid %d)", host, os.Getpid())
}

// preallocate reserves the file's blocks, so a full disk fails at once
// rather than mid-object; where fallocate is unsupported it only sets the
// size.
func preallocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return f.Truncate(size)
	}
	return err
}

// wrapLocal names the operation of a file-system error and marks it
// permanent when a retry cannot help.
func wrapLocal(op string, err error) error {
	if err == nil {
		return nil
	}
	if localPermanent(err) {
		return fmt.Errorf("%w: %s: %w", asynq.SkipRetry, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// fetch GETs the range pinned to the enqueued object (to etag, when known)
// and streams it to its offset in f through a pooled buffer, computing its
// CRC on the way. It returns only when exactly the range's bytes are
// written (and flushed, unless NoFlush; and out of the page cache, unless
// KeepCache; with O_DIRECT where DirectIO allows, see direct.go), with the
// response's ETag. A
// response whose Content-Range says the object has another size than the
// one enqueued fails the object at once, with both sizes.
func (h *ChunkHandler) fetch(ctx context.Context, p ChunkPayload, etag string, w *fence.Writer, log *slog.Logger) (int64, uint64, string, error) {
	r := p.Range()
	out, g, err := h.getRange(ctx, p, etag)
	if err != nil {
		return 0, 0, "", err
	}
	defer out.Body.Close()
	var dst io.WriterAt = w
	d := &directWriter{w: w, dio: openDirect(h.DirectIO, h.KeepCache, w.File(), r.First)}
	if d.dio != nil {
		defer d.close()
		dst = d
	}
	n, crc, err := copyBody(ctx, dst, h.watch(ctx, p, out.Body), r.First, r.Len(), p.crc(), h.Limit, g.what())
	log.Debug("chunk written", "bytes", n, "direct_bytes", d.direct, "err", err)
	if err != nil {
		return n, crc, "", noSpace(filepath.Dir(w.File().Name()), p.Size, err)
	}
	op := ""
	switch {
	case !h.NoFlush:
		op, err = "flush", flushRange(w.File(), r.First, n)
	case !h.KeepCache:
		op, err = "write out", writeOut(w.File(), r.First, n)
	}
	if err != nil {
		err = wrapLocal(fmt.Sprintf("%s %s (%s)", op, w.File().Name(), p.what()), err)
		return n, crc, "", noSpace(filepath.Dir(w.File().Name()), p.Size, err)
	}
	if !h.KeepCache {
		dropCache(w.File(), r.First, n)
	}
	return n, crc, aws.ToString(out.ETag), nil
}

// getRange sends the chunk's ranged GET, pinned to the enqueued object
// (to etag, when known), and holds its response to the range and size
// (checkRange). The caller closes the body.
func (h *ChunkHandler) getRange(ctx context.Context, p ChunkPayload, etag string) (*s3.GetObjectOutput, getRequest, error) {
	g := p.Object.get(etag, p.Range().Header())
	api, err := client(ctx, h.S3, p.Remote, p.RemoteFP)
	if err != nil {
		return nil, g, err
	}
	out, err := get(ctx, api, g, h.SSECKeys)
	if err != nil {
		return nil, g, err
	}
	if err := checkRange(out, g, p.Range(), p.NoHead && p.ETag == ""); err != nil {
		out.Body.Close()
		return nil, g, err
	}
	return out, g, nil
}

// checkRange holds a ranged response to the range asked and the object's
// size as enqueued: Content-Length must be the range's, and the total of
// Content-Range the object's. A chunk of an object enqueued without an
// ETag (--expected-size) has nothing else to pin the object across chunks:
// its response must name both the ETag and the total, or it fails.
func checkRange(out *s3.GetObjectOutput, g getRequest, r chunker.Range, unpinned bool) error {
	total := int64(-1)
	if cr := aws.ToString(out.ContentRange); cr != "" {
		t, ok := contentRangeTotal(cr)
		switch {
		case !ok:
			return fmt.Errorf("%s: unreadable Content-Range %q", g.what(), cr)
		case t >= 0 && t != g.Size:
			return fmt.Errorf("%w: %w: %s: the object has %d bytes, not the %d enqueued", asynq.SkipRetry, errSourceGone, g.what(), t, g.Size)
		}
		total = t
	}
	if unpinned && (aws.ToString(out.ETag) == "" || total < 0) {
		return fmt.Errorf("%w: %w: %s: the response names no ETag or no total size (Content-Range %q), so nothing ties this chunk to the others' version of the object: --expected-size needs both",
			asynq.SkipRetry, errSourceGone, g.what(), aws.ToString(out.ContentRange))
	}
	if out.ContentLength != nil && *out.ContentLength != r.Len() {
		return fmt.Errorf("%s: server sent %d bytes, want %d", g.what(), *out.ContentLength, r.Len())
	}
	return nil
}

// contentRangeTotal reads the total of "bytes first-last/total"; an
// unknown total ("*") is -1.
func contentRangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok {
		return 0, false
	}
	if total == "*" {
		return -1, true
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// errWrite marks a failure on the file side of a copy.
var errWrite = errors.New("write")

// ErrShortBody reports a body that ended before its range did.
var ErrShortBody = errors.New("body shorter than the range")

// CopyAt copies exactly want bytes from src to dst at offset off through
// buf, and returns the bytes written and their CRC of algorithm alg (one
// of the CRCs). A body shorter or longer than want is an error.
//
// Reads are gathered until minWrite bytes (or the range's end) are in
// buf, then written. Over HTTPS every read is one TLS record, at most
// 16 KiB: written one by one, each paid for a fenced write's lock, stat
// and unlock (fence.Writer) besides its pwrite, 65,536 times a GiB, and
// the workers spent 3.9 CPU-s a GiB to s5cmd's 2.1 (bench/README.md).
// Not more than 256 KiB: filling 1 MiB first made every pwrite copy a
// whole MiB under the file's lock; on the 2-core VMs the benchmarks run
// on, perf showed the kernel copying into the page cache and spinning on
// the inode's lock, and 1 GiB took 3 s instead of 1.3.
func CopyAt(dst io.WriterAt, src io.Reader, off, want int64, buf []byte, alg checksum.Algorithm) (int64, uint64, error) {
	return copyAt(dst, src, off, want, buf, alg, false)
}

// copyAt is CopyAt; whole makes it write only whole buffers, and at the
// end the rest, so that every write but the last is as long as buf and, if
// off and len(buf) are aligned, aligned (a directWriter's).
func copyAt(dst io.WriterAt, src io.Reader, off, want int64, buf []byte, alg checksum.Algorithm, whole bool) (int64, uint64, error) {
	if len(buf) == 0 {
		return 0, 0, errors.New("copy body: empty buffer")
	}
	gather := min(minWrite, len(buf))
	if whole {
		gather = len(buf)
	}
	var n, read int64 // written, and read (n plus what buf holds)
	var crc uint64
	flush := func() error {
		if read == n {
			return nil
		}
		if _, err := dst.WriteAt(buf[:read-n], off+n); err != nil {
			return fmt.Errorf("%w at offset %d: %w", errWrite, off+n, err)
		}
		n = read
		return nil
	}
	for empty := 0; read < want; {
		held := int(read - n)
		m, rerr := src.Read(buf[held:min(int64(len(buf)), int64(held)+want-read)])
		if m > 0 {
			empty = 0
			crc = checksum.Update(alg, crc, buf[held:held+m])
			read += int64(m)
		}
		if read-n >= int64(gather) || read == want || (!whole && (rerr != nil || m == 0)) {
			if err := flush(); err != nil {
				return n, crc, err
			}
		}
		switch {
		case rerr == io.EOF && n < want:
			return n, crc, fmt.Errorf("%w: got %d of %d bytes", ErrShortBody, read, want)
		case rerr == io.EOF:
		case rerr != nil:
			return n, crc, fmt.Errorf("read body after %d of %d bytes: %w", n, want, rerr)
		case m == 0:
			if empty++; empty >= maxEmptyReads {
				return n, crc, fmt.Errorf("read body after %d of %d bytes: %w", n, want, io.ErrNoProgress)
			}
		}
	}
	if m, _ := src.Read(buf[:1]); m > 0 {
		return n, crc, fmt.Errorf("body longer than the range of %d bytes", want)
	}
	return n, crc, nil
}

// minWrite is how many bytes CopyAt gathers before it writes them (at
// most its buffer: bufSize, one per running chunk). Measured with the
// bench suite (bench/README.md): 16 KiB, 128 KiB and 256 KiB; 256 KiB was
// the fastest and cheapest over HTTPS and over plain HTTP.
const minWrite = 256 << 10

// maxEmptyReads is how many reads in a row may return nothing and no error
// before a body counts as broken (as bufio's limit of 100).
const maxEmptyReads = 100

// flushRange makes the bytes at [off, off+n) durable before the chunk is
// recorded: sync_file_range pushes just this range to disk (overlapping the
// disk with other chunks' downloads), then fdatasync commits the metadata
// that makes those blocks readable after a crash (extent conversion).
// Where the filesystem refuses sync_file_range (ENOSYS, EINVAL,
// EOPNOTSUPP), fdatasync does it all. The fdatasync is shared: see
// groupSync.
func flushRange(f *os.File, off, n int64) error {
	if err := writeOut(f, off, n); err != nil {
		return err
	}
	if err := partSyncs.sync(f); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// writeOut hands the dirty pages of [off, off+n) of f to the device and
// waits for them (sync_file_range), without the fdatasync that would make
// them durable: with flush=none, so that dropCache can drop them, and so
// that a write error fails the chunk rather than go unseen. Where the
// filesystem refuses sync_file_range (ENOSYS, EINVAL, EOPNOTSUPP) it does
// nothing, and the pages stay cached.
func writeOut(f *os.File, off, n int64) error {
	err := unix.SyncFileRange(int(f.Fd()), off, n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("sync_file_range: %w", err)
	}
	return nil
}

// dropCache drops the pages of [off, off+n) of f from the page cache
// (posix_fadvise DONTNEED), once flushRange or writeOut has written them:
// the kernel drops only clean pages that no one maps or writes, so no
// byte is lost (a duplicate of the chunk writing the same range keeps its
// dirty pages), and a failure leaves them cached, which is harmless
// (where the filesystem cannot drop them, as tmpfs, nothing changes).
func dropCache(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
