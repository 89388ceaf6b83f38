package wake

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// server runs an asynq server on r through a Gate that looks at Redis
// every poll, serving queues, and sends each task's payload to got.
func server(t *testing.T, r *testenv.Redis, poll time.Duration, queues []string) (*Gate, <-chan string) {
	t.Helper()
	gate := NewGate(poll, slog.New(slog.DiscardHandler))
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	c.AddHook(gate)
	ctx, cancel := context.WithCancel(context.Background())
	go gate.Listen(ctx, r.Client(t))
	q := map[string]int{}
	for _, n := range queues {
		q[n] = 1
	}
	srv := asynq.NewServerFromRedisClient(c, asynq.Config{Concurrency: 2, Queues: q, TaskCheckInterval: Tick, LogLevel: asynq.ErrorLevel})
	got := make(chan string, 16)
	mux := asynq.NewServeMux()
	mux.HandleFunc("t", func(_ context.Context, task *asynq.Task) error {
		got <- string(task.Payload())
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); cancel(); c.Close() })
	return gate, got
}

// within reports how long until a payload arrives on got, or false after
// limit.
func within(got <-chan string, want string, limit time.Duration) (time.Duration, bool) {
	began := time.Now()
	deadline := time.After(limit)
	for {
		select {
		case p := <-got:
			if p == want {
				return time.Since(began), true
			}
		case <-deadline:
			return limit, false
		}
	}
}

// TestAnnouncedTaskStartsAtOnce: with a poll of 5 s, a task queued through
// Queue is taken at once (it was announced); one queued by asynq's own
// client, unannounced, waits for the poll, but is taken then.
func TestAnnouncedTaskStartsAtOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	_, got := server(t, r, 5*time.Second, []string{"default"})
	raw := asynq.NewClientFromRedisClient(rdb)
	q := NewQueue(raw, rdb)
	ctx := context.Background()
	time.Sleep(500 * time.Millisecond) // the server has looked, found nothing, and closed its gate

	if _, err := q.EnqueueContext(ctx, asynq.NewTask("t", []byte("announced"))); err != nil {
		t.Fatal(err)
	}
	took, ok := within(got, "announced", time.Second)
	if !ok {
		t.Fatal("an announced task was not taken within 1 s (the poll is 5 s)")
	}
	time.Sleep(200 * time.Millisecond) // its look after the task found the queue empty again

	if _, err := raw.EnqueueContext(ctx, asynq.NewTask("t", []byte("unannounced"))); err != nil {
		t.Fatal(err)
	}
	if _, ok := within(got, "unannounced", 300*time.Millisecond); ok {
		t.Fatal("an unannounced task was taken within 300 ms: the gate let asynq's looks through")
	}
	if _, ok := within(got, "unannounced", 9*time.Second); !ok {
		t.Fatal("an unannounced task was not taken by the poll (5 s, jittered to at most 7.5 s)")
	}
	t.Logf("announced task taken after %v", took.Round(time.Millisecond))
}

// TestIdleCostsAPoll: an idle worker's looks at Redis come once a poll a
// queue, though asynq looks every Tick.
func TestIdleCostsAPoll(t *testing.T) {
	r := testenv.StartRedis(t)
	queues := []string{"a", "b", "c"}
	const poll = 200 * time.Millisecond
	gate, _ := server(t, r, poll, queues)
	time.Sleep(300 * time.Millisecond)
	before, looksBefore := r.Scripts(t), gate.looks.Load()
	const idle = 2 * time.Second
	time.Sleep(idle)
	calls, looks := r.Scripts(t)-before, gate.looks.Load()-looksBefore
	// A look a queue each poll/2 at the most (the jitter's shortest),
	// and asynq's own scripts (its heartbeat, forwarder, recoverer).
	most := int64(len(queues))*int64(idle/(poll/2)) + 20
	if calls > most {
		t.Fatalf("%d Redis script calls in %v idle, want at most %d (asynq looks every %v: %d)", calls, idle, most, Tick, int64(len(queues))*int64(idle/Tick))
	}
	// asynq looks every Tick, but waits in the gate while every queue is
	// closed: a look a queue each hold, or each poll/2 at the most.
	if most := int64(len(queues)) * int64(idle/(poll/2)+idle/hold); looks > most {
		t.Errorf("asynq looked at its queues %d times in %v idle, want at most %d (spinning every %v: %d)", looks, idle, most, Tick, int64(len(queues))*int64(idle/Tick))
	}
	t.Logf("%d script calls and %d looks in %v idle, %d queues, poll %v", calls, looks, idle, len(queues), poll)
}

// TestWakeOneQueue: an announcement opens its queue's gate, not the
// others'; "" opens them all; a look that began before an announcement
// does not close the gate after it.
func TestWakeOneQueue(t *testing.T) {
	g := NewGate(time.Hour, slog.New(slog.DiscardHandler))
	for _, q := range []string{"a", "b"} {
		_, woke := g.open(q)
		g.looked(q, woke, true)
	}
	if open, _ := g.open("a"); open {
		t.Fatal("a queue found empty is open before its poll")
	}
	g.Wake("a")
	if open, _ := g.open("a"); !open {
		t.Fatal("an announced queue is closed")
	}
	if open, _ := g.open("b"); open {
		t.Fatal("another queue's announcement opened b")
	}
	_, woke := g.open("a")
	g.Wake("a") // announced while the look was on its way
	g.looked("a", woke, true)
	if open, _ := g.open("a"); !open {
		t.Fatal("a look that began before an announcement closed the gate after it")
	}
	g.Wake("")
	if open, _ := g.open("b"); !open {
		t.Fatal(`Wake("") left b closed`)
	}
}

// TestDequeueOf: of the calls asynq's server makes, dequeueOf picks out
// its look at each queue, and nothing else (asynq changing its dequeue
// would fail this, not leave workers polling slowly unnoticed).
func TestDequeueOf(t *testing.T) {
	r := testenv.StartRedis(t)
	rec := &recorder{}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	c.AddHook(rec)
	defer c.Close()
	srv := asynq.NewServerFromRedisClient(c, asynq.Config{Concurrency: 1, Queues: map[string]int{"q1": 1, "q-2:x": 1},
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	done := make(chan struct{}, 1)
	mux.HandleFunc("t", func(context.Context, *asynq.Task) error { done <- struct{}{}; return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if _, err := asynq.NewClientFromRedisClient(r.Client(t)).Enqueue(asynq.NewTask("t", nil), asynq.Queue("q-2:x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the task was not taken in 10 s")
	}
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	rec.mu.Lock()
	for _, args := range rec.calls {
		if q, ok := dequeueOf(args); ok {
			seen[q]++
		}
	}
	n := len(rec.calls)
	rec.mu.Unlock()
	if seen["q1"] == 0 || seen["q-2:x"] == 0 || len(seen) != 2 {
		t.Fatalf("dequeueOf found looks at %v among %d calls, want both queues q1 and q-2:x, and nothing else", seen, n)
	}
}

// recorder notes every command's arguments.
type recorder struct {
	mu    sync.Mutex
	calls [][]any
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.mu.Lock()
		r.calls = append(r.calls, cmd.Args())
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

// TestAnnouncementsCoalesce: a hundred tasks queued at once are announced
// a few times, not a hundred; and a task queued within the window of the
// announcement before it is announced at the window's end.
func TestAnnouncementsCoalesce(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	ps := rdb.Subscribe(context.Background(), Channel)
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil { // subscribed
		t.Fatal(err)
	}
	heard := func(limit time.Duration) int {
		n := 0
		for timeout := time.After(limit); ; n++ {
			select {
			case m := <-ps.Channel():
				if m.Payload != "default" {
					t.Fatalf("announced %q, want the queue default", m.Payload)
				}
				continue
			case <-timeout:
			}
			return n
		}
	}
	q := NewQueue(asynq.NewClientFromRedisClient(rdb), rdb)
	enqueue := func() {
		if _, err := q.EnqueueContext(context.Background(), asynq.NewTask("t", nil)); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		enqueue()
	}
	if n := heard(500 * time.Millisecond); n == 0 || n > 30 {
		t.Fatalf("100 tasks queued at once: %d announcements, want 1 to 30", n)
	}
	// Two tasks, the second within the window of the first's announcement:
	// two announcements, the second at the window's end.
	enqueue()
	enqueue()
	if n := heard(500 * time.Millisecond); n != 2 {
		t.Fatalf("two tasks queued within the %v window: %d announcements, want 2 (the second at the window's end)", window, n)
	}
}

// TestScriptsFlushed: a Redis that lost its scripts (restarted, failed
// over, SCRIPT FLUSH) answers asynq's look NOSCRIPT; the gate lets
// go-redis's EVAL that loads it again through, and tasks are taken.
func TestScriptsFlushed(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	_, got := server(t, r, 3*time.Second, []string{"default"})
	q := NewQueue(asynq.NewClientFromRedisClient(rdb), rdb)
	time.Sleep(500 * time.Millisecond)
	for i, p := range []string{"first", "after the flush"} {
		if i == 1 {
			if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.EnqueueContext(context.Background(), asynq.NewTask("t", []byte(p))); err != nil {
			t.Fatal(err)
		}
		if _, ok := within(got, p, time.Second); !ok {
			t.Fatalf("the task queued %s was not taken within 1 s (the poll is 3 s)", p)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestHoldOnceARound: while every queue is closed, one look of a round
// of asynq's waits (up to hold) and the others do not; an announcement
// of a queue this worker does not serve changes nothing.
func TestHoldOnceARound(t *testing.T) {
	g := NewGate(time.Hour, slog.New(slog.DiscardHandler))
	queues := []string{"a", "b", "c", "d", "e"}
	for _, q := range queues {
		_, ver := g.open(q)
		g.looked(q, ver, true)
	}
	g.Wake("host:elsewhere")
	began := time.Now()
	for _, q := range queues {
		if open, _ := g.open(q); open {
			t.Fatalf("%s open before its poll", q)
		}
	}
	if took := time.Since(began); took < hold || took > 3*hold {
		t.Fatalf("a round of 5 closed looks took %v, want one hold (%v): the first waits, the rest do not", took, hold)
	}
}

// TestListenRefusedIsLogged: a worker whose Redis user may not subscribe
// (an ACL without pub/sub) says so, naming Redis's refusal and the poll
// it falls back on, and hears announcements once the user may.
func TestListenRefusedIsLogged(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := r.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := admin.Do(ctx, "ACL", "SETUSER", "worker", "on", ">secret", "~*", "&*", "+@all", "-@pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	user := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "worker", Password: "secret"})
	defer user.Close()
	log := &testenv.SyncBuffer{}
	gate := NewGate(time.Minute, slog.New(slog.NewTextHandler(log, nil)))
	done := make(chan struct{})
	go func() { gate.Listen(ctx, user); close(done) }()

	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), what); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q logged; the log:\n%s", what, log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("NOPERM")
	if s := log.String(); !strings.Contains(s, "cannot hear announcements") || !strings.Contains(s, "poll=1m0s") {
		t.Fatalf("the refusal is not explained: %s", s)
	}
	// Tried again, and refused again (Redis's ACL log counts the
	// refusals), but logged once.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		entries, err := admin.ACLLog(ctx, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		var refused int64
		for _, e := range entries {
			if e.Username == "worker" {
				refused += e.Count
			}
		}
		if refused >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis refused the subscription %d times in 10 s: Listen did not try again", refused)
		}
	}
	if n := strings.Count(log.String(), "NOPERM"); n != 1 {
		t.Fatalf("the same refusal logged %d times:\n%s", n, log.String())
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "worker", "+@pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor("hearing announcements again")
	// A queue this worker serves is announced: only a message naming it
	// moves its count (a subscription wakes every queue another way).
	gate.mu.Lock()
	before := gate.queue("q1").ver
	gate.mu.Unlock()
	if err := admin.Publish(ctx, Channel, "q1").Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		gate.mu.Lock()
		heard := gate.queues["q1"].ver > before
		gate.mu.Unlock()
		if heard {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an announcement after the grant was not heard")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return when its context ended")
	}
}
