package s3fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/ledger"
)

// fakeStates answers Standings from a map and counts the round trips.
type fakeStates struct {
	mu    sync.Mutex
	state map[string]string
	calls int
}

func (f *fakeStates) Standings(_ context.Context, ids []string) ([]ledger.Standing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := make([]ledger.Standing, len(ids))
	for i, id := range ids {
		out[i].State = f.state[id]
	}
	return out, nil
}

func (f *fakeStates) set(st string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.state {
		f.state[id] = st
	}
	return f.calls
}

// TestWatcherOneLookForAll: 10,000 waiting transfers cost the watcher 10
// round trips a look (1,000 states each), not one each, and a look every
// 2 s rather than every 200 ms; when they end, one look releases them all,
// and a record that vanished releases its waiter with ErrGone.
func TestWatcherOneLookForAll(t *testing.T) {
	if got := lookEvery(10_000); got != 2*time.Second {
		t.Errorf("lookEvery(10000) = %v, want 2s", got)
	}
	if got := lookEvery(1); got != 200*time.Millisecond {
		t.Errorf("lookEvery(1) = %v, want 200ms", got)
	}
	f := &fakeStates{state: map[string]string{}}
	const n = 10_000
	for i := range n {
		f.state[fmt.Sprint(i)] = "running"
	}
	w := newWatcher(f)
	defer w.close()
	es := make([]*watched, n)
	for i := range es {
		es[i] = w.add(fmt.Sprint(i), nil)
	}
	gone := w.add("no-such-transfer", nil)
	select {
	case <-gone.done:
		if gone.err != ErrGone {
			t.Fatalf("a transfer with no record: %v, want ErrGone", gone.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a transfer with no record was never released")
	}
	before := f.set("success")
	w.poke()
	for i, e := range es {
		select {
		case <-e.done:
			if e.err != nil {
				t.Fatalf("transfer %d: %v", i, e.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("transfer %d was not released after it ended", i)
		}
	}
	if calls := f.set("success") - before; calls < 10 || calls > 11 {
		// 11: a look may have been on its way when the states changed
		t.Errorf("%d round trips to release %d transfers, want 10 (1,000 a trip)", calls, n)
	}
}

// TestWaitEvery: Wait reads fast at first and slows with the job.
func TestWaitEvery(t *testing.T) {
	for _, tc := range []struct{ followed, want time.Duration }{
		{0, 10 * time.Millisecond}, {time.Second, 20 * time.Millisecond}, {4 * time.Second, 80 * time.Millisecond},
		{25 * time.Second, 500 * time.Millisecond}, {time.Hour, 500 * time.Millisecond},
	} {
		if got := waitEvery(tc.followed); got != tc.want {
			t.Errorf("waitEvery(%v) = %v, want %v", tc.followed, got, tc.want)
		}
	}
}
