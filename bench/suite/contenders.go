package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The groups of contenders: s3fleet, the tools people would use instead,
// and the ceiling.
const (
	groupFleet   = "s3fleet"
	groupPeer    = "peer"
	groupCeiling = "ceiling"
)

// contender is one way of downloading a workload. A new one (s3fleet's
// --local mode, another tool) is one more entry in contenders().
type contender struct {
	name  string
	group string
	// fleet: an s3fleet run, with workers started and idle before the
	// clock; else cmd: one command, timed from its start to its exit.
	fleet *fleetSpec
	cmd   func(e runEnv) (bin string, args, env []string)
	// discard: writes no file; only the byte count it prints is checked.
	discard bool
	// tree: a process pool, whose children's peak RSS is sampled.
	tree bool
}

// fleetSpec is how an s3fleet contender runs.
type fleetSpec struct {
	workers     int
	workerArgs  []string
	enqueueArgs []string // after SRC DEST --wait
}

// runEnv is what a contender's command line depends on.
type runEnv struct {
	endpoint string
	w        *workload
	out      string // an empty directory for the run's output
}

// single reports whether the run downloads one key rather than a prefix.
func (e runEnv) single() bool { return e.w.single() }

// contenders lists every contender the suite knows, in the order they run.
func contenders(o options) []*contender {
	var cs []*contender
	for _, n := range o.fleetWorkers {
		cs = append(cs, &contender{
			name: fmt.Sprintf("s3fleet %dw", n), group: groupFleet,
			fleet: &fleetSpec{workers: n, workerArgs: o.fleetWorkerArgs},
		})
	}
	s5 := func(name string, flags ...string) *contender {
		return &contender{name: name, group: groupPeer, cmd: func(e runEnv) (string, []string, []string) {
			args := append([]string{"--endpoint-url", e.endpoint, "cp"}, flags...)
			if e.single() {
				args = append(args, "s3://"+bucket+"/"+e.w.key, filepath.Join(e.out, e.w.rel(e.w.key)))
			} else {
				args = append(args, "s3://"+bucket+"/"+e.w.prefix+"*", e.out+"/")
			}
			return o.s5cmd, args, nil
		}}
	}
	cs = append(cs, s5("s5cmd"), s5("s5cmd -c8 -p8", "-c", "8", "-p", "8"))

	goTool := func(name, bin string, flags ...string) *contender {
		return &contender{name: name, group: groupPeer, cmd: func(e runEnv) (string, []string, []string) {
			args := []string{"-endpoint", e.endpoint, "-bucket", bucket}
			if e.single() {
				args = append(args, "-key", e.w.key, "-out", filepath.Join(e.out, e.w.rel(e.w.key)))
			} else {
				args = append(args, "-prefix", e.w.prefix, "-out", e.out)
			}
			return bin, append(args, flags...), nil
		}}
	}
	cs = append(cs,
		goTool("sdk manager", o.bin("sdkdownload")),
		goTool("sdk manager tuned", o.bin("sdkdownload"), "-tuned"),
	)

	py := func(name, script string, tree bool) *contender {
		return &contender{name: name, group: groupPeer, tree: tree, cmd: func(e runEnv) (string, []string, []string) {
			args := []string{filepath.Join(o.suiteDir, "python", script), "--endpoint", e.endpoint, "--bucket", bucket}
			if e.single() {
				args = append(args, "--key", e.w.key, "--out", filepath.Join(e.out, e.w.rel(e.w.key)))
			} else {
				args = append(args, "--prefix", e.w.prefix, "--out", e.out)
			}
			return o.python, args, nil
		}}
	}
	cs = append(cs, py("s3transfer pp", "s3transfer_pp.py", true), py("boto3", "boto3_download.py", false))

	cs = append(cs, &contender{name: "rclone", group: groupPeer, cmd: func(e runEnv) (string, []string, []string) {
		// A remote from the environment alone, no config file.
		env := []string{
			"RCLONE_CONFIG=" + os.DevNull,
			"RCLONE_CONFIG_S3BENCH_TYPE=s3", "RCLONE_CONFIG_S3BENCH_PROVIDER=Other",
			"RCLONE_CONFIG_S3BENCH_ENDPOINT=" + e.endpoint, "RCLONE_CONFIG_S3BENCH_REGION=" + region,
			"RCLONE_CONFIG_S3BENCH_ACCESS_KEY_ID=" + accessKey, "RCLONE_CONFIG_S3BENCH_SECRET_ACCESS_KEY=" + secretKey,
			"RCLONE_CONFIG_S3BENCH_FORCE_PATH_STYLE=true",
		}
		streams := []string{"--multi-thread-streams", strconv.Itoa(o.rcloneStreams)}
		if e.single() {
			return o.rclone, append([]string{"copyto", "s3bench:" + bucket + "/" + e.w.key, filepath.Join(e.out, e.w.rel(e.w.key))}, streams...), env
		}
		return o.rclone, append([]string{"copy", "s3bench:" + bucket + "/" + strings.TrimSuffix(e.w.prefix, "/"), e.out}, streams...), env
	}})

	cs = append(cs, goTool("plain loop", o.bin("plainget")))
	ceiling := goTool("ceiling", o.bin("plainget"), "-discard")
	ceiling.group, ceiling.discard = groupCeiling, true
	cs = append(cs, ceiling)
	return cs
}

// selectContenders keeps those whose name matches the pattern.
func selectContenders(all []*contender, pattern string) ([]*contender, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("-contenders: %w", err)
	}
	var out []*contender
	for _, c := range all {
		if re.MatchString(c.name) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-contenders %q matches none of the contenders", pattern)
	}
	return out, nil
}

// describe is the contender's command line for the report, with
// placeholders for the endpoint and the output directory.
func (c *contender) describe(o options, w *workload) string {
	e := runEnv{endpoint: "$ENDPOINT", w: w, out: "$OUT"}
	if c.fleet != nil {
		src, dst := fleetArgs(e)
		return fmt.Sprintf("%d × `worker%s` (idle before the clock; S3FLEET_FLUSH=sync durable, none scratch), then `enqueue %s %s --wait%s`",
			c.fleet.workers, joinArgs(c.fleet.workerArgs), src, dst, joinArgs(c.fleet.enqueueArgs))
	}
	bin, args, env := c.cmd(e)
	var b strings.Builder
	for _, kv := range env {
		if strings.HasPrefix(kv, "RCLONE_CONFIG_S3BENCH_") && !strings.Contains(kv, "_TYPE=") &&
			!strings.Contains(kv, "_PROVIDER=") && !strings.Contains(kv, "_PATH_STYLE=") {
			continue
		}
		b.WriteString(kv + " ")
	}
	for i, a := range args {
		if strings.HasPrefix(a, o.suiteDir+"/") {
			args[i] = strings.TrimPrefix(a, o.suiteDir+"/")
		}
	}
	fmt.Fprintf(&b, "%s%s", shortBin(bin), joinArgs(args))
	return "`" + b.String() + "`"
}

func shortBin(bin string) string {
	switch base := filepath.Base(bin); {
	case strings.HasPrefix(base, "s5cmd"):
		return "s5cmd"
	default:
		if strings.HasPrefix(bin, "/usr/bin/") {
			return bin
		}
		return base
	}
}

func joinArgs(args []string) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " *") {
			a = "'" + a + "'"
		}
		b.WriteString(a)
	}
	return b.String()
}

// fleetArgs are enqueue's SRC and DEST.
func fleetArgs(e runEnv) (src, dst string) {
	if e.single() {
		return "s3://" + bucket + "/" + e.w.key, filepath.Join(e.out, e.w.rel(e.w.key))
	}
	return "s3://" + bucket + "/" + e.w.prefix, e.out + "/"
}

// sample is one run of one contender.
type sample struct {
	cell       string
	contender  string
	run        int
	elapsed    time.Duration // the clock
	cpu        cpuUse        // the contender's processes (s3fleet: workers, enqueue, Redis)
	serverCPU  time.Duration // versitygw, and wanproxy on the WAN
	kthreadCPU time.Duration // kernel threads (writeback, the journal, …) while the clock ran
	otherCPU   time.Duration // the rest of the machine's busy time: other programs disturbing the run
	rssMax     int64         // the largest peak RSS of one of its processes
	rssSum     int64         // the sum of its processes' peaks
	procs      int
	// s3fleet: the peak RSS of its largest worker, of the enqueue and of
	// Redis, for the memory targets.
	rssWorker, rssEnqueue, rssRedis int64
	warnings                        int // s3fleet: lines the workers logged at warn level or above during the run
	err                             error
}

// gracefulStop is how long a worker may take to stop after SIGTERM: more
// than its shutdown timeout (30 s), though an idle worker stops at once.
const gracefulStop = 45 * time.Second

// runFleet is one s3fleet run: Redis emptied, the workers started and
// registered, sync, then the clock around `enqueue SRC DEST --wait`.
func (s *suite) runFleet(ctx context.Context, c *contender, cl cell, out, logPrefix string, beforeClock func()) (res sample, err error) {
	if err := s.srv.rdb.FlushDB(ctx).Err(); err != nil {
		return res, fmt.Errorf("flush redis: %w", err)
	}
	e := runEnv{endpoint: s.srv.endpointFor(cl.net), w: cl.w, out: out}
	flush := "sync"
	if cl.mode == modeScratch {
		flush = "none"
	}
	env := append(cleanEnv(),
		"S3FLEET_REDIS=redis://"+s.srv.redisAddr+"/0", "S3FLEET_ENDPOINT="+e.endpoint,
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region, "S3FLEET_LOG_LEVEL=warn")
	workers := make([]*process, 0, c.fleet.workers)
	defer func() {
		for _, w := range workers {
			_ = w.stop(gracefulStop) // no-op for workers already stopped
		}
	}()
	for i := range c.fleet.workers {
		w, err := startProcess(spec{
			name: fmt.Sprintf("worker %d", i+1), bin: s.opt.bin("worker"), args: c.fleet.workerArgs,
			env: append(env, "S3FLEET_FLUSH="+flush), dir: s.tmp,
			log: fmt.Sprintf("%s-worker%d.log", logPrefix, i+1),
		})
		if err != nil {
			return res, err
		}
		workers = append(workers, w)
	}
	if err := s.srv.waitRegistered(ctx, workers, 30*time.Second); err != nil {
		return res, err
	}
	// What the workers log at start-up (warnings about their settings) is
	// not counted.
	startLogs := map[*process]int64{}
	for _, w := range workers {
		if fi, err := os.Stat(w.logPath); err == nil {
			startLogs[w] = fi.Size()
		}
	}
	beforeClock()
	syscall.Sync()
	_ = resetPeakRSS(s.srv.redis.pid())

	watched := append([]*process{s.srv.redis}, workers...)
	servers := s.srv.serverProcs(cl.net)
	before, err := cpuTimes(append(watched, servers...))
	if err != nil {
		return res, err
	}
	snap, self := machineSnapshot(), selfCPU()
	src, dst := fleetArgs(e)
	enqSpec := spec{name: "enqueue", bin: s.opt.bin("enqueue"), args: append([]string{src, dst, "--wait"}, c.fleet.enqueueArgs...),
		env: env, dir: s.tmp, log: logPrefix + "-enqueue.log"}
	enq, logf, err := enqSpec.command()
	if err != nil {
		return res, err
	}
	stopOnCancel := context.AfterFunc(ctx, func() { _ = enq.Process.Signal(os.Interrupt) })
	start := time.Now()
	err = enq.Start()
	if err == nil {
		err = enq.Wait()
	}
	res.elapsed = time.Since(start)
	snapAfter, selfAfter := machineSnapshot(), selfCPU()
	stopOnCancel()
	logf.Close()
	if err != nil {
		return res, fmt.Errorf("enqueue: %w%s%s", err, logTail("enqueue", enqSpec.log), logTails(workers))
	}
	after, err := cpuTimes(append(watched, servers...))
	if err != nil {
		return res, fmt.Errorf("%w%s", err, logTails(workers))
	}
	for i := range watched {
		res.cpu = res.cpu.add(after[i].sub(before[i]))
	}
	for i := len(watched); i < len(after); i++ {
		res.serverCPU += after[i].sub(before[i]).total()
	}
	res.cpu = res.cpu.add(cpuUse{enq.ProcessState.UserTime(), enq.ProcessState.SystemTime()})
	res.kthreadCPU, res.otherCPU = disturbance(snap, snapAfter, res.cpu.total()+res.serverCPU, selfAfter-self)
	enqRSS := enq.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	res.rssMax, res.rssSum, res.procs = enqRSS, enqRSS, 1
	res.rssEnqueue = enqRSS
	for i, p := range watched {
		hwm, err := peakRSS(p.pid())
		if err != nil {
			return res, fmt.Errorf("%s: %w", p.name, err)
		}
		res.rssMax = max(res.rssMax, hwm)
		res.rssSum += hwm
		res.procs++
		if i == 0 {
			res.rssRedis = hwm // watched[0] is Redis
		} else {
			res.rssWorker = max(res.rssWorker, hwm)
		}
	}
	for _, w := range workers {
		w.terminate() // all at once; then wait for each
	}
	for _, w := range workers {
		if err := w.stop(gracefulStop); err != nil {
			return res, fmt.Errorf("%s did not stop cleanly: %w%s", w.name, err, w.logTail())
		}
		if b, err := os.ReadFile(w.logPath); err == nil && int64(len(b)) > startLogs[w] {
			res.warnings += strings.Count(string(b[startLogs[w]:]), "\n")
		}
	}
	return res, nil
}

func logTails(ps []*process) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.logTail())
	}
	return b.String()
}

// runCommand is one run of a peer or the ceiling: sync, then the clock
// around the command (and, durable, a sync after it).
func (s *suite) runCommand(ctx context.Context, c *contender, cl cell, out, logPrefix string, beforeClock func()) (res sample, err error) {
	e := runEnv{endpoint: s.srv.endpointFor(cl.net), w: cl.w, out: out}
	bin, args, extraEnv := c.cmd(e)
	sp := spec{name: c.name, bin: bin, args: args, env: append(cleanEnv(), extraEnv...), dir: s.tmp, log: logPrefix + ".log"}
	cmd, logf, err := sp.command()
	if err != nil {
		return res, err
	}
	servers := s.srv.serverProcs(cl.net)
	beforeClock()
	syscall.Sync()
	before, err := cpuTimes(servers)
	if err != nil {
		return res, err
	}
	snap, self := machineSnapshot(), selfCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return res, fmt.Errorf("start %s: %w", c.name, err)
	}
	// The whole process group goes on Ctrl-C or at the time limit.
	stopOnCancel := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var tree *treeSampler
	if c.tree {
		tree = sampleTree(cmd.Process.Pid, 100*time.Millisecond)
	}
	err = cmd.Wait()
	if err == nil && cl.mode == modeDurable {
		syscall.Sync()
	}
	res.elapsed = time.Since(start)
	snapAfter, selfAfter := machineSnapshot(), selfCPU()
	stopOnCancel()
	logf.Close()
	if tree != nil {
		res.rssMax, res.rssSum, res.procs = tree.finish()
	}
	if err != nil {
		return res, fmt.Errorf("%s: %w%s", c.name, err, logTail(c.name, sp.log))
	}
	after, err := cpuTimes(servers)
	if err != nil {
		return res, err
	}
	for i := range after {
		res.serverCPU += after[i].sub(before[i]).total()
	}
	// The rusage of a reaped child covers its own reaped children too.
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	res.cpu = cpuUse{cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()}
	res.kthreadCPU, res.otherCPU = disturbance(snap, snapAfter, res.cpu.total()+res.serverCPU, selfAfter-self)
	if rss := ru.Maxrss << 10; rss > res.rssMax {
		res.rssMax = rss
	}
	if res.procs == 0 {
		res.rssSum, res.procs = res.rssMax, 1
	}
	if c.discard {
		return res, checkByteCount(sp.log, cl.w)
	}
	return res, nil
}

// checkByteCount checks the ceiling's report of what it received.
func checkByteCount(logPath string, w *workload) error {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	var objs, n int64
	for line := range strings.Lines(string(b)) {
		if _, err := fmt.Sscanf(line, "plainget: %d objects, %d bytes", &objs, &n); err == nil {
			if objs != int64(len(w.objects)) || n != w.total {
				return fmt.Errorf("received %d objects, %d bytes; want %d, %d", objs, n, len(w.objects), w.total)
			}
			return nil
		}
	}
	return fmt.Errorf("no byte count in %s", logPath)
}
