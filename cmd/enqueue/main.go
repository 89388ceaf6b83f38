// Command enqueue submits S3 downloads to the s3fleet workers and follows
// them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/s3fleet/s3fleet/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, cli.NewEnqueueCommand())
	stop()
	os.Exit(code)
}
