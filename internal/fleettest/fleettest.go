// Package fleettest runs the fleet in-process for integration tests: a real
// redis-server and S3 server from testenv, workers as goroutines running the
// very code of cmd/worker, and an enqueuer.
package fleettest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/internal/wake"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/worker"
)

// SetCredentials puts the test S3 server's credentials in the environment,
// where the SDK's default chain finds them, as it does in production. Call
// it from TestMain.
func SetCredentials() {
	os.Setenv("AWS_ACCESS_KEY_ID", testenv.AccessKey)
	os.Setenv("AWS_SECRET_ACCESS_KEY", testenv.SecretKey)
	os.Setenv("AWS_REGION", testenv.Region)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Fleet is a Redis and an S3 server with helpers to run workers and jobs.
type Fleet struct {
	Redis *testenv.Redis
	S3    *testenv.S3
}

// New starts a Redis and an S3 server for the test.
func New(t testing.TB) *Fleet {
	t.Helper()
	return &Fleet{Redis: testenv.StartRedis(t), S3: testenv.StartS3(t)}
}

// Config is the fleet's configuration for this test: small chunks so that
// objects of a few MiB have several, and quick retries.
func (f *Fleet) Config() config.Config {
	c := config.Defaults()
	c.Redis = f.Redis.URL
	c.Endpoint = f.S3.Endpoint
	c.PathStyle = true
	c.Region = testenv.Region
	c.ChunkSize = 1 << 20
	c.Threshold = 1 << 20
	c.Concurrency = 4
	c.MaxRetries = 3
	c.RetryDelay = 50 * time.Millisecond
	c.PollInterval = 50 * time.Millisecond // tests queue to an idle fleet all the time
	c.ShutdownTimeout = 5 * time.Second
	c.LogLevel = "warn"
	c.AllowDest = []string{os.TempDir()} // every test's DEST is a t.TempDir()
	// make test runs the ledger's, the enqueuer's and the worker's tests
	// again with the records in 3 shards.
	if n, err := strconv.Atoi(os.Getenv("S3FLEET_REDIS_SHARDS")); err == nil {
		c.RedisShards = n
	}
	return c
}

// StartWorker runs a worker with cfg until the test ends (or stop is
// called) and returns a function that stops it and waits.
func StartWorker(t testing.TB, cfg config.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		defer wg.Done()
		if err := worker.Run(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// Client is an enqueuer and the ledger of a configuration.
type Client struct {
	*enqueuer.Enqueuer
	Ledger *ledger.Ledger
	Queue  *asynq.Client
}

// NewClient connects an enqueuer with cfg.
func NewClient(t testing.TB, cfg config.Config) *Client {
	t.Helper()
	ctx := context.Background()
	_, rdb, err := connect.Redis(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	eps := connect.Endpoints(cfg, rdb, nil)
	s3c, err := eps.Client(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	led := ledger.New(rdb, cfg.Retention, ledger.Shards(cfg.RedisShards))
	q := asynq.NewClientFromRedisClient(rdb)
	enq, err := enqueuer.New(cfg, s3c, eps, led, wake.NewQueue(q, rdb), asynq.NewInspectorFromRedisClient(rdb), nil)
	if err != nil {
		t.Fatal(err)
	}
	enq.Parallel = 8
	return &Client{
		Enqueuer: enq,
		Ledger:   led, Queue: q,
	}
}

// Request is an enqueue request with no expected size.
func Request(src, dest string) enqueuer.Request {
	return enqueuer.Request{Sources: []string{src}, Dest: dest}
}

// Wait polls a job until it is done or the limit passes.
func (c *Client) Wait(t testing.TB, job string, limit time.Duration) ledger.Job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		j, err := c.Ledger.GetJob(context.Background(), job)
		if err != nil {
			t.Fatal(err)
		}
		if j.Done() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not done after %s: %+v", job, limit, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogObjects logs each of a job's objects with its state and cause, to
// explain a job that ended otherwise than a test wanted.
func (c *Client) LogObjects(t testing.TB, job string) {
	t.Helper()
	for _, o := range c.Objects(t, job) {
		t.Logf("%s: %s %s", o.Source(), o.State, o.Error)
	}
}

// Objects returns a job's objects by key.
func (c *Client) Objects(t testing.TB, job string) map[string]ledger.JobObject {
	t.Helper()
	out := map[string]ledger.JobObject{}
	err := c.Ledger.JobObjects(context.Background(), job, func(o ledger.JobObject) error {
		out[o.Key] = o
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testWriter sends worker logs to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
