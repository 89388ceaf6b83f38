// Package worker runs one member of the fleet: an asynq server whose
// handlers download chunks and assemble objects, until its context ends;
// then running chunks get the shutdown timeout to finish, and whatever is
// left goes back to the queue for another worker.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/internal/wake"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// Run serves tasks until ctx is done.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opt, rdb, err := connect.Redis(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// The health listener outlives ctx: while running chunks finish, its
	// /healthz still answers and its /readyz says the worker is stopping.
	var running atomic.Bool
	if cfg.HealthAddr != "" {
		hctx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
		defer stopHealth()
		h := healthHandler(running.Load, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
		addr, err := serveHTTP(hctx, "health_addr", cfg.HealthAddr, h, log)
		if err != nil {
			return err
		}
		log.Info("health listener", "liveness", "http://"+addr+"/healthz", "readiness", "http://"+addr+"/readyz")
	}
	eps := connect.Endpoints(cfg, rdb, log)
	s3c, err := eps.Client(ctx, "", "")
	if err != nil {
		return err
	}
	keys, err := cfg.SSECKeys()
	if err != nil {
		return err
	}
	guard, err := location.NewGuard(cfg.AllowDest)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if guard.Open() {
		log.Warn("no allow_dest: this worker writes no local file (it serves copies, uploads and deletes only); set allow_dest (--allow-dest, S3FLEET_ALLOW_DEST) to the download roots")
	}
	access, err := accessOf(cfg)
	if err != nil {
		return err
	}
	led := ledger.New(rdb, cfg.Retention, ledger.Shards(cfg.RedisShards))
	if err := led.AgreeShards(ctx); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	client := wake.NewClient(rdb)
	reg := newRegistry(rdb, cfg.RedisShards)
	host := cfg.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	if err := tasks.ValidHost(host); err != nil {
		return fmt.Errorf("config: host: %w", err)
	}
	name := tasks.WorkerName(host)
	met := metrics.NewWorker(reg, fmt.Sprintf("%s:%d", host, os.Getpid()))

	// The enqueuer lists an --on job's local sources here (list tasks);
	// its task keys are the worker's.
	enq, err := enqueuer.New(cfg, s3c, eps, led, client, asynq.NewInspectorFromRedisClient(rdb), log)
	if err != nil {
		return err
	}
	taskKeys := enq.Keys
	if taskKeys == nil {
		log.Warn("no task_key_file: this worker runs any task written to Redis; give every enqueuer and worker the same task_key_file (README, Security)")
	}
	member, err := liveness.Join(ctx, rdb, name, log)
	if err != nil {
		return err
	}
	member.Wake = client // a dead worker's tasks start at once elsewhere
	// The member beats until the server has stopped: a graceful stop hands
	// its tasks back to asynq, and nobody must take them for a dead
	// worker's meanwhile.
	beatCtx, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	beats := make(chan struct{})
	go func() { defer close(beats); member.Run(beatCtx) }()
	defer func() { stopBeats(); <-beats }()

	chunkLimit := tasks.NewLimiter(int64(cfg.Bandwidth)) // shared by every task of this worker
	mux := asynq.NewServeMux()
	mux.Use(taskKeys.Middleware, member.Middleware)
	chunks := &tasks.ChunkHandler{
		S3: eps, Ledger: led, Queue: client, Log: log, NoFlush: cfg.Flush == "none", KeepCache: cfg.KeepCache, DirectIO: cfg.DirectIO,
		AssembleOptions: []asynq.Option{asynq.Retention(cfg.Retention), asynq.MaxRetry(cfg.MaxRetries)},
		SSECKeys:        keys, Limit: chunkLimit, Metrics: met,
		Guard: guard, Access: access, Worker: name, Parts: tasks.NewPartFiles(), Keys: taskKeys, RetryFor: cfg.RetryFor,
		StragglerAfter: cfg.StragglerAfter,
	}
	mux.Handle(tasks.TypeChunk, chunks)
	mux.Handle(tasks.TypeBatch, &tasks.BatchHandler{
		S3: eps, Ledger: led, Log: log, NoFlush: cfg.Flush == "none", SSECKeys: keys,
		Limit: chunkLimit, Metrics: met, Guard: guard, Access: access, VerifyDisk: cfg.VerifyDisk, RetryFor: cfg.RetryFor,
	})
	mux.Handle(tasks.TypeList, &tasks.ListHandler{
		Submit: func(ctx context.Context, p tasks.ListPayload) error { return enq.SubmitListed(ctx, p, keys) },
		Ledger: led, Access: access, Log: log, Host: host, Remotes: eps.Names(),
	})
	mux.Handle(tasks.TypeCleanup, &tasks.CleanupHandler{Ledger: led, Log: log, Guard: guard, S3: eps, Access: access})
	mux.Handle(tasks.TypeAssemble, &tasks.AssembleHandler{
		Assembler: &assembler.Assembler{S3: eps, Ledger: led, Log: log, Guard: guard, AllowWrite: access.Write,
			NoFlush: cfg.Flush == "none", Worker: name, VerifyDisk: cfg.VerifyDisk, SSECKeys: keys,
			Options: func(in *s3.HeadObjectInput, t ledger.Transfer) error {
				return tasks.SetRequestOptions(in, t.RequestPayer, t.ExpectedOwner, t.SSECKeyMD5, keys)
			}},
		Ledger: led, Log: log, Metrics: met, RetryFor: cfg.RetryFor,
	})

	queues := tasks.Queues(host, cfg.RedisShards)
	// asynq looks at the queues every wake.Tick through the gate, which
	// lets a look reach Redis when its queue was announced, or once a
	// poll: a queued task starts at once, and an idle worker costs Redis
	// one call a queue a poll.
	gate := wake.NewGate(PollInterval(cfg.PollInterval, len(queues)), log)
	made := opt.MakeRedisClient()
	srvRDB, ok := made.(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("start worker: asynq made a Redis client of type %T", made)
	}
	defer srvRDB.Close()
	srvRDB.AddHook(gate)
	srvRDB.AddHook(member.StaleWrites()) // a stale run never ends another worker's run of its task
	listenCtx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	go gate.Listen(listenCtx, rdb)
	srv := asynq.NewServerFromRedisClient(srvRDB, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          queues,
		RetryDelayFunc:  RetryDelay(cfg.RetryDelay),
		ShutdownTimeout: cfg.ShutdownTimeout,
		// An idle worker looks at each of its queues in Redis once a poll
		// or when it is announced (the gate). A busy one takes its next
		// task at once.
		TaskCheckInterval: PollInterval(wake.Tick, len(queues)),
		Logger:            NewAsynqLogger(log),
		LogLevel:          asynqLevel(cfg.LogLevel),
		// Only real failures count against a queue's health.
		IsFailure: func(err error) bool { return !errors.Is(err, asynq.RevokeTask) },
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	running.Store(true)
	if cfg.UI != "" {
		closeUI, err := startUI(ctx, cfg.UI, cfg.UIReadOnly, opt, rdb, reg, led, enq, log)
		if err != nil {
			srv.Shutdown()
			return err
		}
		defer closeUI()
	}
	go reconcile(ctx, asynq.NewInspectorFromRedisClient(rdb), led, queues, 30*time.Second, log)
	go chunks.SweepParts(ctx, 5*time.Second)
	log.Info("worker started", "worker", name, "redis", config.RedactURL(cfg.Redis), "endpoint", cfg.Endpoint,
		"concurrency", cfg.Concurrency, "flush", cfg.Flush, "keep_cache", cfg.KeepCache, "direct_io", cfg.DirectIO, "bandwidth", cfg.Bandwidth, "sse_c_keys", len(keys), "allow_dest", cfg.AllowDest,
		"remotes", eps.Names(), "task_keys", taskKeys.IDs(), "allow_read", cfg.AllowRead, "allow_write", cfg.AllowWrite, "allow_source", cfg.AllowSource)
	<-ctx.Done()
	running.Store(false)
	log.Info("worker stopping: running chunks finish or go back to the queue", "timeout", cfg.ShutdownTimeout)
	srv.Shutdown()
	log.Info("worker stopped")
	return nil
}

// accessOf reads the worker's allow_read and allow_write.
func accessOf(cfg config.Config) (tasks.Access, error) {
	read, err := location.NewPrefixes("allow_read", cfg.AllowRead, cfg.RemoteNames())
	if err != nil {
		return tasks.Access{}, fmt.Errorf("config: %w", err)
	}
	write, err := location.NewPrefixes("allow_write", cfg.AllowWrite, cfg.RemoteNames())
	if err != nil {
		return tasks.Access{}, fmt.Errorf("config: %w", err)
	}
	del, err := location.NewPrefixes("allow_delete", cfg.AllowDelete, cfg.RemoteNames())
	if err != nil {
		return tasks.Access{}, fmt.Errorf("config: %w", err)
	}
	source, err := location.NewGuardOf("allow_source", cfg.AllowSource)
	if err != nil {
		return tasks.Access{}, fmt.Errorf("config: %w", err)
	}
	return tasks.Access{Read: read, Write: write, Delete: del, Source: source}, nil
}

// RetryDelay returns asynq's retry delay: about a second after a worker
// died (its lease expired, so the chunk is fine to run at once elsewhere),
// 2–4 s for a task waiting for disk space, else base doubled per retry up
// to a minute, with jitter.
func RetryDelay(base time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		switch {
		case errors.Is(err, asynq.ErrLeaseExpired):
			return time.Second
		case errors.Is(err, tasks.ErrAvoided):
			return 300*time.Millisecond + rand.N(300*time.Millisecond)
		case errors.Is(err, tasks.ErrNoSpace):
			// Waiting for space: look again every few seconds (retry_for
			// bounds the wait), not after a minute.
			return 2*time.Second + rand.N(2*time.Second)
		}
		d := base << min(n, 16)
		d = min(d, time.Minute)
		return d/2 + rand.N(d/2+1)
	}
}

// PollInterval is how long an idle worker serving n queues waits between
// looks at them: poll for the 5 queues of a ledger of one shard, and
// longer in proportion for more (2 more for each shard's chunk queues),
// so that an idle worker costs Redis as many calls a second whatever the
// shard count.
func PollInterval(poll time.Duration, n int) time.Duration {
	const unsharded = 5 // assemble, its host's and 3 chunk queues
	return poll * time.Duration(max(n, unsharded)) / unsharded
}
