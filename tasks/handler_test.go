package tasks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// rig is a real Redis and S3 with a chunk handler and an assembler.
type rig struct {
	led   *ledger.Ledger
	queue *asynq.Client
	insp  *asynq.Inspector
	chunk *tasks.ChunkHandler
	asm   *tasks.AssembleHandler
	s3    *testenv.S3
	guard location.Guard
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	s3 := testenv.StartS3(t)
	c := s3.Endpoints()
	led := ledger.New(rdb, time.Hour)
	q := asynq.NewClientFromRedisClient(rdb)
	return &rig{
		led: led, queue: q, insp: asynq.NewInspectorFromRedisClient(rdb), s3: s3, guard: tempGuard(t),
		chunk: &tasks.ChunkHandler{S3: c, Ledger: led, Queue: q, Worker: "host-a (pid 1)", Parts: tasks.NewPartFiles(), Guard: tempGuard(t)},
		asm:   &tasks.AssembleHandler{Assembler: &assembler.Assembler{S3: c, Ledger: led, Guard: tempGuard(t)}, Ledger: led},
	}
}

// tempGuard allows the tests' destinations: every t.TempDir().
func tempGuard(t *testing.T) location.Guard {
	t.Helper()
	g, err := location.NewGuard([]string{os.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// enqueueObject records a transfer as the enqueuer would and returns its
// chunk tasks.
func (r *rig) enqueueObject(t *testing.T, key string, size int64, dest string) (ledger.Transfer, []*asynq.Task) {
	t.Helper()
	ctx := context.Background()
	plan, _ := chunker.New(size, 1<<20, 1<<20)
	x := ledger.Transfer{Bucket: "bkt", Key: key, Size: size, ChunkSize: plan.ChunkSize, Chunks: plan.Count(), Dest: dest, ChecksumKnown: true}
	x.ID = ledger.TransferID("", "bkt", key, "", "", size, dest)
	if err := r.led.CreateJob(ctx, "j", "s3://bkt/"+key, dest, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.led.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var ts []*asynq.Task
	for i := range plan.Count() {
		c := plan.Chunk(i)
		task, err := tasks.NewChunkTask(nil, tasks.ChunkPayload{Job: "j", Transfer: x.ID, Gen: 1, Object: tasks.Object{Bucket: "bkt", Key: key, Size: size}, Chunks: plan.Count(), Chunk: i, First: c.First, Last: c.Last, Dest: dest, CRC: "CRC64NVME"})
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, task)
	}
	return x, ts
}

// counter is the value of the registry's counter name{label="value"}.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// startedObject uploads a 3 MiB object, records its transfer as the
// enqueuer would, runs its first chunk and returns its chunk tasks, its
// destination and its part file.
func (r *rig) startedObject(t *testing.T) (x ledger.Transfer, chunks []*asynq.Task, dest, part string) {
	t.Helper()
	r.s3.CreateBucket(t, "bkt")
	data := r.s3.PutRandom(t, "bkt", "obj", 3<<20, false)
	dest = filepath.Join(t.TempDir(), "obj")
	x, chunks = r.enqueueObject(t, "obj", int64(len(data)), dest)
	if err := r.chunk.ProcessTask(context.Background(), chunks[0]); err != nil {
		t.Fatal(err)
	}
	rec, err := r.led.GetTransfer(context.Background(), x.ID)
	if err != nil || rec.PartToken == "" {
		t.Fatalf("after the first chunk: %+v %v", rec, err)
	}
	return x, chunks, dest, location.PartPath(dest, x.ID, rec.PartToken)
}

// TestAssemblerEnqueuedOnce runs every chunk of an object twice at once,
// as asynq's at-least-once delivery may: the bytes land right, the
// assembler is enqueued exactly once, and running it twice finalizes once.
func TestAssemblerEnqueuedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.s3.CreateBucket(t, "bkt")
	data := r.s3.PutRandom(t, "bkt", "obj", 5<<20+3, false)
	dest := filepath.Join(t.TempDir(), "sub", "obj")
	x, chunks := r.enqueueObject(t, "obj", int64(len(data)), dest)

	// A worker killed between creating its part file and recording its
	// token left this one, which no record names: the assembler removes it.
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(location.PartPath(dest, x.ID, location.NewPartToken()), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		for _, task := range chunks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.chunk.ProcessTask(context.Background(), task); err != nil {
					t.Errorf("chunk: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	pending, err := r.insp.ListPendingTasks(tasks.QueueAssemble)
	if err != nil || len(pending) != 1 {
		t.Fatalf("%d assembler tasks pending (%v), want exactly 1", len(pending), err)
	}
	reg := prometheus.NewRegistry()
	r.asm.Metrics = metrics.NewWorker(reg, "test")
	for range 2 {
		if err := r.asm.ProcessTask(context.Background(), asynq.NewTask(pending[0].Type, pending[0].Payload)); err != nil {
			t.Fatalf("assemble: %v", err)
		}
	}
	if n := counter(t, reg, "s3fleet_objects_finalized_total", "state", "success"); n != 1 {
		t.Errorf("objects_finalized_total %v after two runs of the assembler, want 1", n)
	}
	rec, _ := r.led.GetTransfer(context.Background(), x.ID)
	if n := counter(t, reg, "s3fleet_objects_verified_total", "check", rec.Check); n != 1 || rec.Check == "" {
		t.Errorf("objects_verified_total{check=%q} %v, want 1", rec.Check, n)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("final file: %v (equal: %v)", err, bytes.Equal(got, data))
	}
	if parts, _ := filepath.Glob(location.PartGlob(dest, x.ID)); len(parts) != 0 {
		t.Fatalf("part files left: %v (the losers of the race to create one remove theirs, the assembler any other)", parts)
	}
	j, _ := r.led.GetJob(context.Background(), "j")
	if j.Succeeded != 1 || j.BytesDone != int64(len(data)) {
		t.Fatalf("job %+v: want 1 success and every byte counted once", j)
	}
	// A chunk run again after the object is done does nothing.
	if err := r.chunk.ProcessTask(context.Background(), chunks[0]); err != nil {
		t.Fatal(err)
	}
	if parts, _ := filepath.Glob(location.PartGlob(dest, x.ID)); len(parts) != 0 {
		t.Fatalf("a late chunk resurrected the part file: %v", parts)
	}
}

// TestRemovedPartFileIsNotResurrected: once the part file exists, a chunk
// that finds it gone fails the object instead of writing a file with holes.
func TestRemovedPartFileIsNotResurrected(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	x, chunks, dest, part := r.startedObject(t)
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	err := r.chunk.ProcessTask(context.Background(), chunks[1])
	if !tasks.IsPermanent(err) {
		t.Fatalf("error %v, want a permanent failure", err)
	}
	if parts, _ := filepath.Glob(location.PartGlob(dest, x.ID)); len(parts) != 0 {
		t.Fatalf("the part file was created again: %v", parts)
	}
	got, _ := r.led.GetTransfer(context.Background(), x.ID)
	if got.State != ledger.Failed || got.BytesDone != 0 || !strings.Contains(got.Error, "was removed") {
		t.Fatalf("transfer %s %q bytes %d: want failed (part file removed) with its chunks forgotten", got.State, got.Error, got.BytesDone)
	}
}

// TestUnsharedDestFails: a worker that cannot see the part file another
// worker made (its own disk at the same path) fails the object, naming
// both workers, and never writes a file of its own for it; the maker
// removes its part file once the object has failed.
func TestUnsharedDestFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	x, chunks, dest, part := r.startedObject(t)
	// Host B's disk: the same path, without host A's part file.
	hidden := part + ".on-host-a"
	if err := os.Rename(part, hidden); err != nil {
		t.Fatal(err)
	}
	b := *r.chunk
	b.Worker, b.Parts = "host-b (pid 2)", tasks.NewPartFiles()
	err := b.ProcessTask(context.Background(), chunks[1])
	if !tasks.IsPermanent(err) {
		t.Fatalf("host B: error %v, want a permanent failure", err)
	}
	got, _ := r.led.GetTransfer(context.Background(), x.ID)
	for _, want := range []string{"do not share DEST", "host-a (pid 1)", "host-b (pid 2)"} {
		if got.State != ledger.Failed || !strings.Contains(got.Error, want) {
			t.Fatalf("transfer %s %q: want failed, naming %q", got.State, got.Error, want)
		}
	}
	if parts, _ := filepath.Glob(location.PartGlob(dest, x.ID)); len(parts) != 0 {
		t.Fatalf("host B made a part file of its own: %v", parts)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("a file under the final name")
	}
	// Back on host A: its part file lost the object, and its sweep removes it.
	if err := os.Rename(hidden, part); err != nil {
		t.Fatal(err)
	}
	if r.chunk.Parts.Len() != 1 {
		t.Fatalf("host A tracks %d part files, want 1", r.chunk.Parts.Len())
	}
	r.chunk.Parts.Sweep(context.Background(), r.led, nil)
	if _, err := os.Stat(part); !os.IsNotExist(err) || r.chunk.Parts.Len() != 0 {
		t.Fatalf("host A kept its part file of a failed object: %v, %d tracked", err, r.chunk.Parts.Len())
	}
}

// TestForgedPayloads: garbage in Redis fails without retry and without
// touching the disk.
func TestForgedPayloads(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	good := tasks.ChunkPayload{Transfer: "x", Gen: 1, Chunks: 1, Object: tasks.Object{Bucket: "bkt", Key: "k", Size: 10}, First: 0, Last: 9, Dest: dir + "/k", CRC: "CRC64NVME"}
	forged := map[string][]byte{
		"not JSON":         []byte("{nope"),
		"negative range":   mustJSON(func(p *tasks.ChunkPayload) { p.First, p.Last = -5, 3 }, good),
		"past the size":    mustJSON(func(p *tasks.ChunkPayload) { p.Last = 100 }, good),
		"relative path":    mustJSON(func(p *tasks.ChunkPayload) { p.Dest = "k" }, good),
		"not a CRC":        mustJSON(func(p *tasks.ChunkPayload) { p.CRC = "SHA256" }, good),
		"no such transfer": mustJSON(func(*tasks.ChunkPayload) {}, good),
	}
	for name, payload := range forged {
		err := r.chunk.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeChunk, payload))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: error %v, want SkipRetry", name, err)
		}
	}
	if err := r.asm.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeAssemble, []byte("[]"))); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("assemble garbage: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("forged tasks wrote %v", entries)
	}
}

func mustJSON(mutate func(*tasks.ChunkPayload), p tasks.ChunkPayload) []byte {
	mutate(&p)
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

// TestCancelCleanupRemovesThePartFile: the cleanup task of a cancel
// removes the part file it left, even when the object was retried since
// (the retry writes a part file of its own, which the cleanup leaves).
func TestCancelCleanupRemovesThePartFile(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	x, chunks, dest, cancelled := r.startedObject(t)
	if ok, err := r.led.Cancel(ctx, x.ID, 1, time.Now()); !ok || err != nil {
		t.Fatalf("cancel: %v %v", ok, err)
	}
	// Retried before the cleanup ran: generation 2 makes its own part file.
	cur, _ := r.led.GetTransfer(ctx, x.ID)
	if _, _, err := r.led.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeRestart, Expect: cur, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	retried := chunks[0]
	var p tasks.ChunkPayload
	_ = json.Unmarshal(retried.Payload(), &p)
	p.Gen = 2
	if err := r.chunk.ProcessTask(ctx, asynq.NewTask(tasks.TypeChunk, mustJSON(func(*tasks.ChunkPayload) {}, p))); err != nil {
		t.Fatal(err)
	}
	rec, _ := r.led.GetTransfer(ctx, x.ID)
	current := location.PartPath(dest, x.ID, rec.PartToken)
	cleanup, err := tasks.NewCleanupTask(nil, tasks.CleanupPayload{Job: "j", Transfer: x.ID, Gen: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := &tasks.CleanupHandler{Ledger: r.led, Guard: r.guard}
	if err := h.ProcessTask(ctx, asynq.NewTask(cleanup.Type(), cleanup.Payload())); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cancelled); !os.IsNotExist(err) {
		t.Errorf("the cancelled generation's part file is still there: %v", err)
	}
	if _, err := os.Stat(current); err != nil || current == cancelled {
		t.Errorf("the retry's part file %s: %v", current, err)
	}
}
