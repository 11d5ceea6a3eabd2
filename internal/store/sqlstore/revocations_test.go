package sqlstore

import (
	"context"
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
