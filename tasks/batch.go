package tasks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// TypeBatch downloads many small objects whole, in one task: one Redis
// round trip to start them, one flush of the filesystem (syncfs) for all
// of them rather than an fsync each, one round trip to record them. It is
// the chunk and the assembler of each of its objects at once.
const TypeBatch = "s3fleet:batch"

// BatchObject is one object of a batch: what a chunk payload says, for an
// object fetched whole, plus what the assembler would read from the record.
type BatchObject struct {
	Transfer string `json:"transfer"`
	Gen      int64  `json:"gen"`
	Object
	// Dest is an absolute path, or an object URL with DestFP its
	// endpoint's fingerprint.
	Dest   string `json:"dest"`
	DestFP string `json:"dest_fp,omitempty"`
	// ServerSide has S3 copy the object itself (CopyObject).
	ServerSide bool `json:"server_side,omitempty"`
	// Delete deletes the object (enqueue rm); Dest is its own URL.
	Delete       bool  `json:"delete,omitempty"`
	LastModified int64 `json:"last_modified,omitempty"` // Unix ms
	Overwrite    bool  `json:"overwrite,omitempty"`
	// Write is what a copy sets on its S3 destination (nil: nothing).
	Write  *ledger.Write `json:"write,omitempty"`
	Verify string        `json:"verify,omitempty"` // off, auto (empty) or required
	// S3's checksum as enqueued, when known (a HEAD, a manifest line): the
	// bytes must match it, whatever the GET says.
	ChecksumAlgorithm string `json:"checksum_algorithm,omitempty"`
	ChecksumType      string `json:"checksum_type,omitempty"`
	Checksum          string `json:"checksum,omitempty"`
	// What else the record holds (see Record): the chunking, whether the
	// checksum as enqueued is all there is, and --expected-size.
	ChunkSize     int64  `json:"chunk_size,omitempty"`
	Chunks        int64  `json:"chunks,omitempty"`
	Parts         string `json:"parts,omitempty"`
	ChecksumKnown bool   `json:"checksum_known,omitempty"`
	NoHead        bool   `json:"no_head,omitempty"`
}

// BatchPayload is a batch task's payload.
type BatchPayload struct {
	Job     string        `json:"job"`
	Objects []BatchObject `json:"objects"`
	// Pending says its objects have no records yet: the enqueuer counted
	// them in the job (ledger.Pend), and the batch's first start creates
	// them (ledger.Materialize). A million queued small objects then cost
	// Redis their share of a compressed payload, not a record each.
	Pending bool `json:"pending,omitempty"`
}

// BatchObjectOf is the batch object of a transfer's record: Record's
// inverse.
func BatchObjectOf(t ledger.Transfer) (BatchObject, error) {
	write, err := WriteOf(t)
	if err != nil {
		return BatchObject{}, err
	}
	return BatchObject{
		Transfer: t.ID, Gen: t.Gen, Object: ObjectOf(t), Dest: t.Dest, DestFP: t.DestFP, ServerSide: t.ServerSide, Delete: t.Delete,
		LastModified: t.LastModified, Overwrite: t.Overwrite, Write: write, Verify: t.Verify,
		ChecksumAlgorithm: t.ChecksumAlgorithm, ChecksumType: t.ChecksumType, Checksum: t.Checksum,
		ChunkSize: t.ChunkSize, Chunks: t.Chunks, Parts: t.Parts, ChecksumKnown: t.ChecksumKnown, NoHead: t.NoHead,
	}, nil
}

// Record is the transfer record a pending object makes when its batch
// first starts, in the given chunk queue; its Identity must be its ID.
func (o BatchObject) Record(queue string) ledger.Transfer {
	t := ledger.Transfer{
		ID: o.Transfer, Gen: o.Gen, Remote: o.Remote, RemoteFP: o.RemoteFP, Bucket: o.Bucket, Key: o.Key, VersionID: o.VersionID,
		ETag: o.ETag, Size: o.Size, ChunkSize: o.ChunkSize, Chunks: o.Chunks, Parts: o.Parts, Dest: o.Dest, DestFP: o.DestFP,
		ServerSide: o.ServerSide, Delete: o.Delete, LastModified: o.LastModified,
		ChecksumAlgorithm: o.ChecksumAlgorithm, ChecksumType: o.ChecksumType, Checksum: o.Checksum, ChecksumKnown: o.ChecksumKnown,
		Verify: o.Verify, Overwrite: o.Overwrite, NoHead: o.NoHead, Queue: queue,
		RequestPayer: o.RequestPayer, ExpectedOwner: o.ExpectedOwner, SSECKeyMD5: o.SSECKeyMD5,
		SourcePath: o.Path, SourcePin: o.Pin,
	}
	if o.Write != nil {
		t.WriteOpts = o.Write.Encode()
	}
	return t
}

// A batch payload is JSON compressed with zstd: a hundred objects that
// share their bucket, prefixes and field names shrink several times, and a
// million queued objects are mostly their payloads. The encoder and
// decoder are safe for concurrent use; the decoder refuses to grow a
// payload past 64 MiB.
var (
	zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// EncodeBatch is a batch task's payload bytes.
func EncodeBatch(p BatchPayload) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode batch payload: %w", err)
	}
	return zstdEnc.EncodeAll(b, make([]byte, 0, len(b)/4)), nil
}

// DecodeBatch reads a batch task's payload: compressed, or plain JSON as
// earlier versions wrote it.
func DecodeBatch(b []byte) (BatchPayload, error) {
	var p BatchPayload
	if bytes.HasPrefix(b, zstdMagic) {
		var err error
		if b, err = zstdDec.DecodeAll(b, nil); err != nil {
			return p, fmt.Errorf("decompress batch payload: %w", err)
		}
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode batch payload: %w", err)
	}
	return p, nil
}

// BatchTaskID names a batch by its objects: the same objects, the same ID;
// a pending batch, by its job too (two jobs' pending batches of the same
// objects are two tasks: each job's count waits for its own).
func BatchTaskID(p BatchPayload) string {
	h := sha256.New()
	if p.Pending {
		h.Write([]byte("pending:" + p.Job + ","))
	}
	for _, o := range p.Objects {
		h.Write([]byte(o.Transfer + ":" + strconv.FormatInt(o.Gen, 10) + ","))
	}
	return "batch:" + hex.EncodeToString(h.Sum(nil)[:12])
}

// NewBatchTask builds a batch task; opts (queue, retries, retention)
// override the defaults.
func NewBatchTask(k *TaskKeys, p BatchPayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := EncodeBatch(p)
	if err != nil {
		return nil, err
	}
	defaults := []asynq.Option{
		asynq.Queue(QueueChunks), asynq.MaxRetry(10), asynq.Timeout(10 * time.Minute),
		asynq.Retention(7 * 24 * time.Hour), asynq.TaskID(BatchTaskID(p)),
	}
	return k.newTask(TypeBatch, b, append(defaults, opts...)...), nil
}

func (o BatchObject) validate() error {
	if err := o.Object.validate(); err != nil {
		return err
	}
	switch {
	case o.Transfer == "":
		return errors.New("missing transfer")
	case o.Gen < 1:
		return fmt.Errorf("generation %d", o.Gen)
	case o.Size < 0:
		return fmt.Errorf("size %d", o.Size)
	case o.Size > MaxPutObject && location.IsURL(o.Dest) && !o.Delete && !o.ServerSide: // held in memory on its way
		return fmt.Errorf("a %d-byte object is too large to copy whole (at most %d)", o.Size, MaxPutObject)
	}
	if o.Delete {
		if o.Path != "" || o.ServerSide || o.Write != nil || o.Dest != o.URL() {
			return errors.New("a delete names its object as its destination, and nothing else")
		}
		return nil
	}
	_, dst, toS3, err := location.ParseDest(o.Dest)
	if err == nil && o.Path != "" && !toS3 {
		err = errors.New("a local source needs an S3 destination")
	}
	if err == nil {
		err = validWrite(o.Write, toS3)
	}
	if err == nil && o.ServerSide && (!toS3 || dst.Remote != o.Remote || o.ETag == "" || o.Path != "") {
		err = errors.New("a server-side copy needs a destination on the source's endpoint and the source's ETag")
	}
	return err
}

// materializer creates the records of a pending batch.
type materializer interface {
	Materialize(ctx context.Context, b ledger.PendingBatch, now time.Time) (bool, error)
}

// Materialize creates the records of a pending batch's objects (once: a
// later call finds them made and does nothing), in the chunk queue the
// batch runs in; cancel makes them cancelled rather than queued (a batch
// deleted before it ran). An object whose fields do not give its ID is
// refused, and so is the batch.
func Materialize(ctx context.Context, led materializer, p BatchPayload, queue string, cancel bool) error {
	if queue == "" {
		queue = QueueChunks
	}
	b := ledger.PendingBatch{Job: p.Job, ID: BatchTaskID(p), Cancel: cancel, Objects: make([]ledger.Transfer, len(p.Objects))}
	for i, o := range p.Objects {
		t := o.Record(queue)
		t.Batch = b.ID
		if err := t.CheckIdentity(); err != nil {
			return fmt.Errorf("%w: batch %s: %w", asynq.SkipRetry, b.ID, err)
		}
		b.Objects[i] = t
	}
	_, err := led.Materialize(ctx, b, time.Now())
	return err
}

// batchLedger is what a batch reads and records.
type batchLedger interface {
	materializer
	StartBatch(ctx context.Context, batch string, items []ledger.BatchItem, now time.Time) ([]string, error)
	SucceedBatch(ctx context.Context, results []ledger.BatchResult, now time.Time) ([]bool, error)
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
	jobNoter
	retryLedger
}

// BatchHandler runs batch tasks.
type BatchHandler struct {
	S3       Endpoints
	Ledger   batchLedger
	Log      *slog.Logger
	NoFlush  bool
	SSECKeys map[string][]byte
	Limit    *rate.Limiter
	Metrics  *metrics.Worker
	Guard    location.Guard
	// Access refuses sources outside allow_read and S3 destinations
	// outside allow_write.
	Access Access
	// VerifyDisk reads each object back from the device after the flush
	// (assembler.ReadBack) and fails it unless its bytes are the ones
	// downloaded.
	VerifyDisk bool
	// RetryFor ends the retries of an object failing this long with no
	// progress (retry_for; 0: only max_retries).
	RetryFor time.Duration
}

// fetched is an object downloaded to its part file, judged, and placed
// once placed is set.
type fetched struct {
	o      BatchObject
	f      *os.File
	v      ledger.Result
	ev     assembler.Evidence
	placed bool // renamed to its final name: nothing to remove
}

// batchDirs is what one run of a batch remembers of its destination
// directories, so that the objects sharing one (most batches: a hundred
// objects, one directory) check it against allow_dest, make it and list
// its stale part files once, not once each.
type batchDirs struct {
	resolved map[string]string   // a directory: what its symlinks resolve to
	made     map[string]bool     // directories that exist (made or found)
	parts    map[string][]string // a directory: the part files in it when first asked
	listings int                 // directories read for part files
}

func newBatchDirs() *batchDirs {
	return &batchDirs{resolved: map[string]string{}, made: map[string]bool{}, parts: map[string][]string{}}
}

// removeStaleParts removes the part files earlier runs of the object left
// behind. The object's directory is read once a batch run, for all its
// objects: a glob per object read the whole directory each time, and a
// batch of a hundred handed back in a directory of a million files read
// a hundred million names. What the listing holds is what was there when
// it was read: a part file an earlier run still alive makes later is its
// own to remove (it removes its part files when it ends).
func (d *batchDirs) removeStaleParts(o BatchObject) {
	dir := filepath.Dir(o.Dest)
	names, ok := d.parts[dir]
	if !ok {
		names = partFilesIn(dir)
		d.parts[dir] = names
		d.listings++
	}
	for _, name := range names {
		if location.IsPartOf(name, o.Dest, o.Transfer) {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
}

// partFilesIn lists the names of the part files in dir, read in pages so
// that a large directory is never held whole.
func partFilesIn(dir string) []string {
	f, err := os.Open(dir)
	if err != nil {
		return nil // no directory, no part files
	}
	defer f.Close()
	var parts []string
	for {
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			if strings.HasSuffix(n, ".part") {
				parts = append(parts, n)
			}
		}
		if err != nil {
			return parts
		}
	}
}

// ProcessTask downloads the batch's objects that are still to do, places
// and records them; objects that fail for good are recorded failed, and a
// transient failure makes asynq run the batch again for the rest only.
func (h *BatchHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := DecodeBatch(t.Payload())
	if err != nil {
		return permanent("%v", err)
	}
	for _, o := range p.Objects {
		if err := o.validate(); err != nil {
			return permanent("invalid batch payload for transfer %q: %v", o.Transfer, err)
		}
	}
	log := logger(h.Log).With("job", p.Job)
	if p.Pending {
		queue, _ := asynq.GetQueueName(ctx)
		if err := Materialize(ctx, h.Ledger, p, queue, false); err != nil {
			return err
		}
	}
	items := make([]ledger.BatchItem, len(p.Objects))
	for i, o := range p.Objects {
		items[i] = ledger.BatchItem{ID: o.Transfer, Gen: o.Gen}
	}
	states, err := h.Ledger.StartBatch(ctx, BatchTaskID(p), items, time.Now())
	if err != nil {
		return err
	}

	var got []fetched
	var results []ledger.BatchResult
	var records []assembler.Record
	var retry []error
	var retryObjs []BatchObject
	defer func() {
		for _, g := range got {
			g.f.Close()
			if !g.placed {
				os.Remove(g.f.Name())
			}
		}
	}()
	dirs := newBatchDirs()
	listed := time.Now() // the listing's trust runs from before it, when it looks
	absent := h.listAbsent(ctx, p.Objects, states, log)
	var deletes []BatchObject
	for i, o := range p.Objects {
		if states[i] != ledger.Running {
			continue
		}
		if o.Delete {
			deletes = append(deletes, o)
			continue
		}
		began := time.Now()
		if location.IsURL(o.Dest) {
			var res ledger.BatchResult
			var rec assembler.Record
			if o.ServerSide {
				if !o.Overwrite && time.Since(listed) > listTrust {
					listed = time.Now()
					absent = h.listAbsent(ctx, p.Objects[i:], states[i:], log)
				}
				res, rec, err = h.copyWhole(ctx, o, absent[o.Transfer])
			} else {
				res, rec, err = h.put(ctx, o)
			}
			if err != nil {
				if !h.failNow(ctx, o, err, log) {
					retry, retryObjs = append(retry, err), append(retryObjs, o)
				}
				continue
			}
			h.Metrics.ChunkDone(o.Size, time.Since(began))
			results, records = append(results, res), append(records, rec)
			continue
		}
		g, err := h.fetch(ctx, o, dirs)
		if err != nil {
			if h.failNow(ctx, o, err, log) {
				continue
			}
			noteNoSpace(ctx, h.Ledger, o.Transfer, o.URL(), err)
			retry, retryObjs = append(retry, err), append(retryObjs, o)
			continue
		}
		h.Metrics.ChunkDone(o.Size, time.Since(began))
		got = append(got, g)
	}

	if len(deletes) > 0 {
		res, recs, errs, objs := h.deleteAll(ctx, deletes, log)
		results, records = append(results, res...), append(records, recs...)
		retry, retryObjs = append(retry, errs...), append(retryObjs, objs...)
	}
	if len(got) > 0 && (!h.NoFlush || h.VerifyDisk) {
		if err := flushAll(got); err != nil {
			return err
		}
	}
	if h.VerifyDisk {
		got = h.readBack(ctx, got, log)
	}
	placedIn := map[string]bool{}
	for i := range got {
		g := &got[i]
		// A worker taken for dead places nothing: the batch runs elsewhere.
		if err := liveness.Held(ctx); err != nil {
			return fmt.Errorf("place %s: %w", g.o.Dest, err)
		}
		if err := assembler.Rename(g.f.Name(), g.o.Dest, g.o.Overwrite); err != nil {
			if !errors.Is(err, os.ErrExist) || !assembler.IsOurs(g.o.Dest, g.o.Transfer) {
				h.failNow(ctx, g.o, fmt.Errorf("%w: %w", asynq.SkipRetry, alreadyExists(g.o.Dest, err)), log)
				continue
			}
			// An earlier run of this batch placed it already.
		} else {
			g.placed = true
		}
		placedIn[filepath.Dir(g.o.Dest)] = true
		results = append(results, ledger.BatchResult{BatchItem: ledger.BatchItem{ID: g.o.Transfer, Gen: g.o.Gen}, Size: g.o.Size, Result: g.v})
		records = append(records, assembler.Record{Transfer: g.o.Transfer, Source: g.o.URL(),
			VersionID: g.o.VersionID, ETag: g.o.ETag, Size: g.o.Size, Checksum: g.v.Computed, ChecksumAlgorithm: g.v.Algorithm, Check: g.v.Check, CheckReason: g.v.Reason,
			Chunks: 1, Attempts: 1, Path: g.o.Dest, State: ledger.Success})
	}
	if !h.NoFlush {
		for d := range placedIn {
			if err := assembler.SyncDir(d); err != nil {
				return err
			}
		}
	}
	changed, err := h.Ledger.SucceedBatch(ctx, results, time.Now())
	if err != nil {
		return err
	}
	for i, c := range changed {
		if c {
			h.Metrics.ObjectFinalized(ledger.Success)
			h.Metrics.ObjectVerified(results[i].Check)
		}
	}
	if len(records) > 0 {
		if b, err := json.Marshal(records); err == nil && t.ResultWriter() != nil {
			_, _ = t.ResultWriter().Write(b)
		}
	}
	log.Debug("batch done", "objects", len(p.Objects), "placed", len(results), "to retry", len(retry))
	if len(retry) == 0 {
		return nil
	}
	err = fmt.Errorf("%d of %d objects to retry: %w", len(retry), len(p.Objects), errors.Join(retry...))
	if finalAttempt(ctx, err) {
		for i, o := range retryObjs {
			h.failNow(ctx, o, fmt.Errorf("%w: %w", asynq.SkipRetry, retry[i]), log)
		}
	}
	h.Metrics.ChunkFailed("retried")
	return err
}

// readBack reads each flushed object back from the device and fails those
// whose bytes differ from what was downloaded; it returns the others.
func (h *BatchHandler) readBack(ctx context.Context, got []fetched, log *slog.Logger) []fetched {
	ok := got[:0]
	for _, g := range got {
		crc, direct, err := assembler.ReadBack(g.f, g.ev.CRCAlgorithm, g.o.Size)
		if err == nil && crc != g.ev.CRC {
			err = fmt.Errorf("%w: %s: %s %s read back (direct I/O: %v), %s downloaded", assembler.ErrDiskMismatch, g.o.URL(),
				g.ev.CRCAlgorithm, checksum.Encode(g.ev.CRCAlgorithm, crc), direct, checksum.Encode(g.ev.CRCAlgorithm, g.ev.CRC))
		}
		if err != nil {
			h.failNow(ctx, g.o, fmt.Errorf("%w: %w", asynq.SkipRetry, err), log)
			g.f.Close()
			os.Remove(g.f.Name())
			continue
		}
		ok = append(ok, g)
	}
	return ok
}

// failNow records an object failed when err leaves no retry, and reports
// whether it did.
func (h *BatchHandler) failNow(ctx context.Context, o BatchObject, err error, log *slog.Logger) bool {
	if liveness.LeaseOf(ctx).Lost() {
		return false
	}
	if err = outOfTime(ctx, h.Ledger, h.RetryFor, o.Transfer, o.Gen, err); !IsPermanent(err) {
		return false
	}
	if _, ferr := h.Ledger.Fail(context.WithoutCancel(ctx), o.Transfer, o.Gen, causeOf(err), false, time.Now()); ferr != nil {
		log.Error("record failure", "transfer", o.Transfer, "err", ferr)
	}
	h.Metrics.ChunkFailed("failed")
	log.Error("object failed", "transfer", o.Transfer, "source", o.URL(), "err", causeOf(err))
	return true
}

func alreadyExists(dest string, err error) error {
	if errors.Is(err, os.ErrExist) {
		return errors.New(location.Exists(dest))
	}
	return err
}

// fetch GETs the whole object, pinned by its ETag, into a new part file of
// its own (two runs of the same batch never share one), checks its length,
// computes as it streams the CRC and, when S3 keeps one that cannot be
// combined (or only a single-part ETag), that sum too, judges them
// (assembler.Decide), and marks the file (xattrs, mtime).
func (h *BatchHandler) fetch(ctx context.Context, o BatchObject, dirs *batchDirs) (fetched, error) {
	if err := h.Guard.CheckIn(o.Dest, dirs.resolved); err != nil {
		return fetched{}, fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	if !o.Overwrite {
		if _, err := os.Lstat(o.Dest); err == nil && !assembler.IsOurs(o.Dest, o.Transfer) {
			return fetched{}, permanent("%s", location.Exists(o.Dest))
		}
	}
	if err := h.Access.checkRead(o.Object); err != nil {
		return fetched{}, err
	}
	out, body, subject, ev, err := h.getWhole(ctx, o)
	if err != nil {
		return fetched{}, err
	}
	defer out.Body.Close()
	what := o.get("", "").what()
	if retried, _ := asynq.GetRetryCount(ctx); retried > 0 || liveness.FailedOver(ctx) != "" {
		dirs.removeStaleParts(o) // an earlier run may have died holding some
	}
	f, err := h.create(o, dirs)
	if err != nil {
		return fetched{}, err
	}
	discard := func(err error) (fetched, error) {
		f.Close()
		os.Remove(f.Name())
		return fetched{}, err
	}
	if _, ev.CRC, err = copyBody(ctx, f, body, 0, o.Size, ev.CRCAlgorithm, h.Limit, what); err != nil {
		return discard(noSpace(filepath.Dir(o.Dest), o.Size, err))
	}
	check, reason, err := assembler.Decide(subject, ev, assembler.FileRereader(f))
	if err != nil {
		return discard(fmt.Errorf("%w: %w", asynq.SkipRetry, err))
	}
	lastModified := o.LastModified
	if lastModified == 0 && out.LastModified != nil {
		lastModified = out.LastModified.UnixMilli() // --expected-size: the GET says it
	}
	if err := assembler.Mark(f, o.Transfer, subject.ETag, lastModified); err != nil {
		return discard(wrapLocal("mark "+f.Name(), err))
	}
	return fetched{o: o, f: f, ev: ev, v: ledger.Result{Computed: checksum.Encode(ev.CRCAlgorithm, ev.CRC),
		Algorithm: string(ev.CRCAlgorithm), Check: check, Reason: reason}}, nil
}

// getWhole GETs the whole object, pinned by its ETag, checks its length,
// and returns its body (teed, when S3 keeps a checksum that cannot be
// combined, or only a single-part ETag, into that sum), what its bytes are
// to be judged against, and the evidence to fill as they are read: the
// source side of a batch object, whatever its destination. The caller
// closes out.Body.
func (h *BatchHandler) getWhole(ctx context.Context, o BatchObject) (*s3.GetObjectOutput, io.Reader, assembler.Subject, assembler.Evidence, error) {
	var subject assembler.Subject
	var ev assembler.Evidence
	g := o.get("", "")
	g.Checksum = o.Verify != assembler.VerifyOff
	what := g.what()
	api, err := client(ctx, h.S3, o.Remote, o.RemoteFP)
	if err != nil {
		return nil, nil, subject, ev, err
	}
	out, err := get(ctx, api, g, h.SSECKeys)
	if err != nil {
		return nil, nil, subject, ev, err
	}
	fail := func(err error) (*s3.GetObjectOutput, io.Reader, assembler.Subject, assembler.Evidence, error) {
		out.Body.Close()
		return nil, nil, subject, ev, err
	}
	if n := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != o.Size {
		return fail(fmt.Errorf("%w: %w: %s: the object has %d bytes, not the %d enqueued", asynq.SkipRetry, errSourceGone, what, n, o.Size))
	}
	sum, err := enqueuedSum(o, assembler.SumOf(out), what)
	if err != nil {
		return fail(err)
	}
	subject = assembler.Subject{Source: o.URL(), Mode: o.Verify, Sum: sum,
		ETag: firstNonEmpty(o.ETag, aws.ToString(out.ETag)), Encrypted: o.SSECKeyMD5 != "" || assembler.KeyEncrypted(out.ServerSideEncryption, out.SSECustomerAlgorithm)}
	ev = assembler.Evidence{CRCAlgorithm: assembler.CRCFor(subject.Sum.Algorithm), Size: o.Size}
	body := io.Reader(out.Body)
	if ev.HashAlgorithm = assembler.WantHash(subject); ev.HashAlgorithm != "" {
		if ev.Hash, err = checksum.New(ev.HashAlgorithm); err != nil {
			return fail(err)
		}
		body = io.TeeReader(body, ev.Hash) // one pass: the sum is computed from the bytes as they are copied
	}
	return out, body, subject, ev, nil
}

// enqueuedSum is the checksum a batch object's bytes are judged by: the
// one the GET names, held to the one enqueued when that is known. An
// enqueued value the GET does not repeat (no checksum sent, or another
// algorithm's) is what the bytes must match; a different value of the same
// algorithm is another version of the object.
func enqueuedSum(o BatchObject, got assembler.Sum, what string) (assembler.Sum, error) {
	if o.Checksum == "" {
		return got, nil
	}
	want := assembler.Sum{Algorithm: checksum.Algorithm(o.ChecksumAlgorithm), Type: o.ChecksumType, Value: o.Checksum}
	switch {
	case got.Value == "" || got.Algorithm != want.Algorithm:
		return want, nil
	case got.Value != want.Value:
		return got, fmt.Errorf("%w: %w: %s: its %s is %s, not the %s enqueued", asynq.SkipRetry, errSourceGone, what, got.Algorithm, got.Value, want.Value)
	}
	return got, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// create makes a new part file beside the destination, with a token of
// its own: two runs of the same batch never share one.
func (h *BatchHandler) create(o BatchObject, dirs *batchDirs) (*os.File, error) {
	if dir := filepath.Dir(o.Dest); !dirs.made[dir] {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, wrapLocal("create destination directory", location.MkdirError(o.Dest, err))
		}
		dirs.made[dir] = true
	}
	part := location.PartPath(o.Dest, o.Transfer, location.NewPartToken())
	// unix.Open and os.NewFile rather than os.OpenFile, which offers every
	// file to the network poller: for a regular file that is four fcntl and
	// an epoll_ctl that fails, a third of a small object's system calls.
	fd, err := openFile(part, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, wrapLocal("create part file", &os.PathError{Op: "open", Path: part, Err: err})
	}
	return os.NewFile(uintptr(fd), part), nil
}

// flushAll makes the batch's part files durable: one syncfs for the
// filesystem of the first, instead of an fsync a file, and an fsync for
// each file on another filesystem (a directory of its own is asked once).
func flushAll(got []fetched) error {
	first := got[0].f
	if err := unix.Syncfs(int(first.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", filepath.Dir(first.Name()), err)
	}
	covered := map[string]bool{filepath.Dir(first.Name()): true}
	for _, g := range got[1:] {
		dir := filepath.Dir(g.f.Name())
		same, ok := covered[dir]
		if !ok {
			same = sameFS(g.f, first)
			covered[dir] = same
		}
		if !same {
			if err := g.f.Sync(); err != nil {
				return fmt.Errorf("flush %s: %w", g.o.URL(), err)
			}
		}
	}
	return nil
}

// sameFS reports whether two open files live on one filesystem, so one
// syncfs covers both.
func sameFS(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(int(a.Fd()), &sa) == nil && unix.Fstat(int(b.Fd()), &sb) == nil && sa.Dev == sb.Dev
}
