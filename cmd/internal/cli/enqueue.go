package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// outputFlags are the output options every subcommand has.
type outputFlags struct {
	json  bool
	quiet bool
}

func (o *outputFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON for scripts")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print nothing but errors (and the job ID)")
}

// NewEnqueueCommand is the enqueue program: submit a job, or follow and
// steer one.
func NewEnqueueCommand() *cobra.Command {
	var (
		job          s3fleet.Job
		o            submitOptions
		manifest     string
		from         string
		sseKeyFile   string
		expectedSize int64
		versionID    string
		metadata     []string
	)
	cmd := &cobra.Command{
		Use:   "enqueue [flags] SOURCE... DEST",
		Short: "Download S3 objects, or copy them to another store, with the s3fleet workers",
		Long: `enqueue splits S3 objects into byte-range chunk tasks on Redis; the workers
download them, or copy them. A SOURCE is s3://BUCKET/KEY or s3://BUCKET/PREFIX/
(every object under it) on the top-level endpoint, REMOTE://BUCKET/… on a
remote of the config file, or a local file or directory to upload (DEST is
then on S3; the workers' allow_source must cover it). DEST works as cp does: a key copied to a path
ending in "/" lands under its base name; a prefix lands as the keys' relative
paths under DEST. DEST is a path the workers see, or REMOTE://BUCKET/KEY (or
s3://…) to copy to S3 (the workers' allow_write must cover it).

It prints the job ID at once, or with --wait follows the job and exits 0
when every object landed, 1 when any failed or was cancelled, 2 on usage
errors.`,
		Example: `  enqueue s3://bucket/big.bin /data/big.bin --wait
  enqueue s3://bucket/logs/2026/ /data/logs/ --job logs-2026 --include '**/*.gz'
  enqueue --from keys.txt /data/ --priority high --manifest done.jsonl --wait
  enqueue s3://bucket/logs/ r2://archive/logs/ --wait
  enqueue --on host-7 s3://bucket/shard-7/ /local/nvme/ --wait
  enqueue /data/out/ s3://bucket/results/ --wait
  enqueue s3://a/p/ r2://b/p/ --sync --delete --max-delete 1000 --wait
  enqueue rm s3://bucket/tmp/ --dry-run
  enqueue status logs-2026
  enqueue cancel logs-2026`,
		Args: usageArgs(func(cmd *cobra.Command, args []string) error {
			if from != "" {
				return cobra.MinimumNArgs(1)(cmd, args)
			}
			return cobra.MinimumNArgs(2)(cmd, args)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			job.Sources, job.Dest = args[:len(args)-1], args[len(args)-1]
			o.opts = nil
			if cmd.Flags().Changed("expected-size") {
				o.opts = append(o.opts, s3fleet.ExpectedSize(expectedSize))
			}
			if versionID != "" {
				o.opts = append(o.opts, s3fleet.VersionID(versionID))
			}
			job.Verify = cfg.Verify
			if manifest != "" && !o.wait {
				return UsageError{errors.New("--manifest needs --wait (or use: enqueue wait JOB --manifest FILE)")}
			}
			o.manifest = manifest
			if job.Write.Metadata, err = ledger.ParseMetadata(metadata); err != nil {
				return UsageError{err}
			}
			if sseKeyFile != "" {
				if job.SSECKey, err = readSSECKey(sseKeyFile); err != nil {
					return UsageError{err}
				}
			}
			if from != "" {
				f, err := openFrom(from)
				if err != nil {
					return UsageError{err}
				}
				defer f.Close()
				job.From = f
			}
			if o.local && job.On != "" {
				return UsageError{errors.New("--local runs the job in this process: --on does not apply")}
			}
			return submit(cmd, cfg, job, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&job.ID, "job", "", "name the job; enqueueing again under an existing name resumes it")
	f.BoolVar(&o.wait, "wait", false, "follow the job with a progress bar until every object is done")
	f.Int64Var(&expectedSize, "expected-size", 0, "the object's size in bytes: no HEAD is sent; every chunk must agree on the size and ETag (single key only)")
	f.StringVar(&versionID, "version-id", "", "download this version of the object (single key only)")
	f.BoolVar(&job.Overwrite, "overwrite", false, "replace existing files at the destination")
	f.BoolVar(&job.Sync, "sync", false, "skip objects whose file exists with the same size and ETag; replace the others")
	f.BoolVar(&job.Mirror, "delete", false, "with --sync to S3: also delete destination objects absent at the source (after a complete listing; never for an empty source)")
	f.Int64Var(&job.MaxDelete, "max-delete", 0, "with --delete: delete none if more than this many would go (0: no cap)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be downloaded (objects, bytes, chunks); enqueue nothing")
	f.StringArrayVar(&job.Include, "include", nil, "download only keys matching this glob (** crosses /; repeatable)")
	f.StringArrayVar(&job.Exclude, "exclude", nil, "leave out keys matching this glob (repeatable)")
	f.StringVar(&job.Priority, "priority", "default", "queue priority: high, default or low")
	f.StringVar(&job.On, "on", "", "run the job on the workers of this host only (their host setting; see enqueue hosts); a local source to upload is then listed there")
	f.StringVar(&from, "from", "", `read sources from FILE ("-": stdin): s3:// URLs or manifest JSON lines`)
	f.StringVar(&manifest, "manifest", "", "with --wait, write one JSON line per finished object to FILE")
	f.StringVar(&job.RequestPayer, "request-payer", "", `"requester" to download from a requester-pays bucket`)
	f.StringVar(&job.ExpectedOwner, "expected-bucket-owner", "", "fail unless the bucket belongs to this account ID")
	f.BoolVar(&o.local, "local", false, "no Redis, no workers to start: run an in-memory queue and --concurrency workers in this process (implies --wait)")
	f.StringVar(&sseKeyFile, "sse-c-key-file", "", "file holding the 32-byte SSE-C key (raw or base64); only its MD5 is enqueued")
	f.StringVar(&job.Write.StorageClass, "storage-class", "", "copy to S3: the destination objects' storage class (STANDARD_IA, GLACIER_IR, …)")
	f.StringVar(&job.Write.SSE, "sse", "", "copy to S3: encrypt the destination objects: AES256 or aws:kms (aws:kms:dsse)")
	f.StringVar(&job.Write.SSEKMSKeyID, "sse-kms-key-id", "", "copy to S3 with --sse aws:kms: the KMS key (default: the bucket's or the account's)")
	f.StringArrayVar(&metadata, "metadata", nil, "copy to S3: user metadata KEY=VALUE added to the source's (repeatable)")
	o.out.add(cmd)
	config.AddFlags(f, config.Enqueuer)
	f.Lookup("verify").NoOptDefVal = "required" // --verify alone, as it was before it took a value
	cmd.AddCommand(newStatusCommand(), newWaitCommand(), newCancelCommand(), newRetryCommand(), newListCommand(), newRmCommand(), newHostsCommand(), newUploadsCommand(), newUICommand())
	return cmd
}

// newRmCommand deletes objects through the fleet.
func newRmCommand() *cobra.Command {
	var (
		job      = s3fleet.Job{Remove: true}
		o        submitOptions
		manifest string
	)
	cmd := &cobra.Command{
		Use:   "rm [flags] URL...",
		Short: "Delete objects (a key, or every object under a prefix) through the fleet",
		Long: `rm deletes the objects the URLs name (REMOTE://BUCKET/KEY, or every object
under REMOTE://BUCKET/PREFIX/) through the fleet's workers: DeleteObjects, 1000
keys a call, each key a failure of its own when S3's reply names it among the
Errors. Workers delete only under their allow_delete entries. A versioned
bucket keeps the objects' versions (S3 adds delete markers).

With --dry-run (and --json) it lists what would be deleted; with --wait and
--manifest it writes one JSON line per deleted object.`,
		Example: `  enqueue rm s3://bucket/tmp/ --dry-run --json
  enqueue rm s3://bucket/tmp/ --include '**/*.log' --wait --manifest deleted.jsonl`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if manifest != "" && !o.wait {
				return UsageError{errors.New("--manifest needs --wait")}
			}
			job.Sources, job.Verify, o.manifest = args, cfg.Verify, manifest
			return submit(cmd, cfg, job, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&job.ID, "job", "", "name the job; running rm again under an existing name resumes it")
	f.BoolVar(&o.wait, "wait", false, "follow the job with a progress bar until every object is done")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be deleted; delete nothing")
	f.StringArrayVar(&job.Include, "include", nil, "delete only keys matching this glob (** crosses /; repeatable)")
	f.StringArrayVar(&job.Exclude, "exclude", nil, "leave out keys matching this glob (repeatable)")
	f.StringVar(&manifest, "manifest", "", "with --wait, write one JSON line per deleted object to FILE")
	f.StringVar(&job.RequestPayer, "request-payer", "", `"requester" for a requester-pays bucket`)
	f.StringVar(&job.ExpectedOwner, "expected-bucket-owner", "", "fail unless the bucket belongs to this account ID")
	o.out.add(cmd)
	config.AddFlags(f, config.Enqueuer)
	return cmd
}

// submitOptions are the flags of a submission besides its job.
type submitOptions struct {
	wait, local, dryRun bool
	manifest            string
	out                 outputFlags
	opts                []s3fleet.Option // ExpectedSize, VersionID
}

// submit runs one submission (a copy, a download, an upload or an rm)
// through the API, prints what it did, and with wait follows it.
func submit(cmd *cobra.Command, cfg config.Config, job s3fleet.Job, o submitOptions) error {
	ctx := cmd.Context()
	wait, out := o.wait, o.out
	var c *s3fleet.Client
	var err error
	if o.local {
		if len(cfg.AllowDest) == 0 && !location.IsURL(job.Dest) && job.Dest != "" {
			// The in-process worker writes where this command was told to:
			// under DEST's nearest existing directory.
			cfg.AllowDest = []string{existingDir(job.Dest)}
		}
		c, err = s3fleet.Local(ctx, cfg)
		wait = true
	} else {
		c, err = s3fleet.Connect(ctx, cfg)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	w := cmd.OutOrStdout()
	if o.dryRun {
		return plan(ctx, c, job, o, w)
	}
	h, err := c.Submit(ctx, job, o.opts...)
	if errors.Is(err, s3fleet.ErrInvalid) {
		return UsageError{err}
	}
	if err != nil {
		return err
	}
	sum := h.Summary()
	switch {
	case !wait && out.json:
		return json.NewEncoder(w).Encode(sum)
	case !wait:
		fmt.Fprintln(w, sum.Job)
		return nil
	}
	switch {
	case out.quiet || out.json:
	case sum.ListedOn != "":
		fmt.Fprintf(cmd.ErrOrStderr(), "job %s: the files are listed on host %s; its objects join the job as they are found\n", sum.Job, sum.ListedOn)
	default:
		fmt.Fprintf(cmd.ErrOrStderr(), "job %s: %d objects (%s): %d new, %d in flight, %d resumed, %d already done, %d refused\n",
			sum.Job, sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.New, sum.Attached, sum.Resumed, sum.Skipped, sum.Refused)
	}
	return follow(ctx, h, cmd, out, o.manifest, false)
}

// plan prints a dry run: a line of counts, or with --json one JSON line
// per object with its action, then the summary.
func plan(ctx context.Context, c *s3fleet.Client, job s3fleet.Job, o submitOptions, w io.Writer) error {
	var each func(s3fleet.PlannedObject)
	if o.out.json {
		var mu sync.Mutex
		enc := json.NewEncoder(w)
		each = func(p s3fleet.PlannedObject) {
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(p)
		}
	}
	sum, err := c.Plan(ctx, job, each, o.opts...)
	if errors.Is(err, s3fleet.ErrInvalid) {
		return UsageError{err}
	}
	if err != nil {
		return err
	}
	switch {
	case o.out.json:
		return json.NewEncoder(w).Encode(sum)
	case job.Remove:
		fmt.Fprintf(w, "dry run: %d objects (%s): %d to delete, %d in flight, %d refused, %d filtered out\n",
			sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.New+sum.Resumed, sum.Attached, sum.Refused, sum.Filtered)
		return nil
	}
	fmt.Fprintf(w, "dry run: %d objects (%s): %d to transfer in %d chunks, %d in flight, %d to resume, %d already done, %d refused, %d filtered out",
		sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.New-sum.Deletes, sum.Chunks, sum.Attached, sum.Resumed, sum.Skipped, sum.Refused, sum.Filtered)
	if sum.Deletes > 0 {
		fmt.Fprintf(w, ", %d to delete (--delete)", sum.Deletes)
	}
	fmt.Fprintln(w)
	return nil
}

func openFrom(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	return f, nil
}

// readSSECKey reads the enqueuer's copy of an SSE-C key, for its HEADs.
func readSSECKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sse-c-key-file: %w", err)
	}
	key, _, err := config.ParseSSECKey(b)
	if err != nil {
		return nil, fmt.Errorf("--sse-c-key-file %s: %w", path, err)
	}
	return key, nil
}

// jobCommand builds a subcommand that takes one JOB argument.
func jobCommand(use, short string, run func(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags) error) (*cobra.Command, *outputFlags) {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(c *s3fleet.Client) error {
				h, err := c.Job(cmd.Context(), args[0])
				if errors.Is(err, s3fleet.ErrUnknownJob) {
					return UsageError{err}
				}
				if err != nil {
					return err
				}
				return run(cmd.Context(), h, cmd, out)
			})
		},
	}
	out.add(cmd)
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd, &out
}

func newStatusCommand() *cobra.Command {
	var all bool
	cmd, _ := jobCommand("status JOB", "Show a job's objects, states and bytes (exit 2 for an unknown job)",
		func(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags) error {
			return printStatus(ctx, h, cmd.OutOrStdout(), out.json, all)
		})
	cmd.Flags().BoolVar(&all, "all", false, "list every object (default: at most 50)")
	return cmd
}

func newWaitCommand() *cobra.Command {
	var manifest string
	cmd, _ := jobCommand("wait JOB", "Follow a job with a progress bar until every object is done",
		func(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags) error {
			return follow(ctx, h, cmd, out, manifest, false)
		})
	cmd.Flags().StringVar(&manifest, "manifest", "", "write one JSON line per finished object to FILE")
	return cmd
}

func newCancelCommand() *cobra.Command {
	cmd, _ := jobCommand("cancel JOB", "Cancel a job: pending chunks are removed, running ones stop, part files go",
		func(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags) error {
			n, err := h.Cancel(ctx)
			if err != nil {
				return err
			}
			switch {
			case out.json:
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"job": h.ID(), "cancelled": n})
			case !out.quiet:
				fmt.Fprintf(cmd.OutOrStdout(), "job %s: %d objects cancelled\n", h.ID(), n)
			}
			return nil
		})
	return cmd
}

func newRetryCommand() *cobra.Command {
	var wait bool
	var manifest string
	cmd, _ := jobCommand("retry JOB", "Run a job's failed and cancelled objects again (only their missing chunks)",
		func(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags) error {
			sum, err := h.Retry(ctx)
			if err != nil {
				return err
			}
			switch {
			case out.json && !wait:
				return json.NewEncoder(cmd.OutOrStdout()).Encode(sum)
			case !out.quiet && !out.json:
				fmt.Fprintf(cmd.ErrOrStderr(), "job %s: %d objects enqueued again (%d chunks)\n", h.ID(), sum.Resumed, sum.Chunks)
			}
			if wait {
				return follow(ctx, h, cmd, out, manifest, true)
			}
			return nil
		})
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job until every object is done")
	cmd.Flags().StringVar(&manifest, "manifest", "", "with --wait, write one JSON line per finished object to FILE")
	return cmd
}

// withClient loads a subcommand's configuration, connects, runs fn and
// closes.
func withClient(cmd *cobra.Command, fn func(*s3fleet.Client) error) error {
	cfg, err := loadConfig(cmd.Flags())
	if err != nil {
		return err
	}
	c, err := s3fleet.Connect(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}
