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

	// The second S3 server's root user, another than the first's.
	accessKeyB = "s3fleet-suite-second"
	secretKeyB = "s3fleet-suite-second-secret-9876543210"
)

// servers are the redis-server, the S3 server, and when the cells need
// them wanproxy in front of it (the emulated WAN), a second S3 server
// (copies across endpoints) and both served over HTTPS too, with
// another wanproxy in front of the first's HTTPS instance, with clients.
type servers struct {
	redis, s3, proxy *process
	redisAddr        string
	endpoint         string // versitygw, direct
	wanEndpoint      string // through wanproxy; empty without it
	rdb              *redis.Client
	s3c              *s3.Client

	// proxyTLS is a wanproxy in front of s3TLS (the emulated WAN over
	// HTTPS): it passes the TLS records as it passes any bytes, and the
	// clients' TLS sessions end at versitygw.
	proxyTLS       *process
	wanTLSEndpoint string

	// s3B is the second versitygw (its own directory, port and
	// credentials); s3TLS and s3BTLS serve the same directories over
	// HTTPS with the suite's certificate, caFile.
	s3B, s3TLS, s3BTLS                   *process
	endpointB, tlsEndpoint, tlsEndpointB string
	caFile                               string
	s3cB                                 *s3.Client
	fleetDir                             string // s3fleet's config files for uploads and copies
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

	var s3Addr string
	if s.s3, s3Addr, err = startGateway(ctx, o, "versitygw", filepath.Join(dir, "logs"), s3Dir, accessKey, secretKey, nil, log); err != nil {
		return nil, err
	}
	s.endpoint = "http://" + s3Addr

	if o.needsNet(netWAN) {
		if s.proxy, s.wanEndpoint, err = startProxy(ctx, o, "wanproxy", dir, s3Addr, "http", log); err != nil {
			return nil, err
		}
	}

	s3BDir := filepath.Join(dir, "s3b")
	if o.needsSecond() {
		if err := os.MkdirAll(s3BDir, 0o755); err != nil {
			return nil, err
		}
		var addr string
		if s.s3B, addr, err = startGateway(ctx, o, "versitygw 2", filepath.Join(dir, "logs"), s3BDir, accessKeyB, secretKeyB, nil, log); err != nil {
			return nil, err
		}
		s.endpointB = "http://" + addr
	}
	if o.needsTLS() {
		cert, err := writeCert(filepath.Join(dir, "tls"))
		if err != nil {
			return nil, err
		}
		s.caFile = cert.cert
		var addr string
		if s.s3TLS, addr, err = startGateway(ctx, o, "versitygw tls", filepath.Join(dir, "logs"), s3Dir, accessKey, secretKey, &cert, log); err != nil {
			return nil, err
		}
		s.tlsEndpoint = "https://" + addr
		if o.needsNet(netWANTLS) {
			if s.proxyTLS, s.wanTLSEndpoint, err = startProxy(ctx, o, "wanproxy tls", dir, addr, "https", log); err != nil {
				return nil, err
			}
		}
		if s.s3B != nil {
			if s.s3BTLS, addr, err = startGateway(ctx, o, "versitygw 2 tls", filepath.Join(dir, "logs"), s3BDir, accessKeyB, secretKeyB, &cert, log); err != nil {
				return nil, err
			}
			s.tlsEndpointB = "https://" + addr
		}
	}

	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	if s.s3c, err = newClient(ctx, s.endpoint, accessKey, secretKey); err != nil {
		return nil, err
	}
	if s.s3B != nil {
		if s.s3cB, err = newClient(ctx, s.endpointB, accessKeyB, secretKeyB); err != nil {
			return nil, err
		}
	}
	if o.has(dirUpload) || o.has(dirCopy) || o.has(dirServerCopy) {
		s.fleetDir = filepath.Join(dir, "fleet")
		if err := s.writeFleetConfig(filepath.Join(dir, "src")); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newClient is the suite's own S3 client of a server (plain HTTP).
func newClient(ctx context.Context, endpoint, access, secret string) (*s3.Client, error) {
	return s3util.NewClient(ctx, s3util.Source{Endpoint: endpoint, Region: region}, s3util.HTTPClient(32),
		func(o *s3.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(access, secret, "")
			// Reading back a multipart copy has no full-object checksum to
			// validate; the suite checks the SHA-256 itself.
			o.DisableLogOutputChecksumValidationSkipped = true
		})
}

// startGateway starts a versitygw serving dataDir (POSIX backend) on a
// free loopback port, over HTTPS with tls, and returns its address.
func startGateway(ctx context.Context, o options, name, logDir, dataDir, access, secret string, tls *certFiles, log *slog.Logger) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--port", addr, "--access", access, "--secret", secret, "--keep-alive", "--quiet"}
	if tls != nil {
		args = append(args, "--cert", tls.cert, "--key", tls.key)
	}
	log.Info("starting "+name, "addr", addr, "dir", dataDir)
	p, err := startProcess(spec{
		name: name, bin: o.versitygw, log: filepath.Join(logDir, strings.ReplaceAll(name, " ", "-")+".log"),
		args: append(args, "posix", dataDir),
	})
	if err != nil {
		return nil, "", err
	}
	if err := waitListen(ctx, p, addr); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// fleetConfig is s3fleet's config file for uploads and copies over a
// network (plain HTTP or HTTPS): the second server as the remote
// fleetRemote, with its own credentials (a profile of the shared
// credentials file), and where the workers may write and upload from.
func fleetConfig(endpointB, srcDir string) string {
	var b strings.Builder
	write := []string{"s3://" + dstBucket + "/"}
	if endpointB != "" {
		fmt.Fprintf(&b, "remotes:\n  %s:\n    endpoint: %s\n    region: %s\n    path_style: true\n    profile: %s\n",
			fleetRemote, endpointB, region, fleetRemote)
		write = append(write, fleetRemote+"://"+dstBucket+"/")
	}
	fmt.Fprintf(&b, "allow_write: [%s]\n", strings.Join(quoteAll(write), ", "))
	fmt.Fprintf(&b, "allow_source: [%s]\n", strings.Join(quoteAll([]string{srcDir}), ", "))
	return b.String()
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.Quote(x)
	}
	return out
}

// writeFleetConfig writes fleetConfig for each network, the shared
// credentials file with the second server's profile and an empty shared
// config file.
func (s *servers) writeFleetConfig(srcDir string) error {
	if err := os.MkdirAll(s.fleetDir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"s3fleet-" + netLoopback + ".yaml": fleetConfig(s.endpointB, srcDir),
		"s3fleet-" + netTLS + ".yaml":      fleetConfig(s.tlsEndpointB, srcDir),
		"credentials":                      fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", fleetRemote, accessKeyB, secretKeyB),
		"config":                           "",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(s.fleetDir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// fleetEnv points s3fleet's workers and enqueue at the config file of the
// network.
func (s *servers) fleetEnv(net string) []string {
	return []string{
		"S3FLEET_CONFIG=" + filepath.Join(s.fleetDir, "s3fleet-"+net+".yaml"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.fleetDir, "credentials"),
		"AWS_CONFIG_FILE=" + filepath.Join(s.fleetDir, "config"),
	}
}

// startProxy starts the suite's wanproxy in front of a versitygw (at
// upstream): every response byte delayed by the latency, each connection
// capped at the rate on its own, the requests passed as they are. It is a
// TCP proxy: in front of the HTTPS versitygw it passes the TLS records, and
// its endpoint is https://, with the same certificate (issued for
// 127.0.0.1). It returns the process and its endpoint.
func startProxy(ctx context.Context, o options, name, dir, upstream, scheme string, log *slog.Logger) (*process, string, error) {
	listenPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", listenPort)
	log.Info("starting "+name, "listen", listen, "upstream", upstream,
		"latency", o.wanLatency, "rate_MB_per_s_per_conn", o.wanRateKBps/1000)
	p, err := startProcess(spec{
		name: name, bin: o.bin("wanproxy"), log: filepath.Join(dir, "logs", strings.ReplaceAll(name, " ", "-")+".log"),
		args: []string{"-listen", listen, "-upstream", upstream,
			"-latency", o.wanLatency.String(), "-rate", strconv.FormatInt(o.wanRateKBps*1000, 10)},
	})
	if err != nil {
		return nil, "", err
	}
	if err := waitListen(ctx, p, listen); err != nil {
		return nil, "", err
	}
	return p, scheme + "://" + listen, nil
}

// stop stops whatever was started.
func (s *servers) stop() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range []*process{s.proxyTLS, s.proxy, s.s3BTLS, s.s3TLS, s.s3B, s.s3, s.redis} {
		if p != nil {
			_ = p.stop(5 * time.Second)
		}
	}
}

// endpointFor is the S3 endpoint of a network condition.
func (s *servers) endpointFor(net string) string {
	switch net {
	case netWAN:
		return s.wanEndpoint
	case netTLS:
		return s.tlsEndpoint
	case netWANTLS:
		return s.wanTLSEndpoint
	}
	return s.endpoint
}

// secondFor is the second S3 server's endpoint of a network condition, or
// "" without it.
func (s *servers) secondFor(net string) string {
	if net == netTLS {
		return s.tlsEndpointB
	}
	return s.endpointB
}

// serverProcs are the processes every contender of a cell loads but none
// owns: the S3 server (over HTTPS, its TLS instance), the second one for a
// copy across endpoints and, on the emulated WAN, the proxy.
func (s *servers) serverProcs(cl cell) []*process {
	switch {
	case cl.net == netWAN:
		return []*process{s.s3, s.proxy}
	case cl.net == netWANTLS:
		return []*process{s.s3TLS, s.proxyTLS}
	case cl.net == netTLS && cl.dir == dirCopy:
		return []*process{s.s3TLS, s.s3BTLS}
	case cl.net == netTLS:
		return []*process{s.s3TLS}
	case cl.dir == dirCopy:
		return []*process{s.s3, s.s3B}
	}
	return []*process{s.s3}
}

// client is the suite's S3 client of the server a cell writes to.
func (s *servers) client(dir string) *s3.Client {
	if dir == dirCopy {
		return s.s3cB
	}
	return s.s3c
}

// cleanEnv is the suite's environment without any AWS_, S3FLEET_ or
// RCLONE_ setting of the caller's, nor its SSL_CERT_FILE or SSL_CERT_DIR
// (the HTTPS cells set their own), plus the credentials of the S3 server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "S3FLEET_") && !strings.HasPrefix(kv, "RCLONE_") &&
			!strings.HasPrefix(kv, "SSL_CERT_FILE=") && !strings.HasPrefix(kv, "SSL_CERT_DIR=") {
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
