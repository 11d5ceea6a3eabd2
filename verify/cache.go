package verify

import (
	"sync"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// cacheShards spreads the cache's locks; a power of two.
const cacheShards = 64

// entry is one cached answer from Jeton about a token (as seen from one
// client address).
type entry struct {
	// claims of the token, when Jeton returned them.
	claims *Claims
	// err is a definite rejection (negative entry); nil otherwise.
	err *Error
	// scopesOnly marks claims learnt from an insufficient_scope answer:
	// they prove which scopes the token lacks, but not that it has no
	// rate limit or quota, so a request the scopes satisfy still asks
	// Jeton.
	scopesOnly bool
	expires    int64 // Unix nanoseconds, by Config.Now
}

// cache is a bounded, sharded map from token key (SHA-256, never the token
// itself) to Jeton's answer, with an index from token id to keys so that a
// revocation drops every entry of the token at once. Eviction is not LRU:
// when a shard is full, an insert removes expired entries it comes across,
// or else an arbitrary one; memory stays bounded either way.
type cache struct {
	perShard int
	shards   [cacheShards]cacheShard

	idxMu sync.Mutex
	idx   map[string][]tokenfmt.Hash // token id -> keys
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[tokenfmt.Hash]*entry
}

func newCache(size int) *cache {
	c := &cache{perShard: max((size+cacheShards-1)/cacheShards, 1), idx: make(map[string][]tokenfmt.Hash)}
	for i := range c.shards {
		c.shards[i].m = make(map[tokenfmt.Hash]*entry)
	}
	return c
}

func (c *cache) shard(k *tokenfmt.Hash) *cacheShard { return &c.shards[k[0]%cacheShards] }

// get returns the live entry for k, or nil.
func (c *cache) get(k *tokenfmt.Hash, now int64) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[*k]
	s.mu.RUnlock()
	if e == nil || now >= e.expires {
		return nil
	}
	return e
}

// put stores e under k, evicting to stay within bounds.
func (c *cache) put(k tokenfmt.Hash, e *entry, now int64) {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		c.unindex(old, k)
	} else if len(s.m) >= c.perShard {
		c.evictLocked(s, now)
	}
	s.m[k] = e
	if e.claims != nil && e.claims.TokenID != "" {
		c.idxMu.Lock()
		c.idx[e.claims.TokenID] = append(c.idx[e.claims.TokenID], k)
		c.idxMu.Unlock()
	}
}

// evictLocked makes room in a full shard: it drops the expired entries
// among the first few it sees, or the first one if none has expired.
func (c *cache) evictLocked(s *cacheShard, now int64) {
	const scan = 16
	var (
		first    tokenfmt.Hash
		haveOne  bool
		released bool
		n        int
	)
	for k, e := range s.m {
		if !haveOne {
			first, haveOne = k, true
		}
		if now >= e.expires {
			c.unindex(e, k)
			delete(s.m, k)
			released = true
		}
		if n++; n >= scan {
			break
		}
	}
	if !released && haveOne {
		c.unindex(s.m[first], first)
		delete(s.m, first)
	}
}

// unindex removes k from the token id index; the shard lock is held.
func (c *cache) unindex(e *entry, k tokenfmt.Hash) {
	if e.claims == nil || e.claims.TokenID == "" {
		return
	}
	id := e.claims.TokenID
	c.idxMu.Lock()
	defer c.idxMu.Unlock()
	keys := c.idx[id]
	for i, x := range keys {
		if x == k {
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			break
		}
	}
	if len(keys) == 0 {
		delete(c.idx, id)
	} else {
		c.idx[id] = keys
	}
}

// delete removes the entry of k.
func (c *cache) delete(k tokenfmt.Hash) {
	s := c.shard(&k)
	s.mu.Lock()
	if e, ok := s.m[k]; ok {
		c.unindex(e, k)
		delete(s.m, k)
	}
	s.mu.Unlock()
}

// evictToken removes every entry of token id.
func (c *cache) evictToken(id string) {
	c.idxMu.Lock()
	keys := c.idx[id]
	delete(c.idx, id)
	c.idxMu.Unlock()
	for _, k := range keys {
		s := c.shard(&k)
		s.mu.Lock()
		if e, ok := s.m[k]; ok && e.claims != nil && e.claims.TokenID == id {
			delete(s.m, k)
		}
		s.mu.Unlock()
	}
}

// len returns the number of entries, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// hashSet is a small bounded set of token keys with expiry: the tokens
// whose answers carried a rate limit or quota, which must reach Jeton on
// every request and so are kept out of single-flight.
type hashSet struct {
	mu  sync.Mutex
	max int
	m   map[tokenfmt.Hash]int64 // key -> expiry, Unix nanoseconds
}

func newHashSet(maxLen int) *hashSet {
	return &hashSet{max: maxLen, m: make(map[tokenfmt.Hash]int64)}
}

func (s *hashSet) has(k *tokenfmt.Hash, now int64) bool {
	s.mu.Lock()
	exp, ok := s.m[*k]
	s.mu.Unlock()
	return ok && now < exp
}

func (s *hashSet) add(k tokenfmt.Hash, expires, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= s.max {
		for x, exp := range s.m {
			if now >= exp {
				delete(s.m, x)
			}
		}
		// Still full: forget arbitrary entries. Forgetting only costs a
		// merged flight that is then redone, never a missed count.
		for x := range s.m {
			if len(s.m) < s.max {
				break
			}
			delete(s.m, x)
		}
	}
	s.m[k] = expires
}

// flightGroup merges concurrent calls to Jeton about one token key.
type flightGroup struct {
	mu sync.Mutex
	m  map[tokenfmt.Hash]*flight
}

// flight is one call to Jeton that others wait for.
type flight struct {
	done chan struct{}
	ans  answer
}

// join returns the flight for k and reports whether the caller leads it
// (and must finish it).
func (g *flightGroup) join(k tokenfmt.Hash) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[k]; ok {
		return f, false
	}
	if g.m == nil {
		g.m = make(map[tokenfmt.Hash]*flight)
	}
	f := &flight{done: make(chan struct{})}
	g.m[k] = f
	return f, true
}

// finish publishes the leader's answer.
func (g *flightGroup) finish(k tokenfmt.Hash, f *flight, ans answer) {
	f.ans = ans
	g.mu.Lock()
	delete(g.m, k)
	g.mu.Unlock()
	close(f.done)
}
