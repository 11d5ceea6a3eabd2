package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"testing"
	"time"
)

func TestMemoryGCRA(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := Limit{Rate: 3, Window: 3 * time.Second}
	for i, wantRemaining := range []int64{2, 1, 0} {
		d, _ := m.Allow(ctx, "k", l, now)
		if !d.Allowed || d.Remaining != wantRemaining || d.Limit != 3 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, d, wantRemaining)
		}
	}
	d, _ := m.Allow(ctx, "k", l, now)
	if d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("burst exceeded: %+v, want denied, retry after 1s", d)
	}
	// Another key is independent.
	if d, _ := m.Allow(ctx, "other", l, now); !d.Allowed {
		t.Fatalf("independent key denied")
	}
	// One emission interval later exactly one more request fits.
	now = now.Add(time.Second)
	if d, _ := m.Allow(ctx, "k", l, now); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after 1s: %+v", d)
	}
	if d, _ := m.Allow(ctx, "k", l, now); d.Allowed {
		t.Fatalf("after 1s, second request allowed")
	}
	// After a full window the whole burst is back.
	now = now.Add(3 * time.Second)
	if d, _ := m.Allow(ctx, "k", l, now); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("after a window: %+v", d)
	}
	m.Forget("k")
	if d, _ := m.Allow(ctx, "k", Limit{Rate: 1, Window: time.Hour}, now); !d.Allowed {
		t.Fatalf("after Forget: %+v", d)
	}
	if d, _ := m.Allow(ctx, "k", Limit{}, now); !d.Allowed {
		t.Fatalf("zero limit must allow")
	}
}

func TestMemoryBoundsKeys(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	m.MaxKeysPerShard = 4
	now := time.Now()
	for i := range 10000 {
		m.Allow(context.Background(), string(rune(i)), Limit{Rate: 1, Window: time.Hour}, now)
	}
	for i := range m.shards {
		if n := len(m.shards[i].tat); n > 4 {
			t.Fatalf("shard %d holds %d keys, over its bound of 4", i, n)
		}
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory()
	l := Limit{Rate: 1 << 40, Window: time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.Allow(ctx, "tok_0123456789", l, time.Now())
	}
}

// TestMemoryFullShardEvictsNearestToFullAllowance checks what a shard full
// of live keys forgets to make room: an eighth of its keys at once, those
// nearest to their full allowance, so that the keys after it fit without
// another scan.
func TestMemoryFullShardEvictsNearestToFullAllowance(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	m.MaxKeysPerShard = 64
	ctx := context.Background()
	now := time.Now()
	l := Limit{Rate: 10, Window: time.Hour} // each request puts a key 6 minutes further from full allowance
	// Keys of one shard, each used as often as its index (1 to 64 times).
	s := &m.shards[0]
	var keys []string
	for i := 0; len(keys) < 64; i++ {
		k := fmt.Sprint("key", i)
		if maphash.String(m.seed, k)%uint64(len(m.shards)) == 0 {
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		for range i%10 + 1 {
			m.Allow(ctx, k, l, now)
		}
	}
	if len(s.tat) != 64 {
		t.Fatalf("shard holds %d keys, want 64", len(s.tat))
	}
	var extra string
	for i := 0; extra == ""; i++ {
		if k := fmt.Sprint("extra", i); maphash.String(m.seed, k)%uint64(len(m.shards)) == 0 {
			extra = k
		}
	}
	m.Allow(ctx, extra, l, now)
	if got, want := len(s.tat), 64-8+1; got != want {
		t.Fatalf("after a new key the full shard holds %d keys, want %d (an eighth forgotten, then the new key)", got, want)
	}
	for i, k := range keys {
		_, kept := s.tat[k]
		if uses := i%10 + 1; uses == 1 && kept {
			t.Errorf("%s, used once, was kept while keys used more often were not all kept", k)
		} else if uses > 2 && !kept {
			t.Errorf("%s, used %d times, was forgotten before keys used once", k, uses)
		}
	}
}

// BenchmarkMemoryNewKeyFullShards measures a new key's first request when
// every shard is full of keys within their window.
func BenchmarkMemoryNewKeyFullShards(b *testing.B) {
	m := NewMemory()
	ctx := context.Background()
	now := time.Now()
	l := Limit{Rate: 1000, Window: 24 * time.Hour}
	for i := range 64 * 16384 {
		m.Allow(ctx, strconv.Itoa(i), l, now)
	}
	b.ResetTimer()
	for i := range b.N {
		m.Allow(ctx, strconv.Itoa(64*16384+i), l, now)
	}
}
