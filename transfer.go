package s3fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// State is where a transfer stands, as s3transfer's futures report it.
type State int

// The states of a transfer.
const (
	Queued State = iota
	Running
	Success
	Failed
	Cancelled
)

// String is the state's name: queued, running, success, failed or
// cancelled.
func (s State) String() string {
	switch s {
	case Queued:
		return ledger.Queued
	case Running:
		return ledger.Running
	case Success:
		return ledger.Success
	case Failed:
		return ledger.Failed
	case Cancelled:
		return ledger.Cancelled
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Final reports whether the state is an end: success, failed or
// cancelled.
func (s State) Final() bool { return s >= Success }

// stateOf is a record's state as a State; ok is false for an unknown one.
func stateOf(s string) (State, bool) {
	switch s {
	case ledger.Queued:
		return Queued, true
	case ledger.Running:
		return Running, true
	case ledger.Success, ledger.Skipped:
		return Success, true
	case ledger.Failed:
		return Failed, true
	case ledger.Cancelled:
		return Cancelled, true
	}
	return 0, false
}

// Errors a Result wraps, with the object and its cause.
var (
	// ErrFailed: the object did not land; the error says why.
	ErrFailed = errors.New("failed")
	// ErrCancelled: the transfer was cancelled.
	ErrCancelled = errors.New("cancelled")
	// ErrGone: the transfer's record is gone (expired, or Redis lost it).
	ErrGone = errors.New("record gone")
	// ErrClosed: the Client was closed while Result waited.
	ErrClosed = errors.New("client closed")
)

// Meta describes a transfer, as it was when submitted.
type Meta struct {
	Source     string // s3://bucket/key (or REMOTE://bucket/key)
	VersionID  string
	Dest       string // the file's absolute path, or an object URL
	Size       int64
	TransferID string // the fleet's record of the object's transfer
	JobID      string // the job of this Download
}

// Record is a transfer's outcome: its Meta, state, and the check its
// bytes passed.
type Record struct {
	Meta
	State State
	// Check is what the bytes were checked against (crc64nvme, crc32c,
	// md5, size, present, …: see the README's "Every byte checked"), and
	// Checksum the checksum computed over them, in S3's encoding of
	// ChecksumAlgorithm.
	Check             string
	Checksum          string
	ChecksumAlgorithm string
	// CheckReason says why nothing was compared, when Check is "none".
	CheckReason string
	// Cause is why a failed transfer failed.
	Cause string
	// Skipped says the object was there already, as this job found it:
	// nothing moved (State is Success).
	Skipped bool
	// BytesDone is what has landed, in whole chunks, of Chunks; Attempts
	// counts the chunk runs that started (a retried chunk counts again).
	BytesDone, Chunks, Attempts int64
	Finished                    time.Time
}

// Option sets something of a Download (or, where it says so, a Submit).
type Option func(*settings)

// settings are what the options set.
type settings struct {
	req      enqueuer.Request
	progress func(Progress)
	notice   func(string)
}

func apply(opts []Option) settings {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	return set
}

// ExpectedSize is the object's size when the caller knows it: no HEAD is
// sent, and every chunk's response must agree on the size and the ETag.
func ExpectedSize(n int64) Option { return func(s *settings) { s.req.ExpectedSize = &n } }

// VersionID pins a version of the object.
func VersionID(v string) Option { return func(s *settings) { s.req.VersionID = v } }

// Overwrite replaces a file that is already at the destination (without
// it, one there fails the Download).
func Overwrite() Option { return func(s *settings) { s.req.Overwrite = true } }

// Verify is what the bytes must pass: "off", "auto" (the default) or
// "required" (see the README).
func Verify(mode string) Option { return func(s *settings) { s.req.Verify = mode } }

// Priority is the job's queue: "high", "default" or "low".
func Priority(p string) Option { return func(s *settings) { s.req.Priority = p } }

// OnProgress has fn told how a Download (or a Submit's job, while Wait
// runs) stands each time its bytes change, as s3transfer's subscribers
// are: the bytes landed and those still streaming, which workers report
// every 2 s of a chunk (finer than whole chunks), and once more when it
// ends. A callback rather than a channel: nothing to size or drain. fn runs
// on the client's one watcher goroutine (or Wait's), and a transfer's
// Result returns only after its last call: fn must return quickly and
// must not wait for a Result, a Wait or an unbuffered channel that is read
// only after one (the watcher, and every Result, would wait with it). A
// caller who wants a channel sends on a buffered one without blocking
// (select with default), keeping the latest.
func OnProgress(fn func(Progress)) Option { return func(s *settings) { s.progress = fn } }

// OnNotice has fn told, while a job's Wait runs, what the job waits for,
// in a line for a person: a worker's note (space on a full disk), queues
// with tasks waiting that no live worker serves, Redis unreachable and
// back. fn runs on Wait's goroutine.
func OnNotice(fn func(string)) Option { return func(s *settings) { s.notice = fn } }

// Transfer is one Download in flight: a future.
type Transfer struct {
	c    *Client
	meta Meta
	w    *watched

	mu   sync.Mutex
	left bool // Cancel took its job out of a transfer others wait for
}

// Download enqueues the download of one object (an s3:// or REMOTE://
// URL of a key: Submit takes prefixes) to dest (a file, or a directory
// when it ends in "/") as a job of its own, and returns as soon as the
// fleet has it: the bytes land later (Result). An object in flight to the
// same destination already is followed, not fetched twice; a file already
// there is an error unless Overwrite.
func (c *Client) Download(ctx context.Context, src, dest string, opts ...Option) (*Transfer, error) {
	if err := oneObject("download", src); err != nil {
		return nil, err
	}
	if location.IsURL(dest) {
		return nil, fmt.Errorf("download %s to %q: the destination is an object URL: Copy writes to S3", src, dest)
	}
	return c.one(ctx, "download", src, dest, opts)
}

// Copy enqueues the copy of one object (an s3:// or REMOTE:// URL of a
// key) to dest, an object URL (a key, or a prefix ending in "/" for the
// source's base name), as Download does: S3 copies it itself when both are
// on one endpoint, and workers stream it between endpoints otherwise. The
// workers' allow_write must cover dest.
func (c *Client) Copy(ctx context.Context, src, dest string, opts ...Option) (*Transfer, error) {
	if err := oneObject("copy", src); err != nil {
		return nil, err
	}
	if !location.IsURL(dest) {
		return nil, fmt.Errorf("copy %s to %q: the destination is not an object URL (s3://bucket/key): Download writes files", src, dest)
	}
	return c.one(ctx, "copy", src, dest, opts)
}

// Upload enqueues the upload of one local file to dest, an object URL, as
// Download does; Submit takes directories. The file must be on this host
// and at the same path on the workers' (a shared disk, under their
// allow_source): a file on one worker host's own disk is uploaded by a
// Submit with Job.On. The file is pinned as it was when enqueued: one
// changed before its bytes are read fails the upload.
func (c *Client) Upload(ctx context.Context, path, dest string, opts ...Option) (*Transfer, error) {
	if location.IsURL(path) {
		return nil, fmt.Errorf("upload %q: not a local file: Copy takes object URLs", path)
	}
	// As the enqueuer records it: a symbolic link is not followed.
	if st, err := os.Lstat(path); err != nil {
		return nil, fmt.Errorf("upload %s: %w", path, err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("upload %s: not a regular file (a symbolic link is not followed; Submit takes directories)", path)
	}
	if !location.IsURL(dest) {
		return nil, fmt.Errorf("upload %s to %q: the destination is not an object URL (s3://bucket/key)", path, dest)
	}
	return c.one(ctx, "upload", path, dest, opts)
}

// oneObject checks that src is the URL of one object, not a prefix.
func oneObject(op, src string) error {
	if !location.IsURL(src) || strings.HasSuffix(src, "/") || !strings.Contains(src[strings.Index(src, "://")+3:], "/") {
		return fmt.Errorf("%s %q: not the URL of one object (s3://bucket/key): Submit takes prefixes and local files", op, src)
	}
	return nil
}

// one submits a job of one object and follows its transfer.
func (c *Client) one(ctx context.Context, op, src, dest string, opts []Option) (*Transfer, error) {
	set := apply(opts)
	req := set.req
	req.Sources, req.Dest = []string{src}, dest
	req.Recorded = true // a small file would otherwise wait in a batch with no record to follow
	enq, err := c.enqueuer(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, src, err)
	}
	sum, err := enq.Submit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, src, err)
	}
	var rec ledger.Transfer
	found := false
	err = c.led.JobObjects(ctx, sum.Job, func(o ledger.JobObject) error {
		rec, found = o.Transfer, true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, src, err)
	}
	if !found {
		return nil, fmt.Errorf("%s %s: job %s has no object (%+v)", op, src, sum.Job, sum)
	}
	t := &Transfer{c: c, meta: metaOf(rec, sum.Job)}
	var progress func(ledger.Standing)
	if set.progress != nil {
		progress = func(s ledger.Standing) { set.progress(t.progressOf(s)) }
	}
	t.w = c.watch.add(rec.ID, progress)
	return t, nil
}

// metaOf is the Meta of a transfer's record, in a job.
func metaOf(rec ledger.Transfer, job string) Meta {
	return Meta{Source: rec.Source(), VersionID: rec.VersionID, Dest: rec.Dest, Size: rec.Size, TransferID: rec.ID, JobID: job}
}

// progressOf is the Progress of the transfer standing as s.
func (t *Transfer) progressOf(s ledger.Standing) Progress {
	p := Progress{Objects: 1, BytesTotal: t.meta.Size, BytesDone: s.BytesDone, BytesInFlight: s.Moving}
	switch st, _ := stateOf(s.State); {
	case st == Success:
		p.Succeeded, p.Done = 1, true
	case st == Failed:
		p.Failed, p.Done = 1, true
	case st == Cancelled:
		p.Cancelled, p.Done = 1, true
	}
	return p
}

// Progress reads how the transfer stands now: its bytes landed and
// streaming.
func (t *Transfer) Progress(ctx context.Context) (Progress, error) {
	s, err := t.c.led.Standings(ctx, []string{t.meta.TransferID})
	if err != nil {
		return Progress{}, err
	}
	if s[0].State == "" {
		return Progress{}, fmt.Errorf("%s → %s: %w", t.meta.Source, t.meta.Dest, ErrGone)
	}
	return t.progressOf(s[0]), nil
}

// Meta describes the transfer.
func (t *Transfer) Meta() Meta { return t.meta }

// Done reports, without waiting or asking Redis, whether the transfer has
// ended, as the client last saw it (it looks every fraction of a second).
func (t *Transfer) Done() bool {
	if t.hasLeft() {
		return true
	}
	select {
	case <-t.w.done:
		return true
	default:
		return false
	}
}

// State reads where the transfer stands now.
func (t *Transfer) State(ctx context.Context) (State, error) {
	if t.hasLeft() {
		return Cancelled, nil
	}
	rec, err := t.c.led.GetTransfer(ctx, t.meta.TransferID)
	if errors.Is(err, ledger.ErrNotFound) {
		return 0, fmt.Errorf("%s → %s: %w", t.meta.Source, t.meta.Dest, ErrGone)
	}
	if err != nil {
		return 0, err
	}
	st, ok := stateOf(rec.State)
	if !ok {
		return 0, fmt.Errorf("%s → %s: unknown state %q", t.meta.Source, t.meta.Dest, rec.State)
	}
	return st, nil
}

// Result waits until the object has landed, with every byte checked, and
// returns its record; or until it failed or was cancelled, and returns an
// error that names the object and the cause (wrapping ErrFailed,
// ErrCancelled or ErrGone). It returns ctx's error if ctx ends first.
// However many Result calls wait, the client reads the transfers' states
// in one pipelined round trip a look.
func (t *Transfer) Result(ctx context.Context) (Record, error) {
	if t.hasLeft() {
		return t.record(ledger.Transfer{State: ledger.Cancelled}), t.failure(Cancelled, "cancelled by the caller")
	}
	select {
	case <-ctx.Done():
		return Record{}, ctx.Err()
	case <-t.w.done:
	}
	if t.hasLeft() {
		return t.record(ledger.Transfer{State: ledger.Cancelled}), t.failure(Cancelled, "cancelled by the caller")
	}
	if t.w.err != nil {
		if dead := t.c.alive(); errors.Is(t.w.err, ErrClosed) && dead != nil {
			return Record{}, fmt.Errorf("%s → %s: %w: %w", t.meta.Source, t.meta.Dest, t.w.err, dead)
		}
		return Record{}, fmt.Errorf("%s → %s: %w", t.meta.Source, t.meta.Dest, t.w.err)
	}
	rec, err := t.c.led.GetTransfer(ctx, t.meta.TransferID)
	if errors.Is(err, ledger.ErrNotFound) {
		return Record{}, fmt.Errorf("%s → %s: %w", t.meta.Source, t.meta.Dest, ErrGone)
	}
	if err != nil {
		return Record{}, err
	}
	r := t.record(rec)
	switch r.State {
	case Success:
		return r, nil
	case Cancelled:
		return r, t.failure(Cancelled, rec.Error)
	default:
		return r, t.failure(Failed, rec.Error)
	}
}

func (t *Transfer) failure(st State, cause string) error {
	sentinel := ErrFailed
	if st == Cancelled {
		sentinel = ErrCancelled
	}
	if cause == "" {
		return fmt.Errorf("%s → %s: %w", t.meta.Source, t.meta.Dest, sentinel)
	}
	return fmt.Errorf("%s → %s: %w: %s", t.meta.Source, t.meta.Dest, sentinel, cause)
}

func (t *Transfer) record(rec ledger.Transfer) Record {
	st, _ := stateOf(rec.State)
	r := Record{Meta: t.meta, State: st, Check: rec.Check, Checksum: rec.Computed, ChecksumAlgorithm: rec.ComputedAlgorithm,
		CheckReason: rec.CheckReason, Cause: rec.Error, Skipped: rec.State == ledger.Skipped, BytesDone: rec.BytesDone,
		Chunks: rec.Chunks, Attempts: rec.Attempts}
	if rec.Finished > 0 {
		r.Finished = time.UnixMilli(rec.Finished)
	}
	return r
}

// Cancel stops the transfer: Result then returns ErrCancelled and State
// Cancelled. When another job waits for the same transfer (an identical
// object and destination), the transfer goes on for it and this one just
// stops waiting. Cancelling a transfer that has ended changes nothing.
func (t *Transfer) Cancel(ctx context.Context) error {
	left, err := t.c.led.Leave(ctx, t.meta.JobID, t.meta.TransferID)
	if err != nil {
		return err
	}
	if left {
		t.mu.Lock()
		t.left = true
		t.mu.Unlock()
		t.c.watch.remove(t.w)
		return nil
	}
	enq, err := t.c.enqueuer(ctx)
	if err == nil {
		_, err = enq.Cancel(ctx, t.meta.JobID)
	}
	if err != nil {
		return fmt.Errorf("cancel %s → %s: %w", t.meta.Source, t.meta.Dest, err)
	}
	t.c.watch.poke()
	return nil
}

func (t *Transfer) hasLeft() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.left
}
