package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/assembler"
)

// jobView is a job as status --json prints it.
type jobView struct {
	ID         string    `json:"job"`
	Source     string    `json:"source"`
	Dest       string    `json:"dest"`
	Created    time.Time `json:"created"`
	State      string    `json:"state"`
	Listed     bool      `json:"listed"`
	ListError  string    `json:"list_error,omitempty"`
	Objects    int64     `json:"objects"`
	BytesTotal int64     `json:"bytes_total"`
	BytesDone  int64     `json:"bytes_done"`
	Counts     jobCounts `json:"counts"`
	// Checks counts the succeeded objects by the check their bytes passed.
	Checks   map[string]int64 `json:"checks,omitempty"`
	WallMS   int64            `json:"wall_ms,omitempty"`
	MBPerSec float64          `json:"mb_per_s,omitempty"`
	Items    []objectView     `json:"objects_list,omitempty"`
}

type jobCounts struct {
	Queued    int64 `json:"queued"`
	Running   int64 `json:"running"`
	Succeeded int64 `json:"success"`
	Skipped   int64 `json:"skipped"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
}

type objectView struct {
	Source            string `json:"source"`
	Path              string `json:"path"`
	State             string `json:"state"`
	Size              int64  `json:"size"`
	BytesDone         int64  `json:"bytes_done"`
	Chunks            int64  `json:"chunks"`
	Attempts          int64  `json:"attempts"`
	Checksum          string `json:"checksum,omitempty"`
	ChecksumAlgorithm string `json:"checksum_algorithm,omitempty"`
	Check             string `json:"check,omitempty"`
	CheckReason       string `json:"check_reason,omitempty"`
	Error             string `json:"error,omitempty"`
	Transfer          string `json:"transfer"`
}

func jobJSON(j s3fleet.JobStatus) jobView {
	return jobView{
		ID: j.ID, Source: j.Source, Dest: j.Dest, Created: j.Created.UTC(), State: j.State(),
		Listed: j.Listed, ListError: j.ListError, Objects: j.Objects, BytesTotal: j.BytesTotal, BytesDone: j.BytesDone,
		Counts: jobCounts{Succeeded: j.Succeeded, Skipped: j.Skipped, Failed: j.Failed, Cancelled: j.Cancelled},
		Checks: j.Checks,
	}
}

// stateName is an object's state in its job, as status prints it.
func stateName(r s3fleet.Record) string {
	if r.Skipped {
		return "skipped"
	}
	return r.State.String()
}

func printStatus(ctx context.Context, h *s3fleet.JobHandle, out io.Writer, asJSON, all bool) error {
	j, err := h.Status(ctx)
	if errors.Is(err, s3fleet.ErrUnknownJob) {
		return UsageError{err}
	}
	if err != nil {
		return err
	}
	v := jobJSON(j)
	var shown, hidden int
	for o, err := range h.Objects(ctx) {
		if err != nil {
			return err
		}
		switch o.State {
		case s3fleet.Queued:
			v.Counts.Queued++
		case s3fleet.Running:
			v.Counts.Running++
		}
		if asJSON || all || shown < 50 {
			v.Items = append(v.Items, objectView{
				Source: o.Source, Path: o.Dest, State: stateName(o), Size: o.Size, BytesDone: o.BytesDone,
				Chunks: o.Chunks, Attempts: o.Attempts, Checksum: o.Checksum, ChecksumAlgorithm: o.ChecksumAlgorithm,
				Check: o.Check, CheckReason: o.CheckReason, Error: o.Cause, Transfer: o.TransferID,
			})
			shown++
		} else {
			hidden++
		}
	}
	// Objects waiting in batches not yet started have no record to list.
	v.Counts.Queued += j.Pending
	if asJSON {
		return json.NewEncoder(out).Encode(v)
	}
	fmt.Fprintf(out, "job %s  %s\n  %s -> %s\n  created %s\n", v.ID, v.State, escaped(v.Source), escaped(v.Dest), v.Created.Local().Format(time.DateTime))
	fmt.Fprintf(out, "  objects %d: %d queued, %d running, %d success, %d skipped, %d failed, %d cancelled\n",
		v.Objects, v.Counts.Queued, v.Counts.Running, v.Counts.Succeeded, v.Counts.Skipped, v.Counts.Failed, v.Counts.Cancelled)
	fmt.Fprintf(out, "  bytes %s of %s\n", humanize.IBytes(uint64(v.BytesDone)), humanize.IBytes(uint64(v.BytesTotal)))
	if len(j.Checks) > 0 {
		fmt.Fprintf(out, "  checked: %s\n", checksLine(j.Checks))
	}
	if !v.Listed {
		fmt.Fprintln(out, "  (still enqueueing)")
	}
	if v.ListError != "" {
		fmt.Fprintf(out, "  enqueue stopped early: %s\n", escaped(v.ListError))
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tSIZE\tDONE\tCHECK\tSOURCE\tCAUSE")
	for _, o := range v.Items {
		cause := o.Error
		if cause == "" && o.Check == assembler.CheckNone {
			cause = o.CheckReason // why nothing was compared
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.State, humanize.IBytes(uint64(o.Size)),
			humanize.IBytes(uint64(o.BytesDone)), o.Check, escaped(o.Source), escaped(cause))
	}
	tw.Flush()
	if hidden > 0 {
		fmt.Fprintf(out, "  … %d more objects (--all lists them)\n", hidden)
	}
	if j.Pending > 0 {
		fmt.Fprintf(out, "  … and %d queued objects whose batches have not started (listed once they do)\n", j.Pending)
	}
	return nil
}
