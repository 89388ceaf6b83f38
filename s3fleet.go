// Package s3fleet is the fleet's Go API, as s3transfer's
// ProcessPoolDownloader has it: Download returns a Transfer at once, whose
// Result blocks until the object has landed (every byte checked) or
// failed, and which can be cancelled, asked its State and its Meta; Submit
// enqueues a job of many objects (a prefix, several sources), which can be
// waited for, followed and cancelled.
//
// Connect talks to the fleet's Redis and S3, as the enqueue command does:
// the work is done by the fleet's workers, on any number of hosts. Local
// runs the fleet inside this process instead (an embedded queue and
// workers), with the same API and no Redis.
//
//	opts, err := s3fleet.OptionsFromEnv() // defaults, s3fleet.yaml, S3FLEET_*
//	c, err := s3fleet.Connect(ctx, opts)
//	defer c.Close()
//	t, err := c.Download(ctx, "s3://bucket/key", "/data/file")
//	rec, err := t.Result(ctx)
package s3fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/worker"
)

// Options are the fleet's settings, as the enqueue and worker commands
// read them (see the README's "Configuration"): typed fields, each of
// whose zero values means that setting's default only where config.Config
// says so. Start from OptionsFromEnv or config.Defaults.
type Options = config.Config

// OptionsFromEnv reads the settings as the command line does without
// flags: the defaults, then s3fleet.yaml in the working directory (or the
// file S3FLEET_CONFIG names), then S3FLEET_* variables.
func OptionsFromEnv() (Options, error) {
	return config.Load(pflag.NewFlagSet("s3fleet", pflag.ContinueOnError))
}

// Client submits work to the fleet and follows it. It is safe for
// concurrent use; Close releases it.
type Client struct {
	rdb   redis.UniversalClient
	led   *ledger.Ledger
	enq   *enqueuer.Enqueuer
	watch *watcher
	stop  func() // Local: the embedded queue and workers
	once  sync.Once
}

// Connect reaches the fleet's Redis and S3 endpoint as opts describe. It
// fails within opts.ConnectTimeout when either is unreachable.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	_, rdb, err := connect.Redis(ctx, opts)
	if err != nil {
		return nil, err
	}
	c, err := newClient(ctx, opts, rdb)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return c, nil
}

func newClient(ctx context.Context, opts Options, rdb redis.UniversalClient) (*Client, error) {
	led := ledger.New(rdb, opts.Retention, ledger.Shards(opts.RedisShards))
	if err := led.AgreeShards(ctx); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	eps := connect.Endpoints(opts, rdb, connect.Logger(opts))
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	s3c, err := eps.Client(cctx, "", "")
	if err != nil {
		return nil, err
	}
	enq, err := enqueuer.New(opts, s3c, eps, led, asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), connect.Logger(opts))
	if err != nil {
		return nil, err
	}
	return &Client{rdb: rdb, led: led, enq: enq, watch: newWatcher(led)}, nil
}

// Local runs the fleet inside this process: an embedded Redis-compatible
// queue (its Redis setting is not used) and opts.Concurrency chunk slots of
// the very task code the distributed fleet runs. Its queue lives in
// memory: Close, or a crash, loses what has not landed. Without AllowDest
// its workers may write anywhere this process may (nothing else can reach
// its queue).
func Local(ctx context.Context, opts Options) (*Client, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, fmt.Errorf("start the embedded queue: %w", err)
	}
	opts.Redis = "redis://" + mr.Addr() + "/0"
	opts.PollInterval = 20 * time.Millisecond // an in-process queue: a look costs nothing
	opts.UI, opts.HealthAddr = "", ""         // no listener of a worker's: nothing to serve, no port to fail on
	if len(opts.AllowDest) == 0 {
		opts.AllowDest = []string{"/"}
	}
	if err := opts.Validate(); err != nil {
		mr.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	failed := make(chan struct{}) // the worker stopped on its own
	go func() {
		defer wg.Done()
		defer func() {
			if wctx.Err() == nil {
				close(failed)
			}
		}()
		log := connect.Logger(opts)
		if opts.LogLevel != "debug" {
			// Results carry the failures and their causes; the in-process
			// workers speak up only for errors.
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		}
		if err := worker.Run(wctx, opts, log); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("local worker stopped", "err", err)
		}
	}()
	stop := func() { cancel(); wg.Wait(); mr.Close() }
	c, err := Connect(ctx, opts)
	if err != nil {
		stop()
		return nil, err
	}
	c.stop = stop
	go func() {
		select {
		case <-failed: // nothing will run what waits: Result returns ErrClosed
			c.watch.close()
		case <-wctx.Done():
		}
	}()
	return c, nil
}

// Close stops following transfers (their Result calls return an error),
// and for a Local client its workers; it closes the connections.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		c.watch.close()
		err = c.rdb.Close()
		if c.stop != nil {
			c.stop()
		}
	})
	return err
}
