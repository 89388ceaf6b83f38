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

// watchedBody calls check with the bytes read so far every watchEvery
// while a chunk's body is read; an error from check ends the read.
type watchedBody struct {
	r     io.Reader
	n     int64
	next  time.Time
	check func(read int64) error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if now := time.Now(); now.After(b.next) {
		b.next = now.Add(watchEvery)
		if err := b.check(b.n); err != nil {
			return 0, err
		}
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// watch wraps a chunk's body: every watchEvery it records how much has
// streamed (progress finer than whole chunks: ledger.ChunkProgress), stops
// the chunk if a copy of it has landed (the same round trip), and once, if
// it straggles, enqueues a speculative copy. A chunk of a few seconds
// makes no such call at all.
func (h *ChunkHandler) watch(ctx context.Context, p ChunkPayload, body io.Reader) io.Reader {
	began := time.Now()
	copied := p.Avoid != "" || h.StragglerAfter <= 0 // a copy is not copied again
	return &watchedBody{r: body, next: began.Add(watchEvery), check: func(read int64) error {
		if landed, err := h.Ledger.ChunkProgress(ctx, p.Transfer, p.Gen, p.Chunk, read); err == nil && landed {
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
