package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// The directions, the network conditions and the durability modes.
const (
	dirDownload   = "download"    // S3 -> local files
	dirUpload     = "upload"      // a local file -> S3
	dirCopy       = "copy"        // S3 server A -> S3 server B, other credentials
	dirServerCopy = "server-copy" // within one S3 server: it copies the bytes itself

	netLoopback = "loopback"
	netWAN      = "wan"
	netTLS      = "tls"     // loopback over HTTPS
	netWANTLS   = "wan-tls" // the emulated WAN in front of the HTTPS server

	modeDurable = "durable"
	modeScratch = "scratch"
)

// directionSpec is what a direction's cells may be made of. A direction
// without modes writes no local file: its cells have none.
type directionSpec struct {
	workloads, nets, modes []string
}

// directionOrder is the directions in the order of the report.
var directionOrder = []string{dirDownload, dirUpload, dirCopy, dirServerCopy}

var directions = map[string]directionSpec{
	dirDownload:   {[]string{"big", "small", "mixed"}, []string{netLoopback, netWAN, netTLS, netWANTLS}, []string{modeDurable, modeScratch}},
	dirUpload:     {[]string{"big"}, []string{netLoopback, netTLS}, nil},
	dirCopy:       {[]string{"big"}, []string{netLoopback, netTLS}, nil},
	dirServerCopy: {[]string{"big", "small"}, []string{netLoopback}, nil},
}

// options are the command-line flags, with the mode's presets filled in.
type options struct {
	mode         string
	runs, warmup int // runs: of each cell without its own count
	cells        []cellSpec
	workloads    []string // those of the cells, in order
	directions   []string // -directions: the cells kept; empty: all
	slow         time.Duration
	budget       time.Duration
	listing      int    // keys of the generated listing the enqueue is measured on; 0: none
	failover     int    // workers killed mid-download for the failover measurement; 0: none
	contenders   string // a regular expression over the names
	ref          string // the s3fleet contender the others are compared with, or best
	fleetWorkers []int
	// fleetWorkerArgs are extra flags of every s3fleet worker.
	fleetWorkerArgs []string

	bigSize, smallSize, mixedBigSize int64
	smallCount, mixedBig, mixedSmall int
	wanLatency                       time.Duration
	wanRateKBps                      int64
	rcloneStreams                    int

	out, chart string // relative to the repository
	runTimeout time.Duration
	keep       bool

	// Programs, and the versions of those that cannot tell their own.
	s5cmd, rclone, python, versitygw, redisServer string
	versions                                      string
	s3fleetSrc                                    string // where cmd/enqueue and cmd/worker are built from

	suiteDir, root, binDir string
	// shown are the flags given after the mode, as the report quotes the
	// command (without those run.sh adds: the programs and their versions).
	shown []string
}

func (o options) bin(name string) string { return filepath.Join(o.binDir, name) }

// isTLS reports whether a network is HTTPS: the client reaches the HTTPS
// versitygw, directly or through wanproxy.
func isTLS(net string) bool { return net == netTLS || net == netWANTLS }

// isWAN reports whether a network goes through wanproxy.
func isWAN(net string) bool { return net == netWAN || net == netWANTLS }

// needsNet reports whether a cell runs on the network.
func (o options) needsNet(net string) bool {
	return slices.ContainsFunc(o.cells, func(c cellSpec) bool { return c.net == net })
}

// needsWAN reports whether a cell runs on the emulated WAN, over HTTP or
// HTTPS.
func (o options) needsWAN() bool {
	return slices.ContainsFunc(o.cells, func(c cellSpec) bool { return isWAN(c.net) })
}

// needsTLS reports whether a cell runs over HTTPS.
func (o options) needsTLS() bool {
	return slices.ContainsFunc(o.cells, func(c cellSpec) bool { return isTLS(c.net) })
}

// needsSecond reports whether a cell copies to the second S3 server.
func (o options) needsSecond() bool {
	return slices.ContainsFunc(o.cells, func(c cellSpec) bool { return c.dir == dirCopy })
}

// has reports whether a cell goes in the direction.
func (o options) has(dir string) bool {
	return slices.ContainsFunc(o.cells, func(c cellSpec) bool { return c.dir == dir })
}

// uploadSources are the workloads an upload cell reads from local files.
func (o options) uploadSources() []string {
	var ids []string
	for _, c := range o.cells {
		if c.dir == dirUpload && !slices.Contains(ids, c.workload) {
			ids = append(ids, c.workload)
		}
	}
	return ids
}

// cellSpec is one table to measure: a direction, a workload, a network and
// (downloads only) a durability mode, with its runs.
type cellSpec struct {
	dir, workload, net, mode string
	runs                     int // 0: -runs
}

// id names the cell: workload/net/mode for a download (as before there
// were other directions), direction/workload/net otherwise.
func (c cellSpec) id() string {
	if c.dir == dirDownload {
		return c.workload + "/" + c.net + "/" + c.mode
	}
	return c.dir + "/" + c.workload + "/" + c.net
}

// parseCells reads -cells: comma-separated items, each
// [download/]workload/net/mode[:runs] for downloads or
// direction/workload/net[:runs] for the other directions, each part after
// the direction a name or *.
func parseCells(text string) ([]cellSpec, error) {
	var out []cellSpec
	for item := range strings.SplitSeq(text, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		spec, runsText, hasRuns := strings.Cut(item, ":")
		runs := 0
		if hasRuns {
			n, err := strconv.Atoi(runsText)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-cells: %q: runs must be a positive number", item)
			}
			runs = n
		}
		parts := strings.Split(spec, "/")
		dir := dirDownload
		if _, ok := directions[parts[0]]; ok {
			dir, parts = parts[0], parts[1:]
		}
		d := directions[dir]
		allowed := [][]string{d.workloads, d.nets}
		want := "workload/net/mode, e.g. big/loopback/durable"
		if d.modes != nil {
			allowed = append(allowed, d.modes)
		} else {
			want = dir + "/workload/net, e.g. " + dir + "/big/loopback"
		}
		if len(parts) != len(allowed) {
			return nil, fmt.Errorf("-cells: %q: want %s", item, want)
		}
		choices := make([][]string, len(allowed))
		for i, p := range parts {
			switch {
			case p == "*":
				choices[i] = allowed[i]
			case slices.Contains(allowed[i], p):
				choices[i] = []string{p}
			default:
				return nil, fmt.Errorf("-cells: %q: %q is none of %s (for %s)", item, p, strings.Join(allowed[i], ", "), dir)
			}
		}
		modes := []string{""}
		if d.modes != nil {
			modes = choices[2]
		}
		for _, w := range choices[0] {
			for _, n := range choices[1] {
				for _, m := range modes {
					c := cellSpec{dir: dir, workload: w, net: n, mode: m, runs: runs}
					if i := slices.IndexFunc(out, func(o cellSpec) bool { return o.id() == c.id() }); i >= 0 {
						out[i] = c
					} else {
						out = append(out, c)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-cells: no cell given")
	}
	// Grouped by direction (in their order), then by workload in the order
	// of first mention.
	var order []string
	for _, c := range out {
		if !slices.Contains(order, c.workload) {
			order = append(order, c.workload)
		}
	}
	slices.SortStableFunc(out, func(a, b cellSpec) int {
		if d := slices.Index(directionOrder, a.dir) - slices.Index(directionOrder, b.dir); d != 0 {
			return d
		}
		return slices.Index(order, a.workload) - slices.Index(order, b.workload)
	})
	return out, nil
}

// keepDirections keeps the cells going in the given directions
// (comma-separated; empty: all).
func keepDirections(cells []cellSpec, text string) ([]cellSpec, []string, error) {
	if strings.TrimSpace(text) == "" {
		return cells, nil, nil
	}
	var dirs []string
	for d := range strings.SplitSeq(text, ",") {
		d = strings.TrimSpace(d)
		if _, ok := directions[d]; !ok {
			return nil, nil, fmt.Errorf("-directions: %q is none of %s", d, strings.Join(directionOrder, ", "))
		}
		dirs = append(dirs, d)
	}
	var out []cellSpec
	for _, c := range cells {
		if slices.Contains(dirs, c.dir) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("-directions %s: none of the cells goes that way", text)
	}
	return out, dirs, nil
}

// presets are the two modes' defaults.
var presets = map[string]struct {
	options
	cells string
}{
	"quick": {options{runs: 3, warmup: 1, contenders: "^(s3fleet 2w|s5cmd)$", slow: time.Minute, budget: quickBudget, listing: 0,
		out: "bench/out/results-quick.md", chart: "bench/out/results-quick.png"},
		quickCells},
	"full": {options{runs: 3, warmup: 1, contenders: ".", slow: 20 * time.Second, budget: fullBudget, listing: 1_000_000, failover: 10,
		out: "bench/results.md", chart: "bench/results.png"},
		fullCells},
}

// quickCells are the quick mode's tables: the big object on loopback,
// durable and scratch, and durable over HTTPS.
const quickCells = "big/loopback/*,big/tls/durable"

// fullCells are the full mode's tables: every direction; the downloads
// over plain HTTP and HTTPS, each on loopback and the emulated WAN.
const fullCells = "big/loopback/*:5,big/wan/*,big/tls/*,big/wan-tls/durable," +
	"small/loopback/durable,small/tls/durable,mixed/loopback/durable,mixed/tls/durable," +
	"upload/big/*,copy/big/*,server-copy/*/loopback"

// The presets' time budgets: past them, runs after each table's first are
// skipped.
const (
	quickBudget = 210 * time.Second
	fullBudget  = 60 * time.Minute
)

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	mode := fs.String("mode", "full", "quick (1 GiB, s3fleet 2 workers vs s5cmd, loopback and HTTPS) or full (everything); the flags below override its presets")
	runs := fs.Int("runs", 0, "runs of each contender in each cell (default: quick 3; full 5 for big/loopback, 3 elsewhere)")
	warmup := fs.Int("warmup", -1, "unmeasured downloads (the plain loop) before each workload's first cell (default 1)")
	cells := fs.String("cells", "", "the tables: comma-separated items, downloads workload/net/mode[:runs] "+
		"(workloads big, small, mixed; nets loopback, wan, tls (HTTPS), wan-tls (HTTPS through the emulated WAN); modes durable, scratch), "+
		"the other directions direction/workload/net[:runs] "+
		"(upload/big/{loopback,tls}, copy/big/{loopback,tls}, server-copy/{big,small}/loopback), each part after the direction a name or * "+
		"(default: quick '"+quickCells+"', full '"+fullCells+"')")
	dirs := fs.String("directions", "", "keep only the cells of these directions, comma-separated: download, upload, copy (across endpoints), server-copy (default: all)")
	slow := fs.Duration("slow", 0, "a contender whose run takes longer runs only once in that cell (default: quick 1m, full 20s)")
	budget := fs.Duration("budget", 0, "past this time, runs after each cell's first are skipped (default: quick 3m30s, full 1h)")
	contenders := fs.String("contenders", "", "regular expression choosing contenders by name (default: quick '^(s3fleet 2w|s5cmd)$', full all)")
	ref := fs.String("ref", "s3fleet 2w", "the s3fleet contender the ratios and targets use, or best: the fastest s3fleet row of each table")
	fleetWorkers := fs.String("fleet-workers", "1,2,4", "s3fleet contenders: numbers of worker processes")
	listing := fs.Int("listing", -1, "keys of a generated listing to measure the enqueue's memory on, 0 for none (default: quick 0, full 1000000; 0 without download cells)")
	failover := fs.Int("failover", -1, "workers to kill with SIGKILL mid-download for the failover measurement, 0 for none (default: quick 0, full 10)")
	fleetConcurrency := fs.Int("fleet-concurrency", 0, "s3fleet workers' --concurrency (default: the product's default)")
	bigSize := fs.String("big-size", "1GiB", "size of the big workload's object")
	smallCount := fs.Int("small-count", 10000, "objects of the small workload")
	smallSize := fs.String("small-size", "16KiB", "size of each of them")
	mixedBig := fs.Int("mixed-big", 3, "big objects of the mixed workload")
	mixedBigSize := fs.String("mixed-big-size", "256MiB", "size of each of them")
	mixedSmall := fs.Int("mixed-small", 2000, "small objects (1–128 KiB) of the mixed workload")
	wanLatency := fs.Duration("wan-latency", 20*time.Millisecond, "emulated WAN (wanproxy): latency added to every response")
	wanRate := fs.Int("wan-rate", 90, "emulated WAN (wanproxy): bandwidth of each connection, MB/s")
	rcloneStreams := fs.Int("rclone-streams", 8, "rclone --multi-thread-streams")
	out := fs.String("out", "", "the Markdown report, relative to the repository (default: quick bench/out/results-quick.md, full bench/results.md)")
	chart := fs.String("chart", "", "the PNG chart, relative to the repository (default: quick bench/out/results-quick.png, full bench/results.png)")
	runTimeout := fs.Duration("run-timeout", 10*time.Minute, "time limit of one run")
	keep := fs.Bool("keep", false, "keep the temporary directory (data, logs)")
	s5cmd := fs.String("s5cmd", "s5cmd", "s5cmd binary")
	rclone := fs.String("rclone", "rclone", "rclone binary")
	python := fs.String("python", "/usr/bin/python3", "Python with boto3 and s3transfer")
	versitygw := fs.String("versitygw", "", "versitygw binary (default: $S3FLEET_VERSITYGW, else .bin/versitygw)")
	redisServer := fs.String("redis-server", "redis-server", "redis-server binary")
	versions := fs.String("versions", "", "versions of the binaries given, for the report (name=version,…)")
	s3fleetSrc := fs.String("s3fleet-src", "", "the s3fleet source tree to build enqueue and worker from (default: this repository's working tree)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	p, ok := presets[*mode]
	if !ok {
		return options{}, fmt.Errorf("-mode: want quick or full, got %q", *mode)
	}
	o := p.options
	o.mode = *mode
	o.shown = shownFlags(args)
	cellText := p.cells
	if *cells != "" {
		cellText = *cells
	}
	var err error
	if o.cells, err = parseCells(cellText); err != nil {
		return options{}, err
	}
	if o.cells, o.directions, err = keepDirections(o.cells, *dirs); err != nil {
		return options{}, err
	}
	if *runs != 0 {
		o.runs = *runs
		for i := range o.cells {
			o.cells[i].runs = 0
		}
	}
	for i := range o.cells {
		if o.cells[i].runs == 0 {
			o.cells[i].runs = o.runs
		}
		if !slices.Contains(o.workloads, o.cells[i].workload) {
			o.workloads = append(o.workloads, o.cells[i].workload)
		}
	}
	if *warmup >= 0 {
		o.warmup = *warmup
	}
	if *slow > 0 {
		o.slow = *slow
	}
	if *budget > 0 {
		o.budget = *budget
	}
	if *contenders != "" {
		o.contenders = *contenders
	}
	o.ref = *ref
	if !o.has(dirDownload) {
		o.listing = 0 // the enqueue of a download listing goes with the downloads
	}
	if *listing >= 0 {
		o.listing = *listing
	}
	if *failover >= 0 {
		o.failover = *failover
	}
	for f := range strings.SplitSeq(*fleetWorkers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return options{}, fmt.Errorf("-fleet-workers: want positive numbers such as 1,2,4, got %q", *fleetWorkers)
		}
		o.fleetWorkers = append(o.fleetWorkers, n)
	}
	if *fleetConcurrency > 0 {
		o.fleetWorkerArgs = []string{"--concurrency", strconv.Itoa(*fleetConcurrency)}
	}
	size := func(name, text string) int64 {
		n, e := humanize.ParseBytes(text)
		if e != nil && err == nil {
			err = fmt.Errorf("-%s: want a size such as 16KiB, got %q", name, text)
		}
		return int64(n)
	}
	o.bigSize = size("big-size", *bigSize)
	o.smallSize = size("small-size", *smallSize)
	o.mixedBigSize = size("mixed-big-size", *mixedBigSize)
	if err != nil {
		return options{}, err
	}
	o.smallCount, o.mixedBig, o.mixedSmall = *smallCount, *mixedBig, *mixedSmall
	o.wanLatency, o.wanRateKBps = *wanLatency, int64(*wanRate)*1000
	o.rcloneStreams = *rcloneStreams
	if *out != "" {
		o.out = *out
	}
	if *chart != "" {
		o.chart = *chart
	}
	o.runTimeout, o.keep = *runTimeout, *keep
	o.s5cmd, o.rclone, o.python, o.redisServer = *s5cmd, *rclone, *python, *redisServer
	o.versions, o.s3fleetSrc = *versions, *s3fleetSrc

	switch {
	case o.runs < 1:
		return options{}, fmt.Errorf("-runs: must be at least 1, got %d", o.runs)
	case o.bigSize < 1 || o.smallSize < 1 || o.mixedBigSize < 1:
		return options{}, fmt.Errorf("sizes must be positive")
	case o.smallCount < 1 || o.mixedBig < 0 || o.mixedSmall < 1:
		return options{}, fmt.Errorf("-small-count and -mixed-small must be positive, -mixed-big not negative")
	case *wanRate < 1:
		return options{}, fmt.Errorf("-wan-rate: must be positive, got %d", *wanRate)
	}

	if o.suiteDir, err = os.Getwd(); err != nil {
		return options{}, err
	}
	if o.root, err = repoRoot(o.suiteDir); err != nil {
		return options{}, err
	}
	if o.s3fleetSrc == "" {
		o.s3fleetSrc = o.root
	}
	o.versitygw = *versitygw
	if o.versitygw == "" {
		o.versitygw = os.Getenv("S3FLEET_VERSITYGW")
	}
	if o.versitygw == "" {
		o.versitygw = filepath.Join(o.root, ".bin", "versitygw")
	}
	return o, nil
}

// shownFlags are the command-line flags without -mode and those run.sh
// passes itself.
func shownFlags(args []string) []string {
	hidden := map[string]bool{"mode": true, "s5cmd": true, "versitygw": true, "python": true, "versions": true, "rclone": true, "redis-server": true}
	var out []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") {
			out = append(out, args[i])
			continue
		}
		takesValue := !hasValue && name != "keep" && i+1 < len(args)
		if hidden[name] {
			if takesValue {
				i++
			}
			continue
		}
		out = append(out, args[i])
		if takesValue {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
