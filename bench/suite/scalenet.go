package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The scale-out measurement's network: every worker host is a network
// namespace of its own, joined to the root namespace (where Redis and
// versitygw run) by a veth pair whose root end is capped with tbf, so the
// bytes towards the host (its downloads, and Redis's replies) share one
// link of the given rate. The enqueue runs in one more namespace, the
// control host, on an uncapped link; the root end of that link carries the
// service address Redis and versitygw listen on, which every host reaches
// through its own link (Linux takes a packet for any of its addresses on
// any interface).
//
//	host hN:  eth0 10.78.N.2/24  ──veth──  s3fsc-hN 10.78.N.1 (tbf)  ┐
//	control:  eth0 10.78.0.2/24  ──veth──  s3fsc-ctl 10.78.0.1       ┴ root namespace: redis-server, versitygw on 10.78.0.1
const (
	netnsPrefix = "s3fscale-" // namespaces: s3fscale-ctl, s3fscale-h1, …
	vethPrefix  = "s3fsc-"    // their links' root ends (at most 15 bytes)
	subnetBase  = "10.78."
	serviceIP   = subnetBase + "0.1"
	maxHosts    = 200
)

// netHost is one namespace and its link.
type netHost struct {
	name string // host name: h1, …, or ctl
	ns   string // the namespace
	dev  string // the link's root end
	ip   string // the address inside
}

// fleetNet is every host of the measurement.
type fleetNet struct {
	ctl      *netHost
	hosts    []*netHost
	rateMbit int
}

// hostNames are the names setupNet gives n hosts: h1 … hn.
func hostNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "h" + strconv.Itoa(i+1)
	}
	return out
}

// netCheck reports why the namespaces cannot be made here, or nil.
func netCheck() error {
	if os.Geteuid() != 0 {
		return errors.New("the scale-out measurement makes network namespaces and shapes their links: run it as root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s (iproute2) not found: %w", tool, err)
		}
	}
	return nil
}

// setupNet makes the control namespace and n host namespaces, each host's
// link capped at rateMbit towards the host. Leftovers of an earlier run
// that died are removed first.
func setupNet(n, rateMbit int) (_ *fleetNet, err error) {
	if n < 1 || n > maxHosts {
		return nil, fmt.Errorf("hosts: want 1 to %d, got %d", maxHosts, n)
	}
	f := &fleetNet{rateMbit: rateMbit}
	removeNet(n)
	defer func() {
		if err != nil {
			f.teardown()
		}
	}()
	if f.ctl, err = addHost("ctl", 0, 0); err != nil {
		return nil, err
	}
	for i, name := range hostNames(n) {
		h, err := addHost(name, i+1, rateMbit)
		f.hosts = append(f.hosts, h)
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// addHost makes namespace netnsPrefix+name with eth0 at 10.78.octet.2/24,
// its link's root end at .1, and a default route through it; rateMbit > 0
// caps the root end's egress with tbf.
func addHost(name string, octet, rateMbit int) (*netHost, error) {
	h := &netHost{name: name, ns: netnsPrefix + name, dev: vethPrefix + name,
		ip: fmt.Sprintf("%s%d.2", subnetBase, octet)}
	gw := fmt.Sprintf("%s%d.1", subnetBase, octet)
	steps := [][]string{
		{"ip", "netns", "add", h.ns},
		{"ip", "-n", h.ns, "link", "set", "lo", "up"},
		{"ip", "link", "add", h.dev, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
		{"ip", "addr", "add", gw + "/24", "dev", h.dev},
		{"ip", "link", "set", h.dev, "up"},
		{"ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0"},
		{"ip", "-n", h.ns, "link", "set", "eth0", "up"},
		{"ip", "-n", h.ns, "route", "add", "default", "via", gw},
	}
	if rateMbit > 0 {
		steps = append(steps, append([]string{"tc", "qdisc", "add", "dev", h.dev, "root"}, tbfArgs(rateMbit)...))
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return h, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return h, nil
}

// tbfArgs shape a link to rateMbit: a bucket of 10 ms of the rate (at
// least 64 KiB, so the kernel's 64 KiB GSO packets pass whole) and at most
// 25 ms of queue, a switch port's buffer rather than a bloated one.
func tbfArgs(rateMbit int) []string {
	burst := max(64<<10, rateMbit*1_000_000/8/100)
	return []string{"tbf", "rate", strconv.Itoa(rateMbit) + "mbit", "burst", strconv.Itoa(burst), "latency", "25ms"}
}

// teardown deletes the namespaces (and with them the links).
func (f *fleetNet) teardown() {
	if f == nil {
		return
	}
	all := append([]*netHost{f.ctl}, f.hosts...)
	for _, h := range all {
		if h != nil {
			delHost(h.name)
		}
	}
}

// removeNet deletes what a run of up to n hosts may have left.
func removeNet(n int) {
	delHost("ctl")
	for _, name := range hostNames(n) {
		delHost(name)
	}
}

func delHost(name string) {
	_ = exec.Command("ip", "link", "del", vethPrefix+name).Run()
	_ = exec.Command("ip", "netns", "del", netnsPrefix+name).Run()
}

// in returns the spec run inside the host's namespace (`ip netns exec`
// execs the program: its PID is the program's own).
func (h *netHost) in(s spec) spec {
	s.args = append([]string{"netns", "exec", h.ns, s.bin}, s.args...)
	s.bin = "ip"
	return s
}

// txBytes is what the link's root end has sent towards the host.
func (h *netHost) txBytes() (int64, error) {
	b, err := os.ReadFile("/sys/class/net/" + h.dev + "/statistics/tx_bytes")
	if err != nil {
		return 0, fmt.Errorf("link %s: %w", h.dev, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// linkBytes is txBytes of each host.
func linkBytes(hosts []*netHost) ([]int64, error) {
	out := make([]int64, len(hosts))
	for i, h := range hosts {
		n, err := h.txBytes()
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// busyCPU is the machine's busy CPU time from /proc/stat: user, nice,
// system, irq and softirq (the links' packets are softirq work), not idle,
// I/O wait or steal; and steal apart.
func busyCPU() (busy, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * time.Second / userHZ
	}
	return tick(1) + tick(2) + tick(3) + tick(6) + tick(7), tick(8)
}

// linkSampler follows the hosts' links while a run's clock runs: when
// data first flowed towards each host and when it last did, told from
// Redis's replies (which cross the same link) by the amount.
type linkSampler struct {
	hosts []*netHost
	start time.Time
	first []time.Duration // since start; -1: no data yet
	last  []time.Duration
	stop  chan struct{}
	done  chan struct{}
}

// Data, not Redis's replies: a link carried data when it carried at least
// dataStart bytes since the clock started (first), or dataBurst bytes in
// one interval (last).
const (
	sampleEvery = 20 * time.Millisecond
	dataStart   = 256 << 10
	dataBurst   = 32 << 10
)

func sampleLinks(hosts []*netHost, start time.Time) *linkSampler {
	l := &linkSampler{hosts: hosts, start: start, first: make([]time.Duration, len(hosts)), last: make([]time.Duration, len(hosts)),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range l.first {
		l.first[i] = -1
	}
	base, err := linkBytes(hosts)
	if err != nil {
		close(l.done)
		return l
	}
	prev := slices.Clone(base)
	go func() {
		defer close(l.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			now, err := linkBytes(hosts)
			if err != nil {
				return
			}
			at := time.Since(l.start)
			for i := range now {
				if l.first[i] < 0 && now[i]-base[i] >= dataStart {
					l.first[i] = at
				}
				if now[i]-prev[i] >= dataBurst {
					l.last[i] = at
				}
			}
			prev = now
		}
	}()
	return l
}

// finish stops sampling and returns, since the clock started, when data
// first flowed towards each host and when it last did.
func (l *linkSampler) finish() (first, last []time.Duration) {
	select {
	case <-l.done:
	default:
		close(l.stop)
		<-l.done
	}
	return l.first, l.last
}
