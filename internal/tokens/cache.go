package tokens

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetonhq/jeton/internal/ratelimit"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// record is the immutable, verify-ready form of a stored token. Cached
// records are shared between goroutines and never modified.
type record struct {
	tok           store.Token
	secretExpires time.Time // grace end of a rotated-out secret, zero if current
	// expires is when a positive answer for this secret stops being
	// true: the earlier of the token's expiry and secretExpires, zero
	// for never.
	expires time.Time
	cidrs   []netip.Prefix
	rate    ratelimit.Limit
}

func newRecord(tok store.Token, secretExpires time.Time) *record {
	r := &record{tok: tok, secretExpires: secretExpires, expires: tok.ExpiresAt}
	if !secretExpires.IsZero() && (r.expires.IsZero() || secretExpires.Before(r.expires)) {
		r.expires = secretExpires
	}
	for _, c := range tok.AllowedCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			r.cidrs = append(r.cidrs, p.Masked())
		}
	}
	if tok.RateLimit != nil {
		r.rate = ratelimit.Limit{Rate: tok.RateLimit.Limit, Window: tok.RateLimit.Window}
	}
	return r
}

const cacheShards = 64

// cache maps secret hashes to records (positive entries) or to nil
// (negative entries, so floods of unknown tokens do not reach the store).
// Entries expire after a short bound so that a missed invalidation heals.
type cache struct {
	shards      [cacheShards]cacheShard
	ttl, negTTL int64 // nanoseconds
	perShard    int
	// gen counts invalidations: a load that started before one must not
	// insert what it read, since it may predate the change.
	gen atomic.Uint64
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[tokenfmt.Hash]cacheEntry
}

type cacheEntry struct {
	rec     *record // nil: known not to exist
	expires int64   // Unix nanoseconds
}

func newCache(size int, ttl, negTTL time.Duration) *cache {
	c := &cache{ttl: int64(ttl), negTTL: int64(negTTL), perShard: max(size/cacheShards, 16)}
	for i := range c.shards {
		c.shards[i].m = make(map[tokenfmt.Hash]cacheEntry)
	}
	return c
}

func (c *cache) shard(h *tokenfmt.Hash) *cacheShard {
	// The hash is uniformly random: its first byte picks the shard.
	return &c.shards[int(h[0])%cacheShards]
}

// get returns the cached entry for h, and whether there was a fresh one.
func (c *cache) get(h *tokenfmt.Hash, now int64) (*record, bool) {
	s := c.shard(h)
	s.mu.RLock()
	e, ok := s.m[*h]
	s.mu.RUnlock()
	if !ok || now >= e.expires {
		return nil, false
	}
	return e.rec, true
}

// put caches rec (nil for a negative entry) unless an invalidation happened
// since gen was read.
func (c *cache) put(h tokenfmt.Hash, rec *record, gen uint64, now int64) {
	ttl := c.ttl
	if rec == nil {
		ttl = c.negTTL
	}
	s := c.shard(&h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if _, exists := s.m[h]; !exists && len(s.m) >= c.perShard {
		c.evictLocked(s, now)
	}
	s.m[h] = cacheEntry{rec: rec, expires: now + ttl}
}

// evictLocked makes room in a full shard: it drops the expired entries,
// then arbitrary ones, until the shard is down to its low-water mark
// (7/8 of its capacity). A scan of the shard costs as much as thousands of
// lookups, so it must not run on every insert: before the low-water mark,
// a shard full of live entries (more tokens in use within the TTL than the
// cache holds) scanned all of them to drop one, on every cache miss, with
// the shard's lock held (280 µs an insert at the default size, where a
// store lookup costs 30). Now the next eighth of its capacity is inserted
// without a scan.
func (c *cache) evictLocked(s *cacheShard, now int64) {
	for k, e := range s.m {
		if now >= e.expires {
			delete(s.m, k)
		}
	}
	low := c.lowWater()
	for k := range s.m {
		if len(s.m) <= low {
			return
		}
		delete(s.m, k)
	}
}

// lowWater is the number of entries evictLocked leaves in a shard.
func (c *cache) lowWater() int { return c.perShard - max(c.perShard/8, 1) }

// invalidate drops the entries of hs (and fences in-flight loads).
func (c *cache) invalidate(hs ...tokenfmt.Hash) {
	c.gen.Add(1)
	for i := range hs {
		s := c.shard(&hs[i])
		s.mu.Lock()
		delete(s.m, hs[i])
		s.mu.Unlock()
	}
}

// clear drops every entry (after notifications may have been missed).
func (c *cache) clear() {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// invalidateAPI drops every entry of a token of apiID (after an API is
// deleted). It scans the cache: a rare administrative operation.
func (c *cache) invalidateAPI(apiID string) {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.rec != nil && e.rec.tok.APIID == apiID {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// flight deduplicates concurrent store loads of the same hash.
type flight struct {
	mu sync.Mutex
	m  map[tokenfmt.Hash]*call
	// joined counts the calls that waited for another's load.
	joined atomic.Int64
}

type call struct {
	done chan struct{}
	// gen is the cache generation read before the load began: the load
	// may have read the store before any invalidation after it.
	gen uint64
	rec *record
	err error
	// abandoned: load failed because the context of the request that
	// started it ended; waiters try again.
	abandoned bool
}

// do returns load's result for h, running load(ctx, gen) under ctx unless
// a call for h of generation gen or later is already running, in which
// case it waits for that one, or for ctx to end. gen is the cache
// generation the caller read before it looked for h.
//
// A call of an earlier generation is not joined: it may have read the
// store before an invalidation that completed before this caller began (a
// revocation acknowledged to its client), and its answer would predate
// it. The caller starts its own call, which takes the older one's place
// for later callers; the older call, when it ends, removes its map entry
// only if that entry is still its own.
//
// The load that one request starts serves all the others waiting for the
// same hash. If it fails because that request went away (its context
// ended), the others are not told its cancellation: they try again, one of
// them loading under its own context. (Loading under a detached context
// instead would cost every store miss a watcher goroutine in the SQLite
// driver, a third of its time.)
func (f *flight) do(ctx context.Context, h tokenfmt.Hash, gen uint64, load func(context.Context, uint64) (*record, error)) (*record, error) {
	for {
		f.mu.Lock()
		if c, ok := f.m[h]; ok && c.gen >= gen {
			f.mu.Unlock()
			f.joined.Add(1)
			select {
			case <-c.done:
				if c.abandoned {
					continue
				}
				return c.rec, c.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		c := &call{done: make(chan struct{}), gen: gen}
		f.m[h] = c
		f.mu.Unlock()
		c.rec, c.err = load(ctx, gen)
		c.abandoned = c.err != nil && ctx.Err() != nil
		f.mu.Lock()
		if f.m[h] == c {
			delete(f.m, h)
		}
		f.mu.Unlock()
		close(c.done)
		return c.rec, c.err
	}
}
