package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/worker"
)

// startLocal runs the fleet inside this process for enqueue --local: an
// embedded Redis-compatible server (miniredis) and a worker with
// cfg.Concurrency chunk slots, through the very task code the distributed
// fleet runs. The queue lives in memory: a crash loses it, and a re-run
// with --sync skips what had landed. It points cfg at the embedded server
// and returns a context that ends if the worker fails, and the function that
// stops both.
func startLocal(ctx context.Context, cfg *config.Config) (context.Context, func(), error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the embedded queue: %w", err)
	}
	cfg.Redis = "redis://" + mr.Addr() + "/0"
	cfg.PollInterval = 20 * time.Millisecond // an in-process queue: a look costs nothing
	jobCtx, fail := context.WithCancelCause(ctx)
	wctx, cancel := context.WithCancel(ctx)
	log := connect.Logger(*cfg)
	if cfg.LogLevel == "info" {
		// The progress bar and the summary tell the story (failures with their
		// causes); the in-process worker speaks up only for errors.
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := worker.Run(wctx, *cfg, log); err != nil && !errors.Is(err, context.Canceled) {
			fail(fmt.Errorf("local worker: %w", err))
		}
	}()
	return jobCtx, func() {
		cancel()
		wg.Wait()
		fail(nil)
		mr.Close()
	}, nil
}

// existingDir is the nearest directory at or above path that exists (an
// absolute path; "/" at worst).
func existingDir(path string) string {
	dir, err := filepath.Abs(path)
	if err != nil {
		return "/"
	}
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
