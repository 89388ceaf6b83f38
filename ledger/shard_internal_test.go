package ledger

import "testing"

// TestSlot: the hash slots of known keys, as CLUSTER KEYSLOT gives them.
func TestSlot(t *testing.T) {
	for tag, want := range map[string]int{"foo": 12182, "s3fleet": 1377, "": 0, "123456789": 0x31C3 % slotCount} {
		if got := slot(tag); got != want {
			t.Errorf("slot(%q) = %d, want %d", tag, got, want)
		}
	}
}

// TestShardTags: shard 0 keeps {s3fleet}; shard k of n is in the k-th of
// n equal slot ranges, so an evenly split cluster of n nodes has one shard
// on each; the tags differ.
func TestShardTags(t *testing.T) {
	if got := shardTags(1); len(got) != 1 || got[0] != "{s3fleet}:" {
		t.Fatalf("one shard: %q", got)
	}
	for _, n := range []int{2, 3, 4, 6, 8, 11} {
		tags := shardTags(n)
		seen := map[string]bool{}
		for k, tg := range tags {
			if seen[tg] {
				t.Fatalf("%d shards: tag %s twice", n, tg)
			}
			seen[tg] = true
			s := slot(tg[1 : len(tg)-2])
			if s < k*slotCount/n || s >= (k+1)*slotCount/n {
				t.Errorf("%d shards: shard %d's tag %s has slot %d, outside [%d, %d)", n, k, tg, s, k*slotCount/n, (k+1)*slotCount/n)
			}
		}
	}
}
