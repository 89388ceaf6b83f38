// Package tasks is the wire contract between the enqueuer and the workers:
// the asynq task types, their JSON payloads, constructors that set each
// type's default options, and the handlers that run them.
//
// Payloads carry data, never trust: which object, which range, which file.
// The endpoint, credentials and timeouts are each worker's own
// configuration, so a task cannot send a worker's signed requests elsewhere.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"
)

// Queues the fleet uses. Workers weigh assembly above chunks, so finished
// objects are not starved by a long backlog of chunks, and a job's
// --priority picks one of three chunk queues, so an urgent job is not stuck
// behind a huge one.
const (
	QueueChunks     = "chunks"
	QueueChunksHigh = "chunks-high"
	QueueChunksLow  = "chunks-low"
	QueueAssemble   = "assemble"
)

// QueueWeights is the asynq queue priority a worker serves.
var QueueWeights = map[string]int{QueueAssemble: 8, QueueChunksHigh: 6, QueueChunks: 3, QueueChunksLow: 1}

// ChunkQueue returns the chunk queue of a priority: high, default (or
// empty) or low.
func ChunkQueue(priority string) (string, error) {
	switch priority {
	case "high":
		return QueueChunksHigh, nil
	case "", "default":
		return QueueChunks, nil
	case "low":
		return QueueChunksLow, nil
	}
	return "", fmt.Errorf("priority %q: want high, default or low", priority)
}

// HostQueue is the queue the workers of one host serve beside the shared
// ones (the host setting, default the host name): every task of a job
// enqueued with --on NAME goes there, so only that host's workers (and
// disks) see it.
func HostQueue(host string) string { return hostQueuePrefix + host }

const hostQueuePrefix = "host:"

// HostOf names the host of a host queue.
func HostOf(queue string) (string, bool) { return strings.CutPrefix(queue, hostQueuePrefix) }

// ValidHost checks a host name for --on and the host setting.
func ValidHost(host string) error {
	if host == "" || len(host) > 200 || strings.ContainsAny(host, " \t\n\r{}:/\x00") {
		return fmt.Errorf("host name %q: want a name without spaces, braces, ':' or '/'", host)
	}
	return nil
}

// AssembleQueue is where a transfer's assembler and cleanup run, given its
// chunk queue: its host's queue for an --on job, else the assemble queue.
func AssembleQueue(chunkQueue string) string {
	if _, ok := HostOf(chunkQueue); ok {
		return chunkQueue
	}
	return QueueAssemble
}

// ShardQueue is the queue of a transfer in ledger shard n (see
// ledger.Shards) whose job's queue is queue: shard 0 keeps the shared
// chunk queues' names, and shard n ≥ 1 has chunks.n, chunks-high.n and
// chunks-low.n, each of its own hash slot, so that a Redis Cluster spreads
// the queues over its nodes too. A host's queue is not sharded.
func ShardQueue(queue string, shard int) string {
	if _, ok := HostOf(queue); ok || shard <= 0 {
		return queue
	}
	return queue + "." + strconv.Itoa(shard)
}

// Queues are the queues a worker of host serves, with their weights, for
// a fleet of shards ledger shards: the chunk queues of every shard, each
// weighted as in QueueWeights, and assembly and its host's own queue
// weighted as assembly is, times the shards (so that assembly is taken
// first as often as with one).
func Queues(host string, shards int) map[string]int {
	shards = max(shards, 1)
	q := map[string]int{HostQueue(host): QueueWeights[QueueAssemble] * shards}
	for k, v := range QueueWeights {
		if k == QueueAssemble {
			q[k] = v * shards
			continue
		}
		for n := range shards {
			q[ShardQueue(k, n)] = v
		}
	}
	return q
}

// SharedQueues are the queues every worker serves (Queues without the
// hosts' own), sorted.
func SharedQueues(shards int) []string {
	q := Queues("", shards)
	delete(q, HostQueue(""))
	return slices.Sorted(maps.Keys(q))
}

// taskEnqueuer is the part of asynq.Client a handler uses to enqueue the
// next step.
type taskEnqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var _ taskEnqueuer = (*asynq.Client)(nil)

// errPermanent marks failures that a retry cannot mend.
func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{asynq.SkipRetry}, args...)...)
}

// causeOf renders an error as the cause a user reads: without asynq's
// retry markers.
func causeOf(err error) string {
	return strings.NewReplacer(asynq.SkipRetry.Error()+": ", "", errSourceGone.Error()+": ", "", errPartGone.Error()+": ", "").Replace(err.Error())
}

// IsPermanent reports whether err says the task must not be retried.
func IsPermanent(err error) bool { return errors.Is(err, asynq.SkipRetry) }

// localPermanent reports whether a file-system error will not go away by
// itself: no permission, a read-only or wrong path. No space is judged by
// noSpace.
func localPermanent(err error) bool {
	for _, e := range []error{syscall.EACCES, syscall.EPERM, syscall.EROFS,
		syscall.ENAMETOOLONG, syscall.EISDIR, syscall.ENOTDIR, syscall.ELOOP, fs.ErrExist} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// finalAttempt reports whether a failure now leaves no retry.
func finalAttempt(ctx context.Context, err error) bool {
	if IsPermanent(err) {
		return true
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry
}

// ErrNoSpace marks a write that found no space for an object that would
// fit once space is freed: the task retries (see noSpace), every few
// seconds (worker.RetryDelay).
var ErrNoSpace = errors.New("waiting for space")

// isNoSpace reports whether err is a full disk or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpace judges a write into dir that found no space (ENOSPC, EDQUOT)
// for an object of need bytes: permanent when the filesystem could never
// hold it (it is larger than the whole filesystem), else a wait: the task
// retries with backoff, within retry_for, while other objects land or the
// operator frees space. Other errors are returned as they are.
func noSpace(dir string, need int64, err error) error {
	if !isNoSpace(err) {
		return err
	}
	var st unix.Statfs_t
	if serr := unix.Statfs(dir, &st); serr != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoSpace, dir, err)
	}
	total, free := int64(st.Blocks)*st.Bsize, int64(st.Bavail)*st.Bsize
	if need > total {
		return fmt.Errorf("%w: an object of %s can never fit: the filesystem at %s holds %s in all: %w", asynq.SkipRetry,
			humanize.IBytes(uint64(need)), dir, humanize.IBytes(uint64(total)), err)
	}
	return fmt.Errorf("%w: %s more needed, %s free at %s: %w", ErrNoSpace, humanize.IBytes(uint64(need)), humanize.IBytes(uint64(max(free, 0))), dir, err)
}

// jobNoter tells a transfer's jobs what it waits for.
type jobNoter interface {
	NoteJobs(ctx context.Context, id, note string, now time.Time) error
}

// noteNoSpace tells the jobs of transfer id that its object (what) waits
// for space, when err says so: `enqueue --wait` shows it, so a job waiting
// for a full disk is not taken for stuck.
func noteNoSpace(ctx context.Context, led jobNoter, id, what string, err error) {
	if errors.Is(err, ErrNoSpace) {
		_ = led.NoteJobs(context.WithoutCancel(ctx), id, what+": "+causeOf(err), time.Now())
	}
}

// retryLedger notes a transfer's failures for its retry budget.
type retryLedger interface {
	Failing(ctx context.Context, id string, gen int64, now time.Time) (time.Time, error)
}

// outOfTime makes a retryable failure of a transfer final once its tasks
// have failed for budget (retry_for) with no chunk landing meanwhile: the
// budget is time, not a count, so a long outage is ridden out and a
// hopeless object still ends. A zero budget never ends it.
func outOfTime(ctx context.Context, led retryLedger, budget time.Duration, id string, gen int64, err error) error {
	if budget <= 0 || IsPermanent(err) {
		return err
	}
	since, ferr := led.Failing(context.WithoutCancel(ctx), id, gen, time.Now())
	if ferr != nil || since.IsZero() || time.Since(since) < budget {
		return err
	}
	return fmt.Errorf("%w: failing for %s with no progress (retry_for %s): %w", asynq.SkipRetry, time.Since(since).Round(time.Second), budget, err)
}

// logger returns l, or a logger that discards when l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
