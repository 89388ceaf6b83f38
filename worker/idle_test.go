package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/tasks"
	"github.com/s3fleet/s3fleet/worker"
)

// TestIdleWorkerCost: an idle worker at the default poll_interval (200 ms)
// makes about 5 dequeue calls a second per queue, 2 beats (each also looks
// for dead members) and asynq's look for due retries (2 a queue every 5
// s): about 28 scripts a second with its 5 queues, where a 50 ms poll and
// separate looks made 106 (500 ms: 14, but a job on an idle fleet of 8
// hosts then started late enough to cost 4–8 % of its scaling). With the
// ledger in 3 shards it serves 11 queues, polled as often in all as the 5
// (worker.PollInterval): only asynq's look for due retries grows. The
// figures are logged; the test fails if idle polling grows back.
func TestIdleWorkerCost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			f := fleettest.New(t)
			cfg := f.Config()
			cfg.PollInterval = 200 * time.Millisecond // the default
			cfg.Host = "idle-host"
			cfg.RedisShards = shards
			fleettest.StartWorker(t, cfg)
			time.Sleep(2 * time.Second) // started and joined
			before := f.Redis.Scripts(t)
			const span = 5 * time.Second
			time.Sleep(span)
			perSecond := float64(f.Redis.Scripts(t)-before) / span.Seconds()
			queues := len(tasks.Queues(cfg.Host, shards))
			polls := float64(queues) * float64(time.Second) / float64(worker.PollInterval(cfg.PollInterval, queues))
			want := polls + 2 + float64(queues)*2/5 // polls, beats, asynq's forwarder
			t.Logf("an idle worker ran %.1f scripts/s on Redis (%d queues polled every %v)", perSecond, queues,
				worker.PollInterval(cfg.PollInterval, queues))
			if polls > 26 {
				t.Errorf("%d queues polled %.1f times a second in all, want 25 whatever the shards", queues, polls)
			}
			if perSecond > want*1.3 {
				t.Errorf("an idle worker ran %.1f scripts/s, want about %.0f", perSecond, want)
			}
		})
	}
}
