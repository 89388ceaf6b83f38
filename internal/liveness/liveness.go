// Package liveness fails a dead worker's tasks over in seconds, where
// asynq alone takes one to two minutes (its 30 s lease and its recovery
// sweep every minute are constants).
//
// Each worker is a member with a lease in Redis: it beats every Beat, and a
// member whose last beat is DeadAfter old (by Redis's clock) is dead. Every
// member's watchdog looks for dead ones at each beat; the first to find one
// removes it, takes the list of tasks it was running (the middleware
// records each task as it starts), and moves each back to the front of its
// queue, as asynq itself does with the tasks of a worker that stops
// gracefully: same task ID, same queue, so a job that runs on one host
// (--on) stays there, and asynq's recoverer never sees the task again.
//
// asynq acknowledges a task only after its handler has returned: a worker
// killed in between would leave an active task that no record names, for
// asynq's lease to recover in 30 s or more. So the record of a task that
// succeeded outlives its handler, marked finished, until the member's
// second beat after it (half a second to a second; asynq's
// acknowledgement is one call, unless Redis fails it); a watchdog that
// finds the member dead meanwhile moves the task back to its queue if it
// is still active, and leaves it alone if it was acknowledged. A failed task's record goes with
// its handler, as asynq will run it again under the same ID, and a
// watchdog must not take that run, perhaps on a live member, for the dead
// one's.
//
// A member taken for dead may not be: a paused process (SIGSTOP, a frozen
// VM) or one cut from Redis wakes with its tasks running elsewhere. Its
// lease, and with it every task it started under that lease, is lost for
// good: Lease.Check fails, the tasks' contexts are cancelled, and their
// results are dropped (the tasks are another member's now), asynq's own
// writes about them too (StaleWrites). The member goes on under a new
// lease. Writers check the lease before each write (see package fence),
// so a stale worker writes nothing.
package liveness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const (
	// Beat is how often a member renews its lease and looks for dead ones.
	Beat = 500 * time.Millisecond
	// DeadAfter is how long after its last beat a member is dead.
	DeadAfter = 3 * time.Second
	// margin is how much sooner than DeadAfter a member stops trusting its
	// own lease: the beat's round trip is counted from before it was sent,
	// and this covers clocks that tick at slightly different rates.
	margin = 250 * time.Millisecond
)

// MembersKey is the sorted set of live members: member ID → Redis time
// (ms) of its last beat.
const MembersKey = membersKey

const (
	membersKey = "{s3fleet}:members"     // member ID → Redis time (ms) of its last beat
	runningKey = "{s3fleet}:running"     // queue NUL task ID → member ID running it
	failedOver = "{s3fleet}:failedover:" // + field: the member a task was taken from
	epochKey   = "{s3fleet}:epoch"       // drawn by the first member to join the Redis as it is
)

// Finished ends the running record of a task whose handler has returned
// (a member ID, then this) until its member forgets it: asynq may not have
// acknowledged the task yet.
const Finished = "\x00finished"

var (
	// ErrLost reports a lease that was taken away: this member was taken
	// for dead and its tasks run elsewhere.
	ErrLost = errors.New("this worker was taken for dead (no beat for " + DeadAfter.String() + "): its tasks run on other workers now")
	// ErrLapsed reports a lease that ran out without news: the beats do
	// not reach Redis.
	ErrLapsed = errors.New("this worker's lease ran out: its beats do not reach Redis")
	// errEmptied is ErrLost when the fleet's epoch went with the member's
	// record: Redis lost every member's, not this one's alone.
	errEmptied = fmt.Errorf("%w; every worker's membership is gone from Redis", ErrLost)
)

// Lease is one incarnation of a member: held while its beats reach Redis
// in time, lost for good once it was taken for dead. A nil Lease is always
// held (a handler run outside a worker, in a test).
type Lease struct {
	id     string
	base   time.Time    // monotonic origin of until
	until  atomic.Int64 // ns after base: trusted until then
	lost   atomic.Bool
	joined atomic.Bool // a beat registered it
	epoch  string      // the fleet's epoch its joining beat found (see beatScript)

	mu      sync.Mutex
	cancels map[*int]context.CancelFunc // the tasks started under it
}

func newLease(worker string) *Lease {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Lease{id: worker + " #" + hex.EncodeToString(b[:]), base: time.Now(), cancels: map[*int]context.CancelFunc{}}
}

// ID names the lease in Redis and in logs: the worker's name and a random
// suffix of the incarnation.
func (l *Lease) ID() string {
	if l == nil {
		return ""
	}
	return l.id
}

// Check reports whether the lease is held now: ErrLost once it was taken,
// ErrLapsed while no beat has renewed it in time.
func (l *Lease) Check() error {
	switch {
	case l == nil:
		return nil
	case l.lost.Load():
		return ErrLost
	case time.Since(l.base).Nanoseconds() >= l.until.Load():
		return ErrLapsed
	}
	return nil
}

// Await waits up to limit for a lapsed lease to be renewed (nil) or lost
// (ErrLost); ErrLapsed if neither happened.
func (l *Lease) Await(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := l.Check()
		if !errors.Is(err, ErrLapsed) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Held waits (up to DeadAfter) until the lease a task runs under is held,
// before a step no stale worker may take (placing a file under its final
// name): nil when held, ErrLost or ErrLapsed otherwise.
func Held(ctx context.Context) error { return LeaseOf(ctx).Await(DeadAfter) }

// Lost reports whether the lease was taken away.
func (l *Lease) Lost() bool { return l != nil && l.lost.Load() }

// renewed trusts the lease until DeadAfter after sent (less the margin).
func (l *Lease) renewed(sent time.Duration) {
	l.until.Store((sent + DeadAfter - margin).Nanoseconds())
}

// lose marks the lease lost and stops every task started under it.
func (l *Lease) lose() {
	l.lost.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.cancels {
		c()
	}
}

// track lets lose stop a task; the function returned forgets it.
func (l *Lease) track(cancel context.CancelFunc) func() {
	k := new(int)
	l.mu.Lock()
	l.cancels[k] = cancel
	l.mu.Unlock()
	if l.lost.Load() {
		cancel()
	}
	return func() {
		l.mu.Lock()
		delete(l.cancels, k)
		l.mu.Unlock()
	}
}

type leaseKey struct{}

// LeaseOf returns the lease a task runs under (nil outside a member).
func LeaseOf(ctx context.Context) *Lease {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return l
}

type failoverKey struct{}

// FailedOver returns the member a task was taken from when it is running
// again because that member died ("" otherwise): what that member left
// half-done (a part file of its own) is this run's to clean.
func FailedOver(ctx context.Context) string {
	s, _ := ctx.Value(failoverKey{}).(string)
	return s
}

// Announcer tells idle workers that a queue has tasks (wake.Queue).
type Announcer interface {
	Announce(ctx context.Context, queue string)
}

// Member is one worker's membership: its current lease, renewed by Run.
type Member struct {
	rdb    redis.UniversalClient
	worker string
	log    *slog.Logger
	cur    atomic.Pointer[Lease]
	// Requeued counts the tasks this member's watchdog moved back to their
	// queues (for tests and metrics).
	Requeued atomic.Int64
	// Wake, when set (before Run), is told of each queue the watchdog
	// moved tasks back to, so that idle workers take them at once rather
	// than at their next poll.
	Wake Announcer

	mu sync.Mutex
	// handed are the tasks (fields) this member ran under a lost lease
	// and a watchdog handed to another member, with when: asynq's writes
	// about them from this member are dropped (StaleWrites).
	handed map[string]time.Time
	// ended are the records (field, value pairs) of the tasks whose
	// handlers returned since the last beat began; aged, of those that
	// returned before it. A beat forgets aged, so a record outlives its
	// task by a beat or more: time for asynq to acknowledge it.
	ended, aged []string
}

// Join registers a member for the named worker with a first beat.
func Join(ctx context.Context, rdb redis.UniversalClient, worker string, log *slog.Logger) (*Member, error) {
	m := &Member{rdb: rdb, worker: worker, log: log}
	l := newLease(worker)
	if _, err := m.beat(ctx, l, false); err != nil {
		return nil, fmt.Errorf("join the fleet: %w", err)
	}
	m.cur.Store(l)
	return m, nil
}

// Lease is the member's current lease.
func (m *Member) Lease() *Lease { return m.cur.Load() }

// Run beats and watches every Beat until ctx ends, then leaves: the member
// is gone from Redis at once, and its tasks (which a graceful stop hands
// back to asynq itself) are not failed over.
func (m *Member) Run(ctx context.Context) {
	t := time.NewTicker(Beat)
	defer t.Stop()
	var failing time.Time
	// A member judges others only once its own beats have reached Redis
	// for DeadAfter: after an outage that cut every member off (Redis
	// restarting or frozen), each has had time to beat again, and nobody
	// takes the others for dead.
	connected := time.Now()
	for {
		select {
		case <-ctx.Done():
			// The server has stopped: every task it ran was acknowledged, or
			// handed back to its queue (past its shutdown timeout).
			leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			m.mu.Lock()
			ended := append(m.aged, m.ended...)
			m.aged, m.ended = nil, nil
			m.mu.Unlock()
			_ = leaveScript.Run(leaveCtx, m.rdb, []string{membersKey, runningKey}, withRecords(ended, m.Lease().ID())...).Err()
			cancel()
			return
		case <-t.C:
		}
		l := m.Lease()
		look := !connected.IsZero() && time.Since(connected) >= DeadAfter
		dead, err := m.beat(ctx, l, look)
		switch {
		case errors.Is(err, ErrLost):
			// Tasks from now on start under a new lease (trusted once a beat
			// joins it); those of the old one stop.
			next := newLease(m.worker)
			m.cur.Store(next)
			l.lose()
			if errors.Is(err, errEmptied) {
				m.log.Warn("this worker's membership is gone from Redis with every other worker's: Redis was emptied, most likely "+
					"(restarted without persistence, or flushed); the tasks it was running are dropped here; it goes on under a new lease",
					"lease", l.ID(), "new_lease", next.ID())
			} else {
				m.log.Warn("this worker was taken for dead (paused, or cut from Redis, for "+DeadAfter.String()+" or more): "+
					"the tasks it was running run elsewhere and their results here are dropped; it goes on under a new lease",
					"lease", l.ID(), "new_lease", next.ID())
			}
			_, _ = m.beat(ctx, next, false)
			connected = time.Now()
			continue
		case err != nil:
			if failing.IsZero() || time.Since(failing) > 10*time.Second {
				m.log.Warn("worker beat failed: if Redis stays unreachable for "+DeadAfter.String()+", this worker's tasks fail over", "err", err)
				failing = time.Now()
			}
			connected = time.Time{}
			continue
		}
		failing = time.Time{}
		if connected.IsZero() {
			connected = time.Now()
		}
		if dead {
			m.watch(ctx)
		}
	}
}

// forgetLua: KEYS[2] running; ARGV[from...] field and value pairs.
// Deletes each finished task's record that still holds the value it was
// left with (not one a run since has written).
const forgetLua = `
for i = %d, #ARGV - 1, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
`

// beatScript: KEYS members, running, epoch; ARGV member, join (1/0),
// dead after (ms; ” to not look), epoch (a new one to set when joining,
// else the one joined), then finished records to forget (forgetLua).
// Records the beat at Redis's time and returns {n, the epoch}: n is -1 if
// the member is not there and is not joining (a watchdog took it for
// dead), -2 if the epoch it joined is gone too (Redis was emptied, most
// likely: every member of the fleet sees that, not only the first to beat
// again and rejoin); 2 if a member is dead, for watchScript to handle (so
// an idle fleet's beat is one call).
var beatScript = redis.NewScript(fmt.Sprintf(forgetLua, 5) + `
if ARGV[2] == '1' then
  redis.call('SET', KEYS[3], ARGV[4], 'NX')
elseif not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('GET', KEYS[3]) ~= ARGV[4] then return {-2, ''} end
  return {-1, ''}
end
local epoch = redis.call('GET', KEYS[3]) or ''
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[3] ~= '' and #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])), 'LIMIT', 0, 1) > 0 then
  return {2, epoch}
end
return {1, epoch}
`)

// leaveScript: KEYS members, running; ARGV member, then finished records
// to forget (forgetLua). Removes the member.
var leaveScript = redis.NewScript(fmt.Sprintf(forgetLua, 2) + `
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)

// beat renews l, registering it with its first successful beat; ErrLost
// if it was taken. With look, it also reports whether a member is dead.
func (m *Member) beat(ctx context.Context, l *Lease, look bool) (dead bool, err error) {
	sent := time.Since(l.base)
	ctx, cancel := context.WithTimeout(ctx, DeadAfter)
	defer cancel()
	after := ""
	if look {
		after = strconv.FormatInt(DeadAfter.Milliseconds(), 10)
	}
	m.mu.Lock()
	forget := m.aged
	m.aged, m.ended = m.ended, nil
	m.mu.Unlock()
	joining := !l.joined.Load()
	epoch := l.epoch
	if joining {
		var b [8]byte
		_, _ = rand.Read(b[:])
		epoch = hex.EncodeToString(b[:])
	}
	var n int64
	out, err := beatScript.Run(ctx, m.rdb, []string{membersKey, runningKey, epochKey}, withRecords(forget, l.id, boolArg(joining), after, epoch)...).Slice()
	if err == nil {
		n, epoch, err = beatResult(out)
	}
	switch {
	case err != nil:
		m.mu.Lock()
		m.aged = append(forget, m.aged...) // for the next beat
		m.mu.Unlock()
		return false, err
	case n == -2:
		return false, errEmptied
	case n < 0:
		return false, ErrLost
	}
	if joining {
		l.epoch = epoch // read by later beats of this lease, all from one goroutine
	}
	l.joined.Store(true)
	l.renewed(sent)
	return n == 2, nil
}

// beatResult reads beatScript's {n, epoch}.
func beatResult(out []any) (int64, string, error) {
	if len(out) == 2 {
		n, ok1 := out[0].(int64)
		epoch, ok2 := out[1].(string)
		if ok1 && ok2 {
			return n, epoch, nil
		}
	}
	return 0, "", fmt.Errorf("beat: unexpected reply %v", out)
}

// watchScript: KEYS members, running; ARGV dead after (ms), failed-over
// key prefix, its TTL (s), Finished. Removes every member dead by Redis's
// clock and takes the tasks they were running, or had finished (perhaps
// unacknowledged), out of the running set, leaving a note of where each
// came from. Returns the dead members, then field and record pairs.
var watchScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
if #dead == 0 then return {} end
local gone = {}
for _, m in ipairs(dead) do
  redis.call('ZREM', KEYS[1], m)
  gone[m] = true
end
local out = {table.concat(dead, '\n')}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local m = all[i + 1]
  if string.sub(m, -#ARGV[4]) == ARGV[4] then m = string.sub(m, 1, #m - #ARGV[4]) end
  if gone[m] then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('SET', ARGV[2] .. all[i], m, 'EX', ARGV[3])
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
`)

// requeueScript: KEYS asynq's active list, lease set, pending list and
// task hash of one queue; ARGV task ID. What asynq's own Requeue does for
// a worker that stops gracefully: the task leaves the active list and the
// lease set and goes to the front of the pending list. 0 if it was not
// active (it finished, or asynq's recoverer had it already).
var requeueScript = redis.NewScript(`
if redis.call('LREM', KEYS[1], 0, ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], 'state', 'pending')
return 1
`)

// asynqKeys are asynq v0.26's keys of queue q (internal/base): the
// active list, the lease set, the pending list and task id's hash.
func asynqKeys(q, id string) []string {
	p := "asynq:{" + q + "}:"
	return []string{p + "active", p + "lease", p + "pending", p + "t:" + id}
}

// watch fails over the tasks of every dead member.
func (m *Member) watch(ctx context.Context) {
	out, err := watchScript.Run(ctx, m.rdb, []string{membersKey, runningKey},
		DeadAfter.Milliseconds(), failedOver, int64(time.Hour/time.Second), Finished).StringSlice()
	if err != nil || len(out) == 0 {
		if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
			m.log.Debug("watchdog", "err", err)
		}
		return
	}
	dead := strings.Split(out[0], "\n")
	moved := 0
	queues := map[string]bool{}
	for i := 1; i+1 < len(out); i += 2 {
		q, id, _ := strings.Cut(out[i], "\x00")
		from, finished := strings.CutSuffix(out[i+1], Finished)
		n, err := requeueScript.Run(ctx, m.rdb, asynqKeys(q, id), id).Int()
		switch {
		case err != nil:
			m.log.Warn("fail over a dead worker's task: asynq's recovery will take it back instead", "queue", q, "task_id", id, "from", from, "err", err)
		case n == 0:
			// Acknowledged already (or recovered by asynq): no run of it
			// is this member's to clean up after.
			if err := m.rdb.Del(ctx, failedOver+out[i]).Err(); err != nil {
				m.log.Debug("watchdog: forget a failover note", "task_id", id, "err", err)
			}
		case n == 1:
			moved++
			queues[q] = true
			m.log.Info("task failed over from a dead worker", "queue", q, "task_id", id, "from", from, "finished_unacknowledged", finished)
		}
	}
	if m.Wake != nil {
		for q := range queues {
			m.Wake.Announce(ctx, q)
		}
	}
	m.Requeued.Add(int64(moved))
	m.log.Warn("worker taken for dead: no beat for "+DeadAfter.String(), "dead", dead, "tasks_failed_over", moved)
}

// startScript: KEYS running, failed-over note; ARGV field, member. Records
// the task as the member's and returns (and clears) the note of the member
// it was taken from.
var startScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local from = redis.call('GET', KEYS[2])
if from then redis.call('DEL', KEYS[2]) end
return from or ''
`)

// finishScript: KEYS running; ARGV field, member, and the record's value
// from now on (” to delete it). Ends the task's record unless another
// member runs it now, or a watchdog took it; 1 if it was still the
// member's.
var finishScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
`)

// Middleware records each task as the current lease's while it runs, so
// that a watchdog can fail it over, and runs it under that lease: the
// task stops when the lease is lost, and its result is then dropped (nil
// to asynq: the task is another member's now, and must not be retried or
// archived from here).
func (m *Member) Middleware(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		l := m.Lease()
		if errors.Is(l.Check(), ErrLapsed) {
			// Woken from a pause, or cut from Redis: the next beat tells
			// whether the lease still holds or was lost, and a task must
			// not start under a lease that is lost already (it would end
			// as a stale run, its writes dropped).
			_ = l.Await(DeadAfter)
			l = m.Lease()
		}
		q, _ := asynq.GetQueueName(ctx)
		id, _ := asynq.GetTaskID(ctx)
		field := q + "\x00" + id
		from, err := startScript.Run(ctx, m.rdb, []string{runningKey, failedOver + field}, field, l.id).Text()
		if err != nil {
			m.log.Debug("record running task", "task_id", id, "err", err) // asynq's recovery still covers it
		}
		ctx, cancel := context.WithCancel(context.WithValue(ctx, leaseKey{}, l))
		if from != "" {
			ctx = context.WithValue(ctx, failoverKey{}, from)
		}
		forget := l.track(cancel)
		panicked := true
		defer func() {
			if panicked {
				// asynq recovers the panic and retries the task as failed
				// (its message names where it was): the record goes as a
				// failed task's does, and the context with it.
				forget()
				cancel()
				m.finish(ctx, l, field, false)
			}
		}()
		err = h.ProcessTask(ctx, t)
		panicked = false
		forget()
		cancel()
		ours, ferr := m.finish(ctx, l, field, err == nil)
		if l.Lost() && ferr == nil && ours == 0 {
			// A watchdog moved it back to its queue: it is another's now,
			// and must not be retried or archived from here.
			m.log.Warn("task result dropped: it runs elsewhere since this worker was taken for dead", "task_id", id, "queue", q, "err", err)
			m.handOver(field) // again: the lease may have been lost after finish looked
			return nil
		}
		if l.Lost() && err == nil {
			// Done before the watchdog moved it: the result stands.
			return nil
		}
		if l.Lost() {
			return fmt.Errorf("this worker's lease was lost during the task: %w", err)
		}
		return err
	})
}

// finish ends the record of the task of field, run under l: a task that
// succeeded keeps one, finished, until asynq has acknowledged it; a failed
// one's goes (asynq retries it under the same ID). It returns whether the
// record was still this run's. A run whose lease is lost and that cannot
// tell whether a watchdog took its task, or knows one did, notes it handed
// over.
func (m *Member) finish(ctx context.Context, l *Lease, field string, succeeded bool) (ours int, err error) {
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer fcancel()
	finished := ""
	if succeeded {
		finished = l.id + Finished // kept until asynq has acknowledged it
	}
	ours, err = finishScript.Run(fctx, m.rdb, []string{runningKey}, field, l.id, finished).Int()
	if err == nil && ours == 1 && finished != "" {
		m.mu.Lock()
		m.ended = append(m.ended, field, finished)
		m.mu.Unlock()
	}
	if l.Lost() && (err != nil || ours == 0) {
		// Whether a watchdog took it is not known, or it did: asynq's
		// write must not end the other member's run (at worst, asynq's
		// lease recovery runs it again).
		m.handOver(field)
	}
	return ours, err
}

// handOver notes that the task of field is another member's run now.
func (m *Member) handOver(field string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handed == nil {
		m.handed = map[string]time.Time{}
	}
	for f, at := range m.handed {
		if time.Since(at) > handedFor {
			delete(m.handed, f)
		}
	}
	m.handed[field] = time.Now()
}

// handedFor is how long after a stale run ended asynq may still write about
// it: its task lease (30 s), past which it writes nothing, and a margin.
// An older note must not drop the writes of a later run of the task here.
const handedFor = 35 * time.Second

// stale reports (and forgets) whether asynq's write about field is a stale
// run's.
func (m *Member) stale(field string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.handed[field]
	delete(m.handed, field)
	return ok && time.Since(at) <= handedFor
}

// StaleWrites is a go-redis hook for the Redis client of the member's
// asynq server. It drops asynq's writes that take a task out of its queue's
// active list (its acknowledgement, retry, archive or requeue scripts) when
// the task is one this member ran under a lost lease and a watchdog handed
// to another member. That member runs it now under the same ID, and
// asynq's scripts do not check whose run they end: the write would take
// the other run out of the active list, and were that member to die as
// well, neither a watchdog nor asynq's lease recovery would find the task
// again, and its job would never end.
func (m *Member) StaleWrites() redis.Hook { return staleWrites{m} }

type staleWrites struct{ m *Member }

// DialHook is go-redis's; StaleWrites does not change it.
func (staleWrites) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook is go-redis's; StaleWrites does not change it (asynq
// ends a task with a single script call).
func (staleWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook answers asynq's write about a stale run as done, without
// Redis, and passes every other command on.
func (h staleWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if field, ok := endsActive(cmd.Args()); ok {
			if h.m.stale(field) {
				h.m.log.Info("asynq's write about a task handed to another worker dropped", "task", strings.ReplaceAll(field, "\x00", " "))
				return nil // as if done: asynq forgets the task here
			}
		}
		return next(ctx, cmd)
	}
}

// endsActive tells a script call of asynq (v0.26) that takes a task out of
// its queue's active list by its keys, among them asynq:{q}:active and
// asynq:{q}:t:ID, and returns the task's field (q NUL ID).
// TestStaleWritesDropped checks it against asynq's acknowledgement, and
// TestEndsActive against the keys of its other such scripts.
func endsActive(args []any) (string, bool) {
	if len(args) < 5 {
		return "", false
	}
	if name, _ := args[0].(string); !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return "", false
	}
	n, err := strconv.Atoi(fmt.Sprint(args[2]))
	if err != nil || n < 2 || len(args) < 3+n {
		return "", false
	}
	var activeOf, queue, id string
	for _, a := range args[3 : 3+n] {
		k, _ := a.(string)
		rest, ok := strings.CutPrefix(k, "asynq:{")
		if !ok {
			continue
		}
		q, tail, ok := strings.Cut(rest, "}:")
		if !ok {
			continue
		}
		if tail == "active" {
			activeOf = q
		} else if t, ok := strings.CutPrefix(tail, "t:"); ok && t != "" && id == "" {
			queue, id = q, t // Archive also names the prefix "t:"
		}
	}
	if id == "" || activeOf != queue {
		return "", false
	}
	return queue + "\x00" + id, true
}

// withRecords is a script's arguments: args, then the records to forget.
func withRecords(records []string, args ...any) []any {
	for _, r := range records {
		args = append(args, r)
	}
	return args
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
