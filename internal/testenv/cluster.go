package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a running Redis Cluster of masters without replicas, each
// a redis-server child process on loopback.
type RedisCluster struct {
	Nodes []*Process
	Addrs []string // host:port of each node, in the order they were started
	URL   string   // redis-cluster://a,b,c, as S3FLEET_REDIS takes it

	direct map[string]*redis.Client // one client per node, for its stats: no handshake counted
}

// StartRedisCluster starts n (at least 3, redis-cli's minimum) redis-server
// processes with cluster mode on, AOF off and no snapshots, each with its
// own directory and nodes file; joins them into one cluster with the
// 16384 slots split evenly (redis-cli --cluster create, no replicas); and
// waits until every node reports cluster_state:ok. The nodes stop when the
// test ends. extra are more redis-server arguments for every node. The
// test is skipped when redis-server or redis-cli is not installed.
func StartRedisCluster(t testing.TB, n int, extra ...string) *RedisCluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 masters, not %d", n)
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): no Redis Cluster to test against")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed (Debian's redis-server package has it, or redis-tools): no way to join a Redis Cluster")
	}
	c := &RedisCluster{direct: map[string]*redis.Client{}}
	for range n {
		port := clusterPort(t)
		dir := t.TempDir()
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "5000"}, extra...)
		p := start(t, fmt.Sprintf("127.0.0.1:%d", port), server, args...)
		c.Nodes = append(c.Nodes, p)
		c.Addrs = append(c.Addrs, p.Addr)
		rdb := redis.NewClient(&redis.Options{Addr: p.Addr, PoolSize: 1})
		t.Cleanup(func() { rdb.Close() })
		c.direct[p.Addr] = rdb
	}
	c.URL = "redis-cluster://" + strings.Join(c.Addrs, ",")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create %s: %v\n%s", strings.Join(c.Addrs, " "), err, out)
	}
	for _, addr := range c.Addrs {
		c.waitOK(t, ctx, addr)
	}
	return c
}

// clusterPort returns a free loopback port whose cluster bus port (the
// port + 10000, which redis-server opens too) is free and valid as well.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := FreePort(t)
		if port+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free loopback port with a free cluster bus port (port + 10000)")
	return 0
}

// waitOK waits until the node at addr says cluster_state:ok.
func (c *RedisCluster) waitOK(t testing.TB, ctx context.Context, addr string) {
	t.Helper()
	rdb := c.direct[addr]
	var last string
	for {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = info
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Redis Cluster node %s not ok within 30s: %s", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client returns a cluster client of the nodes, closed after the test.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// node runs f with the plain client of one node.
func (c *RedisCluster) node(addr string, f func(*redis.Client) error) error { return f(c.direct[addr]) }

// ResetStats zeroes every node's counters (CONFIG RESETSTAT), so that Stats
// counts from now.
func (c *RedisCluster) ResetStats(t testing.TB) {
	t.Helper()
	for _, addr := range c.Addrs {
		err := c.node(addr, func(rdb *redis.Client) error { return rdb.ConfigResetStat(context.Background()).Err() })
		if err != nil {
			t.Fatalf("CONFIG RESETSTAT on %s: %v", addr, err)
		}
	}
}

// NodeStats are one node's counters since the last ResetStats (or its
// start). Stats and ResetStats keep one connection to each node, so they
// add nothing but their earlier INFO calls (one per Stats).
type NodeStats struct {
	Addr     string
	Commands int64            // total_commands_processed
	Calls    map[string]int64 // calls by command, from INFO commandstats ("evalsha", "cluster|slots")
}

// Top returns the n commands with the most calls, busiest first, as
// "evalsha 812".
func (s NodeStats) Top(n int) []string {
	names := make([]string, 0, len(s.Calls))
	for k := range s.Calls {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if s.Calls[names[i]] != s.Calls[names[j]] {
			return s.Calls[names[i]] > s.Calls[names[j]]
		}
		return names[i] < names[j]
	})
	if len(names) > n {
		names = names[:n]
	}
	out := make([]string, len(names))
	for i, k := range names {
		out[i] = fmt.Sprintf("%s %d", k, s.Calls[k])
	}
	return out
}

// Stats reads every node's counters, in the order of Addrs.
func (c *RedisCluster) Stats(t testing.TB) []NodeStats {
	t.Helper()
	out := make([]NodeStats, 0, len(c.Addrs))
	for _, addr := range c.Addrs {
		s := NodeStats{Addr: addr, Calls: map[string]int64{}}
		err := c.node(addr, func(rdb *redis.Client) error {
			// One INFO for both sections: it is not counted in itself.
			info, err := rdb.InfoMap(context.Background(), "stats", "commandstats").Result()
			if err != nil {
				return err
			}
			if s.Commands, err = strconv.ParseInt(info["Stats"]["total_commands_processed"], 10, 64); err != nil {
				return fmt.Errorf("total_commands_processed: %w", err)
			}
			for k, v := range info["Commandstats"] { // cmdstat_evalsha: calls=N,usec=…
				calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
				n, err := strconv.ParseInt(calls, 10, 64)
				if err != nil {
					return fmt.Errorf("%s %q: %w", k, v, err)
				}
				s.Calls[strings.TrimPrefix(k, "cmdstat_")] = n
			}
			return nil
		})
		if err != nil {
			t.Fatalf("INFO on %s: %v", addr, err)
		}
		out = append(out, s)
	}
	return out
}

// NodeOf returns the address of the node that serves key's slot (CLUSTER
// KEYSLOT, then CLUSTER SLOTS), and the slot.
func (c *RedisCluster) NodeOf(t testing.TB, key string) (addr string, slot int64) {
	t.Helper()
	var slots []redis.ClusterSlot
	err := c.node(c.Addrs[0], func(rdb *redis.Client) error {
		var err error
		if slot, err = rdb.ClusterKeySlot(context.Background(), key).Result(); err != nil {
			return err
		}
		slots, err = rdb.ClusterSlots(context.Background()).Result()
		return err
	})
	if err != nil {
		t.Fatalf("slot of %q: %v", key, err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, slot
		}
	}
	t.Fatalf("no node serves slot %d (key %q)", slot, key)
	return "", 0
}

// SlotRanges returns each node's slot ranges ("0-5460"), by address.
func (c *RedisCluster) SlotRanges(t testing.TB) map[string][]string {
	t.Helper()
	var slots []redis.ClusterSlot
	err := c.node(c.Addrs[0], func(rdb *redis.Client) error {
		var err error
		slots, err = rdb.ClusterSlots(context.Background()).Result()
		return err
	})
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].Start < slots[j].Start })
	out := map[string][]string{}
	for _, s := range slots {
		if len(s.Nodes) > 0 {
			out[s.Nodes[0].Addr] = append(out[s.Nodes[0].Addr], fmt.Sprintf("%d-%d", s.Start, s.End))
		}
	}
	return out
}

// KeyTags counts the keys each node holds by hash tag ("s3fleet",
// "chunks"; "" for keys without one, such as asynq:queues), by address:
// what lives where. It SCANs every node.
func (c *RedisCluster) KeyTags(t testing.TB) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, addr := range c.Addrs {
		tags := map[string]int{}
		err := c.node(addr, func(rdb *redis.Client) error {
			it := rdb.Scan(context.Background(), 0, "*", 1000).Iterator()
			for it.Next(context.Background()) {
				tags[HashTag(it.Val())]++
			}
			return it.Err()
		})
		if err != nil {
			t.Fatalf("SCAN %s: %v", addr, err)
		}
		out[addr] = tags
	}
	return out
}

// HashTag is the part of key Redis Cluster hashes when it has one: what
// lies between the first "{" and the next "}", if not empty; "" otherwise.
func HashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return ""
	}
	return tag
}
