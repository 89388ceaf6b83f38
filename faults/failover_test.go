package faults

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// TestFailover kills workers with SIGKILL twenty times, alternately while
// they run chunk tasks (of a 256 MiB object) and batch tasks (of 240 small
// objects, four to a batch), every GET throttled so that tasks last many
// seconds. The fleet's watchdog hands the dead worker's tasks back to their
// queues once it missed its beats for 3 s, and a replacement starts then.
// Every task the dead worker held must run on another worker well within
// asynq's floor of 55 s; the test prints the failover times and their p95. Then both jobs
// complete with every byte right.
func TestFailover(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_BATCH_OBJECTS=4"))
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", "big.bin", 256*mib)
	small := putMany(t, f.s3c, "bkt", 240, func(i int) string { return fmt.Sprintf("small/%03d", i) }, func(int) int64 { return 48 * kib })
	f.proxy.SetRule(func(r *http.Request) testenv.Fault {
		switch {
		case !testenv.IsObjectGET(r):
			return testenv.Fault{}
		case strings.Contains(r.URL.Path, "/small/"):
			return testenv.Fault{Rate: 16 * kib} // 3 s an object, 12 s a batch
		}
		return testenv.Fault{Rate: 384 * kib} // about 20 s a chunk
	})
	workers := []*proc{
		f.startWorker(t, "w1", "S3FLEET_CONCURRENCY=4"),
		f.startWorker(t, "w2", "S3FLEET_CONCURRENCY=4"),
		f.startWorker(t, "w3", "S3FLEET_CONCURRENCY=4"),
	}
	bigDest, smallDest := t.TempDir(), t.TempDir()
	smallJob := f.startEnqueue(t, "enqueue-small", nil, "s3://bkt/small/", smallDest+"/", "--wait", "--job", "small")
	f.waitProgress(t, "small", time.Minute, "listed", func(j ledger.Job) bool { return j.Listed })
	bigJob := f.startEnqueue(t, "enqueue-big", nil, "s3://bkt/big.bin", bigDest+"/", "--wait", "--job", "big")

	const kills = 20
	waits := map[string][]time.Duration{}
	var all, requeued []time.Duration
	killedKind := map[string]int{}
	for i := 0; i < kills; i++ {
		// Alternately a worker running chunks and one running batches.
		// The queue is first in, first out, so one kind may run alone for
		// a while (the small job's batches, queued first, take every slot
		// until they thin out): after 5 s without the kind wanted, any
		// task will do.
		kind := []string{"chunk:", "batch:"}[i%2]
		vi, held := -1, []string(nil)
		began := time.Now()
		for deadline := began.Add(time.Minute); vi < 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if time.Since(began) > 5*time.Second {
				kind = ""
			}
			// The worker that runs the most of the kind: the chunks run
			// only in the last kills (the batches, queued first, take every
			// slot until then), and a victim running batches too would
			// leave few chunks failed over.
			for j, w := range workers {
				if h := runningOf(t, f.rdb, w.pid(), kind); len(h) > len(held) {
					vi, held = j, h
				}
			}
		}
		if vi < 0 {
			t.Fatalf("kill %d: no worker ran a %s task for a minute (jobs: %+v, %+v)", i+1, kind, f.job(t, "big"), f.job(t, "small"))
		}
		if kind == "" {
			_, id, _ := strings.Cut(held[0], "\x00")
			kind = id[:strings.IndexByte(id, ':')+1] // for the log
		}
		victim := workers[vi]
		held = runningOf(t, f.rdb, victim.pid(), "") // every task it holds fails over
		for _, field := range held {
			_, id, _ := strings.Cut(field, "\x00")
			killedKind[id[:strings.IndexByte(id, ':')]]++
		}
		victim.signal(t, syscall.SIGKILL)
		killed := time.Now()
		victim.wait(10 * time.Second)
		// Every slot of the survivors is busy: the replacement starts once
		// the watchdog has handed the dead worker's tasks back to the
		// queues (it has spare slots then, as a fleet with room has).
		var handedBack time.Duration
		for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if len(runningOf(t, f.rdb, victim.pid(), "")) == 0 {
				handedBack = time.Since(killed)
				break
			}
		}
		requeued = append(requeued, handedBack)
		workers[vi] = f.startWorker(t, fmt.Sprintf("%s-%d", strings.SplitN(victim.name, "-", 2)[0], i+1), "S3FLEET_CONCURRENCY=4")
		seen := retaken(f.rdb, victim.pid(), held, killed, 45*time.Second)
		got := waitsOf(held, seen)
		if len(got) != len(held) {
			t.Errorf("kill %d (%s, pid %d): %d of %d tasks it held were not running again 45 s later", i+1, victim.name, victim.pid(), len(held)-len(got), len(held))
		}
		for k, field := range held {
			if d, ok := seen[field]; ok {
				_, id, _ := strings.Cut(field, "\x00")
				kind := id[:strings.IndexByte(id, ':')]
				waits[kind] = append(waits[kind], d)
				if d > 20*time.Second {
					t.Errorf("kill %d: task %s ran again only %s after the kill", i+1, held[k], d)
				}
			}
		}
		all = append(all, got...)
		t.Logf("kill %d: %s (pid %d) held %d tasks (%s…); handed back after %s, running elsewhere after %s",
			i+1, victim.name, victim.pid(), len(held), kind, handedBack.Round(10*time.Millisecond), durations(got))
	}
	if killedKind["chunk"] < 8 || killedKind["batch"] < 8 {
		t.Errorf("the kills took %d chunk and %d batch tasks from their workers, want at least 8 of each", killedKind["chunk"], killedKind["batch"])
	}
	f.proxy.SetRule(nil) // the rest at full speed
	for _, e := range []*proc{bigJob, smallJob} {
		if code, ok := e.wait(5 * time.Minute); !ok || code != 0 {
			t.Fatalf("%s: ended %v, exit %d:\n%s", e.name, ok, code, tail(e.log(), 3000))
		}
	}
	if got, err := fileSHA(filepath.Join(bigDest, "big.bin")); err != nil || got != want {
		t.Fatalf("big.bin: SHA-256 differs (%v)", err)
	}
	if n := verify(t, smallDest, "small/", small); n != len(small) {
		t.Fatalf("%d of %d small objects right", n, len(small))
	}
	if left := append(partFiles(bigDest), partFiles(smallDest)...); len(left) != 0 {
		t.Errorf("part files left: %v", left)
	}
	var kinds []string
	for k, ds := range waits {
		kinds = append(kinds, fmt.Sprintf("%s %s", k, durations(ds)))
	}
	sort.Strings(kinds)
	summary(t, "%d SIGKILLs, %d tasks failed over: handed back to the queues after %s (p95 %s); running elsewhere after %s; p95 %s, max %s (asynq alone: 62–115 s); both jobs done, SHA-256 ok",
		kills, len(all), durations(requeued), percentile(requeued, 0.95).Round(10*time.Millisecond), strings.Join(kinds, "; "),
		percentile(all, 0.95).Round(10*time.Millisecond), percentile(all, 1).Round(10*time.Millisecond))
}

// percentile is the p-th quantile of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// TestPausedWorkerWritesNothing stops a worker with SIGSTOP while it runs
// chunks of a 128 MiB object. The fleet takes it for dead after 3 s, its
// chunks run elsewhere and the object is finalized; then the worker gets
// SIGCONT, traced by strace. It must write nothing into the finished file
// (no pwrite, no fallocate to it: its inode, size, mtime and bytes stay as
// finalized), learn that it was taken for dead, and go on serving.
func TestPausedWorkerWritesNothing(t *testing.T) {
	tier(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace is needed (apt-get install strace): it shows what the woken worker writes")
	}
	f := newFleet(t)
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", "obj.bin", 128*mib)
	f.proxy.SetRule(throttle(2 * mib)) // 4 s a chunk
	victim := f.startWorker(t, "victim", "S3FLEET_CONCURRENCY=4")
	dest := t.TempDir()
	enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/obj.bin", dest+"/", "--wait", "--job", "paused")
	var held []string
	for deadline := time.Now().Add(30 * time.Second); len(held) < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		held = runningOf(t, f.rdb, victim.pid(), "chunk:")
	}
	if len(held) == 0 {
		t.Fatal("the victim ran no chunk")
	}
	time.Sleep(time.Second) // mid-chunk: some bytes of each written
	victim.signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	t.Logf("SIGSTOP victim (pid %d) running %d chunks", victim.pid(), len(held))
	f.startWorker(t, "survivor", "S3FLEET_CONCURRENCY=4")
	code, ok := enq.wait(3 * time.Minute)
	if !ok || code != 0 {
		t.Fatalf("enqueue --wait with the victim stopped: ended %v, exit %d:\n%s", ok, code, tail(enq.log(), 3000))
	}
	final := filepath.Join(dest, "obj.bin")
	before, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	finalized := time.Since(stopped)
	t.Logf("finalized %s after the SIGSTOP, without the victim", finalized.Round(100*time.Millisecond))

	trace := filepath.Join(t.TempDir(), "strace.out")
	st := exec.Command(strace, "-f", "-qq", "-y", "-e", "trace=pwrite64,write,pwritev,pwritev2,fallocate,ftruncate", "-o", trace, "-p", fmt.Sprint(victim.pid()))
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // strace attaches to every thread
	victim.signal(t, syscall.SIGCONT)
	woke := time.Now()
	// It learns at its next beat that it was taken for dead.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(victim.log(), "taken for dead"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the woken worker did not log that it was taken for dead:\n%s", tail(victim.log(), 3000))
		}
	}
	time.Sleep(3 * time.Second) // let whatever it had in hand play out
	_ = st.Process.Signal(syscall.SIGINT)
	_ = st.Wait()
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var writes []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dest) {
			writes = append(writes, line)
		}
	}
	after, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	bi, ai := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t)
	if len(writes) > 0 {
		t.Errorf("the woken worker wrote %d times into %s:\n%s", len(writes), dest, strings.Join(writes[:min(len(writes), 10)], "\n"))
	}
	if bi.Ino != ai.Ino || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("the finished file changed: inode %d→%d, mtime %v→%v, size %d→%d", bi.Ino, ai.Ino, before.ModTime(), after.ModTime(), before.Size(), after.Size())
	}
	if got, err := fileSHA(final); err != nil || got != want {
		t.Fatalf("obj.bin: SHA-256 differs (%v)", err)
	}
	if left := partFiles(dest); len(left) != 0 {
		t.Errorf("part files left: %v", left)
	}
	if !victim.alive() {
		t.Fatal("the woken worker exited")
	}
	o := f.objects(t, "paused")["obj.bin"]
	if o.State != ledger.Success {
		t.Fatalf("object %s %q", o.State, o.Error)
	}
	// asynq's acknowledgements of its stale runs are dropped (liveness'
	// StaleWrites; TestStaleWritesDropped proves it), unless asynq's own
	// lease of them ran out while it was stopped and it writes nothing.
	dropped := strings.Count(victim.log(), "asynq's write about a task handed to another worker dropped")
	summary(t, "SIGSTOP mid-chunk (%d chunks held), finalized without it %s later; SIGCONT: taken-for-dead logged, writes after finalize %d (strace), asynq writes dropped %d, inode and mtime unchanged, SHA-256 ok; strace lines %d, woke %s ago",
		len(held), finalized.Round(100*time.Millisecond), len(writes), dropped, strings.Count(string(out), "\n"), time.Since(woke).Round(100*time.Millisecond))
}
