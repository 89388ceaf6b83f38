package throttle

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestUnpacedCostsNothing: a scope the store never throttled is not paced
// and asks Redis at most once a second, whatever the request rate.
func TestUnpacedCostsNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	f := New(rdb, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if err := takeScript.Load(ctx, rdb).Err(); err != nil { // no NOSCRIPT round
		t.Fatal(err)
	}
	before := r.Scripts(t)
	began := time.Now()
	for i := 0; i < 5000; i++ {
		if err := f.Wait(ctx, "ep/bkt/"); err != nil {
			t.Fatal(err)
		}
		f.Done("ep/bkt/", false)
	}
	took := time.Since(began)
	calls := r.Scripts(t) - before
	if max := int64(took/recheck) + 1; calls > max {
		t.Errorf("5,000 unpaced requests in %v made %d Redis calls, want ≤ %d", took, calls, max)
	}
	if rate, err := f.Rate(ctx, "ep/bkt/"); err != nil || rate != 0 {
		t.Errorf("rate %v, %v; want 0 (not paced)", rate, err)
	}
}

// TestSharedRate: the first SlowDown sets the scope's rate from what the
// store accepted (this worker's successes per second times the live
// workers); a second worker, which never saw a SlowDown, learns it within
// a second; together they keep to it; a SlowDown within the cooldown does
// not cut again, a later one cuts by Beta; the rate lapses after Idle.
func TestSharedRate(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	now := float64(time.Now().UnixMilli()) // Redis runs on this machine's clock
	for _, m := range []string{"w1", "w2"} {
		rdb.ZAdd(ctx, "members", redisZ(m, now))
	}
	rdb.ZAdd(ctx, "members", redisZ("dead", now-10_000))
	log := slog.New(slog.DiscardHandler)
	a, b := New(rdb, "members", 3*time.Second, log), New(rdb, "members", 3*time.Second, log)
	// A Redis call that a loaded machine delays past callTimeout would
	// leave the scope unpaced for a second, and this test counts grants.
	a.timeout, b.timeout = time.Minute, time.Minute
	const sc = "ep/bkt/logs/"
	// Worker a made 30 successful requests in the current second.
	for i := 0; i < 30; i++ {
		a.Done(sc, false)
	}
	if err := b.Wait(ctx, sc); err != nil { // b looked: not paced
		t.Fatal(err)
	}
	a.Done(sc, true)
	rate := settled(t, a, sc, 0)
	if want := 30.0 * 2; rate < want*0.99 || rate > want*1.01 {
		t.Fatalf("first rate %.1f/s, want %.0f (30/s accepted × 2 live workers; the dead one not counted)", rate, want)
	}
	if g, _ := rdb.HGet(ctx, prefix+sc, "grow").Float64(); g != Probe {
		t.Fatalf("after the first cut the rate grows by %v a second, want to probe by %v", g, Probe)
	}
	a.Done(sc, true) // within the cooldown: the same congestion
	if r2 := settled(t, a, sc, 0); r2 > rate*1.01 || r2 < rate*0.99 {
		t.Fatalf("a SlowDown within the cooldown moved the rate from %.1f to %.1f", rate, r2)
	}
	// Past the cooldown a SlowDown ends the probe: nobody used the rate
	// meanwhile, so it did not grow, and it is cut by Beta.
	time.Sleep(Cooldown)
	a.Done(sc, true)
	first := rate
	rate = settled(t, a, sc, first*0.99)
	if want := first * Beta; rate < want*0.99 || rate > want*1.01 {
		t.Fatalf("the second cut took %.1f/s to %.1f, want %.1f", first, rate, want)
	}
	if rdb.HExists(ctx, prefix+sc, "grow").Val() {
		t.Fatal("still probing after the second cut")
	}

	// Both keep to the rate: b learns it at its next look, within recheck.
	time.Sleep(recheck)
	var granted atomic.Int64
	run := 2 * time.Second
	deadline := time.Now().Add(run)
	var wg sync.WaitGroup
	for _, f := range []*Fleet{a, b, a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := f.Wait(ctx, sc); err != nil {
					t.Error(err)
					return
				}
				if time.Now().Before(deadline) {
					granted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	got := float64(granted.Load()) / run.Seconds()
	// The rate grows by Alpha of itself per second meanwhile (recheck and
	// the run); tokens were 0 at the cut.
	hi := rate * (1 + Alpha*4)
	if got > hi*1.1 || got < rate*0.8 {
		t.Errorf("granted %.1f/s across two workers, want about %.1f–%.1f", got, rate, hi)
	}
	t.Logf("rate %.1f/s, granted %.1f/s", rate, got)

	// Past the cooldown a SlowDown cuts by Beta (of the granted rate, at
	// most the rate).
	a.Done(sc, true)
	cut := settled(t, a, sc, rate*1.2)
	if cut > hi*Beta*1.05 || cut < rate*Beta*0.8 {
		t.Errorf("cut to %.1f/s from about %.1f, want ×%.1f", cut, got, Beta)
	}
	if ttl := rdb.PTTL(ctx, prefix+sc).Val(); ttl < Idle-5*time.Second || ttl > Idle {
		t.Errorf("the paced scope lapses in %v, want %v", ttl, Idle)
	}
	rdb.Del(ctx, prefix+sc) // as if Idle passed
	time.Sleep(recheck)
	if err := b.Wait(ctx, sc); err != nil {
		t.Fatal(err)
	}
	b.scope(sc).mu.Lock()
	paced := b.scope(sc).paced
	b.scope(sc).mu.Unlock()
	if paced {
		t.Error("b still paces a scope whose rate lapsed")
	}
}

// TestWaitHonoursContext: a request waiting for its turn gives up when its
// context ends.
func TestWaitHonoursContext(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	f := New(rdb, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	const sc = "ep/bkt/"
	f.Done(sc, true) // one attempt, throttled: MinRate
	settled(t, f, sc, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = f.Wait(ctx, sc)
	}
	if err == nil || time.Since(began) > time.Second {
		t.Fatalf("100 requests at %v/s: err %v after %v; want the context's end after 300 ms", MinRate, err, time.Since(began))
	}
}

func redisZ(member string, score float64) redis.Z { return redis.Z{Member: member, Score: score} }

// TestScopesForgotten: a worker reading a bucket of many top-level
// prefixes does not keep a scope for each for ever.
func TestScopesForgotten(t *testing.T) {
	f := New(nil, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	for i := range maxScopes {
		f.scope("ep/bkt/p" + strconv.Itoa(i) + "/").used = time.Now().Add(-2 * forget)
	}
	f.scope("ep/bkt/recent/")
	if n := len(f.scopes); n != 1 {
		t.Fatalf("%d scopes remembered after a new one past %d, want 1 (the old ones forgotten)", n, maxScopes)
	}
}

// settled waits for a Done's cut to reach Redis: for the scope's rate to
// be set and, when below is not 0, under below.
func settled(t *testing.T, f *Fleet, sc string, below float64) float64 {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		f.scope(sc).mu.Lock()
		cutting := f.scope(sc).cutting
		f.scope(sc).mu.Unlock()
		r, err := f.Rate(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		if !cutting && r > 0 && (below == 0 || r < below) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cut of %s did not land: rate %v", sc, r)
		}
	}
}

// TestCutAfterPause: the granted rate measured across a pause in traffic
// is unknown, not the pause's average: a SlowDown after it cuts the rate
// by Beta, not to MinRate.
func TestCutAfterPause(t *testing.T) {
	r := testenv.StartRedis(t)
	f := New(r.Client(t), "members", 3*time.Second, slog.New(slog.DiscardHandler))
	const sc = "ep/bkt/"
	for range 50 {
		f.Done(sc, false)
	}
	f.Done(sc, true)
	rate := settled(t, f, sc, 0)
	time.Sleep(2500 * time.Millisecond) // no request: a pause longer than a window
	if err := f.Wait(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	f.Done(sc, true)
	cut := settled(t, f, sc, rate*1.5*Beta)
	if cut < rate*Beta*0.9 {
		t.Fatalf("a SlowDown after a pause cut %.1f/s to %.1f/s, want about %.1f (×%.1f)", rate, cut, rate*Beta, Beta)
	}
}

// TestSlowRedisPacesNothing: a Redis that does not answer holds a request
// at most callTimeout, and for a second after that none at all.
func TestSlowRedisPacesNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	f := New(rdb, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	const sc = "ep/bkt/"
	f.Done(sc, true)
	settled(t, f, sc, 0)
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for range 20 {
		if err := f.Wait(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took > 2*callTimeout {
		t.Fatalf("20 requests took %v with Redis paused, want at most about %v (one timeout, then none asked)", took, callTimeout)
	}
}

// TestCallAnswerStands: a Redis call that answered is never taken for a
// failure. The call's context was once cancelled as its answer arrived,
// and the select that read them picked the cancel at random: a healthy
// Redis was marked down, and the scope went unpaced for a second.
func TestCallAnswerStands(t *testing.T) {
	f := New(nil, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	f.timeout = time.Minute // a loaded machine may delay a call; that is not this test's
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20_000 {
				if err := f.call(context.Background(), func(context.Context) error { return nil }); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 || f.isDown() {
		t.Fatalf("%d of 80,000 answered calls failed", n)
	}
}

// TestProbe: after its first cut a scope's rate doubles each second while
// the fleet uses it, until the store refuses again: a first guess far
// below what the store takes is not left to climb by Alpha for minutes.
func TestProbe(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	f := New(rdb, "members", 3*time.Second, slog.New(slog.DiscardHandler))
	f.timeout = time.Minute
	const sc = "ep/bkt/"
	began := time.Now()
	f.Done(sc, true) // one attempt, throttled: a quarter of it, at least MinRate
	first := settled(t, f, sc, 0)
	ctx := context.Background()
	var granted atomic.Int64
	run := 5 * time.Second
	deadline := time.Now().Add(run)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := f.Wait(ctx, sc); err != nil {
					t.Error(err)
					return
				}
				granted.Add(1)
			}
		}()
	}
	wg.Wait()
	now, err := f.Rate(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	// At least three doublings in 5 s (by its step alone it would reach
	// 7/s), and at most one a second since the cut.
	most := first * math.Pow(1+Probe, time.Since(began).Seconds()) * 1.01
	if now < first*math.Pow(1+Probe, 3) || now > most {
		t.Fatalf("the rate went from %.1f/s to %.1f/s in %v of use, want three doublings or more and at most %.1f/s", first, now, run, most)
	}
	t.Logf("probing: %.1f/s → %.1f/s in %v, %d granted", first, now, run, granted.Load())
}

// TestProbeManyWaiters: a first rate far below what the store takes, met
// by many more waiting requests than it grants a second, still doubles
// each second, and the grants follow it. Once every waiter was promised
// its time when the rate was set: sixty-four requests at 2/s slept up to
// half a minute, the rate could not grow for want of use, and a fleet
// crept at the first guess for seconds (TestSlowDownFleetWide, in CI).
func TestProbeManyWaiters(t *testing.T) {
	const sc = "ep/bkt/"
	r, f, first := pacedAtMin(t, sc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := r.Scripts(t)
	began := time.Now()
	const run = 5 * time.Second
	var late, all atomic.Int64 // grants in the run's last second, and in all
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(began) < run {
				if err := f.Wait(ctx, sc); err != nil {
					return
				}
				d := time.Since(began)
				if d >= run-time.Second && d < run {
					late.Add(1)
				}
				if d < run {
					all.Add(1)
				}
			}
		}()
	}
	time.Sleep(run)
	cancel()
	wg.Wait()
	rate, err := f.Rate(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probing with 64 waiters: %.1f/s → %.1f/s in %v; %d granted in the last second", first, rate, run, late.Load())
	// Requests queued all along: the rate doubled each second, unbounded
	// by the rate of tickets taken (which lags it), so it is past 2^4.5
	// times the first after 5 s; and the grants follow it.
	if least := first * math.Pow(1+Probe, 4.5); rate < least || float64(late.Load()) < first*4 {
		t.Fatalf("from %.1f/s with 64 waiters: the rate reached %.1f/s and %d were granted in the last second of %v; want ≥ %.0f/s and ≥ %.0f",
			first, rate, late.Load(), run, least, first*4)
	}
	// No more than the rate: it doubled at most each second, so all it
	// granted is at most twice its last second's, and a burst.
	if n := all.Load(); float64(n) > 2*rate+MinRate {
		t.Errorf("%d granted in %v, more than the rate let go (it ended at %.1f/s)", n, run, rate)
	}
	// Each waiter asks again at most each horizon, and once more near
	// its time.
	calls = r.Scripts(t) - calls
	if most := int64(64*(int(run/horizon)+2)) + 2*all.Load(); calls > most {
		t.Errorf("%d Redis calls for %d grants to 64 waiters in %v, want at most %d", calls, all.Load(), run, most)
	}
	t.Logf("%d Redis calls, %d grants", calls, all.Load())
}

// TestFirstRateMeanGuess: the first worker throttled may have had no
// success to count (a blind guess: MinRate); the first rate is the mean
// of the guesses of the workers throttled within its cooldown that saw
// successes (what the store accepted from each, times the live workers),
// one from each, and a SlowDown after the cooldown cuts it.
func TestFirstRateMeanGuess(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	log := slog.New(slog.DiscardHandler)
	a, b, c := New(rdb, "members", 3*time.Second, log), New(rdb, "members", 3*time.Second, log), New(rdb, "members", 3*time.Second, log)
	for _, f := range []*Fleet{a, b, c} {
		f.cooldown = 3 * time.Second // a loaded machine must not end it before c speaks
	}
	const sc = "ep/bkt/"
	// Counts are kept by the second: start one, so that b's and c's
	// successes all fall in it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	a.Done(sc, true)
	if first := settled(t, a, sc, 0); first != MinRate {
		t.Fatalf("first rate %.1f/s from one refused attempt, want %v", first, MinRate)
	}
	for range 40 {
		b.Done(sc, false)
	}
	b.Done(sc, true)
	if rate := settledAt(t, b, sc, 40); rate < 40*0.99 || rate > 40*1.01 {
		t.Fatalf("a guess of 40/s after a blind one gave %.1f/s, want 40 (a blind guess counts only alone)", rate)
	}
	b.Done(sc, true) // the same process again, within its cooldown: not heard
	for range 10 {
		c.Done(sc, false)
	}
	c.Done(sc, true)
	want := (40.0 + 10) / 2
	if rate := settledAt(t, c, sc, want); rate < want*0.99 || rate > want*1.01 {
		t.Fatalf("a second guess of 10/s gave %.1f/s, want %.1f (the mean of b's and c's, b's told once)", rate, want)
	}
	time.Sleep(b.cooldown)
	for range 200 {
		b.Done(sc, false)
	}
	b.Done(sc, true) // past the cooldown: a cut, whatever its guess
	if cut := settled(t, b, sc, want); cut > want*Beta*1.1 {
		t.Fatalf("a SlowDown past the cooldown took the rate from %.1f to %.1f/s, want a cut to about %.1f", want, cut, want*Beta)
	}
}

// TestProbeAfterPause: a probe grows without the cap of the rate seen
// only while requests queue for it; a pause after a queue does not count
// as queued (the rate once jumped by 2^pause).
func TestProbeAfterPause(t *testing.T) {
	const sc = "ep/bkt/"
	_, f, _ := pacedAtMin(t, sc)
	var wg sync.WaitGroup
	for range 3 { // a queue of 3, served within about a second
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Wait(context.Background(), sc); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	before, _ := f.Rate(context.Background(), sc)
	time.Sleep(3 * time.Second)
	if err := f.Wait(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	after, _ := f.Rate(context.Background(), sc)
	// Unused for 3 s, the rate may grow at most to twice the rate seen
	// before the pause, which is about what it was.
	if after > before*2.5 {
		t.Fatalf("the rate went from %.1f/s to %.1f/s over a 3 s pause after a queue, want at most %.1f", before, after, before*2.5)
	}
}

// settledAt waits up to 2 s for the scope's rate to come within 1 % of
// want, and returns it as it is then.
func settledAt(t *testing.T, f *Fleet, sc string, want float64) float64 {
	t.Helper()
	var rate float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if rate, err = f.Rate(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
		if math.Abs(rate-want) <= want/100 {
			break
		}
	}
	return rate
}

// TestQueueOrder: requests paced far into the future keep the order in
// which they asked, though each asks Redis again while it waits.
func TestQueueOrder(t *testing.T) {
	const sc = "ep/bkt/"
	r, f, _ := pacedAtMin(t, sc)
	const n = 6
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	issued := func() int64 { v, _ := r.Client(t).HGet(context.Background(), prefix+sc, "issued").Int64(); return v }
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Wait(context.Background(), sc); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		for issued() != int64(i+1) { // each asks after the one before
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("went in the order %v, want the order they asked in", order)
		}
	}
}

// TestCutWhileQueued: a SlowDown that ends a probe while requests queue
// cuts Beta of the rate, which the queue used all of. The rate of tickets
// taken lags a probe by a second or two, and cutting Beta of that once
// took a fleet to a fifth of what the store accepted (TestSlowDownFleetWide
// in CI: 76 requests a second, then 13).
func TestCutWhileQueued(t *testing.T) {
	const sc = "ep/bkt/"
	r, f, _ := pacedAtMin(t, sc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f.Wait(ctx, sc) == nil {
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	time.Sleep(4 * time.Second) // probing: about 32/s
	before, err := f.Rate(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	seen, _ := r.Client(t).HGet(context.Background(), prefix+sc, "seen").Float64()
	f.Done(sc, true)
	cut := settled(t, f, sc, before)
	t.Logf("probe at %.1f/s (tickets seen %.1f/s), cut to %.1f/s", before, seen, cut)
	if cut < before*Beta*0.95 {
		t.Fatalf("a SlowDown while 64 requests queued cut %.1f/s to %.1f/s, want about %.1f (×%v of the rate, not of the %.1f/s seen)",
			before, cut, before*Beta, Beta, seen)
	}
}

// pacedAtMin starts Redis and a Fleet (its calls given a minute: a loaded
// machine must not leave a scope unpaced) whose scope sc one throttled
// attempt paced at MinRate, and returns them with that rate.
func pacedAtMin(t *testing.T, sc string) (*testenv.Redis, *Fleet, float64) {
	t.Helper()
	r := testenv.StartRedis(t)
	f := New(r.Client(t), "members", 3*time.Second, slog.New(slog.DiscardHandler))
	f.timeout = time.Minute
	f.Done(sc, true)
	return r, f, settled(t, f, sc, 0)
}
