// Command worker runs one member of the s3fleet download fleet.
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
	code := cli.Execute(ctx, cli.NewWorkerCommand())
	stop()
	os.Exit(code)
}
