package metrics_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestBacklog fills queues of a real Redis: the backlog is the pending and
// active tasks of the queues asked for, a paused queue counts 0 until it
// is resumed, queues not asked for (a host's, another program's) and
// queues never used count nothing, and with Redis gone the metric has no
// sample rather than a false 0.
func TestBacklog(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	enqueue := func(queue string, n int) {
		t.Helper()
		for i := range n {
			if _, err := client.Enqueue(asynq.NewTask("test", []byte(fmt.Sprint(i))), asynq.Queue(queue)); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue("chunks", 3)
	enqueue("chunks-low", 2)
	enqueue("assemble", 1)
	enqueue("host:x", 4)
	enqueue("other", 5)
	if err := insp.PauseQueue("chunks-low"); err != nil {
		t.Fatal(err)
	}

	// One of the chunks runs, and stays running until the test ends.
	release := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"chunks": 1}, LogLevel: asynq.FatalLevel,
		ShutdownTimeout: time.Second,
	})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	stopServer := sync.OnceFunc(func() { close(release); srv.Shutdown() })
	t.Cleanup(stopServer)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := insp.GetQueueInfo("chunks")
		if err != nil {
			t.Fatal(err)
		}
		if info.Active == 1 && info.Pending == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chunks: %d active, %d pending; want 1 and 2", info.Active, info.Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}

	fleet := []string{"assemble", "chunks", "chunks-high", "chunks-low"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewBacklog(insp, fleet))
	check := func(want int) {
		t.Helper()
		got, err := metrics.Backlog(insp, fleet)
		if err != nil || got != want {
			t.Errorf("Backlog = %d, %v; want %d", got, err, want)
		}
		if got := gathered(t, reg); len(got) != 1 || got[0] != float64(want) {
			t.Errorf("s3fleet_backlog samples %v, want [%d]", got, want)
		}
	}
	check(1 + 2 + 1) // chunks: 1 active, 2 pending; assemble: 1; chunks-low paused; chunks-high never used
	if err := insp.UnpauseQueue("chunks-low"); err != nil {
		t.Fatal(err)
	}
	check(1 + 2 + 1 + 2)
	if err := insp.PauseQueue("chunks"); err != nil {
		t.Fatal(err)
	}
	check(1 + 2) // a paused queue counts 0 even with a task running

	stopServer() // while Redis is there to take its goodbye
	r.Stop()
	if _, err := metrics.Backlog(insp, fleet); err == nil {
		t.Error("Backlog with Redis gone: no error")
	}
	if got := gathered(t, reg); len(got) != 0 {
		t.Errorf("s3fleet_backlog with Redis gone: samples %v, want none", got)
	}
}

// gathered is what a scrape of reg shows of s3fleet_backlog.
func gathered(t *testing.T, reg *prometheus.Registry) []float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, mf := range mfs {
		if mf.GetName() == "s3fleet_backlog" {
			for _, m := range mf.GetMetric() {
				out = append(out, m.GetGauge().GetValue())
			}
		}
	}
	return out
}
