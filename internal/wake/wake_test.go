package wake

import (
	"context"
	"log/slog"
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

// TestAnnouncedTaskStartsAtOnce: with a poll of 3 s, a task queued through
// Queue is taken at once (it was announced); one queued by asynq's own
// client, unannounced, waits for the poll, but is taken then.
func TestAnnouncedTaskStartsAtOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	_, got := server(t, r, 3*time.Second, []string{"default"})
	raw := asynq.NewClientFromRedisClient(rdb)
	q := NewQueue(raw, rdb)
	ctx := context.Background()
	time.Sleep(500 * time.Millisecond) // the server has looked, found nothing, and closed its gate

	if _, err := q.EnqueueContext(ctx, asynq.NewTask("t", []byte("announced"))); err != nil {
		t.Fatal(err)
	}
	took, ok := within(got, "announced", time.Second)
	if !ok {
		t.Fatal("an announced task was not taken within 1 s (the poll is 3 s)")
	}
	time.Sleep(200 * time.Millisecond) // its look after the task found the queue empty again

	if _, err := raw.EnqueueContext(ctx, asynq.NewTask("t", []byte("unannounced"))); err != nil {
		t.Fatal(err)
	}
	if _, ok := within(got, "unannounced", 300*time.Millisecond); ok {
		t.Fatal("an unannounced task was taken within 300 ms: the gate let asynq's looks through")
	}
	if _, ok := within(got, "unannounced", 5*time.Second); !ok {
		t.Fatal("an unannounced task was not taken by the poll (3 s, jittered to at most 4.5 s)")
	}
	t.Logf("announced task taken after %v", took.Round(time.Millisecond))
}

// TestIdleCostsAPoll: an idle worker's looks at Redis come once a poll a
// queue, though asynq looks every Tick.
func TestIdleCostsAPoll(t *testing.T) {
	r := testenv.StartRedis(t)
	queues := []string{"a", "b", "c"}
	const poll = 200 * time.Millisecond
	server(t, r, poll, queues)
	time.Sleep(300 * time.Millisecond)
	before := r.Scripts(t)
	const idle = 2 * time.Second
	time.Sleep(idle)
	calls := r.Scripts(t) - before
	// A look a queue each poll/2 at the most (the jitter's shortest),
	// and asynq's own scripts (its heartbeat, forwarder, recoverer).
	most := int64(len(queues))*int64(idle/(poll/2)) + 20
	if calls > most {
		t.Fatalf("%d Redis script calls in %v idle, want at most %d (asynq looks every %v: %d)", calls, idle, most, Tick, int64(len(queues))*int64(idle/Tick))
	}
	t.Logf("%d script calls in %v idle, %d queues, poll %v", calls, idle, len(queues), poll)
}

// TestWakeOneQueue: an announcement opens its queue's gate, not the
// others'; "" opens them all; a look that began before an announcement
// does not close the gate after it.
func TestWakeOneQueue(t *testing.T) {
	g := NewGate(time.Hour, slog.New(slog.DiscardHandler))
	now := time.Now()
	for _, q := range []string{"a", "b"} {
		_, woke := g.open(q, now)
		g.looked(q, woke, true)
	}
	if open, _ := g.open("a", now); open {
		t.Fatal("a queue found empty is open before its poll")
	}
	g.Wake("a")
	if open, _ := g.open("a", now); !open {
		t.Fatal("an announced queue is closed")
	}
	if open, _ := g.open("b", now); open {
		t.Fatal("another queue's announcement opened b")
	}
	_, woke := g.open("a", now)
	g.Wake("a") // announced while the look was on its way
	g.looked("a", woke, true)
	if open, _ := g.open("a", now); !open {
		t.Fatal("a look that began before an announcement closed the gate after it")
	}
	g.Wake("")
	if open, _ := g.open("b", now); !open {
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
	<-done
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
// a few times, not a hundred, and the last of them is announced after it
// was queued (the window's trailing announcement).
func TestAnnouncementsCoalesce(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	ps := rdb.Subscribe(context.Background(), Channel)
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil { // subscribed
		t.Fatal(err)
	}
	q := NewQueue(asynq.NewClientFromRedisClient(rdb), rdb)
	var queuedLast time.Time // when the last task's queuing began
	for range 100 {
		queuedLast = time.Now()
		if _, err := q.EnqueueContext(context.Background(), asynq.NewTask("t", nil)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	var last time.Time
	for timeout := time.After(500 * time.Millisecond); ; {
		select {
		case m := <-ps.Channel():
			if m.Payload != "default" {
				t.Fatalf("announced %q, want the queue default", m.Payload)
			}
			n++
			last = time.Now()
			continue
		case <-timeout:
		}
		break
	}
	if n == 0 || n > 50 || last.Before(queuedLast) {
		t.Fatalf("100 tasks queued: %d announcements, the last %v after the last task; want 1 to 50, the last after it", n, last.Sub(queuedLast))
	}
	t.Logf("100 tasks queued, %d announcements", n)
}
