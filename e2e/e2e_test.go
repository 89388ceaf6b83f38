// Package e2e runs the built enqueue and worker binaries as a user would:
// several worker processes against a real redis-server and S3 server, one
// killed with SIGKILL mid-transfer, every byte compared by SHA-256.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

var binDir string

// skipTier, when set, is why this tier's tests do not run; each says so
// with t.Skip (tier), so that go test -v lists them.
var skipTier string

// tier skips a test of this tier when the tier does not run.
func tier(t *testing.T) {
	t.Helper()
	if skipTier != "" {
		t.Skip(skipTier)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		skipTier = "e2e: the end-to-end tier does not run with -short (make test runs it)"
		os.Exit(m.Run()) // no binaries to build
	}
	dir, err := os.MkdirTemp("", "s3fleet-e2e-bin")
	if err != nil {
		panic(err)
	}
	out, err := exec.Command("go", "build", "-o", dir, "../cmd/enqueue", "../cmd/worker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fleet is the servers and the environment the binaries run with.
type fleet struct {
	redis *testenv.Redis
	s3    *testenv.S3
	proxy *testenv.Proxy
	env   []string
	gets  atomic.Int64 // object GETs through the proxy
}

func newFleet(t *testing.T) *fleet {
	f := &fleet{redis: testenv.StartRedis(t, "--appendonly", "yes"), s3: testenv.StartS3(t)}
	f.proxy = testenv.StartProxy(t, f.s3.Endpoint)
	f.proxy.SetTamper(func(r *http.Request, _ *http.Response) {
		if r.Method == http.MethodGet && !r.URL.Query().Has("list-type") && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1 {
			f.gets.Add(1) // object bytes: ranged chunks and whole batched objects
		}
	})
	f.env = append(os.Environ(), f.s3.Env()...)
	f.env = append(f.env, "S3FLEET_REDIS="+f.redis.URL, "S3FLEET_ENDPOINT="+f.proxy.URL,
		"S3FLEET_RETRY_DELAY=100ms", "S3FLEET_POLL_INTERVAL=50ms", "S3FLEET_LOG_FORMAT=json", "S3FLEET_ALLOW_DEST="+os.TempDir(),
		"S3FLEET_CHUNK_SIZE=8MiB") // the kill below wants many chunks in flight
	return f
}

// worker starts a worker process; it is killed at the end of the test.
func (f *fleet) worker(t *testing.T, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "worker"), args...)
	cmd.Env = f.env
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log (tail):\n%s", name, tail(string(b), 3000))
		}
	})
	return cmd
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// enqueue runs the enqueue binary and returns its exit code and output.
func (f *fleet) enqueue(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, err := f.runEnqueue(args...)
	if err != nil {
		t.Fatalf("run enqueue: %v", err)
	}
	return code, out
}

// runEnqueue is enqueue for another goroutine than the test's: it
// returns the failure to start rather than end the test.
func (f *fleet) runEnqueue(args ...string) (int, string, error) {
	cmd := exec.Command(filepath.Join(binDir, "enqueue"), args...)
	cmd.Env = f.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), nil
	}
	return 0, out.String(), err
}

func (f *fleet) ledger(t *testing.T) *ledger.Ledger {
	return ledger.New(f.redis.Client(t), time.Hour)
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestFleet is the pipeline issue's end-to-end test: a 256 MiB object and a
// prefix of 300 small objects plus an empty one, downloaded by two worker
// processes; one worker is killed with SIGKILL mid-transfer and the job
// still completes with the right bytes; the same enqueue run again does no
// duplicate work.
func TestFleet(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.s3.CreateBucket(t, "bkt")
	bigData := f.s3.PutRandom(t, "bkt", "big.bin", 256<<20, true)
	bigSum := sha(bigData)
	bigData = nil
	small := map[string][32]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range 300 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			key := fmt.Sprintf("logs/2026/day %02d/part-%03d é.log", i%30, i)
			size := int64(1 + (i*7919)%(96<<10))
			d := f.s3.PutRandom(t, "bkt", key, size, i%2 == 0)
			mu.Lock()
			small[key] = sha(d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.s3.Put(t, "bkt", "logs/empty.log", bytes.NewReader(nil), false)
	small["logs/empty.log"] = sha(nil)

	w1 := f.worker(t, "worker-1", "--concurrency", "4")
	f.worker(t, "worker-2", "--concurrency", "4")
	out := t.TempDir()

	// The large object, with worker 1 killed mid-transfer.
	led := f.ledger(t)
	done := make(chan struct{})
	var code int
	var output string
	var runErr error
	go func() {
		defer close(done)
		code, output, runErr = f.runEnqueue("s3://bkt/big.bin", out+"/big/", "--wait", "--job", "big")
	}()
	killedAt := time.Time{}
	for deadline := time.Now().Add(2 * time.Minute); killedAt.IsZero(); {
		select {
		case <-done:
			t.Fatalf("enqueue ended before a worker could be killed: exit %d, %v:\n%s", code, runErr, output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no byte of the job landed within 2 minutes")
		}
		j, err := led.GetJob(context.Background(), "big")
		if err == nil && j.BytesDone > 0 {
			if j.BytesDone >= j.BytesTotal {
				t.Fatal("the job finished before a worker could be killed")
			}
			if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt = time.Now()
			t.Logf("killed worker 1 at %d of %d bytes", j.BytesDone, j.BytesTotal)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("the job did not finish within 4 minutes of the kill")
	}
	t.Logf("job finished %s after the kill (asynq's 30 s lease and 1-minute sweep)", time.Since(killedAt).Round(time.Second))
	if runErr != nil {
		t.Fatalf("run enqueue: %v", runErr)
	}
	if code != 0 {
		t.Fatalf("enqueue --wait exited %d:\n%s", code, output)
	}
	if got := fileSHA(t, filepath.Join(out, "big", "big.bin")); got != bigSum {
		t.Fatal("big.bin: SHA-256 differs")
	}

	// The prefix.
	code, output = f.enqueue(t, "s3://bkt/logs/", out+"/logs/", "--wait", "--job", "logs")
	if code != 0 {
		t.Fatalf("prefix: exit %d:\n%s", code, output)
	}
	for key, want := range small {
		if got := fileSHA(t, filepath.Join(out, key)); got != want {
			t.Errorf("%s: SHA-256 differs", key)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "logs", "empty.log")); err != nil || st.Size() != 0 {
		t.Errorf("empty.log: %v", err)
	}

	// The same enqueues again: nothing is fetched twice.
	before := f.gets.Load()
	for _, args := range [][]string{
		{"s3://bkt/big.bin", out + "/big/", "--wait"},
		{"s3://bkt/logs/", out + "/logs/", "--wait", "--job", "logs-again"},
	} {
		code, output = f.enqueue(t, args...)
		if code != 0 || !strings.Contains(output, "0 new") || !strings.Contains(output, "already done") {
			t.Fatalf("enqueue %v again: exit %d:\n%s", args, code, output)
		}
	}
	if after := f.gets.Load(); after != before {
		t.Fatalf("running the same enqueue again made %d more object GETs", after-before)
	}
	code, output = f.enqueue(t, "status", "logs-again", "--json")
	var st struct {
		State  string `json:"state"`
		Counts struct {
			Skipped int `json:"skipped"`
		} `json:"counts"`
	}
	if err := json.Unmarshal([]byte(output), &st); code != 0 || err != nil || st.State != "success" || st.Counts.Skipped != 301 {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, output)
	}
	entries, _ := filepath.Glob(filepath.Join(out, "*", "*.part"))
	if len(entries) != 0 {
		t.Fatalf("part files left: %v", entries)
	}
}

// TestBadInputCLI: each mistake exits with its code and message and leaves
// no file and no job behind.
func TestBadInputCLI(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.s3.CreateBucket(t, "bkt")
	f.s3.PutRandom(t, "bkt", "obj", 100, false)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown bucket", []string{"s3://nobucket/obj", dir + "/a"}, 1, `bucket "nobucket" does not exist`},
		{"missing key", []string{"s3://bkt/missing", dir + "/a"}, 1, `no such key "missing" in bucket "bkt"`},
		{"empty prefix", []string{"s3://bkt/none/", dir + "/"}, 1, "no objects under s3://bkt/none/"},
		{"neither URL nor file", []string{"bkt/obj", dir + "/a"}, 2, "neither an object URL"},
		{"unknown remote", []string{"s3://bkt/obj", "dst://out/x"}, 2, `unknown remote "dst"`},
		{"one argument", []string{"s3://bkt/obj"}, 2, "requires at least 2 arg(s)"},
		{"unknown flag", []string{"--bogus", "s3://bkt/obj", dir + "/a"}, 2, "unknown flag"},
		{"bad chunk size", []string{"--chunk-size", "0", "s3://bkt/obj", dir + "/a"}, 2, "chunk_size"},
		{"one-byte chunks", []string{"--chunk-size", "1", "s3://bkt/obj", dir + "/a"}, 2, "chunk_size: must be at least 1MiB"},
		{"existing destination", []string{"s3://bkt/obj", existing}, 1, "already exists"},
		{"unknown job", []string{"status", "no-such-job"}, 2, `unknown job "no-such-job"`},
		{"storage class to a file", []string{"--storage-class", "STANDARD_IA", "s3://bkt/obj", dir + "/a"}, 2, "--storage-class set what an object written to S3 gets"},
		{"unknown storage class", []string{"--storage-class", "COLD", "s3://bkt/obj", "s3://bkt/copy"}, 2, `--storage-class "COLD": not a storage class`},
		{"kms key without kms", []string{"--sse-kms-key-id", "k", "s3://bkt/obj", "s3://bkt/copy"}, 2, "--sse-kms-key-id needs --sse aws:kms"},
		{"metadata without a value", []string{"--metadata", "team", "s3://bkt/obj", "s3://bkt/copy"}, 2, `--metadata "team": want KEY=VALUE`},
		{"relative path on another host", []string{"--on", "elsewhere", "out/", "s3://bkt/up/"}, 2, "give its absolute path there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := f.enqueue(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d; output %q, want %q", code, tc.code, out, tc.want)
			}
		})
	}
	t.Run("unreachable redis", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "enqueue"), "s3://bkt/obj", dir+"/a")
		cmd.Env = append(f.env, fmt.Sprintf("S3FLEET_REDIS=redis://:hunter2@127.0.0.1:%d/0", testenv.FreePort(t)))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "unreachable") {
			t.Fatalf("%v: %s", err, out)
		}
		if strings.Contains(string(out), "hunter2") {
			t.Fatalf("the Redis password was printed: %s", out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("unreachable S3", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "enqueue"), "s3://bkt/obj", dir+"/a")
		cmd.Env = append(f.env, fmt.Sprintf("S3FLEET_ENDPOINT=http://127.0.0.1:%d", testenv.FreePort(t)))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "S3 endpoint unreachable") {
			t.Fatalf("%v: %s", err, out)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "enqueue"), "s3://bkt/obj", dir+"/a")
		cmd.Env = append(f.env, "AWS_SECRET_ACCESS_KEY=not-the-secret")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "access denied (403") {
			t.Fatalf("%v: %s", err, out)
		}
		if strings.Contains(string(out), "not-the-secret") || strings.Contains(string(out), testenv.SecretKey) {
			t.Fatalf("a secret was printed: %s", out)
		}
	})
	if got, _ := os.ReadFile(existing); string(got) != "mine" {
		t.Fatal("existing file changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files left: %v", entries)
	}
	if n, _ := f.redis.Client(t).ZCard(context.Background(), "{s3fleet}:jobs").Result(); n != 0 {
		t.Fatalf("%d jobs recorded by bad input", n)
	}
	_ = rand.Read
}

// TestWaitSaysWhatItWaitsFor: `enqueue --wait` with no worker running says
// within seconds that no worker serves the job's queue and keeps waiting;
// once a worker starts the job completes. A job that Redis
// loses while followed (FLUSHALL, as a restart without persistence) ends
// the wait with exit 1 and says what happened and how to resume.
func TestWaitSaysWhatItWaitsFor(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.s3.CreateBucket(t, "bkt")
	f.s3.PutRandom(t, "bkt", "obj", 3<<20, false)
	type result struct {
		code int
		out  string
		err  error
	}
	run := func(args ...string) chan result {
		ch := make(chan result, 1)
		go func() {
			code, out, err := f.runEnqueue(args...)
			ch <- result{code, out, err}
		}()
		return ch
	}
	done := run("s3://bkt/obj", filepath.Join(t.TempDir(), "obj"), "--wait", "--job", "idle")
	time.Sleep(10 * time.Second) // the first look at the queues comes 3 s in, then every 5 s
	f.worker(t, "worker")
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the job did not end within a minute of the worker's start")
	}
	if r.err != nil || r.code != 0 {
		t.Fatalf("enqueue --wait: exit %d (%v):\n%s", r.code, r.err, r.out)
	}
	if want := "no worker is serving queue chunks (1 tasks waiting); still waiting for job idle"; !strings.Contains(r.out, want) {
		t.Errorf("enqueue --wait said nothing like %q:\n%s", want, r.out)
	}

	// Lost: the worker is busy elsewhere (none serves the job's host queue).
	lost := run("s3://bkt/obj", filepath.Join(t.TempDir(), "obj"), "--wait", "--job", "lost", "--on", "nohost")
	time.Sleep(2 * time.Second)
	if err := f.redis.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case r = <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("enqueue --wait went on waiting for a job Redis lost")
	}
	if r.code != 1 || !strings.Contains(r.out, "job lost is gone from Redis while it ran: Redis lost it") || !strings.Contains(r.out, "run the same command again to resume") {
		t.Errorf("a job lost by Redis: exit %d:\n%s", r.code, r.out)
	}
}
