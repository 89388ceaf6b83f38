package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// machine describes where the bench ran.
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

// render is the report in Markdown, its tables padded to read well in a
// terminal too.
func render(m machine, opt options, results []result) string {
	gib := float64(opt.size) / (1 << 30)
	var b strings.Builder
	fmt.Fprintf(&b, "# s3fleet pipeline benchmark\n\n")
	runs := "1 run"
	if opt.runs > 1 {
		runs = fmt.Sprintf("%d runs", opt.runs)
	}
	fmt.Fprintf(&b, "One object of %s downloaded by %s worker processes, %s each, by `go run ./bench` on %s.\n\n",
		humanize.IBytes(uint64(opt.size)), joinInts(opt.workers, ", "), runs, time.Now().UTC().Format(time.DateOnly))
	fmt.Fprintf(&b, "- Machine: %d CPUs (nproc), %s, %s RAM, Linux %s, %s\n", m.cpus, m.cpuModel, m.memory, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "- Flags: -size %s -workers %s -runs %d -warmup %d -concurrency %d -flush %s -chunk-size %s\n",
		opt.sizeText, joinInts(opt.workers, ","), opt.runs, opt.warmup, opt.concurrency, opt.flush, opt.chunkSizeText())
	fmt.Fprintf(&b, "- Servers: redis-server and versitygw (POSIX backend) on loopback, sharing the CPUs and the disk with the fleet\n\n")

	header := []string{"workers", "runs", "median MB/s", "min–max MB/s", "median s",
		"CPU-s/GiB workers+enqueue", "CPU-s/GiB S3+Redis", "peak worker RSS MiB"}
	var rows [][]string
	for _, n := range opt.workers {
		var mbps, secs, cpu, srvCPU []float64
		var rss int64
		for _, r := range results {
			if r.workers != n {
				continue
			}
			mbps = append(mbps, r.mbps(opt.size))
			secs = append(secs, r.elapsed.Seconds())
			cpu = append(cpu, (r.workerCPU+r.enqueueCPU).Seconds()/gib)
			srvCPU = append(srvCPU, r.serverCPU.Seconds()/gib)
			rss = max(rss, r.peakRSS)
		}
		if len(mbps) == 0 {
			continue
		}
		rows = append(rows, []string{
			strconv.Itoa(n), strconv.Itoa(len(mbps)), fmt.Sprintf("%.0f", median(mbps)),
			fmt.Sprintf("%.0f–%.0f", slices.Min(mbps), slices.Max(mbps)), fmt.Sprintf("%.2f", median(secs)),
			fmt.Sprintf("%.2f", median(cpu)), fmt.Sprintf("%.2f", median(srvCPU)), mib(rss),
		})
	}
	b.WriteString(table(header, rows))

	fmt.Fprintf(&b, "\nEvery run, in the order they ran:\n\n")
	header = []string{"run", "workers", "s", "MB/s", "fleet s", "chunk retries",
		"CPU-s workers", "CPU-s enqueue", "CPU-s S3+Redis", "peak worker RSS MiB"}
	rows = rows[:0]
	for _, r := range results {
		rows = append(rows, []string{
			strconv.Itoa(r.run), strconv.Itoa(r.workers), fmt.Sprintf("%.2f", r.elapsed.Seconds()),
			fmt.Sprintf("%.0f", r.mbps(opt.size)), fmt.Sprintf("%.2f", r.fleet.Seconds()), strconv.FormatInt(r.retries, 10),
			fmt.Sprintf("%.2f", r.workerCPU.Seconds()),
			fmt.Sprintf("%.2f", r.enqueueCPU.Seconds()), fmt.Sprintf("%.2f", r.serverCPU.Seconds()), mib(r.peakRSS),
		})
	}
	b.WriteString(table(header, rows))

	b.WriteString(`
MB/s is 10^6 bytes per second of wall time, from the start of
` + "`enqueue --wait`" + ` to its exit; every download's SHA-256 was checked.
"fleet s" is the ledger's time from the job's creation to the object's
end: it leaves out the enqueue's start-up and its 50 ms polling of the job.
CPU-s/GiB is user+system CPU seconds per GiB while the clock ran, the median
of the runs. Peak RSS is the largest VmHWM of any worker. The method is in
the doc comment of bench/main.go.
`)
	return b.String()
}

// table renders a Markdown table with right-aligned, padded columns.
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
			fmt.Fprintf(&b, " %*s |", width[i], c) // fmt pads by runes
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for _, w := range width {
		b.WriteString(strings.Repeat("-", w+1) + ":|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(n int64) string { return fmt.Sprintf("%.0f", float64(n)/(1<<20)) }

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, sep)
}
