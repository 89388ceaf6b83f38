package metrics

import (
	"fmt"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// queueInspector is the part of asynq.Inspector the backlog reads.
type queueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

var _ queueInspector = (*asynq.Inspector)(nil)

// Backlog is the work for more workers to take: the pending and active
// tasks of queues, summed. A paused queue counts 0, whatever it holds: its
// tasks wait for a person to resume it, and workers started for them would
// sit idle. A queue that does not exist yet (nothing was ever enqueued on
// it) counts 0.
func Backlog(insp queueInspector, queues []string) (int, error) {
	existing, err := insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("list queues: %w", err)
	}
	n := 0
	for _, q := range queues {
		if !slices.Contains(existing, q) {
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return 0, fmt.Errorf("queue %s: %w", q, err)
		}
		if !info.Paused {
			n += info.Pending + info.Active
		}
	}
	return n, nil
}

var backlogDesc = prometheus.NewDesc("s3fleet_backlog",
	"Pending and active tasks of the fleet's shared queues, a paused queue counting 0: what an autoscaler sizes the workers by. Absent when Redis cannot be read.",
	nil, nil)

// backlogCollector reads the backlog from Redis at each scrape.
type backlogCollector struct {
	insp   queueInspector
	queues []string
}

// NewBacklog is a collector of s3fleet_backlog, the Backlog of queues read
// at each scrape. When Redis cannot be read the sample is left out (as
// asynq's queue collector does), so a scraper sees no value rather than a
// false 0.
func NewBacklog(insp queueInspector, queues []string) prometheus.Collector {
	return backlogCollector{insp: insp, queues: slices.Clone(queues)}
}

func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backlogDesc }

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := Backlog(c.insp, c.queues)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(n))
}
