package cli

import (
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/worker"
)

// newUICommand serves the web UI and metrics without a worker.
func newUICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web UI and /metrics (the fleet's backlog among them) without running tasks",
		Long: `ui serves what a worker's --ui listener does: the asynq web UI at /ui/,
Prometheus metrics at /metrics (asynq's queue sizes and s3fleet_backlog, the
number to scale workers by) and /healthz, without taking any task. It stays
up however many workers run, or none: what an autoscaler and a dashboard
read. It listens on --ui (default ` + worker.DefaultUIAddr + `); SIGINT or SIGTERM stops it.`,
		Example: `  enqueue ui --ui 0.0.0.0:8080 --ui-readonly`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			return worker.ServeUI(cmd.Context(), cfg, connect.Logger(cfg))
		},
	}
	config.AddFlags(cmd.Flags(), config.Enqueuer|config.Monitor)
	return cmd
}
