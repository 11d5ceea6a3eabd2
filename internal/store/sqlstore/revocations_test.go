package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// TestPostgresRevocationsWakeOtherNodes: a revocation committed on one node
// closes RevocationsChanged on another node whose LISTEN connection runs,
// without waiting for any poll.
func TestPostgresRevocationsWakeOtherNodes(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := openPostgresT(t, dsn), openPostgresT(t, dsn)

	// The listener wakes readers once it listens (it may have missed
	// something before); wait for that, so that the wake-up below can only
	// come from the revocation.
	listening := b.RevocationsChanged()
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.SubscribeInvalidations(subCtx, func(tokenfmt.Hash) {}, func() {}, func(error) {})
	}()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-listening:
	case <-ctx.Done():
		t.Fatal("the LISTEN connection never started")
	}

	changed := b.RevocationsChanged()
	now := time.Now()
	api := store.API{ID: ids.New(ids.API, now), Name: "acme", Identifier: "https://api.acme.test", KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := a.CreateAPI(ctx, api, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	jti := ids.New(ids.Token, now)
	start := time.Now()
	if err := a.RevokeAccessJWT(ctx, jti, api.ID, now.Add(time.Hour), now, store.AuditEvent{}); err != nil {
		t.Fatalf("RevokeAccessJWT: %v", err)
	}
	select {
	case <-changed:
		t.Logf("other node woken %v after the commit", time.Since(start))
	case <-ctx.Done():
		t.Fatal("the other node was not woken")
	}
	got, err := b.ListRevocations(ctx, 0, nil, now, 10)
	if err != nil || len(got) != 1 || got[0].Ref != jti {
		t.Errorf("other node's feed: %+v, %v", got, err)
	}
}

// TestRevocationSeqSurvivesARestore: a store restored from a backup has its
// feed's head back where the backup left it, while verifiers still hold
// cursors from before the restore. The revocations recorded after the
// restore must be numbered above those cursors, or a verifier resuming
// from one would never hear of them.
func TestRevocationSeqSurvivesARestore(t *testing.T) {
	t.Parallel()
	engines := map[string]func(t *testing.T) *DB{
		"sqlite":   func(t *testing.T) *DB { return openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db")) },
		"postgres": func(t *testing.T) *DB { return openPostgresT(t, storetest.PostgresDSN(t)) },
	}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			ctx := context.Background()
			now := time.Now()
			api := store.API{ID: ids.New(ids.API, now), Name: "acme", Identifier: "https://api.acme.test", KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
			if err := db.CreateAPI(ctx, api, store.AuditEvent{}); err != nil {
				t.Fatal(err)
			}
			revoke := func() int64 {
				t.Helper()
				jti := ids.New(ids.Token, time.Now())
				if err := db.RevokeAccessJWT(ctx, jti, api.ID, now.Add(time.Hour), now, store.AuditEvent{}); err != nil {
					t.Fatal(err)
				}
				revs, err := db.ListRevocations(ctx, 0, nil, now, 100)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range revs {
					if r.Ref == jti {
						return r.Seq
					}
				}
				t.Fatalf("revocation of %s not in the feed", jti)
				return 0
			}
			var cursor int64
			for range 3 {
				cursor = max(cursor, revoke())
			}
			// The restore: the backup was taken before any revocation.
			for _, q := range []string{"DELETE FROM revocations", "UPDATE revocation_head SET seq = 0 WHERE id = 1"} {
				if _, err := db.write.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Millisecond) // a restore takes longer
			if seq := revoke(); seq <= cursor {
				t.Errorf("after the restore a revocation got seq %d, not above the cursor %d a verifier holds", seq, cursor)
			}
		})
	}
}
