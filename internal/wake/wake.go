// Package wake lets an idle worker take a task as soon as it is queued,
// not a poll later, at the Redis cost of polling.
//
// asynq's workers poll their queues: an idle one looks at each queue, then
// sleeps TaskCheckInterval (a half to one and a half of it), so a task
// queued to an idle fleet waits up to one and a half polls (300 ms at the
// 200 ms default) before anyone starts it, and an object's assembly as
// long after its last chunk. Asking more often costs Redis a call per
// queue per look, from every idle worker.
//
// Here the tasks queued through Queue are announced on a Redis channel.
// A worker's Gate listens to it, and sits between asynq and Redis as a
// go-redis hook: asynq looks at its queues often (Tick), but a queue's
// look reaches Redis only when it was announced since the last look that
// found it empty, or the poll interval has passed (the fallback for tasks
// that nobody announces: retries coming due, tasks asynq hands back when a
// worker stops, a wake lost while Redis was away; package liveness
// announces the tasks it hands back from a dead worker). The rest answer "empty"
// without Redis, after waiting (up to 200 ms, once a round of asynq's
// looks) for an announcement while every queue is closed, so that an idle asynq does not spin. So a queued
// task starts within a few ms, and an idle worker costs Redis what it did
// and next to no CPU.
package wake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Channel is where queued tasks are announced; a message is the name of
// the asynq queue that has a new task.
const Channel = "{s3fleet}:wake"

// Tick is how often asynq looks at its queues through a Gate (its
// TaskCheckInterval): a look that the Gate answers costs no Redis call.
const Tick = 4 * time.Millisecond

// enqueuer is the asynq client Queue wraps.
type enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Queue queues tasks through an asynq client and announces them on
// Channel: at most one announcement a queue each window, with one more at
// its end for those queued within it (one wakes every idle worker, which
// then looks until the queue is empty: a thousand tasks queued at once
// need not send each worker a thousand messages). An announcement that
// fails is only late: the task is taken at the next poll.
type Queue struct {
	q   enqueuer
	rdb redis.UniversalClient

	mu     sync.Mutex
	queues map[string]*announced
}

// window is the least time between two announcements of a queue from one
// process: each goes to every worker.
const window = 20 * time.Millisecond

// announced is what a Queue knows of one queue's announcements.
type announced struct {
	last    time.Time // the last announcement sent
	pending bool      // one is due at the end of the window
}

// NewClient returns a Queue that queues through an asynq client on rdb
// and announces there: what the enqueuer, the workers and the UI use.
func NewClient(rdb redis.UniversalClient) *Queue {
	return NewQueue(asynq.NewClientFromRedisClient(rdb), rdb)
}

// NewQueue returns a Queue that queues through q and announces on rdb.
func NewQueue(q enqueuer, rdb redis.UniversalClient) *Queue {
	return &Queue{q: q, rdb: rdb, queues: map[string]*announced{}}
}

// EnqueueContext queues task as asynq's client does, and announces it.
func (q *Queue) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := q.q.EnqueueContext(ctx, task, opts...)
	if err == nil && info.State == asynq.TaskStatePending {
		q.announce(ctx, info.Queue)
	}
	return info, err
}

// Announce tells the idle workers that queue has a task queued some other
// way (a dead worker's, handed back by package liveness).
func (q *Queue) Announce(ctx context.Context, queue string) { q.announce(ctx, queue) }

func (q *Queue) announce(ctx context.Context, queue string) {
	q.mu.Lock()
	a := q.queues[queue]
	if a == nil {
		if len(q.queues) > 1000 { // queue names are few; forget them all rather than grow
			clear(q.queues)
		}
		a = &announced{}
		q.queues[queue] = a
	}
	if a.pending {
		q.mu.Unlock()
		return
	}
	since := time.Since(a.last)
	if since >= window {
		a.last = time.Now()
		q.mu.Unlock()
		q.rdb.Publish(ctx, Channel, queue) // best effort: the poll is the fallback
		return
	}
	a.pending = true
	q.mu.Unlock()
	time.AfterFunc(window-since, func() {
		q.mu.Lock()
		a.pending, a.last = false, time.Now()
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		q.rdb.Publish(ctx, Channel, queue)
	})
}

// Gate decides which of asynq's looks at a queue reach Redis.
type Gate struct {
	every time.Duration // each queue is looked at in Redis at least this often (jittered)
	log   *slog.Logger
	looks atomic.Int64 // asynq's looks at its queues, answered here or by Redis

	mu       sync.Mutex
	queues   map[string]*gated // the queues asynq looked at: those this worker serves
	free     int               // closed looks after a hold that are answered at once: the rest of asynq's round
	gen      uint64            // announcements of every queue ("")
	nextPoll time.Time         // when the queues found empty are looked at again, all together
	signal   chan struct{}     // closed at the next announcement
}

// gated is one queue's state in a Gate.
type gated struct {
	due time.Time // when a look must reach Redis again; zero: now
	ver uint64    // its announcements: a look's "empty" that began before one is stale
}

// hold is the longest a look at a closed queue waits for an announcement
// or a poll while every queue is closed: asynq, which cannot be woken,
// then idles in the hook rather than spinning every Tick (and stops at
// most this late: the other looks of its round do not wait again).
const hold = 200 * time.Millisecond

// NewGate returns a gate that lets a look at a queue reach Redis when the
// queue was announced since the last look, and at least every poll (a
// half to one and a half of it, as asynq's own sleep).
func NewGate(poll time.Duration, log *slog.Logger) *Gate {
	return &Gate{every: poll, log: log, queues: map[string]*gated{}, signal: make(chan struct{})}
}

// queue returns queue's state, known from now on; under g.mu.
func (g *Gate) queue(name string) *gated {
	q := g.queues[name]
	if q == nil {
		q = &gated{}
		g.queues[name] = q
	}
	return q
}

// Wake lets the next look at queue reach Redis; "" wakes every queue. A
// queue asynq never looked at (another worker's) is left alone: a queue
// is open until its first look anyway.
func (g *Gate) Wake(queue string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.queues[queue]
	if queue != "" && q == nil {
		return
	}
	close(g.signal)
	g.signal = make(chan struct{})
	if queue == "" {
		g.gen++
		for _, q := range g.queues {
			q.due = time.Time{}
		}
		return
	}
	q.ver++
	q.due = time.Time{}
}

// open reports whether a look at queue goes to Redis now, and the
// queue's announcements so far. While every queue it knows is closed it
// waits, up to hold, for an announcement or the next poll; the looks at
// the other queues in the same round of asynq's then do not wait again.
func (g *Gate) open(queue string) (bool, uint64) {
	deadline := time.Now().Add(hold)
	for waited := false; ; waited = true {
		now := time.Now()
		g.mu.Lock()
		q := g.queue(queue)
		open, ver := !now.Before(q.due), g.gen+q.ver
		next, anyOpen := deadline, false
		for _, o := range g.queues {
			if !now.Before(o.due) {
				anyOpen = true
			} else if o.due.Before(next) {
				next = o.due
			}
		}
		signal := g.signal
		if !open && !anyOpen && !waited && g.free > 0 { // the rest of a round that waited
			g.free--
			g.mu.Unlock()
			return false, ver
		}
		if open || anyOpen || !now.Before(deadline) {
			g.free = 0
			if waited && !open {
				g.free = len(g.queues) - 1
			}
			g.mu.Unlock()
			return open, ver
		}
		g.mu.Unlock()
		t := time.NewTimer(next.Sub(now))
		select {
		case <-signal:
		case <-t.C:
		}
		t.Stop()
	}
}

// looked notes how a look that went to Redis ended: one that found the
// queue empty closes its gate until the next poll, unless the queue was
// announced meanwhile; one that found a task, or failed (Redis down, or
// a script to load again: go-redis's EVAL after a NOSCRIPT must go
// through), leaves it open.
func (g *Gate) looked(queue string, ver uint64, empty bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.queue(queue)
	if !empty || g.gen+q.ver != ver {
		return
	}
	if now := time.Now(); !now.Before(g.nextPoll) {
		g.nextPoll = now.Add(g.every/2 + rand.N(g.every+1))
	}
	q.due = g.nextPoll
}

// Listen hears announcements on Channel until ctx ends. Every
// (re)subscription wakes every queue: what was announced while the
// connection was down is not lost, only looked for. A subscription Redis
// refuses (an ACL user without pub/sub: NOPERM) or cannot make yet is
// logged, once a cause, and tried again, up to every retryMax: the poll
// finds new tasks meanwhile, later than an announcement would.
func (g *Gate) Listen(ctx context.Context, rdb redis.UniversalClient) {
	var failing string // the cause last logged
	for wait := retryMin; ; wait = min(2*wait, retryMax) {
		err := g.listen(ctx, rdb, func() {
			if failing != "" {
				g.log.Info("wake: hearing announcements again", "channel", Channel)
				failing = ""
			}
			wait = retryMin
		})
		if ctx.Err() != nil {
			return
		}
		if err.Error() != failing {
			failing = err.Error()
			g.log.Warn("wake: cannot hear announcements: idle workers find new tasks only at the poll",
				"channel", Channel, "poll", g.every, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// retryMin and retryMax bound how long Listen waits before it subscribes
// again; confirmWithin is how long it waits for Redis to confirm a
// subscription.
const (
	retryMin      = time.Second
	retryMax      = 30 * time.Second
	confirmWithin = 10 * time.Second
)

// listen subscribes, calls subscribed once Redis confirms, and hears
// announcements until the subscription ends.
func (g *Gate) listen(ctx context.Context, rdb redis.UniversalClient, subscribed func()) error {
	ps := rdb.Subscribe(ctx, Channel)
	defer ps.Close()
	// Receive before the channel: it returns Redis's refusal, which the
	// channel would swallow. Bounded: Receive heeds no cancellation, and
	// a connection cut before the reply would hold it for good.
	if _, err := ps.ReceiveTimeout(ctx, confirmWithin); err != nil {
		return fmt.Errorf("subscribe to %s: %w", Channel, err)
	}
	subscribed()
	g.log.Debug("wake: listening", "channel", Channel)
	g.Wake("")
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return fmt.Errorf("subscription to %s closed", Channel)
			}
			switch m := m.(type) {
			case *redis.Message:
				g.Wake(m.Payload)
			case *redis.Subscription:
				g.log.Debug("wake: listening", "channel", m.Channel, "kind", m.Kind)
				g.Wake("")
			}
		}
	}
}

// DialHook is go-redis's; a Gate does not change it.
func (g *Gate) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook is go-redis's; a Gate does not change it (asynq
// looks at a queue with a single script call).
func (g *Gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook answers asynq's look at a closed queue (its dequeue
// script) "empty" without Redis, and notes how the others ended.
func (g *Gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		queue, ok := dequeueOf(cmd.Args())
		if !ok {
			return next(ctx, cmd)
		}
		g.looks.Add(1)
		open, woke := g.open(queue)
		if !open {
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		err := next(ctx, cmd)
		g.looked(queue, woke, errors.Is(err, redis.Nil))
		return err
	}
}

// dequeueOf tells asynq's dequeue script by its keys (asynq v0.26's
// rdb.Dequeue: EVALSHA or EVAL with 4 keys, the queue's pending, paused,
// active and lease keys) and returns its queue. TestDequeueOf checks it
// against asynq itself.
func dequeueOf(args []any) (string, bool) {
	if len(args) < 7 {
		return "", false
	}
	if name, _ := args[0].(string); !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return "", false
	}
	pending, _ := args[3].(string)
	paused, _ := args[4].(string)
	queue, ok := strings.CutPrefix(pending, "asynq:{")
	if !ok {
		return "", false
	}
	queue, ok = strings.CutSuffix(queue, "}:pending")
	if !ok || paused != "asynq:{"+queue+"}:paused" {
		return "", false
	}
	return queue, true
}
