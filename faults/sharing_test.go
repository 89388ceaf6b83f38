package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/ledger"
)

// The tests of this file run one 96 MiB object, in 8 MiB chunks (12), on
// two workers, S3FLEET_HOST=host-a and host-b, that either share DEST (the
// control) or each see a DEST of their own: a private tmpfs mounted at the
// same path in a mount namespace of each worker, as two hosts with their
// own local disks. Chunks then land in two part files that each hold only
// their worker's chunks; the job must fail before any success is recorded,
// with a cause that says the workers do not share DEST and names both, and
// each worker must remove the part files it made.

const (
	sharingKey   = "big.bin"
	sharingSize  = 96 * mib
	sharingChunk = 8 * mib
	sharingJob   = "unshared"
	// notShared is the phrase the cause of an unshared DEST must carry.
	notShared = "do not share DEST"
	// tmpfsMagic is statfs's f_type of a tmpfs.
	tmpfsMagic = 0x01021994
)

// needPrivateMounts skips unless this process can give a worker a mount
// namespace with a tmpfs of its own: root, unshare (util-linux), and a
// probe mount that works.
func needPrivateMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: a private tmpfs at DEST needs a mount namespace (CAP_SYS_ADMIN)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("unshare (util-linux) not found: %v", err)
	}
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs -o size=1m tmpfs "$0"`, t.TempDir()).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs in a mount namespace of its own: %v: %s", err, bytes.TrimSpace(out))
	}
}

// privateDestArgs are the arguments of unshare that run the worker binary
// in a mount namespace of its own with a fresh tmpfs hiding dest. unshare
// and sh exec, so the process's PID is the worker's.
func privateDestArgs(dest string) []string {
	return []string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t tmpfs -o size=512m tmpfs "$0" && exec "$1"`, dest, filepath.Join(binDir, "worker")}
}

// destWorker is a worker process and the S3FLEET_HOST it was given.
type destWorker struct {
	host string
	p    *proc
}

// root is the worker's view of the file system: its own mounts.
func (w destWorker) root() string { return fmt.Sprintf("/proc/%d/root", w.p.pid()) }

// awaitLog waits until p logged msg; it fails the test when p exits first
// or limit passes.
func awaitLog(t *testing.T, p *proc, msg string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); !strings.Contains(p.log(), msg); {
		if !p.alive() {
			t.Fatalf("%s exited before logging %q:\n%s", p.name, msg, tail(p.log(), 3000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s:\n%s", p.name, msg, limit, tail(p.log(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chunkWork counts a worker's log records about chunk tasks: those that
// landed, and all of them (landed, failed, retried, skipped).
func chunkWork(p *proc) (landed, touched int) {
	for _, r := range p.logRecords() {
		if _, ok := r["chunk"].(float64); !ok {
			continue
		}
		if _, ok := r["transfer"]; !ok {
			continue
		}
		touched++
		if r["msg"] == "chunk landed" {
			landed++
		}
	}
	return landed, touched
}

// checkPrivateDests makes sure the injection took: each worker sees a
// tmpfs at dest, and none of them sees the host's directory or the other's.
func checkPrivateDests(t *testing.T, dest string, workers []destWorker) {
	t.Helper()
	devOf := func(path string) uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		return st.Dev
	}
	seen := map[uint64]string{devOf(dest): "the host"}
	for _, w := range workers {
		view := w.root() + dest
		var fs syscall.Statfs_t
		if err := syscall.Statfs(view, &fs); err != nil {
			t.Fatalf("statfs %s: %v", view, err)
		}
		if fs.Type != tmpfsMagic {
			t.Fatalf("injection failed: %s (DEST as %s sees it) is no tmpfs (f_type %#x)", view, w.host, fs.Type)
		}
		dev := devOf(view)
		if other, ok := seen[dev]; ok {
			t.Fatalf("injection failed: %s sees the same DEST file system as %s", w.host, other)
		}
		seen[dev] = w.host
	}
}

// zeroChunks counts the chunk-sized blocks of path that are all zeros.
func zeroChunks(path string, chunk int64) (zero, total int, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer fh.Close()
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(fh, buf)
		if n > 0 {
			total++
			if bytes.Count(buf[:n], []byte{0}) == n {
				zero++
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return zero, total, nil
		}
		if err != nil {
			return zero, total, err
		}
	}
}

// side is one view of DEST: a worker's private one, or the host's.
type side struct {
	name string
	dir  string // DEST as seen from this side
}

// finalFile describes the file under the final name on a side, or "" when
// there is none.
func finalFile(dir string, want [32]byte) string {
	path := filepath.Join(dir, sharingKey)
	st, err := os.Lstat(path)
	if err != nil {
		return ""
	}
	sum, err := fileSHA(path)
	desc := fmt.Sprintf("%s %d bytes", sharingKey, st.Size())
	switch {
	case err != nil:
		desc += fmt.Sprintf(" (unreadable: %v)", err)
	case sum == want:
		desc += ", SHA-256 ok"
	default:
		desc += ", SHA-256 differs"
	}
	if zero, total, err := zeroChunks(path, sharingChunk); err == nil {
		desc += fmt.Sprintf(", %d of %d chunks all zeros", zero, total)
	}
	return desc
}

// parseStatus reads the JSON line of `enqueue status --json` from out.
func parseStatus(out string) (statusJSON, error) {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, `{"job"`) {
			var st statusJSON
			err := json.Unmarshal([]byte(line), &st)
			return st, err
		}
	}
	return statusJSON{}, fmt.Errorf("no JSON line in the output of status: %s", tail(out, 2000))
}

// unsharedRun is a job enqueued for two workers that each see their own
// DEST.
type unsharedRun struct {
	what    string // what was injected, for the summary
	dest    string
	want    [32]byte
	workers []destWorker
	enq     *proc // enqueue --wait, running
	led     *ledger.Ledger
	status  func() (statusJSON, error)
}

// check waits for the job and asserts that it failed with a cause naming
// both workers, that no side has the final file, and that every part file
// went.
func (r unsharedRun) check(t *testing.T) {
	t.Helper()
	code, ok := r.enq.wait(2 * time.Minute)
	if !ok {
		j, _ := r.led.GetJob(context.Background(), sharingJob)
		summary(t, "%s; found: enqueue --wait still running after 2m, job %+v", r.what, j)
		t.Fatalf("enqueue --wait did not end within 2 minutes: job %+v\n%s", j, tail(r.enq.log(), 3000))
	}
	ctx := context.Background()
	job, err := r.led.GetJob(ctx, sharingJob)
	if err != nil {
		t.Errorf("read job %s: %v", sharingJob, err)
	}
	var obj ledger.JobObject
	var nobj int
	if err := r.led.JobObjects(ctx, sharingJob, func(o ledger.JobObject) error {
		nobj++
		obj = o
		return nil
	}); err != nil {
		t.Errorf("read the objects of job %s: %v", sharingJob, err)
	}
	st, stErr := r.status()

	sides := make([]side, 0, len(r.workers)+1)
	for _, w := range r.workers {
		sides = append(sides, side{name: w.host, dir: w.root() + r.dest})
	}
	sides = append(sides, side{name: "host DEST", dir: r.dest})
	partsAtEnd := map[string]int{}
	finals := map[string]string{}
	for _, s := range sides {
		partsAtEnd[s.name] = len(partFiles(s.dir))
		finals[s.name] = finalFile(s.dir, r.want)
	}
	// Each worker removes the part files it made: wait for that.
	var left map[string][]string
	began := time.Now()
	for deadline := began.Add(30 * time.Second); ; {
		left = map[string][]string{}
		for _, s := range sides {
			if p := partFiles(s.dir); len(p) > 0 {
				left[s.name] = p
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cleared := time.Since(began)
	for _, s := range sides {
		if f := finalFile(s.dir, r.want); f != "" {
			finals[s.name] = f // appeared since
		}
	}

	var views []string
	for _, s := range sides {
		final := finals[s.name]
		if final == "" {
			final = "no final file"
		}
		views = append(views, fmt.Sprintf("%s: %s, %d part file(s) when enqueue ended, %d after %s",
			s.name, final, partsAtEnd[s.name], len(left[s.name]), cleared.Round(100*time.Millisecond)))
	}
	var work []string
	for _, w := range r.workers {
		landed, touched := chunkWork(w.p)
		work = append(work, fmt.Sprintf("%s pid %d: %d chunk log records, %d landed", w.host, w.p.pid(), touched, landed))
		if touched == 0 {
			t.Errorf("%s (pid %d) logged no chunk: it never ran one, so DEST sharing was not tested", w.host, w.p.pid())
		}
		if !w.p.alive() {
			t.Errorf("%s (pid %d) exited: %v", w.host, w.p.pid(), w.p.err)
		}
	}
	summary(t, "%s; found: enqueue exit %d, object %s (job: %d succeeded, %d failed), cause %q; %s; %s",
		r.what, code, obj.State, job.Succeeded, job.Failed, tail(obj.Error, 400),
		strings.Join(views, "; "), strings.Join(work, "; "))

	if code != 1 {
		t.Errorf("enqueue --wait exited %d, want 1 (the object must fail):\n%s", code, tail(r.enq.log(), 2000))
	}
	if nobj != 1 {
		t.Errorf("job %s has %d objects, want 1", sharingJob, nobj)
	}
	if obj.State != ledger.Failed {
		t.Errorf("object %s is %q, want %q", sharingKey, obj.State, ledger.Failed)
	}
	if job.Succeeded != 0 {
		t.Errorf("job %s recorded %d successes, want none", sharingJob, job.Succeeded)
	}
	for _, want := range []string{notShared, "host-a", "host-b"} {
		if !strings.Contains(obj.Error, want) {
			t.Errorf("the cause does not contain %q: %q", want, obj.Error)
		}
	}
	for _, w := range r.workers {
		if name := fmt.Sprintf("%s (pid %d)", w.host, w.p.pid()); !strings.Contains(obj.Error, name) {
			t.Errorf("the cause does not name the worker as %q: %q", name, obj.Error)
		}
	}
	switch {
	case stErr != nil:
		t.Errorf("enqueue status: %v", stErr)
	case st.Counts.Failed != 1 || st.Counts.Succeeded != 0 || len(st.Items) != 1:
		t.Errorf("enqueue status: %d failed, %d succeeded, %d objects listed; want 1, 0, 1", st.Counts.Failed, st.Counts.Succeeded, len(st.Items))
	case st.Items[0].State != "failed" || !strings.Contains(st.Items[0].Error, notShared):
		t.Errorf("enqueue status lists %s as %q with error %q; want failed, %q", st.Items[0].Source, st.Items[0].State, st.Items[0].Error, notShared)
	}
	for _, s := range sides {
		if f := finals[s.name]; f != "" {
			t.Errorf("%s has a file under the final name: %s", s.name, f)
		}
		if p := left[s.name]; len(p) > 0 {
			t.Errorf("%s still has part files %s after the job ended: %v", s.name, cleared.Round(100*time.Millisecond), p)
		}
	}
}

// TestUnsharedDestMountNamespaces runs two workers on the host's network,
// each in a mount namespace of its own with a private tmpfs at DEST, and
// enqueues from the host: the job must fail, saying the workers do not
// share DEST.
func TestUnsharedDestMountNamespaces(t *testing.T) {
	tier(t)
	needPrivateMounts(t)
	f := newFleet(t, withEnv("S3FLEET_CONCURRENCY=2", "S3FLEET_CHUNK_SIZE=8MiB"))
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", sharingKey, sharingSize)
	// 1 s a chunk, 4 at a time: the job lasts seconds, so neither worker
	// takes all 12 chunks before the other has one.
	f.proxy.SetRule(throttle(8 * mib))
	dest := t.TempDir()
	var workers []destWorker
	for _, host := range []string{"host-a", "host-b"} {
		env := append(append([]string{}, f.env...), "S3FLEET_HOST="+host)
		p := start(t, "worker-"+host, env, exec.Command("unshare", privateDestArgs(dest)...))
		workers = append(workers, destWorker{host: host, p: p})
	}
	for _, w := range workers {
		awaitLog(t, w.p, "worker started", 30*time.Second)
	}
	checkPrivateDests(t, dest, workers)
	enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/"+sharingKey, dest+"/", "--wait", "--job", sharingJob)
	unsharedRun{
		what: fmt.Sprintf("injected: 96 MiB in 12 chunks, 2 workers (host-a pid %d, host-b pid %d) each with a private tmpfs at DEST",
			workers[0].p.pid(), workers[1].p.pid()),
		dest: dest, want: want, workers: workers, enq: enq, led: f.led,
		status: func() (statusJSON, error) {
			code, out := f.enqueue(t, "status", sharingJob, "--json", "--all")
			if code != 0 {
				return statusJSON{}, fmt.Errorf("status %s: exit %d: %s", sharingJob, code, tail(out, 2000))
			}
			return parseStatus(out)
		},
	}.check(t)
}

// TestSharedDestTwoWorkers is the control: the same object and settings,
// two workers with one DEST. The job succeeds, both ran chunks.
func TestSharedDestTwoWorkers(t *testing.T) {
	tier(t)
	f := newFleet(t, withEnv("S3FLEET_CONCURRENCY=2", "S3FLEET_CHUNK_SIZE=8MiB"))
	f.createBucket(t, "bkt")
	want := putLarge(t, f.s3c, "bkt", sharingKey, sharingSize)
	f.proxy.SetRule(throttle(8 * mib))
	dest := t.TempDir()
	var workers []destWorker
	for _, host := range []string{"host-a", "host-b"} {
		workers = append(workers, destWorker{host: host, p: f.startWorker(t, "worker-"+host, "S3FLEET_HOST="+host)})
	}
	for _, w := range workers {
		awaitLog(t, w.p, "worker started", 30*time.Second)
	}
	began := time.Now()
	code, out := f.enqueue(t, "s3://bkt/"+sharingKey, dest+"/", "--wait", "--job", "shared")
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("enqueue --wait exited %d:\n%s", code, tail(out, 3000))
	}
	verified := verify(t, dest, "", map[string][32]byte{sharingKey: want})
	if left := partFiles(dest); len(left) != 0 {
		t.Errorf("part files left: %v", left)
	}
	var work []string
	for _, w := range workers {
		chunks, landed := w.p.landed()
		if chunks == 0 {
			t.Errorf("%s ran no chunk", w.host)
		}
		work = append(work, fmt.Sprintf("%s %d chunks %.1f MB", w.host, chunks, mb(landed)))
	}
	summary(t, "96 MiB in 12 chunks, 2 workers on one DEST: exit 0 in %s, %d verified, no part file; %s",
		took.Round(100*time.Millisecond), verified, strings.Join(work, ", "))
}

// TestUnsharedDestNetns is TestUnsharedDestMountNamespaces with the fleet
// as separate hosts (see TestSeveralHosts): Redis and S3 in one network
// namespace, each worker in another, and in a mount namespace of its own
// with a private tmpfs at DEST. The enqueuer runs in the servers' namespace
// on the host's file system.
func TestUnsharedDestNetns(t *testing.T) {
	tier(t)
	needPrivateMounts(t)
	h := newHostsNet(t, "s3u", "10.78.0.")
	net, tag, srv, rds, s3srv, rdb, s3c := h.net, h.tag, h.srv, h.redis, h.s3, h.rdb, h.s3c
	want := putLarge(t, s3c, "bkt", sharingKey, sharingSize)

	env := append(os.Environ(), s3srv.Env()...)
	env = append(env, "S3FLEET_ALLOW_DEST="+os.TempDir(), "S3FLEET_REDIS="+rds.URL, "S3FLEET_ENDPOINT="+s3srv.Endpoint, "S3FLEET_RETRY_DELAY=100ms", "S3FLEET_POLL_INTERVAL=50ms",
		"S3FLEET_LOG_FORMAT=json", "S3FLEET_LOG_LEVEL=debug", "S3FLEET_SHUTDOWN_TIMEOUT=30s",
		"S3FLEET_CONCURRENCY=2", "S3FLEET_CHUNK_SIZE=8MiB",
		// No fault proxy here: each worker's own cap (16 MiB/s) makes the
		// job last seconds, so both workers get chunks.
		"S3FLEET_BANDWIDTH=16MiB")
	dest := t.TempDir()
	var workers []destWorker
	for i, host := range []string{"host-a", "host-b"} {
		ns, _, err := net.AddHost(t, fmt.Sprintf("%s-w%d", tag, i+1), 11+i)
		if err != nil {
			t.Fatal(err)
		}
		wenv := append(append([]string{}, env...), "S3FLEET_HOST="+host)
		p := start(t, "worker-"+host, wenv, ns.Command("unshare", privateDestArgs(dest)...))
		workers = append(workers, destWorker{host: host, p: p})
	}
	for _, w := range workers {
		awaitLog(t, w.p, "worker started", 30*time.Second)
	}
	checkPrivateDests(t, dest, workers)
	enqueueBin := filepath.Join(binDir, "enqueue")
	enq := start(t, "enqueue", env, srv.Command(enqueueBin, "s3://bkt/"+sharingKey, dest+"/", "--wait", "--job", sharingJob))
	unsharedRun{
		what: fmt.Sprintf("injected: 96 MiB in 12 chunks, 2 worker netns hosts (host-a pid %d, host-b pid %d) each with a private tmpfs at DEST",
			workers[0].p.pid(), workers[1].p.pid()),
		dest: dest, want: want, workers: workers, enq: enq, led: ledger.New(rdb, time.Hour),
		status: func() (statusJSON, error) {
			p := start(t, "status", env, srv.Command(enqueueBin, "status", sharingJob, "--json", "--all"))
			code, ok := p.wait(time.Minute)
			if !ok || code != 0 {
				return statusJSON{}, fmt.Errorf("status %s: ended %v, exit %d: %s", sharingJob, ok, code, tail(p.log(), 2000))
			}
			return parseStatus(p.log())
		},
	}.check(t)
}
