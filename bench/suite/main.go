// Command suite is s3fleet's side-by-side benchmark against the tools people
// would use instead, on the same data, the same local S3 server and the
// same machine, in one run (issue 5). run.sh installs what it needs and
// runs it; `run.sh quick` is the 1 GiB comparison with s5cmd alone.
//
// It starts a redis-server and a versitygw S3 server (POSIX backend) on free
// loopback ports, and, for the emulated WAN, wanproxy (wanproxy/, the
// suite's own TCP proxy) in front of versitygw: every response delayed
// (-wan-latency, 20 ms) and each connection capped (-wan-rate, 90 MB/s), as
// S3 behaves from a cloud host. Over HTTPS (networks tls and wan-tls) a
// second versitygw serves the same directory with a self-signed
// certificate every contender trusts (servers.go, tlscert.go), and another
// wanproxy sits in front of it for wan-tls.
// It uploads the workloads' random bytes once, each object with a CRC32C:
//
//   - big:   one 1 GiB object;
//   - small: 10,000 objects of 16 KiB;
//   - mixed: 3 objects of 256 MiB among 2,000 small ones (1–128 KiB).
//
// The contenders (contenders.go; each its own process, timed by the
// suite): s3fleet with 1, 2 and 4 worker processes; s5cmd at its defaults
// and with -c 8 -p 8; aws-sdk-go-v2's manager.Downloader at its defaults and
// tuned (sdkdownload/); s3transfer's ProcessPoolDownloader and boto3's
// download_file (python/, run with Debian's /usr/bin/python3); rclone with
// --multi-thread-streams; the plain loop of 8 goroutines doing 8 MiB ranged
// GETs into the file at their offsets (plainget/); and the ceiling, the same
// loop throwing the bytes away.
//
// Each cell (workload × network × durability) runs every contender in
// turn, -runs times, the order rotating from one run to the next, after one
// unmeasured warm-up download per workload. Before every run the output
// goes to a fresh empty directory and the suite calls sync(2), so no
// earlier run's dirty pages are written back during it. The clock:
//
//   - s3fleet: Redis emptied, the workers started and registered with asynq
//     (idle), then from the start of `enqueue SRC DEST --wait` to its exit.
//     Durable: the workers' default flushing (S3FLEET_FLUSH=sync, each
//     chunk flushed before it is recorded); scratch: S3FLEET_FLUSH=none.
//   - the others: from the command's start to its exit; durable adds a
//     sync(2) inside the clock, scratch does not.
//
// After each run every file's SHA-256 is compared with the uploaded bytes'
// (and no other file may be there): a run that fails this counts as failed,
// not as a time. The ceiling writes nothing; its byte count is checked.
//
// CPU seconds are user+system: for s3fleet, its workers and Redis from
// /proc/PID/stat while the clock ran, plus the enqueue's rusage; for the
// others the command's rusage, which covers its reaped children (the
// process pool). versitygw's and wanproxy's own CPU is reported apart.
// Peak RSS is VmHWM of each process (rusage's maxrss for a command; the
// pool's children sampled every 100 ms from /proc; Redis's reset per run).
//
// The report goes to stdout and -out (Markdown), the chart to -chart (PNG).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "suite:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if isScaleMode(args) {
		return runScale(ctx, args)
	}
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := newSuite(ctx, o, log)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.runAll(ctx); err != nil {
		return err
	}
	if o.listing > 0 {
		log.Info("enqueue of a generated listing", "keys", o.listing)
		s.listing = s.runListing(ctx, o.listing)
		if s.listing.err != nil {
			log.Error("listing", "err", s.listing.err)
		} else {
			log.Info("listing done", "seconds", fmt.Sprintf("%.1f", s.listing.elapsed.Seconds()), "peak_rss_mib", s.listing.rss>>20)
		}
	}
	if o.failover > 0 {
		log.Info("failover: workers killed while they download", "kills", o.failover)
		s.failover = s.runFailover(ctx, o.failover)
		if s.failover.err != nil {
			log.Error("failover", "err", s.failover.err)
		}
	}
	return s.report()
}

// repoRoot is the directory holding the product's go.mod, above the
// suite's module.
func repoRoot(suiteDir string) (string, error) {
	root := filepath.Clean(filepath.Join(suiteDir, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "cmd", "worker")); err != nil {
		return "", errors.New("the suite must be run from bench/suite of the s3fleet repository")
	}
	return root, nil
}
