package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scaleRow is one workload on n hosts over its runs.
type scaleRow struct {
	hosts int
	w     *workload
	ok    []scaleSample
	fail  []scaleSample
}

func (r scaleRow) seconds() float64 {
	var xs []float64
	for _, s := range r.ok {
		xs = append(xs, s.elapsed.Seconds())
	}
	return median(xs)
}

func (r scaleRow) mbps() float64 { return float64(r.w.total) / 1e6 / r.seconds() }

func (r scaleRow) objps() float64 { return float64(len(r.w.objects)) / r.seconds() }

// cores is the median over the runs of a CPU time divided by the clock.
func (r scaleRow) cores(f func(scaleSample) time.Duration) float64 {
	var xs []float64
	for _, s := range r.ok {
		xs = append(xs, f(s).Seconds()/s.elapsed.Seconds())
	}
	return median(xs)
}

// linkUse is the median share of the links' capacity the run used: the
// bytes they carried over n × rate × time.
func (r scaleRow) linkUse(rateMbit int) float64 {
	var xs []float64
	for _, s := range r.ok {
		var sum int64
		for _, b := range s.link {
			sum += b
		}
		xs = append(xs, float64(sum)*8/(float64(rateMbit)*1e6*float64(len(s.link))*s.elapsed.Seconds()))
	}
	return median(xs)
}

// linkSpread is the least and the most bytes one host's link carried, as
// shares of the mean, over the runs.
func (r scaleRow) linkSpread() (lo, hi float64) {
	lo, hi = 1, 1
	for _, s := range r.ok {
		var sum int64
		for _, b := range s.link {
			sum += b
		}
		mean := float64(sum) / float64(len(s.link))
		for _, b := range s.link {
			lo, hi = min(lo, float64(b)/mean), max(hi, float64(b)/mean)
		}
	}
	return lo, hi
}

// rows are the runs of a workload by number of hosts, in order.
func (s *scaleSuite) rows(w *workload) []scaleRow {
	var out []scaleRow
	for _, n := range s.opt.hosts {
		r := scaleRow{hosts: n, w: w}
		for _, x := range s.samples {
			if x.hosts != n || x.workload != w.id {
				continue
			}
			if x.err != nil {
				r.fail = append(r.fail, x)
			} else {
				r.ok = append(r.ok, x)
			}
		}
		out = append(out, r)
	}
	return out
}

// efficiency is the scaling efficiency of each row against the first
// (the fewest hosts): n0·t0 / (n·tn), t1 / (n·tn) when n0 is 1; 0 where a
// row has no successful run.
func efficiency(rows []scaleRow) []float64 {
	out := make([]float64, len(rows))
	if len(rows) == 0 || len(rows[0].ok) == 0 {
		return out
	}
	base := float64(rows[0].hosts) * rows[0].seconds()
	for i, r := range rows {
		if len(r.ok) > 0 {
			out[i] = base / (float64(r.hosts) * r.seconds())
		}
	}
	return out
}

// goodput is what a link of rateMbit carries of TCP payload at most:
// tbf counts each packet's Ethernet frame without preamble and checksum,
// 1514 bytes for 1448 of payload (IP and TCP headers with timestamps).
func goodput(rateMbit int) float64 { return float64(rateMbit) * 1e6 / 8 * 1448 / 1514 }

// report writes the Markdown report and the chart, updates the
// Scale-out section of bench/results.md, and prints the report.
func (s *scaleSuite) report() error {
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
	if err := s.drawScaleChart(chart); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	s.log.Info("chart written", "file", chart)
	if s.opt.out == defaultScaleOut {
		results := filepath.Join(s.opt.root, "bench", "results.md")
		if err := updateScaleSection(results, scaleSection(s.opt.root, results)); err != nil {
			return err
		}
		s.log.Info("Scale-out section updated", "file", results)
	}
	return nil
}

// defaultScaleOut is where the scale mode writes its report by default,
// and where the full mode's report finds its summary.
const defaultScaleOut = "bench/results-scale.md"

// The markers of the summary in the scale report, and of the Scale-out
// section in results.md.
const (
	summaryStart = "<!-- scale-summary -->"
	summaryEnd   = "<!-- /scale-summary -->"
	sectionStart = "<!-- scale-out: from bench/results-scale.md (make bench-scale); the full run keeps it -->"
	sectionEnd   = "<!-- /scale-out -->"
)

func (s *scaleSuite) render() string {
	o := s.opt
	var b strings.Builder
	b.WriteString("# s3fleet scale-out\n\n")
	fmt.Fprintf(&b, "`bench/suite/run.sh scale%s` (`make bench-scale`) on %s; the measurement took %s (upload %s).\n\n",
		joinArgs(o.shown), time.Now().UTC().Format(time.DateOnly), time.Since(s.started).Round(time.Second), s.uploadTime.Round(time.Second))
	m := describeMachine()
	fmt.Fprintf(&b, "- Machine: %d CPUs (nproc), %s, %s RAM, Linux %s, %s: **every host below shares these %d CPUs**\n",
		m.cpus, m.cpuModel, m.memory, m.kernel, m.goVersion, m.cpus)
	fmt.Fprintf(&b, "- s3fleet: %s\n", s.fleetVersion)
	given := map[string]string{}
	for kv := range strings.SplitSeq(o.versions, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			given[k] = v
		}
	}
	fmt.Fprintf(&b, "- Servers: %s and redis-server %s in the root network namespace, on %s\n",
		withVersion("versitygw", given["versitygw"]), s.redisVersion, serviceIP)
	fmt.Fprintf(&b, "- Hosts: each a network namespace with one `worker` (`S3FLEET_CONCURRENCY=%d`, `S3FLEET_HOST=hN`, "+
		"`S3FLEET_ALLOW_DEST` the destination root), joined to the root namespace by a veth pair whose root end is shaped "+
		"with `tc qdisc … %s`: %d Mbit/s towards the host (at most %.1f MB/s of TCP payload), its downloads and Redis's replies "+
		"sharing it; the enqueue (`enqueue SRC DEST --wait`, `S3FLEET_CHUNK_SIZE=%s`) in a namespace of its own on an uncapped link\n",
		o.concurrency, strings.Join(tbfArgs(o.rateMbit), " "), o.rateMbit, goodput(o.rateMbit)/1e6, fmtSize(o.chunk))
	fmt.Fprintf(&b, "- Destination: %s; preallocating the big object's %s there (fallocate, as a download's first chunk "+
		"does before any chunk lands) took %.2f s\n", s.destNote, fmtSize(o.bigSize), s.fallocate.Seconds())
	fmt.Fprintf(&b, "- Workloads: big, %s in %s chunks (%d chunks: %.1f per worker slot at %d hosts); small, %s under a prefix "+
		"(the enqueue batches them, at its defaults)\n", s.big.title, fmtSize(o.chunk), o.chunks(),
		float64(o.chunks())/float64(o.maxHosts()*o.concurrency), o.maxHosts(), s.small.title)
	fmt.Fprintf(&b, "- Runs: %d of each workload at each number of hosts, the two alternating, each to a fresh directory, its every "+
		"file checked by SHA-256 after the clock; the clock runs from the enqueue's start to its exit; the workers were started, "+
		"registered and idle for %s before\n", o.runs, o.settle)
	var rest []float64
	for _, r := range s.samples {
		if r.err == nil {
			rest = append(rest, r.rest().Seconds()/r.elapsed.Seconds())
		}
	}
	if len(rest) > 0 {
		fmt.Fprintf(&b, "- The rest of the machine (other programs, and the kernel's work for the links that no process is "+
			"charged for) was busy for a median of %.2f cores while the clocks ran, at most %.2f", median(rest), slices.Max(rest))
		if median(rest) > 0.25 {
			b.WriteString(": **the machine was not quiet: other programs shared its CPUs**")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	big, small := s.rows(s.big), s.rows(s.small)
	b.WriteString(summaryStart + "\n")
	b.WriteString(s.summary(big, small))
	b.WriteString(s.slowdown.summaryLine())
	b.WriteString(summaryEnd + "\n\n")
	fmt.Fprintf(&b, "![scale-out](%s)\n\n", filepath.Base(o.chart))

	b.WriteString("## Throughput, efficiency and CPU\n\n")
	for _, rows := range [][]scaleRow{big, small} {
		b.WriteString(s.throughputTable(rows))
		b.WriteString("\n")
	}
	tail := float64(o.concurrency) * float64(o.chunk) / goodput(o.rateMbit)
	fmt.Fprintf(&b, `"link use": the bytes the hosts' links carried towards them over what they could carry in the time `+
		`(rate × hosts × seconds, the rate on the wire); "spread": the least and the most one host's link carried, `+
		`against the mean. From the links sampled every %s (medians of the runs): "first data", when data first flowed `+
		`towards a host (the enqueue's start, its records and tasks, a worker's first poll, and for the big object the `+
		`first chunk's preallocation of the whole file, %.2f s on this destination, which every chunk waits for); `+
		`"hosts' last data, spread", from the first host's last data to the last host's (the tail: `+
		`hosts with nothing left to take while others finish); "after last data", from the last data to the enqueue's `+
		`exit (the object assembled, the enqueue noticing). Equal chunks pulled %d at a time by each host make a tail `+
		`of up to %d × %s ÷ the link's rate, %.1f s here: a host may take its last %d chunks just before the queue `+
		`runs dry while the others find it empty.`+"\n\n", sampleEvery, s.fallocate.Seconds(), o.concurrency, o.concurrency, fmtSize(o.chunk), tail, o.concurrency)
	b.WriteString("CPU, in cores: CPU time over the clock, medians of the runs (the last column: CPU-s per GiB of the workload, " +
		"means). \"fleet\" is the workers, the enqueue and Redis; \"machine\" all the machine's busy time, softirq (the " +
		"links' packets) and other programs included, out of " + strconv.Itoa(m.cpus) + "; \"rest\" the machine's less the " +
		"fleet's and versitygw's.\n\n")
	b.WriteString(s.cpuTable(big, small))
	b.WriteString("\n")

	b.WriteString("## Redis cost\n\n")
	b.WriteString(s.costIntro())
	b.WriteString(s.costTable(big, "per GiB", func(r scaleSample) float64 { return float64(s.big.total) / (1 << 30) }, o.chunks(), "per chunk"))
	b.WriteString("\n")
	b.WriteString(s.costTable(small, "per object", func(r scaleSample) float64 { return float64(len(s.small.objects)) }, 0, ""))
	b.WriteString("\n")
	b.WriteString(s.idleTable())
	b.WriteString(s.waste(big, small))

	var failed []string
	for _, r := range s.samples {
		if r.err != nil {
			failed = append(failed, fmt.Sprintf("- %d hosts, %s, run %d: %s", r.hosts, r.workload, r.run, oneLine(r.err.Error(), 400)))
		}
	}
	for _, r := range s.idles {
		if r.err != nil {
			failed = append(failed, fmt.Sprintf("- idle spell at %d hosts: %s", r.hosts, oneLine(r.err.Error(), 400)))
		}
	}
	if len(failed) > 0 {
		b.WriteString("## Failures\n\n" + strings.Join(failed, "\n") + "\n\n")
	}

	b.WriteString("<details><summary>Every run, in the order they ran</summary>\n\n")
	var all [][]string
	for _, r := range s.samples {
		e := ""
		if r.err != nil {
			e = oneLine(r.err.Error(), 120)
		}
		w := s.big
		if r.workload == s.small.id {
			w = s.small
		}
		var link []string
		for _, x := range r.link {
			link = append(link, fmt.Sprintf("%.0f", float64(x)/1e6))
		}
		all = append(all, []string{strconv.Itoa(r.hosts), r.workload, strconv.Itoa(r.run), fmt.Sprintf("%.2f", r.elapsed.Seconds()),
			fmt.Sprintf("%.1f", float64(w.total)/1e6/r.elapsed.Seconds()),
			fmt.Sprintf("%.2f", r.cpuWorkers.Seconds()), fmt.Sprintf("%.2f", r.cpuEnqueue.Seconds()), fmt.Sprintf("%.2f", r.cpuRedis.Seconds()),
			fmt.Sprintf("%.2f", r.cpuServer.Seconds()), fmt.Sprintf("%.2f", r.busy.Seconds()), fmt.Sprintf("%.2f", r.steal.Seconds()),
			strings.Join(link, " "), strconv.FormatInt(r.cost.calls.total(""), 10), e})
	}
	b.WriteString(table([]string{"hosts", "workload", "run", "s", "MB/s", "workers CPU-s", "enqueue CPU-s", "Redis CPU-s", "versitygw CPU-s",
		"machine busy CPU-s", "steal CPU-s", "MB per host link", "Redis calls", "error"}, all))
	b.WriteString("\n</details>\n")
	b.WriteString(s.slowdown.report())
	return b.String()
}

func hostsLabel(n int) string {
	if n == 1 {
		return "1 host"
	}
	return fmt.Sprintf("%d hosts", n)
}

func fmtSize(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// summary is the headline table: both workloads' throughput and
// efficiency by number of hosts, and the CPU they took.
func (s *scaleSuite) summary(big, small []scaleRow) string {
	var b strings.Builder
	eb, es := efficiency(big), efficiency(small)
	var rows [][]string
	for i := range big {
		row := []string{strconv.Itoa(big[i].hosts)}
		for _, x := range []struct {
			r   scaleRow
			eff float64
		}{{big[i], eb[i]}, {small[i], es[i]}} {
			if len(x.r.ok) == 0 {
				row = append(row, "failed", "–", "–")
				continue
			}
			row = append(row, fmt.Sprintf("%.1f", x.r.mbps()), fmt.Sprintf("%.2f", x.eff),
				fmt.Sprintf("%.2f / %.2f", x.r.cores(func(r scaleSample) time.Duration { return r.fleetCPU() + r.cpuServer }),
					x.r.cores(func(r scaleSample) time.Duration { return r.busy })))
		}
		if len(small[i].ok) > 0 {
			row = slices.Insert(row, 5, fmt.Sprintf("%.0f", small[i].objps()))
		} else {
			row = slices.Insert(row, 5, "–")
		}
		rows = append(rows, row)
	}
	fmt.Fprintf(&b, "Worker hosts of %d Mbit/s each (tbf), one worker process of %d slots per host; big: %s, small: %s. "+
		"Efficiency t1 / (n·tn) from the median times (goal ≥ 0.9 at %d hosts); CPU in cores, of %d: the fleet "+
		"(workers, enqueue, Redis) and versitygw / the whole machine.\n\n",
		s.opt.rateMbit, s.opt.concurrency, s.big.title, s.small.title, s.opt.maxHosts(), describeMachine().cpus)
	b.WriteString(table([]string{"hosts", "big MB/s", "big efficiency", "big CPU cores", "small MB/s", "small objects/s", "small efficiency", "small CPU cores"}, rows))
	last := len(big) - 1
	if last >= 0 && len(big[last].ok) > 0 {
		calls := meanOf(big[last].ok, func(r scaleSample) float64 { return float64(r.cost.calls.total("")) })
		gib := float64(s.big.total) / (1 << 30)
		stats := meanOf(big[last].ok, func(r scaleSample) float64 { return float64(r.cost.stats.total()) })
		fmt.Fprintf(&b, "\nRedis, big object at %d hosts: %.0f calls sent per GiB (%.1f per chunk of %s), %.0f per GiB "+
			"counted by commandstats, the commands scripts run included", big[last].hosts, calls/gib,
			calls/float64(s.opt.chunks()), fmtSize(s.opt.chunk), stats/gib)
		if len(small[last].ok) > 0 {
			sc := meanOf(small[last].ok, func(r scaleSample) float64 { return float64(r.cost.calls.total("")) })
			fmt.Fprintf(&b, "; small objects: %.1f calls per object", sc/float64(len(s.small.objects)))
		}
		if i := slices.IndexFunc(s.idles, func(x idleSample) bool { return x.err == nil && x.hosts == big[last].hosts }); i >= 0 {
			x := s.idles[i]
			fmt.Fprintf(&b, "; an idle worker: %.0f calls/s", float64(x.cost.calls.total(byWorkers))/x.elapsed.Seconds()/float64(x.hosts))
		}
		b.WriteString(".\n")
	}
	return b.String()
}

func meanOf(xs []scaleSample, f func(scaleSample) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum float64
	for _, x := range xs {
		sum += f(x)
	}
	return sum / float64(len(xs))
}

func (s *scaleSuite) throughputTable(rows []scaleRow) string {
	var b strings.Builder
	w := rows[0].w
	fmt.Fprintf(&b, "%s: %s\n\n", w.id, w.title)
	eff := efficiency(rows)
	secs := func(r scaleRow, f func(scaleSample) time.Duration) string {
		var xs []float64
		for _, x := range r.ok {
			xs = append(xs, f(x).Seconds())
		}
		return fmt.Sprintf("%.2f", median(xs))
	}
	var cells [][]string
	for i, r := range rows {
		if len(r.ok) == 0 {
			cells = append(cells, []string{strconv.Itoa(r.hosts), "0", "–", "–", "–", "–", "–", "–", "–", "–", "–", "–", strconv.Itoa(len(r.fail))})
			continue
		}
		objs := "–"
		if !w.single() {
			objs = fmt.Sprintf("%.0f", r.objps())
		}
		lo, hi := r.linkSpread()
		ideal := float64(r.hosts) * goodput(s.opt.rateMbit) / 1e6
		cells = append(cells, []string{strconv.Itoa(r.hosts), strconv.Itoa(len(r.ok)), fmt.Sprintf("%.2f", r.seconds()),
			fmt.Sprintf("%.1f", r.mbps()), objs, fmt.Sprintf("%.0f", ideal), fmt.Sprintf("%.0f %%", 100*r.linkUse(s.opt.rateMbit)),
			fmt.Sprintf("%.2f–%.2f", lo, hi),
			secs(r, func(x scaleSample) time.Duration { lo, _ := dataSpan(x.firstData); return lo }),
			secs(r, func(x scaleSample) time.Duration { lo, hi := dataSpan(x.lastData); return hi - lo }),
			secs(r, func(x scaleSample) time.Duration { _, hi := dataSpan(x.lastData); return x.elapsed - hi }),
			fmt.Sprintf("%.2f", eff[i]), strconv.Itoa(len(r.fail))})
	}
	b.WriteString(table([]string{"hosts", "runs", "median s", "MB/s", "objects/s", "links' payload MB/s", "link use", "spread",
		"first data s", "hosts' last data, spread s", "after last data s", "efficiency", "failed"}, cells))
	return b.String()
}

// dataSpan is the earliest and the latest of the hosts' times, leaving
// out the hosts that got no data (first -1, last 0).
func dataSpan(ts []time.Duration) (lo, hi time.Duration) {
	found := false
	for _, t := range ts {
		if t <= 0 {
			continue
		}
		if !found {
			lo, hi, found = t, t, true
		}
		lo, hi = min(lo, t), max(hi, t)
	}
	return lo, hi
}

// cpuTable is the CPU the runs took, in cores.
func (s *scaleSuite) cpuTable(all ...[]scaleRow) string {
	var cells [][]string
	for _, rows := range all {
		for _, r := range rows {
			if len(r.ok) == 0 {
				continue
			}
			core := func(f func(scaleSample) time.Duration) string { return fmt.Sprintf("%.2f", r.cores(f)) }
			cells = append(cells, []string{r.w.id, strconv.Itoa(r.hosts),
				core(func(x scaleSample) time.Duration { return x.cpuWorkers }),
				core(func(x scaleSample) time.Duration { return x.cpuEnqueue }),
				core(func(x scaleSample) time.Duration { return x.cpuRedis }),
				core(scaleSample.fleetCPU),
				core(func(x scaleSample) time.Duration { return x.cpuServer }),
				core(func(x scaleSample) time.Duration { return x.fleetCPU() + x.cpuServer }),
				core(func(x scaleSample) time.Duration { return x.busy }),
				core(scaleSample.rest),
				fmt.Sprintf("%.2f", meanOf(r.ok, func(x scaleSample) float64 {
					return (x.fleetCPU() + x.cpuServer).Seconds() / (float64(r.w.total) / (1 << 30))
				}))})
		}
	}
	return table([]string{"workload", "hosts", "workers", "enqueue", "Redis", "fleet", "versitygw", "fleet + versitygw", "machine", "rest",
		"fleet + versitygw CPU-s/GiB"}, cells)
}

func (s *scaleSuite) costIntro() string {
	return "Deltas of `INFO commandstats` and `INFO stats` around each run (the suite's own INFO and SLOWLOG calls " +
		"taken out), the calls told apart by Redis's slow log, which logs every command here (threshold 0) with its " +
		"client: an EVALSHA names its script by the SHA-1 of its source, and the suite found every `redis.NewScript` " +
		"of the product and of asynq (" + s.scriptCounts() + ") and loaded them with SCRIPT LOAD before the first run, so " +
		"no EVALSHA missed. A call is one command a client sent (a pipeline's commands count one each); the commands " +
		"a script runs are counted apart (commandstats counts them as their own commands too). Means of the runs.\n\n"
}

func (s *scaleSuite) scriptCounts() string {
	n := map[string]int{}
	for _, sc := range s.scripts {
		n[sc.origin]++
	}
	var parts []string
	for _, o := range slices.Sorted(func(yield func(string) bool) {
		for k := range n {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s %d", o, n[o]))
	}
	return strings.Join(parts, ", ")
}

// costTable is a workload's Redis calls by kind, per unit, for each
// number of hosts; the last columns at the most hosts: per chunk (when
// chunks > 0), who sent them, and how many commands a script ran a call.
func (s *scaleSuite) costTable(rows []scaleRow, unit string, units func(scaleSample) float64, chunks int64, perChunk string) string {
	var b strings.Builder
	w := rows[0].w
	fmt.Fprintf(&b, "%s (%s): Redis calls %s by number of hosts\n\n", w.id, w.title, unit)
	per := func(r scaleRow, f func(scaleSample) float64) (float64, bool) {
		if len(r.ok) == 0 {
			return 0, false
		}
		return meanOf(r.ok, func(x scaleSample) float64 { return f(x) / units(x) }), true
	}
	last := rows[len(rows)-1]
	keys := map[callKey]bool{}
	for _, r := range rows {
		for _, x := range r.ok {
			for k := range x.cost.calls.byKey() {
				keys[k] = true
			}
		}
	}
	order := slices.Collect(func(yield func(callKey) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	})
	atLast := func(k callKey) float64 {
		return meanOf(last.ok, func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) })
	}
	rank := map[string]int{}
	for i, o := range origins(order) {
		rank[o] = i
	}
	slices.SortFunc(order, func(a, b callKey) int {
		if d := rank[a.origin] - rank[b.origin]; d != 0 {
			return d
		}
		if d := atLast(b) - atLast(a); d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(a.name, b.name)
	})
	header := []string{"call"}
	for _, r := range rows {
		header = append(header, hostsLabel(r.hosts))
	}
	if chunks > 0 {
		header = append(header, fmt.Sprintf("%s at %d", perChunk, last.hosts))
	}
	header = append(header, fmt.Sprintf("from the enqueue at %d", last.hosts), "commands inside, per call", "an idle worker's, per s")
	idle := s.lastIdle()
	var cells [][]string
	num := func(v float64) string {
		switch {
		case v == 0:
			return "0"
		case v < 10:
			return fmt.Sprintf("%.2f", v)
		}
		return fmt.Sprintf("%.0f", v)
	}
	addRow := func(name string, f func(scaleSample) float64, enq func(scaleSample) float64, inside, idleRate string) {
		row := []string{name}
		for _, r := range rows {
			if v, ok := per(r, f); ok {
				row = append(row, num(v))
			} else {
				row = append(row, "–")
			}
		}
		if chunks > 0 {
			row = append(row, num(meanOf(last.ok, f)/float64(chunks)))
		}
		if enq != nil {
			v, _ := per(last, enq)
			row = append(row, num(v))
		} else {
			row = append(row, "")
		}
		cells = append(cells, append(row, inside, idleRate))
	}
	for _, k := range order {
		inside := ""
		if k.origin != "" {
			calls := meanOf(last.ok, func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) })
			in := meanOf(last.ok, func(x scaleSample) float64 { return float64(x.cost.calls.inside[k]) })
			if calls > 0 {
				inside = fmt.Sprintf("%.1f", in/calls)
			}
		}
		kind := "EVALSHA " + k.String()
		if k.origin == "" {
			kind = k.String()
		}
		idleRate := ""
		if idle != nil {
			if v := idle.cost.calls.top[byWorkers][k]; v > 0 {
				idleRate = fmt.Sprintf("%.2f", float64(v)/idle.elapsed.Seconds()/float64(idle.hosts))
			}
		}
		addRow(kind, func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) },
			func(x scaleSample) float64 { return float64(x.cost.calls.top[byEnqueue][k]) }, inside, idleRate)
	}
	addRow("**calls sent, all**", func(x scaleSample) float64 { return float64(x.cost.calls.total("")) },
		func(x scaleSample) float64 { return float64(x.cost.calls.total(byEnqueue)) }, "", "")
	addRow("commands run inside scripts", func(x scaleSample) float64 { return float64(x.cost.calls.insideTotal()) }, nil, "", "")
	addRow("commandstats calls (inside scripts included)", func(x scaleSample) float64 { return float64(x.cost.stats.total()) }, nil, "", "")
	addRow("requests read (total_reads_processed)", func(x scaleSample) float64 { return float64(x.cost.stats.reads) }, nil, "", "")
	addRow("KiB in (total_net_input_bytes)", func(x scaleSample) float64 { return float64(x.cost.stats.netIn) / 1024 }, nil, "", "")
	addRow("KiB out (total_net_output_bytes)", func(x scaleSample) float64 { return float64(x.cost.stats.netOut) / 1024 }, nil, "", "")
	b.WriteString(table(header, cells))
	var lost []string
	for _, r := range rows {
		for _, x := range r.ok {
			if x.cost.calls.lost {
				lost = append(lost, fmt.Sprintf("%d hosts run %d", r.hosts, x.run))
			}
		}
	}
	if len(lost) > 0 {
		fmt.Fprintf(&b, "\n**The slow log overflowed (%s): those counts are short.**\n", strings.Join(lost, ", "))
	}
	return b.String()
}

// idleTable is an idle worker's calls per second, by kind, at each number
// of hosts measured idle.
func (s *scaleSuite) idleTable() string {
	var ok []idleSample
	for _, x := range s.idles {
		if x.err == nil {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "An idle worker, nothing queued: calls per second per worker process over a spell of %s, by number of "+
		"hosts (the workers' calls over the spell, divided by the workers)\n\n", s.opt.idle)
	keys := map[callKey]bool{}
	for _, x := range ok {
		for k := range x.cost.calls.top[byWorkers] {
			keys[k] = true
		}
	}
	order := slices.Collect(func(yield func(callKey) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	})
	rate := func(x idleSample, v int64) float64 { return float64(v) / x.elapsed.Seconds() / float64(x.hosts) }
	lastIdle := ok[len(ok)-1]
	slices.SortFunc(order, func(a, b callKey) int {
		d := lastIdle.cost.calls.top[byWorkers][b] - lastIdle.cost.calls.top[byWorkers][a]
		if d != 0 {
			return int(d)
		}
		return strings.Compare(a.String(), b.String())
	})
	header := []string{"call"}
	for _, x := range ok {
		header = append(header, hostsLabel(x.hosts))
	}
	header = append(header, "commands inside, per call")
	var cells [][]string
	for _, k := range order {
		row := []string{k.String()}
		if k.origin != "" {
			row[0] = "EVALSHA " + k.String()
		}
		for _, x := range ok {
			row = append(row, fmt.Sprintf("%.2f", rate(x, x.cost.calls.top[byWorkers][k])))
		}
		inside := ""
		if c := lastIdle.cost.calls.top[byWorkers][k]; c > 0 && k.origin != "" {
			inside = fmt.Sprintf("%.1f", float64(lastIdle.cost.calls.inside[k])/float64(c))
		}
		cells = append(cells, append(row, inside))
	}
	add := func(name string, f func(idleSample) float64) {
		row := []string{name}
		for _, x := range ok {
			row = append(row, fmt.Sprintf("%.2f", f(x)))
		}
		cells = append(cells, append(row, ""))
	}
	add("**calls sent**", func(x idleSample) float64 { return rate(x, x.cost.calls.total(byWorkers)) })
	add("commandstats calls (inside scripts included)", func(x idleSample) float64 { return rate(x, x.cost.stats.total()) })
	add("KiB in", func(x idleSample) float64 { return rate(x, x.cost.stats.netIn) / 1024 })
	add("KiB out", func(x idleSample) float64 { return rate(x, x.cost.stats.netOut) / 1024 })
	add("worker CPU, ms per s", func(x idleSample) float64 {
		return x.cpuWorkers.Seconds() * 1000 / x.elapsed.Seconds() / float64(x.hosts)
	})
	add("Redis CPU, ms per s (per worker)", func(x idleSample) float64 {
		return x.cpuRedis.Seconds() * 1000 / x.elapsed.Seconds() / float64(x.hosts)
	})
	b.WriteString(table(header, cells))
	b.WriteString("\n")
	return b.String()
}

// taskKeys are asynq's scripts that end a task (one call per task run).
var taskEnds = []string{"doneCmd", "doneUniqueCmd", "markAsCompleteCmd", "markAsCompleteUniqueCmd", "retryCmd", "archiveCmd", "requeueCmd"}

// waste points at the calls that look avoidable, with the figures.
func (s *scaleSuite) waste(big, small []scaleRow) string {
	var b strings.Builder
	b.WriteString("## Calls that look like waste\n\n")
	lastBig, lastSmall := big[len(big)-1], small[len(small)-1]
	if x := s.lastIdle(); x != nil {
		perWorker := float64(x.cost.calls.total(byWorkers)) / x.elapsed.Seconds() / float64(x.hosts)
		deq := float64(x.cost.calls.top[byWorkers][callKey{"asynq", "dequeueCmd"}]) / x.elapsed.Seconds() / float64(x.hosts)
		redisMS := x.cpuRedis.Seconds() * 1000 / x.elapsed.Seconds() / float64(x.hosts)
		fmt.Fprintf(&b, "- **Idle polling.** An idle worker sends %.0f calls/s, %.0f of them asynq's dequeue script: every "+
			"TaskCheckInterval (50 ms, 25–75 ms with asynq's jitter) it tries each of its %d queues in turn (assemble, the "+
			"three chunk queues, its host's), each try a round trip and %.0f commands in Redis. It costs Redis %.1f ms of CPU "+
			"a second: 100 idle workers would send %.0f calls/s and keep %.0f %% of a core of Redis busy with nothing to do. "+
			"One script that tries every queue would make it one call per poll; a blocking pop (or a notification when a "+
			"task is queued) none.\n",
			perWorker, deq, len(queueNames), x.cost.calls.insideOf(callKey{"asynq", "dequeueCmd"}),
			redisMS, perWorker*100, redisMS*100/10)
	}
	if len(lastBig.ok) > 0 {
		byKey := func(k callKey) float64 {
			return meanOf(lastBig.ok, func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) })
		}
		var tasks float64
		for _, name := range taskEnds {
			tasks += byKey(callKey{"asynq", name})
		}
		deq := byKey(callKey{"asynq", "dequeueCmd"})
		if tasks > 0 {
			fmt.Fprintf(&b, "- **Dequeue probes.** Big object at %d hosts: %.0f dequeue calls for %.0f tasks run, %.1f a task: "+
				"all but one find an empty queue (the others in turn, and the polls of slots that found nothing near the end).\n",
				lastBig.hosts, deq, tasks, deq/tasks)
		}
		once := perChunk(big, float64(s.opt.chunks()), s.lastIdle())
		slices.Sort(once)
		if len(once) > 0 {
			fmt.Fprintf(&b, "- **One round trip each, per chunk.** These run about once a chunk (calls per chunk): %s. Each is "+
				"a round trip from the worker, in turn; the ones at a chunk's start and at its end could be one script each "+
				"(or one pipeline), as the ledger's and the liveness record's writes go to the same Redis.\n",
				strings.Join(once, ", "))
		}
		enq := meanOf(lastBig.ok, func(x scaleSample) float64 { return float64(x.cost.calls.total(byEnqueue)) })
		secs := lastBig.seconds()
		fmt.Fprintf(&b, "- **The enqueue's --wait.** %.0f calls from the enqueue for the big object at %d hosts, %.0f per "+
			"second of the clock: it reads the job's counters every 50 ms, however long the job.\n", enq, lastBig.hosts, enq/secs)
	}
	// The inspector's statistics come every 30 s: look in every run.
	var stats, statsInside float64
	runs := 0
	for _, x := range s.samples {
		if x.err != nil {
			continue
		}
		runs++
		for _, name := range []string{"memoryUsageCmd", "currentStatsCmd"} {
			k := callKey{"asynq", name}
			if name == "memoryUsageCmd" {
				stats += float64(x.cost.calls.byKey()[k])
			}
			statsInside += float64(x.cost.calls.inside[k])
		}
	}
	if stats > 0 {
		fmt.Fprintf(&b, "- **Queue statistics for one number.** Every worker, every 30 s, asks asynq's inspector for the "+
			"whole GetQueueInfo of each of its queues (currentStatsCmd and memoryUsageCmd, %.0f commands inside Redis a "+
			"queue, MEMORY USAGE of sampled tasks among them; %.0f times in the %d runs) to read one number, the "+
			"archived tasks' count, which one ZCARD gives.\n", statsInside/stats, stats, runs)
	}
	if len(lastSmall.ok) > 0 {
		objs := float64(len(s.small.objects))
		per := func(f func(scaleSample) float64) float64 { return meanOf(lastSmall.ok, f) / objs }
		var each []string
		seen := map[callKey]bool{}
		for _, x := range lastSmall.ok {
			for k := range x.cost.calls.byKey() {
				if seen[k] {
					continue
				}
				seen[k] = true
				if v := per(func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) }); v >= 0.5 {
					each = append(each, fmt.Sprintf("%s %.2f", k, v))
				}
			}
		}
		slices.Sort(each)
		fmt.Fprintf(&b, "- **Small objects** cost %.2f calls each at %d hosts (%.2f requests read: the enqueue pipelines "+
			"its own), %.2f of them the enqueue's; about one an object: %s; the rest per batch task. Inside Redis each "+
			"object costs %.0f commands, the batch's scripts' included.\n",
			per(func(x scaleSample) float64 { return float64(x.cost.calls.total("")) }), lastSmall.hosts,
			per(func(x scaleSample) float64 { return float64(x.cost.stats.reads) }),
			per(func(x scaleSample) float64 { return float64(x.cost.calls.total(byEnqueue)) }), strings.Join(each, ", "),
			per(func(x scaleSample) float64 { return float64(x.cost.calls.insideTotal()) }))
	}
	b.WriteString("\n")
	return b.String()
}

// perChunk lists the calls made about once a chunk at every number of
// hosts (0.9 to 1.6 a chunk), leaving out those an idle worker makes too
// (beats, polls: they follow the clock, and a run's host-seconds, not the
// chunks), with their calls per chunk at the most hosts.
func perChunk(rows []scaleRow, chunks float64, idle *idleSample) []string {
	keys := map[callKey]bool{}
	for _, r := range rows {
		for _, x := range r.ok {
			for k := range x.cost.calls.byKey() {
				keys[k] = true
			}
		}
	}
	var out []string
	for k := range keys {
		if idle != nil && idle.cost.calls.top[byWorkers][k] > 0 {
			continue
		}
		ok, at := true, 0.0
		for _, r := range rows {
			if len(r.ok) == 0 {
				continue
			}
			v := meanOf(r.ok, func(x scaleSample) float64 { return float64(x.cost.calls.byKey()[k]) }) / chunks
			ok = ok && v >= 0.9 && v <= 1.6
			at = v
		}
		if ok {
			out = append(out, fmt.Sprintf("%s (%.2f)", k, at))
		}
	}
	slices.Sort(out)
	return out
}

// queueNames are the queues a worker serves: its weights' and its host's.
var queueNames = []string{"assemble", "chunks-high", "chunks", "chunks-low", "host:NAME"}

func (s *scaleSuite) lastIdle() *idleSample {
	for i := len(s.idles) - 1; i >= 0; i-- {
		if s.idles[i].err == nil {
			return &s.idles[i]
		}
	}
	return nil
}

// scaleSection is results.md's Scale-out section, from the summary of
// the scale report (defaultScaleOut under root), linked relative to the
// results file; "" when there is no scale report.
func scaleSection(root, results string) string {
	path := filepath.Join(root, filepath.FromSlash(defaultScaleOut))
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	text := string(b)
	_, rest, ok := strings.Cut(text, summaryStart)
	summary, _, ok2 := strings.Cut(rest, summaryEnd)
	if !ok || !ok2 {
		return ""
	}
	link, err := filepath.Rel(filepath.Dir(results), path)
	if err != nil {
		link = path
	}
	chart := strings.TrimSuffix(link, ".md") + ".png"
	first, _, _ := strings.Cut(text, "\n\n- ") // the title and the command line
	when := ""
	if _, cmdLine, ok := strings.Cut(first, "\n\n"); ok {
		when = strings.TrimSpace(cmdLine) + " "
	}
	return sectionStart + "\n## Scale-out\n\n" + strings.TrimSpace(summary) + "\n\nFrom " + when +
		"Method, the CPU, the Redis cost (calls per GiB and per object, by script and command; an idle worker's) and " +
		"every run: [" + filepath.ToSlash(link) + "](" + filepath.ToSlash(link) + "), chart [" + filepath.ToSlash(chart) +
		"](" + filepath.ToSlash(chart) + ").\n" + sectionEnd + "\n"
}

// updateScaleSection puts section into the results file in place of its
// Scale-out section, or before its list of the contenders' commands, or
// at its end.
func updateScaleSection(path, section string) error {
	if section == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(b)
	if before, rest, ok := strings.Cut(text, sectionStart); ok {
		after := rest // no end marker: keep the rest
		if _, a, found := strings.Cut(rest, sectionEnd); found {
			after = strings.TrimPrefix(a, "\n")
		}
		text = before + section + after
	} else if i := strings.Index(text, "## The contenders' commands"); i >= 0 {
		text = text[:i] + section + "\n" + text[i:]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n\n") {
			text += "\n"
		}
		text += section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
