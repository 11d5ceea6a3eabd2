package tokens

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// shardKey returns the i-th distinct hash of shard 0.
func shardKey(i int) tokenfmt.Hash {
	var h tokenfmt.Hash // h[0] == 0: shard 0
	binary.BigEndian.PutUint64(h[1:], uint64(i)+1)
	return h
}

// TestCacheFullShardEvictsAnEighth checks that a shard full of live
// entries makes room for an eighth of its capacity at once, so that the
// inserts that follow do not each scan the shard to drop one entry.
func TestCacheFullShardEvictsAnEighth(t *testing.T) {
	t.Parallel()
	c := newCache(64*64, time.Minute, time.Minute) // 64 entries a shard
	s := &c.shards[0]
	now := time.Now().UnixNano()
	rec := newRecord(store.Token{ID: "tok_1"}, time.Time{})
	for i := range c.perShard {
		c.put(shardKey(i), rec, 0, now)
	}
	if got := len(s.m); got != c.perShard {
		t.Fatalf("filled shard holds %d entries, want %d", got, c.perShard)
	}

	c.put(shardKey(c.perShard), rec, 0, now) // the shard is full: evict
	if got, want := len(s.m), c.perShard-c.perShard/8+1; got != want {
		t.Fatalf("after one insert into a full shard it holds %d entries, want %d (an eighth evicted, then the insert)", got, want)
	}
	if _, ok := c.get(ptr(shardKey(c.perShard)), now); !ok {
		t.Error("the entry whose insert evicted the others is missing")
	}
	// The next inserts fit without evicting anything.
	before := len(s.m)
	for i := range c.perShard/8 - 1 {
		c.put(shardKey(c.perShard+1+i), nil, 0, now)
	}
	if got, want := len(s.m), before+c.perShard/8-1; got != want {
		t.Errorf("after %d more inserts the shard holds %d entries, want %d (nothing evicted)", c.perShard/8-1, got, want)
	}
}

// TestCacheEvictsExpiredEntriesFirst checks that a full shard drops its
// expired entries before any live one.
func TestCacheEvictsExpiredEntriesFirst(t *testing.T) {
	t.Parallel()
	c := newCache(64*64, time.Minute, time.Second)
	now := time.Now().UnixNano()
	rec := newRecord(store.Token{ID: "tok_1"}, time.Time{})
	live := c.perShard / 2
	for i := range c.perShard {
		if i < live {
			c.put(shardKey(i), rec, 0, now) // expires in a minute
		} else {
			c.put(shardKey(i), nil, 0, now) // negative: expires in a second
		}
	}
	later := now + int64(2*time.Second)
	c.put(shardKey(c.perShard), rec, 0, later)
	for i := range live {
		if _, ok := c.get(ptr(shardKey(i)), later); !ok {
			t.Fatalf("live entry %d was evicted while expired ones could go", i)
		}
	}
	if got, want := len(c.shards[0].m), live+1; got != want {
		t.Errorf("shard holds %d entries, want %d (the live ones and the new one)", got, want)
	}
}

func ptr(h tokenfmt.Hash) *tokenfmt.Hash { return &h }

// BenchmarkCachePutFull measures inserting new entries into a cache of the
// default size that is full of live ones: more tokens in use within the
// TTL than the cache holds.
func BenchmarkCachePutFull(b *testing.B) {
	c := newCache(1_000_000, time.Minute, time.Minute)
	now := time.Now().UnixNano()
	key := func(i int) tokenfmt.Hash {
		var h tokenfmt.Hash
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15) // spread over the shards
		binary.BigEndian.PutUint64(h[8:], uint64(i))
		return h
	}
	for i := range 1_000_000 {
		c.put(key(i), nil, 0, now)
	}
	b.ResetTimer()
	for i := range b.N {
		c.put(key(1_000_000+i), nil, 0, now)
	}
}
