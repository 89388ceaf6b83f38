package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/dustin/go-humanize"
)

// cell is one table of the report: a workload in a direction on a
// network, a download durable or scratch.
type cell struct {
	dir  string
	w    *workload
	net  string
	mode string // downloads only
	runs int
}

func (c cell) spec() cellSpec {
	return cellSpec{dir: c.dir, workload: c.w.id, net: c.net, mode: c.mode, runs: c.runs}
}

func (c cell) id() string { return c.spec().id() }

func (c cell) title() string {
	net := "loopback"
	switch c.net {
	case netWAN:
		net = "emulated WAN"
	case netTLS:
		net = "loopback, HTTPS"
	case netWANTLS:
		net = "emulated WAN, HTTPS"
	}
	switch c.dir {
	case dirUpload:
		return fmt.Sprintf("upload: %s, local file → S3, %s", c.w.title, net)
	case dirCopy:
		return fmt.Sprintf("copy across endpoints: %s, S3 server A → S3 server B, %s", c.w.title, net)
	case dirServerCopy:
		return fmt.Sprintf("server-side copy: %s, within one S3 server, %s", c.w.title, net)
	}
	return fmt.Sprintf("%s, %s, %s", c.w.title, net, c.mode)
}

// dirs are the directions of the cells, in order.
func (s *suite) dirs() []string {
	var out []string
	for _, cl := range s.cells {
		if !slices.Contains(out, cl.dir) {
			out = append(out, cl.dir)
		}
	}
	return out
}

// suite is one run of the whole benchmark.
type suite struct {
	opt        options
	log        *slog.Logger
	tmp        string
	srv        *servers
	workloads  []*workload
	cells      []cell
	contenders []*contender
	samples    []sample
	started    time.Time
	uploadTime time.Duration
	pending    output   // the previous run's output, removed before the next clock
	slowOnes   []string // cell and contender that ran once for being slow
	skipped    int      // runs skipped for the time budget
	listing    listingResult
	failover   failoverResult

	fleetVersion string // the s3fleet source measured
}

func newSuite(ctx context.Context, o options, log *slog.Logger) (_ *suite, err error) {
	s := &suite{opt: o, log: log, started: time.Now()}
	if s.tmp, err = os.MkdirTemp("", "s3fleet-suite-"); err != nil {
		return nil, fmt.Errorf("make a temporary directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.opt.binDir = filepath.Join(s.tmp, "bin")
	o = s.opt
	s.workloads = buildWorkloads(o)
	for _, cs := range o.cells {
		i := slices.IndexFunc(s.workloads, func(w *workload) bool { return w.id == cs.workload })
		s.cells = append(s.cells, cell{dir: cs.dir, w: s.workloads[i], net: cs.net, mode: cs.mode, runs: cs.runs})
	}
	if s.contenders, err = selectContenders(contenders(o), o.contenders, s.dirs()); err != nil {
		return nil, err
	}
	if err := s.checkTools(); err != nil {
		return nil, err
	}
	s.fleetVersion = sourceVersion(o.s3fleetSrc)
	log.Info("building enqueue and worker", "from", o.s3fleetSrc, "version", s.fleetVersion)
	if err := goBuild(ctx, o.s3fleetSrc, o.binDir, "./cmd/enqueue", "./cmd/worker"); err != nil {
		return nil, err
	}
	log.Info("building sdkdownload, sdkupload, plainget, plainput and wanproxy")
	if err := goBuild(ctx, o.suiteDir, o.binDir, "./sdkdownload", "./sdkupload", "./plainget", "./plainput", "./wanproxy"); err != nil {
		return nil, err
	}
	if s.srv, err = startServers(ctx, o, s.tmp, log); err != nil {
		return nil, err
	}
	var total int64
	var n int
	for _, w := range s.workloads {
		total += w.total
		n += len(w.objects)
	}
	log.Info("uploading", "objects", n, "bytes", humanize.IBytes(uint64(total)))
	start := time.Now()
	if err := upload(ctx, s.srv.s3c, s.workloads, filepath.Join(s.tmp, "src"), o.uploadSources()); err != nil {
		return nil, err
	}
	if s.srv.s3cB != nil {
		if _, err := s.srv.s3cB.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(dstBucket)}); err != nil {
			return nil, fmt.Errorf("create bucket %s on the second server: %w", dstBucket, err)
		}
	}
	s.uploadTime = time.Since(start)
	log.Info("uploaded", "seconds", fmt.Sprintf("%.1f", s.uploadTime.Seconds()))
	return s, nil
}

// checkTools finds every program the chosen contenders need.
func (s *suite) checkTools() error {
	o := &s.opt
	need := map[string]*string{"redis-server": &o.redisServer, "versitygw": &o.versitygw}
	for _, c := range s.contenders {
		switch {
		case strings.HasPrefix(c.name, "s5cmd"):
			need["s5cmd"] = &o.s5cmd
		case strings.HasPrefix(c.name, "rclone"):
			need["rclone"] = &o.rclone
		case c.name == "boto3" || c.name == "s3transfer pp":
			need["python"] = &o.python
		}
	}
	for name, p := range need {
		path, err := exec.LookPath(*p)
		if err != nil {
			return fmt.Errorf("%s not found (%s): run bench/suite/run.sh, which installs it: %w", name, *p, err)
		}
		*p = path
	}
	return nil
}

func goBuild(ctx context.Context, dir, out string, pkgs ...string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", out + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(pkgs, " "), dir, err, b)
	}
	return nil
}

func (s *suite) close() {
	s.removePending()
	if s.srv != nil {
		s.srv.stop()
	}
	if s.tmp == "" {
		return
	}
	if s.opt.keep {
		s.log.Info("kept the temporary directory", "dir", s.tmp)
		return
	}
	os.RemoveAll(s.tmp)
}

// maxFailures is how many failed runs of a contender in a cell make the
// suite skip its remaining runs there.
const maxFailures = 2

// runAll runs every cell: a warm-up per workload, then the runs, the
// contenders' order rotating from one run to the next.
func (s *suite) runAll(ctx context.Context) error {
	var plain *contender
	for _, c := range contenders(s.opt) {
		if c.name == "plain loop" {
			plain = c
		}
	}
	warmed := map[string]bool{}
	for ci, cl := range s.cells {
		// An upload reads a local file the suite has just written; the
		// others read the workload from the first server.
		if !warmed[cl.w.id] && cl.dir != dirUpload {
			warmed[cl.w.id] = true
			for i := range s.opt.warmup {
				res, err := s.runOne(ctx, plain, cell{dir: dirDownload, w: cl.w, net: netLoopback, mode: modeScratch}, fmt.Sprintf("warmup-%d", i+1))
				if err != nil {
					return fmt.Errorf("warm-up of %s: %w", cl.w.id, err)
				}
				s.log.Info("warm-up done", "workload", cl.w.id, "seconds", fmt.Sprintf("%.2f", res.elapsed.Seconds()))
			}
		}
		failures := map[string]int{}
		once := map[string]bool{} // slow contenders: one run here
		for r := 1; r <= cl.runs; r++ {
			if r > 1 && time.Since(s.started) > s.opt.budget {
				s.skipped += cl.runs - r + 1
				s.log.Warn("over the time budget: skipping the remaining runs of this cell", "cell", cl.id(), "budget", s.opt.budget)
				break
			}
			cs := slices.DeleteFunc(slices.Clone(s.contenders), func(c *contender) bool { return !c.does(cl.dir) })
			n := len(cs)
			for i := range n {
				c := cs[(i+r-1)%n]
				if failures[c.name] >= maxFailures || once[c.name] {
					continue
				}
				res, err := s.runOne(ctx, c, cl, fmt.Sprintf("r%d", r))
				if ctx.Err() != nil {
					return ctx.Err()
				}
				res.cell, res.contender, res.run, res.err = cl.id(), c.name, r, err
				s.samples = append(s.samples, res)
				if err != nil {
					failures[c.name]++
					s.log.Error("run failed", "cell", cl.id(), "contender", c.name, "run", r, "err", err)
					continue
				}
				if res.elapsed > s.opt.slow && r < cl.runs {
					once[c.name] = true
					s.slowOnes = append(s.slowOnes, cl.id()+" "+c.name)
				}
				s.log.Info("run", "cell", fmt.Sprintf("%d/%d %s", ci+1, len(s.cells), cl.id()), "run", r, "contender", c.name,
					"s", fmt.Sprintf("%.2f", res.elapsed.Seconds()),
					"MB/s", fmt.Sprintf("%.0f", float64(cl.w.total)/1e6/res.elapsed.Seconds()),
					"obj/s", fmt.Sprintf("%.0f", float64(len(cl.w.objects))/res.elapsed.Seconds()),
					"cpu_user_s", fmt.Sprintf("%.2f", res.cpu.user.Seconds()), "cpu_sys_s", fmt.Sprintf("%.2f", res.cpu.sys.Seconds()),
					"server_cpu_s", fmt.Sprintf("%.2f", res.serverCPU.Seconds()), "kthread_cpu_s", fmt.Sprintf("%.2f", res.kthreadCPU.Seconds()), "other_cpu_s", fmt.Sprintf("%.2f", res.otherCPU.Seconds()),
					"warnings", res.warnings, "endpoint", s.srv.endpointFor(cl.net), "elapsed", time.Since(s.started).Round(time.Second))
			}
		}
	}
	return nil
}

// runOne runs a contender once into a fresh directory (a download), or a
// fresh destination prefix (the other directions), and checks what it
// wrote. The output is removed just before the next run's clock, after
// its preparation (s3fleet's workers starting): this VM gives freed memory
// back to its host within a second or so, and page-cache pages the host
// must supply afresh cost up to a second or two of system time per GiB.
// So every contender finds the previous run's memory just freed, whatever
// its preparation takes; after a run that writes nothing (the ceiling of
// GETs), a ballast file of the workload's size stands in for its output.
// Removing a destination prefix also makes sure that no run finds an
// object where it writes.
func (s *suite) runOne(ctx context.Context, c *contender, cl cell, tag string) (sample, error) {
	slug := strings.NewReplacer("/", "-", " ", "-").Replace(cl.id() + "-" + c.name + "-" + tag)
	out := filepath.Join(s.tmp, "out", slug)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return sample{}, err
	}
	pending := output{dir: out}
	target := out
	if cl.dir != dirDownload {
		pending.s3, pending.bucket, pending.prefix = s.srv.client(cl.dir), dstBucket, slug+"/"
		target = pending.prefix
	}
	defer func() { s.pending = pending }()
	logPrefix := filepath.Join(s.tmp, "logs", slug)
	if err := os.MkdirAll(filepath.Dir(logPrefix), 0o755); err != nil {
		return sample{}, err
	}
	runCtx, cancel := context.WithTimeout(ctx, s.opt.runTimeout)
	defer cancel()
	var res sample
	var err error
	if c.fleet != nil {
		res, err = s.runFleet(runCtx, c, cl, target, logPrefix, s.removePending)
	} else {
		res, err = s.runCommand(runCtx, c, cl, target, logPrefix, s.removePending)
	}
	if err != nil {
		return res, err
	}
	w := c.ways[cl.dir] // zero for s3fleet: it writes the workload's bytes
	switch {
	case w.nothing:
		// The next run should find as much memory just freed as after
		// any other run.
		if err := writeBallast(filepath.Join(out, "ballast"), cl.w.total); err != nil {
			return res, err
		}
	case cl.dir == dirDownload:
		if err := cl.w.verify(out); err != nil {
			return res, fmt.Errorf("wrong output: %w", err)
		}
	default:
		if err := cl.w.verifyS3(ctx, pending.s3, pending.bucket, pending.prefix, w.count); err != nil {
			return res, fmt.Errorf("wrong output: %w", err)
		}
	}
	return res, nil
}

// output is a run's output: a local directory, and in an S3 bucket the
// objects under a prefix.
type output struct {
	dir            string
	s3             *s3.Client
	bucket, prefix string
}

// writeBallast writes n bytes (at most 2 GiB) to a file, unmeasured.
func writeBallast(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := min(n, 2<<30); left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f.Close()
}

// removePending removes the previous run's output.
func (s *suite) removePending() {
	p := s.pending
	s.pending = output{}
	if p.dir != "" {
		if err := os.RemoveAll(p.dir); err != nil {
			s.log.Warn("remove a run's output", "err", err)
		}
	}
	if p.s3 != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := cleanS3(ctx, p.s3, p.bucket, p.prefix); err != nil {
			s.log.Warn("remove a run's objects", "err", err)
		}
	}
}
