// Package testenv starts the real servers s3fleet's tests run against: a
// redis-server and a versitygw S3 gateway (POSIX backend), each a child
// process on a free loopback port, stopped when the test ends.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/s3client"
)

// Credentials of the test S3 server's root user.
const (
	AccessKey = "s3fleet-test-access"
	SecretKey = "s3fleet-test-secret-0123456789"
	Region    = "us-east-1"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a server started for a test.
type Process struct {
	Cmd  *exec.Cmd
	Addr string // host:port
	Log  interface{ String() string }
}

// Stop kills the process and waits for it.
func (p *Process) Stop() {
	if p.Cmd.Process != nil {
		_ = p.Cmd.Process.Kill()
		_ = p.Cmd.Wait()
	}
}

// start runs name with args until the test ends and waits until addr accepts
// connections.
func start(t T, addr, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Cmd: cmd, Addr: addr, Log: log}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 20s: %v\n%s", name, addr, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis is a running redis-server.
type Redis struct {
	*Process
	URL string
}

// StartRedis starts a redis-server with AOF off and no snapshots, on a free
// port, with its files in a temporary directory. extra are more
// redis-server arguments, such as "--appendonly", "yes".
func StartRedis(t T, extra ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (apt-get install redis-server, or run .ci/run): %v", err)
	}
	port := FreePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir()}, extra...)
	p := start(t, fmt.Sprintf("127.0.0.1:%d", port), bin, args...)
	return &Redis{Process: p, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
}

// Client returns a go-redis client of the server, closed after the test.
func (r *Redis) Client(t T) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// Scripts is how many scripts (EVAL and EVALSHA calls) the server has run
// so far, from INFO commandstats.
func (r *Redis) Scripts(t T) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	info := c.InfoMap(context.Background(), "commandstats")
	if err := info.Err(); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, cmd := range []string{"cmdstat_eval", "cmdstat_evalsha"} {
		v := info.Item("Commandstats", cmd) // calls=N,usec=…
		if v == "" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		c, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("INFO commandstats %s %q: %v", cmd, v, err)
		}
		n += c
	}
	return n
}

// S3 is a running versitygw gateway.
type S3 struct {
	*Process
	Endpoint string
	Root     string // the POSIX backend's directory: one folder per bucket
}

// VersitygwBinary locates the gateway: $S3FLEET_VERSITYGW, else .bin/ of
// the repository (make tools builds it there).
func VersitygwBinary() (string, error) {
	if p := os.Getenv("S3FLEET_VERSITYGW"); p != "" {
		return p, nil
	}
	p := filepath.Join(RepoRoot(), ".bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found at %s: run `make tools`", p)
	}
	return p, nil
}

// StartS3 starts a versitygw gateway with a POSIX backend in a temporary
// directory.
func StartS3(t T) *S3 {
	t.Helper()
	bin, err := VersitygwBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := start(t, addr, bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey,
		"--region", Region, "--keep-alive", "--quiet", "posix", root)
	return &S3{Process: p, Endpoint: "http://" + addr, Root: root}
}

// Env is the environment a child process needs to reach this server.
func (s *S3) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region, "AWS_EC2_METADATA_DISABLED=true",
		"S3FLEET_ENDPOINT=" + s.Endpoint, "S3FLEET_PATH_STYLE=true", "S3FLEET_REGION=" + Region,
	}
}

// Options are the s3client options that reach this server (or endpoint, a
// proxy in front of it, when not empty).
func (s *S3) Options(endpoint string) s3client.Options {
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	return s3client.Options{
		Endpoint: endpoint, Region: Region, PathStyle: true, Concurrency: 8,
		ConnectTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	}
}

// Endpoints returns the server as the top-level endpoint of a set, as
// workers resolve it.
func (s *S3) Endpoints() *s3client.Set { return s3client.NewSet(s.Options(""), nil) }

// Client returns an S3 client of the server.
func (s *S3) Client(t T) *s3.Client {
	t.Helper()
	c, err := s3client.New(context.Background(), s.Options(""))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateBucket makes a bucket.
func (s *S3) CreateBucket(t T, name string) {
	t.Helper()
	if _, err := s.Client(t).CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Put uploads body (a seekable reader) under key, with a full-object
// CRC32C checksum when withCRC is set.
func (s *S3) Put(t T, bucket, key string, body io.ReadSeeker, withCRC bool) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: body}
	if withCRC {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
	}
	if _, err := s.Client(t).PutObject(context.Background(), in); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// PutRandom uploads size random bytes under key and returns them.
func (s *S3) PutRandom(t T, bucket, key string, size int64, withCRC bool) []byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	s.Put(t, bucket, key, bytes.NewReader(data), withCRC)
	return data
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers: a
// child's stdout and stderr, or a log a test reads while it is written.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartRedisTLS starts a redis-server that speaks only TLS (with the given
// PEM files) on a free port; extra are more arguments such as
// "--requirepass", "secret". It returns the server and its rediss:// URL
// without credentials.
func StartRedisTLS(t testing.TB, certFile, keyFile, caFile string, extra ...string) (*Redis, string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	port := FreePort(t)
	args := append([]string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
	p := start(t, fmt.Sprintf("127.0.0.1:%d", port), bin, args...)
	return &Redis{Process: p, URL: fmt.Sprintf("rediss://127.0.0.1:%d/0", port)}, fmt.Sprintf("rediss://127.0.0.1:%d/0", port)
}

// WriteTree writes files (their paths relative to root) under root, with
// the directories they need.
func WriteTree(t testing.TB, root string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
