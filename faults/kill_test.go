package faults

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/liveness"
	"github.com/s3fleet/s3fleet/ledger"
)

// runningKey is the fleet's record of the tasks each worker runs (package
// liveness): queue NUL task ID → the member (worker name and lease).
const runningKey = "{s3fleet}:running"

// memberTag is what the member IDs of worker process pid contain.
func memberTag(pid int) string { return fmt.Sprintf("(pid %d) #", pid) }

// runningOf returns the tasks (queue NUL task ID) that worker process pid
// runs now, those of kind (a task ID prefix: "chunk:", "batch:") only
// unless kind is "".
func runningOf(t *testing.T, rdb redis.UniversalClient, pid int, kind string) []string {
	t.Helper()
	all, err := rdb.HGetAll(context.Background(), runningKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for field, member := range all {
		_, id, _ := strings.Cut(field, "\x00")
		if strings.Contains(member, memberTag(pid)) && !strings.HasSuffix(member, liveness.Finished) && strings.HasPrefix(id, kind) {
			out = append(out, field)
		}
	}
	sort.Strings(out)
	return out
}

// retaken polls every 50 ms until each of the tasks a dead worker (pid)
// held runs under another worker, or has completed, or limit passed, and
// returns how long after killed each was seen so.
func retaken(rdb redis.UniversalClient, pid int, fields []string, killed time.Time, limit time.Duration) map[string]time.Duration {
	ctx := context.Background()
	seen := map[string]time.Duration{}
	for deadline := time.Now().Add(limit); len(seen) < len(fields) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, field := range fields {
			if _, ok := seen[field]; ok {
				continue
			}
			q, id, _ := strings.Cut(field, "\x00")
			member, _ := rdb.HGet(ctx, runningKey, field).Result()
			state, err := rdb.HGet(ctx, "asynq:{"+q+"}:t:"+id, "state").Result()
			if (member != "" && !strings.Contains(member, memberTag(pid))) || state == "completed" || errors.Is(err, redis.Nil) {
				seen[field] = time.Since(killed)
			}
		}
	}
	return seen
}

// waitsOf lists the waits of fields, in their order; missing ones are left out.
func waitsOf(fields []string, seen map[string]time.Duration) []time.Duration {
	var out []time.Duration
	for _, f := range fields {
		if d, ok := seen[f]; ok {
			out = append(out, d)
		}
	}
	return out
}

// TestWorkerKilled downloads a 1 GiB object with three worker processes
// (4 chunks at a time each, every GET throttled to 4 MiB/s so the job
// lasts about 25 s): one worker is killed with SIGKILL mid-chunk at 20% and
// restarted, another at 45% and restarted. The chunks the dead workers held
// run elsewhere within seconds (the fleet's watchdog, not asynq's lease
// of 30 s and its sweep every minute); the job completes with every byte
// right. Then a rolling restart: each
// worker in turn gets SIGTERM while a replacement starts, and no chunk
// waits for a lease.
func TestWorkerKilled(t *testing.T) {
	tier(t)
	f := newFleet(t, withRedisArgs("--appendonly", "yes"))
	f.createBucket(t, "bkt")
	began := time.Now()
	want := putLarge(t, f.s3c, "bkt", "big.bin", 1<<30)
	t.Logf("uploaded 1 GiB in %s", time.Since(began).Round(100*time.Millisecond))
	f.proxy.SetRule(throttle(4 * mib))
	workers := []*proc{
		f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=4"),
		f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=4"),
		f.startWorker(t, "worker-3", "S3FLEET_CONCURRENCY=4"),
	}

	parent := t // workers outlive the subtest that starts them
	t.Run("SIGKILL twice", func(t *testing.T) {
		dest := t.TempDir()
		enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/big.bin", dest+"/", "--wait", "--job", "killed")
		var report []string
		var all []time.Duration
		var lastKill time.Time
		for i, at := range []float64{0.20, 0.45} {
			j := f.waitProgress(t, "killed", 3*time.Minute, "progress", func(j ledger.Job) bool { return fraction(j) >= at })
			if j.Done() {
				t.Fatal("the job finished before the kill")
			}
			victim := workers[i]
			// Chunks run in waves (every GET throttled alike): kill once the
			// victim runs at least 3 of its 4.
			var held []string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if held = runningOf(t, f.rdb, victim.pid(), "chunk:"); len(held) >= 3 {
					break
				}
			}
			victim.signal(t, syscall.SIGKILL)
			lastKill = time.Now()
			victim.wait(10 * time.Second)
			t.Logf("SIGKILL %s (pid %d) at %.0f%% (%d of %d bytes), running %d chunk tasks",
				victim.name, victim.pid(), 100*fraction(j), j.BytesDone, j.BytesTotal, len(held))
			if len(held) == 0 {
				t.Fatalf("%s ran no chunk when it was killed", victim.name)
			}
			workers[i] = f.startWorker(parent, victim.name+"-restarted", "S3FLEET_CONCURRENCY=4")
			// The fleet's watchdog gives them to another worker once the
			// dead one missed its beats for 3 s; asynq alone took 62–115 s.
			seen := retaken(f.rdb, victim.pid(), held, lastKill, time.Minute)
			waits := waitsOf(held, seen)
			for _, d := range waits {
				if d > 20*time.Second {
					t.Errorf("kill %d: an orphaned chunk waited %s (the watchdog fails over in seconds)", i+1, d)
				}
			}
			if len(waits) != len(held) {
				t.Errorf("kill %d: %d of %d orphaned chunks were never seen running again", i+1, len(waits), len(held))
			}
			all = append(all, waits...)
			report = append(report, fmt.Sprintf("kill %d: retaken %s", i+1, durations(waits)))
		}
		code, ok := enq.wait(5 * time.Minute)
		done := time.Since(lastKill)
		if !ok {
			t.Fatalf("the job did not finish within 5 minutes: %+v", f.job(t, "killed"))
		}
		if code != 0 {
			t.Fatalf("enqueue --wait exited %d:\n%s", code, tail(enq.log(), 3000))
		}
		if got, err := fileSHA(filepath.Join(dest, "big.bin")); err != nil || got != want {
			t.Fatalf("big.bin: SHA-256 differs (%v)", err)
		}
		if left := partFiles(dest); len(left) != 0 {
			t.Errorf("part files left: %v", left)
		}
		attempts, chunks := f.attempts(t, "killed")
		summary(t, "1 GiB, 3 workers, 2 SIGKILLs; %s; job done %s after the 2nd kill; %d attempts for %d chunks; SHA-256 ok",
			strings.Join(report, "; "), done.Round(100*time.Millisecond), attempts, chunks)
	})

	t.Run("rolling restart", func(t *testing.T) {
		dest := t.TempDir()
		jobBegan := time.Now()
		enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/big.bin", dest+"/", "--wait", "--job", "rolling")
		var stops []string
		var lastStop time.Time
		for i, at := range []float64{0.15, 0.35, 0.55} {
			j := f.waitProgress(t, "rolling", 3*time.Minute, "progress", func(j ledger.Job) bool { return fraction(j) >= at })
			if j.Done() {
				t.Fatal("the job finished before the restarts")
			}
			old := workers[i]
			workers[i] = f.startWorker(parent, old.name+"-rolled", "S3FLEET_CONCURRENCY=4")
			old.signal(t, syscall.SIGTERM)
			lastStop = time.Now()
			code, ok := old.wait(45 * time.Second)
			if !ok || code != 0 {
				t.Fatalf("%s after SIGTERM: exited %v, code %d:\n%s", old.name, ok, code, tail(old.log(), 2000))
			}
			stopped := time.Since(lastStop)
			if !strings.Contains(old.log(), "worker stopped") {
				t.Errorf("%s did not log its graceful stop", old.name)
			}
			stops = append(stops, old.name+" "+stopped.Round(100*time.Millisecond).String())
			t.Logf("SIGTERM %s at %.0f%%: exited 0 after %s, replacement started", old.name, 100*fraction(j), stopped.Round(time.Millisecond))
		}
		code, ok := enq.wait(5 * time.Minute)
		done := time.Since(lastStop)
		if !ok || code != 0 {
			t.Fatalf("enqueue --wait: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 3000))
		}
		if got, err := fileSHA(filepath.Join(dest, "big.bin")); err != nil || got != want {
			t.Fatalf("big.bin: SHA-256 differs (%v)", err)
		}
		// A graceful stop hands its chunks back at once: no lease wait
		// (which would take 55 s or more).
		if done > 50*time.Second {
			t.Errorf("the job ended %s after the last SIGTERM: chunks waited for a lease", done)
		}
		attempts, chunks := f.attempts(t, "rolling")
		summary(t, "3 SIGTERMs with replacements; stop times %s; job done %s after the last stop (%s in all); %d attempts for %d chunks; SHA-256 ok",
			strings.Join(stops, ", "), done.Round(100*time.Millisecond), time.Since(jobBegan).Round(100*time.Millisecond), attempts, chunks)
	})
}

// TestWorkerKilledOnLastAttempt kills a worker mid-chunk when chunks have
// no retry left (S3FLEET_MAX_RETRIES=0). asynq's recoverer archives a task
// whose lease expired on its last attempt without running the handler, so
// the fleet must still notice: the job must end (the object completes or
// is reported failed with a cause), never wait for ever.
func TestWorkerKilledOnLastAttempt(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_MAX_RETRIES=0"))
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", "obj.bin", 64*mib)
	f.proxy.SetRule(throttle(2 * mib))
	victim := f.startWorker(t, "worker-1", "S3FLEET_CONCURRENCY=2")
	f.startWorker(t, "worker-2", "S3FLEET_CONCURRENCY=2")
	dest := t.TempDir()
	enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/obj.bin", dest+"/", "--wait", "--job", "last")
	j := f.waitProgress(t, "last", time.Minute, "a first chunk", func(j ledger.Job) bool { return j.BytesDone > 0 })
	victim.signal(t, syscall.SIGKILL)
	killed := time.Now()
	t.Logf("SIGKILL worker-1 at %d of %d bytes, max_retries 0", j.BytesDone, j.BytesTotal)
	// asynq recovers the dead worker's chunks 55–120 s after the kill; once
	// it has archived one, the fleet has 40 s to notice: its reconciler
	// looks every 30 s, and --wait then reads the job within 0.5 s (a CI
	// run saw the object failed 29.5 s after the archive, and the 30 s this
	// gave ended before --wait could exit).
	var code int
	var ok bool
	var archivedSeen time.Time
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		if code, ok = enq.wait(time.Second); ok {
			break
		}
		n, _ := f.rdb.ZCard(context.Background(), "asynq:{chunks}:archived").Result()
		if n > 0 && archivedSeen.IsZero() {
			archivedSeen = time.Now()
			t.Logf("%s after the kill: %d chunk task(s) archived by asynq (lease expired on the last attempt)", archivedSeen.Sub(killed).Round(time.Second), n)
		}
		if !archivedSeen.IsZero() && time.Since(archivedSeen) > 40*time.Second {
			break
		}
	}
	if !ok {
		archived, _ := f.rdb.ZCard(context.Background(), "asynq:{chunks}:archived").Result()
		o := f.objects(t, "last")["obj.bin"]
		summary(t, "BUG: job never ends: %d chunk task(s) archived by asynq's lease recovery, object still %s %s after the kill",
			archived, o.State, time.Since(killed).Round(time.Second))
		t.Fatalf("BUG: the job did not end: %d chunk task(s) archived by asynq (lease expired on the last attempt, handler never ran) "+
			"while the object stays %q in the fleet's records, so enqueue --wait waits for ever", archived, o.State)
	}
	o := f.objects(t, "last")["obj.bin"]
	switch {
	case code == 0:
		if got, err := fileSHA(filepath.Join(dest, "obj.bin")); err != nil || got != want {
			t.Fatalf("obj.bin: SHA-256 differs (%v)", err)
		}
	case o.State == ledger.Failed && o.Error != "":
	default:
		t.Fatalf("exit %d, object %s %q: want success or failed with a cause", code, o.State, o.Error)
	}
	summary(t, "SIGKILL with max_retries 0: job ended %s after the kill, exit %d, object %s %q",
		time.Since(killed).Round(time.Second), code, o.State, o.Error)
}
