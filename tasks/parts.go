package tasks

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/s3fleet/s3fleet/ledger"
)

// PartFiles are the part files and multipart uploads one worker made,
// kept so that it removes those that lost their object: one that lost the
// race to be the transfer's is removed at once, but the winner's stays
// behind when the object fails elsewhere (on a host whose workers do not
// share DEST with the rest of the fleet, say), and no task of its own
// comes back to it.
type PartFiles struct {
	mu    sync.Mutex
	files map[string]madePart // by path, or by upload ID
}

type madePart struct {
	transfer, token string
	drop            func() error // removes the file or aborts the upload; nil once gone
}

// removeFile is the drop of a part file: gone already counts as removed.
func removeFile(path string) func() error {
	return func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
}

// NewPartFiles returns an empty set.
func NewPartFiles() *PartFiles { return &PartFiles{files: map[string]madePart{}} }

func (p *PartFiles) add(transfer, token, key string, drop func() error) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.files[key] = madePart{transfer: transfer, token: token, drop: drop}
	p.mu.Unlock()
}

// remove deletes a part file, tracked or not.
func (p *PartFiles) remove(path string) {
	if path == "" {
		return
	}
	p.drop(path, removeFile(path))
}

// drop runs drop (removes the part file or aborts the upload key names)
// and forgets it.
func (p *PartFiles) drop(key string, drop func() error) {
	_ = drop()
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.files, key)
	p.mu.Unlock()
}

// Len is the number of part files tracked.
func (p *PartFiles) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.files)
}

// Sweep removes the tracked part files that are no longer their
// transfer's: its record names another part file (its data was dropped:
// failed, cancelled, restarted) or is gone, or the object was finalized
// (its part file renamed). It forgets those it removed.
func (p *PartFiles) Sweep(ctx context.Context, led transferReader, log *slog.Logger) {
	p.mu.Lock()
	files := make(map[string]madePart, len(p.files))
	for k, v := range p.files {
		files[k] = v
	}
	p.mu.Unlock()
	for key, m := range files {
		x, err := led.GetTransfer(ctx, m.transfer)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
		case err != nil:
			continue // ask again next time
		case x.PartToken == m.token && x.State != ledger.Success:
			continue // still the transfer's
		}
		if err := m.drop(); err != nil {
			logger(log).Warn("remove stale part file or upload", "transfer", m.transfer, "part", key, "err", err)
			continue
		}
		if err == nil && x.PartToken == m.token { // finalized: renamed to its object, nothing was left to remove
			logger(log).Debug("forgot the part file of a finalized object", "transfer", m.transfer, "part", key)
		} else {
			logger(log).Info("removed a part file or upload that is no longer its object's", "transfer", m.transfer, "part", key)
		}
		p.mu.Lock()
		delete(p.files, key)
		p.mu.Unlock()
	}
}

// SweepParts runs Sweep every interval until ctx ends.
func (h *ChunkHandler) SweepParts(ctx context.Context, interval time.Duration) {
	if h.Parts == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Parts.Sweep(ctx, h.Ledger, h.Log)
		}
	}
}
