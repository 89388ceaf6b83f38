// Command bench measures the whole s3fleet pipeline, for `make bench`: how
// fast 1, 2 and 4 worker processes download one large object, and at what
// cost in CPU time and memory.
//
// It starts its own redis-server and versitygw S3 server (POSIX backend) on
// free loopback ports, builds cmd/enqueue and cmd/worker once, and uploads
// one object of random bytes (-size, 1 GiB by default) to s3://bench/big.bin
// with a CRC32C, so that the fleet's full-object check runs as it does in
// production. Everything lives in a temporary directory on the local disk
// and is removed at the end.
//
// One unmeasured warm-up download comes first (-warmup): the first GiB a
// process writes after a quiet spell can cost seconds of system time when
// the kernel (or, in a VM, the host) has to find it fresh memory for the
// page cache. Then the runs alternate between the worker counts (1, 2, 4,
// 1, 2, 4, …) so that a slow spell of the machine does not land on one
// count only.
//
// Each run starts N worker processes, waits until every one of them has
// registered with asynq in Redis (so all poll an empty queue), runs sync(1)
// so that an earlier run's dirty pages are not written back during this
// one, then starts the clock and runs
//
//	enqueue s3://bench/big.bin OUT/big.bin --wait --job bench-N-RUN
//
// and stops the clock when it exits, which must be with 0. The clock so
// covers what a user waits for: the HEAD, the chunk tasks, every ranged GET
// and its write (each chunk fsynced with -flush sync), the assembly (CRC32C
// check, fsync, rename) and the enqueue's own polling of the job. The object
// sits in the page cache of the S3 server, so the disk's read speed is not
// part of the figure; its write speed is.
//
// The ledger's own figure, from the job's creation to the object's end, is
// reported next to the clock: it leaves out the enqueue's start-up and the
// up to 50 ms its --wait polling adds.
//
// CPU time is the user+system time the workers, the enqueue, and the two
// servers spent while the clock ran, from /proc/PID/stat (the enqueue's from
// its rusage). Peak RSS is each worker's VmHWM, read before it is stopped.
// After every run the output's SHA-256 must equal the uploaded bytes'.
//
// The results go to stdout and to bench/results-pipeline.md (-out).
//
//	go run ./bench                       # 1 GiB, 1/2/4 workers, 3 runs each
//	go run ./bench -size 256MiB -runs 1  # a quick check
//	go run ./bench -flush none           # scratch mode: no fsync per chunk
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/ledger"
)

const (
	bucket = "bench"
	key    = "big.bin"

	// The S3 server's root user; the bench is its only client.
	accessKey = "s3fleet-bench-access"
	secretKey = "s3fleet-bench-secret-0123456789"
	region    = "us-east-1"

	// resultsFile is where the report lands by default, relative to the
	// repository.
	resultsFile = "bench/results-pipeline.md"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	size        int64
	sizeText    string // -size as given
	workers     []int
	runs        int
	warmup      int
	concurrency int
	flush       string
	chunkSize   string // empty: the fleet's default
	out         string // report file, relative to the repository
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	size := fs.String("size", "1GiB", "size of the object downloaded (1GiB, 256MiB, …)")
	workers := fs.String("workers", "1,2,4", "comma-separated numbers of worker processes to compare")
	runs := fs.Int("runs", 3, "runs per number of workers")
	warmup := fs.Int("warmup", 1, "unmeasured downloads before the runs")
	concurrency := fs.Int("concurrency", 8, "chunk tasks each worker runs at once (--concurrency)")
	flush := fs.String("flush", "sync", "the workers' S3FLEET_FLUSH: sync, or none for scratch mode")
	chunkSize := fs.String("chunk-size", "", "the enqueue's S3FLEET_CHUNK_SIZE (default: the fleet's default)")
	out := fs.String("out", resultsFile, "where the report is written, relative to the repository")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	o := options{sizeText: *size, runs: *runs, warmup: *warmup, concurrency: *concurrency, flush: *flush, chunkSize: *chunkSize, out: *out}
	n, err := humanize.ParseBytes(*size)
	if err != nil || n == 0 || n > 1<<50 {
		return options{}, fmt.Errorf("-size: want a positive size such as 1GiB, got %q", *size)
	}
	o.size = int64(n)
	for f := range strings.SplitSeq(*workers, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 1 {
			return options{}, fmt.Errorf("-workers: want positive numbers such as 1,2,4, got %q", *workers)
		}
		o.workers = append(o.workers, w)
	}
	if o.runs < 1 {
		return options{}, fmt.Errorf("-runs: must be at least 1, got %d", o.runs)
	}
	if o.warmup < 0 {
		return options{}, fmt.Errorf("-warmup: must not be negative, got %d", o.warmup)
	}
	if o.concurrency < 1 {
		return options{}, fmt.Errorf("-concurrency: must be at least 1, got %d", o.concurrency)
	}
	if o.flush != "sync" && o.flush != "none" {
		return options{}, fmt.Errorf("-flush: want sync or none, got %q", o.flush)
	}
	if o.chunkSize != "" {
		if n, err := humanize.ParseBytes(o.chunkSize); err != nil || n == 0 {
			return options{}, fmt.Errorf("-chunk-size: want a positive size such as 16MiB, got %q", o.chunkSize)
		}
	}
	return o, nil
}

// chunkSizeText describes the chunk size the runs use.
func (o options) chunkSizeText() string {
	if o.chunkSize == "" {
		return config.Defaults().ChunkSize.String() + " (fleet default)"
	}
	return o.chunkSize
}

func run(ctx context.Context, args []string) error {
	opt, err := parseFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "s3fleet-bench-")
	if err != nil {
		return fmt.Errorf("make a temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	binDir := filepath.Join(tmp, "bin")
	log.Info("building enqueue and worker", "dir", binDir)
	if err := buildBinaries(ctx, root, binDir); err != nil {
		return err
	}

	srv, err := startServers(ctx, root, tmp, log)
	if err != nil {
		return err
	}
	defer srv.stop()

	log.Info("uploading", "object", fmt.Sprintf("s3://%s/%s", bucket, key), "size", humanize.IBytes(uint64(opt.size)))
	sum, err := srv.upload(ctx, filepath.Join(tmp, "src"), opt.size)
	if err != nil {
		return err
	}

	b := &bench{opt: opt, srv: srv, bin: binDir, tmp: tmp, sum: sum, log: log}
	for i := 1; i <= opt.warmup; i++ {
		n := opt.workers[0]
		res, err := b.measure(ctx, n, fmt.Sprintf("bench-warmup-%d", i))
		if err != nil {
			return fmt.Errorf("warm-up with %d workers: %w", n, err)
		}
		log.Info("warm-up done", "workers", n, "seconds", fmt.Sprintf("%.2f", res.elapsed.Seconds()))
	}
	var results []result
	for r := 1; r <= opt.runs; r++ {
		for _, n := range opt.workers {
			res, err := b.measure(ctx, n, fmt.Sprintf("bench-%d-%d", n, r))
			if err != nil {
				return fmt.Errorf("run %d with %d workers: %w", r, n, err)
			}
			res.run = r
			log.Info("run done", "workers", n, "run", r, "seconds", fmt.Sprintf("%.2f", res.elapsed.Seconds()),
				"MB/s", fmt.Sprintf("%.0f", res.mbps(opt.size)), "fleet_seconds", fmt.Sprintf("%.2f", res.fleet.Seconds()))
			results = append(results, res)
		}
	}

	report := render(describeMachine(), opt, results)
	fmt.Print(report)
	out := filepath.Join(root, filepath.FromSlash(opt.out))
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	log.Info("results written", "file", out)
	return nil
}

// repoRoot is the directory holding go.mod, at or above the working one.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory: run from the repository")
		}
		dir = parent
	}
}

func buildBinaries(ctx context.Context, root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/enqueue", "./cmd/worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/enqueue ./cmd/worker: %w\n%s", err, out)
	}
	return nil
}

// bench runs the measurements against running servers.
type bench struct {
	opt options
	srv *servers
	bin string // directory of the built binaries
	tmp string
	sum []byte // SHA-256 of the object
	log *slog.Logger
}

// result is one run.
type result struct {
	workers, run int
	elapsed      time.Duration // the clock: enqueue --wait from start to exit
	fleet        time.Duration // the ledger's: job created to object finished
	retries      int64         // chunk attempts beyond one per chunk
	workerCPU    time.Duration // all workers, while the clock ran
	enqueueCPU   time.Duration
	serverCPU    time.Duration // redis-server and versitygw, while the clock ran
	peakRSS      int64         // bytes: the largest VmHWM of the run's workers
}

func (r result) mbps(size int64) float64 { return float64(size) / 1e6 / r.elapsed.Seconds() }

// workerGrace is how long a worker may take to stop after SIGTERM: more
// than its shutdown timeout (30s), though an idle worker stops at once.
const workerGrace = 45 * time.Second

// measure downloads the object once with n workers, as job.
func (b *bench) measure(ctx context.Context, n int, job string) (res result, err error) {
	res = result{workers: n}
	outDir := filepath.Join(b.tmp, "out", job)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(outDir)
	logDir := filepath.Join(b.tmp, "logs")

	b.log.Info("starting workers", "workers", n, "job", job)
	env := append(b.srv.env(), "S3FLEET_FLUSH="+b.opt.flush, "S3FLEET_LOG_LEVEL=warn")
	workers := make([]*process, 0, n)
	defer func() {
		for _, w := range workers {
			_ = w.stop(workerGrace) // no-op for workers already stopped
		}
	}()
	for i := range n {
		w, err := startProcess(spec{
			name: fmt.Sprintf("worker %d", i+1), bin: filepath.Join(b.bin, "worker"),
			args: []string{"--concurrency", strconv.Itoa(b.opt.concurrency)},
			env:  env, dir: b.tmp, log: filepath.Join(logDir, fmt.Sprintf("%s-w%d.log", job, i+1)),
		})
		if err != nil {
			return res, err
		}
		workers = append(workers, w)
	}
	if err := b.srv.waitRegistered(ctx, workers, 30*time.Second); err != nil {
		return res, err
	}
	if out, err := exec.CommandContext(ctx, "sync").CombinedOutput(); err != nil {
		return res, fmt.Errorf("sync: %w: %s", err, out)
	}

	watched := append([]*process{b.srv.redis, b.srv.s3}, workers...)
	before, err := cpuTimes(watched)
	if err != nil {
		return res, err
	}
	enqEnv := b.srv.env()
	if b.opt.chunkSize != "" {
		enqEnv = append(enqEnv, "S3FLEET_CHUNK_SIZE="+b.opt.chunkSize)
	}
	enq := exec.CommandContext(ctx, filepath.Join(b.bin, "enqueue"),
		fmt.Sprintf("s3://%s/%s", bucket, key), filepath.Join(outDir, key), "--wait", "--job", job)
	// A directory of its own: no s3fleet.yaml of the caller's applies.
	enq.Env, enq.Dir = enqEnv, b.tmp
	// On Ctrl-C it stops waiting (the job goes on) and exits.
	enq.Cancel = func() error { return enq.Process.Signal(os.Interrupt) }
	enq.WaitDelay = 5 * time.Second
	var enqOut bytes.Buffer
	enq.Stdout, enq.Stderr = &enqOut, &enqOut
	start := time.Now()
	err = enq.Run()
	res.elapsed = time.Since(start)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		return res, fmt.Errorf("enqueue: %w\n%s%s", err, enqOut.String(), logTails(workers))
	}
	after, err := cpuTimes(watched)
	if err != nil {
		return res, fmt.Errorf("%w%s", err, logTails(workers))
	}
	res.enqueueCPU = enq.ProcessState.UserTime() + enq.ProcessState.SystemTime()
	res.serverCPU = after[0] - before[0] + after[1] - before[1]
	for i := 2; i < len(watched); i++ {
		res.workerCPU += after[i] - before[i]
	}
	if err := b.fleetFigures(ctx, job, &res); err != nil {
		return res, err
	}

	for _, w := range workers {
		hwm, err := peakRSS(w.pid())
		if err != nil {
			return res, fmt.Errorf("%s: %w%s", w.name, err, logTails(workers))
		}
		res.peakRSS = max(res.peakRSS, hwm)
	}
	for _, w := range workers {
		w.terminate() // all at once; then wait for each
	}
	for _, w := range workers {
		if err := w.stop(workerGrace); err != nil {
			return res, fmt.Errorf("%s did not stop cleanly: %w%s", w.name, err, w.logTail())
		}
		if tail := w.logTail(); tail != "" {
			b.log.Warn("worker logged warnings or errors", "worker", w.name, "log", tail)
		}
	}

	got, err := fileSHA256(filepath.Join(outDir, key))
	if err != nil {
		return res, fmt.Errorf("read the download: %w", err)
	}
	if !bytes.Equal(got, b.sum) {
		return res, fmt.Errorf("the download's SHA-256 %x differs from the object's %x", got, b.sum)
	}
	return res, nil
}

// logTails is the end of every worker's log, for error messages.
func logTails(ws []*process) string {
	var s strings.Builder
	for _, w := range ws {
		s.WriteString(w.logTail())
	}
	return s.String()
}

// fileSHA256 hashes a file.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// fleetFigures reads from the ledger how long the fleet itself took, from
// the job's creation to its object's end, and how many chunks were retried.
func (b *bench) fleetFigures(ctx context.Context, job string, res *result) error {
	led := ledger.New(b.srv.rdb, time.Hour) // the retention applies to writes only
	j, err := led.GetJob(ctx, job)
	if err != nil {
		return fmt.Errorf("read job %s: %w", job, err)
	}
	var finished int64
	err = led.JobObjects(ctx, job, func(o ledger.JobObject) error {
		if o.JobState != ledger.Success {
			return fmt.Errorf("object %s is %s, not %s: %s", o.Source(), o.JobState, ledger.Success, o.Error)
		}
		finished = max(finished, o.Finished)
		res.retries += o.Attempts - o.Chunks
		return nil
	})
	if err != nil {
		return err
	}
	res.fleet = time.Duration(finished-j.Created) * time.Millisecond
	return nil
}
