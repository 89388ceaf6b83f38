package s3util

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// TestEach: every item once, at most n at a time; the first error stops
// the rest and is returned.
func TestEach(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	var sum, running, most atomic.Int64
	err := Each(context.Background(), items, 4, func(_ context.Context, i, item int) error {
		if i != item {
			t.Errorf("item %d at index %d", item, i)
		}
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		sum.Add(int64(item))
		running.Add(-1)
		return nil
	})
	if err != nil || sum.Load() != 4950 || most.Load() > 4 {
		t.Errorf("Each: %v, sum %d, at most %d at once; want nil, 4950, ≤ 4", err, sum.Load(), most.Load())
	}
	boom := errors.New("boom")
	var ran atomic.Int64
	err = Each(context.Background(), items, 1, func(_ context.Context, i, _ int) error {
		ran.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran.Load() > 12 {
		t.Errorf("Each with an error at 10: %v after %d items; want boom, and the rest not run", err, ran.Load())
	}
}
