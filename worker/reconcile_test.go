package worker

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestReconcileArchived: a chunk task asynq archived without running the
// handler (a worker died during its last attempt) fails its object, so
// the job ends instead of waiting for ever.
func TestReconcileArchived(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	led := ledger.New(rdb, time.Hour)
	x := ledger.Transfer{Bucket: "b", Key: "k", Size: 10, ChunkSize: 10, Chunks: 1, Dest: "/d/k"}
	x.ID = ledger.TransferID("", "b", "k", "", "", 10, "/d/k")
	if err := led.CreateJob(ctx, "j", "s3://b/k", "/d/k", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := led.Attach(ctx, ledger.AttachRequest{Job: "j", Mode: ledger.ModeCreate, New: x}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = led.SetListed(ctx, "j", nil)
	if _, err := led.StartChunk(ctx, x.ID, 1, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	task, _ := tasks.NewChunkTask(nil, tasks.ChunkPayload{Job: "j", Transfer: x.ID, Gen: 1, Object: tasks.Object{Bucket: "b", Key: "k", Size: 10}, Chunks: 1, Last: 9, Dest: "/d/k"})
	client := asynq.NewClientFromRedisClient(rdb)
	info, err := client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.ArchiveTask(tasks.QueueChunks, info.ID); err != nil {
		t.Fatal(err)
	}
	archived, _ := insp.ListArchivedTasks(tasks.QueueChunks)
	if len(archived) != 1 {
		t.Fatalf("%d archived tasks", len(archived))
	}
	for _, ti := range archived { // as asynq's recoverer leaves a task whose lease expired
		ti.LastFailedAt = time.Now()
		ti.LastErr = "asynq: task lease expired"
	}
	reconcileTasks(ctx, archived, led, slog.New(slog.DiscardHandler))
	got, _ := led.GetTransfer(ctx, x.ID)
	if got.State != ledger.Failed || !strings.Contains(got.Error, "lease expired") {
		t.Fatalf("transfer %s %q, want failed with the task's last error", got.State, got.Error)
	}
	if j, _ := led.GetJob(ctx, "j"); !j.Done() || j.Failed != 1 {
		t.Fatalf("job %+v, want done with 1 failure", j)
	}
}

// TestReconcileArchivedPending: a pending batch (no records yet) that asynq
// archived without running it still ends its objects: the reconciler makes
// their records and fails them with the task's cause, and the job ends.
func TestReconcileArchivedPending(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	led := ledger.New(rdb, time.Hour)
	if err := led.CreateJob(ctx, "j", "s3://b/", "/d/", time.Now()); err != nil {
		t.Fatal(err)
	}
	p := tasks.BatchPayload{Job: "j", Pending: true}
	for _, k := range []string{"a", "b", "c"} {
		x := ledger.Transfer{Bucket: "b", Key: k, Size: 10, ChunkSize: 10, Chunks: 1, Dest: "/d/" + k, Gen: 1}
		x.ID = x.Identity()
		o, err := tasks.BatchObjectOf(x)
		if err != nil {
			t.Fatal(err)
		}
		p.Objects = append(p.Objects, o)
	}
	if err := led.Pend(ctx, "j", 0, tasks.BatchTaskID(p), tasks.QueueChunks, 3, 30); err != nil {
		t.Fatal(err)
	}
	_ = led.SetListed(ctx, "j", nil)
	task, err := tasks.NewBatchTask(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := asynq.NewClientFromRedisClient(rdb).Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.ArchiveTask(tasks.QueueChunks, info.ID); err != nil {
		t.Fatal(err)
	}
	archived, _ := insp.ListArchivedTasks(tasks.QueueChunks)
	for _, ti := range archived {
		ti.LastFailedAt = time.Now()
		ti.LastErr = "asynq: task lease expired"
	}
	reconcileTasks(ctx, archived, led, slog.New(slog.DiscardHandler))
	j, _ := led.GetJob(ctx, "j")
	if !j.Done() || j.Failed != 3 || j.Objects != 3 || j.Pending != 0 {
		t.Fatalf("job %+v, want done with 3 failures", j)
	}
	for _, o := range p.Objects {
		got, _ := led.GetTransfer(ctx, o.Transfer)
		if got.State != ledger.Failed || !strings.Contains(got.Error, "lease expired") || got.Batch != info.ID {
			t.Fatalf("%s: %s %q (batch %q)", o.Key, got.State, got.Error, got.Batch)
		}
	}
}
