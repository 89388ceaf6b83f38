package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
)

// NewEnqueueCommand is the enqueue program: submit a job, or inspect one.
func NewEnqueueCommand() *cobra.Command {
	var (
		jobName      string
		wait         bool
		expectedSize int64
		versionID    string
		overwrite    bool
		verify       bool
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "enqueue [flags] s3://BUCKET/KEY|s3://BUCKET/PREFIX/ DEST",
		Short: "Download S3 objects with the s3fleet workers",
		Long: `enqueue splits S3 objects into byte-range chunk tasks on Redis; the workers
download them. DEST works as cp does: a key copied to a path ending in "/"
lands under its base name; a prefix (a URL ending in "/") lands as the keys'
relative paths under DEST. DEST is a path the workers see.

It prints the job ID at once, or with --wait follows the job and exits 0
when every object landed, 1 when any failed, 2 on usage errors.`,
		Example: `  enqueue s3://bucket/big.bin /data/big.bin --wait
  enqueue s3://bucket/logs/2026/ /data/logs/ --job logs-2026
  enqueue status logs-2026`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			env, err := openEnv(cmd.Context(), cfg, true)
			if err != nil {
				return err
			}
			defer env.close()
			if !cmd.Flags().Changed("expected-size") {
				expectedSize = -1
			}
			sum, err := env.enq.Submit(cmd.Context(), enqueuer.Request{
				Job: jobName, Source: args[0], Dest: args[1], ExpectedSize: expectedSize,
				VersionID: versionID, Overwrite: overwrite, Verify: verify,
			})
			if errors.Is(err, enqueuer.ErrUsage) {
				return UsageError{err}
			}
			if err != nil {
				if sum.Job != "" {
					return fmt.Errorf("job %s: %w", sum.Job, err)
				}
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON && !wait {
				return json.NewEncoder(out).Encode(sum)
			}
			if !wait {
				fmt.Fprintln(out, sum.Job)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "job %s: %d objects (%s): %d new, %d in flight, %d resumed, %d already done, %d refused\n",
				sum.Job, sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.New, sum.Attached, sum.Resumed, sum.Skipped, sum.Refused)
			return waitJob(cmd.Context(), env.led, sum.Job, cmd.ErrOrStderr(), out, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&jobName, "job", "", "name the job; enqueueing again under an existing name resumes it")
	f.BoolVar(&wait, "wait", false, "follow the job with a progress line until every object is done")
	f.Int64Var(&expectedSize, "expected-size", 0, "the object's size in bytes: skips the HEAD (single key only)")
	f.StringVar(&versionID, "version-id", "", "download this version of the object (single key only)")
	f.BoolVar(&overwrite, "overwrite", false, "replace existing files at the destination")
	f.BoolVar(&verify, "verify", false, "when S3 has no CRC32C, check a single-part object's MD5 against its ETag")
	f.BoolVar(&asJSON, "json", false, "print JSON for scripts")
	config.AddFlags(f, config.Enqueuer)
	cmd.AddCommand(newStatusCommand())
	return cmd
}

func newStatusCommand() *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's objects, states and bytes (exit 2 for an unknown job)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			env, err := openEnv(cmd.Context(), cfg, false)
			if err != nil {
				return err
			}
			defer env.close()
			return printStatus(cmd.Context(), env.led, args[0], cmd.OutOrStdout(), asJSON, all)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	cmd.Flags().BoolVar(&all, "all", false, "list every object (default: at most 50, failures first)")
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd
}

// env is what the enqueue commands connect to.
type env struct {
	led   *ledger.Ledger
	enq   *enqueuer.Enqueuer
	close func()
}

func openEnv(ctx context.Context, cfg config.Config, withS3 bool) (*env, error) {
	_, rdb, err := connect.Redis(ctx, cfg)
	if err != nil {
		return nil, err
	}
	led := ledger.New(rdb, cfg.Retention)
	e := &env{led: led, close: func() { rdb.Close() }}
	if !withS3 {
		return e, nil
	}
	s3c, err := s3client.New(ctx, connect.S3Options(cfg))
	if err != nil {
		rdb.Close()
		return nil, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	e.enq = &enqueuer.Enqueuer{
		S3: s3c, Ledger: led, Queue: client, Log: connect.Logger(cfg),
		ChunkSize: int64(cfg.ChunkSize), Threshold: int64(cfg.Threshold), Parallel: 16,
		ChunkOptions:    []asynq.Option{asynq.MaxRetry(cfg.MaxRetries), asynq.Timeout(cfg.ChunkTimeout)},
		AssembleOptions: []asynq.Option{asynq.MaxRetry(cfg.MaxRetries), asynq.Retention(cfg.Retention)},
	}
	return e, nil
}

// waitJob follows a job until it is done, drawing a progress line, and
// returns an ExitError(1) when any object failed or was cancelled.
func waitJob(ctx context.Context, led *ledger.Ledger, id string, progress, out io.Writer, asJSON bool) error {
	start := time.Now()
	tty := isTerminal(progress)
	var last time.Time
	for {
		j, err := led.GetJob(ctx, id)
		if err != nil {
			return err
		}
		if j.Done() {
			if tty {
				fmt.Fprint(progress, "\r\033[K")
			}
			return finalReport(ctx, led, j, time.Since(start), out, asJSON)
		}
		if tty || time.Since(last) >= 5*time.Second {
			line := progressLine(j, time.Since(start))
			if tty {
				fmt.Fprintf(progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(progress, line)
			}
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for job %s (it goes on; see enqueue status %s): %w", id, id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func progressLine(j ledger.Job, elapsed time.Duration) string {
	pct := 100.0
	if j.BytesTotal > 0 {
		pct = 100 * float64(j.BytesDone) / float64(j.BytesTotal)
	}
	rate := float64(j.BytesDone-j.BytesSkip) / max(elapsed.Seconds(), 0.001)
	eta := "?"
	if rate > 0 && j.BytesTotal >= j.BytesDone {
		eta = (time.Duration(float64(j.BytesTotal-j.BytesDone)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%5.1f%%  %s / %s  %d/%d objects  %s/s  ETA %s  (%d failed)",
		pct, humanize.IBytes(uint64(j.BytesDone)), humanize.IBytes(uint64(j.BytesTotal)),
		j.Finished(), j.Objects, humanize.IBytes(uint64(rate)), eta, j.Failed)
}

func finalReport(ctx context.Context, led *ledger.Ledger, j ledger.Job, wall time.Duration, out io.Writer, asJSON bool) error {
	if asJSON {
		if err := json.NewEncoder(out).Encode(jobJSON(j)); err != nil {
			return err
		}
	} else {
		got := j.BytesDone - j.BytesSkip
		mbps := float64(got) / 1e6 / max(wall.Seconds(), 0.001)
		fmt.Fprintf(out, "job %s: %d objects, %d succeeded, %d skipped, %d failed, %d cancelled; %s downloaded in %s (%.1f MB/s)\n",
			j.ID, j.Objects, j.Succeeded, j.Skipped, j.Failed, j.Cancelled, humanize.IBytes(uint64(got)),
			wall.Round(time.Millisecond), mbps)
		if j.ListError != "" {
			fmt.Fprintf(out, "  enqueue stopped early: %s\n", j.ListError)
		}
		if j.Failed+j.Cancelled > 0 {
			_ = led.JobObjects(ctx, j.ID, func(o ledger.JobObject) error {
				if o.JobState == ledger.Failed || o.JobState == ledger.Cancelled {
					fmt.Fprintf(out, "  %s %s: %s\n", o.JobState, o.Source(), o.Error)
				}
				return nil
			})
		}
	}
	if j.Failed+j.Cancelled > 0 || j.ListError != "" {
		return ExitError{ExitFailed}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
