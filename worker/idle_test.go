package worker_test

import (
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/tasks"
)

// TestIdleWorkerCost: an idle worker at the default poll_interval (200 ms)
// makes about 5 dequeue calls a second per queue, 2 beats (each also looks
// for dead members) and asynq's look for due retries (2 a queue every 5
// s): about 28 scripts a second with its 5 queues, where a 50 ms poll and
// separate looks made 106 (500 ms: 14, but a job on an idle fleet of 8
// hosts then started late enough to cost 4–8 % of its scaling). The figure is logged; the test
// fails if idle polling grows back.
func TestIdleWorkerCost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	f := fleettest.New(t)
	cfg := f.Config()
	cfg.PollInterval = 200 * time.Millisecond // the default
	cfg.Host = "idle-host"
	fleettest.StartWorker(t, cfg)
	time.Sleep(2 * time.Second) // started and joined
	before := f.Redis.Scripts(t)
	const span = 5 * time.Second
	time.Sleep(span)
	perSecond := float64(f.Redis.Scripts(t)-before) / span.Seconds()
	queues := len(tasks.Queues(cfg.Host))
	want := float64(queues)*5 + 2 + float64(queues)*2/5 // polls, beats, asynq's forwarder
	t.Logf("an idle worker ran %.1f scripts/s on Redis (%d queues polled every %v)", perSecond, queues, cfg.PollInterval)
	if perSecond > want*1.3 {
		t.Errorf("an idle worker ran %.1f scripts/s, want about %.0f", perSecond, want)
	}
}
