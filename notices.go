package s3fleet

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// notices says, while Wait follows a job, what it waits for: what a
// worker noted (space on a full disk), at most every 10 s, and the queues
// with tasks waiting that no worker serves, looked at every 5 s from 3 s
// in and said when that changes.
type notices struct {
	tell      func(string)
	insp      queueInspector // nil: no look at the queues
	job       string
	start     time.Time
	noted     time.Time // when a note was last said
	lastCheck time.Time // of the queues
	unserved  string    // the queues last said to have no worker
}

// note says the job's note if it is new since the last one said.
func (n *notices) note(s JobStatus) {
	if s.Note == "" || !s.NoteAt.After(n.noted) || !s.NoteAt.After(n.start) || time.Since(n.noted) < 10*time.Second {
		return
	}
	n.tell("waiting: " + s.Note)
	n.noted = time.Now()
}

// idle says which queues no worker serves, when that has changed.
func (n *notices) idle() {
	if n.insp == nil || time.Since(n.start) < 3*time.Second || time.Since(n.lastCheck) < 5*time.Second {
		return
	}
	n.lastCheck = time.Now()
	idle, err := idleQueues(n.insp)
	if err != nil || idle == n.unserved {
		return
	}
	if idle == "" {
		n.tell("a worker serves the waiting tasks now")
	} else {
		n.tell(fmt.Sprintf("no worker is serving %s; still waiting for job %s (start one: worker --allow-dest DIR)", idle, n.job))
	}
	n.unserved = idle
}

// queueInspector is the part of asynq.Inspector idleQueues reads.
type queueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	Servers() ([]*asynq.ServerInfo, error)
}

// idleQueues names the queues with tasks waiting that no live worker
// serves ("queue chunks (12 tasks waiting)"), or "" when there are none.
// asynq's record of each worker lives 10 s past its last heartbeat (every
// 5 s): a worker gone is noticed within seconds.
func idleQueues(insp queueInspector) (string, error) {
	servers, err := insp.Servers()
	if err != nil {
		return "", err
	}
	served := map[string]bool{}
	for _, s := range servers {
		for q := range s.Queues {
			served[q] = true
		}
	}
	queues, err := insp.Queues()
	if err != nil {
		return "", err
	}
	slices.Sort(queues)
	var idle []string
	for _, q := range queues {
		if served[q] {
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil || info.Paused {
			continue
		}
		if waiting := info.Pending + info.Scheduled + info.Retry; waiting > 0 {
			idle = append(idle, fmt.Sprintf("queue %s (%d tasks waiting)", q, waiting))
		}
	}
	return strings.Join(idle, ", "), nil
}
