package sqlstore

import (
	"context"
	"database/sql"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// TestPostgresReadsDoNotWaitForWrites: with every write connection taken by
// creates queued on the audit log's head, reads are still answered at once.
func TestPostgresReadsDoNotWaitForWrites(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openPostgresT(t, dsn)
	now := time.Now()
	api := store.API{ID: ids.New(ids.API, now), Name: "acme", Identifier: "https://acme.example.com",
		Scopes: []string{"repos:read"}, KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(ctx, api, store.AuditEvent{Action: "api.create", Target: api.ID}); err != nil {
		t.Fatal(err)
	}

	// Another connection holds the audit head, as a slow audited write on
	// another node would.
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.ExecContext(ctx, "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}

	// Twice as many creates as write connections: all of them wait.
	n := 2 * pgPoolSize * runtime.GOMAXPROCS(0)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			secret, _ := tokenfmt.Generate("jtp")
			tok := store.Token{ID: ids.New(ids.Token, now), APIID: api.ID, Name: "ci", Subject: "cus_1",
				Scopes: []string{"repos:read"}, Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now}
			errs <- db.CreateToken(ctx, tok, tokenfmt.HashOf(secret), store.AuditEvent{Action: "token.create", Target: tok.ID})
		})
	}
	// Wait until the write pool is exhausted.
	deadline := time.Now().Add(10 * time.Second)
	for db.write.Stats().InUse < pgPoolSize*runtime.GOMAXPROCS(0) {
		if time.Now().After(deadline) {
			t.Fatalf("write pool never filled: %+v", db.write.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}

	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	if err := db.Ping(rctx); err != nil {
		t.Errorf("Ping while the writes wait: %v", err)
	}
	if _, err := db.GetAPI(rctx, api.ID); err != nil {
		t.Errorf("GetAPI while the writes wait: %v", err)
	}

	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("CreateToken after the head was released: %v", err)
		}
	}
}
