package liveness

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/internal/wake"
)

// start runs a Redis for a test and returns it, a client of it and a
// logger that discards.
func start(t *testing.T) (*testenv.Redis, redis.UniversalClient, *slog.Logger) {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	return r, rdb, slog.New(slog.NewTextHandler(io.Discard, nil))
}

// join makes a member named worker, with its first beat.
func join(t *testing.T, rdb redis.UniversalClient, worker string, log *slog.Logger) *Member {
	t.Helper()
	m, err := Join(context.Background(), rdb, worker, log)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run is a task seen by a handler: which member ran it, under which lease,
// and whether it was failed over.
type run struct {
	member string
	lease  *Lease
	from   string
	ctx    context.Context
}

// serve runs an asynq server on queue q whose handler, behind m's
// middleware, reports each run and blocks until its context ends.
func serve(t *testing.T, rdb redis.UniversalClient, m *Member, name string, runs chan<- run) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"q": 1}, TaskCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(m.Middleware)
	mux.HandleFunc("block", func(ctx context.Context, _ *asynq.Task) error {
		runs <- run{member: name, lease: LeaseOf(ctx), from: FailedOver(ctx), ctx: ctx}
		<-ctx.Done()
		return ctx.Err()
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

// TestFailover: a member that stops beating mid-task is dead DeadAfter
// later; a live member's watchdog moves its task back to the queue under
// the same ID, and another member runs it, told where it came from. When
// the dead member beats again it learns its lease is lost: the task it
// started is cancelled, and it goes on under a new lease.
func TestFailover(t *testing.T) {
	_, rdb, log := start(t)
	ctx := context.Background()

	a := join(t, rdb, "host-a (pid 1)", log)
	runs := make(chan run, 4)
	serve(t, rdb, a, "a", runs) // a never beats again: as good as dead
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("block", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	first := <-runs
	if first.member != "a" || first.lease != a.Lease() || first.from != "" {
		t.Fatalf("first run: %+v", first)
	}
	started := time.Now()

	b := join(t, rdb, "host-b (pid 2)", log)
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(bctx)
	serve(t, rdb, b, "b", runs)

	var second run
	select {
	case second = <-runs:
	case <-time.After(20 * time.Second): // DeadAfter and a beat; asynq alone takes 60 s or more
		t.Fatal("the dead member's task was not run elsewhere within 20 s")
	}
	took := time.Since(started)
	t.Logf("failed over %s after the last beat (DeadAfter %s)", took.Round(10*time.Millisecond), DeadAfter)
	if second.member != "b" || second.from != a.Lease().ID() {
		t.Fatalf("second run: member %s, failed over from %q; want b, from %q", second.member, second.from, a.Lease().ID())
	}
	if took < DeadAfter-margin {
		t.Errorf("failed over after %s, before the member was %s without a beat", took, DeadAfter)
	}
	if n := b.Requeued.Load(); n != 1 {
		t.Errorf("b's watchdog requeued %d tasks, want 1", n)
	}
	if err := first.lease.Check(); err == nil {
		t.Error("the dead member's lease still checks out long after its last beat")
	}
	// a's task is still in its handler, as in a paused process. It wakes:
	// its beat finds the lease taken.
	old := a.Lease()
	actx, astop := context.WithCancel(ctx)
	defer astop()
	go a.Run(actx)
	select {
	case <-first.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stale task was not stopped when its member learned its lease was lost")
	}
	if !errors.Is(old.Check(), ErrLost) {
		t.Errorf("old lease: %v, want ErrLost", old.Check())
	}
	for deadline := time.Now().Add(5 * time.Second); a.Lease() == old || a.Lease().Check() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a did not go on under a new lease (%v)", a.Lease().Check())
		}
	}
	// The running task is b's alone in the record.
	owners, err := rdb.HGetAll(ctx, runningKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := owners["q\x00t1"]; got != b.Lease().ID() {
		t.Errorf("running record of t1: %q, want b's lease %q (all: %v)", got, b.Lease().ID(), owners)
	}
}

// TestLeaveIsNotDeath: a member that stops (its Run ends) leaves at once,
// and its tasks are not failed over.
func TestLeaveIsNotDeath(t *testing.T) {
	_, rdb, log := start(t)
	ctx := context.Background()
	a := join(t, rdb, "a", log)
	actx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	time.Sleep(2 * Beat)
	stop()
	<-done
	if n, err := rdb.ZCard(ctx, membersKey).Result(); err != nil || n != 0 {
		t.Fatalf("members after leaving: %d (%v)", n, err)
	}
}

// TestLeaseLapses: a lease is trusted for DeadAfter less the margin after
// a beat, no longer.
func TestLeaseLapses(t *testing.T) {
	l := newLease("x")
	if !errors.Is(l.Check(), ErrLapsed) {
		t.Fatalf("a lease never renewed: %v", l.Check())
	}
	l.renewed(time.Since(l.base))
	if err := l.Check(); err != nil {
		t.Fatalf("just renewed: %v", err)
	}
	l.renewed(time.Since(l.base) - DeadAfter)
	if !errors.Is(l.Check(), ErrLapsed) {
		t.Fatalf("renewed DeadAfter ago: %v", l.Check())
	}
	if err := l.Await(50 * time.Millisecond); !errors.Is(err, ErrLapsed) {
		t.Fatalf("Await: %v", err)
	}
	l.lose()
	if err := l.Await(time.Second); !errors.Is(err, ErrLost) {
		t.Fatalf("Await after lose: %v", err)
	}
	var none *Lease
	if none.Check() != nil || none.Lost() {
		t.Fatal("a nil lease must always be held")
	}
}

// TestOutageIsNotDeath: Redis (AOF on) killed and restarted after longer
// than DeadAfter cuts every member off at once; when it answers again,
// nobody takes the others for dead (each waits DeadAfter of its own beats
// before judging), and every lease survives.
func TestOutageIsNotDeath(t *testing.T) {
	r := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ms []*Member
	var leases []*Lease
	for _, name := range []string{"a", "b", "c"} {
		m, err := Join(ctx, rdb, name, log)
		if err != nil {
			t.Fatal(err)
		}
		go m.Run(ctx)
		ms, leases = append(ms, m), append(leases, m.Lease())
	}
	time.Sleep(DeadAfter + Beat) // every member judges others by now
	r.Restart(t, syscall.SIGKILL, 2*DeadAfter)
	time.Sleep(2 * DeadAfter)
	for i, m := range ms {
		if m.Lease() != leases[i] || leases[i].Lost() {
			t.Errorf("member %d lost its lease over an outage that cut everyone off", i)
		}
		if n := m.Requeued.Load(); n != 0 {
			t.Errorf("member %d took others for dead", i)
		}
	}
	if n, err := rdb.ZCard(context.Background(), membersKey).Result(); err != nil || n != 3 {
		t.Errorf("%d members after the outage (%v), want 3", n, err)
	}
}

// cut is a go-redis hook that fails every command while on: a process
// cut from Redis (or killed) at a moment of the test's choosing.
type cut struct{ on atomic.Bool }

var errCut = errors.New("cut from Redis by the test")

func (c *cut) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *cut) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if c.on.Load() {
			cmd.SetErr(errCut)
			return errCut
		}
		return next(ctx, cmd)
	}
}

func (c *cut) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if c.on.Load() {
			for _, cmd := range cmds {
				cmd.SetErr(errCut)
			}
			return errCut
		}
		return next(ctx, cmds)
	}
}

// serveFunc runs an asynq server on queue q with handler h for task type
// "quick" behind m's middleware, on its own Redis client, cut by c.
func serveFunc(t *testing.T, addr string, c *cut, m *Member, h asynq.HandlerFunc) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	rdb.AddHook(c)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"q": 1}, TaskCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(m.Middleware)
	mux.HandleFunc("quick", h)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.on.Store(false)
		srv.Shutdown()
		rdb.Close()
	})
}

// TestFinishedUnacknowledgedFailsOver: a worker whose handler returned
// but which died before asynq acknowledged the task (cut from Redis here)
// leaves the task active; a live member's watchdog moves it back to its
// queue in seconds, as it does a running one, and another member runs
// it, told where it came from. Before, the record went with the handler,
// and the task waited for asynq's lease (30 s, then its sweep).
func TestFinishedUnacknowledgedFailsOver(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()

	a := join(t, rdb, "host-a (pid 1)", log) // never beats again
	runs := make(chan run, 4)
	var acut cut
	serveFunc(t, r.Addr, &acut, a, func(ctx context.Context, _ *asynq.Task) error {
		runs <- run{member: "a", lease: LeaseOf(ctx), from: FailedOver(ctx), ctx: ctx}
		acut.on.Store(true) // dies as the handler returns: no acknowledgement
		return nil
	})
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("quick", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	if first := <-runs; first.member != "a" {
		t.Fatalf("first run: %+v", first)
	}
	started := time.Now()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec, _ := rdb.HGet(ctx, runningKey, "q\x00t1").Result()
		if rec == a.Lease().ID()+Finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("t1's record after its handler returned: %q, want %q", rec, a.Lease().ID()+Finished)
		}
	}
	if state, _ := rdb.HGet(ctx, "asynq:{q}:t:t1", "state").Result(); state != "active" {
		t.Fatalf("t1 is %q after its handler returned with the worker cut off, want active (unacknowledged)", state)
	}

	b := join(t, rdb, "host-b (pid 2)", log)
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(bctx)
	var bcut cut
	serveFunc(t, r.Addr, &bcut, b, func(ctx context.Context, _ *asynq.Task) error {
		runs <- run{member: "b", lease: LeaseOf(ctx), from: FailedOver(ctx), ctx: ctx}
		return nil
	})
	select {
	case second := <-runs:
		if second.member != "b" || second.from != a.Lease().ID() {
			t.Fatalf("second run: member %s, failed over from %q; want b, from %q", second.member, second.from, a.Lease().ID())
		}
	case <-time.After(15 * time.Second): // DeadAfter and a beat; asynq's lease is 30 s
		t.Fatal("the unacknowledged task of a dead member was not run elsewhere within 15 s")
	}
	t.Logf("an unacknowledged task failed over %s after its handler returned", time.Since(started).Round(10*time.Millisecond))
	if n := b.Requeued.Load(); n != 1 {
		t.Errorf("b's watchdog requeued %d tasks, want 1", n)
	}
}

// TestFinishedRecordsForgotten: a finished task's record is forgotten by
// its member's second beat after it, unless a run since has written it;
// a member that leaves forgets its records at once. A failed task's
// record goes with its handler (asynq runs it again, under the same ID).
func TestFinishedRecordsForgotten(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()
	a := join(t, rdb, "a", log)
	actx, leave := context.WithCancel(ctx)
	left := make(chan struct{})
	go func() { a.Run(actx); close(left) }()
	var c cut
	serveFunc(t, r.Addr, &c, a, func(_ context.Context, task *asynq.Task) error {
		if string(task.Payload()) == "fail" {
			return errors.New("failed on purpose")
		}
		return nil
	})
	client := asynq.NewClientFromRedisClient(rdb)
	// finished enqueues a task and waits for its record to be marked
	// finished.
	finished := func(id string) {
		t.Helper()
		if _, err := client.Enqueue(asynq.NewTask("quick", nil), asynq.Queue("q"), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if rec, _ := rdb.HGet(ctx, runningKey, "q\x00"+id).Result(); rec == a.Lease().ID()+Finished {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s was not recorded finished within 5 s", id)
			}
		}
	}
	finished("t1")
	finished("t2")
	// t2 runs elsewhere now (a watchdog moved it, another member took it):
	// its record is that member's, and a's beats must not delete it.
	if err := rdb.HSet(ctx, runningKey, "q\x00t2", "another member").Err(); err != nil {
		t.Fatal(err)
	}
	// Forgotten by the second beat after (a second at most, unless the
	// beats are late: a loaded machine gets 5 s).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		all, err := rdb.HGetAll(ctx, runningKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := all["q\x00t1"]; !ok {
			if len(all) != 1 || all["q\x00t2"] != "another member" {
				t.Fatalf("records once t1's was forgotten: %q; want only t2's, rewritten", all)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("t1's finished record was not forgotten within 5 s: %q", all)
		}
	}
	time.Sleep(2 * Beat) // t2's note is forgotten by now too, without deleting the rewritten record
	if rec, _ := rdb.HGet(ctx, runningKey, "q\x00t2").Result(); rec != "another member" {
		t.Fatalf("t2's record, rewritten by a later run, is %q after a's beats", rec)
	}
	if _, err := client.Enqueue(asynq.NewTask("quick", []byte("fail")), asynq.Queue("q"), asynq.TaskID("f1"), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if state, _ := rdb.HGet(ctx, "asynq:{q}:t:f1", "state").Result(); state == "archived" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing task was not archived within 5 s")
		}
	}
	// asynq archived it after the middleware ended its record.
	if rec, err := rdb.HGet(ctx, runningKey, "q\x00f1").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a failed task's record outlived its handler: %q (%v)", rec, err)
	}

	finished("t3")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		a.mu.Lock()
		n := len(a.ended) + len(a.aged)
		a.mu.Unlock()
		if n > 0 { // the middleware has noted it, just after writing it
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("t3's finished record was not noted to be forgotten")
		}
	}
	leave()
	<-left
	if _, err := rdb.HGet(ctx, runningKey, "q\x00t3").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("t3's finished record outlived its member's leaving (%v)", err)
	}
}

// TestHandBackAnnounced: a watchdog announces the queues it moved a dead
// member's tasks back to (wake), so a live worker whose gate polls only
// every 20 s takes the task at once.
func TestHandBackAnnounced(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()

	a := join(t, rdb, "host-a (pid 1)", log) // never beats again
	runs := make(chan run, 4)
	serve(t, rdb, a, "a", runs)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("block", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	if first := <-runs; first.member != "a" {
		t.Fatalf("first run: %+v", first)
	}

	b := join(t, rdb, "host-b (pid 2)", log)
	b.Wake = wake.NewClient(rdb)
	gate := wake.NewGate(20*time.Second, log)
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	go gate.Listen(gctx, rdb)
	brdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	brdb.AddHook(gate)
	srv := asynq.NewServerFromRedisClient(brdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"q": 1}, TaskCheckInterval: wake.Tick,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(b.Middleware)
	ran := make(chan time.Time, 1)
	mux.HandleFunc("block", func(context.Context, *asynq.Task) error { ran <- time.Now(); return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); brdb.Close() })
	time.Sleep(300 * time.Millisecond) // b's server has looked, found q empty, and closed its gate
	go b.Run(gctx)

	var moved time.Time
	for deadline := time.Now().Add(15 * time.Second); b.Requeued.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b's watchdog moved nothing back within 15 s")
		}
	}
	moved = time.Now()
	select {
	case at := <-ran:
		t.Logf("the task ran on b %v after the hand-back was counted", max(at.Sub(moved), 0).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the task handed back did not run on b within 1 s (its gate polls every 20 s): the hand-back was not announced")
	}
}

// TestFinishedAcknowledgedLeftAlone: a dead member's finished record of a
// task asynq had acknowledged is taken by the watchdog, which moves
// nothing back and leaves no failover note for a later run of that ID.
func TestFinishedAcknowledgedLeftAlone(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()

	a := join(t, rdb, "host-a (pid 1)", log) // never beats again: its records stay
	var c cut
	serveFunc(t, r.Addr, &c, a, func(context.Context, *asynq.Task) error { return nil })
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("quick", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		rec, _ := rdb.HGet(ctx, runningKey, "q\x00t1").Result()
		_, err := rdb.HGet(ctx, "asynq:{q}:t:t1", "state").Result()
		if rec == a.Lease().ID()+Finished && errors.Is(err, redis.Nil) {
			break // finished, and acknowledged (asynq deleted it)
		}
		if time.Now().After(deadline) {
			t.Fatalf("t1 was not finished and acknowledged within 5 s: record %q", rec)
		}
	}

	b := join(t, rdb, "host-b (pid 2)", log)
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(bctx)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := rdb.ZCard(ctx, membersKey).Result(); n == 1 {
			break // a was taken for dead, its records with it
		}
		if time.Now().After(deadline) {
			t.Fatal("b's watchdog did not take a for dead within 15 s")
		}
	}
	time.Sleep(Beat) // the watchdog's requeue and its note's removal come just after
	if n, err := rdb.HLen(ctx, runningKey).Result(); err != nil || n != 0 {
		t.Errorf("%d records left after the watchdog took a's (%v)", n, err)
	}
	if n := b.Requeued.Load(); n != 0 {
		t.Errorf("b's watchdog moved %d acknowledged tasks back", n)
	}
	if n, err := rdb.Exists(ctx, failedOver+"q\x00t1").Result(); err != nil || n != 0 {
		t.Errorf("a failover note was left for t1, acknowledged before its worker died (%v)", err)
	}
}

// TestStaleWritesDropped: a member paused past DeadAfter whose task was
// handed to another member wakes, its task is stopped, and asynq's
// acknowledgement of it is dropped (StaleWrites): the other member's run
// stays in asynq's active list, where a watchdog would find it were that
// member to die too. Without the hook asynq's write took it out.
func TestStaleWritesDropped(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()

	a := join(t, rdb, "host-a (pid 1)", log) // paused: no beat until woken below
	arun := make(chan run, 1)
	ardb := redis.NewClient(&redis.Options{Addr: r.Addr})
	ardb.AddHook(a.StaleWrites())
	t.Cleanup(func() { ardb.Close() }) // after a's server stops (cleanups run last first)
	serve(t, ardb, a, "a", arun)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("block", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	first := <-arun

	b := join(t, rdb, "host-b (pid 2)", log)
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(bctx)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"q": 1}, TaskCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(b.Middleware)
	started, release := make(chan struct{}, 1), make(chan struct{})
	mux.HandleFunc("block", func(context.Context, *asynq.Task) error {
		started <- struct{}{}
		<-release
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("a's task was not handed to b within 20 s")
	}

	go a.Run(bctx) // a wakes: its lease is lost, its run of t1 stops
	select {
	case <-first.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a's stale run was not stopped")
	}
	time.Sleep(time.Second) // a's asynq has written (or tried to) what its run ended in
	active, err := rdb.LRange(ctx, "asynq:{q}:active", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0] != "t1" {
		t.Fatalf("asynq's active list while b runs t1: %q; a's stale acknowledgement took b's run out", active)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := rdb.Exists(ctx, "asynq:{q}:t:t1").Result(); n == 0 {
			break // b's run acknowledged
		}
		if time.Now().After(deadline) {
			t.Fatal("b's run of t1 was not acknowledged within 5 s")
		}
	}
}

// TestEndsActive: the keys of asynq v0.26's scripts that take a task out
// of its active list (rdb.Done, MarkAsComplete, Requeue, Retry, Archive,
// in their order) are told; its dequeue, and keys of another queue, are
// not.
func TestEndsActive(t *testing.T) {
	p := "asynq:{q}:"
	for name, keys := range map[string][]string{
		"done":     {p + "active", p + "lease", p + "t:id1", p + "processed:2026-12-04", p + "processed"},
		"complete": {p + "active", p + "lease", p + "completed", p + "t:id1", p + "processed:2026-12-04", p + "processed"},
		"requeue":  {p + "active", p + "lease", p + "pending", p + "t:id1"},
		"retry":    {p + "t:id1", p + "active", p + "lease", p + "retry", p + "processed:d", p + "failed:d", p + "processed", p + "failed"},
		"archive":  {p + "t:id1", p + "active", p + "lease", p + "archived", p + "processed:d", p + "failed:d", p + "processed", p + "failed", p + "t:"},
	} {
		args := []any{"evalsha", "sha", len(keys)}
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, "argv")
		if f, ok := endsActive(args); !ok || f != "q\x00id1" {
			t.Errorf("%s: %q, %v", name, f, ok)
		}
	}
	for name, args := range map[string][]any{
		"dequeue":       {"evalsha", "sha", 4, p + "pending", p + "paused", p + "active", p + "lease", "now"},
		"another queue": {"evalsha", "sha", 3, "asynq:{other}:active", p + "lease", p + "t:id1"},
		"not a script":  {"lrem", p + "active", 0, "id1"},
	} {
		if f, ok := endsActive(args); ok {
			t.Errorf("%s told as ending %q", name, f)
		}
	}
}

// TestNoTaskUnderALostLease: a task that starts while the member's lease
// has lapsed (woken from a pause, before its beat learns the lease was
// taken) waits for that beat and runs under the new lease, not as a stale
// run of the lost one.
func TestNoTaskUnderALostLease(t *testing.T) {
	r, rdb, log := start(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	a := join(t, rdb, "host-a (pid 1)", log) // paused: no beat until woken below
	old := a.Lease()
	runs := make(chan *Lease, 1)
	var c cut
	serveFunc(t, r.Addr, &c, a, func(ctx context.Context, _ *asynq.Task) error {
		runs <- LeaseOf(ctx)
		return ctx.Err()
	})
	b := join(t, rdb, "host-b (pid 2)", log)
	go b.Run(ctx)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := rdb.ZCard(ctx, membersKey).Result(); n == 1 {
			break // a was taken for dead
		}
		if time.Now().After(deadline) {
			t.Fatal("b's watchdog did not take a for dead within 15 s")
		}
	}
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("quick", nil), asynq.Queue("q"), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a's server has taken it, and waits
	go a.Run(ctx)                      // a wakes: its next beat learns the lease was lost
	select {
	case l := <-runs:
		if l == old || l.Lost() {
			t.Fatalf("the task ran under the lost lease %s", l.ID())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the task did not run within 5 s")
	}
}

// TestStaleNoteExpires: a note that a task was handed away drops asynq's
// one write about it, and only within handedFor: past that asynq writes
// nothing about the stale run, and a later run's writes go through.
func TestStaleNoteExpires(t *testing.T) {
	m := &Member{}
	m.handOver("q\x00a")
	m.handOver("q\x00b")
	m.mu.Lock()
	m.handed["q\x00b"] = time.Now().Add(-handedFor - time.Second)
	m.mu.Unlock()
	if !m.stale("q\x00a") {
		t.Error("a fresh note did not drop asynq's write")
	}
	if m.stale("q\x00a") {
		t.Error("a note dropped a second write")
	}
	if m.stale("q\x00b") {
		t.Errorf("a note older than %s dropped a write", handedFor)
	}
}

// TestPanicEndsRecord: a handler that panics ends as a failed one does:
// asynq recovers the panic and keeps the task to retry, and the task's
// running record and its context's place in the lease go. Before, a
// panic skipped both, and the record stayed as long as its member.
func TestPanicEndsRecord(t *testing.T) {
	r, rdb, log := start(t)
	ctx := context.Background()
	a := join(t, rdb, "host-a (pid 1)", log)
	ran := make(chan *Lease, 1)
	var c cut
	serveFunc(t, r.Addr, &c, a, func(ctx context.Context, _ *asynq.Task) error {
		ran <- LeaseOf(ctx)
		panic("boom: a bug in the handler")
	})
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("quick", nil), asynq.Queue("q"), asynq.TaskID("t1"), asynq.MaxRetry(3)); err != nil {
		t.Fatal(err)
	}
	var l *Lease
	select {
	case l = <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the task did not run within 10 s")
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := insp.GetTaskInfo("q", "t1")
		if err == nil && info.State == asynq.TaskStateRetry {
			if !strings.Contains(info.LastErr, "panic") {
				t.Errorf("the task's last error is %q, not asynq's panic", info.LastErr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task is not to retry 10 s after its panic: %v, %v", info, err)
		}
	}
	if rec, err := rdb.HGet(ctx, runningKey, "q\x00t1").Result(); err != redis.Nil {
		t.Errorf("the panicked task's running record is %q (%v), want none", rec, err)
	}
	l.mu.Lock()
	n := len(l.cancels)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("the lease still tracks %d task contexts after the panic", n)
	}
}

// TestRedisEmptiedNamed: the members of a fleet whose Redis was emptied
// (restarted without persistence, or flushed) say so, every one of them
// (not only the first to beat again and rejoin), rather than that they
// were taken for dead after a pause, which sent an operator looking for a
// pause; each goes on under a new lease, as one taken for dead does.
func TestRedisEmptiedNamed(t *testing.T) {
	_, rdb, _ := start(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	names := []string{"host-a (pid 1)", "host-b (pid 2)", "host-c (pid 3)"}
	outs := make([]*testenv.SyncBuffer, len(names))
	members := make([]*Member, len(names))
	olds := make([]*Lease, len(names))
	for i, name := range names {
		outs[i] = &testenv.SyncBuffer{}
		members[i] = join(t, rdb, name, slog.New(slog.NewTextHandler(outs[i], nil)))
		olds[i] = members[i].Lease()
		go members[i].Run(ctx)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		logged := awaitLog(t, outs[i], "lease=", 10*time.Second)
		if !strings.Contains(logged, "Redis was emptied") || strings.Contains(logged, "paused") {
			t.Errorf("after a flush %s logged:\n%s", name, logged)
		}
		if !olds[i].Lost() {
			t.Errorf("%s: the lease from before the flush still holds", name)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		back := 0
		for i, m := range members {
			if s, err := rdb.ZScore(ctx, membersKey, m.Lease().ID()).Result(); err == nil && s > 0 && m.Lease() != olds[i] {
				back++
			}
		}
		if back == len(members) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d members back under a new lease 5 s after the flush", back, len(members))
		}
	}
}

// TestTakenForDeadNotEmptied: a member taken for dead by a watchdog that
// has left since (the members set empty, as after a flush) was taken for
// dead, and says so: the fleet's epoch is still the one it joined.
func TestTakenForDeadNotEmptied(t *testing.T) {
	_, rdb, log := start(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var out testenv.SyncBuffer
	a := join(t, rdb, "host-a (pid 1)", slog.New(slog.NewTextHandler(&out, nil))) // paused: no beat until woken below
	b := join(t, rdb, "host-b (pid 2)", log)
	bctx, bstop := context.WithCancel(ctx)
	bdone := make(chan struct{})
	go func() { b.Run(bctx); close(bdone) }()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := rdb.ZCard(ctx, membersKey).Result(); n == 1 {
			break // a was taken for dead
		}
		if time.Now().After(deadline) {
			t.Fatal("b's watchdog did not take a for dead within 15 s")
		}
	}
	bstop() // b leaves: no member is left
	<-bdone
	if n, _ := rdb.Exists(ctx, membersKey).Result(); n != 0 {
		t.Fatalf("the members set is still there after b left")
	}
	go a.Run(ctx)
	logged := awaitLog(t, &out, "lease=", 10*time.Second)
	if !strings.Contains(logged, "taken for dead") || strings.Contains(logged, "emptied") {
		t.Errorf("a, taken for dead by a member that has left since, logged:\n%s", logged)
	}
}

// awaitLog waits up to limit for a log to hold want, and returns it.
func awaitLog(t *testing.T, out *testenv.SyncBuffer, want string, limit time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if logged := out.String(); strings.Contains(logged, want) {
			return logged
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged within %s:\n%s", want, limit, out.String())
		}
	}
}
