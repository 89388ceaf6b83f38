// Package connect opens the fleet's connections from its configuration:
// Redis (for asynq and the ledger, in the same database) and S3. Both fail
// within the connect timeout when the server is unreachable.
package connect

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/s3client"
)

// Redis parses the configured URL, connects and pings. The returned client
// serves asynq's client and inspector and the ledger; opt starts servers.
func Redis(ctx context.Context, cfg config.Config) (asynq.RedisConnOpt, redis.UniversalClient, error) {
	redis.SetLogger(quietLogger{}) // errors reach the caller; the pool's own lines are noise
	shown := config.RedactURL(cfg.Redis)
	opt, err := asynq.ParseRedisURI(cfg.Redis)
	if err != nil {
		return nil, nil, fmt.Errorf("redis URL %s: not a redis://, rediss:// or redis-sentinel:// URL", shown)
	}
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		o.DialTimeout = cfg.ConnectTimeout
		opt = o
	case asynq.RedisFailoverClientOpt:
		o.DialTimeout = cfg.ConnectTimeout
		opt = o
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, nil, fmt.Errorf("redis %s: unsupported connection type", shown)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("redis %s unreachable: %w", shown, err)
	}
	return opt, rdb, nil
}

// S3Options are the S3 client options of the configuration.
func S3Options(cfg config.Config) s3client.Options {
	return s3client.Options{
		Endpoint: cfg.Endpoint, Region: cfg.Region, PathStyle: cfg.PathStyle,
		Concurrency: cfg.Concurrency, ConnectTimeout: cfg.ConnectTimeout, ReadTimeout: cfg.ReadTimeout,
	}
}

// Logger builds the slog logger the configuration asks for, on stderr.
func Logger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
