package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// contender is one tool, or one setting of a tool. A new one (s3fleet's
// --local mode, another tool) is one more entry in contenders(); a new
// direction for a tool is one more entry in its ways.
type contender struct {
	name  string
	group string
	// fleet: an s3fleet run, with workers started and idle before the
	// clock, in every direction; else ways: one command per direction the
	// contender takes, timed from its start to its exit.
	fleet *fleetSpec
	ways  map[string]way
	// tree: a process pool, whose children's peak RSS is sampled.
	tree bool
}

// way is how a contender goes in one direction.
type way struct {
	cmd func(e runEnv) (bin string, args, env []string)
	// count: the run writes no copy of the workload (a ceiling's own
	// bytes, or none at all): only the count it prints is checked, and the
	// names and sizes of what it wrote.
	count bool
	// nothing: it writes nothing at all (the bytes of its GETs are thrown
	// away); an unmeasured ballast file stands in for its output.
	nothing bool
}

// does reports whether the contender goes in the direction.
func (c *contender) does(dir string) bool {
	if c.fleet != nil {
		return true
	}
	_, ok := c.ways[dir]
	return ok
}

// fleetSpec is how an s3fleet contender runs.
type fleetSpec struct {
	workers     int
	workerArgs  []string
	enqueueArgs []string // after SRC DEST --wait
}

// The buckets: the workloads' objects on the first S3 server, and the
// destination of uploads and copies on both.
const (
	dstBucket = "dst"
	// fleetRemote is the second S3 server's name in s3fleet's config.
	fleetRemote = "gw2"
)

// runEnv is what a contender's command line depends on.
type runEnv struct {
	dir      string // the direction
	endpoint string // the S3 server: the source's, or an upload's destination
	// dstEndpoint, dstAccess, dstSecret: the second S3 server (copy).
	dstEndpoint, dstAccess, dstSecret string
	w                                 *workload
	// out: a download's empty directory; else the destination's key
	// prefix in dstBucket, fresh for the run (ends with /).
	out string
	// caFile: over HTTPS, the suite's certificate, which every process of
	// the run also finds in SSL_CERT_FILE and AWS_CA_BUNDLE (cellEnv);
	// "" over plain HTTP.
	caFile string
}

// caCert is rclone's --ca-cert over HTTPS: it trusts the suite's
// certificate alone, whatever the system's CAs; nothing over plain HTTP.
func (e runEnv) caCert() []string {
	if e.caFile == "" {
		return nil
	}
	return []string{"--ca-cert", e.caFile}
}

// rcloneEnv is rclone's environment besides its remotes: no config file,
// and over HTTPS an empty AWS_CA_BUNDLE (the last value of a key is the
// one a process gets). Its S3 backend's aws-sdk-go v1 would load the
// bundle into rclone's own HTTP transport, which it cannot ("LoadCustomCABundleError:
// unable to load custom CA bundle, HTTPClient's transport unsupported
// type ... *fshttp.Transport"), and reads no empty setting; --ca-cert
// gives rclone the certificate instead.
func (e runEnv) rcloneEnv() []string {
	env := []string{"RCLONE_CONFIG=" + os.DevNull}
	if e.caFile != "" {
		env = append(env, "AWS_CA_BUNDLE=")
	}
	return env
}

// single reports whether the run moves one key rather than a prefix.
func (e runEnv) single() bool { return e.w.single() }

// srcURL is the workload's object, or prefix, on the first S3 server.
func (e runEnv) srcURL() string {
	if e.single() {
		return "s3://" + bucket + "/" + e.w.key
	}
	return "s3://" + bucket + "/" + e.w.prefix
}

// srcFile is an upload's local file, or directory (ending with /).
func (e runEnv) srcFile() string {
	if e.single() {
		return filepath.Join(e.w.local, e.w.rel(e.w.key))
	}
	return e.w.local + "/"
}

// dstKey is where the run writes: the object's key, or the prefix.
func (e runEnv) dstKey() string {
	if e.single() {
		return e.out + e.w.relKey(e.w.key)
	}
	return e.out
}

// dstURL is dstKey in dstBucket as an s3:// URL (or another scheme's).
func (e runEnv) dstURL(scheme string) string { return scheme + "://" + dstBucket + "/" + e.dstKey() }

// rcloneRemote is an rclone remote from the environment alone.
func rcloneRemote(name, endpoint, access, secret string) []string {
	p := "RCLONE_CONFIG_" + name + "_"
	return []string{
		p + "TYPE=s3", p + "PROVIDER=Other", p + "ENDPOINT=" + endpoint, p + "REGION=" + region,
		p + "ACCESS_KEY_ID=" + access, p + "SECRET_ACCESS_KEY=" + secret, p + "FORCE_PATH_STYLE=true",
	}
}

// contenders lists every contender the suite knows, in the order they run.
func contenders(o options) []*contender {
	var cs []*contender
	for _, n := range o.fleetWorkers {
		cs = append(cs, &contender{
			name: fmt.Sprintf("s3fleet %dw", n), group: groupFleet,
			fleet: &fleetSpec{workers: n, workerArgs: o.fleetWorkerArgs},
		})
	}
	s5 := func(name string, serverCopy bool, flags ...string) *contender {
		cp := func(e runEnv) []string { return append([]string{"--endpoint-url", e.endpoint, "cp"}, flags...) }
		c := &contender{name: name, group: groupPeer, ways: map[string]way{
			dirDownload: {cmd: func(e runEnv) (string, []string, []string) {
				if e.single() {
					return o.s5cmd, append(cp(e), e.srcURL(), filepath.Join(e.out, e.w.rel(e.w.key))), nil
				}
				return o.s5cmd, append(cp(e), e.srcURL()+"*", e.out+"/"), nil
			}},
			dirUpload: {cmd: func(e runEnv) (string, []string, []string) {
				return o.s5cmd, append(cp(e), e.srcFile(), e.dstURL("s3")), nil
			}},
			dirServerCopy: {cmd: func(e runEnv) (string, []string, []string) {
				if e.single() {
					return o.s5cmd, append(cp(e), e.srcURL(), e.dstURL("s3")), nil
				}
				return o.s5cmd, append(cp(e), e.srcURL()+"*", e.dstURL("s3")), nil
			}},
		}}
		if !serverCopy {
			delete(c.ways, dirServerCopy)
		}
		return c
	}
	// s5cmd copies within a server with one CopyObject per object: its
	// part size and concurrency do not apply.
	cs = append(cs, s5("s5cmd", true), s5("s5cmd -c8 -p8", false, "-c", "8", "-p", "8"))

	goTool := func(bin string, flags ...string) func(e runEnv) (string, []string, []string) {
		return func(e runEnv) (string, []string, []string) {
			args := []string{"-endpoint", e.endpoint, "-bucket", bucket}
			if e.single() {
				args = append(args, "-key", e.w.key, "-out", filepath.Join(e.out, e.w.rel(e.w.key)))
			} else {
				args = append(args, "-prefix", e.w.prefix, "-out", e.out)
			}
			return bin, append(args, flags...), nil
		}
	}
	sdkUp := func(flags ...string) func(e runEnv) (string, []string, []string) {
		return func(e runEnv) (string, []string, []string) {
			return o.bin("sdkupload"), append([]string{"-endpoint", e.endpoint, "-bucket", dstBucket, "-key", e.dstKey(), "-file", e.srcFile()}, flags...), nil
		}
	}
	cs = append(cs,
		&contender{name: "sdk manager", group: groupPeer, ways: map[string]way{
			dirDownload: {cmd: goTool(o.bin("sdkdownload"))}, dirUpload: {cmd: sdkUp()},
		}},
		&contender{name: "sdk manager tuned", group: groupPeer, ways: map[string]way{
			dirDownload: {cmd: goTool(o.bin("sdkdownload"), "-tuned")}, dirUpload: {cmd: sdkUp("-tuned")},
		}},
	)

	py := func(name, script string, tree bool) *contender {
		return &contender{name: name, group: groupPeer, tree: tree, ways: map[string]way{dirDownload: {cmd: func(e runEnv) (string, []string, []string) {
			args := []string{filepath.Join(o.suiteDir, "python", script), "--endpoint", e.endpoint, "--bucket", bucket}
			if e.single() {
				args = append(args, "--key", e.w.key, "--out", filepath.Join(e.out, e.w.rel(e.w.key)))
			} else {
				args = append(args, "--prefix", e.w.prefix, "--out", e.out)
			}
			return o.python, args, nil
		}}}}
	}
	cs = append(cs, py("s3transfer pp", "s3transfer_pp.py", true), py("boto3", "boto3_download.py", false))

	streams := []string{"--multi-thread-streams", strconv.Itoa(o.rcloneStreams)}
	rcloneCopy := func(flags ...string) func(e runEnv) (string, []string, []string) {
		return func(e runEnv) (string, []string, []string) {
			// Two remotes, each with its own endpoint and credentials.
			env := append(e.rcloneEnv(), rcloneRemote("SRC", e.endpoint, accessKey, secretKey)...)
			env = append(env, rcloneRemote("DST", e.dstEndpoint, e.dstAccess, e.dstSecret)...)
			args := []string{"copyto", "src:" + bucket + "/" + e.w.key, "dst:" + dstBucket + "/" + e.dstKey()}
			if !e.single() {
				args = []string{"copy", "src:" + bucket + "/" + strings.TrimSuffix(e.w.prefix, "/"), "dst:" + dstBucket + "/" + strings.TrimSuffix(e.dstKey(), "/")}
			}
			return o.rclone, slices.Concat(args, streams, e.caCert(), flags), env
		}
	}
	cs = append(cs, &contender{name: "rclone", group: groupPeer, ways: map[string]way{
		dirDownload: {cmd: func(e runEnv) (string, []string, []string) {
			// A remote from the environment alone, no config file.
			env := append(e.rcloneEnv(), rcloneRemote("S3BENCH", e.endpoint, accessKey, secretKey)...)
			if e.single() {
				return o.rclone, slices.Concat([]string{"copyto", "s3bench:" + bucket + "/" + e.w.key, filepath.Join(e.out, e.w.rel(e.w.key))}, streams, e.caCert()), env
			}
			return o.rclone, slices.Concat([]string{"copy", "s3bench:" + bucket + "/" + strings.TrimSuffix(e.w.prefix, "/"), e.out}, streams, e.caCert()), env
		}},
		dirCopy: {cmd: rcloneCopy()},
	}})
	// rclone's S3 uploads at the part size and concurrency the others use.
	cs = append(cs, &contender{name: "rclone tuned", group: groupPeer, ways: map[string]way{
		dirCopy: {cmd: rcloneCopy("--s3-upload-concurrency", "8", "--s3-chunk-size", "8Mi")},
	}})

	cs = append(cs, &contender{name: "plain loop", group: groupPeer, ways: map[string]way{dirDownload: {cmd: goTool(o.bin("plainget"))}}})

	// The ceilings: the most the server gives for the operation, with
	// nothing else to do (no file, no checksum). plainput writes an object
	// of its own bytes from memory, or copies the source's parts with
	// UploadPartCopy.
	put := func(endpoint func(runEnv) string, creds func(runEnv) []string) func(e runEnv) (string, []string, []string) {
		return func(e runEnv) (string, []string, []string) {
			args := []string{"-endpoint", endpoint(e), "-bucket", dstBucket, "-key", e.dstKey(), "-size", strconv.FormatInt(e.w.total, 10)}
			return o.bin("plainput"), args, creds(e)
		}
	}
	first := func(e runEnv) string { return e.endpoint }
	second := func(e runEnv) string { return e.dstEndpoint }
	noCreds := func(runEnv) []string { return nil }
	secondCreds := func(e runEnv) []string {
		return []string{"AWS_ACCESS_KEY_ID=" + e.dstAccess, "AWS_SECRET_ACCESS_KEY=" + e.dstSecret}
	}
	discard := goTool(o.bin("plainget"), "-discard")
	cs = append(cs,
		&contender{name: "ceiling", group: groupCeiling, ways: map[string]way{
			dirDownload: {cmd: discard, count: true, nothing: true},
			dirUpload:   {cmd: put(first, noCreds), count: true},
			dirCopy:     {cmd: put(second, secondCreds), count: true},
			dirServerCopy: {cmd: func(e runEnv) (string, []string, []string) {
				args := []string{"-endpoint", e.endpoint, "-bucket", dstBucket}
				if e.single() {
					args = append(args, "-key", e.dstKey(), "-copy-from", bucket+"/"+e.w.key)
				} else {
					args = append(args, "-prefix", e.dstKey(), "-copy-from", bucket+"/"+e.w.prefix, "-concurrency", "32")
				}
				return o.bin("plainput"), args, nil
			}},
		}},
		// A copy across endpoints gets no more than the first server's
		// GET ceiling, nor than the second's PUT ceiling ("ceiling").
		&contender{name: "ceiling GET", group: groupCeiling, ways: map[string]way{
			dirCopy: {cmd: discard, count: true, nothing: true},
		}},
	)
	return cs
}

// selectContenders keeps those whose name matches the pattern and that go
// in one of the directions.
func selectContenders(all []*contender, pattern string, dirs []string) ([]*contender, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("-contenders: %w", err)
	}
	var out []*contender
	for _, c := range all {
		if re.MatchString(c.name) && slices.ContainsFunc(dirs, c.does) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-contenders %q matches none of the contenders of the cells' directions (%s)", pattern, strings.Join(dirs, ", "))
	}
	return out, nil
}

// placeholders is the run environment the report's commands show.
func placeholders(dir string, w *workload) runEnv {
	shown := *w
	shown.local = "$SRC"
	e := runEnv{dir: dir, endpoint: "$ENDPOINT", dstEndpoint: "$ENDPOINT2", w: &shown, out: "$OUT"}
	if dir != dirDownload {
		e.out = "$RUN/"
	}
	return e
}

// describe is the contender's command line for the report, with
// placeholders for the endpoints, the output directory and the run's
// destination prefix.
func (c *contender) describe(o options, dir string, w *workload) string {
	e := placeholders(dir, w)
	if c.fleet != nil {
		src, dst := fleetArgs(e)
		flush := "; S3FLEET_FLUSH=sync durable, none scratch"
		if dir != dirDownload {
			flush = ""
		}
		return fmt.Sprintf("%d × `worker%s` (idle before the clock%s), then `enqueue %s %s --wait%s`",
			c.fleet.workers, joinArgs(c.fleet.workerArgs), flush, shortPath(o, src), dst, joinArgs(c.fleet.enqueueArgs))
	}
	bin, args, env := c.ways[dir].cmd(e)
	var b strings.Builder
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "RCLONE_CONFIG_") &&
			!strings.HasSuffix(k, "_TYPE") && !strings.HasSuffix(k, "_PROVIDER") && !strings.HasSuffix(k, "_PATH_STYLE") {
			continue // endpoints and credentials
		}
		b.WriteString(kv + " ")
	}
	for i, a := range args {
		args[i] = shortPath(o, a)
	}
	fmt.Fprintf(&b, "%s%s", shortBin(bin), joinArgs(args))
	return "`" + b.String() + "`"
}

// shortPath shows a path in the suite's directory relative to it.
func shortPath(o options, p string) string {
	if strings.HasPrefix(p, o.suiteDir+"/") {
		return strings.TrimPrefix(p, o.suiteDir+"/")
	}
	return p
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
	switch e.dir {
	case dirUpload:
		return e.srcFile(), e.dstURL("s3")
	case dirCopy:
		return e.srcURL(), e.dstURL(fleetRemote)
	case dirServerCopy:
		return e.srcURL(), e.dstURL("s3")
	}
	if e.single() {
		return e.srcURL(), filepath.Join(e.out, e.w.rel(e.w.key))
	}
	return e.srcURL(), e.out + "/"
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
	// s3fleet: the CPU time of its workers together, its enqueue and Redis.
	cpuWorkers, cpuEnqueue, cpuRedis time.Duration
	warnings                         int // s3fleet: lines the workers logged at warn level or above during the run
	err                              error
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
	e := s.runEnv(cl, out)
	flush := "sync"
	if cl.mode == modeScratch {
		flush = "none"
	}
	env := append(s.cellEnv(cl),
		"S3FLEET_REDIS=redis://"+s.srv.redisAddr+"/0", "S3FLEET_ENDPOINT="+e.endpoint,
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region, "S3FLEET_LOG_LEVEL=warn",
		"S3FLEET_ALLOW_DEST="+s.tmp) // every cell's output is under it
	if cl.dir != dirDownload {
		// The second server as a remote, where the workers may write, and
		// where they may upload from.
		env = append(env, s.srv.fleetEnv(cl.net)...)
	}
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
	servers := s.srv.serverProcs(cl)
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
		d := after[i].sub(before[i])
		res.cpu = res.cpu.add(d)
		if i == 0 {
			res.cpuRedis = d.total() // watched[0] is Redis
		} else {
			res.cpuWorkers += d.total()
		}
	}
	for i := len(watched); i < len(after); i++ {
		res.serverCPU += after[i].sub(before[i]).total()
	}
	res.cpuEnqueue = enq.ProcessState.UserTime() + enq.ProcessState.SystemTime()
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
	bin, args, extraEnv := c.ways[cl.dir].cmd(s.runEnv(cl, out))
	sp := spec{name: c.name, bin: bin, args: args, env: append(s.cellEnv(cl), extraEnv...), dir: s.tmp, log: logPrefix + ".log"}
	cmd, logf, err := sp.command()
	if err != nil {
		return res, err
	}
	servers := s.srv.serverProcs(cl)
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
	if c.ways[cl.dir].count {
		return res, checkByteCount(sp.log, cl.w)
	}
	return res, nil
}

// runEnv is the run environment of a cell, its output (a directory, or a
// destination prefix) out.
func (s *suite) runEnv(cl cell, out string) runEnv {
	e := runEnv{dir: cl.dir, endpoint: s.srv.endpointFor(cl.net), dstEndpoint: s.srv.secondFor(cl.net),
		dstAccess: accessKeyB, dstSecret: secretKeyB, w: cl.w, out: out}
	if isTLS(cl.net) {
		e.caFile = s.srv.caFile
	}
	return e
}

// cellEnv is the environment of every process of a run in the cell: the
// first server's credentials, and over HTTPS the suite's certificate as
// the one CA to trust: SSL_CERT_FILE for Go's crypto/x509 (s5cmd, rclone,
// the suite's Go tools, s3fleet), with SSL_CERT_DIR its own directory
// (which holds no other certificate), or Go would add the system's
// directories; AWS_CA_BUNDLE for the AWS SDKs, whose pool then holds it
// alone (aws-sdk-go v1 in s5cmd, v2 in s3fleet and the suite's tools,
// botocore in boto3 and s3transfer, which reads no SSL_CERT_FILE).
func (s *suite) cellEnv(cl cell) []string {
	env := cleanEnv()
	if isTLS(cl.net) {
		env = append(env, "SSL_CERT_FILE="+s.srv.caFile, "SSL_CERT_DIR="+filepath.Dir(s.srv.caFile), "AWS_CA_BUNDLE="+s.srv.caFile)
	}
	return env
}

// checkByteCount checks a ceiling's report of what it received or sent,
// "plainget: N objects, M bytes" (or plainput's).
func checkByteCount(logPath string, w *workload) error {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	var objs, n int64
	var name string
	for line := range strings.Lines(string(b)) {
		if _, err := fmt.Sscanf(line, "%s %d objects, %d bytes", &name, &objs, &n); err == nil && strings.HasPrefix(name, "plain") {
			if objs != int64(len(w.objects)) || n != w.total {
				return fmt.Errorf("received %d objects, %d bytes; want %d, %d", objs, n, len(w.objects), w.total)
			}
			return nil
		}
	}
	return fmt.Errorf("no byte count in %s", logPath)
}
