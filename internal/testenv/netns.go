package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"
)

// Netns is a Linux network namespace made for a test: a "host" of its own,
// with only a loopback and the links the test gives it.
type Netns struct {
	Name string
}

// NewNetns creates the network namespace name with its loopback up; it is
// deleted when the test ends (after the processes started in it, since
// cleanups run last-in first-out). It fails where namespaces cannot be made
// (no privilege, no iproute2): callers skip then.
func NewNetns(t testing.TB, name string) (*Netns, error) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("ip (iproute2) not found: %w", err)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &Netns{Name: name}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// IP runs `ip -n NAME args…`.
func (n *Netns) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Command is a command run inside the namespace (`ip netns exec`, which
// execs the program: the process's PID is the program's own).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// DialContext dials from inside the namespace: the socket is made on an OS
// thread switched into it, so the test process reaches servers there
// without a link of its own. The thread is never switched back; it ends
// with its goroutine.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open(filepath.Join("/var/run/netns", n.Name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, fmt.Errorf("open namespace %s: %w", n.Name, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- result{nil, fmt.Errorf("enter namespace %s: %w", n.Name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// LinkBytes returns the bytes received and sent by the namespace's device dev.
func (n *Netns) LinkBytes(dev string) (rx, tx int64, err error) {
	out, err := exec.Command("ip", "-n", n.Name, "-j", "-s", "link", "show", "dev", dev).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ip -n %s -s link show %s: %w", n.Name, dev, err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Bytes int64 } `json:"rx"`
			TX struct{ Bytes int64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, 0, fmt.Errorf("ip -s link of %s in %s: %v: %s", dev, n.Name, err, out)
	}
	return links[0].Stats.RX.Bytes, links[0].Stats.TX.Bytes, nil
}

// Subnet is a private IPv4 /24 joining namespaces through a bridge that
// lives in a namespace of its own: nothing of it is visible from the
// test's own network namespace.
type Subnet struct {
	Bridge *Netns
	prefix string // "10.77.0."
	hosts  int
}

// NewSubnet makes the bridge namespace (name) for the hosts of prefix, such
// as "10.77.0." for 10.77.0.0/24.
func NewSubnet(t testing.TB, name, prefix string) (*Subnet, error) {
	t.Helper()
	br, err := NewNetns(t, name)
	if err != nil {
		return nil, err
	}
	if err := br.IP("link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := br.IP("link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	return &Subnet{Bridge: br, prefix: prefix}, nil
}

// AddHost makes namespace name with an eth0 at prefix+octet/24, linked by
// a veth pair to the bridge. The pair is created straight inside the two
// namespaces. It returns the namespace and its address.
func (s *Subnet) AddHost(t testing.TB, name string, octet int) (*Netns, string, error) {
	t.Helper()
	h, err := NewNetns(t, name)
	if err != nil {
		return nil, "", err
	}
	s.hosts++
	peer := fmt.Sprintf("port%d", s.hosts)
	ip := fmt.Sprintf("%s%d", s.prefix, octet)
	for _, step := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", s.Bridge.Name},
		{"addr", "add", ip + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
	} {
		if err := h.IP(step...); err != nil {
			return nil, "", err
		}
	}
	if err := s.Bridge.IP("link", "set", peer, "master", "br0", "up"); err != nil {
		return nil, "", err
	}
	return h, ip, nil
}

// startIn runs a server inside ns until the test ends and waits until addr
// (inside ns) accepts connections.
func startIn(t testing.TB, ns *Netns, addr, name string, args ...string) *Process {
	t.Helper()
	cmd := ns.Command(name, args...)
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	p := &Process{Cmd: cmd, Addr: addr, Log: log}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := ns.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s in %s within 20s: %v\n%s", name, addr, ns.Name, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartRedisIn starts a redis-server in ns listening on ip:6379 only.
func StartRedisIn(t testing.TB, ns *Netns, ip string, extra ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	addr := ip + ":6379"
	args := append([]string{"--port", "6379", "--bind", ip, "--protected-mode", "no", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, extra...)
	p := startIn(t, ns, addr, bin, args...)
	return &Redis{Process: p, URL: "redis://" + addr + "/0"}
}

// ClientIn returns a go-redis client that reaches the server inside ns.
func (r *Redis) ClientIn(t testing.TB, ns *Netns) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Dialer: ns.DialContext})
	t.Cleanup(func() { c.Close() })
	return c
}

// StartS3In starts a versitygw gateway in ns listening on ip:7070 only.
func StartS3In(t testing.TB, ns *Netns, ip string) *S3 {
	t.Helper()
	bin, err := VersitygwBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	addr := ip + ":7070"
	p := startIn(t, ns, addr, bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey,
		"--region", Region, "--keep-alive", "--quiet", "posix", root)
	return &S3{Process: p, Endpoint: "http://" + addr, Root: root}
}

// ClientIn returns an S3 client of the server that dials inside ns.
func (s *S3) ClientIn(ns *Netns) *s3.Client {
	tr := &http.Transport{DialContext: ns.DialContext, MaxIdleConnsPerHost: 32, DisableCompression: true}
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		HTTPClient:  &http.Client{Transport: tr},
	})
}

// NetnsSupported reports why network namespaces cannot be made here, or
// nil when they can: it adds and deletes a probe namespace.
func NetnsSupported() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("ip (iproute2) not found")
	}
	name := fmt.Sprintf("s3f-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return nil
}
