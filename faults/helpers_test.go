package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// fleet is a Redis, an S3 server with a fault proxy in front, and the
// environment the binaries run with.
type fleet struct {
	redis *testenv.Redis
	s3    *testenv.S3
	proxy *testenv.FaultProxy
	s3c   *s3.Client // straight to S3, for the test's own uploads
	rdb   redis.UniversalClient
	led   *ledger.Ledger
	env   []string
}

type fleetConfig struct {
	redisArgs []string
	password  string
	env       []string
}

type fleetOption func(*fleetConfig)

// withRedisArgs passes more arguments to redis-server ("--appendonly", "yes").
func withRedisArgs(args ...string) fleetOption {
	return func(c *fleetConfig) { c.redisArgs = append(c.redisArgs, args...) }
}

// withRedisPassword starts Redis with --requirepass and gives the fleet the
// password in its URL.
func withRedisPassword(pw string) fleetOption {
	return func(c *fleetConfig) { c.password = pw }
}

// withEnv adds S3FLEET_… settings for every binary of the fleet.
func withEnv(kv ...string) fleetOption {
	return func(c *fleetConfig) { c.env = append(c.env, kv...) }
}

func newFleet(t *testing.T, opts ...fleetOption) *fleet {
	t.Helper()
	var c fleetConfig
	for _, o := range opts {
		o(&c)
	}
	args := c.redisArgs
	if c.password != "" {
		args = append(args, "--requirepass", c.password)
	}
	f := &fleet{redis: testenv.StartRedis(t, args...), s3: testenv.StartS3(t)}
	f.proxy = testenv.StartFaultProxy(t, f.s3.Endpoint)
	redisURL := f.redis.URL
	if c.password != "" {
		redisURL = "redis://:" + c.password + "@" + f.redis.Addr + "/0"
	}
	f.rdb = redis.NewClient(&redis.Options{Addr: f.redis.Addr, Password: c.password})
	t.Cleanup(func() { f.rdb.Close() })
	f.led = ledger.New(f.rdb, time.Hour)
	var err error
	f.s3c, err = s3client.New(context.Background(), f.s3.Options(""))
	if err != nil {
		t.Fatal(err)
	}
	f.env = append(os.Environ(), f.s3.Env()...)
	f.env = append(f.env, "S3FLEET_REDIS="+redisURL, "S3FLEET_ENDPOINT="+f.proxy.URL,
		"S3FLEET_RETRY_DELAY=100ms", "S3FLEET_POLL_INTERVAL=50ms", "S3FLEET_LOG_FORMAT=json", "S3FLEET_LOG_LEVEL=debug",
		"S3FLEET_SHUTDOWN_TIMEOUT=30s", "S3FLEET_ALLOW_DEST="+os.TempDir(), // every test's DEST is a t.TempDir()
		"S3FLEET_CHUNK_SIZE=8MiB") // the kills and throttles are timed for 8 MiB chunks
	f.env = append(f.env, c.env...)
	return f
}

// proc is a binary running as a process for a test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error     // from Wait, once exited is closed
	ended   time.Time // when it exited, once exited is closed
}

// start runs one of the binaries with env until the test ends.
func start(t *testing.T, name string, env []string, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.Env = env
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	p.logPath = filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.ended = time.Now()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(p.log(), 4000))
		}
	})
	return p
}

func (f *fleet) command(name string, args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(binDir, name), args...)
}

// startWorker starts a worker process; extra are more environment settings.
func (f *fleet) startWorker(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	return start(t, name, append(append([]string{}, f.env...), extra...), f.command("worker"))
}

// startEnqueue starts an enqueue process (with --wait, typically) and
// returns at once.
func (f *fleet) startEnqueue(t *testing.T, name string, extra []string, args ...string) *proc {
	t.Helper()
	return start(t, name, append(append([]string{}, f.env...), extra...), f.command("enqueue", args...))
}

// enqueue runs the enqueue binary to its end (at most 10 minutes) and
// returns its exit code and output.
func (f *fleet) enqueue(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return f.enqueueEnv(t, nil, args...)
}

func (f *fleet) enqueueEnv(t *testing.T, extra []string, args ...string) (int, string) {
	t.Helper()
	p := f.startEnqueue(t, "enqueue", extra, args...)
	code, ok := p.wait(10 * time.Minute)
	if !ok {
		t.Fatalf("enqueue %v did not end within 10 minutes:\n%s", args, tail(p.log(), 3000))
	}
	return code, p.log()
}

// wait waits at most limit for the process to end and returns its exit
// code; ok is false when it is still running.
func (p *proc) wait(limit time.Duration) (code int, ok bool) {
	select {
	case <-p.exited:
	case <-time.After(limit):
		return 0, false
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, true
	case errors.As(p.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ee.ExitCode(), true
	}
	return -1, true
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// log returns everything the process printed so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// logRecords parses the JSON log lines of the process.
func (p *proc) logRecords() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// landed sums the "chunk landed" debug lines of a worker: chunks and bytes.
func (p *proc) landed() (chunks int, bytes int64) {
	for _, r := range p.logRecords() {
		if r["msg"] == "chunk landed" {
			chunks++
			if n, ok := r["bytes"].(float64); ok {
				bytes += int64(n)
			}
		}
	}
	return chunks, bytes
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// job reads a job's record; a missing job reads as zero.
func (f *fleet) job(t *testing.T, id string) ledger.Job {
	t.Helper()
	j, err := f.led.GetJob(context.Background(), id)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		t.Logf("read job %s: %v", id, err)
	}
	return j
}

// waitProgress polls a job until cond holds (and returns the job then) or
// limit passes (and fails the test).
func (f *fleet) waitProgress(t *testing.T, id string, limit time.Duration, what string, cond func(ledger.Job) bool) ledger.Job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		j := f.job(t, id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %s did not happen within %s: %+v", id, what, limit, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fraction is the share of a job's bytes that have landed.
func fraction(j ledger.Job) float64 {
	if j.BytesTotal == 0 {
		return 0
	}
	return float64(j.BytesDone) / float64(j.BytesTotal)
}

// objects returns a job's objects by key.
func (f *fleet) objects(t *testing.T, id string) map[string]ledger.JobObject {
	t.Helper()
	out := map[string]ledger.JobObject{}
	err := f.led.JobObjects(context.Background(), id, func(o ledger.JobObject) error {
		out[o.Key] = o
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attempts sums the chunk attempts and chunks of a job's objects: attempts
// beyond the chunk count are retries and re-runs.
func (f *fleet) attempts(t *testing.T, id string) (attempts, chunks int64) {
	for _, o := range f.objects(t, id) {
		attempts += o.Attempts
		chunks += o.Chunks
	}
	return attempts, chunks
}

func (f *fleet) createBucket(t *testing.T, name string) {
	t.Helper()
	if _, err := f.s3c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// putReader uploads body under key straight to S3 (never through the proxy).
func putReader(t *testing.T, c *s3.Client, bucket, key string, body io.ReadSeeker, withCRC bool) {
	t.Helper()
	if err := tryPut(c, bucket, key, body, withCRC); err != nil {
		t.Fatal(err)
	}
}

// tryPut uploads body, trying three times: the test's own uploads may meet
// a busy server.
func tryPut(c *s3.Client, bucket, key string, body io.ReadSeeker, withCRC bool) error {
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: body}
	if withCRC {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
	}
	var err error
	for try := range 3 {
		if _, err = c.PutObject(context.Background(), in); err == nil {
			return nil
		}
		_, _ = body.Seek(0, io.SeekStart)
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	return fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
}

// putBytes uploads random bytes of size and returns their SHA-256.
func putBytes(t *testing.T, c *s3.Client, bucket, key string, size int64, withCRC bool) [32]byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	putReader(t, c, bucket, key, bytes.NewReader(data), withCRC)
	return sha256.Sum256(data)
}

// putLarge uploads size random bytes through a temporary file, so a GiB
// never sits in memory, and returns their SHA-256.
func putLarge(t *testing.T, c *s3.Client, bucket, key string, size int64) [32]byte {
	t.Helper()
	fh, err := os.Create(filepath.Join(t.TempDir(), "upload"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(fh, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	putReader(t, c, bucket, key, fh, true)
	os.Remove(fh.Name())
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// putMany uploads n objects named by name(i) of size(i) random bytes with
// 16 uploads at a time, and returns their SHA-256 by key.
func putMany(t *testing.T, c *s3.Client, bucket string, n int, name func(int) string, size func(int) int64) map[string][32]byte {
	t.Helper()
	out := make(map[string][32]byte, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				key := name(i)
				data := make([]byte, size(i))
				_, _ = rand.Read(data)
				if err := tryPut(c, bucket, key, bytes.NewReader(data), i%2 == 0); err != nil {
					t.Error(err)
					continue
				}
				sum := sha256.Sum256(data)
				mu.Lock()
				out[key] = sum
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func fileSHA(path string) ([32]byte, error) {
	var sum [32]byte
	fh, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// verify compares the SHA-256 of each object's file (its key relative to
// strip, under dir) with the uploaded one and returns how many matched.
func verify(t *testing.T, dir, strip string, want map[string][32]byte) int {
	t.Helper()
	ok := 0
	for key, sum := range want {
		got, err := fileSHA(filepath.Join(dir, strings.TrimPrefix(key, strip)))
		switch {
		case err != nil:
			t.Errorf("%s: %v", key, err)
		case got != sum:
			t.Errorf("%s: SHA-256 differs from the uploaded object", key)
		default:
			ok++
		}
	}
	return ok
}

// partFiles lists the part files left under dir.
func partFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".s3fleet-") && strings.HasSuffix(d.Name(), ".part") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// objectRule applies fault to the object GETs for which pick says so, and
// passes everything else (HEAD, list) untouched.
func objectRule(pick func(r *http.Request) bool, fault testenv.Fault) testenv.FaultFunc {
	return func(r *http.Request) testenv.Fault {
		if testenv.IsObjectGET(r) && pick(r) {
			return fault
		}
		return testenv.Fault{}
	}
}

// throttle slows every object GET body to rate bytes/s, so a job lasts long
// enough to be hit mid-chunk.
func throttle(rate int64) testenv.FaultFunc {
	return objectRule(func(*http.Request) bool { return true }, testenv.Fault{Rate: rate})
}

// durations summarises waits: count, min, median, max.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	return fmt.Sprintf("%d: min %s, median %s, max %s", len(s), r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

// statusJSON is what `enqueue status --json` prints.
type statusJSON struct {
	State   string `json:"state"`
	Objects int64  `json:"objects"`
	Counts  struct {
		Succeeded int64 `json:"success"`
		Skipped   int64 `json:"skipped"`
		Failed    int64 `json:"failed"`
	} `json:"counts"`
	Items []struct {
		Source string `json:"source"`
		State  string `json:"state"`
		Error  string `json:"error"`
	} `json:"objects_list"`
}

func (f *fleet) status(t *testing.T, job string) (statusJSON, string) {
	t.Helper()
	code, out := f.enqueue(t, "status", job, "--json", "--all")
	var st statusJSON
	// The log lines of the command go to the same output; the JSON is the
	// line that starts with {"job".
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, `{"job"`) {
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatalf("status --json: %v: %s", err, line)
			}
		}
	}
	if code != 0 || st.State == "" {
		t.Fatalf("status %s: exit %d: %s", job, code, out)
	}
	return st, out
}

func mb(n int64) float64 { return float64(n) / 1e6 }
