package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// stats are one contender's runs in one cell.
type stats struct {
	contender *contender
	cell      cell
	ok        []sample
	failed    []sample
}

func (st stats) seconds() []float64 {
	var xs []float64
	for _, r := range st.ok {
		xs = append(xs, r.elapsed.Seconds())
	}
	return xs
}

func (st stats) mbps() []float64 {
	var xs []float64
	for _, r := range st.ok {
		xs = append(xs, float64(st.cell.w.total)/1e6/r.elapsed.Seconds())
	}
	return xs
}

func (st stats) objps() []float64 {
	var xs []float64
	for _, r := range st.ok {
		xs = append(xs, float64(len(st.cell.w.objects))/r.elapsed.Seconds())
	}
	return xs
}

// rate is the figure a workload is judged by: objects/s for the small
// objects, MB/s otherwise.
func (st stats) rate() []float64 {
	if st.cell.w.id == "small" {
		return st.objps()
	}
	return st.mbps()
}

func (st stats) medianOf(f func(sample) float64) float64 {
	var xs []float64
	for _, r := range st.ok {
		xs = append(xs, f(r))
	}
	return median(xs)
}

// maxOf is the largest f over the successful runs.
func (st stats) maxOf(f func(sample) int64) int64 {
	var m int64
	for _, r := range st.ok {
		m = max(m, f(r))
	}
	return m
}

// table returns the stats of every contender in a cell, in the
// contenders' order.
func (s *suite) table(cl cell) []stats {
	var out []stats
	for _, c := range s.contenders {
		st := stats{contender: c, cell: cl}
		for _, r := range s.samples {
			if r.cell != cl.id() || r.contender != c.name {
				continue
			}
			if r.err != nil {
				st.failed = append(st.failed, r)
			} else {
				st.ok = append(st.ok, r)
			}
		}
		if len(st.ok)+len(st.failed) > 0 {
			out = append(out, st)
		}
	}
	return out
}

// refFleet is the s3fleet row the others are compared with: -ref, or with
// -ref best (or when -ref's row is missing) the s3fleet contender with the
// best median rate in the cell.
func refFleet(rows []stats, ref string) (stats, bool) {
	if ref != "best" {
		if st, ok := find(rows, ref); ok {
			return st, true
		}
	}
	var best stats
	found := false
	for _, st := range rows {
		if st.contender.group != groupFleet || len(st.ok) == 0 {
			continue
		}
		if !found || median(st.rate()) > median(best.rate()) {
			best, found = st, true
		}
	}
	return best, found
}

func find(rows []stats, name string) (stats, bool) {
	for _, st := range rows {
		if st.contender.name == name && len(st.ok) > 0 {
			return st, true
		}
	}
	return stats{}, false
}

// report writes the Markdown report and the chart, and prints the report.
func (s *suite) report() error {
	md := s.render()
	fmt.Print("\n" + md)
	out := filepath.Join(s.opt.root, filepath.FromSlash(s.opt.out))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	s.log.Info("results written", "file", out)
	chart := filepath.Join(s.opt.root, filepath.FromSlash(s.opt.chart))
	if err := s.drawChart(chart); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	s.log.Info("chart written", "file", chart)
	return nil
}

func (s *suite) render() string {
	o := s.opt
	var b strings.Builder
	fmt.Fprintf(&b, "# s3fleet against its peers\n\n")
	fmt.Fprintf(&b, "`bench/suite/run.sh %s%s` on %s; the suite took %s (upload %s).\n\n",
		o.mode, joinArgs(o.shown), time.Now().UTC().Format(time.DateOnly), time.Since(s.started).Round(time.Second), s.uploadTime.Round(time.Second))
	m := describeMachine()
	fmt.Fprintf(&b, "- Machine: %d CPUs (nproc), %s, %s RAM, Linux %s, %s\n", m.cpus, m.cpuModel, m.memory, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "- s3fleet: %s\n", s.fleetVersion)
	fmt.Fprintf(&b, "- Tools: %s\n", strings.Join(s.toolVersions(), "; "))
	fmt.Fprintf(&b, "- Servers: versitygw (POSIX backend) and redis-server on loopback, sharing the CPUs and the disk with the contenders")
	if o.needsWAN() {
		fmt.Fprintf(&b, "; emulated WAN: the suite's wanproxy in front of versitygw, %s latency on every response and %d MB/s per connection",
			o.wanLatency, o.wanRateKBps/1000)
		if o.needsNet(netWANTLS) {
			b.WriteString(" (over HTTPS, `wan-tls`: another wanproxy in front of the HTTPS versitygw, passing the TLS records)")
		}
	}
	if o.needsSecond() {
		b.WriteString("; copies across endpoints: a second versitygw (server B: its own port, directory and credentials; " +
			"s3fleet's remote `" + fleetRemote + "` with a profile of a shared credentials file)")
	}
	if o.needsTLS() {
		b.WriteString("; HTTPS: one more versitygw per server on the same directory with a self-signed certificate " +
			"(ECDSA P-256), every contender's one trusted CA: SSL_CERT_FILE and AWS_CA_BUNDLE name it (rclone: SSL_CERT_FILE and --ca-cert)")
	}
	fmt.Fprintf(&b, "\n- Runs: %s of each contender in each table (below), the order rotating from run to run; "+
		"a contender whose run took over %s ran once in that table; %d unmeasured warm-up download(s) per workload; "+
		"every run to a fresh directory after sync(2), its every file checked by SHA-256", s.runCounts(), o.slow, o.warmup)
	if len(s.dirs()) > 1 || s.dirs()[0] != dirDownload {
		b.WriteString("; every upload or copy to a fresh prefix of the destination bucket, its every object read back " +
			"and checked by SHA-256 (and no multipart upload left), after the clock; the prefix deleted before the next run's clock")
	}
	b.WriteString("\n")
	if len(s.slowOnes) > 0 {
		fmt.Fprintf(&b, "- Ran once for being slow: %s\n", strings.Join(s.slowOnes, "; "))
	}
	if s.skipped > 0 {
		fmt.Fprintf(&b, "- **Over the time budget (%s): %d runs skipped**\n", o.budget, s.skipped)
	}

	var other []float64
	for _, r := range s.samples {
		other = append(other, r.otherCPU.Seconds())
	}
	if len(other) > 0 {
		fmt.Fprintf(&b, "- Disturbance: other programs on the machine were busy for a median of %.2f CPU-s per run, at most %.2f, while the clocks ran", median(other), slices.Max(other))
		if median(other) > 0.2 {
			b.WriteString(": **the machine was not quiet, the figures are noisy**")
		}
		b.WriteString("\n\n")
	}

	if t := s.targets(); t != "" {
		b.WriteString("## Targets\n\n")
		b.WriteString(t)
		b.WriteString("\n")
	}

	header := []string{"contender", "runs", "median MB/s", "min–max MB/s", "objects/s", "median s", "s3fleet ÷ this",
		"CPU-s/GiB", "server CPU-s/GiB", "peak RSS MiB, largest process", "peak RSS MiB, all (processes)", "failed"}
	for _, cl := range s.cells {
		rows := s.table(cl)
		ref, haveRef := refFleet(rows, s.opt.ref)
		fmt.Fprintf(&b, "## %s\n\n", cl.title())
		var cells [][]string
		for _, st := range rows {
			row := []string{st.contender.name, strconv.Itoa(len(st.ok))}
			if len(st.ok) == 0 {
				row = append(row, "–", "–", "–", "–", "–", "–", "–", "–", "–")
			} else {
				mb := st.mbps()
				ratio := "–"
				if haveRef {
					ratio = fmt.Sprintf("%.2f", median(ref.rate())/median(st.rate()))
				}
				gib := cl.w.gib()
				row = append(row,
					fmt.Sprintf("%.0f", median(mb)), fmt.Sprintf("%.0f–%.0f", slices.Min(mb), slices.Max(mb)),
					objps(st), fmt.Sprintf("%.2f", median(st.seconds())), ratio,
					fmt.Sprintf("%.2f", st.cpuPerGiB()),
					fmt.Sprintf("%.2f", st.medianOf(func(r sample) float64 { return r.serverCPU.Seconds() / gib })),
					mib(st.medianOf(func(r sample) float64 { return float64(r.rssMax) })),
					fmt.Sprintf("%s (%d)", mib(st.medianOf(func(r sample) float64 { return float64(r.rssSum) })), st.ok[0].procs),
				)
			}
			row = append(row, strconv.Itoa(len(st.failed)))
			cells = append(cells, row)
		}
		b.WriteString(table(header, cells))
		if haveRef {
			fmt.Fprintf(&b, "\n\"s3fleet ÷ this\": %s's median divided by each row's.", ref.contender.name)
		}
		if line := copyCeiling(rows, ref, haveRef); line != "" {
			b.WriteString("\n- " + line)
		}
		for _, st := range rows {
			if st.contender.group == groupFleet && len(st.ok) > 0 {
				gib := cl.w.gib()
				perGiB := func(f func(r sample) time.Duration) string {
					return fmt.Sprintf("%.2f", st.medianOf(func(r sample) float64 { return f(r).Seconds() / gib }))
				}
				fmt.Fprintf(&b, "\n- %s, peak RSS MiB by process, most of any run: worker %s, enqueue %s, Redis %s; "+
					"CPU-s/GiB (medians): workers %s, enqueue %s, Redis %s",
					st.contender.name, mib(float64(st.maxOf(func(r sample) int64 { return r.rssWorker }))),
					mib(float64(st.maxOf(func(r sample) int64 { return r.rssEnqueue }))),
					mib(float64(st.maxOf(func(r sample) int64 { return r.rssRedis }))),
					perGiB(func(r sample) time.Duration { return r.cpuWorkers }),
					perGiB(func(r sample) time.Duration { return r.cpuEnqueue }),
					perGiB(func(r sample) time.Duration { return r.cpuRedis }))
			}
		}
		for _, st := range rows {
			for _, f := range st.failed {
				fmt.Fprintf(&b, "\n- %s run %d failed: %s", st.contender.name, f.run, oneLine(f.err.Error(), 400))
			}
			warn := 0
			for _, r := range st.ok {
				warn += r.warnings
			}
			if warn > 0 {
				fmt.Fprintf(&b, "\n- %s: its workers logged %d warnings or errors over the runs", st.contender.name, warn)
			}
		}
		b.WriteString("\n\n")
	}

	b.WriteString(s.listing.report())
	b.WriteString(s.failover.report())
	// The scale-out measurement runs apart (make bench-scale, as root):
	// its summary is carried over from its own report.
	if sec := scaleSection(o.root, filepath.Join(o.root, filepath.FromSlash(o.out))); sec != "" {
		b.WriteString(sec + "\n")
	}
	b.WriteString("## The contenders' commands\n\n")
	b.WriteString("$ENDPOINT is versitygw's address, or wanproxy's on the emulated WAN, or its HTTPS instance's (https://, tables tls and wan-tls:\n" +
		"directly or through wanproxy); over HTTPS every process also gets SSL_CERT_FILE and AWS_CA_BUNDLE naming the suite's certificate,\n" +
		"the one CA they trust (rclone, whose S3 backend fails on AWS_CA_BUNDLE, `--ca-cert` instead); $OUT an empty directory of the run's own;\n" +
		"$ENDPOINT2 the second server's (copies across endpoints); $RUN/ a key prefix of the run's own in the destination bucket; $SRC the\n" +
		"uploads' local copy of the workload. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the second server's:\n" +
		"rclone's RCLONE_CONFIG_DST_*, s3fleet's profile `" + fleetRemote + "`); s3fleet's settings from S3FLEET_REDIS, S3FLEET_ENDPOINT,\n" +
		"S3FLEET_PATH_STYLE=true, S3FLEET_REGION=us-east-1, and for uploads and copies S3FLEET_CONFIG, a file naming the second server\n" +
		"(remotes: " + fleetRemote + ") and allow_write, allow_source. Peers in the durable tables get a sync(2) inside their clock.\n\n")
	for _, dir := range s.dirs() {
		b.WriteString(s.commands(dir))
	}
	b.WriteString(notes(s.dirs()))
	b.WriteString("\n<details><summary>Every run, in the order they ran</summary>\n\n")
	header = []string{"table", "run", "contender", "s", "MB/s", "CPU-s user", "CPU-s sys", "server CPU-s", "kernel threads CPU-s", "other programs CPU-s", "peak RSS MiB", "warnings", "error"}
	var all [][]string
	for _, r := range s.samples {
		var w *workload
		for _, cl := range s.cells {
			if cl.id() == r.cell {
				w = cl.w
			}
		}
		e := ""
		if r.err != nil {
			e = oneLine(r.err.Error(), 120)
		}
		all = append(all, []string{r.cell, strconv.Itoa(r.run), r.contender, fmt.Sprintf("%.2f", r.elapsed.Seconds()),
			fmt.Sprintf("%.0f", float64(w.total)/1e6/r.elapsed.Seconds()), fmt.Sprintf("%.2f", r.cpu.user.Seconds()), fmt.Sprintf("%.2f", r.cpu.sys.Seconds()),
			fmt.Sprintf("%.2f", r.serverCPU.Seconds()), fmt.Sprintf("%.2f", r.kthreadCPU.Seconds()), fmt.Sprintf("%.2f", r.otherCPU.Seconds()), mib(float64(r.rssMax)), strconv.Itoa(r.warnings), e})
	}
	b.WriteString(table(header, all))
	b.WriteString("\n</details>\n")
	return b.String()
}

// target is a ratio the issues ask of s3fleet against a peer in a table:
// of their rates (objects/s for the small objects, MB/s otherwise), at
// least want; or with cpu, of their CPU-s/GiB, at most want.
type target struct {
	dir, workload, net, peer string
	want                     float64
	// cpu: s3fleet's own CPU time (its workers, enqueue and Redis; not the
	// server's) per GiB divided by the peer's (its whole process tree).
	cpu bool
}

// targets are the issues' goals: issue 5's for downloads, those of the
// other directions on plain HTTP, and issue 15's for downloads over HTTPS.
var targets = []target{
	{dirDownload, "big", netLoopback, "s5cmd", 1.5, false},
	{dirDownload, "big", netLoopback, "sdk manager", 2.5, false},
	{dirDownload, "big", netLoopback, "s3transfer pp", 3, false},
	{dirDownload, "big", netLoopback, "plain loop", 0.9, false},
	{dirDownload, "big", netLoopback, "ceiling", 0.6, false},
	{dirDownload, "big", netWAN, "s5cmd", 2, false},
	{dirDownload, "small", netLoopback, "s5cmd", 1, false},
	{dirUpload, "big", netLoopback, "s5cmd", 1.5, false},
	{dirUpload, "big", netLoopback, "sdk manager", 2, false},
	{dirCopy, "big", netLoopback, "rclone", 1.5, false},
	{dirServerCopy, "big", netLoopback, "s5cmd", 1, false},
	{dirServerCopy, "small", netLoopback, "s5cmd", 1, false},
	// Issue 15: over HTTPS, durable and scratch alike, faster than s5cmd
	// and on at most two thirds of its CPU time.
	{dirDownload, "big", netTLS, "s5cmd", 1.5, false},
	{dirDownload, "small", netTLS, "s5cmd", 1.3, false},
	{dirDownload, "big", netTLS, "s5cmd", 2.0 / 3, true},
	{dirDownload, "small", netTLS, "s5cmd", 2.0 / 3, true},
	{dirDownload, "mixed", netTLS, "s5cmd", 2.0 / 3, true},
	{dirDownload, "big", netWANTLS, "s5cmd", 2.0 / 3, true},
	{dirDownload, "small", netWANTLS, "s5cmd", 2.0 / 3, true},
	{dirDownload, "mixed", netWANTLS, "s5cmd", 2.0 / 3, true},
}

// cpuPerGiB is the median CPU-s/GiB of a row's runs: s3fleet's workers,
// enqueue and Redis; a peer's process tree.
func (st stats) cpuPerGiB() float64 {
	gib := st.cell.w.gib()
	return st.medianOf(func(r sample) float64 { return r.cpu.total().Seconds() / gib })
}

// targets compares the reference s3fleet row with the peers the issues
// name, and its workers' memory with the limit.
func (s *suite) targets() string {
	var rows [][]string
	for _, cl := range s.cells {
		tab := s.table(cl)
		ref, ok := refFleet(tab, s.opt.ref)
		if !ok {
			continue
		}
		for _, t := range targets {
			if t.dir != cl.dir || t.workload != cl.w.id || t.net != cl.net {
				continue
			}
			peer, ok := find(tab, t.peer)
			if !ok {
				continue
			}
			if t.cpu {
				got := ref.cpuPerGiB() / peer.cpuPerGiB()
				rows = append(rows, []string{cl.id(), fmt.Sprintf("%s own %.2f CPU-s/GiB", ref.contender.name, ref.cpuPerGiB()),
					fmt.Sprintf("%s %.2f", t.peer, peer.cpuPerGiB()), fmt.Sprintf("%.2f×", got), fmt.Sprintf("≤ %.2f×", t.want), yes(got <= t.want)})
				continue
			}
			unit := "MB/s"
			if cl.w.id == "small" {
				unit = "objects/s"
			}
			got := median(ref.rate()) / median(peer.rate())
			met := "no"
			if got >= t.want {
				met = "yes"
			}
			rows = append(rows, []string{cl.id(), fmt.Sprintf("%s %.0f %s", ref.contender.name, median(ref.rate()), unit),
				fmt.Sprintf("%s %.0f", t.peer, median(peer.rate())), fmt.Sprintf("%.2f×", got), fmt.Sprintf("≥ %.1f×", t.want), met})
		}
	}
	// Memory: a worker stays under 64 MiB whatever the object sizes.
	for _, cl := range s.cells {
		ref, ok := refFleet(s.table(cl), s.opt.ref)
		if !ok {
			continue
		}
		const limit = 64 << 20
		peak := ref.maxOf(func(r sample) int64 { return r.rssWorker })
		met := "no"
		if peak < limit {
			met = "yes"
		}
		rows = append(rows, []string{cl.id(), fmt.Sprintf("%s worker peak RSS %s MiB", ref.contender.name, mib(float64(peak))),
			"–", "–", "< 64 MiB", met})
	}
	if l := s.listing; l.keys > 0 && l.err == nil {
		met := "no"
		if l.rss < 128<<20 {
			met = "yes"
		}
		rows = append(rows, []string{fmt.Sprintf("listing of %d keys", l.keys), fmt.Sprintf("enqueue peak RSS %s MiB", mib(float64(l.rss))),
			"–", "–", "< 128 MiB", met})
		rows = append(rows, []string{fmt.Sprintf("listing of %d keys", l.keys), fmt.Sprintf("Redis %.0f B per queued key", l.perKey()),
			"–", "–", "≤ 256 B", yes(l.perKey() <= 256)})
		rows = append(rows, []string{fmt.Sprintf("listing of %d keys", l.keys), fmt.Sprintf("enqueue %.1f s", l.elapsed.Seconds()),
			"–", "–", "≤ 30 s", yes(l.elapsed <= 30*time.Second)})
	}
	if len(rows) == 0 {
		return ""
	}
	return table([]string{"table", "s3fleet", "peer", "ratio", "target", "met"}, rows)
}

// toolVersions names what ran.
func (s *suite) toolVersions() []string {
	o := s.opt
	given := map[string]string{}
	for kv := range strings.SplitSeq(o.versions, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			given[k] = v
		}
	}
	out := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return ""
		}
		return firstLine(strings.TrimSpace(string(b)))
	}
	var v []string
	add := func(s string) {
		if s != "" {
			v = append(v, s)
		}
	}
	add(withVersion("s5cmd", given["s5cmd"]))
	add(out(o.rclone, "version"))
	add(out(o.python, "-c", `import sys, boto3, botocore, s3transfer; print("Python %d.%d, boto3 %s, botocore %s, s3transfer %s" % (sys.version_info[0], sys.version_info[1], boto3.__version__, botocore.__version__, s3transfer.__version__))`))
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/aws/aws-sdk-go-v2/feature/s3/manager" {
				add("aws-sdk-go-v2 feature/s3/manager " + d.Version)
			}
		}
	}
	add(withVersion("versitygw", given["versitygw"]))
	if rv := out(o.redisServer, "--version"); rv != "" {
		for f := range strings.FieldsSeq(rv) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				rv = "redis-server " + v
			}
		}
		add(rv)
	}
	if o.needsWAN() {
		add("wanproxy (the suite's own, bench/suite/wanproxy)")
	}
	return v
}

func withVersion(name, v string) string {
	if v == "" {
		return name
	}
	return name + " " + v
}

// machine describes where the suite ran.
type machine struct {
	cpus      int
	cpuModel  string
	memory    string
	kernel    string
	goVersion string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), cpuModel: "unknown CPU", memory: "unknown", kernel: "unknown",
		goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					m.memory = humanize.IBytes(kb << 10)
				}
				break
			}
		}
	}
	return m
}

// table renders a Markdown table with padded columns, the first
// left-aligned and the others right-aligned.
func table(header []string, rows [][]string) string {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			if i == 0 {
				fmt.Fprintf(&b, " %-*s |", width[i], c)
			} else {
				fmt.Fprintf(&b, " %*s |", width[i], c)
			}
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for i, w := range width {
		if i == 0 {
			b.WriteString(":" + strings.Repeat("-", w+1) + "|")
		} else {
			b.WriteString(strings.Repeat("-", w+1) + ":|")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(n float64) string { return fmt.Sprintf("%.0f", n/(1<<20)) }

// oneLine squeezes an error with a log tail onto one line.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "|", "/")), " ")
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + " …"
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// objps is the median objects/s, or "–" for a workload of one object.
func objps(st stats) string {
	if st.cell.w.single() {
		return "–"
	}
	return fmt.Sprintf("%.0f", median(st.objps()))
}

// runCounts says how many runs the cells asked for.
func (s *suite) runCounts() string {
	var parts []string
	seen := map[int]bool{}
	for _, cl := range s.cells {
		seen[cl.runs] = true
	}
	if len(seen) == 1 {
		return strconv.Itoa(s.cells[0].runs)
	}
	for _, cl := range s.cells {
		parts = append(parts, fmt.Sprintf("%s %d", cl.id(), cl.runs))
	}
	return strings.Join(parts, ", ")
}

// sourceVersion describes the tree s3fleet was built from: its commit, and
// whether it had uncommitted changes.
func sourceVersion(dir string) string {
	git := func(args ...string) (string, error) {
		b, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
		return strings.TrimSpace(string(b)), err
	}
	commit, err := git("log", "-1", "--format=%h %s")
	if err != nil {
		return "built from " + dir + " (no git history)"
	}
	v := "built from the working tree at " + commit
	if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		v += ", with uncommitted changes"
	}
	return v
}

// copyCeiling says what bounds a copy across endpoints: the lower of the
// first server's GET ceiling and the second's PUT ceiling, and how near
// s3fleet came to it; "" for other tables.
func copyCeiling(rows []stats, ref stats, haveRef bool) string {
	get, okGet := find(rows, "ceiling GET")
	put, okPut := find(rows, "ceiling")
	if !okGet || !okPut || rows[0].cell.dir != dirCopy {
		return ""
	}
	g, p := median(get.rate()), median(put.rate())
	line := fmt.Sprintf("The copy's ceiling is the lower of server A's GET ceiling (ceiling GET, %.0f MB/s) and server B's PUT ceiling "+
		"(ceiling, %.0f MB/s): %.0f MB/s, though a copy needs both at once on the same CPUs", g, p, min(g, p))
	if haveRef {
		line += fmt.Sprintf("; %s reached %.0f %% of it", ref.contender.name, 100*median(ref.rate())/min(g, p))
	}
	return line + "."
}

// commands lists the contenders' commands in a direction.
func (s *suite) commands(dir string) string {
	var b strings.Builder
	titles := map[string]string{dirDownload: "Downloads", dirUpload: "Uploads", dirCopy: "Copies across endpoints (server A → server B)",
		dirServerCopy: "Server-side copies (within server A)"}
	fmt.Fprintf(&b, "%s:\n\n", titles[dir])
	var single, prefix *workload
	for _, cl := range s.cells {
		if cl.dir != dir {
			continue
		}
		if cl.w.single() && single == nil {
			single = cl.w
		} else if !cl.w.single() && prefix == nil {
			prefix = cl.w
		}
	}
	for _, c := range s.contenders {
		if !c.does(dir) {
			continue
		}
		fmt.Fprintf(&b, "- **%s**:", c.name)
		if single != nil {
			fmt.Fprintf(&b, " %s", c.describe(s.opt, dir, single))
		}
		if prefix != nil {
			if single == nil {
				fmt.Fprintf(&b, " %s", c.describe(s.opt, dir, prefix))
			} else if c.fleet != nil {
				src, dst := fleetArgs(placeholders(dir, prefix))
				fmt.Fprintf(&b, "; a prefix: `enqueue %s %s --wait%s`", src, dst, joinArgs(c.fleet.enqueueArgs))
			} else {
				fmt.Fprintf(&b, "; a prefix: %s", c.describe(s.opt, dir, prefix))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

// notes explains the commands and the columns.
func notes(dirs []string) string {
	var b strings.Builder
	b.WriteString("Notes:")
	if slices.Contains(dirs, dirDownload) {
		b.WriteString(`
the sdk manager and plainget have no prefix download of their own: they list the
prefix and download 8 objects at once (sdk manager: one Download call each on one
Downloader; plainget: its 8 goroutines take the next range of the next object).
boto3 downloads a prefix with a pool of 10 threads, one download_file call per object;
s3transfer pp queues one download_file per object on one ProcessPoolDownloader.
rclone checks each file's MD5 against the ETag after the download, re-reading it, as it
does by default. The ceiling of a download writes nothing; its byte count is checked
instead of files. It is the ceiling of 8 connections: on the emulated WAN, where each
connection is capped, more connections go faster.`)
	}
	if slices.Contains(dirs, dirUpload) || slices.Contains(dirs, dirCopy) || slices.Contains(dirs, dirServerCopy) {
		b.WriteString(`
The ceilings of the other directions are plainput: of an upload, 8 goroutines each sending
8 MiB UploadPart requests of one multipart upload from a buffer in memory (no file read, no
checksum, UNSIGNED-PAYLOAD); its byte count and the object's size are checked, not its bytes.
Of a server-side copy, 8 UploadPartCopy of 128 MiB at once (CopyObject, 32 at once, for
small objects), the copy checked like the others. Of a copy across endpoints: the lower of
server A's GET ceiling (ceiling GET: plainget -discard) and server B's PUT ceiling
(ceiling), each measured alone. sdk manager is one manager.Uploader.Upload of the file (an
*os.File: parts read with ReadAt) with the SDK's defaults (5 MiB parts, 5 at once, a CRC32
of each part); tuned: 8 MiB parts, 8 at once, 64 idle connections. s5cmd copies within
one server with CopyObject. rclone v1.60 copies between two S3 remotes as one download
stream into a multipart upload (4 parts of 5 MiB at once, its defaults); its
--multi-thread-streams applies to downloads to local files, not here.`)
	}
	b.WriteString(`

MB/s is 10^6 bytes per second of wall time; objects/s the objects per second at the
median time. CPU-s/GiB is user+system CPU time per GiB (2^30 bytes) of the workload,
the median of the runs: s3fleet's counts its workers, its enqueue and Redis (the line
under its rows splits them); the others' count their own process and its children.
"server CPU" is versitygw's (its HTTPS instance's over HTTPS; and wanproxy's on the
emulated WAN; both servers' for a copy across endpoints) during the same clock. Peak
RSS is each process's VmHWM (the medians of the runs): the largest one, and the sum
over the processes (their number in parentheses; s3fleet's include Redis and the
enqueue).
`)
	return b.String()
}

// yes says whether a target was met.
func yes(met bool) string {
	if met {
		return "yes"
	}
	return "no"
}
