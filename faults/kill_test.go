package faults

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/ledger"
)

// leaseKey is asynq's sorted set of the chunk tasks being run, scored by
// the time their lease ends; live workers push it forward every 5 s.
const leaseKey = "asynq:{chunks}:lease"

// orphans tracks the chunk tasks a killed worker was running: from the
// kill, how long until asynq took them back from the dead worker
// (recovered: out of the lease set) and until another worker ran them
// (retaken: in the lease set again, or done).
type orphans struct {
	killed    time.Time
	ids       []string
	recovered map[string]time.Duration
	retaken   map[string]time.Duration
}

// findOrphans takes the lease set snapshotted just after the kill, waits past a heartbeat,
// and keeps the tasks whose lease nobody extended: the dead worker's.
// known are orphans of an earlier kill, left out.
func findOrphans(t *testing.T, rdb redis.UniversalClient, killed time.Time, before []redis.Z, known map[string]bool) *orphans {
	t.Helper()
	time.Sleep(7 * time.Second) // a heartbeat (5 s) of every live worker
	after, err := rdb.ZRangeWithScores(context.Background(), leaseKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	now := map[string]float64{}
	for _, z := range after {
		now[z.Member.(string)] = z.Score
	}
	o := &orphans{killed: killed, recovered: map[string]time.Duration{}, retaken: map[string]time.Duration{}}
	for _, z := range before {
		id := z.Member.(string)
		if s, ok := now[id]; ok && s == z.Score && !known[id] {
			o.ids = append(o.ids, id)
			known[id] = true
		}
	}
	return o
}

// follow polls the lease set every 250 ms until every orphan was retaken or
// limit passed.
func (o *orphans) follow(rdb redis.UniversalClient, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for len(o.retaken) < len(o.ids) && time.Now().Before(deadline) {
		leased := map[string]bool{}
		members, err := rdb.ZRange(context.Background(), leaseKey, 0, -1).Result()
		if err == nil {
			for _, m := range members {
				leased[m] = true
			}
			// A task that is neither leased nor waiting has completed.
			waiting := map[string]bool{}
			for _, k := range []string{"asynq:{chunks}:retry", "asynq:{chunks}:scheduled"} {
				ms, _ := rdb.ZRange(context.Background(), k, 0, -1).Result()
				for _, m := range ms {
					waiting[m] = true
				}
			}
			pending, _ := rdb.LRange(context.Background(), "asynq:{chunks}:pending", 0, -1).Result()
			for _, m := range pending {
				waiting[m] = true
			}
			since := time.Since(o.killed)
			for _, id := range o.ids {
				_, rec := o.recovered[id]
				if _, done := o.retaken[id]; done {
					continue
				}
				switch {
				case !rec && !leased[id]:
					o.recovered[id] = since
					if !waiting[id] { // recovered and run to its end between two polls
						o.retaken[id] = since
					}
				case rec && (leased[id] || !waiting[id]):
					o.retaken[id] = since
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (o *orphans) waits() (recovered, retaken []time.Duration) {
	for _, id := range o.ids {
		if d, ok := o.recovered[id]; ok {
			recovered = append(recovered, d)
		}
		if d, ok := o.retaken[id]; ok {
			retaken = append(retaken, d)
		}
	}
	return recovered, retaken
}

// TestWorkerKilled downloads a 1 GiB object with three worker processes
// (4 chunks at a time each, every GET throttled to 4 MiB/s so the job
// lasts about 25 s): one worker is killed with SIGKILL mid-chunk at 20% and
// restarted, another at 45% and restarted. The chunks the dead workers held
// wait for asynq's lease (30 s) and its recovery sweep, then run elsewhere;
// the job completes with every byte right. Then a rolling restart: each
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
		known := map[string]bool{}
		var sets []*orphans
		var wg sync.WaitGroup
		var lastKill time.Time
		for i, at := range []float64{0.20, 0.45} {
			j := f.waitProgress(t, "killed", 3*time.Minute, "progress", func(j ledger.Job) bool { return fraction(j) >= at })
			if j.Done() {
				t.Fatal("the job finished before the kill")
			}
			// Chunks run in waves (every GET throttled alike), and progress
			// jumps as a wave lands, when few are leased: kill once at least
			// 9 of the 12 slots are busy (not counting the leases an earlier
			// victim left), so the victim (4 slots) holds some.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				ids, err := f.rdb.ZRange(context.Background(), leaseKey, 0, -1).Result()
				live := 0
				for _, id := range ids {
					if !known[id] {
						live++
					}
				}
				if err == nil && live >= 9 {
					break
				}
			}
			victim := workers[i]
			victim.signal(t, syscall.SIGKILL)
			lastKill = time.Now()
			victim.wait(10 * time.Second)
			// Every task the dead worker held is in the lease set now, and
			// stays there unextended.
			before, err := f.rdb.ZRangeWithScores(context.Background(), leaseKey, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("SIGKILL %s (pid %d) at %.0f%% (%d of %d bytes); %d chunk tasks leased at that moment",
				victim.name, victim.pid(), 100*fraction(j), j.BytesDone, j.BytesTotal, len(before))
			workers[i] = f.startWorker(parent, victim.name+"-restarted", "S3FLEET_CONCURRENCY=4")
			o := findOrphans(t, f.rdb, lastKill, before, known)
			t.Logf("%s held %d chunk tasks when it died: %v", victim.name, len(o.ids), o.ids)
			if len(o.ids) == 0 {
				t.Errorf("no orphaned chunk found for %s: it was not killed mid-chunk", victim.name)
			}
			sets = append(sets, o)
			wg.Add(1)
			go func() { defer wg.Done(); o.follow(f.rdb, 4*time.Minute) }()
		}
		code, ok := enq.wait(5 * time.Minute)
		done := time.Since(lastKill)
		wg.Wait()
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
		var report []string
		for i, o := range sets {
			rec, ret := o.waits()
			if len(ret) != len(o.ids) {
				t.Errorf("kill %d: %d of %d orphaned chunks were never seen retaken", i+1, len(ret), len(o.ids))
			}
			for _, d := range ret {
				// asynq: lease 30 s after the last heartbeat, recovered once
				// expired for 30 s, by a sweep every minute.
				if d > 2*time.Minute+10*time.Second {
					t.Errorf("kill %d: an orphaned chunk waited %s", i+1, d)
				}
			}
			report = append(report, "kill "+string(rune('1'+i))+": recovered "+durations(rec)+"; retaken "+durations(ret))
		}
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
	// it has archived one, the fleet has 30 s to notice.
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
		if !archivedSeen.IsZero() && time.Since(archivedSeen) > 30*time.Second {
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
