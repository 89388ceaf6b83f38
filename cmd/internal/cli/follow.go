package cli

import (
	"bufio"
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
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/hibiken/asynq"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/ledger"
)

// pollEvery is how often a follower reads the job's counters: every
// 50 ms at first, then a twentieth of the time followed so far, at most
// every 500 ms. A short job ends within 50 ms of its last object; a long
// one costs Redis 2 reads a second, not 20, and ends within 5 % of its
// time.
func pollEvery(followed time.Duration) time.Duration {
	return min(max(followed/20, 50*time.Millisecond), 500*time.Millisecond)
}

// follow waits for a job, drawing a progress bar (bytes, objects, rate,
// ETA) on a terminal and plain lines every 5 s otherwise, then prints a
// summary and writes the manifest. It returns ExitError(1) when any object
// failed or was cancelled.
// With sinceNow, the summary counts only the bytes landed while following
// (after a retry); otherwise every byte of the job.
//
// A job that vanishes while followed was lost by Redis (restarted without
// persistence): the error says so and how to resume. Queues with tasks
// waiting that no live worker serves are named after a few seconds (see
// idleQueues), and named again when that changes.
func follow(ctx context.Context, env *env, id string, cmd *cobra.Command, out outputFlags, manifest string, sinceNow bool) error {
	led := env.led
	start := time.Now()
	stderr := cmd.ErrOrStderr()
	var seen bool // the job was read once
	say := waitNotices{w: stderr, job: id, start: start}
	if env.insp != nil {
		say.insp = env.insp
	}
	show := newProgress(stderr, out.quiet || out.json)
	var j ledger.Job
	var base int64 // bytes already there when following began, with sinceNow
	if sinceNow {
		base = -1 // read on the first poll
	}
	var outage time.Time
	for {
		var err error
		j, err = led.GetJob(ctx, id)
		switch {
		case errors.Is(err, ledger.ErrNotFound) && seen:
			show(ledger.Job{}, -1)
			return fmt.Errorf("job %s is gone from Redis while it ran: Redis lost it (restarted or flushed without persistence: run it with appendonly yes); "+
				"run the same command again to resume (what landed is kept and skipped)", id)
		case errors.Is(err, ledger.ErrNotFound):
			return err
		case err != nil && ctx.Err() == nil:
			// Redis restarting or unreachable: the job goes on; keep asking.
			if outage.IsZero() {
				outage = time.Now()
				if !out.quiet {
					fmt.Fprintf(stderr, "\nredis unreachable (%v); still waiting for job %s\n", err, id)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		case err != nil:
			show(ledger.Job{}, -1)
			return fmt.Errorf("stopped following job %s (see enqueue status %s): %w", id, id, context.Cause(ctx))
		}
		if !outage.IsZero() && !out.quiet {
			fmt.Fprintf(stderr, "redis is back after %s\n", time.Since(outage).Round(time.Second))
			outage = time.Time{}
		}
		seen = true
		if base < 0 {
			base = j.BytesDone - j.BytesSkip
		}
		if j.Done() {
			break
		}
		if !out.quiet {
			say.note(j)
			say.idle()
		}
		show(j, time.Since(start))
		select {
		case <-ctx.Done():
			show(ledger.Job{}, -1)
			return fmt.Errorf("stopped following job %s (see enqueue status %s): %w", id, id, context.Cause(ctx))
		case <-time.After(pollEvery(time.Since(start))):
		}
	}
	show(j, -1)
	if manifest != "" {
		if err := writeManifest(ctx, led, id, manifest); err != nil {
			return err
		}
	}
	if err := report(ctx, led, j, max(base, 0), time.Since(start), cmd.OutOrStdout(), out); err != nil {
		return err
	}
	if j.Failed+j.Cancelled > 0 || j.ListError != "" {
		return ExitError{ExitFailed}
	}
	return nil
}

// newProgress returns the function that shows a job's progress; a negative
// elapsed time ends the display.
func newProgress(w io.Writer, silent bool) func(ledger.Job, time.Duration) {
	if silent {
		return func(ledger.Job, time.Duration) {}
	}
	if !isTerminal(w) {
		// The first line after 5 s, when there is a rate to show: a job
		// that ends sooner prints only its summary, not "0.0% … ETA ?".
		last := time.Now()
		return func(j ledger.Job, elapsed time.Duration) {
			if elapsed >= 0 && time.Since(last) >= 5*time.Second {
				fmt.Fprintln(w, progressLine(j, elapsed))
				last = time.Now()
			}
		}
	}
	var bar *progressbar.ProgressBar
	return func(j ledger.Job, elapsed time.Duration) {
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
		_ = bar.Set64(min(j.BytesDone+max(j.Moving, 0), j.BytesTotal)) // with what is streaming: finer than chunks
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

func failedNote(j ledger.Job) string {
	if j.Failed == 0 {
		return ""
	}
	return fmt.Sprintf(", %d failed", j.Failed)
}

func progressLine(j ledger.Job, elapsed time.Duration) string {
	pct := 100.0
	if j.BytesTotal > 0 {
		pct = 100 * float64(j.BytesDone) / float64(j.BytesTotal)
	}
	rate := float64(j.BytesDone-j.BytesSkip) / max(elapsed.Seconds(), 0.001)
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
func report(ctx context.Context, led *ledger.Ledger, j ledger.Job, base int64, wall time.Duration, w io.Writer, out outputFlags) error {
	got := max(j.BytesDone-j.BytesSkip-base, 0)
	mbps := float64(got) / 1e6 / max(wall.Seconds(), 0.001)
	if out.json {
		v := jobJSON(j)
		v.WallMS, v.MBPerSec = wall.Milliseconds(), mbps
		return json.NewEncoder(w).Encode(v)
	}
	if out.quiet {
		return nil
	}
	fmt.Fprintf(w, "job %s: %d objects, %d succeeded, %d skipped, %d failed, %d cancelled; %s downloaded in %s (%.1f MB/s)\n",
		j.ID, j.Objects, j.Succeeded, j.Skipped, j.Failed, j.Cancelled, humanize.IBytes(uint64(got)),
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
	return led.JobObjects(ctx, j.ID, func(o ledger.JobObject) error {
		if o.JobState == ledger.Failed || o.JobState == ledger.Cancelled {
			fmt.Fprintf(w, "  %s %s: %s\n", o.JobState, escaped(o.Source()), escaped(o.Error))
		}
		return nil
	})
}

// writeManifest writes one JSON line per finished object of the job: its
// record, as the assembler made it. enqueue --from reads it back.
func writeManifest(ctx context.Context, led *ledger.Ledger, id, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	err = led.JobObjects(ctx, id, func(o ledger.JobObject) error {
		rec := assembler.RecordOf(o.Transfer)
		rec.State = o.JobState
		return enc.Encode(rec)
	})
	if err == nil {
		err = bw.Flush()
	}
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
			return withEnv(cmd, false, func(env *env) error { return printJobs(cmd, env, limit, out) })
		},
	}
	cmd.Flags().Int64Var(&limit, "limit", 20, "how many jobs, newest first")
	out.add(cmd)
	config.AddFlags(cmd.Flags(), config.Enqueuer)
	return cmd
}

// printJobs lists the newest jobs.
func printJobs(cmd *cobra.Command, env *env, limit int64, out outputFlags) error {
	jobs, err := env.led.RecentJobs(cmd.Context(), limit)
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
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s/%s\t%s\t%s\n", j.ID, JobState(j), j.Finished(), j.Objects, j.Failed,
			humanize.IBytes(uint64(j.BytesDone)), humanize.IBytes(uint64(j.BytesTotal)),
			time.Since(time.UnixMilli(j.Created)).Round(time.Second), escaped(j.Source))
	}
	return tw.Flush()
}

// waitNotices says, while a job is followed, what it waits for: what a
// worker noted (space on a full disk), at most every 10 s, and the queues
// with tasks waiting that no worker serves, looked at every 5 s from 3 s
// in and said when that changes.
type waitNotices struct {
	w         io.Writer
	insp      queueInspector // nil: no look at the queues
	job       string
	start     time.Time
	noted     time.Time // when a note was last said
	lastCheck time.Time // of the queues
	unserved  string    // the queues last said to have no worker
}

// note says the job's note if it is new since the last one said.
func (n *waitNotices) note(j ledger.Job) {
	if j.Note == "" || j.NoteAt <= max(n.noted.UnixMilli(), n.start.UnixMilli()) || time.Since(n.noted) < 10*time.Second {
		return
	}
	fmt.Fprintf(n.w, "\nwaiting: %s\n", escaped(j.Note))
	n.noted = time.Now()
}

// idle says which queues no worker serves, when that has changed.
func (n *waitNotices) idle() {
	if n.insp == nil || time.Since(n.start) < 3*time.Second || time.Since(n.lastCheck) < 5*time.Second {
		return
	}
	n.lastCheck = time.Now()
	idle, err := idleQueues(n.insp)
	if err != nil || idle == n.unserved {
		return
	}
	if idle == "" {
		fmt.Fprintf(n.w, "\na worker serves the waiting tasks now\n")
	} else {
		fmt.Fprintf(n.w, "\nno worker is serving %s; still waiting for job %s (start one: worker --allow-dest DIR)\n", idle, n.job)
	}
	n.unserved = idle
}

// queueInspector is the part of asynq.Inspector idleQueues reads.
type queueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	Servers() ([]*asynq.ServerInfo, error)
}

// idleQueues names the queues with tasks waiting that no live worker
// serves ("queue chunks (12 tasks waiting)"), or "" when there are none.
// asynq's record of each worker lives 10 s past its last heartbeat (every
// 5 s): a worker gone is noticed within seconds.
func idleQueues(insp queueInspector) (string, error) {
	servers, err := insp.Servers()
	if err != nil {
		return "", err
	}
	served := map[string]bool{}
	for _, s := range servers {
		for q := range s.Queues {
			served[q] = true
		}
	}
	queues, err := insp.Queues()
	if err != nil {
		return "", err
	}
	slices.Sort(queues)
	var idle []string
	for _, q := range queues {
		if served[q] {
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil || info.Paused {
			continue
		}
		if waiting := info.Pending + info.Scheduled + info.Retry; waiting > 0 {
			idle = append(idle, fmt.Sprintf("queue %s (%d tasks waiting)", q, waiting))
		}
	}
	return strings.Join(idle, ", "), nil
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
