package oauth

import (
	"fmt"
	"testing"
	"time"
)

// TestClientCacheEvictsOnlyWhatItMust fills the cache and checks that making
// room keeps most entries: the expired ones go first, then only enough of
// the others to leave a tenth free.
func TestClientCacheEvictsOnlyWhatItMust(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tt := range []struct {
		name        string
		expired     int
		wantAtLeast int
		wantAtMost  int
	}{
		{"nothing expired", 0, maxCachedClients*9/10 - 1, maxCachedClients*9/10 - 1},
		{"a fifth expired", maxCachedClients / 5, maxCachedClients - maxCachedClients/5, maxCachedClients - maxCachedClients/5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cc := &clientCache{ttl: time.Minute, m: map[string]*cachedClient{}}
			for i := range maxCachedClients {
				loaded := now
				if i < tt.expired {
					loaded = now.Add(-2 * time.Minute)
				}
				cc.m[fmt.Sprintf("cli_%d", i)] = &cachedClient{loaded: loaded}
			}
			cc.evict(now)
			n := len(cc.m)
			if n < tt.wantAtLeast || n > tt.wantAtMost {
				t.Errorf("%d entries left, want %d to %d", n, tt.wantAtLeast, tt.wantAtMost)
			}
			for id, e := range cc.m {
				if now.Sub(e.loaded) >= cc.ttl {
					t.Errorf("expired entry %s kept", id)
					break
				}
			}
		})
	}
}
