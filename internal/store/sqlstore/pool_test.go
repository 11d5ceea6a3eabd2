package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// TestPostgresReadsDoNotWaitForWrites: with every write connection taken by
// creates queued on a lock, reads are still answered at once.
func TestPostgresReadsDoNotWaitForWrites(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openPostgresT(t, dsn)
	now := time.Now()
	api := createTestAPI(t, db)

	// Another transaction locks the API row, which a token's insert must
	// share (its foreign key), as a slow change of the API on another node
	// would.
	release := holdLock(t, dsn, "SELECT id FROM apis WHERE id = $1 FOR UPDATE", api.ID)

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

	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("CreateToken after the lock was released: %v", err)
		}
	}
}

// TestPostgresLockWaitIsBounded: a write waiting for a lock that another
// transaction keeps fails after Options.LockTimeout, having changed nothing,
// and reads are not bounded that way.
func TestPostgresLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	var writeTimeout, readTimeout string
	if err := db.write.QueryRowContext(ctx, "SHOW lock_timeout").Scan(&writeTimeout); err != nil {
		t.Fatal(err)
	}
	if err := db.read.QueryRowContext(ctx, "SHOW lock_timeout").Scan(&readTimeout); err != nil {
		t.Fatal(err)
	}
	if writeTimeout != "100ms" || readTimeout != "0" {
		t.Errorf("lock_timeout: write pool %q, read pool %q; want 100ms and 0", writeTimeout, readTimeout)
	}

	now := time.Now()
	api := createTestAPI(t, db)
	release := holdLock(t, dsn, "SELECT id FROM apis WHERE id = $1 FOR UPDATE", api.ID)

	secret, _ := tokenfmt.Generate("jtp")
	tok := store.Token{ID: ids.New(ids.Token, now), APIID: api.ID, Name: "ci", Subject: "cus_1",
		Scopes: []string{"repos:read"}, Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now}
	done := make(chan error, 1)
	go func() {
		done <- db.CreateToken(ctx, tok, tokenfmt.HashOf(secret), store.AuditEvent{Action: "token.create", Target: tok.ID})
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		release() // lets the create finish, so that the test can end
		t.Fatal("CreateToken still waits for the API row after 10s")
	}
	if !errors.Is(err, store.ErrBusy) || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("CreateToken while the API row is locked = %v, want a lock timeout (store.ErrBusy)", err)
	}
	if _, err := db.GetToken(ctx, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetToken after the failed create = %v, want ErrNotFound", err)
	}
	release()
	if err := db.CreateToken(ctx, tok, tokenfmt.HashOf(secret), store.AuditEvent{Action: "token.create", Target: tok.ID}); err != nil {
		t.Errorf("CreateToken once the API row is free: %v", err)
	}
}

// createTestAPI creates an API named acme in db.
func createTestAPI(t *testing.T, db *DB) store.API {
	t.Helper()
	now := time.Now()
	api := store.API{ID: ids.New(ids.API, now), Name: "acme", Identifier: "https://acme.example.com",
		Scopes: []string{"repos:read"}, KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(context.Background(), api, store.AuditEvent{Action: "api.create", Target: api.ID}); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	return api
}

// createTestToken creates an API key of api in db, with quota q if not nil.
func createTestToken(t *testing.T, db *DB, api store.API, q *store.Quota) store.Token {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	secret := mustGenerate(t, "jtp")
	tok := store.Token{ID: ids.New(ids.Token, now), APIID: api.ID, Name: "ci", Subject: "cus_1",
		Scopes: []string{"repos:read"}, Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now, Quota: q}
	if err := db.CreateToken(context.Background(), tok, tokenfmt.HashOf(secret), store.AuditEvent{Action: "token.create", Target: tok.ID}); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok
}

// holdLock runs query (a SELECT ... FOR UPDATE) in a transaction of its own
// connection to dsn, as another node would, and keeps its locks until
// release (or the end of t).
func holdLock(t *testing.T, dsn, query string, args ...any) (release func()) {
	t.Helper()
	ctx := context.Background()
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		other.Close()
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback()
			other.Close()
		})
	}
	t.Cleanup(release)
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("hold lock: %v", err)
	}
	return release
}

// TestPostgresRefusedUsageWrite: a usage flush the server answers with an
// error (an id PostgreSQL cannot store) is store.ErrRefused, and wrote
// nothing, so its node may merge its counts back; a usable flush then goes
// through.
func TestPostgresRefusedUsageWrite(t *testing.T) {
	t.Parallel()
	db := openPostgresT(t, storetest.PostgresDSN(t))
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	api := store.API{ID: ids.New(ids.API, at), Name: "acme", Identifier: "https://acme.example.com", Scopes: []string{"read"}, KeyPrefix: "jtp", CreatedAt: at, UpdatedAt: at}
	if err := db.CreateAPI(ctx, api, store.AuditEvent{Time: at, Actor: "test", Action: "api.create"}); err != nil {
		t.Fatal(err)
	}
	secret, _ := tokenfmt.Generate("jtp")
	tok := store.Token{ID: ids.New(ids.Token, at), APIID: api.ID, Name: "k", Subject: "s", Hint: tokenfmt.Hint(secret), CreatedAt: at, UpdatedAt: at}
	if err := db.CreateToken(ctx, tok, tokenfmt.HashOf(secret), store.AuditEvent{Time: at, Actor: "test", Action: "token.create"}); err != nil {
		t.Fatal(err)
	}
	usage := []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: at, Allowed: 1}}, LastUsedAt: at}}
	err := db.RecordUsage(ctx, store.UsageFlush{ID: "bad \xff", At: at, Usage: usage})
	if !errors.Is(err, store.ErrRefused) {
		t.Fatalf("RecordUsage with an id PostgreSQL refuses: %v, want ErrRefused", err)
	}
	if err := db.RecordUsage(ctx, store.UsageFlush{ID: "good", At: at, Usage: usage}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.GetToken(ctx, tok.ID); err != nil || got.UseCount != 1 {
		t.Errorf("use count %d, %v; want 1: the refused flush wrote nothing", got.UseCount, err)
	}
}
