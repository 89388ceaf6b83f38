// Package assembler finalizes a downloaded object once all its chunks have
// landed: it checks the chunk records and that the part file is the one
// they were written to, combines their CRCs into the object's and compares
// that with S3's checksum (or, with verify: required, reads the file again
// for a checksum that cannot be combined), sets the file's mtime, fsyncs,
// renames the part file to its final name atomically, fsyncs the directory
// and records the result. Decide is the one place where an object's bytes
// are judged, for chunked objects and batched ones alike.
//
// It is idempotent: asynq may run an assembler task twice, and a crash may
// stop it between any two steps; running it again finishes the job or
// returns the record already made.
package assembler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/internal/fence"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// Extended attributes set on every finished file.
const (
	XattrTransfer = "user.s3fleet.transfer"
	XattrETag     = "user.s3fleet.etag"
)

// ErrRecorded wraps failures the assembler has already recorded in the
// ledger.
var ErrRecorded = errors.New("failure recorded")

// ErrChecksum reports bytes that do not match the source's checksum.
var ErrChecksum = errors.New("checksum mismatch")

// Record is the result of one object, kept in Redis and as the assembler
// task's result.
type Record struct {
	Transfer  string `json:"transfer"`
	Source    string `json:"source"`
	VersionID string `json:"version_id,omitempty"`
	ETag      string `json:"etag,omitempty"`
	Size      int64  `json:"size"`
	// Checksum is the CRC the fleet computed over the bytes, as S3 prints
	// checksums, and ChecksumAlgorithm its algorithm: the object's own CRC
	// when S3 keeps one, else CRC64NVME. When Check names that algorithm,
	// it is S3's checksum too.
	Checksum          string `json:"checksum,omitempty"`
	ChecksumAlgorithm string `json:"checksum_algorithm,omitempty"`
	// Check is what the bytes were compared with: crc64nvme, crc32,
	// crc32c, sha256, sha1, sha512, md5 (a single-part ETag), present (the
	// file was there already) or none, with CheckReason saying why.
	Check       string  `json:"check,omitempty"`
	CheckReason string  `json:"check_reason,omitempty"`
	Chunks      int64   `json:"chunks"`
	Attempts    int64   `json:"attempts"`
	DurationMS  int64   `json:"duration_ms"`
	MBPerSec    float64 `json:"mb_per_s"`
	Path        string  `json:"path"`
	State       string  `json:"state"`
	Error       string  `json:"error,omitempty"`
	// Finalized is true when this run of the assembler recorded the
	// object; a duplicate run finds it recorded already.
	Finalized bool `json:"-"`
}

// RecordOf renders a transfer's record.
func RecordOf(t ledger.Transfer) Record {
	r := Record{
		Transfer: t.ID, Source: t.Source(), VersionID: t.VersionID, ETag: t.ETag, Size: t.Size,
		Checksum: t.Computed, ChecksumAlgorithm: t.ComputedAlgorithm, Check: t.Check, CheckReason: t.CheckReason, Chunks: t.Chunks, Attempts: t.Attempts, Path: t.Dest,
		State: t.State, Error: t.Error,
	}
	began := t.Started
	if began == 0 {
		began = t.Created
	}
	if t.Finished > 0 && began > 0 {
		r.DurationMS = max(t.Finished-began, 0)
		if r.DurationMS > 0 {
			r.MBPerSec = math.Round(float64(t.Size)/1e6/(float64(r.DurationMS)/1e3)*10) / 10
		}
	}
	return r
}

// endpoints resolves the remote a transfer names to this worker's client
// for it (s3client.Set).
type endpoints interface {
	Client(ctx context.Context, remote, fingerprint string) (*s3.Client, error)
	Secure(remote string) bool // reached over TLS
}

var _ endpoints = (*s3client.Set)(nil)

// store is the part of the ledger the assembler uses.
type store interface {
	GetTransfer(ctx context.Context, id string) (ledger.Transfer, error)
	Chunks(ctx context.Context, id string) (map[int64]ledger.Chunk, error)
	Succeed(ctx context.Context, id string, gen int64, r ledger.Result, now time.Time) (bool, error)
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
}

// Assembler finalizes objects.
type Assembler struct {
	// S3 resolves the endpoints transfers name: the source's (a HEAD for
	// its checksum) and an S3 destination's.
	S3     endpoints
	Ledger store
	Log    *slog.Logger
	// Options applies a transfer's S3 request options (payer, owner, the
	// worker's SSE-C key) to the checksum HEAD.
	Options func(in *s3.HeadObjectInput, t ledger.Transfer) error
	// SSECKeys are the worker's SSE-C keys by MD5, for a copy to S3 of an
	// SSE-C object, which is written with the same key.
	SSECKeys map[string][]byte
	// Guard refuses destinations outside the worker's allow_dest roots.
	Guard location.Guard
	// AllowWrite refuses S3 destinations outside the worker's allow_write.
	AllowWrite location.Prefixes
	// NoFlush (flush=none, scratch data) skips the fsyncs of the file and
	// its directory: the rename is atomic for every reader, but a machine
	// that crashes soon after may lose the file's bytes.
	NoFlush bool
	// Worker names this worker in causes (tasks.WorkerName).
	Worker string
	// VerifyDisk reads each finished file back from the device after its
	// fsync (ReadBack) and fails the object unless its CRC is the one
	// computed as it downloaded; it implies the fsync even with NoFlush.
	VerifyDisk bool
}

// Assemble finalizes generation gen of a transfer and returns its record.
func (a *Assembler) Assemble(ctx context.Context, id string, gen int64) (Record, error) {
	t, err := a.Ledger.GetTransfer(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	if err != nil {
		return Record{}, err
	}
	if err := t.CheckIdentity(); err != nil {
		return Record{}, fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	if t.Gen != gen || (t.State != ledger.Running && t.State != ledger.Queued) {
		return RecordOf(t), nil // finalized already, failed, cancelled, or superseded
	}
	_, dst, toS3, err := location.ParseDest(t.Dest)
	switch {
	case err != nil:
		return Record{}, a.fail(ctx, t, err, false)
	case toS3:
		err = a.AllowWrite.Check(dst)
	default:
		err = a.Guard.Check(t.Dest)
	}
	if err != nil {
		return Record{}, a.fail(ctx, t, err, false)
	}
	ev, err := a.combine(ctx, t)
	if err != nil {
		return Record{}, err
	}
	if toS3 {
		return a.completeUpload(ctx, t, ev, dst)
	}
	if t.Chunks == 0 && t.PartToken == "" {
		t.PartToken = location.NewPartToken()
		if err := createEmpty(location.PartPath(t.Dest, t.ID, t.PartToken)); err != nil {
			return Record{}, a.fail(ctx, t, fmt.Errorf("create empty file for %s: %w", t.Dest, err), true)
		}
	}
	// The part file every chunk was recorded against: named by its token,
	// so a host that does not share DEST with the chunks' finds none
	// rather than a file of its own.
	part := location.PartPath(t.Dest, t.ID, t.PartToken)
	f, err := os.OpenFile(part, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if a.alreadyRenamed(t) {
			return a.finishRenamed(ctx, t, ev)
		}
		return Record{}, a.fail(ctx, t, errors.New(location.PartMissing(part, t.PartHost, a.Worker)), true)
	}
	if err != nil {
		return Record{}, fmt.Errorf("open %s: %w", part, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return Record{}, fmt.Errorf("stat %s: %w", part, err)
	} else if st.Size() != t.Size {
		return Record{}, a.fail(ctx, t, fmt.Errorf("part file %s has %d bytes, want %d", part, st.Size(), t.Size), true)
	}
	// No chunk writes from here on (see package fence): a writer in the
	// middle of a write finishes it first; any later one finds the file
	// renamed.
	if err := fence.Exclusive(f, 30*time.Second); err != nil {
		return Record{}, err
	}

	v, err := a.verify(ctx, t, ev, f)
	if err != nil {
		return Record{}, err
	}
	// A worker taken for dead renames nothing: the assembly runs elsewhere.
	if err := liveness.Held(ctx); err != nil {
		return Record{}, fmt.Errorf("place %s: %w", t.Dest, err)
	}
	if err := a.place(t, f, part, ev); err != nil {
		if errors.Is(err, ErrDiskMismatch) {
			return Record{}, a.fail(ctx, t, err, true)
		}
		if errors.Is(err, fs.ErrExist) {
			os.Remove(part)
			return Record{}, a.fail(ctx, t, errors.New(location.Exists(t.Dest)), true)
		}
		return Record{}, err
	}
	return a.succeed(ctx, t, v)
}

// combine folds the chunks' CRCs, in order, into the object's, and, for
// chunks aligned to the upload's parts, into each part's.
func (a *Assembler) combine(ctx context.Context, t ledger.Transfer) (Evidence, error) {
	ev := Evidence{CRCAlgorithm: CRCFor(checksum.Algorithm(t.ChecksumAlgorithm)), Size: t.Size}
	crcs, err := a.Ledger.Chunks(ctx, t.ID)
	if err != nil {
		return ev, err
	}
	plan, err := t.Plan()
	if err != nil {
		return ev, fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	if int64(len(crcs)) != t.Chunks {
		return ev, fmt.Errorf("transfer %s: %d of %d chunks recorded", t.ID, len(crcs), t.Chunks)
	}
	if len(plan.Parts) > 0 {
		ev.PartCRCs = make([]uint64, plan.PartCount())
		ev.PartSizes = make([]int64, plan.PartCount())
	}
	for i := range t.Chunks {
		rec, ok := crcs[i]
		c := rec.CRC
		if !ok {
			return ev, fmt.Errorf("transfer %s: chunk %d not recorded", t.ID, i)
		}
		n := plan.Chunk(i).Len()
		ev.CRC = checksum.Combine(ev.CRCAlgorithm, ev.CRC, c, n)
		if ev.PartCRCs != nil {
			p := plan.PartOf(i)
			ev.PartCRCs[p] = checksum.Combine(ev.CRCAlgorithm, ev.PartCRCs[p], c, n)
			ev.PartSizes[p] += n
		}
	}
	return ev, nil
}

// verified is the outcome of verify: the CRC computed and what it, or a
// second read, was compared with.
type verified struct {
	computed      string
	algorithm     string // computed's
	check, reason string
}

// verify compares the object's combined CRC with S3's full-object
// checksum (read by a HEAD, pinned to the ETag, unless the enqueuer's
// HEAD saw it or none is to be made), or with verify: required reads the
// file again for a checksum that cannot be combined (Decide). A mismatch
// fails the object and removes its part file.
func (a *Assembler) verify(ctx context.Context, t ledger.Transfer, ev Evidence, f *os.File) (verified, error) {
	v := verified{computed: checksum.Encode(ev.CRCAlgorithm, ev.CRC), algorithm: string(ev.CRCAlgorithm)}
	if t.SourcePath != "" {
		// An upload: the CRC is of the file's bytes as read (each chunk checked
		// the file against its pin, before and after), and S3 checks it
		// against what it stored when the upload completes.
		v.check = ev.CRCAlgorithm.Check()
		return v, nil
	}
	sum, err := a.sourceSum(ctx, t)
	if err != nil {
		return v, err
	}
	if t.NoHead && sum.Value == "" && t.Verify != VerifyOff {
		// --expected-size: nothing was asked of S3 but the bytes.
		v.check, v.reason = CheckNone, "enqueued with --expected-size: no HEAD was made, so S3's checksum is unknown"
		return v, nil
	}
	subject := Subject{Source: t.Source(), Mode: t.Verify, Sum: sum, ETag: t.ETag, Encrypted: t.SSECKeyMD5 != ""}
	var reread Rereader
	if f != nil {
		reread = FileRereader(f)
	}
	v.check, v.reason, err = Decide(subject, ev, reread)
	if errors.Is(err, ErrChecksum) || errors.Is(err, ErrUnverified) {
		return v, a.fail(ctx, t, err, true)
	}
	return v, err
}

// sourceSum is the checksum S3 keeps for the transfer's source: as
// enqueued, or read now by a HEAD pinned to the ETag (unless verify is
// off). A failure that a retry cannot mend is recorded.
func (a *Assembler) sourceSum(ctx context.Context, t ledger.Transfer) (Sum, error) {
	sum := Sum{Algorithm: checksum.Algorithm(t.ChecksumAlgorithm), Type: t.ChecksumType, Value: t.Checksum}
	if t.ChecksumKnown || t.Verify == VerifyOff {
		return sum, nil
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(t.Bucket), Key: aws.String(t.Key), ChecksumMode: types.ChecksumModeEnabled}
	if t.VersionID != "" {
		in.VersionId = aws.String(t.VersionID)
	}
	if t.ETag != "" {
		in.IfMatch = aws.String(t.ETag)
	}
	if a.Options != nil {
		if err := a.Options(in, t); err != nil {
			return sum, a.fail(ctx, t, err, true)
		}
	}
	api, err := a.client(ctx, t.Remote, t.RemoteFP)
	if err != nil {
		return sum, a.fail(ctx, t, err, true)
	}
	out, err := api.HeadObject(ctx, in)
	if err != nil {
		described := fmt.Errorf("head %s for its checksum: %s", t.Source(), s3client.Describe(err))
		if s3client.Permanent(err) {
			return sum, a.fail(ctx, t, described, true)
		}
		return sum, described
	}
	return SumOf(out), nil
}

// finishRenamed records an object whose part file an earlier run renamed
// before it could record the result; the check is made again on the final
// file.
func (a *Assembler) finishRenamed(ctx context.Context, t ledger.Transfer, ev Evidence) (Record, error) {
	f, err := os.Open(t.Dest)
	if err != nil {
		return Record{}, fmt.Errorf("open %s: %w", t.Dest, err)
	}
	defer f.Close()
	removeStrays(t)
	v, err := a.verify(ctx, t, ev, f)
	if err != nil {
		return Record{}, err
	}
	return a.succeed(ctx, t, v)
}

// place sets mtime and marks the file as ours, makes it durable and renames
// it to its final name without replacing what is there (unless Overwrite),
// then makes the rename durable. With NoFlush it only marks and renames.
func (a *Assembler) place(t ledger.Transfer, f *os.File, part string, ev Evidence) error {
	etag := t.ETag
	if etag == "" {
		etag = t.SourceETag // --expected-size: the ETag the chunks agreed on, for --sync
	}
	if err := Mark(f, t.ID, etag, t.LastModified); err != nil {
		return err
	}
	if !a.NoFlush || a.VerifyDisk {
		if err := syncFile(f); err != nil {
			return fmt.Errorf("fsync %s: %w", part, err)
		}
	}
	if a.VerifyDisk {
		crc, direct, err := ReadBack(f, ev.CRCAlgorithm, t.Size)
		if err != nil {
			return err
		}
		if crc != ev.CRC {
			return fmt.Errorf("%w: %s: %s %s read back from %s (direct I/O: %v), %s downloaded", ErrDiskMismatch, t.Source(),
				ev.CRCAlgorithm, checksum.Encode(ev.CRCAlgorithm, crc), part, direct, checksum.Encode(ev.CRCAlgorithm, ev.CRC))
		}
	}
	if err := Rename(part, t.Dest, t.Overwrite); err != nil {
		return err
	}
	removeStrays(t)
	if a.NoFlush {
		return nil
	}
	return syncDir(filepath.Dir(t.Dest))
}

// removeStrays removes the transfer's other part files once it is placed:
// a worker killed between creating its part file and recording its token
// leaves one that no record names. Every chunk wrote the recorded file, so
// any other is of no use.
func removeStrays(t ledger.Transfer) {
	strays, _ := filepath.Glob(location.PartGlob(t.Dest, t.ID))
	for _, p := range strays {
		_ = os.Remove(p)
	}
}

// syncFile and syncDir are the flushes place makes, variables for a test
// to count them.
var (
	syncFile = (*os.File).Sync
	syncDir  = SyncDir
)

// Mark labels a finished file as the fleet's: the transfer and the ETag in
// xattrs (best effort: some filesystems refuse them), and the object's
// Last-Modified (Unix ms, when known) as its mtime.
func Mark(f *os.File, transfer, etag string, lastModified int64) error {
	fd := int(f.Fd())
	_ = unix.Fsetxattr(fd, XattrTransfer, []byte(transfer), 0)
	_ = unix.Fsetxattr(fd, XattrETag, []byte(etag), 0)
	if lastModified > 0 {
		mt := time.UnixMilli(lastModified)
		if err := os.Chtimes(f.Name(), mt, mt); err != nil {
			return fmt.Errorf("set mtime of %s: %w", f.Name(), err)
		}
	}
	return nil
}

// Rename moves a part file to its final name; unless overwrite, an
// existing file there is an error wrapping fs.ErrExist.
func Rename(part, final string, overwrite bool) error {
	if overwrite {
		err := os.Rename(part, final)
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			// A directory stands there: --overwrite replaces files only.
			return fmt.Errorf("%s: %w", location.Exists(final), fs.ErrExist)
		}
		if err != nil {
			return fmt.Errorf("rename %s: %w", part, err)
		}
		return nil
	}
	return renameNoReplace(part, final)
}

// renameNoReplace renames atomically unless newpath exists (fs.ErrExist).
// Where renameat2 is unsupported (NFS, older kernels) a hard link and an
// unlink do the same.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if err = os.Link(oldpath, newpath); err == nil {
			err = os.Remove(oldpath)
		}
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", oldpath, newpath, err)
	}
	return nil
}

// SyncDir makes the entries of a directory (a rename) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// alreadyRenamed reports whether an earlier run of this assembler renamed
// the part file before it could record the result.
func (a *Assembler) alreadyRenamed(t ledger.Transfer) bool { return IsOurs(t.Dest, t.ID) }

// IsOurs reports whether the file at path was placed there by transfer.
func IsOurs(path, transfer string) bool {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(path, XattrTransfer, buf)
	return err == nil && string(buf[:n]) == transfer
}

func createEmpty(part string) error {
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func (a *Assembler) succeed(ctx context.Context, t ledger.Transfer, v verified) (Record, error) {
	res := ledger.Result{Computed: v.computed, Algorithm: v.algorithm, Check: v.check, Reason: v.reason}
	changed, err := a.Ledger.Succeed(ctx, t.ID, t.Gen, res, time.Now())
	if err != nil {
		return Record{}, err
	}
	final, err := a.Ledger.GetTransfer(ctx, t.ID)
	if err != nil {
		return Record{}, err
	}
	r := RecordOf(final)
	r.Finalized = changed
	return r, nil
}

// dropPart removes the transfer's part file, or aborts its multipart
// upload.
func (a *Assembler) dropPart(ctx context.Context, t ledger.Transfer) {
	_, dst, toS3, err := location.ParseDest(t.Dest)
	switch {
	case err != nil:
	case !toS3:
		_ = os.Remove(location.PartPath(t.Dest, t.ID, t.PartToken))
	default:
		if api, err := a.client(context.WithoutCancel(ctx), dst.Remote, t.DestFP); err == nil {
			a.abort(api, dst, t.PartToken)
		}
	}
}

// fail records the object failed with cause; with clearData its part file
// and chunk records go, so a retry starts afresh.
func (a *Assembler) fail(ctx context.Context, t ledger.Transfer, cause error, clearData bool) error {
	if liveness.LeaseOf(ctx).Lost() {
		return fmt.Errorf("%w (not recorded: %w)", cause, liveness.ErrLost) // the assembly runs elsewhere
	}
	if _, err := a.Ledger.Fail(context.WithoutCancel(ctx), t.ID, t.Gen, cause.Error(), clearData, time.Now()); err != nil {
		return fmt.Errorf("record failure (%v): %w", cause, err)
	}
	if clearData && t.PartToken != "" {
		a.dropPart(ctx, t)
	}
	if a.Log != nil {
		a.Log.Error("object failed", "transfer", t.ID, "bucket", t.Bucket, "key", t.Key, "err", cause)
	}
	return fmt.Errorf("%w: %w: %w", asynq.SkipRetry, ErrRecorded, cause)
}
