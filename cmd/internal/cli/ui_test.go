package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestUI runs enqueue ui against a real Redis: it serves the web UI (read
// only with --ui-readonly), /healthz and /metrics with the fleet's
// backlog, and takes no task: no asynq server is registered and a task
// enqueued stays pending.
func TestUI(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // its result, then closed
	go func() {
		defer close(done)
		cmd := NewEnqueueCommand()
		cmd.SetArgs([]string{"ui", "--redis", r.URL, "--ui", addr, "--ui-readonly", "--log-level", "error"})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + addr
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get("GET", "/healthz")
		if code == 200 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("enqueue ui ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	rdb := r.Client(t)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask(tasks.TypeChunk, []byte("{}")), asynq.Queue(tasks.QueueChunks)); err != nil {
		t.Fatal(err)
	}
	if _, metrics := get("GET", "/metrics"); !strings.Contains(metrics, "\ns3fleet_backlog 1\n") || !strings.Contains(metrics, `asynq_tasks_enqueued_total{queue="chunks",state="pending"} 1`) {
		t.Errorf("/metrics lacks s3fleet_backlog 1 or the chunks queue:\n%s", metrics)
	}
	if code, body := get("GET", "/ui/"); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("/ui/: %d %.200q", code, body)
	}
	if code, body := get("GET", "/jobs/"); code != 200 || !strings.Contains(body, "<h1>Jobs</h1>") {
		t.Errorf("/jobs/: %d %.200q", code, body)
	}
	if code, _ := get("POST", "/jobs/job/any/cancel"); code != http.StatusForbidden {
		t.Errorf("cancelling a job through a read-only UI: %d, want 403", code)
	}
	if code, _ := get("GET", "/ui/api/queues"); code != 200 {
		t.Errorf("GET /ui/api/queues: %d", code)
	}
	if code, _ := get("POST", "/ui/api/queues/"+tasks.QueueChunks+":pause"); code != http.StatusMethodNotAllowed {
		t.Errorf("pausing a queue through a read-only UI: %d, want 405", code)
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	servers, err := insp.Servers()
	if err != nil || len(servers) != 0 {
		t.Errorf("asynq servers %v, %v: want none (enqueue ui takes no task)", servers, err)
	}
	if info, err := insp.GetQueueInfo(tasks.QueueChunks); err != nil || info.Pending != 1 || info.Paused {
		t.Errorf("chunks queue %+v, %v: want its task pending, the queue running", info, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("enqueue ui once its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("enqueue ui did not stop")
	}
}
