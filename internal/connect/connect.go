// Package connect opens the fleet's connections from its configuration:
// Redis (for asynq and the ledger, in the same database) and S3. Both fail
// within the connect timeout when the server is unreachable.
package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/internal/throttle"
)

// Redis parses the configured URL, connects and pings. The returned client
// serves asynq's client and inspector and the ledger; opt starts servers.
func Redis(ctx context.Context, cfg config.Config) (asynq.RedisConnOpt, redis.UniversalClient, error) {
	redis.SetLogger(quietLogger{}) // errors reach the caller; the pool's own lines are noise
	shown := config.RedactURL(cfg.Redis)
	opt, err := RedisOptions(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("redis %s: %w", shown, err)
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

// Endpoints are the top-level S3 endpoint and the configured remotes,
// each with the client options of the configuration (a remote's own
// endpoint, region, addressing and profile). Their requests keep to the
// fleet's shared rates on rdb (package throttle) when a store answers
// SlowDown; a nil rdb paces nothing.
func Endpoints(cfg config.Config, rdb redis.UniversalClient, log *slog.Logger) *s3client.Set {
	top := S3Options(cfg)
	if rdb != nil {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		top.Pacer = throttle.New(rdb, liveness.MembersKey, liveness.DeadAfter, log)
	}
	remotes := map[string]s3client.Options{}
	for name, r := range cfg.Remotes {
		o := top
		o.Endpoint, o.Region, o.PathStyle, o.Profile = r.Endpoint, r.Region, r.PathStyle, r.Profile
		remotes[name] = o
	}
	return s3client.NewSet(top, remotes)
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

// RedisOptions turns the configured URL into asynq's connection options:
//
//	redis://[user[:password]@]host:port[/db]
//	rediss://…                     the same over TLS (redis_ca_file: the CAs)
//	redis-sentinel://[:password@]h1:p1,h2:p2[/db]?master=NAME
//	redis-cluster://[user[:password]@]h1:p1,h2:p2   (rediss-cluster:// for TLS)
func RedisOptions(cfg config.Config) (asynq.RedisConnOpt, error) {
	u, err := url.Parse(cfg.Redis)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	var tlsCfg *tls.Config
	if u.Scheme == "rediss" || u.Scheme == "rediss-cluster" || cfg.RedisCAFile != "" {
		host := strings.Split(u.Host, ",")[0]
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		tlsCfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if cfg.RedisCAFile != "" {
			pem, err := os.ReadFile(cfg.RedisCAFile)
			if err != nil {
				return nil, fmt.Errorf("redis_ca_file: %w", err)
			}
			tlsCfg.RootCAs = x509.NewCertPool()
			if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis_ca_file %s: no PEM certificates", cfg.RedisCAFile)
			}
		}
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("database %q is not a number", p)
		}
	}
	switch u.Scheme {
	case "redis", "rediss":
		return asynq.RedisClientOpt{Addr: u.Host, Username: user, Password: pass, DB: db,
			TLSConfig: tlsCfg, DialTimeout: cfg.ConnectTimeout}, nil
	case "redis-sentinel":
		opt, err := asynq.ParseRedisURI(cfg.Redis)
		if err != nil {
			return nil, err
		}
		o := opt.(asynq.RedisFailoverClientOpt)
		o.DialTimeout, o.TLSConfig, o.Username = cfg.ConnectTimeout, tlsCfg, user
		return o, nil
	case "redis-cluster", "rediss-cluster":
		if db != 0 {
			return nil, errors.New("a Redis Cluster has only database 0")
		}
		return asynq.RedisClusterClientOpt{Addrs: strings.Split(u.Host, ","), Username: user, Password: pass,
			TLSConfig: tlsCfg, DialTimeout: cfg.ConnectTimeout}, nil
	}
	return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
}
