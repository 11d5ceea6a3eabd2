package ratelimit

import (
	"context"
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
