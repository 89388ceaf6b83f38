package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
)

// The failover measurement: how soon a dead worker's tasks run on another.
// Three workers (each capped, so that the download lasts) fetch a 512 MiB
// object; one that holds chunks is killed with SIGKILL, the fleet's
// watchdog hands its tasks back to their queues, a replacement starts, and
// the time from the kill until each of its tasks runs on another worker
// (or has completed) is taken from the fleet's record of who runs what.

const (
	failoverKey      = "failover.bin"
	failoverSize     = 512 << 20
	failoverWorkers  = 3
	fleetRunningKey  = "{s3fleet}:running" // package liveness
	fleetFinished    = "\x00finished"      // package liveness: a finished task's record ends so
	failoverDeadline = 45 * time.Second
)

// failoverResult is the kills and what they cost.
type failoverResult struct {
	kills  int
	handed []time.Duration // per kill: until its tasks left the dead worker's record
	waits  []time.Duration // per task: until it ran on another worker, or completed
	err    error
}

// runFailover kills n workers, one at a time, while they download.
func (s *suite) runFailover(ctx context.Context, n int) (res failoverResult) {
	rdb := s.srv.rdb
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		res.err = fmt.Errorf("flush redis: %w", err)
		return res
	}
	defer func() { _ = rdb.FlushDB(context.WithoutCancel(ctx)).Err() }()
	if _, err := s.srv.s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(failoverKey),
		Body: io.NewSectionReader(patternReaderAt{}, 0, failoverSize)}); err != nil {
		res.err = fmt.Errorf("put %s: %w", failoverKey, err)
		return res
	}
	out := filepath.Join(s.tmp, "out", "failover")
	env := append(cleanEnv(),
		"S3FLEET_REDIS=redis://"+s.srv.redisAddr+"/0", "S3FLEET_ENDPOINT="+s.srv.endpoint,
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region, "S3FLEET_LOG_LEVEL=warn",
		"S3FLEET_ALLOW_DEST="+s.tmp, "S3FLEET_CHUNK_SIZE=8MiB", "S3FLEET_CONCURRENCY=4", "S3FLEET_BANDWIDTH=24MiB")
	started := 0
	startWorker := func() (*process, error) {
		started++
		return startProcess(spec{name: fmt.Sprintf("failover worker %d", started), bin: s.opt.bin("worker"), env: env, dir: s.tmp,
			log: filepath.Join(s.tmp, "logs", fmt.Sprintf("failover-worker-%d.log", started))})
	}
	var workers []*process
	defer func() {
		for _, w := range workers {
			w.terminate()
		}
	}()
	for range failoverWorkers {
		w, err := startWorker()
		if err != nil {
			res.err = err
			return res
		}
		workers = append(workers, w)
	}
	jobs := 0
	enqueue := func() error {
		jobs++
		sp := spec{name: "enqueue", bin: s.opt.bin("enqueue"), env: env, dir: s.tmp,
			args: []string{"s3://" + bucket + "/" + failoverKey, fmt.Sprintf("%s/%d/", out, jobs), "--quiet", "--job", fmt.Sprintf("failover-%d", jobs)},
			log:  filepath.Join(s.tmp, "logs", fmt.Sprintf("failover-enqueue-%d.log", jobs))}
		p, err := startProcess(sp)
		if err != nil {
			return err
		}
		<-p.done
		if p.err != nil {
			return fmt.Errorf("enqueue: %w: %s", p.err, p.logTail())
		}
		return nil
	}
	if err := enqueue(); err != nil {
		res.err = err
		return res
	}
	for res.kills < n {
		// A victim: a worker running at least two chunks.
		vi, held := -1, []string(nil)
		for deadline := time.Now().Add(5 * time.Second); vi < 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				if err := enqueue(); err != nil { // the job is ending: another
					res.err = err
					return res
				}
				deadline = time.Now().Add(failoverDeadline)
			}
			all, err := rdb.HGetAll(ctx, fleetRunningKey).Result()
			if err != nil {
				res.err = err
				return res
			}
			for i, w := range workers {
				if h := tasksOf(all, w.pid()); len(h) >= 2 {
					vi, held = i, h
					break
				}
			}
		}
		victim := workers[vi]
		_ = victim.cmd.Process.Signal(syscall.SIGKILL)
		killed := time.Now()
		<-victim.done
		res.kills++
		// The watchdog hands them back; then a replacement starts.
		handed := time.Duration(0)
		for handed == 0 && time.Since(killed) < failoverDeadline {
			all, err := rdb.HGetAll(ctx, fleetRunningKey).Result()
			if err == nil && len(tasksOf(all, victim.pid())) == 0 {
				handed = time.Since(killed)
				res.handed = append(res.handed, handed)
			}
			time.Sleep(20 * time.Millisecond)
		}
		w, err := startWorker()
		if err != nil {
			res.err = err
			return res
		}
		workers[vi] = w
		res.waits = append(res.waits, retakenAfter(ctx, rdb, victim.pid(), held, killed)...)
		s.log.Info("failover", "kill", res.kills, "tasks", len(held), "handed_back", handed.Round(10*time.Millisecond))
	}
	return res
}

// tasksOf lists the fields of the running record that worker process pid
// holds.
func tasksOf(running map[string]string, pid int) []string {
	tag := fmt.Sprintf("(pid %d) #", pid)
	var out []string
	for field, member := range running {
		if strings.Contains(member, tag) && !strings.HasSuffix(member, fleetFinished) {
			out = append(out, field)
		}
	}
	return out
}

// retakenAfter waits until each task a dead worker held runs under
// another worker or has completed, and returns those waits from killed.
func retakenAfter(ctx context.Context, rdb *redis.Client, pid int, fields []string, killed time.Time) []time.Duration {
	tag := fmt.Sprintf("(pid %d) #", pid)
	seen := map[string]time.Duration{}
	for time.Since(killed) < failoverDeadline && len(seen) < len(fields) {
		for _, field := range fields {
			if _, ok := seen[field]; ok {
				continue
			}
			q, id, _ := strings.Cut(field, "\x00")
			member, _ := rdb.HGet(ctx, fleetRunningKey, field).Result()
			state, err := rdb.HGet(ctx, "asynq:{"+q+"}:t:"+id, "state").Result()
			if (member != "" && !strings.Contains(member, tag)) || state == "completed" || err == redis.Nil {
				seen[field] = time.Since(killed)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := make([]time.Duration, 0, len(seen))
	for _, d := range seen {
		out = append(out, d)
	}
	return out
}

// patternReaderAt serves the same bytes at an offset every time (the SDK
// reads a body twice: for its checksum, then to send it); the content
// does not matter here, only the size.
type patternReaderAt struct{}

func (patternReaderAt) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		o := uint64(off) + uint64(i)
		p[i] = byte((o * 2654435761) >> 13)
	}
	return len(p), nil
}

// quantile is the q-th quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// report is the measurement's section of results.md.
func (r failoverResult) report() string {
	if r.kills == 0 && r.err == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("## Failover\n\n")
	if r.err != nil {
		fmt.Fprintf(&b, "The failover measurement failed: %v\n\n", r.err)
		return b.String()
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	fmt.Fprintf(&b, "%d SIGKILLs of a worker holding chunks of a %d MiB download (%d workers, 4 slots and 24 MiB/s each); "+
		"the fleet's watchdog hands a dead worker's tasks back once it missed its beats for 3 s, and a replacement starts then.\n\n",
		r.kills, failoverSize>>20, failoverWorkers)
	b.WriteString("| | tasks | median | p95 | max |\n|---|--:|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| handed back (per kill) | %d | %s | %s | %s |\n", len(r.handed), ms(quantile(r.handed, 0.5)), ms(quantile(r.handed, 0.95)), ms(quantile(r.handed, 1)))
	fmt.Fprintf(&b, "| running on another worker (per task) | %d | %s | %s | %s |\n\n", len(r.waits), ms(quantile(r.waits, 0.5)), ms(quantile(r.waits, 0.95)), ms(quantile(r.waits, 1)))
	b.WriteString("asynq alone (its 30 s lease and once-a-minute recovery) took 55–120 s.\n\n")
	return b.String()
}
