package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestSeveralHosts runs the fleet as separate hosts: network namespaces
// made by the test on the private subnet 10.77.0.0/24, which exists only
// inside them (a bridge in a namespace of its own, a veth pair per host).
// Redis and the S3 server live in one, three worker processes in three
// others, and the destination is a directory they all see. Each worker
// must have run chunks, and have reached Redis and S3 over its own link
// only: its eth0 counted at least the bytes it landed, Redis saw a client
// from its address, and it has no route off the subnet.
func TestSeveralHosts(t *testing.T) {
	tier(t)
	h := newHostsNet(t, "s3f", "10.77.0.")
	net, tag, srv, rds, s3srv, rdb, s3c := h.net, h.tag, h.srv, h.redis, h.s3, h.rdb, h.s3c
	want := putMany(t, s3c, "bkt", 60, func(i int) string { return fmt.Sprintf("data/obj-%02d", i) },
		func(i int) int64 { return int64(100*kib + i*4099) })
	want["data/big.bin"] = putLarge(t, s3c, "bkt", "data/big.bin", 96*mib)

	env := append(os.Environ(), s3srv.Env()...)
	env = append(env, "S3FLEET_ALLOW_DEST="+os.TempDir(), "S3FLEET_REDIS="+rds.URL, "S3FLEET_ENDPOINT="+s3srv.Endpoint, "S3FLEET_RETRY_DELAY=100ms", "S3FLEET_POLL_INTERVAL=50ms",
		"S3FLEET_LOG_FORMAT=json", "S3FLEET_LOG_LEVEL=debug", "S3FLEET_CONCURRENCY=2",
		"S3FLEET_CHUNK_SIZE=8MiB") // 12 chunks of the 96 MiB object, enough for 3 hosts
	type host struct {
		ns     *testenv.Netns
		ip     string
		worker *proc
		rx, tx int64
	}
	var hosts []*host
	for i := range 3 {
		ns, ip, err := net.AddHost(t, fmt.Sprintf("%s-w%d", tag, i+1), 11+i)
		if err != nil {
			t.Fatal(err)
		}
		h := &host{ns: ns, ip: ip}
		if h.rx, h.tx, err = ns.LinkBytes("eth0"); err != nil {
			t.Fatal(err)
		}
		h.worker = start(t, fmt.Sprintf("worker-%d", i+1), env, ns.Command(filepath.Join(binDir, "worker")))
		hosts = append(hosts, h)
	}

	dest := t.TempDir()
	enq := start(t, "enqueue", env, srv.Command(filepath.Join(binDir, "enqueue"), "s3://bkt/data/", dest+"/", "--wait", "--job", "hosts"))
	began := time.Now()
	code, ok := enq.wait(5 * time.Minute)
	if !ok || code != 0 {
		t.Fatalf("enqueue --wait in %s: ended %v, exit %d:\n%s", srv.Name, ok, code, tail(enq.log(), 3000))
	}
	took := time.Since(began)
	verified := verify(t, dest, "data/", want)

	clients, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var report []string
	for _, h := range hosts {
		chunks, landed := h.worker.landed()
		rx, tx, err := h.ns.LinkBytes("eth0")
		if err != nil {
			t.Fatal(err)
		}
		rx, tx = rx-h.rx, tx-h.tx
		if chunks == 0 {
			t.Errorf("%s in %s ran no chunk", h.worker.name, h.ns.Name)
		}
		if rx < landed {
			t.Errorf("%s landed %d bytes but its eth0 received only %d: it reached S3 another way", h.worker.name, landed, rx)
		}
		if !strings.Contains(clients, "addr="+h.ip+":") {
			t.Errorf("Redis has no client from %s (%s)", h.ip, h.worker.name)
		}
		routes, _ := exec.Command("ip", "-n", h.ns.Name, "route", "show").Output()
		if strings.Contains(string(routes), "default") {
			t.Errorf("%s has a default route: %s", h.ns.Name, routes)
		}
		report = append(report, fmt.Sprintf("%s@%s %d chunks %.1f MB landed, eth0 rx %.1f MB tx %.1f MB",
			h.worker.name, h.ip, chunks, mb(landed), mb(rx), mb(tx)))
	}
	summary(t, "Redis+S3 in %s, 3 workers in their own namespaces on 10.77.0.0/24; %d objects (%d verified) in %s; %s",
		srv.Name, len(want), verified, took.Round(100*time.Millisecond), strings.Join(report, "; "))
}

// hostsNet is the fleet's servers as a host of their own: a subnet of
// network namespaces made for the test (on a prefix such as "10.77.0.",
// which exists only inside them), with Redis and the S3 server in the
// namespace of address .1 and a bucket "bkt". Workers are added as more
// hosts of the subnet.
type hostsNet struct {
	net   *testenv.Subnet
	tag   string // names the test's namespaces
	srv   *testenv.Netns
	redis *testenv.Redis
	s3    *testenv.S3
	rdb   redis.UniversalClient
	s3c   *s3.Client
}

// newHostsNet makes it, or skips the test (with the reason) where network
// namespaces cannot be had.
func newHostsNet(t *testing.T, name, prefix string) hostsNet {
	t.Helper()
	if err := testenv.NetnsSupported(); err != nil {
		t.Skipf("network namespaces unavailable (%v): the test needs root and iproute2", err)
	}
	h := hostsNet{tag: fmt.Sprintf("%s%d", name, os.Getpid()%100000)}
	var err error
	if h.net, err = testenv.NewSubnet(t, h.tag+"-br", prefix); err != nil {
		t.Skipf("cannot make the test subnet: %v", err)
	}
	var ip string
	if h.srv, ip, err = h.net.AddHost(t, h.tag+"-srv", 1); err != nil {
		t.Skipf("cannot make the server namespace: %v", err)
	}
	h.redis = testenv.StartRedisIn(t, h.srv, ip)
	h.s3 = testenv.StartS3In(t, h.srv, ip)
	h.rdb = h.redis.ClientIn(t, h.srv)
	h.s3c = h.s3.ClientIn(h.srv)
	if _, err := h.s3c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	return h
}
