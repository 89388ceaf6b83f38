package worker_test

import (
	"context"
	"log/slog"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/worker"
)

func runWorker(ctx context.Context, cfg config.Config) error {
	return worker.Run(ctx, cfg, slog.New(slog.DiscardHandler))
}

func enqueuerRequest(srcs []string, dest string) enqueuer.Request {
	return enqueuer.Request{Sources: srcs, Dest: dest}
}
