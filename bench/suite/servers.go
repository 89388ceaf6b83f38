package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/bench/suite/internal/s3util"
)

const (
	bucket = "bench"

	// The S3 server's root user; the suite is its only client.
	accessKey = "s3fleet-suite-access"
	secretKey = "s3fleet-suite-secret-0123456789"
	region    = "us-east-1"
)

// servers are the redis-server, the S3 server and (for the emulated WAN)
// wanproxy in front of it, with clients.
type servers struct {
	redis, s3, proxy *process
	redisAddr        string
	endpoint         string // versitygw, direct
	wanEndpoint      string // through wanproxy; empty without it
	rdb              *redis.Client
	s3c              *s3.Client
}

// startServers starts redis-server and versitygw on free loopback ports,
// their files under dir, and, when a cell is on the emulated WAN, wanproxy
// in front of versitygw, whose responses get the latency and the
// per-connection bandwidth cap.
func startServers(ctx context.Context, o options, dir string, log *slog.Logger) (_ *servers, err error) {
	s := &servers{}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
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
	s.redisAddr = fmt.Sprintf("127.0.0.1:%d", redisPort)
	log.Info("starting redis-server", "addr", s.redisAddr)
	s.redis, err = startProcess(spec{
		name: "redis-server", bin: o.redisServer, log: filepath.Join(dir, "logs", "redis.log"),
		args: []string{"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", redisDir, "--maxmemory-policy", "noeviction"},
	})
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, s.redis, s.redisAddr); err != nil {
		return nil, err
	}

	s3Port, err := freePort()
	if err != nil {
		return nil, err
	}
	s3Addr := fmt.Sprintf("127.0.0.1:%d", s3Port)
	s.endpoint = "http://" + s3Addr
	log.Info("starting versitygw", "endpoint", s.endpoint)
	s.s3, err = startProcess(spec{
		name: "versitygw", bin: o.versitygw, log: filepath.Join(dir, "logs", "versitygw.log"),
		args: []string{"--port", s3Addr, "--access", accessKey, "--secret", secretKey,
			"--keep-alive", "--quiet", "posix", s3Dir},
	})
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, s.s3, s3Addr); err != nil {
		return nil, err
	}

	if o.needsWAN() {
		if err := s.startProxy(ctx, o, dir, s3Addr, log); err != nil {
			return nil, err
		}
	}

	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	s.s3c, err = s3util.NewClient(ctx, s3util.Source{Endpoint: s.endpoint, Region: region}, s3util.HTTPClient(32),
		func(o *s3.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")
		})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// startProxy starts the suite's wanproxy in front of versitygw: every
// response byte delayed by the latency, each connection capped at the
// rate on its own, the requests passed as they are.
func (s *servers) startProxy(ctx context.Context, o options, dir, upstream string, log *slog.Logger) error {
	listenPort, err := freePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", listenPort)
	log.Info("starting wanproxy", "listen", listen, "upstream", upstream,
		"latency", o.wanLatency, "rate_MB_per_s_per_conn", o.wanRateKBps/1000)
	s.proxy, err = startProcess(spec{
		name: "wanproxy", bin: o.bin("wanproxy"), log: filepath.Join(dir, "logs", "wanproxy.log"),
		args: []string{"-listen", listen, "-upstream", upstream,
			"-latency", o.wanLatency.String(), "-rate", strconv.FormatInt(o.wanRateKBps*1000, 10)},
	})
	if err != nil {
		return err
	}
	if err := waitListen(ctx, s.proxy, listen); err != nil {
		return err
	}
	s.wanEndpoint = "http://" + listen
	return nil
}

// stop stops whatever was started.
func (s *servers) stop() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range []*process{s.proxy, s.s3, s.redis} {
		if p != nil {
			_ = p.stop(5 * time.Second)
		}
	}
}

// endpointFor is the S3 endpoint of a network condition.
func (s *servers) endpointFor(net string) string {
	if net == netWAN {
		return s.wanEndpoint
	}
	return s.endpoint
}

// serverProcs are the processes every contender loads but none owns: the
// S3 server and, on the emulated WAN, the proxy.
func (s *servers) serverProcs(net string) []*process {
	if net == netWAN {
		return []*process{s.s3, s.proxy}
	}
	return []*process{s.s3}
}

// cleanEnv is the suite's environment without any AWS_, S3FLEET_ or
// RCLONE_ setting of the caller's, plus the credentials of the S3 server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "S3FLEET_") && !strings.HasPrefix(kv, "RCLONE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey,
		"AWS_REGION="+region, "AWS_DEFAULT_REGION="+region, "AWS_EC2_METADATA_DISABLED=true",
	)
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
			return fmt.Errorf("%d of %d workers registered with asynq after %s", seen, len(want), limit)
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
