package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
)

// TestPostgresPanickingUpdateReleasesItsLocks checks that an update
// function that panics (a bug in a caller, which net/http and the admin
// API's adapter recover from) ends its transaction on PostgreSQL as it does
// on SQLite (batch.go turns it into an error): the call returns, the row
// lock it took is released, and nothing changed.
func TestPostgresPanickingUpdateReleasesItsLocks(t *testing.T) {
	t.Parallel()
	dsn, app := taggedPostgresDSN(t)
	db := openPostgresT(t, dsn)
	ctx := context.Background()
	tok := createTestToken(t, db, createTestAPI(t, db), nil)
	// Whatever happens, free the server side so that the schema can be
	// dropped at the end of the test.
	t.Cleanup(func() {
		db.read.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'", app)
	})

	returned := make(chan any, 1)
	go func() {
		defer func() { returned <- recover() }()
		db.UpdateToken(ctx, tok.ID, func(t *store.Token) error {
			t.Name = "changed"
			panic("bug in an update function")
		}, store.AuditEvent{Action: "token.update", Target: tok.ID})
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		var stuck int
		db.read.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'", app).Scan(&stuck)
		t.Errorf("UpdateToken whose update function panicked has not returned after 5s; %d connection(s) of this store are idle in transaction", stuck)
	}

	// The token must not stay locked: another update of it goes through.
	uctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := db.UpdateToken(uctx, tok.ID, func(t *store.Token) error { t.Name = "after"; return nil },
			store.AuditEvent{Action: "token.update", Target: tok.ID})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("UpdateToken after an update that panicked: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("UpdateToken after an update that panicked is still waiting after 3s: the token's row lock was never released")
	}
}

// TestSQLiteLockedDatabaseIsBusy checks that a SQLite write that gives up
// waiting for the database's write lock, held by another process (say
// `jeton admin bootstrap` or `jeton audit verify` beside `jeton serve`),
// reports store.ErrBusy, as a PostgreSQL write that times out on a lock
// does: it changed nothing and may be retried (the admin API answers 503
// and Retry-After, not 500).
func TestSQLiteLockedDatabaseIsBusy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	defer db.Close()
	ctx := context.Background()

	// Another process holds the write lock.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("UPDATE audit_head SET seq = seq WHERE id = 1"); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	a := store.API{ID: ids.New(ids.API, now), Name: "acme", Identifier: "https://acme.example.com",
		Scopes: []string{"repos:read"}, KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	err = db.CreateAPI(ctx, a, store.AuditEvent{Action: "api.create", Target: a.ID})
	if err == nil {
		t.Fatal("CreateAPI succeeded while another connection held the write lock")
	}
	if !errors.Is(err, store.ErrBusy) {
		t.Errorf("CreateAPI while another process holds the write lock = %v, want store.ErrBusy", err)
	}
}

// TestPostgresConcurrentFlushesDoNotDeadlock checks that two nodes
// flushing quota consumption for the same tokens at the same time both
// succeed. A node drains its meter in map order, so two flushes name the
// same tokens in different orders; the store must lock the rows in an
// order of its own. A third transaction (another write of the first
// token, as a concurrent PATCH or flush would be) lines the two flushes up.
func TestPostgresConcurrentFlushesDoNotDeadlock(t *testing.T) {
	t.Parallel()
	db, dsn, app, ctx := lockTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	api := createTestAPI(t, db)
	x := createTestToken(t, db, api, &store.Quota{Remaining: 1000, Version: 1}).ID
	y := createTestToken(t, db, api, &store.Quota{Remaining: 1000, Version: 1}).ID
	delta := func(id string) store.QuotaDelta {
		return store.QuotaDelta{TokenID: id, Consumed: 1, Version: 1}
	}

	release := holdLock(t, dsn, "SELECT id FROM tokens WHERE id = $1 FOR NO KEY UPDATE", x)
	errs := make(chan error, 2)
	go func() {
		errs <- db.RecordUsage(ctx, store.UsageFlush{ID: "node-a-1", At: now, Quota: []store.QuotaDelta{delta(x), delta(y)}})
	}()
	waitForLockWaiters(t, db, app, 1, "node A's flush")
	go func() {
		errs <- db.RecordUsage(ctx, store.UsageFlush{ID: "node-b-1", At: now, Quota: []store.QuotaDelta{delta(y), delta(x)}})
	}()
	waitForLockWaiters(t, db, app, 2, "node B's flush")
	release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("RecordUsage of two nodes at once: %v", err)
		}
	}
	for _, id := range []string{x, y} {
		tok, err := db.GetToken(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Quota.Remaining != 998 {
			t.Errorf("token %s: quota remaining %d after two flushes of 1, want 998", id, tok.Quota.Remaining)
		}
	}
}
