package faults

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestForgedTasks puts tasks no enqueuer writes straight into Redis with
// asynq's client: invalid JSON, a negative range, a range past the size, a
// relative destination, and a well-formed chunk with a destination outside
// any job and no record behind it. Each fails without a retry (archived
// with its cause), nothing is written, the worker keeps running and then
// completes a normal job. Where the worker has allow_dest, a task forged
// together with its ledger record is refused too.
func TestForgedTasks(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.createBucket(t, "bkt")
	sum := putBytes(t, f.s3c, "bkt", "obj", 10, false)
	w := f.startWorker(t, "worker")
	outside := t.TempDir()
	q := asynq.NewClientFromRedisClient(f.rdb)
	insp := asynq.NewInspectorFromRedisClient(f.rdb)

	payload := func(mutate func(map[string]any)) []byte {
		p := map[string]any{"job": "forged", "transfer": "f0f0f0f0f0f0f0f0f0f0f0f0", "gen": 1, "bucket": "bkt", "key": "obj",
			"size": 10, "chunks": 1, "chunk": 0, "first": 0, "last": 9, "dest": filepath.Join(outside, "evil")}
		mutate(p)
		b, _ := json.Marshal(p)
		return b
	}
	forged := []struct {
		name, queue, typ string
		payload          []byte
	}{
		{"invalid-json", tasks.QueueChunks, tasks.TypeChunk, []byte("{nope")},
		{"negative-range", tasks.QueueChunks, tasks.TypeChunk, payload(func(p map[string]any) { p["first"] = -5 })},
		{"past-the-size", tasks.QueueChunks, tasks.TypeChunk, payload(func(p map[string]any) { p["last"] = 100 })},
		{"relative-dest", tasks.QueueChunks, tasks.TypeChunk, payload(func(p map[string]any) { p["dest"] = "../../evil" })},
		{"dest-outside-no-record", tasks.QueueChunks, tasks.TypeChunk, payload(func(map[string]any) {})},
		{"assemble-garbage", tasks.QueueAssemble, tasks.TypeAssemble, []byte("[]")},
	}
	for _, fo := range forged {
		if _, err := q.Enqueue(asynq.NewTask(fo.typ, fo.payload), asynq.Queue(fo.queue), asynq.MaxRetry(5),
			asynq.TaskID("forged:"+fo.name)); err != nil {
			t.Fatal(err)
		}
	}
	causes := map[string]string{}
	deadline := time.Now().Add(time.Minute)
	for len(causes) < len(forged) && time.Now().Before(deadline) {
		for _, fo := range forged {
			info, err := insp.GetTaskInfo(fo.queue, "forged:"+fo.name)
			if err != nil || info.State != asynq.TaskStateArchived {
				continue
			}
			if info.Retried != 0 {
				t.Errorf("%s: retried %d times, want archived at once", fo.name, info.Retried)
			}
			causes[fo.name] = info.LastErr
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, fo := range forged {
		c, ok := causes[fo.name]
		switch {
		case !ok:
			t.Errorf("%s: not archived within a minute", fo.name)
		case c == "":
			t.Errorf("%s: archived without a cause", fo.name)
		default:
			t.Logf("%s: archived without retry: %s", fo.name, c)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("forged tasks wrote %v", entries)
	}
	if !w.alive() {
		t.Fatalf("the worker died: %s", tail(w.log(), 2000))
	}
	logged := 0
	for _, fo := range forged {
		if strings.Contains(w.log(), "forged:"+fo.name) || strings.Contains(w.log(), causes[fo.name]) {
			logged++
		}
	}

	dest := filepath.Join(t.TempDir(), "obj")
	if code, out := f.enqueue(t, "s3://bkt/obj", dest, "--wait"); code != 0 {
		t.Fatalf("a normal job after the forged tasks: exit %d:\n%s", code, tail(out, 2000))
	}
	if got, err := fileSHA(dest); err != nil || got != sum {
		t.Fatalf("normal job: %v", err)
	}

	guarded := "no allow_dest in this worker: a task forged with its ledger record was not tried"
	t.Run("forged record outside allow_dest", func(t *testing.T) {
		w.signal(t, syscall.SIGTERM)
		w.wait(time.Minute)
		root := t.TempDir()
		gw := f.startWorker(t, "guarded-worker", "S3FLEET_ALLOW_DEST="+root)
		evil := filepath.Join(outside, "evil-with-record")
		id := "e0e0e0e0e0e0e0e0e0e0e0e0"
		ctx := context.Background()
		if err := f.led.CreateJob(ctx, "forged-record", "s3://bkt/obj", evil, time.Now()); err != nil {
			t.Fatal(err)
		}
		x := ledger.Transfer{ID: id, Bucket: "bkt", Key: "obj", Size: 10, ChunkSize: 10, Chunks: 1, Dest: evil}
		if _, _, err := f.led.Attach(ctx, ledger.AttachRequest{Job: "forged-record", Mode: ledger.ModeCreate, New: x}, time.Now()); err != nil {
			t.Fatal(err)
		}
		p := payload(func(p map[string]any) { p["job"], p["transfer"], p["dest"] = "forged-record", id, evil })
		if _, err := q.Enqueue(asynq.NewTask(tasks.TypeChunk, p), asynq.Queue(tasks.QueueChunks), asynq.MaxRetry(5),
			asynq.TaskID("forged:with-record")); err != nil {
			t.Fatal(err)
		}
		var info *asynq.TaskInfo
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if i, err := insp.GetTaskInfo(tasks.QueueChunks, "forged:with-record"); err == nil && i.State == asynq.TaskStateArchived {
				info = i
				break
			}
		}
		if _, err := os.Lstat(evil); !os.IsNotExist(err) {
			t.Fatalf("the guarded worker wrote outside allow_dest: %v", err)
		}
		if parts, _ := filepath.Glob(location.PartGlob(evil, id)); len(parts) > 0 {
			t.Fatalf("the guarded worker made a part file outside allow_dest: %v", parts)
		}
		if info == nil || info.Retried != 0 {
			t.Fatalf("the task forged with its record was not archived without retry: %+v", info)
		}
		if !gw.alive() {
			t.Fatal("the guarded worker died")
		}
		guarded = "a task forged with its ledger record, outside allow_dest: refused (" + tail(info.LastErr, 100) + ")"
	})
	summary(t, "%d forged tasks archived without retry, nothing written, worker alive (%d causes in its log), normal job ok; %s",
		len(causes), logged, guarded)
}

// runBin runs a binary of the fleet to its end and returns its exit code and output.
func runBin(f *fleet, name string, args ...string) (int, string) {
	cmd := f.command(name, args...)
	cmd.Env = f.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			return ee.ExitCode(), string(out)
		}
		return -1, string(out)
	}
	return 0, string(out)
}

// TestSymlinkedDestination plants symbolic links where the fleet writes,
// pointing at files and directories outside the destination: the fleet must
// never write through them.
func TestSymlinkedDestination(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.createBucket(t, "bkt")
	sum := putBytes(t, f.s3c, "bkt", "obj", 3*mib, false)
	var findings []string

	t.Run("part file is a symlink", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		target := filepath.Join(outside, "precious")
		if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, "obj")
		// Enqueue with no worker running, learn the transfer, plant links
		// where its part file would be if its name could be guessed (the
		// old fixed name, and one token), then let a worker at it. Part
		// files are named by a random token their creator draws, so the
		// worker creates a name of its own, with O_EXCL and O_NOFOLLOW.
		enq := f.startEnqueue(t, "enqueue", nil, "s3://bkt/obj", dest, "--wait", "--job", "part-link")
		var id string
		for deadline := time.Now().Add(30 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, o := range f.objects(t, "part-link") {
				id = o.ID
			}
		}
		if id == "" {
			t.Fatal("the job was not recorded")
		}
		for _, part := range []string{dest + ".s3fleet-" + id + ".part", location.PartPath(dest, id, strings.Repeat("0", location.PartTokenLen))} {
			if err := os.Symlink(target, part); err != nil {
				t.Fatal(err)
			}
		}
		w := f.startWorker(t, "worker")
		code, ok := enq.wait(2 * time.Minute)
		if !ok {
			t.Fatal("the job did not end")
		}
		if got, _ := os.ReadFile(target); string(got) != "precious" {
			t.Errorf("BUG: the worker wrote through the planted part-file link into %s", target)
		}
		o := f.objects(t, "part-link")["obj"]
		t.Logf("exit %d; object %s %q", code, o.State, o.Error)
		if code == 0 {
			st, err := os.Lstat(dest)
			if err != nil || !st.Mode().IsRegular() {
				t.Errorf("the job succeeded but %s is not a regular file: %v", dest, err)
			} else if got, _ := fileSHA(dest); got != sum {
				t.Error("the job succeeded with wrong bytes")
			}
		} else if o.State != ledger.Failed || o.Error == "" {
			t.Errorf("exit %d but object %s %q", code, o.State, o.Error)
		}
		if !w.alive() {
			t.Error("the worker died")
		}
		findings = append(findings, "part-file link: "+describe(code, o))
	})

	for _, tc := range []struct {
		name      string
		existing  bool // the link points at an existing file
		overwrite bool
	}{
		{"final path links to a missing file", false, false},
		{"final path links to a missing file, --overwrite", false, true},
		{"final path links to an existing file, --overwrite", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			target := filepath.Join(outside, "target")
			if tc.existing {
				if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dest := filepath.Join(dir, "obj")
			if err := os.Symlink(target, dest); err != nil {
				t.Fatal(err)
			}
			f.startWorker(t, "worker")
			args := []string{"s3://bkt/obj", dest, "--wait"}
			if tc.overwrite {
				args = append(args, "--overwrite")
			}
			code, out := f.enqueue(t, args...)
			got, err := os.ReadFile(target)
			switch {
			case tc.existing && string(got) != "precious":
				t.Errorf("BUG: the fleet wrote through the link at the final path into %s", target)
			case !tc.existing && !os.IsNotExist(err):
				t.Errorf("BUG: the fleet created %s through the link at the final path", target)
			}
			st, _ := os.Lstat(dest)
			state := "left as a link"
			if st != nil && st.Mode().IsRegular() {
				state = "replaced by the object"
				if s, _ := fileSHA(dest); s != sum {
					t.Error("the link was replaced by wrong bytes")
				}
			}
			if tc.overwrite && code != 0 {
				t.Errorf("--overwrite: exit %d:\n%s", code, tail(out, 2000))
			}
			if !tc.overwrite && (code == 0 || !strings.Contains(out, "already exists")) {
				t.Errorf("without --overwrite: exit %d, want a refusal naming the existing path:\n%s", code, tail(out, 2000))
			}
			findings = append(findings, tc.name+": exit "+strconv.Itoa(code)+", link "+state)
		})
	}

	t.Run("directory in the path is a symlink", func(t *testing.T) {
		// Observed, not asserted: without allow_dest a worker writes
		// wherever the path leads, as cp would.
		dir, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
			t.Fatal(err)
		}
		f.startWorker(t, "worker")
		code, _ := f.enqueue(t, "s3://bkt/obj", filepath.Join(dir, "sub", "obj"), "--wait")
		_, err := os.Stat(filepath.Join(outside, "obj"))
		what := "not followed"
		if err == nil {
			what = "followed: the object landed in the link's target directory"
		}
		t.Logf("exit %d; directory link %s", code, what)
		findings = append(findings, "directory link: exit "+strconv.Itoa(code)+", "+what)
	})
	summary(t, "%s", strings.Join(findings, "; "))
}

func describe(code int, o ledger.JobObject) string {
	if code == 0 {
		return "exit 0, object landed as a regular file, link target untouched"
	}
	return "exit " + strconv.Itoa(code) + ", object " + o.State + " (" + tail(o.Error, 80) + "), link target untouched"
}

// TestSignedFleet runs a worker and the enqueuer with a task_key_file. A
// normal job succeeds. Then whoever can write to Redis tries: a chunk task
// that is valid in every way but unsigned (with a ledger record made for
// it), one signed with another key, and a legitimate job whose transfer
// record was rewritten in Redis to point at another file. The worker
// refuses each (the tasks archived without retry, with the cause) and
// writes nothing outside what the signed job asked.
func TestSignedFleet(t *testing.T) {
	tier(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "task.key")
	otherFile := filepath.Join(dir, "other.key")
	for p, k := range map[string]string{keyFile: strings.Repeat("a1", 32), otherFile: strings.Repeat("b2", 32)} {
		if err := os.WriteFile(p, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := newFleet(t, withEnv("S3FLEET_TASK_KEY_FILE="+keyFile))
	f.createBucket(t, "bkt")
	sum := putBytes(t, f.s3c, "bkt", "obj", 10, false)
	ctx := context.Background()

	// A legitimate job, enqueued before any worker runs; its record is
	// then rewritten to name another destination.
	outside := t.TempDir()
	legit := filepath.Join(t.TempDir(), "legit")
	if code, out := f.enqueueEnv(t, []string{"S3FLEET_BATCH_MAX_OBJECT=0"}, "s3://bkt/obj", legit, "--job", "legit"); code != 0 { // a chunk and an assembly
		t.Fatalf("enqueue: exit %d: %s", code, out)
	}
	var xfer string
	for _, o := range f.objects(t, "legit") {
		xfer = o.ID
	}
	evil := filepath.Join(outside, "rewritten")
	if err := f.rdb.HSet(ctx, "{s3fleet}:xfer:"+xfer, "dest", evil).Err(); err != nil {
		t.Fatal(err)
	}

	w := f.startWorker(t, "worker")
	q := asynq.NewClientFromRedisClient(f.rdb)
	insp := asynq.NewInspectorFromRedisClient(f.rdb)
	// An unsigned task with a record of its own, made as an enqueuer would.
	forgedDest := filepath.Join(outside, "forged")
	x := ledger.Transfer{Bucket: "bkt", Key: "obj", Size: 10, ChunkSize: 10, Chunks: 1, Dest: forgedDest, Queue: tasks.QueueChunks}
	x.ID = x.Identity()
	if err := f.led.CreateJob(ctx, "forged", "s3://bkt/obj", forgedDest, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.led.Attach(ctx, ledger.AttachRequest{Job: "forged", Mode: ledger.ModeCreate, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	p := tasks.ChunkPayload{Job: "forged", Transfer: x.ID, Gen: 1, Object: tasks.Object{Bucket: "bkt", Key: "obj", Size: 10}, Chunks: 1, Last: 9, Dest: forgedDest}
	other, err := tasks.LoadTaskKeys(otherFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		keys *tasks.TaskKeys
	}{{"unsigned", nil}, {"other-key", other}} {
		task, err := tasks.NewChunkTask(k.keys, p, asynq.TaskID("forged:"+k.name), asynq.MaxRetry(5))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	causes := map[string]string{}
	for deadline := time.Now().Add(time.Minute); len(causes) < 2 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, name := range []string{"unsigned", "other-key"} {
			if info, err := insp.GetTaskInfo(tasks.QueueChunks, "forged:"+name); err == nil && info.State == asynq.TaskStateArchived {
				if info.Retried != 0 {
					t.Errorf("%s: retried %d times", name, info.Retried)
				}
				causes[name] = info.LastErr
			}
		}
	}
	for _, name := range []string{"unsigned", "other-key"} {
		if c := causes[name]; !strings.Contains(c, "not signed with this worker's task_key") {
			t.Errorf("%s task: archived with %q, want a refusal naming the task key", name, c)
		}
	}
	// The legitimate job's chunk lands (its payload is signed), and its
	// assembly refuses the rewritten record.
	var legitObj ledger.JobObject
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if legitObj = f.objects(t, "legit")["obj"]; legitObj.State == ledger.Failed {
			break
		}
	}
	if legitObj.State != ledger.Failed || !strings.Contains(legitObj.Error, "rewritten in Redis") {
		t.Errorf("the job whose record was rewritten: %s %q, want failed naming the rewrite", legitObj.State, legitObj.Error)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written outside what the signed job asked: %v", entries)
	}
	// A normal signed job goes through the same worker.
	dest := filepath.Join(t.TempDir(), "obj")
	if code, out := f.enqueue(t, "s3://bkt/obj", dest, "--wait"); code != 0 {
		t.Fatalf("a signed job: exit %d:\n%s", code, tail(out, 2000))
	}
	if got, err := fileSHA(dest); err != nil || got != sum {
		t.Fatalf("signed job: %v", err)
	}
	if !w.alive() {
		t.Fatal("the worker died")
	}
	summary(t, "task_key set: unsigned and other-key tasks refused (%q), a rewritten record refused (%q), nothing written outside; a signed job ok",
		tail(causes["unsigned"], 90), tail(legitObj.Error, 90))
}
