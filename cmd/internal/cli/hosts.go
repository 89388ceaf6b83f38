package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/tasks"
)

// hostView is one live worker as enqueue hosts shows it.
type hostView struct {
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Machine     string    `json:"machine"`
	Concurrency int       `json:"concurrency"`
	Active      int       `json:"active"`
	Started     time.Time `json:"started"`
}

func newHostsCommand() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List the live workers by host name, the names --on takes",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withEnv(cmd, false, func(env *env) error {
				servers, err := env.insp.Servers()
				if err != nil {
					return fmt.Errorf("list workers: %w", err)
				}
				var views []hostView
				for _, s := range servers {
					for q := range s.Queues {
						if h, ok := tasks.HostOf(q); ok {
							views = append(views, hostView{Host: h, PID: s.PID, Machine: s.Host, Concurrency: s.Concurrency,
								Active: len(s.ActiveWorkers), Started: s.Started})
						}
					}
				}
				slices.SortFunc(views, func(a, b hostView) int {
					return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID))
				})
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
