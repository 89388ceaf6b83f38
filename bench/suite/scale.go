package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/dustin/go-humanize"
	"github.com/redis/go-redis/v9"
)

// The scale-out measurement (issue 12, `run.sh scale`, make bench-scale):
// the same two workloads downloaded by 1, 2, 4 and 8 worker hosts, each
// host a network namespace with one worker process behind a link of its
// own capped with tbf (scalenet.go), Redis and versitygw in the root
// namespace, the destination a directory every host sees. A link's rate
// is chosen so that the links, not this machine's CPUs, bound the fleet:
// the report gives the CPU the fleet and versitygw used, in cores. The
// aggregate throughput and the scaling efficiency t1 / (n·tn) come with
// what Redis was asked for each workload (rediscost.go), and what an idle
// worker costs it.

// scaleOptions are the scale mode's flags.
type scaleOptions struct {
	hosts       []int
	rateMbit    int
	concurrency int
	chunk       int64
	bigSize     int64
	smallSize   int64
	smallCount  int
	runs        int
	idle        time.Duration
	slowdown    int // the SlowDown measurement's cap, requests/s; 0: none
	settle      time.Duration
	dest        string
	out, chart  string // relative to the repository
	runTimeout  time.Duration
	keep        bool

	versitygw, redisServer, versions, s3fleetSrc string
	suiteDir, root, binDir                       string
	shown                                        []string
}

func (o scaleOptions) bin(name string) string { return filepath.Join(o.binDir, name) }

func (o scaleOptions) maxHosts() int { return slices.Max(o.hosts) }

// chunks is the big object's number of chunks.
func (o scaleOptions) chunks() int64 { return (o.bigSize + o.chunk - 1) / o.chunk }

// isScaleMode reports whether the arguments ask for -mode scale.
func isScaleMode(args []string) bool {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "mode" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		return value == "scale"
	}
	return false
}

func parseScaleFlags(args []string) (scaleOptions, error) {
	fs := flag.NewFlagSet("suite -mode scale", flag.ContinueOnError)
	fs.String("mode", "scale", "scale: the scale-out measurement")
	hosts := fs.String("hosts", "1,2,4,8", "numbers of worker hosts (network namespaces, one worker process each)")
	rate := fs.Int("rate", 150, "each host's link, Mbit/s towards the host (tbf)")
	concurrency := fs.Int("concurrency", 2, "each worker's --concurrency")
	chunk := fs.String("chunk-size", "8MiB", "the enqueue's chunk_size")
	bigSize := fs.String("big-size", "1GiB", "size of the big workload's object")
	smallCount := fs.Int("small-count", 2000, "objects of the small workload")
	smallSize := fs.String("small-size", "512KiB", "size of each of them")
	runs := fs.Int("runs", 2, "runs of each workload at each number of hosts")
	idle := fs.Duration("idle", 10*time.Second, "idle spell measured at the fewest and the most hosts (0: none)")
	slowdown := fs.Int("slowdown", 60, "last, the SlowDown measurement: workers on this machine download small objects through a proxy refusing requests above this many a second (0: none)")
	settle := fs.Duration("settle", 4*time.Second, "wait after the workers registered, before anything is measured (a member watches the others once its beats have reached Redis for 3 s)")
	dest := fs.String("dest", "", "directory the outputs go under, which every host sees (default: one on /dev/shm when it is a tmpfs with room, else the temporary directory)")
	out := fs.String("out", "bench/results-scale.md", "the Markdown report, relative to the repository; bench/results.md's Scale-out section is updated from it")
	chart := fs.String("chart", "bench/results-scale.png", "the PNG chart, relative to the repository")
	runTimeout := fs.Duration("run-timeout", 5*time.Minute, "time limit of one run")
	keep := fs.Bool("keep", false, "keep the temporary directory (logs)")
	versitygw := fs.String("versitygw", "", "versitygw binary (default: $S3FLEET_VERSITYGW, else .bin/versitygw)")
	redisServer := fs.String("redis-server", "redis-server", "redis-server binary")
	versions := fs.String("versions", "", "versions of the binaries given, for the report (name=version,…)")
	s3fleetSrc := fs.String("s3fleet-src", "", "the s3fleet source tree to build enqueue and worker from (default: this repository's working tree)")
	if err := fs.Parse(args); err != nil {
		return scaleOptions{}, err
	}
	if fs.NArg() > 0 {
		return scaleOptions{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o := scaleOptions{rateMbit: *rate, concurrency: *concurrency, smallCount: *smallCount, runs: *runs, idle: *idle, slowdown: *slowdown, settle: *settle,
		dest: *dest, out: *out, chart: *chart, runTimeout: *runTimeout, keep: *keep,
		redisServer: *redisServer, versions: *versions, s3fleetSrc: *s3fleetSrc, shown: shownFlags(args)}
	for f := range strings.SplitSeq(*hosts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxHosts {
			return o, fmt.Errorf("-hosts: want numbers from 1 to %d such as 1,2,4,8, got %q", maxHosts, *hosts)
		}
		if !slices.Contains(o.hosts, n) {
			o.hosts = append(o.hosts, n)
		}
	}
	slices.Sort(o.hosts)
	var err error
	size := func(name, text string) int64 {
		n, e := humanize.ParseBytes(text)
		if e != nil && err == nil {
			err = fmt.Errorf("-%s: want a size such as 8MiB, got %q", name, text)
		}
		return int64(n)
	}
	o.chunk, o.bigSize, o.smallSize = size("chunk-size", *chunk), size("big-size", *bigSize), size("small-size", *smallSize)
	switch {
	case err != nil:
		return o, err
	case o.rateMbit < 1:
		return o, fmt.Errorf("-rate: must be positive, got %d", o.rateMbit)
	case o.concurrency < 1 || o.runs < 1 || o.smallCount < 1:
		return o, errors.New("-concurrency, -runs and -small-count must be positive")
	case o.chunk < 1<<20 || o.bigSize < o.chunk || o.smallSize < 1:
		return o, errors.New("-chunk-size must be at least 1MiB, -big-size at least a chunk, -small-size positive")
	}
	if o.suiteDir, err = os.Getwd(); err != nil {
		return o, err
	}
	if o.root, err = repoRoot(o.suiteDir); err != nil {
		return o, err
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

// scaleSample is one run of a workload on n hosts.
type scaleSample struct {
	hosts    int
	workload string
	run      int
	elapsed  time.Duration
	// CPU time while the clock ran: the workers together, Redis,
	// versitygw, the enqueue; the machine's busy time (softirq included)
	// and steal.
	cpuWorkers, cpuRedis, cpuServer, cpuEnqueue time.Duration
	busy, steal                                 time.Duration
	link                                        []int64 // bytes each host's link carried towards it
	// Since the clock started: when data first and last flowed towards
	// each host.
	firstData, lastData []time.Duration
	cost                redisCost
	err                 error
}

// fleetCPU is the CPU time of the fleet's processes (workers, enqueue,
// Redis).
func (r scaleSample) fleetCPU() time.Duration { return r.cpuWorkers + r.cpuRedis + r.cpuEnqueue }

// rest is the machine's busy time less the fleet's and versitygw's: other
// programs, and kernel work no process was charged for.
func (r scaleSample) rest() time.Duration { return max(0, r.busy-r.fleetCPU()-r.cpuServer) }

// idleSample is the fleet idle, nothing queued.
type idleSample struct {
	hosts      int
	elapsed    time.Duration
	cpuWorkers time.Duration
	cpuRedis   time.Duration
	cost       redisCost
	err        error
}

// scaleSuite is one run of the scale-out measurement.
type scaleSuite struct {
	opt          scaleOptions
	log          *slog.Logger
	tmp, dest    string
	destNote     string
	fallocate    time.Duration // to preallocate the big object's size on the destination
	net          *fleetNet
	redis, s3    *process
	redisURL     string // as the hosts reach it
	endpoint     string
	rdb          *redis.Client
	big, small   *workload
	scripts      scriptCatalogue
	samples      []scaleSample
	idles        []idleSample
	s3c          *s3.Client
	slowdown     slowdownResult
	started      time.Time
	uploadTime   time.Duration
	fleetVersion string
	redisVersion string
}

// runScale is the scale mode's main.
func runScale(ctx context.Context, args []string) error {
	o, err := parseScaleFlags(args)
	if err != nil {
		return err
	}
	if err := netCheck(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := newScaleSuite(ctx, o, log)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.runAll(ctx); err != nil {
		return err
	}
	if o.slowdown > 0 {
		log.Info("SlowDown: small objects through a proxy capping the fleet's requests", "cap", o.slowdown)
		s.slowdown = runSlowdown(ctx, slowdownFleet{rdb: s.rdb, s3c: s.s3c, endpoint: s.endpoint,
			env: s.env(), bin: func(name string) string { return s.opt.bin(fleetBin(name)) }, tmp: s.tmp}, o.slowdown)
		if s.slowdown.err != nil {
			log.Error("slowdown", "err", s.slowdown.err)
		}
	}
	return s.report()
}

func newScaleSuite(ctx context.Context, o scaleOptions, log *slog.Logger) (_ *scaleSuite, err error) {
	s := &scaleSuite{opt: o, log: log, started: time.Now()}
	if s.tmp, err = os.MkdirTemp("", "s3fleet-scale-"); err != nil {
		return nil, fmt.Errorf("make a temporary directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.opt.binDir = filepath.Join(s.tmp, "bin")
	o = s.opt
	for _, p := range []*string{&s.opt.redisServer, &s.opt.versitygw} {
		if *p, err = lookPath(*p); err != nil {
			return nil, fmt.Errorf("%w: run bench/suite/run.sh scale, which installs it", err)
		}
	}
	o = s.opt
	s.fleetVersion = sourceVersion(o.s3fleetSrc)
	log.Info("building enqueue and worker", "from", o.s3fleetSrc, "version", s.fleetVersion)
	for _, name := range []string{"enqueue", "worker"} {
		if err := goBuildAs(ctx, o.s3fleetSrc, o.bin(fleetBin(name)), "./cmd/"+name); err != nil {
			return nil, err
		}
	}
	if err := s.findScripts(); err != nil {
		return nil, err
	}
	if s.dest, s.destNote, err = scaleDest(o, s.tmp); err != nil {
		return nil, err
	}
	if s.fallocate, err = timeFallocate(s.dest, o.bigSize); err != nil {
		return nil, err
	}
	log.Info("making the hosts", "hosts", o.maxHosts(), "link_mbit", o.rateMbit, "dest", s.dest, "fallocate_s", s.fallocate.Seconds())
	if s.net, err = setupNet(o.maxHosts(), o.rateMbit); err != nil {
		return nil, err
	}
	if err := s.startServers(ctx); err != nil {
		return nil, err
	}
	s.big = &workload{id: "big", key: "big.bin", title: fmt.Sprintf("one %s object", humanize.IBytes(uint64(o.bigSize))),
		objects: []object{{key: "big.bin", size: o.bigSize}}, total: o.bigSize}
	s.small = &workload{id: "small", prefix: "small/",
		title: fmt.Sprintf("%s objects of %s", humanize.Comma(int64(o.smallCount)), humanize.IBytes(uint64(o.smallSize)))}
	for i := range o.smallCount {
		s.small.objects = append(s.small.objects, object{key: fmt.Sprintf("small/%06d.bin", i), size: o.smallSize})
		s.small.total += o.smallSize
	}
	s3c, err := newClient(ctx, s.endpoint, accessKey, secretKey)
	if err != nil {
		return nil, err
	}
	s.s3c = s3c
	log.Info("uploading", "objects", 1+o.smallCount, "bytes", humanize.IBytes(uint64(s.big.total+s.small.total)))
	start := time.Now()
	if err := upload(ctx, s3c, []*workload{s.big, s.small}, filepath.Join(s.tmp, "src"), nil); err != nil {
		return nil, err
	}
	s.uploadTime = time.Since(start)
	return s, nil
}

// fleetBin is the name a program of the fleet is built under here:
// s3fleet-enqueue and s3fleet-worker, as `make install` names them (and
// none another program on the machine would take for its own "worker").
func fleetBin(name string) string { return "s3fleet-" + name }

// goBuildAs builds one package into the file out.
func goBuildAs(ctx context.Context, dir, out, pkg string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}

func lookPath(p string) (string, error) {
	if strings.ContainsRune(p, filepath.Separator) {
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	path, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("%s not found", p)
	}
	return path, nil
}

// findScripts catalogues the Lua scripts of the product and of asynq.
func (s *scaleSuite) findScripts() error {
	asynqDir, err := moduleDir(s.opt.s3fleetSrc, "github.com/hibiken/asynq")
	if err != nil {
		return err
	}
	s.scripts, err = findScripts(map[string]string{s.opt.s3fleetSrc: "", filepath.Join(asynqDir, "internal"): "asynq"})
	if err != nil {
		return err
	}
	n := map[string]int{}
	for _, sc := range s.scripts {
		n[sc.origin]++
	}
	s.log.Info("Lua scripts found", "by_origin", n)
	return nil
}

// scaleDest picks the directory the runs write under: -dest, or one on
// /dev/shm when it is a tmpfs with room for a run's output (twice the
// larger workload), else under the temporary directory.
func scaleDest(o scaleOptions, tmp string) (dir, note string, err error) {
	if o.dest != "" {
		if err := os.MkdirAll(o.dest, 0o755); err != nil {
			return "", "", err
		}
		dir, err := os.MkdirTemp(o.dest, "s3fleet-scale-")
		return dir, "a directory under " + o.dest + " (-dest)", err
	}
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	need := 2 * max(o.bigSize, int64(o.smallCount)*o.smallSize)
	if syscall.Statfs("/dev/shm", &st) == nil && st.Type == tmpfsMagic && int64(st.Bavail)*st.Bsize > need {
		dir, err := os.MkdirTemp("/dev/shm", "s3fleet-scale-")
		return dir, "a directory on the tmpfs /dev/shm, which every namespace sees (the namespaces share the machine's " +
			"filesystem): it stands for the shared filesystem a fleet's downloads need, with no disk under it", err
	}
	dir = filepath.Join(tmp, "dest")
	return dir, "a directory on the machine's disk, which every namespace sees (/dev/shm had no room)", os.MkdirAll(dir, 0o755)
}

// timeFallocate times the preallocation of size bytes in a file under
// dir, as a worker's first chunk of an object does before any chunk of it
// lands: on a tmpfs it allocates and zeroes the memory.
func timeFallocate(dir string, size int64) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fallocate-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	start := time.Now()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return 0, nil // unsupported: the worker only sets the size
	}
	return time.Since(start), nil
}

// startServers starts redis-server on loopback (the suite's own client)
// and on the service address (the hosts), every command in its slow log,
// and versitygw on the service address.
func (s *scaleSuite) startServers(ctx context.Context) error {
	o := s.opt
	redisDir, s3Dir := filepath.Join(s.tmp, "redis"), filepath.Join(s.tmp, "s3")
	for _, d := range []string{redisDir, s3Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	port, err := freePortOn(serviceIP)
	if err != nil {
		return err
	}
	s.redis, err = startProcess(spec{name: "redis-server", bin: o.redisServer, log: filepath.Join(s.tmp, "logs", "redis.log"),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1 " + serviceIP, "--protected-mode", "no",
			"--save", "", "--appendonly", "no", "--dir", redisDir, "--maxmemory-policy", "noeviction"}})
	if err != nil {
		return err
	}
	local := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListen(ctx, s.redis, local); err != nil {
		return err
	}
	s.redisURL = fmt.Sprintf("redis://%s:%d/0", serviceIP, port)
	s.rdb = redis.NewClient(&redis.Options{Addr: local})
	if err := setupSlowLog(ctx, s.rdb); err != nil {
		return err
	}
	if err := s.scripts.load(ctx, s.rdb); err != nil {
		return err
	}
	if info, err := s.rdb.InfoMap(ctx, "server").Result(); err == nil {
		s.redisVersion = info["Server"]["redis_version"]
	}
	if port, err = freePortOn(serviceIP); err != nil {
		return err
	}
	addr := fmt.Sprintf("%s:%d", serviceIP, port)
	s.s3, err = startProcess(spec{name: "versitygw", bin: o.versitygw, log: filepath.Join(s.tmp, "logs", "versitygw.log"),
		args: []string{"--port", addr, "--access", accessKey, "--secret", secretKey, "--keep-alive", "--quiet", "posix", s3Dir}})
	if err != nil {
		return err
	}
	if err := waitListen(ctx, s.s3, addr); err != nil {
		return err
	}
	s.endpoint = "http://" + addr
	return nil
}

// freePortOn returns a port nobody listens on at ip right now.
func freePortOn(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *scaleSuite) close() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range []*process{s.s3, s.redis} {
		if p != nil {
			_ = p.stop(5 * time.Second)
		}
	}
	s.net.teardown()
	if s.dest != "" {
		os.RemoveAll(s.dest)
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

// env is what every process of the fleet gets.
func (s *scaleSuite) env() []string {
	return append(cleanEnv(), "S3FLEET_REDIS="+s.redisURL, "S3FLEET_ENDPOINT="+s.endpoint,
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region, "S3FLEET_LOG_LEVEL=warn")
}

// runAll runs every number of hosts in turn: the fleet started afresh
// (fleet.start), the idle spell (at the fewest and the most hosts), then
// the runs, the workloads alternating. A run that a worker's death broke
// (another program killed it, say) is run again once on a fleet started
// afresh.
func (s *scaleSuite) runAll(ctx context.Context) error {
	o := s.opt
	for _, n := range o.hosts {
		workers, err := s.startFleet(ctx, n)
		if err != nil {
			s.stopWorkers(workers)
			return err
		}
		if o.idle > 0 && (n == o.hosts[0] || n == o.maxHosts()) {
			idle := s.measureIdle(ctx, n, workers)
			s.idles = append(s.idles, idle)
			if idle.err != nil {
				s.log.Error("idle spell", "hosts", n, "err", idle.err)
			} else {
				s.log.Info("idle", "hosts", n, "calls_per_s_per_worker", fmt.Sprintf("%.0f", float64(idle.cost.calls.total(byWorkers))/idle.elapsed.Seconds()/float64(n)))
			}
		}
		for r := 1; r <= o.runs && ctx.Err() == nil; r++ {
			for _, w := range []*workload{s.big, s.small} {
				for try := 1; ; try++ {
					res := s.runOne(ctx, n, w, r, workers)
					s.samples = append(s.samples, res)
					if res.err == nil {
						s.log.Info("run", "hosts", n, "workload", w.id, "run", r, "s", fmt.Sprintf("%.2f", res.elapsed.Seconds()),
							"MB/s", fmt.Sprintf("%.1f", float64(w.total)/1e6/res.elapsed.Seconds()),
							"fleet_cores", fmt.Sprintf("%.2f", res.fleetCPU().Seconds()/res.elapsed.Seconds()),
							"versitygw_cores", fmt.Sprintf("%.2f", res.cpuServer.Seconds()/res.elapsed.Seconds()),
							"machine_cores", fmt.Sprintf("%.2f", res.busy.Seconds()/res.elapsed.Seconds()),
							"redis_calls", res.cost.calls.total(""), "elapsed", time.Since(s.started).Round(time.Second))
						break
					}
					s.log.Error("run failed", "hosts", n, "workload", w.id, "run", r, "err", res.err)
					if ctx.Err() != nil {
						break
					}
					// A failed run may leave its job running: the next one
					// gets a fleet started afresh, Redis emptied.
					s.stopWorkers(workers)
					if workers, err = s.startFleet(ctx, n); err != nil {
						s.stopWorkers(workers)
						return err
					}
					if !errors.Is(res.err, errWorkerDied) || try > 1 {
						break
					}
				}
			}
		}
		s.stopWorkers(workers)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// errWorkerDied marks a run during which a worker exited.
var errWorkerDied = errors.New("a worker exited during the run")

// startFleet empties Redis, starts a worker in each of the first n hosts,
// waits until all have registered with asynq, and lets them settle.
func (s *scaleSuite) startFleet(ctx context.Context, n int) ([]*process, error) {
	if err := s.rdb.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("flush redis: %w", err)
	}
	workers, err := s.startWorkers(ctx, n)
	if err != nil {
		return workers, err
	}
	select {
	case <-ctx.Done():
		return workers, ctx.Err()
	case <-time.After(s.opt.settle):
	}
	return workers, nil
}

// stopWorkers stops the workers, all at once.
func (s *scaleSuite) stopWorkers(workers []*process) {
	for _, w := range workers {
		w.terminate()
	}
	for _, w := range workers {
		if err := w.stop(gracefulStop); err != nil {
			s.log.Warn("a worker did not stop cleanly", "worker", w.name, "err", err)
		}
	}
}

// startWorkers starts one worker in each of the first n hosts and waits
// until all have registered with asynq.
func (s *scaleSuite) startWorkers(ctx context.Context, n int) ([]*process, error) {
	var workers []*process
	for _, h := range s.net.hosts[:n] {
		env := append(s.env(), "S3FLEET_HOST="+h.name, "S3FLEET_ALLOW_DEST="+s.dest,
			"S3FLEET_CONCURRENCY="+strconv.Itoa(s.opt.concurrency))
		w, err := startProcess(h.in(spec{name: "worker " + h.name, bin: s.opt.bin(fleetBin("worker")), env: env, dir: s.tmp,
			log: filepath.Join(s.tmp, "logs", fmt.Sprintf("n%d-worker-%s.log", n, h.name))}))
		if err != nil {
			return workers, err
		}
		workers = append(workers, w)
	}
	return workers, (&servers{rdb: s.rdb}).waitRegistered(ctx, workers, 30*time.Second)
}

// measureIdle measures the idle fleet for the idle spell.
func (s *scaleSuite) measureIdle(ctx context.Context, n int, workers []*process) (res idleSample) {
	res.hosts = n
	watched := append([]*process{s.redis}, workers...)
	before, err := cpuTimes(watched)
	if err != nil {
		res.err = err
		return res
	}
	m, err := startMeter(ctx, s.rdb, s.scripts)
	if err != nil {
		res.err = err
		return res
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		res.err = ctx.Err()
		return res
	case <-time.After(s.opt.idle):
	}
	res.cost, res.err = m.stop(ctx)
	res.elapsed = time.Since(start)
	after, err := cpuTimes(watched)
	if err != nil {
		res.err = errors.Join(res.err, err)
		return res
	}
	res.cpuRedis = after[0].sub(before[0]).total()
	for i := 1; i < len(after); i++ {
		res.cpuWorkers += after[i].sub(before[i]).total()
	}
	return res
}

// runOne downloads a workload with the first n hosts' workers: the
// enqueue, in the control host, from its start to its exit with --wait;
// then every file is checked and removed.
func (s *scaleSuite) runOne(ctx context.Context, n int, w *workload, run int, workers []*process) (res scaleSample) {
	res.hosts, res.workload, res.run = n, w.id, run
	out := filepath.Join(s.dest, fmt.Sprintf("n%d-%s-r%d", n, w.id, run))
	if err := os.MkdirAll(out, 0o755); err != nil {
		res.err = err
		return res
	}
	defer os.RemoveAll(out)
	src, dst := "s3://"+bucket+"/"+w.key, filepath.Join(out, w.rel(w.key))
	if !w.single() {
		src, dst = "s3://"+bucket+"/"+w.prefix, out+"/"
	}
	runCtx, cancel := context.WithTimeout(ctx, s.opt.runTimeout)
	defer cancel()
	sp := s.net.ctl.in(spec{name: "enqueue", bin: s.opt.bin(fleetBin("enqueue")), args: []string{src, dst, "--wait"},
		env: append(s.env(), "S3FLEET_CHUNK_SIZE="+strconv.FormatInt(s.opt.chunk, 10)), dir: s.tmp,
		log: filepath.Join(s.tmp, "logs", fmt.Sprintf("n%d-%s-r%d-enqueue.log", n, w.id, run))})
	cmd, logf, err := sp.command()
	if err != nil {
		res.err = err
		return res
	}
	defer logf.Close()

	// A worker that exits breaks the run: the enqueue is stopped.
	runCtx, cancelRun := context.WithCancelCause(runCtx)
	defer cancelRun(nil)
	for _, wk := range workers {
		go func() {
			select {
			case <-wk.done:
				cancelRun(fmt.Errorf("%w: %s: %v%s", errWorkerDied, wk.name, wk.err, wk.logTail()))
			case <-runCtx.Done():
			}
		}()
	}

	hosts := s.net.hosts[:n]
	watched := append([]*process{s.redis, s.s3}, workers...)
	cpuBefore, err := cpuTimes(watched)
	if err != nil {
		res.err = err
		return res
	}
	linkBefore, err := linkBytes(hosts)
	if err != nil {
		res.err = err
		return res
	}
	m, err := startMeter(ctx, s.rdb, s.scripts)
	if err != nil {
		res.err = err
		return res
	}
	busy, steal := busyCPU()
	stopOnCancel := context.AfterFunc(runCtx, func() { _ = cmd.Process.Signal(os.Interrupt) })
	start := time.Now()
	sampler := sampleLinks(hosts, start)
	if err = cmd.Start(); err == nil {
		err = cmd.Wait()
	}
	res.elapsed = time.Since(start)
	busyAfter, stealAfter := busyCPU()
	stopOnCancel()
	res.firstData, res.lastData = sampler.finish()
	res.busy, res.steal = busyAfter-busy, stealAfter-steal
	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errWorkerDied):
		res.err = cause
		return res
	case errors.Is(cause, context.DeadlineExceeded) && ctx.Err() == nil:
		res.err = fmt.Errorf("not done after %s (-run-timeout)%s%s", s.opt.runTimeout, logTail("enqueue", sp.log), logTails(workers))
		return res
	}
	if err != nil {
		res.err = fmt.Errorf("enqueue: %w%s%s", err, logTail("enqueue", sp.log), logTails(workers))
		return res
	}
	if res.cost, err = m.stop(ctx); err != nil {
		res.err = err
		return res
	}
	cpuAfter, err := cpuTimes(watched)
	if err != nil {
		res.err = err
		return res
	}
	res.cpuRedis = cpuAfter[0].sub(cpuBefore[0]).total()
	res.cpuServer = cpuAfter[1].sub(cpuBefore[1]).total()
	for i := 2; i < len(cpuAfter); i++ {
		res.cpuWorkers += cpuAfter[i].sub(cpuBefore[i]).total()
	}
	res.cpuEnqueue = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	linkAfter, err := linkBytes(hosts)
	if err != nil {
		res.err = err
		return res
	}
	for i := range hosts {
		res.link = append(res.link, linkAfter[i]-linkBefore[i])
	}
	if err := w.verify(out); err != nil {
		res.err = fmt.Errorf("wrong output: %w", err)
	}
	return res
}
