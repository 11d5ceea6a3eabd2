package verify

import (
	"crypto/sha256"
	"sync"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// jwtCache remembers JWT access tokens whose signature and fixed claims
// (typ, key, algorithm, iss, aud, exp and jti present) verified, keyed by
// the SHA-256 of the token, so that a token presented again costs a hash
// instead of a signature check. What can change between two uses is
// checked on every hit: expiry and not-before, the revocation denylist and
// the required scopes. Entries belong to the key set they were verified
// under: when the JWKS changes (a key retired, or only refreshed), they no
// longer count, so a key removed from the JWKS stops vouching for its
// tokens at once. The cache is bounded; when full, an insert removes
// expired entries it comes across, or else an arbitrary one.
type jwtCache struct {
	max int
	mu  sync.RWMutex
	m   map[tokenfmt.Hash]*jwtEntry
}

type jwtEntry struct {
	keys   *keyState // the key set that verified it
	claims jwtClaims
}

func newJWTCache(size int) *jwtCache {
	if size < 0 {
		return nil
	}
	return &jwtCache{max: size, m: make(map[tokenfmt.Hash]*jwtEntry)}
}

func jwtKey(token string) tokenfmt.Hash { return sha256.Sum256([]byte(token)) }

// get returns the claims verified under keys, or nil.
func (c *jwtCache) get(k *tokenfmt.Hash, keys *keyState) *jwtClaims {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.m[*k]
	c.mu.RUnlock()
	if e == nil || e.keys != keys {
		return nil
	}
	return &e.claims
}

// put remembers claims verified under keys; nowUnix drops expired entries
// when the cache is full.
func (c *jwtCache) put(k tokenfmt.Hash, keys *keyState, jc *jwtClaims, nowUnix int64) {
	if c == nil || c.max == 0 {
		return
	}
	e := &jwtEntry{keys: keys, claims: *jc}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		removed := 0
		for key, old := range c.m {
			if old.keys != keys || old.claims.Expiry.t.Unix() <= nowUnix || removed == 0 {
				delete(c.m, key)
				removed++
			}
			if removed >= 16 {
				break
			}
		}
	}
	c.m[k] = e
}
