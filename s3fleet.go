// Package s3fleet is the fleet's Go API, as s3transfer's
// ProcessPoolDownloader has it: Download returns a Transfer at once, whose
// Result blocks until the object has landed (every byte checked) or
// failed, and which can be cancelled, asked its State and its Meta; Copy
// and Upload return the same Transfer. Submit enqueues a job of many
// objects (a prefix, several sources, a manifest), which can be waited
// for, followed, retried and cancelled; Client.Job finds one by its ID.
// The enqueue command is built on this package.
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
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/wake"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
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
	opts  Options
	rdb   redis.UniversalClient
	led   *ledger.Ledger
	insp  *asynq.Inspector
	watch *watcher
	stop  func() // Local: the embedded queue and workers
	once  sync.Once

	// The S3 side, set up on first use (status and waiting need none, so
	// they work without S3 credentials); a failure is tried again.
	enqMu sync.Mutex
	enq   *enqueuer.Enqueuer

	// dead is closed, with deadErr, when a Local client's workers stopped
	// on their own: nothing will run what waits.
	dead    chan struct{}
	deadErr error
}

// Connect reaches the fleet's Redis as opts describe, and fails within
// opts.ConnectTimeout when it does not answer, naming it. The S3
// endpoints' settings are loaded when a call first needs them (Download,
// Submit, Cancel…); a status or a Wait needs none.
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
	return &Client{opts: opts, rdb: rdb, led: led, insp: asynq.NewInspectorFromRedisClient(rdb), watch: newWatcher(led),
		dead: make(chan struct{})}, nil
}

// enqueuer is the client's S3 side, made on first use. A failure is not
// kept: the next call tries again (a key file not mounted yet, a profile
// written since).
func (c *Client) enqueuer(ctx context.Context) (*enqueuer.Enqueuer, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	c.enqMu.Lock()
	defer c.enqMu.Unlock()
	if c.enq != nil {
		return c.enq, nil
	}
	log := connect.Logger(c.opts)
	eps := connect.Endpoints(c.opts, c.rdb, log)
	cctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	s3c, err := eps.Client(cctx, "", "")
	if err != nil {
		return nil, err
	}
	enq, err := enqueuer.New(c.opts, s3c, eps, c.led, wake.NewClient(c.rdb), c.insp, log)
	if err != nil {
		return nil, err
	}
	c.enq = enq
	return enq, nil
}

// alive is nil, or, once a Local client's workers stopped on their own,
// why: nothing would run new work.
func (c *Client) alive() error {
	select {
	case <-c.dead:
		return c.deadErr
	default:
		return nil
	}
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
	var failure error
	go func() {
		defer wg.Done()
		defer func() {
			if wctx.Err() == nil {
				close(failed)
			}
		}()
		log := connect.Logger(opts)
		if opts.LogLevel == "info" {
			// At the default level, Results carry the failures and their
			// causes, and the in-process workers speak up only for errors;
			// a level asked for otherwise is kept.
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		}
		if err := worker.Run(wctx, opts, log); err != nil && !errors.Is(err, context.Canceled) {
			failure = err
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
		case <-failed: // nothing will run what waits: Result returns ErrClosed, Wait the cause
			c.deadErr = fmt.Errorf("the local worker stopped: %w", cmp.Or(failure, errors.New("no cause given")))
			close(c.dead)
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

// Host is one live worker process of the fleet, known by its host
// setting: the name Job.On takes.
type Host struct {
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Machine     string    `json:"machine"` // the machine's own name
	Concurrency int       `json:"concurrency"`
	Active      int       `json:"active"` // tasks running now
	Started     time.Time `json:"started"`
}

// Hosts lists the live workers, by host name, then process ID.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	servers, err := c.insp.Servers()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	var hosts []Host
	for _, s := range servers {
		for q := range s.Queues {
			if h, ok := tasks.HostOf(q); ok {
				hosts = append(hosts, Host{Host: h, PID: s.PID, Machine: s.Host, Concurrency: s.Concurrency,
					Active: len(s.ActiveWorkers), Started: s.Started})
			}
		}
	}
	slices.SortFunc(hosts, func(a, b Host) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID))
	})
	return hosts, nil
}

// Upload is a multipart upload in progress that the fleet created.
type Upload = enqueuer.Upload

// Uploads lists the multipart uploads in progress under an object URL's
// bucket and prefix that the fleet's workers created (never another
// tool's), with their transfer's state, calling fn with each; with abort
// it aborts the stray ones (no transfer will complete or abort them).
func (c *Client) Uploads(ctx context.Context, url string, abort bool, fn func(Upload) error) error {
	enq, err := c.enqueuer(ctx)
	if err != nil {
		return err
	}
	return enq.Uploads(ctx, url, abort, fn)
}
