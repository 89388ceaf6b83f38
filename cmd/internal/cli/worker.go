package cli

import (
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/worker"
)

// NewWorkerCommand is the worker program.
func NewWorkerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker [flags]",
		Short: "Run an s3fleet worker: download chunks and assemble objects from the Redis queue",
		Long: `worker runs ranged GETs for the fleet's chunk tasks and writes their bytes
at their offset in the destination, then finalizes complete objects. Start
as many as wanted, on any host that reaches Redis, S3 and the destination
path. SIGINT or SIGTERM stops it gracefully.`,
		Example: `  worker --concurrency 16
  S3FLEET_REDIS=redis://queue:6379/0 S3FLEET_ENDPOINT=http://minio:9000 worker`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			return worker.Run(cmd.Context(), cfg, connect.Logger(cfg))
		},
	}
	config.AddFlags(cmd.Flags(), config.Worker)
	return cmd
}
