package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestRedisCluster runs the fleet on a local 3-node Redis Cluster (issue
// 12): two worker processes and enqueue --wait with S3FLEET_REDIS set to a
// redis-cluster:// URL download a 64 MiB object in 4 MiB chunks and 50
// small objects in batches, every byte compared by SHA-256, with the
// ledger in 3 shards (redis_shards). It logs how the job's Redis commands
// spread over the nodes and which node holds what, and requires that
// every node hold keys of a ledger shard; the share of the busiest node is
// a figure, not a requirement (unsharded, one node carried 82 % of the
// commands; sharded, 32–36 % each). Then a worker is killed with SIGKILL
// mid-download: the other's watchdog moves the dead worker's tasks back
// to their queues (a script on {s3fleet} keys, then one on asynq's keys
// of each queue) and the job completes, with no CROSSSLOT error anywhere.
func TestRedisCluster(t *testing.T) {
	tier(t)
	rc := testenv.StartRedisCluster(t, 3)
	s3 := testenv.StartS3(t)
	proxy := testenv.StartFaultProxy(t, s3.Endpoint)
	// The failover's object comes slowly, 2 MiB/s a GET (2 s a chunk), so
	// that a worker dies holding chunks; the first job's come at full speed.
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		if testenv.IsObjectGET(r) && strings.Contains(r.URL.Path, "/slow/") {
			return testenv.Fault{Rate: 2 << 20}
		}
		return testenv.Fault{}
	})

	s3.CreateBucket(t, "bkt")
	want := map[string][32]byte{} // by path under the destination
	want["big.bin"] = sha(s3.PutRandom(t, "bkt", "data/big.bin", 64<<20, true))
	for i := range 50 {
		rel := fmt.Sprintf("small/%02d.bin", i)
		want[rel] = sha(s3.PutRandom(t, "bkt", "data/"+rel, int64(1+i*1301), i%2 == 0))
	}
	slowSum := sha(s3.PutRandom(t, "bkt", "slow/big.bin", 64<<20, true))

	f := &fleet{s3: s3}
	f.env = append(os.Environ(), s3.Env()...)
	f.env = append(f.env, "S3FLEET_REDIS="+rc.URL, "S3FLEET_REDIS_SHARDS=3", "S3FLEET_ENDPOINT="+proxy.URL,
		"S3FLEET_CHUNK_SIZE=4MiB", "S3FLEET_BATCH_OBJECTS=10", "S3FLEET_RETRY_DELAY=100ms",
		"S3FLEET_ALLOW_DEST="+os.TempDir(), "S3FLEET_LOG_FORMAT=json",
		"S3FLEET_LOG_LEVEL=debug") // the middleware logs a failed script at debug
	// The workers poll at the default interval (500 ms), so the command
	// counts are those of a fleet as deployed.
	w1, w1log := f.clusterWorker(t, "worker-1", "--concurrency", "4")
	_, w2log := f.clusterWorker(t, "worker-2", "--concurrency", "4")
	rdb := rc.Client(t)
	led := ledger.New(rdb, time.Hour, ledger.Shards(3))
	ctx := context.Background()
	var outputs []string // of enqueue
	// Whatever else fails: no script or command of a worker or of enqueue
	// met keys in different slots.
	t.Cleanup(func() {
		for name, text := range map[string]string{"worker-1": readFile(t, w1log), "worker-2": readFile(t, w2log),
			"enqueue": strings.Join(outputs, "\n")} {
			if i := strings.Index(text, "CROSSSLOT"); i >= 0 {
				t.Errorf("%s met CROSSSLOT: …%s…", name, text[max(0, i-300):min(len(text), i+200)])
			}
		}
	})

	// The job, counted alone: nothing else talks to Redis meanwhile but
	// the two workers.
	dest := t.TempDir()
	rc.ResetStats(t)
	began := time.Now()
	code, out, err := f.runEnqueue("s3://bkt/data/", dest+"/", "--wait", "--job", "cluster")
	took := time.Since(began)
	stats := rc.Stats(t)
	outputs = append(outputs, out)
	if err != nil || code != 0 {
		t.Fatalf("enqueue --wait on the cluster: exit %d, %v:\n%s", code, err, tail(out, 3000))
	}
	for rel, sum := range want {
		if got := fileSHA(t, filepath.Join(dest, rel)); got != sum {
			t.Errorf("%s: SHA-256 differs from the uploaded object", rel)
		}
	}
	j, err := led.GetJob(ctx, "cluster")
	if err != nil {
		t.Fatalf("the job's record, read through the cluster: %v", err)
	}
	if !j.Done() || j.Succeeded != 51 || j.Failed != 0 || j.Cancelled != 0 || j.BytesDone != j.BytesTotal {
		t.Fatalf("job cluster: %+v, want 51 objects succeeded", j)
	}
	t.Logf("job cluster: 51 objects, %d MiB, in %s on the cluster", j.BytesTotal>>20, took.Round(10*time.Millisecond))
	reportNodes(t, rc, rdb, led, stats)
	// With redis_shards 3, the ledger's keys are on every node: each
	// shard's tag is in another third of the slots.
	for addr, tags := range rc.KeyTags(t) {
		n := 0
		for tag, k := range tags {
			if slices.Contains(led.HashTags(), "{"+tag+"}") {
				n += k
			}
		}
		if n == 0 {
			t.Errorf("node %s holds no key of the ledger's shards %v: %v", addr, led.HashTags(), tags)
		}
	}

	t.Run("failover", func(t *testing.T) {
		dest := t.TempDir()
		rc.ResetStats(t)
		type result struct {
			code int
			out  string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, out, err := f.runEnqueue("s3://bkt/slow/big.bin", dest+"/", "--wait", "--job", "failover")
			done <- result{code, out, err}
		}()
		// Kill worker 1 once it runs chunks of the job.
		tag := fmt.Sprintf("(pid %d) #", w1.Process.Pid)
		var held []string
		for deadline := time.Now().Add(20 * time.Second); len(held) == 0; time.Sleep(50 * time.Millisecond) {
			select {
			case r := <-done:
				t.Fatalf("enqueue ended before worker 1 ran a task of the job: exit %d, %v:\n%s", r.code, r.err, tail(r.out, 3000))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("worker 1 ran no task of the job within 20 s")
			}
			running, err := rdb.HGetAll(ctx, "{s3fleet}:running").Result()
			if err != nil {
				t.Fatal(err)
			}
			for field, member := range running {
				if strings.Contains(member, tag) && !strings.HasSuffix(member, liveness.Finished) {
					held = append(held, strings.ReplaceAll(field, "\x00", " "))
				}
			}
		}
		if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		sort.Strings(held)
		t.Logf("killed worker 1 (SIGKILL) holding %d tasks: %s", len(held), strings.Join(held, ", "))
		var r result
		select {
		case r = <-done:
		case <-time.After(40 * time.Second):
			t.Fatal("the job did not finish within 40 s of the kill")
		}
		after := time.Since(killed)
		stats := rc.Stats(t)
		outputs = append(outputs, r.out)
		if r.err != nil || r.code != 0 {
			t.Fatalf("enqueue --wait: exit %d, %v:\n%s", r.code, r.err, tail(r.out, 3000))
		}
		if got := fileSHA(t, filepath.Join(dest, "big.bin")); got != slowSum {
			t.Fatal("big.bin: SHA-256 differs from the uploaded object")
		}
		moved, movedAt := logCount(t, w2log, "task failed over from a dead worker")
		if moved == 0 {
			t.Errorf("worker 2's watchdog moved none of worker 1's %d tasks (asynq's own recovery takes a minute)", len(held))
		}
		if n, _ := logCount(t, w2log, "fail over a dead worker's task: asynq's recovery will take it back instead"); n > 0 {
			t.Errorf("the watchdog failed to move %d tasks", n)
		}
		t.Logf("FIGURE failover: worker 2's watchdog moved %d tasks %s after the kill; the job finished %s after it",
			moved, movedAt.Sub(killed).Round(100*time.Millisecond), after.Round(100*time.Millisecond))
		busiest, total := busiest(stats)
		t.Logf("during the failover (the test polled {s3fleet}:running every 50 ms until the kill): node %s: %.0f%% of %d commands",
			busiest.Addr, 100*float64(busiest.Commands)/float64(total), total)
	})

}

// clusterWorker starts a worker process, killed at the end of the test,
// and returns it and its log file.
func (f *fleet) clusterWorker(t *testing.T, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"), args...)
	cmd.Env = f.env
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(readFile(t, logPath), 3000))
		}
	})
	return cmd, logPath
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
	}
	return string(b)
}

// logCount counts the JSON log lines of a file whose message is msg, and
// returns the time of the first.
func logCount(t *testing.T, path, msg string) (n int, first time.Time) {
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == msg {
			if n == 0 {
				first = rec.Time
			}
			n++
		}
	}
	return n, first
}

// busiest returns the node that processed the most commands, and the sum
// over all nodes.
func busiest(stats []testenv.NodeStats) (testenv.NodeStats, int64) {
	var top testenv.NodeStats
	var total int64
	for _, s := range stats {
		total += s.Commands
		if s.Commands > top.Commands {
			top = s
		}
	}
	return top, total
}

// reportNodes logs two tables: the nodes, with their slots, the commands
// they processed (stats), their busiest commands and their keys by hash
// tag; and which node holds the ledger's {s3fleet} keys, each asynq
// queue's keys and asynq's untagged keys. Then the busiest node's share as
// a figure.
func reportNodes(t *testing.T, rc *testenv.RedisCluster, rdb *redis.ClusterClient, led *ledger.Ledger, stats []testenv.NodeStats) {
	t.Helper()
	slots := rc.SlotRanges(t)
	tags := rc.KeyTags(t)
	top, total := busiest(stats)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "node\tslots\tcommands\tshare\tbusiest commands\tkeys by hash tag after the job")
	for _, s := range stats {
		var kt []string
		for tag, n := range tags[s.Addr] {
			if tag == "" {
				tag = "(none)"
			} else {
				tag = "{" + tag + "}"
			}
			kt = append(kt, fmt.Sprintf("%s %d", tag, n))
		}
		sort.Strings(kt)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f%%\t%s\t%s\n", s.Addr, strings.Join(slots[s.Addr], ","), s.Commands,
			100*float64(s.Commands)/float64(max(total, 1)), strings.Join(s.Top(4), ", "), strings.Join(kt, ", "))
	}
	tw.Flush()
	t.Logf("Redis commands per node during the job (CONFIG RESETSTAT before it):\n%s", b.String())

	// The queues tasks went to, and those the workers serve (the shared
	// ones and their host's, by default the host name).
	queues, err := rdb.SMembers(context.Background(), "asynq:queues").Result()
	if err != nil {
		t.Fatalf("asynq:queues: %v", err)
	}
	host, _ := os.Hostname()
	for q := range tasks.Queues(host, led.NumShards()) {
		if !slices.Contains(queues, q) {
			queues = append(queues, q)
		}
	}
	sort.Strings(queues)
	keys := [][2]string{{"ledger shard 0, jobs, liveness, throttle", "{s3fleet}:jobs"}}
	for n, tag := range led.HashTags()[1:] {
		keys = append(keys, [2]string{fmt.Sprintf("ledger shard %d", n+1), tag + ":xfer:…"})
	}
	for _, q := range queues {
		keys = append(keys, [2]string{"asynq queue " + q, "asynq:{" + q + "}:pending"})
	}
	for _, k := range []string{"asynq:queues", "asynq:servers", "asynq:workers"} {
		keys = append(keys, [2]string{"asynq, untagged", k})
	}
	b.Reset()
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tkey\tslot\tnode")
	for _, k := range keys {
		addr, slot := rc.NodeOf(t, k[1])
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k[0], k[1], slot, addr)
	}
	tw.Flush()
	t.Logf("what lives where:\n%s", b.String())
	t.Logf("FIGURE busiest node %s: %.0f%% of commands (%d of %d)", top.Addr,
		100*float64(top.Commands)/float64(max(total, 1)), top.Commands, total)
}
