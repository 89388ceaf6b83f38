// Package throttle shares one request rate per S3 bucket and prefix across
// the fleet, so that a store answering 503 SlowDown sees the whole fleet
// back off together, not fifty workers each retrying on their own.
//
// Nothing is paced until the store first throttles a scope (an endpoint,
// a bucket and a key's first path segment). Then the scope gets a rate in
// Redis that every worker obeys, adjusted AIMD-fashion:
//
//   - the first SlowDown sets it to the rate the store was accepting: this
//     worker's successful requests per second times the live workers,
//     or the mean of such guesses from the workers throttled within the
//     cooldown;
//   - a later SlowDown, at most one a second, cuts it to Beta times the
//     rate, or the rate of requests taking their turn when that is lower
//     and none queues;
//   - between cuts it grows by Alpha of the cut rate per second;
//   - a scope not throttled for Idle goes back to unpaced.
//
// Every attempt of every request takes a ticket, its place in the queue
// of the scope's token bucket (a Lua script on Redis's clock). Its time is
// promised at most half a second ahead: a request further back asks again
// with its ticket, so a rate that grows serves the queue at once. A worker
// whose scope is unpaced asks Redis at most once a second whether that
// changed. So an unthrottled fleet pays no Redis call per request, and a
// throttled one pays one, and one more for each half second a request
// waits past the first.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// Beta is the multiplicative decrease of a cut.
	Beta = 0.7
	// Alpha is the additive increase: this share of the rate at the last
	// cut, per second.
	Alpha = 0.05
	// Probe is the growth per second after a scope's first cut, until the
	// next: the first rate is a guess from one worker's few seconds of
	// history, and one that guessed a tenth of what the store takes would
	// take minutes to climb back by Alpha. The rate doubles each second
	// until the store refuses again, and grows by Alpha from then on (as
	// TCP's slow start before congestion avoidance).
	Probe = 1.0
	// MinRate is the lowest rate (requests/s) a scope is cut to.
	MinRate = 2.0
	// Cooldown is how long after a cut further SlowDowns count as the
	// same congestion: requests granted before the cut still land then.
	Cooldown = time.Second
	// Idle is how long after its last SlowDown a scope stays paced.
	Idle = 2 * time.Minute
	// horizon is how far ahead a request is promised a token; one due
	// later asks again (at most a horizon on), so that when the rate grows
	// the waiting requests go at the new rate, not at the one they found.
	horizon = 500 * time.Millisecond
	// recheck is how often an unpaced scope asks Redis whether another
	// worker was throttled, and how long a failing Redis is left alone.
	recheck = time.Second
	// callTimeout bounds a Redis call that a request waits for: a Redis
	// slower than this is as good as down.
	callTimeout = time.Second
	// okSeconds is how far back a worker's own successful requests are
	// counted for the first rate.
	okSeconds = 5
	// maxScopes is how many scopes a process remembers before it forgets
	// those unused for forget.
	maxScopes = 10_000
	forget    = time.Minute
)

const prefix = "{s3fleet}:pace:"

// Fleet is one process's side of the shared rates.
type Fleet struct {
	rdb       redis.UniversalClient
	members   string        // the liveness members key: live workers and their last beat
	deadAfter time.Duration // a member silent this long is not live
	timeout   time.Duration // callTimeout; tests on a loaded machine raise it
	cooldown  time.Duration // Cooldown; tests on a loaded machine raise it
	log       *slog.Logger

	// down is when Redis last failed or kept a request waiting past
	// callTimeout (Unix ns): for recheck after it nothing is paced.
	down atomic.Int64

	mu     sync.Mutex
	scopes map[string]*scope
	swept  time.Time // last sweep of unused scopes
}

// scope is what this process knows of one scope.
type scope struct {
	key     string
	used    time.Time // last asked for; under Fleet.mu
	mu      sync.Mutex
	paced   bool
	asking  int // requests asking Redis now
	checked time.Time
	cuts    int              // throttled attempts seen: an answer asked for before one is stale
	cutting bool             // a cut is on its way to Redis
	told    time.Time        // when this process last told Redis of a SlowDown
	ok      [okSeconds]int64 // successful attempts in each of the last seconds
	all     [okSeconds]int64 // all attempts, throttled ones too
	okSec   [okSeconds]int64 // the Unix second each count is of
}

// count notes an attempt in the current second's counts.
func (s *scope) count(now int64, ok bool) {
	i := now % okSeconds
	if s.okSec[i] != now {
		s.okSec[i], s.ok[i], s.all[i] = now, 0, 0
	}
	s.all[i]++
	if ok {
		s.ok[i]++
	}
}

// rates are the scope's successful and all attempts per second over the
// last okSeconds, counting the current one, or over the seconds since
// the first of them when that is shorter (a worker that just started).
func (s *scope) rates(now int64) (ok, all float64) {
	var nOK, nAll int64
	oldest := now
	for i, sec := range s.okSec {
		if now-sec < okSeconds && s.all[i] > 0 {
			nOK += s.ok[i]
			nAll += s.all[i]
			oldest = min(oldest, sec)
		}
	}
	span := float64(now - oldest + 1)
	return float64(nOK) / span, float64(nAll) / span
}

// New returns the fleet's rates on rdb. members is the sorted set of
// workers (member → last beat in ms, Redis time); those that beat within
// deadAfter are live, and their number multiplies the first rate.
func New(rdb redis.UniversalClient, members string, deadAfter time.Duration, log *slog.Logger) *Fleet {
	return &Fleet{rdb: rdb, members: members, deadAfter: deadAfter, timeout: callTimeout, cooldown: Cooldown, log: log, scopes: map[string]*scope{}}
}

func (f *Fleet) scope(name string) *scope {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.scopes[name]
	if !ok {
		if len(f.scopes) >= maxScopes {
			f.sweep(now)
		}
		s = &scope{key: prefix + name}
		f.scopes[name] = s
	}
	s.used = now
	return s
}

// sweep forgets the scopes unused for forget, at most once per forget/2
// (a sweep walks them all); when that is not enough, a tenth of them at
// random: a forgotten scope loses only its counts, and asks Redis again.
func (f *Fleet) sweep(now time.Time) {
	if now.Sub(f.swept) >= forget/2 {
		f.swept = now
		for n, old := range f.scopes {
			if now.Sub(old.used) > forget {
				delete(f.scopes, n)
			}
		}
	}
	for n := range f.scopes {
		if len(f.scopes) < maxScopes*9/10 {
			break
		}
		delete(f.scopes, n)
	}
}

// Wait blocks until the scope's rate lets one more request go, or ctx
// ends. A Redis that fails, or answers slower than callTimeout, paces
// nothing for a second: the request goes, and whatever it needs from
// Redis afterwards fails on its own.
func (f *Fleet) Wait(ctx context.Context, name string) error {
	if f.isDown() {
		return nil
	}
	s := f.scope(name)
	s.mu.Lock()
	now := time.Now()
	// While one request asks, the others ask too: none goes unpaced
	// on a stale answer.
	ask := s.paced || s.asking > 0 || now.Sub(s.checked) >= recheck
	cuts := s.cuts
	if ask {
		s.checked = now
		s.asking++
	}
	s.mu.Unlock()
	if !ask {
		return nil
	}
	var ticket int64
	for {
		wait, again, err := f.take(ctx, s, cuts, &ticket)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.log.Debug("pace: Redis failed or slow, not pacing for a second", "scope", name, "err", err)
			return nil
		}
		if wait > 0 {
			t := time.NewTimer(time.Duration(wait) * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("waiting for the fleet's request rate to %s: %w", name, ctx.Err())
			}
		}
		if !again {
			return nil
		}
		s.mu.Lock()
		s.asking++
		s.mu.Unlock()
	}
}

// take asks Redis for the token of *ticket, or for a ticket when it is 0
// (the caller counted itself in s.asking; take counts it out). It returns
// how long to wait, and whether to ask again after that: a token further
// off than horizon is not promised, so that a rate which grows meanwhile
// serves the waiter sooner; the ticket keeps its place in the queue.
func (f *Fleet) take(ctx context.Context, s *scope, cuts int, ticket *int64) (wait int64, again bool, err error) {
	var res []int64
	err = f.call(ctx, func(ctx context.Context) (err error) {
		res, err = takeScript.Run(ctx, f.rdb, []string{s.key}, 1, horizon.Milliseconds(), *ticket).Int64Slice()
		return err
	})
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("the pace script answered %v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asking--
	if err != nil {
		return 0, false, err
	}
	paced := res[0] != notPaced
	if paced || s.cuts == cuts { // "not paced" from before a SlowDown is stale
		s.paced = paced
	}
	*ticket = res[2]
	return res[1], res[0] == askAgain, nil
}

// errSlow reports a Redis call that outlasted callTimeout.
var errSlow = errors.New("Redis answered too slowly")

// call runs fn against Redis with callTimeout: go-redis honours a
// context's deadline only on clients built for it, so fn runs aside and
// is abandoned when late. A failure or a late answer marks Redis down.
func (f *Fleet) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel() // once answered or abandoned; never before fn returns, which would race the answer
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done: // answered as the deadline passed: the answer stands
		default:
			err = ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = errSlow
			}
		}
	}
	if err != nil {
		f.down.Store(time.Now().UnixNano())
	}
	return err
}

func (f *Fleet) isDown() bool {
	d := f.down.Load()
	return d != 0 && time.Since(time.Unix(0, d)) < recheck
}

// Done reports how an attempt ended: throttled by the store (503
// SlowDown and its kin) or not. A throttled attempt cuts the scope's
// rate, or sets one, on its way (the request does not wait for it); a
// process says so at most once a cooldown.
func (f *Fleet) Done(name string, throttled bool) {
	s := f.scope(name)
	now := time.Now().Unix()
	s.mu.Lock()
	s.count(now, !throttled)
	if !throttled {
		s.mu.Unlock()
		return
	}
	s.paced = true
	s.cuts++
	ok, all := s.rates(now)
	// One word a cooldown from each process: more would be the same
	// congestion, and would weigh its guess of the first rate above the
	// others'.
	if s.cutting || f.isDown() || time.Since(s.told) < f.cooldown {
		s.mu.Unlock()
		return
	}
	s.cutting, s.told = true, time.Now()
	s.mu.Unlock()
	go func() {
		var rate float64
		err := f.call(context.Background(), func(ctx context.Context) (err error) {
			rate, err = cutScript.Run(ctx, f.rdb, []string{s.key, f.members},
				strconv.FormatFloat(ok, 'f', 3, 64), strconv.FormatFloat(all, 'f', 3, 64),
				f.cooldown.Milliseconds(), Idle.Milliseconds(), Beta, Alpha, MinRate, f.deadAfter.Milliseconds(), Probe).Float64()
			return err
		})
		s.mu.Lock()
		s.cutting = false
		s.mu.Unlock()
		if err != nil {
			f.log.Debug("pace: cannot record a SlowDown", "scope", name, "err", err)
			return
		}
		f.log.Debug("pace: throttled", "scope", name, "rate", rate)
	}()
}

// Rate is the scope's current rate in requests per second, 0 when it is
// not paced.
func (f *Fleet) Rate(ctx context.Context, name string) (float64, error) {
	v, err := f.rdb.HGet(ctx, prefix+name, "rate").Float64()
	if err == redis.Nil {
		return 0, nil
	}
	return v, err
}

// now in the scripts: Redis's clock, in ms, the same for every worker;
// grown is a rate dt seconds on: by its step per second, or, while it
// probes after its first cut, by its factor grow, but never past that
// factor of the rate of tickets taken, seen (a rate nobody uses does not grow;
// takeScript passes math.huge while requests queue: all of it is used).
const luaNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function grown(rate, step, grow, dt, seen)
  local g = grow and tonumber(grow) or 0
  if g > 0 then return math.min(rate * (1 + g) ^ dt, math.max(rate, (1 + g) * (tonumber(seen) or 0))) end
  return rate + step * dt
end
`

// What takeScript answers, with a number of ms: not paced (go now), go
// after the ms, or ask again after them.
const (
	notPaced = 0
	goAfter  = 1
	askAgain = 2
)

// takeScript: KEYS scope; ARGV tokens, horizon ms, ticket (0 for none).
// Answers {what, ms, ticket} (the consts above). Every request takes a
// ticket, its place in the queue: "issued" counts them, and a ticket is
// due once the bucket's tokens have paid for it and for every earlier one.
// A ticket due within the horizon gets its time promised; one due later is
// told when to ask again, at most a horizon on, with its ticket: when the
// rate grows meanwhile it goes sooner, and no later request goes before
// it. A ticket from a rate that lapsed since (past "issued") is replaced.
// The rate grows by its step per second (while it probes, as fast as
// the probe goes when requests queue for it, else up to twice the rate
// seen); the bucket holds a fiftieth of a second's worth, so no burst goes
// far above the rate. It also measures
// the rate of tickets taken ("seen", over contiguous windows of one to two
// seconds; 0, unknown, after a pause) for the next cut.
var takeScript = redis.NewScript(luaNow + `
local h = redis.call('HMGET', KEYS[1], 'rate', 'tokens', 'ts', 'step', 'n', 'win', 'seen', 'grow', 'issued')
if not h[1] then return {0, 0, 0} end
local want, horizon, ticket = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, tokens, ts, step = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4])
local win, seen, issued = tonumber(h[6]), tonumber(h[7]), tonumber(h[9]) or 0
local dt = math.max(0, now - ts) / 1000
-- Requests queued all along (tokens short even now at the old rate): the
-- rate was used all the time.
rate = grown(rate, step, h[8], dt, tokens + rate * dt < 0 and math.huge or seen)
local burst = math.max(1, rate / 50)
tokens = math.min(burst, tokens + rate * dt)
local add = 0
if ticket <= 0 or ticket > issued then
  add = want
  issued = issued + want
  ticket = issued
  tokens = tokens - want
end
local n = tonumber(h[5]) + add
if now - win > 2000 then
  seen, n, win = 0, add, now
elseif now - win >= 1000 then
  seen = n * 1000 / (now - win)
  n, win = 0, now
end
redis.call('HSET', KEYS[1], 'rate', rate, 'tokens', tokens, 'ts', now, 'n', n, 'win', win, 'seen', seen, 'issued', issued)
local wait = math.ceil(math.max(0, ticket - issued - tokens) * 1000 / rate)
if wait <= horizon then return {1, wait, ticket} end
return {2, math.min(horizon, wait - horizon), ticket}
`)

// cutScript: KEYS scope, members; ARGV this worker's successful and all
// attempts per second, cooldown ms, idle ms, beta, alpha, min rate, dead
// after ms, probe. Returns the scope's rate after the cut. The first rate
// is what the store was accepting, this worker's successes times the live
// workers (a quarter of its attempts when none succeeded: a blind guess),
// or the mean of such guesses from the processes throttled within its
// cooldown (blind ones only while there is no other), and it probes
// (grows by probe per second) until the next cut; a later cut takes beta
// of the rate, or of the rate of tickets taken when that is lower and no
// request queues, and grows by alpha.
// Requests already promised a time keep their place: the debt carries
// over.
var cutScript = redis.NewScript(luaNow + `
local h = redis.call('HMGET', KEYS[1], 'rate', 'ts', 'step', 'cut', 'seen', 'tokens', 'grow')
local function accepted()
  local live = math.max(redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[8]), '+inf'), 1)
  local r = tonumber(ARGV[1]) * live
  if r <= 0 then r = tonumber(ARGV[2]) * live / 4 end
  return r
end
local rate, tokens = 0, 0
if h[1] then
  if now - tonumber(h[4]) < tonumber(ARGV[3]) then
    if not h[7] then return h[1] end
    -- The first rate's cooldown: each process throttled in it tells what
    -- the store accepted from it, and the first rate is their mean. A
    -- process that saw no success guesses blind (a quarter of its
    -- attempts): blind guesses count only while there is no other.
    local g = redis.call('HMGET', KEYS[1], 'guesses', 'guessed')
    local n, sum = tonumber(g[1]) or 0, tonumber(g[2]) or 0
    local r
    if tonumber(ARGV[1]) > 0 then
      n, sum = n + 1, sum + accepted()
      r = sum / n
    elseif n == 0 then
      r = math.max(accepted(), tonumber(h[1])) -- blind, as all before it
    else
      return h[1]
    end
    r = math.max(r, tonumber(ARGV[7]))
    redis.call('HSET', KEYS[1], 'rate', r, 'step', math.max(r * tonumber(ARGV[6]), 1), 'guesses', n, 'guessed', sum)
    return tostring(r)
  end
  local dt = math.max(0, now - tonumber(h[2])) / 1000
  rate = grown(tonumber(h[1]), tonumber(h[3]), h[7], dt, h[5])
  redis.call('HDEL', KEYS[1], 'grow') -- refused again: probing is over
  tokens = math.min(0, tonumber(h[6]) + rate * dt)
  -- Requests queue for the rate: all of it is used, and the rate seen
  -- (which lags a probe by a second or two) does not tell more.
  local seen = tonumber(h[5])
  if tokens >= 0 and seen > 0 and seen < rate then rate = seen end
  rate = rate * tonumber(ARGV[5])
else
  rate = math.max(accepted(), tonumber(ARGV[7]))
  local n = tonumber(ARGV[1]) > 0 and 1 or 0 -- a blind guess is no guess
  redis.call('HSET', KEYS[1], 'grow', ARGV[9], 'guesses', n, 'guessed', n * rate, 'issued', 0)
end
rate = math.max(rate, tonumber(ARGV[7]))
local step = math.max(rate * tonumber(ARGV[6]), 1)
redis.call('HSET', KEYS[1], 'rate', rate, 'tokens', tokens, 'ts', now, 'step', step, 'cut', now, 'n', 0, 'win', now, 'seen', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(rate)
`)
