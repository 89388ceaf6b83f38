package tasks

import (
	"maps"
	"slices"
	"testing"
)

// TestShardedQueues: one shard keeps the five queues and weights of an
// unsharded fleet; three give each priority's chunk queue a queue per
// shard at its weight, and assembly (and the host's queue) three times
// its weight, so that it is taken first as often; a host's queue is
// never sharded.
func TestShardedQueues(t *testing.T) {
	one := Queues("h", 1)
	want := map[string]int{"host:h": 8, "assemble": 8, "chunks-high": 6, "chunks": 3, "chunks-low": 1}
	if !maps.Equal(one, want) {
		t.Fatalf("one shard: %v, want %v", one, want)
	}
	three := Queues("h", 3)
	want = map[string]int{"host:h": 24, "assemble": 24, "chunks-high": 6, "chunks": 3, "chunks-low": 1,
		"chunks-high.1": 6, "chunks.1": 3, "chunks-low.1": 1, "chunks-high.2": 6, "chunks.2": 3, "chunks-low.2": 1}
	if !maps.Equal(three, want) {
		t.Fatalf("three shards: %v, want %v", three, want)
	}
	// assembly's share of the weight is the same
	share := func(q map[string]int) float64 {
		sum := 0
		for _, w := range q {
			sum += w
		}
		return float64(q["assemble"]) / float64(sum)
	}
	if a, b := share(one), share(three); a < b*0.99 || a > b*1.01 {
		t.Errorf("assembly's share of the weight: %.3f with one shard, %.3f with three", a, b)
	}
	for _, c := range []struct {
		queue string
		shard int
		want  string
	}{{"chunks", 0, "chunks"}, {"chunks", 2, "chunks.2"}, {"chunks-low", 1, "chunks-low.1"}, {"host:x", 2, "host:x"}} {
		if got := ShardQueue(c.queue, c.shard); got != c.want {
			t.Errorf("ShardQueue(%q, %d) = %q, want %q", c.queue, c.shard, got, c.want)
		}
	}
	if shared := SharedQueues(3); len(shared) != 10 || slices.Contains(shared, "host:") || !slices.IsSorted(shared) {
		t.Errorf("shared queues of 3 shards: %v", shared)
	}
}
