package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/location"
)

// follow waits for a job (JobHandle.Wait), drawing a progress bar (bytes,
// objects, rate, ETA) on a terminal and plain lines every 5 s otherwise,
// and printing what the job waits for, then prints a summary and writes
// the manifest. It returns ExitError(1) when any object failed or was
// cancelled. With sinceNow, the summary counts only the bytes landed while
// following (after a retry); otherwise every byte of the job.
func follow(ctx context.Context, h *s3fleet.JobHandle, cmd *cobra.Command, out outputFlags, manifest string, sinceNow bool) error {
	start := time.Now()
	stderr := cmd.ErrOrStderr()
	show := newProgress(stderr, out.quiet || out.json)
	base := int64(-1) // bytes already there when following began, with sinceNow
	if !sinceNow {
		base = 0
	}
	// Wait tells a change; the display also moves on while nothing changes
	// (a job behind a backlog still prints a line every 5 s, and its bar's
	// time runs), so a log watcher does not take it for hung.
	var mu sync.Mutex
	var last *s3fleet.Progress
	draw := func() {
		mu.Lock()
		defer mu.Unlock()
		if last != nil {
			show(*last, time.Since(start))
		}
	}
	stop, ticking := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticking)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				draw()
			}
		}
	}()
	_, err := h.Wait(ctx,
		s3fleet.OnProgress(func(p s3fleet.Progress) {
			mu.Lock()
			if base < 0 {
				base = p.BytesDone - p.BytesSkipped
			}
			last = &p
			mu.Unlock()
			draw()
		}),
		s3fleet.OnNotice(func(note string) {
			if !out.quiet {
				fmt.Fprintf(stderr, "\n%s\n", escaped(note))
			}
		}))
	close(stop)
	<-ticking
	show(s3fleet.Progress{}, -1)
	switch {
	case errors.Is(err, s3fleet.ErrJobLost):
		return fmt.Errorf("%w; run the same command again to resume (what landed is kept and skipped)", err)
	case ctx.Err() != nil:
		return fmt.Errorf("stopped following job %s (see enqueue status %s): %w", h.ID(), h.ID(), context.Cause(ctx))
	case err != nil && !errors.Is(err, s3fleet.ErrJobFailed):
		return err
	}
	st, err := h.Status(ctx)
	if err != nil {
		return err
	}
	if manifest != "" {
		if err := writeManifest(ctx, h, manifest); err != nil {
			return err
		}
	}
	if err := report(ctx, h, st, max(base, 0), time.Since(start), cmd.OutOrStdout(), out); err != nil {
		return err
	}
	if st.State() == "success" {
		return nil
	}
	return ExitError{ExitFailed}
}

// newProgress returns the function that shows a job's progress; a negative
// elapsed time ends the display.
func newProgress(w io.Writer, silent bool) func(s3fleet.Progress, time.Duration) {
	if silent {
		return func(s3fleet.Progress, time.Duration) {}
	}
	if !isTerminal(w) {
		// The first line after 5 s, when there is a rate to show: a job
		// that ends sooner prints only its summary, not "0.0% … ETA ?".
		last := time.Now()
		return func(j s3fleet.Progress, elapsed time.Duration) {
			if elapsed >= 0 && time.Since(last) >= 5*time.Second {
				fmt.Fprintln(w, progressLine(j, elapsed))
				last = time.Now()
			}
		}
	}
	var bar *progressbar.ProgressBar
	return func(j s3fleet.Progress, elapsed time.Duration) {
		if elapsed < 0 {
			if bar != nil {
				_ = bar.Clear()
			}
			return
		}
		if bar == nil {
			bar = progressbar.NewOptions64(max(j.BytesTotal, 1),
				progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionUseIECUnits(true),
				progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth(), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowDescriptionAtLineEnd(), progressbar.OptionSetRenderBlankState(true))
		}
		bar.ChangeMax64(max(j.BytesTotal, 1))
		bar.Describe(fmt.Sprintf("%d/%d objects%s", j.Finished(), j.Objects, failedNote(j)))
		_ = bar.Set64(min(j.BytesDone+j.BytesInFlight, j.BytesTotal)) // with what is streaming: finer than chunks
	}
}

// checksLine renders a job's checks, most first: "12 crc64nvme, 1 none".
func checksLine(checks map[string]int64) string {
	names := slices.Collect(maps.Keys(checks))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(checks[b], checks[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%d %s", checks[n], n)
	}
	return strings.Join(parts, ", ")
}

func failedNote(j s3fleet.Progress) string {
	if j.Failed == 0 {
		return ""
	}
	return fmt.Sprintf(", %d failed", j.Failed)
}

func progressLine(j s3fleet.Progress, elapsed time.Duration) string {
	pct := 100.0
	if j.BytesTotal > 0 {
		pct = 100 * float64(j.BytesDone) / float64(j.BytesTotal)
	}
	rate := float64(j.BytesDone-j.BytesSkipped) / max(elapsed.Seconds(), 0.001)
	eta := "?"
	if rate > 0 && j.BytesTotal >= j.BytesDone {
		eta = (time.Duration(float64(j.BytesTotal-j.BytesDone)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%5.1f%%  %s / %s  %d/%d objects  %s/s  ETA %s%s",
		pct, humanize.IBytes(uint64(j.BytesDone)), humanize.IBytes(uint64(j.BytesTotal)),
		j.Finished(), j.Objects, humanize.IBytes(uint64(rate)), eta, failedNote(j))
}

// report prints the summary of a finished job: objects, bytes, wall time,
// MB/s and every failure with its cause. base is what had landed before
// the wall time began (a retry's earlier bytes).
func report(ctx context.Context, h *s3fleet.JobHandle, j s3fleet.JobStatus, base int64, wall time.Duration, w io.Writer, out outputFlags) error {
	got := max(j.BytesDone-j.BytesSkipped-base, 0)
	mbps := float64(got) / 1e6 / max(wall.Seconds(), 0.001)
	if out.json {
		v := jobJSON(j)
		v.WallMS, v.MBPerSec = wall.Milliseconds(), mbps
		return json.NewEncoder(w).Encode(v)
	}
	if out.quiet {
		return nil
	}
	fmt.Fprintf(w, "job %s: %d objects, %d succeeded, %d skipped, %d failed, %d cancelled; %s %s in %s (%.1f MB/s)\n",
		j.ID, j.Objects, j.Succeeded, j.Skipped, j.Failed, j.Cancelled, humanize.IBytes(uint64(got)), moved(j),
		wall.Round(time.Millisecond), mbps)
	if len(j.Checks) > 0 {
		fmt.Fprintf(w, "  checked: %s\n", checksLine(j.Checks))
	}
	if j.ListError != "" {
		fmt.Fprintf(w, "  enqueue stopped early: %s\n", escaped(j.ListError))
	}
	if j.Failed+j.Cancelled == 0 {
		return nil
	}
	for rec, err := range h.Objects(ctx) {
		if err != nil {
			return err
		}
		if rec.State == s3fleet.Failed || rec.State == s3fleet.Cancelled {
			fmt.Fprintf(w, "  %s %s: %s\n", rec.State, escaped(rec.Source), escaped(rec.Cause))
		}
	}
	return nil
}

// writeManifest writes the job's manifest to a file (JobHandle.WriteManifest):
// enqueue --from reads it back.
func writeManifest(ctx context.Context, h *s3fleet.JobHandle, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	err = h.WriteManifest(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
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

func newListCommand() *cobra.Command {
	var out outputFlags
	var limit int64
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recent jobs with state, objects, bytes and age",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(c *s3fleet.Client) error { return printJobs(cmd, c, limit, out) })
		},
	}
	cmd.Flags().Int64Var(&limit, "limit", 20, "how many jobs, newest first")
	out.add(cmd)
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd
}

// printJobs lists the newest jobs.
func printJobs(cmd *cobra.Command, c *s3fleet.Client, limit int64, out outputFlags) error {
	jobs, err := c.Jobs(cmd.Context(), limit)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if out.json {
		views := make([]jobView, 0, len(jobs))
		for _, j := range jobs {
			views = append(views, jobJSON(j))
		}
		return json.NewEncoder(w).Encode(views)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tOBJECTS\tFAILED\tBYTES\tAGE\tSOURCE")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s/%s\t%s\t%s\n", j.ID, j.State(), j.Finished(), j.Objects, j.Failed,
			humanize.IBytes(uint64(j.BytesDone)), humanize.IBytes(uint64(j.BytesTotal)),
			time.Since(j.Created).Round(time.Second), escaped(j.Source))
	}
	return tw.Flush()
}

// escaped is s as a line of human output shows it: quoted, with escapes,
// when it holds a control character (a newline in a key would forge a
// line of the summary) or bytes that are not UTF-8; as it is otherwise.
// JSON output needs none of this.
func escaped(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

// moved is what the job did with its bytes: downloaded to files, or, to
// S3, copied from S3 or uploaded from files; an rm job has no destination.
func moved(j s3fleet.JobStatus) string {
	switch {
	case j.Dest == "":
		return "deleted"
	case !location.IsURL(j.Dest):
		return "downloaded"
	case location.IsURL(j.Source):
		return "copied"
	}
	return "uploaded"
}
