package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/config"
)

func newHostsCommand() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List the live workers by host name, the names --on takes",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(c *s3fleet.Client) error {
				views, err := c.Hosts(cmd.Context())
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if out.json {
					return json.NewEncoder(w).Encode(views)
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "HOST\tPID\tMACHINE\tCONCURRENCY\tACTIVE\tUP")
				for _, v := range views {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", v.Host, v.PID, v.Machine, v.Concurrency, v.Active, time.Since(v.Started).Round(time.Second))
				}
				return tw.Flush()
			})
		},
	}
	out.add(cmd)
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd
}

func newUploadsCommand() *cobra.Command {
	var (
		out   outputFlags
		abort bool
	)
	cmd := &cobra.Command{
		Use:   "uploads URL",
		Short: "List the fleet's multipart uploads in progress under a bucket or prefix (never another tool's); --abort removes the stray ones",
		Long: `uploads lists the multipart uploads in progress under REMOTE://BUCKET[/PREFIX]
that the fleet's workers created (each left a note in Redis, kept for the
retention), with their transfer's state. A stray one is an upload no transfer
will complete or abort: its record expired, names another upload, or ended in
success or cancel. --abort aborts the stray ones; it never touches an upload
of another tool, nor one a queued, running or failed (retryable) object owns.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(c *s3fleet.Client) error {
				w := cmd.OutOrStdout()
				enc := json.NewEncoder(w)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				if !out.json {
					fmt.Fprintln(tw, "URL\tSTATE\tSTRAY\tINITIATED\tUPLOAD")
				}
				n, stray := 0, 0
				err := c.Uploads(cmd.Context(), args[0], abort, func(u s3fleet.Upload) error {
					n++
					if u.Stray {
						stray++
					}
					if out.json {
						return enc.Encode(u)
					}
					mark := map[bool]string{true: "stray", false: ""}[u.Stray]
					if u.Aborted {
						mark = "aborted"
					} else if u.Error != "" {
						mark = "abort failed: " + u.Error
					}
					_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.URL, u.State, mark, u.Initiated.Format(time.RFC3339), u.UploadID)
					return err
				})
				if errors.Is(err, s3fleet.ErrInvalid) {
					return UsageError{err}
				}
				if err != nil {
					return err
				}
				if out.json {
					return nil
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if !out.quiet {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d uploads of the fleet, %d stray\n", n, stray)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&abort, "abort", false, "abort the stray uploads")
	out.add(cmd)
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd
}
