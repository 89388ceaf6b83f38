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
	// SSECKeyMD5 names the SSE-C key the uploads are written with (the
	// workers' own copy of it).
	SSECKeyMD5 string `json:"sse_c_key_md5,omitempty"`
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
		if dir := strings.TrimSuffix(s, "/"); !filepath.IsAbs(s) || dir != "" && filepath.Clean(dir) != dir {
			return fmt.Errorf("source %q: not an absolute clean path", s)
		}
	}
	if !location.IsURL(p.Dest) {
		return errors.New("a listing on a host uploads to S3")
	}
	return validWrite(p.Write, true)
}

// NewListTask builds a list task of a job on its host's queue, and
// returns its ID. Each submission gets a list task of its own (the job's
// name and a random suffix): the same job enqueued again lists again,
// whatever became of the earlier task (a walk adds each object once).
func NewListTask(k *TaskKeys, p ListPayload, opts ...asynq.Option) (*asynq.Task, string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, "", fmt.Errorf("encode list payload: %w", err)
	}
	id := "list:" + p.Job + ":" + location.NewPartToken() // a random token, as a part file's
	defaults := []asynq.Option{
		asynq.Queue(HostQueue(p.On)), asynq.MaxRetry(3), asynq.Timeout(time.Hour),
		asynq.TaskID(id), asynq.Retention(time.Hour),
	}
	return k.newTask(TypeList, b, append(defaults, opts...)...), id, nil
}

// listLedger is what a list task records of a listing that failed.
type listLedger interface {
	SetListed(ctx context.Context, id string, listErr error) error
}

// ListHandler runs list tasks: Submit enqueues the payload's request on
// this host (the enqueuer's SubmitListed, as the worker wires it), which
// marks the job listed. A listing that cannot be made (a source outside
// allow_source, a destination outside allow_write, missing, empty, past
// its deadline) marks it listed with the cause, so the job ends rather
// than waits.
type ListHandler struct {
	Submit func(ctx context.Context, p ListPayload) error
	Ledger listLedger
	Access Access
	Log    *slog.Logger
	// Host is this worker's host name: a list task for another host's
	// files is refused (its chunks would run there, on files only here).
	Host string
	// Remotes are the names of the worker's remotes, to read Dest.
	Remotes []string
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
	if err := h.allowed(p); err != nil {
		return fail(err)
	}
	err := h.Submit(ctx, p)
	switch {
	case err == nil:
		h.Log.Info("files listed", "job", p.Job, "sources", p.Sources, "dest", p.Dest)
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		// Shut down (the task goes back to the queue), or cancelled (its
		// next run finds the job ended). Past its deadline it fails below.
		return err
	}
	return fail(err)
}

// allowed checks a listing against the worker's allow lists before
// anything is walked: each source under allow_source (a directory may be
// a root itself), the destination under allow_write, and under
// allow_delete too for --delete.
func (h *ListHandler) allowed(p ListPayload) error {
	for _, s := range p.Sources {
		if h.Access.Source.Open() {
			return fmt.Errorf("the workers of host %s have no allow_source: they upload no local file (%s)", p.On, s)
		}
		probe := filepath.Clean(s)
		if strings.HasSuffix(s, "/") {
			probe = filepath.Join(probe, "x") // the tree's files are what is read
		}
		if err := h.Access.Source.Check(probe); err != nil {
			return fmt.Errorf("source %s is under no allow_source root of host %s", s, p.On)
		}
	}
	dst, err := location.ParseURL(p.Dest, h.Remotes)
	if err != nil {
		return err
	}
	if err := h.Access.Write.Check(dst); err != nil {
		return err
	}
	if p.Mirror {
		if err := h.Access.Delete.Check(dst); err != nil {
			return fmt.Errorf("--delete: %w", err)
		}
	}
	return nil
}
