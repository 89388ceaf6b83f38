package enqueuer

import (
	"context"
	"fmt"
	"os"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/tasks"
)

// listOn begins the job of an upload whose files are on the --on host's
// own disk, and enqueues its list task there: that host's worker walks
// the tree and enqueues the objects into this job (SubmitListed), which
// counts as listed only then. The summary has no objects yet; a follower
// of the job sees them come.
func (s *submission) listOn(ctx context.Context) (Summary, error) {
	req := s.req
	req.Job, req.Sources = s.sum.Job, nil
	for _, src := range s.srcs {
		req.Sources = append(req.Sources, src.Key)
	}
	p := listPayload(req)
	p.ChunkSize, p.Threshold = s.e.ChunkSize, s.e.Threshold
	if err := p.Validate(); err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	task, id, err := tasks.NewListTask(s.e.Keys, p)
	if err != nil {
		return Summary{}, err
	}
	if err := s.begin(ctx); err != nil {
		return Summary{}, err
	}
	if err := s.e.Ledger.SetListTask(ctx, s.sum.Job, tasks.HostQueue(p.On), id); err != nil {
		return s.sum, err
	}
	if _, err := s.e.Queue.EnqueueContext(ctx, task); err != nil {
		err = fmt.Errorf("enqueue the listing of %s on host %s: %w", s.sourceText(), s.req.On, err)
		_ = s.e.Ledger.SetListed(context.WithoutCancel(ctx), s.sum.Job, err)
		return s.sum, err
	}
	s.sum.ListedOn = s.req.On
	return s.sum, nil
}

// SubmitListed runs a list task's enqueue on its host: the tree is walked
// here, and its objects join the job the enqueuer began, cut into chunks
// as that enqueuer would. keys are the worker's SSE-C keys, for uploads
// written with one. A job whose listing ended meanwhile (cancelled) is
// left as it is.
func (e *Enqueuer) SubmitListed(ctx context.Context, p tasks.ListPayload, keys map[string][]byte) error {
	j, err := e.Ledger.GetJob(ctx, p.Job)
	switch {
	case err != nil:
		return err
	case j.Listed:
		e.logger().Info("nothing to list: the job's listing ended (cancelled?)", "job", p.Job)
		return nil
	}
	here := *e
	if p.ChunkSize > 0 {
		here.ChunkSize = p.ChunkSize
	}
	if p.Threshold > 0 {
		here.Threshold = p.Threshold
	}
	here.Host = p.On // the files are here, whatever this host calls itself
	req := requestOf(p)
	if p.SSECKeyMD5 != "" {
		if req.SSECKey, err = s3client.SSECKey(keys, p.SSECKeyMD5); err != nil {
			return fmt.Errorf("host %s: %w", p.On, err)
		}
	}
	for _, src := range p.Sources {
		if _, err := os.Lstat(src); err != nil {
			return fmt.Errorf("source %s on host %s: %w", src, p.On, err)
		}
	}
	_, err = here.Submit(ctx, req)
	return err
}

// listPayload and requestOf carry an upload's request to its host and
// back: the fields a list task keeps (TestListPayloadCarriesRequest).
func listPayload(r Request) tasks.ListPayload {
	p := tasks.ListPayload{
		Job: r.Job, On: r.On, Sources: r.Sources, Dest: r.Dest,
		Overwrite: r.Overwrite, Sync: r.Sync, Mirror: r.Mirror, MaxDelete: r.MaxDelete,
		Include: r.Include, Exclude: r.Exclude, Priority: r.Priority, Verify: r.Verify, SSECKeyMD5: r.SSECKeyMD5,
	}
	if !r.Write.IsZero() {
		w := r.Write
		p.Write = &w
	}
	return p
}

func requestOf(p tasks.ListPayload) Request {
	r := Request{
		Job: p.Job, On: p.On, Sources: p.Sources, Dest: p.Dest,
		Overwrite: p.Overwrite, Sync: p.Sync, Mirror: p.Mirror, MaxDelete: p.MaxDelete,
		Include: p.Include, Exclude: p.Exclude, Priority: p.Priority, Verify: p.Verify, SSECKeyMD5: p.SSECKeyMD5,
	}
	if p.Write != nil {
		r.Write = *p.Write
	}
	return r
}
