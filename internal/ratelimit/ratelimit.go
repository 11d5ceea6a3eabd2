// Package ratelimit holds Jeton's request rate limiters. A Limiter decides,
// per key, whether one more request fits in its limit. The in-memory Memory
// limiter serves one node; a cluster-wide limiter (Redis) implements the
// same interface.
package ratelimit

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// Limit allows Rate requests per Window, with bursts of up to Rate.
type Limit struct {
	Rate   int64
	Window time.Duration
}

// Decision is the outcome of one Allow call.
type Decision struct {
	Allowed    bool
	Limit      int64
	Remaining  int64         // requests still allowed right now
	Reset      time.Duration // until the limit is fully replenished
	RetryAfter time.Duration // until the next request would be allowed (0 if allowed)
}

// Limiter decides whether a request under key fits in limit at now.
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit, now time.Time) (Decision, error)
}

// Memory is an in-memory GCRA limiter (the generic cell rate algorithm,
// as in Redis' redis_rate): one timestamp per key, no background goroutine,
// constant memory per key. Stale keys are dropped as shards fill up.
type Memory struct {
	seed   maphash.Seed
	shards [64]memShard
	// MaxKeysPerShard bounds memory; 0 means 16384 (about a million keys in all).
	MaxKeysPerShard int
}

type memShard struct {
	mu  sync.Mutex
	tat map[string]int64 // theoretical arrival time, Unix nanoseconds
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty in-memory limiter.
func NewMemory() *Memory {
	m := &Memory{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]int64)
	}
	return m
}

// Allow implements Limiter. It never fails.
func (m *Memory) Allow(_ context.Context, key string, l Limit, now time.Time) (Decision, error) {
	if l.Rate <= 0 || l.Window <= 0 {
		return Decision{Allowed: true}, nil
	}
	interval := int64(l.Window) / l.Rate // emission interval T
	if interval <= 0 {
		interval = 1
	}
	burst := interval * l.Rate // tolerance: a full window's worth
	t := now.UnixNano()
	s := &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
	s.mu.Lock()
	tat, ok := s.tat[key]
	if !ok || tat < t {
		tat = t
	}
	newTAT := tat + interval
	allowAt := newTAT - burst
	d := Decision{Limit: l.Rate}
	if t < allowAt {
		s.mu.Unlock()
		d.RetryAfter = time.Duration(allowAt - t)
		d.Reset = time.Duration(tat - t)
		return d, nil
	}
	if !ok {
		m.evictLocked(s, t)
	}
	s.tat[key] = newTAT
	s.mu.Unlock()
	d.Allowed = true
	d.Remaining = (burst - (newTAT - t)) / interval
	d.Reset = time.Duration(newTAT - t)
	return d, nil
}

// evictLocked makes room for one more key when the shard is full. Keys
// whose theoretical arrival time has passed go first: they are back at full
// allowance, so forgetting them changes nothing. If the shard is still
// above its low-water mark (7/8 of the bound), the keys nearest to full
// allowance go next, down to that mark: forgetting a key hands it its full
// burst again, and for those it makes the least difference.
//
// Going down to the mark, not just under the bound, is what keeps this
// cheap: a shard full of live keys (more keys within their window than the
// limiter holds) otherwise scanned all of them on every new key, with the
// shard's lock held; now one scan pays for the next eighth of new keys.
func (m *Memory) evictLocked(s *memShard, now int64) {
	max := m.MaxKeysPerShard
	if max <= 0 {
		max = 16384
	}
	if len(s.tat) < max {
		return
	}
	for k, tat := range s.tat {
		if tat <= now {
			delete(s.tat, k)
		}
	}
	low := max - (max+7)/8 // at least one key goes
	if len(s.tat) <= low {
		return
	}
	tats := make([]int64, 0, len(s.tat))
	for _, tat := range s.tat {
		tats = append(tats, tat)
	}
	slices.Sort(tats)
	cut := tats[len(tats)-low] // keep the low keys with the latest arrival times
	for k, tat := range s.tat {
		if tat < cut {
			delete(s.tat, k)
		}
	}
	for k, tat := range s.tat { // ties at cut
		if len(s.tat) <= low {
			break
		}
		if tat == cut {
			delete(s.tat, k)
		}
	}
}

// Forget drops the state of key, e.g. after its limit was changed.
func (m *Memory) Forget(key string) {
	s := &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
	s.mu.Lock()
	delete(s.tat, key)
	s.mu.Unlock()
}
