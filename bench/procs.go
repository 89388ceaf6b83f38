package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/s3client"
)

// spec says how to start a child process.
type spec struct {
	name string
	bin  string
	args []string
	env  []string // nil: the bench's own
	dir  string   // working directory; empty: the bench's
	log  string   // file receiving stdout and stderr
}

// process is a running child.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once it has exited
	err     error         // Wait's result, set before done is closed
}

// startProcess starts a child in its own process group, so that a Ctrl-C
// reaches the bench alone, which then stops the children in order. The
// kernel kills the child if the bench dies first.
func startProcess(s spec) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(s.log), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env, cmd.Dir = s.env, s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &process{name: s.name, logPath: s.log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM unless the process has exited.
func (p *process) terminate() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// stop sends SIGTERM and waits for the exit, killing the process after
// grace. It returns the exit's error: nil for a clean exit with status 0.
// Stopping a stopped process returns its exit again.
func (p *process) stop(grace time.Duration) error {
	p.terminate()
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("still running %s after SIGTERM, killed", grace)
	}
}

// logTail is the end of the process's log, ready to append to an error
// message, or "" when the log is empty.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	const limit = 3000
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return fmt.Sprintf("\n--- %s log (%s), tail ---\n%s", p.name, p.logPath, b)
}

// servers are the redis-server and the S3 server of the bench, with clients.
type servers struct {
	redis, s3 *process
	redisAddr string
	endpoint  string
	rdb       *redis.Client
	s3c       *s3.Client
}

// startServers starts redis-server and versitygw on free loopback ports,
// their files under dir, and waits until both accept connections.
func startServers(ctx context.Context, root, dir string, log *slog.Logger) (_ *servers, err error) {
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (run `make tools`): %w", err)
	}
	gwBin, err := versitygwBinary(root)
	if err != nil {
		return nil, err
	}
	redisDir, s3Dir := filepath.Join(dir, "redis"), filepath.Join(dir, "s3")
	for _, d := range []string{redisDir, s3Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	redisPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s3Port, err := freePort()
	if err != nil {
		return nil, err
	}

	s := &servers{redisAddr: fmt.Sprintf("127.0.0.1:%d", redisPort)}
	s3Addr := fmt.Sprintf("127.0.0.1:%d", s3Port)
	s.endpoint = "http://" + s3Addr
	defer func() {
		if err != nil {
			s.stop()
		}
	}()

	log.Info("starting redis-server", "addr", s.redisAddr)
	s.redis, err = startProcess(spec{
		name: "redis-server", bin: redisBin, log: filepath.Join(dir, "logs", "redis.log"),
		args: []string{"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", redisDir},
	})
	if err != nil {
		return nil, err
	}
	log.Info("starting versitygw", "endpoint", s.endpoint, "bin", gwBin)
	s.s3, err = startProcess(spec{
		name: "versitygw", bin: gwBin, log: filepath.Join(dir, "logs", "versitygw.log"),
		args: []string{"--port", s3Addr, "--access", accessKey, "--secret", secretKey,
			"--keep-alive", "--quiet", "posix", s3Dir},
	})
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, s.redis, s.redisAddr); err != nil {
		return nil, err
	}
	if err := waitListen(ctx, s.s3, s3Addr); err != nil {
		return nil, err
	}

	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	s.s3c, err = s3client.New(ctx, s3client.Options{
		Endpoint: s.endpoint, Region: region, PathStyle: true, Concurrency: 4, ConnectTimeout: 5 * time.Second,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// stop stops whatever was started.
func (s *servers) stop() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range []*process{s.s3, s.redis} {
		if p != nil {
			_ = p.stop(5 * time.Second)
		}
	}
}

// env is the environment of the enqueue and worker processes: the bench's
// own without any AWS_ or S3FLEET_ setting of the caller, plus the servers'.
func (s *servers) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "S3FLEET_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"S3FLEET_REDIS=redis://"+s.redisAddr+"/0", "S3FLEET_ENDPOINT="+s.endpoint,
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region,
		"AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey, "AWS_REGION="+region,
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// upload writes size random bytes to a file under dir, uploads the file as
// the bench object with a CRC32C, and returns the bytes' SHA-256. The file
// is removed afterwards.
func (s *servers) upload(ctx context.Context, dir string, size int64) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, key)
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()

	var seed [32]byte
	_, _ = rand.Read(seed[:])
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), mrand.NewChaCha8(seed), size); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}

	if _, err := s.s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	if _, err := s.s3c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: f,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	}); err != nil {
		return nil, fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
	}
	return h.Sum(nil), nil
}

// waitRegistered waits until every worker has registered with asynq: its
// server key, which holds its PID, is in the live part of asynq:servers.
func (s *servers) waitRegistered(ctx context.Context, workers []*process, limit time.Duration) error {
	want := make(map[int]bool, len(workers))
	for _, w := range workers {
		want[w.pid()] = true
	}
	deadline := time.Now().Add(limit)
	for {
		live, err := s.rdb.ZRangeByScore(ctx, "asynq:servers", &redis.ZRangeBy{
			Min: strconv.FormatInt(time.Now().Unix(), 10), Max: "+inf",
		}).Result()
		if err != nil {
			return fmt.Errorf("list asynq servers: %w", err)
		}
		seen := 0
		for _, k := range live {
			if pid, ok := serverPID(k); ok && want[pid] {
				seen++
			}
		}
		if seen == len(want) {
			return nil
		}
		for _, w := range workers {
			if w.exited() {
				return fmt.Errorf("%s exited at start: %v%s", w.name, w.err, w.logTail())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d workers registered with asynq after %s%s", seen, len(want), limit, logTails(workers))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serverPID reads the PID out of an asynq server key,
// asynq:servers:{HOST:PID:SERVER_ID}.
func serverPID(k string) (int, bool) {
	inner, ok := strings.CutPrefix(k, "asynq:servers:{")
	if !ok {
		return 0, false
	}
	fields := strings.Split(strings.TrimSuffix(inner, "}"), ":")
	if len(fields) < 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(fields[len(fields)-2])
	return pid, err == nil
}

// versitygwBinary is $S3FLEET_VERSITYGW, else .bin/versitygw of the
// repository, where `make tools` builds it.
func versitygwBinary(root string) (string, error) {
	p := os.Getenv("S3FLEET_VERSITYGW")
	if p == "" {
		p = filepath.Join(root, ".bin", "versitygw")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found (run `make tools`): %w", err)
	}
	return p, nil
}

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListen waits until p accepts connections on addr.
func waitListen(ctx context.Context, p *process, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		if p.exited() {
			return fmt.Errorf("%s exited at start: %v%s", p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections on %s: %w%s", p.name, addr, err, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// userHZ is the unit of the CPU times in /proc/PID/stat: 100 on Linux,
// whatever the kernel's own tick.
const userHZ = 100

// cpuTimes returns the user+system CPU time each process has used so far.
func cpuTimes(ps []*process) ([]time.Duration, error) {
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
		if err != nil {
			return nil, fmt.Errorf("%s: read CPU time (did it exit?): %w", p.name, err)
		}
		// The fields after the command name, which is in parentheses and
		// may hold spaces: state is field 3, utime 14 and stime 15.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			return nil, fmt.Errorf("%s: short /proc/%d/stat", p.name, p.pid())
		}
		var ticks int64
		for _, f := range fields[11:13] {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: parse /proc/%d/stat: %w", p.name, p.pid(), err)
			}
			ticks += n
		}
		out[i] = time.Duration(ticks) * time.Second / userHZ
	}
	return out, nil
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak RSS (did it exit?): %w", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM %q: %w", strings.TrimSpace(line), err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}
