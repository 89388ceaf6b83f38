// Package assembler finalizes a downloaded object once all its chunks have
// landed: it checks the chunk records, combines their CRC32Cs into the
// object's and compares that with S3's checksum (or the ETag's MD5), sets
// the file's mtime, fsyncs, renames the part file to its final name
// atomically, fsyncs the directory and records the result.
//
// It is idempotent: asynq may run an assembler task twice, and a crash may
// stop it between any two steps; running it again finishes the job or
// returns the record already made.
package assembler

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// Checks an assembler can make, as the record names them.
const (
	CheckCRC32C = "crc32c" // combined chunk CRC32Cs equal S3's full-object checksum
	CheckMD5    = "md5"    // the file's MD5 equals a single-part ETag (--verify)
	CheckNone   = "none"   // S3 offered nothing to compare with
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
	Transfer   string  `json:"transfer"`
	Source     string  `json:"source"`
	VersionID  string  `json:"version_id,omitempty"`
	ETag       string  `json:"etag,omitempty"`
	Size       int64   `json:"size"`
	CRC32C     string  `json:"crc32c,omitempty"`
	Check      string  `json:"check,omitempty"`
	Chunks     int64   `json:"chunks"`
	Attempts   int64   `json:"attempts"`
	DurationMS int64   `json:"duration_ms"`
	MBPerSec   float64 `json:"mb_per_s"`
	Path       string  `json:"path"`
	State      string  `json:"state"`
	Error      string  `json:"error,omitempty"`
	// Finalized is true when this run of the assembler recorded the
	// object; a duplicate run finds it recorded already.
	Finalized bool `json:"-"`
}

// RecordOf renders a transfer's record.
func RecordOf(t ledger.Transfer) Record {
	r := Record{
		Transfer: t.ID, Source: t.Source(), VersionID: t.VersionID, ETag: t.ETag, Size: t.Size,
		CRC32C: t.CRC32C, Check: t.Check, Chunks: t.Chunks, Attempts: t.Attempts, Path: t.Dest,
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

// headAPI is the S3 call the assembler may make: a HEAD for the checksum.
type headAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

var _ headAPI = (*s3.Client)(nil)

// store is the part of the ledger the assembler uses.
type store interface {
	GetTransfer(ctx context.Context, id string) (ledger.Transfer, error)
	ChunkCRCs(ctx context.Context, id string) (map[int64]uint32, error)
	Succeed(ctx context.Context, id string, gen int64, r ledger.Result, now time.Time) (bool, error)
	Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error)
}

// Assembler finalizes objects.
type Assembler struct {
	S3     headAPI
	Ledger store
	Log    *slog.Logger
	// Options applies a transfer's S3 request options (payer, owner, the
	// worker's SSE-C key) to the checksum HEAD.
	Options func(in *s3.HeadObjectInput, t ledger.Transfer) error
	// Guard refuses destinations outside the worker's allow_dest roots.
	Guard location.Guard
	// NoFlush (flush=none, scratch data) skips the fsyncs of the file and
	// its directory: the rename is atomic for every reader, but a machine
	// that crashes soon after may lose the file's bytes.
	NoFlush bool
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
	if t.Gen != gen || (t.State != ledger.Running && t.State != ledger.Queued) {
		return RecordOf(t), nil // finalized already, failed, cancelled, or superseded
	}
	if err := a.Guard.Check(t.Dest); err != nil {
		return Record{}, a.fail(ctx, t, err, false)
	}
	crc, err := a.combine(ctx, t)
	if err != nil {
		return Record{}, err
	}
	part := location.PartPath(t.Dest, t.ID)
	if t.Chunks == 0 {
		if err := createEmpty(part); err != nil {
			return Record{}, a.fail(ctx, t, fmt.Errorf("create empty file %s: %w", part, err), true)
		}
	}
	f, err := os.OpenFile(part, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if a.alreadyRenamed(t) {
			return a.finishRenamed(ctx, t, crc)
		}
		return Record{}, a.fail(ctx, t, fmt.Errorf("part file %s is missing", part), true)
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

	check, err := a.verify(ctx, t, crc, f)
	if err != nil {
		return Record{}, err
	}
	if err := a.place(t, f, part); err != nil {
		if errors.Is(err, fs.ErrExist) {
			os.Remove(part)
			return Record{}, a.fail(ctx, t, fmt.Errorf("destination %s already exists (use --overwrite to replace it)", t.Dest), true)
		}
		return Record{}, err
	}
	return a.succeed(ctx, t, crc, check)
}

// combine folds the chunks' CRC32Cs, in order, into the object's.
func (a *Assembler) combine(ctx context.Context, t ledger.Transfer) (uint32, error) {
	crcs, err := a.Ledger.ChunkCRCs(ctx, t.ID)
	if err != nil {
		return 0, err
	}
	plan, err := chunker.New(t.Size, max(t.ChunkSize, 1), 0)
	if err != nil || plan.Count() != t.Chunks {
		return 0, fmt.Errorf("%w: transfer %s: %d chunks of %d bytes do not cover %d bytes",
			asynq.SkipRetry, t.ID, t.Chunks, t.ChunkSize, t.Size)
	}
	if int64(len(crcs)) != t.Chunks {
		return 0, fmt.Errorf("transfer %s: %d of %d chunks recorded", t.ID, len(crcs), t.Chunks)
	}
	var crc uint32
	for i := range t.Chunks {
		c, ok := crcs[i]
		if !ok {
			return 0, fmt.Errorf("transfer %s: chunk %d not recorded", t.ID, i)
		}
		crc = CombineCRC32C(crc, c, plan.Chunk(i).Len())
	}
	return crc, nil
}

// verify compares the object's CRC32C with S3's full-object checksum, or
// with --verify an MD5 of the file with a single-part ETag, and names the
// check made. A mismatch fails the object and removes its part file.
func (a *Assembler) verify(ctx context.Context, t ledger.Transfer, crc uint32, f *os.File) (string, error) {
	want, typ := t.ChecksumCRC32C, t.ChecksumType
	if !t.ChecksumKnown {
		in := &s3.HeadObjectInput{Bucket: aws.String(t.Bucket), Key: aws.String(t.Key), ChecksumMode: types.ChecksumModeEnabled}
		if t.VersionID != "" {
			in.VersionId = aws.String(t.VersionID)
		}
		if t.ETag != "" {
			in.IfMatch = aws.String(t.ETag)
		}
		if a.Options != nil {
			if err := a.Options(in, t); err != nil {
				return "", a.fail(ctx, t, err, true)
			}
		}
		out, err := a.S3.HeadObject(ctx, in)
		if err != nil {
			described := fmt.Errorf("head %s for its checksum: %s", t.Source(), s3client.Describe(err))
			if s3client.Permanent(err) {
				return "", a.fail(ctx, t, described, true)
			}
			return "", described
		}
		want, typ = aws.ToString(out.ChecksumCRC32C), string(out.ChecksumType)
	}
	if want != "" && !strings.Contains(want, "-") && (typ == "" || typ == string(types.ChecksumTypeFullObject)) {
		if got := EncodeCRC32C(crc); got != want {
			return "", a.fail(ctx, t, fmt.Errorf("%w: %s: CRC32C of the chunks is %s, S3 says %s", ErrChecksum, t.Source(), got, want), true)
		}
		return CheckCRC32C, nil
	}
	if !t.Verify {
		return CheckNone, nil
	}
	etag := strings.Trim(t.ETag, `"`)
	if len(etag) != 32 || strings.Contains(etag, "-") {
		return CheckNone, nil // multipart or encrypted: the ETag is not an MD5
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, t.Size)); err != nil {
		return "", fmt.Errorf("read %s for its MD5: %w", f.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != etag {
		return "", a.fail(ctx, t, fmt.Errorf("%w: %s: MD5 of the file is %s, ETag is %s", ErrChecksum, t.Source(), got, etag), true)
	}
	return CheckMD5, nil
}

// finishRenamed records an object whose part file an earlier run renamed
// before it could record the result; the check is made again on the final
// file.
func (a *Assembler) finishRenamed(ctx context.Context, t ledger.Transfer, crc uint32) (Record, error) {
	f, err := os.Open(t.Dest)
	if err != nil {
		return Record{}, fmt.Errorf("open %s: %w", t.Dest, err)
	}
	defer f.Close()
	check, err := a.verify(ctx, t, crc, f)
	if err != nil {
		return Record{}, err
	}
	return a.succeed(ctx, t, crc, check)
}

// place sets mtime and marks the file as ours, makes it durable and renames
// it to its final name without replacing what is there (unless Overwrite),
// then makes the rename durable. With NoFlush it only marks and renames.
func (a *Assembler) place(t ledger.Transfer, f *os.File, part string) error {
	if err := Mark(f, t.ID, t.ETag, t.LastModified); err != nil {
		return err
	}
	if !a.NoFlush {
		if err := syncFile(f); err != nil {
			return fmt.Errorf("fsync %s: %w", part, err)
		}
	}
	if err := Rename(part, t.Dest, t.Overwrite); err != nil {
		return err
	}
	if a.NoFlush {
		return nil
	}
	return syncDir(filepath.Dir(t.Dest))
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
		if err := os.Rename(part, final); err != nil {
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

func (a *Assembler) succeed(ctx context.Context, t ledger.Transfer, crc uint32, check string) (Record, error) {
	res := ledger.Result{CRC32C: EncodeCRC32C(crc), Check: check}
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

// fail records the object failed with cause; with clearData its part file
// and chunk records go, so a retry starts afresh.
func (a *Assembler) fail(ctx context.Context, t ledger.Transfer, cause error, clearData bool) error {
	if clearData {
		_ = os.Remove(location.PartPath(t.Dest, t.ID))
	}
	if _, err := a.Ledger.Fail(context.WithoutCancel(ctx), t.ID, t.Gen, cause.Error(), clearData, time.Now()); err != nil {
		return fmt.Errorf("record failure (%v): %w", cause, err)
	}
	if a.Log != nil {
		a.Log.Error("object failed", "transfer", t.ID, "bucket", t.Bucket, "key", t.Key, "err", cause)
	}
	return fmt.Errorf("%w: %w: %w", asynq.SkipRetry, ErrRecorded, cause)
}
