package tasks

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
)

// A straggler is a chunk running far longer than its object's others: on
// a worker whose link is slow or shared, or a connection S3 throttles. One
// worker at a tenth of the others' speed would otherwise hold a job for
// ten times a chunk's time at its end. A chunk that has run for
// StragglerAfter and for more than stragglerFactor times the median of
// its object's landed chunks enqueues a speculative copy of itself, which
// does not run on its worker (Avoid). Both write the same bytes (the ETag
// pins them) into the same part file; the first to land records the
// chunk, and the other stops at its next look (every watchEvery).
//
// Only chunks that download to a file are copied. A chunk that writes to
// S3 (an upload of a local file, a streaming copy) is watched the same way
// for progress and for a copy of it that landed, but never copies itself:
// a second UploadPart of its part would replace the one whose ETag the
// first to land recorded (see putPart). A server-side copy (UploadPartCopy)
// passes no byte through the worker: nothing watches it, and its bytes
// count only when its part lands.

const (
	stragglerFactor = 3
	watchEvery      = 2 * time.Second
	// minLanded is how many of the object's chunks must have landed for a
	// median to mean something.
	minLanded = 3
)

var (
	// errLandedElsewhere stops a chunk whose copy landed first.
	errLandedElsewhere = errors.New("the chunk landed from another run")
	// ErrAvoided is a speculative copy refusing the worker it must not
	// run on; asynq gives it to another soon (worker.RetryDelay).
	ErrAvoided = errors.New("a speculative copy does not run on the worker of the chunk it copies")
)

// maxAvoided is how often a copy may meet only the worker it avoids
// before it gives up (the chunk goes on where it runs).
const maxAvoided = 20

// watcher is one run of a chunk's look at itself: check, with the bytes
// sent so far, at most every watchEvery (on a read of the chunk's bytes,
// so a chunk of a few seconds makes no call at all). An error from check
// sticks: every later read fails with it, a rewound one too.
type watcher struct {
	next  time.Time
	check func(sent int64) error
	err   error
}

func (w *watcher) look(sent int64) error {
	if w.err == nil {
		if now := time.Now(); now.After(w.next) {
			w.next = now.Add(watchEvery)
			if err := w.check(sent); err != nil {
				w.err = noSDKRetry{err}
			}
		}
	}
	return w.err
}

// noSDKRetry is final to the SDK: an upload part whose body fails to read
// is a connection error to it, which it retries (over plain HTTP, where
// it can rewind the body) only to fail at once again, after a backoff.
type noSDKRetry struct{ error }

func (e noSDKRetry) Unwrap() error      { return e.error }
func (noSDKRetry) RetryableError() bool { return false } // aws/retry.RetryableError

// watchedBody looks, on every read, with the bytes read through it so
// far: a body read once, whose bytes are sent (or written) as they are
// read.
type watchedBody struct {
	r io.Reader
	n int64
	w *watcher
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if err := b.w.look(b.n); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// unsentPass is a pass over a chunk's bytes that sends none of them: the
// CRC pass over a local file, the GET that fills a spool (putPart). It
// looks with nothing sent, so a chunk that landed elsewhere stops there
// too, and a figure left by an earlier run of the chunk goes back to 0.
type unsentPass struct {
	r io.Reader
	w *watcher
}

func (u unsentPass) Read(p []byte) (int, error) {
	if err := u.w.look(0); err != nil {
		return 0, err
	}
	return u.r.Read(p)
}

// watchedSection is an upload part's body sent from a section of a file
// (the local file itself, or the spool): it stays an io.ReadSeeker, which
// the SDK needs over plain HTTP (it seeks the body for its length and
// rewinds it for a retry). What it reports is its position, the bytes this
// attempt has sent: a rewind takes the figure back with it, so it never
// exceeds the section's length (the range's), and reaches it only once the
// last byte has gone to the connection. Sent means handed to the
// connection, as for a watchedBody over a streamed part: the socket's send
// buffer may hold a few MiB of it yet (the part lands only on S3's
// answer, and its figure then gives way to the landed bytes).
type watchedSection struct {
	s   *io.SectionReader
	pos int64
	w   *watcher
}

func (b *watchedSection) Read(p []byte) (int, error) {
	if err := b.w.look(min(b.pos, b.s.Size())); err != nil {
		return 0, err
	}
	n, err := b.s.Read(p)
	b.pos += int64(n)
	return n, err
}

func (b *watchedSection) Seek(off int64, whence int) (int64, error) {
	pos, err := b.s.Seek(off, whence)
	if err == nil {
		b.pos = pos
	}
	return pos, err
}

// watch wraps a download chunk's body: every watchEvery it records how
// much has streamed (progress finer than whole chunks:
// ledger.ChunkProgress), stops the chunk if a copy of it has landed (the
// same round trip), and once, if it straggles, enqueues a speculative
// copy. A chunk of a few seconds makes no such call at all.
func (h *ChunkHandler) watch(ctx context.Context, p ChunkPayload, body io.Reader) io.Reader {
	return &watchedBody{r: body, w: h.watcher(ctx, p, true)}
}

// watcher returns the look of one run of a chunk (see watch). Only when
// speculate does a straggler enqueue a copy of itself: a chunk writing to
// S3 (putPart) records its progress and stops when a copy of it landed
// (a duplicate run), but does not copy itself (see the top of this file).
func (h *ChunkHandler) watcher(ctx context.Context, p ChunkPayload, speculate bool) *watcher {
	began := time.Now()
	copied := !speculate || p.Avoid != "" || h.StragglerAfter <= 0 // a copy is not copied again
	return &watcher{next: began.Add(watchEvery), check: func(sent int64) error {
		if landed, err := h.Ledger.ChunkProgress(ctx, p.Transfer, p.Gen, p.Chunk, sent); err == nil && landed {
			return errLandedElsewhere
		}
		ran := time.Since(began)
		if copied || ran < h.StragglerAfter {
			return nil
		}
		median, n, err := h.Ledger.ChunkTimes(ctx, p.Transfer)
		if err != nil || n < minLanded || ran < stragglerFactor*median {
			return nil
		}
		copied = true
		h.copyStraggler(ctx, p, ran, median)
		return nil
	}}
}

// copyStraggler enqueues a speculative copy of the chunk on its queue, for
// another worker.
func (h *ChunkHandler) copyStraggler(ctx context.Context, p ChunkPayload, ran, median time.Duration) {
	log := logger(h.Log).With("job", p.Job, "transfer", p.Transfer, "source", p.URL(), "chunk", p.Chunk)
	q, _ := asynq.GetQueueName(ctx)
	c := p
	c.Avoid = h.Worker
	task, err := NewChunkTask(h.Keys, c, asynq.Queue(q), asynq.TaskID(ChunkTaskID(p.Transfer, p.Gen, p.Epoch, p.Chunk)+":copy"), asynq.MaxRetry(1000))
	if err == nil {
		_, err = h.Queue.EnqueueContext(ctx, task)
	}
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		log.Warn("straggling chunk: could not enqueue a copy", "err", err)
		return
	}
	log.Info("straggling chunk: a copy runs on another worker; the first to land wins",
		slog.Duration("running", ran.Round(time.Second)), slog.Duration("median", median.Round(10*time.Millisecond)))
}
