package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// TypeList walks local sources where they live: an upload of an --on job
// whose files are on that host's own disk, which the enqueuer cannot see.
// The host's worker runs the enqueue there, into the job the enqueuer
// created, and the job counts as listed only when it is done.
const TypeList = "s3fleet:list"

// ListPayload is a list task's payload: the enqueue request, as far as an
// upload takes one.
type ListPayload struct {
	Job     string   `json:"job"`
	On      string   `json:"on"`
	Sources []string `json:"sources"` // absolute paths on that host
	Dest    string   `json:"dest"`    // an object URL
	// The request's options.
	Overwrite bool          `json:"overwrite,omitempty"`
	Sync      bool          `json:"sync,omitempty"`
	Mirror    bool          `json:"mirror,omitempty"`
	MaxDelete int64         `json:"max_delete,omitempty"`
	Include   []string      `json:"include,omitempty"`
	Exclude   []string      `json:"exclude,omitempty"`
	Priority  string        `json:"priority,omitempty"`
	Verify    string        `json:"verify,omitempty"`
	Write     *ledger.Write `json:"write,omitempty"`
	// The enqueuer's chunking, so that the objects are cut as it would.
	ChunkSize int64 `json:"chunk_size,omitempty"`
	Threshold int64 `json:"threshold,omitempty"`
}

// Validate refuses payloads no enqueuer writes.
func (p ListPayload) Validate() error {
	if p.Job == "" || len(p.Sources) == 0 {
		return errors.New("missing job or sources")
	}
	if err := ValidHost(p.On); err != nil {
		return err
	}
	for _, s := range p.Sources {
		if p := strings.TrimSuffix(s, "/"); !filepath.IsAbs(s) || p != "" && filepath.Clean(p) != p {
			return fmt.Errorf("source %q: not an absolute clean path", s)
		}
	}
	if !location.IsURL(p.Dest) {
		return errors.New("a listing on a host uploads to S3")
	}
	return validWrite(p.Write, true)
}

// NewListTask builds the list task of a job on its host's queue, with a
// deterministic ID: enqueueing the job again while it waits is a no-op.
func NewListTask(p ListPayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode list payload: %w", err)
	}
	defaults := []asynq.Option{
		asynq.Queue(HostQueue(p.On)), asynq.MaxRetry(3), asynq.Timeout(time.Hour),
		asynq.TaskID("list:" + p.Job), asynq.Retention(time.Hour),
	}
	return asynq.NewTask(TypeList, b, append(defaults, opts...)...), nil
}

// listLedger is what a list task records of a listing that failed.
type listLedger interface {
	SetListed(ctx context.Context, id string, listErr error) error
}

// ListHandler runs list tasks: Submit enqueues the payload's request on
// this host (the enqueuer's Submit, as the worker wires it), which marks
// the job listed. A listing that cannot be made (a source outside
// allow_source, missing, empty) marks it listed with the cause, so the
// job ends rather than waits.
type ListHandler struct {
	Submit func(ctx context.Context, p ListPayload) error
	Ledger listLedger
	Access Access
	Log    *slog.Logger
	// Host is this worker's host name: a list task for another host's
	// files is refused (its chunks would run there, on files only here).
	Host string
}

// ProcessTask implements asynq.Handler.
func (h *ListHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p ListPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: decode list payload: %w", asynq.SkipRetry, err)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: list task refused: %w", asynq.SkipRetry, err)
	}
	if p.On != h.Host {
		return fmt.Errorf("%w: list task refused: it lists host %s's files, and this is %s", asynq.SkipRetry, p.On, h.Host)
	}
	fail := func(err error) error {
		if lerr := h.Ledger.SetListed(context.WithoutCancel(ctx), p.Job, err); lerr != nil {
			return lerr // retried: the job must learn why
		}
		h.Log.Error("listing failed", "job", p.Job, "err", err)
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	for _, s := range p.Sources {
		switch {
		case h.Access.Source.Open():
			return fail(fmt.Errorf("the workers of host %s have no allow_source: they upload no local file (%s)", p.On, s))
		default:
			if err := h.Access.Source.Check(filepath.Clean(s)); err != nil {
				return fail(err)
			}
		}
	}
	if err := h.Submit(ctx, p); err != nil {
		if ctx.Err() != nil {
			return err // shutting down: the task goes back to the queue
		}
		return fail(err)
	}
	return nil
}
