// Package jobsui serves the fleet's jobs view beside the asynq web UI:
// recent jobs with their state, objects, bytes, rate and ETA, updated
// live; a job's page with its throughput over time, every object's state,
// check, size and cause of failure (paged), links to the tasks' pages in
// asynqmon, and cancel and retry buttons. Plain server-rendered HTML and a
// small script that refreshes parts of the page: no CDN, it works offline.
//
// The actions are POSTs that a read-only UI refuses on the server, and
// that must come from the UI's own pages (http.CrossOriginProtection): a
// UI on a loopback port does not obey a form on another site.
package jobsui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// Path is where the jobs view is served.
const Path = "/jobs"

// store is what the pages read of the ledger.
type store interface {
	RecentJobs(ctx context.Context, n int64) ([]ledger.Job, error)
	GetJob(ctx context.Context, id string) (ledger.Job, error)
	JobObjectsFrom(ctx context.Context, id string, skip int64, fn func(ledger.JobObject) error) error
	Throughput(ctx context.Context, job string) ([]ledger.Bucket, error)
}

// control is what the buttons do (enqueuer.Enqueuer).
type control interface {
	Cancel(ctx context.Context, job string) (int64, error)
	Retry(ctx context.Context, job string) (enqueuer.Summary, error)
}

var (
	_ store   = (*ledger.Ledger)(nil)
	_ control = (*enqueuer.Enqueuer)(nil)
)

// Options configure the view.
type Options struct {
	// ReadOnly refuses cancel and retry (and shows no buttons).
	ReadOnly bool
	// AsynqPath is where asynqmon is served, for links to task pages.
	AsynqPath string
	Log       *slog.Logger
}

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"bytes": func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) },
	"time":  func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05Z") },
	"path":  url.PathEscape,
	"add":   func(n int) int { return n + 1 },
	"sub":   func(n int) int { return n - 1 },
}).ParseFS(pageFS, "page.html"))

// handler serves the view.
type handler struct {
	led  store
	ctl  control
	opts Options
}

// New returns the jobs view, to be served at Path. Without a control (nil)
// it is read-only.
func New(led store, ctl control, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if ctl == nil {
		opts.ReadOnly = true
	}
	h := &handler{led: led, ctl: ctl, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path+"/{$}", h.list)
	mux.HandleFunc("GET "+Path+"/rows", h.rows)
	mux.HandleFunc("GET "+Path+"/job/{id}", h.job)
	mux.HandleFunc("GET "+Path+"/job/{id}/summary", h.summary)
	actions := http.NewServeMux()
	actions.HandleFunc("POST "+Path+"/job/{id}/cancel", h.act("cancel"))
	actions.HandleFunc("POST "+Path+"/job/{id}/retry", h.act("retry"))
	mux.Handle("POST "+Path+"/", http.NewCrossOriginProtection().Handler(actions))
	return mux
}

// jobView is a job as the pages show it.
type jobView struct {
	ledger.Job
	State    string // listing, running, done, failed, cancelled
	Pct      float64
	Rate     string // bytes a second over the last 30 s; empty when idle
	ETA      string
	Finished int64
}

// view is a job as the list shows it, its rate from its throughput (read
// only while it runs).
func (h *handler) view(ctx context.Context, j ledger.Job) jobView {
	var bs []ledger.Bucket
	if !j.Done() {
		bs, _ = h.led.Throughput(ctx, j.ID)
	}
	return viewOf(j, bs)
}

// viewOf is a job as the pages show it, given its throughput.
func viewOf(j ledger.Job, bs []ledger.Bucket) jobView {
	v := jobView{Job: j, Finished: j.Finished()}
	switch {
	case !j.Listed:
		v.State = "listing"
	case !j.Done():
		v.State = "running"
	case j.Failed > 0:
		v.State = "failed"
	case j.Cancelled > 0:
		v.State = "cancelled"
	default:
		v.State = "done"
	}
	if j.BytesTotal > 0 {
		v.Pct = 100 * float64(min(j.BytesDone+max(j.Moving, 0), j.BytesTotal)) / float64(j.BytesTotal)
	}
	if v.State == "running" || v.State == "listing" {
		rate := recentRate(bs, time.Now())
		if since := time.Since(time.UnixMilli(j.Created)); rate == 0 && since > time.Second {
			// nothing landed lately (chunks still streaming): the
			// average since the job began, bytes in flight included
			rate = float64(max(j.BytesDone-j.BytesSkip+j.Moving, 0)) / since.Seconds()
		}
		if rate > 0 {
			v.Rate = humanize.IBytes(uint64(rate)) + "/s"
			left := max(j.BytesTotal-j.BytesDone-max(j.Moving, 0), 0)
			v.ETA = (time.Duration(float64(left)/rate) * time.Second).Round(time.Second).String()
		}
	}
	return v
}

// recentRate is the bytes a second the buckets of the last 30 s hold.
func recentRate(bs []ledger.Bucket, now time.Time) float64 {
	const span = 30 * time.Second
	var n int64
	for _, b := range bs {
		if now.Sub(b.Start) <= span {
			n += b.Bytes
		}
	}
	return float64(n) / span.Seconds()
}

// data is what the template renders.
type data struct {
	Path, Asynq string
	ReadOnly    bool
	Part        string // list, rows, job, summary
	Jobs        []jobView
	Job         jobView
	Chart       template.HTML
	Objects     []objectView
	Page, Pages int
	Message     string
}

// objectView is one object of a job's page.
type objectView struct {
	ledger.JobObject
	Task string // its task's page in asynqmon, if any
}

func (h *handler) render(w http.ResponseWriter, d data) {
	d.Path, d.Asynq, d.ReadOnly = Path, h.opts.AsynqPath, h.opts.ReadOnly
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, d); err != nil {
		h.opts.Log.Warn("jobs view: render", "part", d.Part, "err", err)
	}
}

func (h *handler) recent(ctx context.Context) ([]jobView, error) {
	jobs, err := h.led.RecentJobs(ctx, 50)
	if err != nil {
		return nil, err
	}
	out := make([]jobView, len(jobs))
	for i, j := range jobs {
		out[i] = h.view(ctx, j)
	}
	return out, nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	jobs, err := h.recent(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.render(w, data{Part: "list", Jobs: jobs, Message: r.URL.Query().Get("msg")})
}

func (h *handler) rows(w http.ResponseWriter, r *http.Request) {
	jobs, err := h.recent(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.render(w, data{Part: "rows", Jobs: jobs})
}

// perPage is how many objects a job's page lists at once.
const perPage = 100

var errPageFull = errors.New("page full")

func (h *handler) job(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	j, ok := h.getJob(w, r)
	if !ok {
		return
	}
	pages := max(1, int((j.Objects-j.Pending+perPage-1)/perPage))
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pg = min(max(pg, 1), pages)
	var objs []objectView
	// From the page's first object on: a deep page reads only its own.
	err := h.led.JobObjectsFrom(ctx, j.ID, int64(pg-1)*perPage, func(o ledger.JobObject) error {
		if len(objs) == perPage {
			return errPageFull
		}
		objs = append(objs, objectView{JobObject: o, Task: h.taskLink(o.Transfer)})
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	bs, _ := h.led.Throughput(ctx, j.ID) // for the rate and the chart: read once
	d := data{Part: "job", Job: viewOf(j, bs), Objects: objs, Page: pg, Message: r.URL.Query().Get("msg")}
	d.Pages = pages
	d.Chart = chart(bs)
	h.render(w, d)
}

func (h *handler) summary(w http.ResponseWriter, r *http.Request) {
	j, ok := h.getJob(w, r)
	if !ok {
		return
	}
	bs, _ := h.led.Throughput(r.Context(), j.ID)
	h.render(w, data{Part: "summary", Job: viewOf(j, bs), Chart: chart(bs)})
}

func (h *handler) getJob(w http.ResponseWriter, r *http.Request) (ledger.Job, bool) {
	id := r.PathValue("id")
	j, err := h.led.GetJob(r.Context(), id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		http.Error(w, fmt.Sprintf("no job %q (its records may have expired)", id), http.StatusNotFound)
		return j, false
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return j, false
	}
	return j, true
}

// taskLink is the asynqmon page of the task that finishes the object: its
// batch's, or its assembler's.
func (h *handler) taskLink(t ledger.Transfer) string {
	if h.opts.AsynqPath == "" || t.Queue == "" {
		return ""
	}
	queue, id := tasks.AssembleQueue(t.Queue), tasks.AssembleTaskID(t.ID, t.Gen, t.Created)
	if t.Batch != "" {
		queue, id = t.Queue, t.Batch
	}
	return h.opts.AsynqPath + "/queues/" + url.PathEscape(queue) + "/tasks/" + url.PathEscape(id)
}

// act runs a button's action and goes back to the job's page with what it
// did.
func (h *handler) act(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.ReadOnly {
			http.Error(w, "read-only UI: "+what+" refused", http.StatusForbidden)
			return
		}
		id := r.PathValue("id")
		if _, ok := h.getJob(w, r); !ok {
			return
		}
		var msg string
		switch what {
		case "cancel":
			n, err := h.ctl.Cancel(r.Context(), id)
			if err != nil {
				http.Error(w, "cancel: "+err.Error(), http.StatusInternalServerError)
				return
			}
			msg = fmt.Sprintf("cancelled %d objects", n)
		case "retry":
			sum, err := h.ctl.Retry(r.Context(), id)
			if err != nil {
				http.Error(w, "retry: "+err.Error(), http.StatusInternalServerError)
				return
			}
			msg = fmt.Sprintf("enqueued %d objects again", sum.Resumed)
		}
		h.opts.Log.Info("jobs view: "+what, "job", id, "result", msg, "from", r.RemoteAddr)
		http.Redirect(w, r, Path+"/job/"+url.PathEscape(id)+"?msg="+url.QueryEscape(msg), http.StatusSeeOther)
	}
}

// chart draws the job's throughput over its last hour as SVG bars (MiB/s
// per 10 s), or nothing when no bytes have landed in it.
func chart(bs []ledger.Bucket) template.HTML {
	if len(bs) == 0 {
		return ""
	}
	const width, height, top = 720.0, 160.0, 20.0
	first, last := bs[0].Start, bs[len(bs)-1].Start
	slots := max(int(last.Sub(first)/ledger.BucketWidth)+1, 30) // at least 5 minutes wide
	var peak int64
	for _, b := range bs {
		peak = max(peak, b.Bytes)
	}
	bar := width / float64(max(slots, 1))
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="throughput">`,
		width, height+top+20, width, height+top+20)
	fmt.Fprintf(&sb, `<text x="0" y="12">peak %s/s</text>`, humanize.IBytes(uint64(float64(peak)/ledger.BucketWidth.Seconds())))
	for _, b := range bs {
		x := float64(int(b.Start.Sub(first)/ledger.BucketWidth)) * bar
		hgt := height * float64(b.Bytes) / float64(max(peak, 1))
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %s/s</title></rect>`,
			x, top+height-hgt, max(bar-1, 1), hgt, b.Start.UTC().Format("15:04:05"),
			humanize.IBytes(uint64(float64(b.Bytes)/ledger.BucketWidth.Seconds())))
	}
	fmt.Fprintf(&sb, `<text x="0" y="%.0f">%s</text><text x="%.0f" y="%.0f" text-anchor="end">%s UTC</text></svg>`,
		top+height+16, first.UTC().Format("15:04:05"), width, top+height+16,
		first.Add(time.Duration(slots)*ledger.BucketWidth).UTC().Format("15:04:05"))
	return template.HTML(sb.String()) // built here from numbers and times only
}
