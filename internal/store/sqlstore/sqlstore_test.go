package sqlstore

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/audit"
	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

func openSQLiteT(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

// openPostgresT opens a store on dsn (from storetest.PostgresDSN), closed
// when t ends.
func openPostgresT(t testing.TB, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		db := openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db"))
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	if os.Getenv("JETON_TEST_POSTGRES_DSN") == "" {
		t.Skip("JETON_TEST_POSTGRES_DSN is not set")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openPostgresT(t, storetest.PostgresDSN(t))
	})
}

// TestPostgresIDsSortInByteOrder runs the listings of the conformance
// suite on a database whose default collation is linguistic (ICU en-US, as
// many installations default to en_US.UTF-8), where "a" sorts before "B":
// IDs sort by creation time only in byte order.
func TestPostgresIDsSortInByteOrder(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDatabaseDSN(t, "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
	storetest.NewestFirst(t, openPostgresT(t, dsn))
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	a := store.API{ID: ids.New(ids.API, time.Now()), Name: "a", Identifier: "a", KeyPrefix: "jtp", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := db.CreateAPI(context.Background(), a, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openSQLiteT(t, path) // second start applies nothing and keeps data
	defer db.Close()
	if _, err := db.GetAPI(context.Background(), a.ID); err != nil {
		t.Errorf("data lost across restart: %v", err)
	}
}

func TestPostgresConcurrentStartups(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			db, err := Open(context.Background(), dsn, Options{})
			if err != nil {
				t.Errorf("concurrent Open: %v", err)
				return
			}
			db.Close()
		})
	}
	wg.Wait()
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	got := splitStatements("-- comment\nCREATE TABLE a (\n  x INT -- note\n);\n\nINSERT INTO a VALUES (1);\n")
	if len(got) != 2 || !strings.HasPrefix(got[0], "CREATE TABLE a") || got[1] != "INSERT INTO a VALUES (1)" {
		t.Errorf("splitStatements = %q", got)
	}
}

// TestGroupCommitDurable checks that every acknowledged concurrent write is
// on disk after a reopen, and that one failing write in a batch fails alone.
func TestGroupCommitDurable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	ctx := context.Background()
	now := time.Now()
	a := store.API{ID: ids.New(ids.API, now), Name: "a", Identifier: "a", KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(ctx, a, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	dupHash := tokenfmt.HashOf("dup")
	const n = 300
	var wg sync.WaitGroup
	var acked sync.Map
	var failures atomic.Int64
	for i := range n {
		wg.Go(func() {
			tok := store.Token{ID: ids.New(ids.Token, now), APIID: a.ID, Scopes: []string{}, CreatedAt: now, UpdatedAt: now}
			h := tokenfmt.HashOf(tok.ID)
			if i%50 == 0 {
				h = dupHash // all but the first of these must fail, alone
			}
			err := db.CreateToken(ctx, tok, h, store.AuditEvent{Action: "token.create", Target: tok.ID, Actor: "test"})
			if err != nil {
				failures.Add(1)
				return
			}
			acked.Store(tok.ID, true)
		})
	}
	wg.Wait()
	if got := failures.Load(); got != n/50-1 {
		t.Errorf("%d writes failed, want %d (the duplicate hashes)", got, n/50-1)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openSQLiteT(t, path)
	defer db.Close()
	count := 0
	acked.Range(func(k, _ any) bool {
		count++
		if _, err := db.GetToken(ctx, k.(string)); err != nil {
			t.Errorf("acknowledged token %s lost: %v", k, err)
		}
		return true
	})
	evs, err := db.ScanAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != count {
		t.Errorf("%d audit events for %d acknowledged creates", len(evs), count)
	}
	if _, err := db.ScanAudit(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	t.Parallel()
	db := openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db"))
	db.Close()
	err := db.AppendAudit(context.Background(), store.AuditEvent{Action: "x"})
	if err == nil {
		t.Fatal("write after Close succeeded")
	}
}

func BenchmarkCreateTokenParallel(b *testing.B) {
	db, _ := Open(context.Background(), filepath.Join(b.TempDir(), "jeton.db"), Options{SQLiteSynchronous: "FULL"})
	defer db.Close()
	ctx := context.Background()
	now := time.Now()
	a := store.API{ID: ids.New(ids.API, now), Name: "a", Identifier: "a", KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(ctx, a, store.AuditEvent{}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := store.Token{ID: ids.New(ids.Token, now), APIID: a.ID, Scopes: []string{"x"}, CreatedAt: now, UpdatedAt: now}
			if err := db.CreateToken(ctx, tok, tokenfmt.HashOf(tok.ID), store.AuditEvent{Action: "token.create", Target: tok.ID}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAuditRowidMigration upgrades a database at schema version 4 that
// holds audit events, and checks that migration 5 keeps every event and the
// chain, leaves no automatic index on audit_events, and that appends go on.
func TestAuditRowidMigration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	migrations, err := loadMigrations(sqliteDialect)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
	for _, m := range migrations {
		if m.version > 4 {
			break
		}
		for _, stmt := range splitStatements(m.sql) {
			exec(stmt)
		}
		exec("INSERT INTO schema_migrations VALUES ($1, $2, 0)", m.version, m.name)
	}
	prev := ""
	for i := int64(1); i <= 3; i++ {
		ev := store.AuditEvent{Seq: i, ID: ids.New(ids.Event, time.Now()), Time: fromMS(ms(time.Now())), Actor: "test", Action: "old", Target: "t", PrevHash: prev}
		ev.Hash = ev.ChainHash(prev)
		exec("INSERT INTO audit_events (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, '', '', $7, $8)",
			ev.Seq, ev.ID, ms(ev.Time), ev.Actor, ev.Action, ev.Target, ev.PrevHash, ev.Hash)
		exec("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", ev.Seq, ev.Hash)
		prev = ev.Hash
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db := openSQLiteT(t, path)
	defer db.Close()
	ctx := context.Background()
	if err := db.AppendAudit(ctx, store.AuditEvent{Action: "new", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	n, err := audit.Verify(ctx, db)
	if err != nil || n != 4 {
		t.Fatalf("after the migration: %d entries verified, err %v; want 4", n, err)
	}
	var auto int
	if err := db.read.QueryRow("SELECT count(*) FROM pragma_index_list('audit_events') WHERE origin <> 'c'").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Errorf("audit_events has %d automatic indexes, want 0", auto)
	}
}

// TestIDCollationMigration applies migration 12 to a store that holds
// tokens (with their secrets, usage and API) on a database with a
// linguistic default collation: the columns change with the rows and the
// references in place, and the tokens list newest first afterwards.
func TestIDCollationMigration(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDatabaseDSN(t, "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
	ctx := context.Background()
	db, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Back to the columns of migration 11.
	ms, err := loadMigrations(postgresDialect)
	if err != nil {
		t.Fatal(err)
	}
	var undo string
	for _, m := range ms {
		if m.version == 12 {
			undo = strings.ReplaceAll(m.sql, `COLLATE "C"`, `COLLATE "default"`)
		}
	}
	for _, stmt := range append(splitStatements(undo), "DELETE FROM schema_migrations WHERE version = 12") {
		if _, err := db.write.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	base := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	api := store.API{ID: ids.New(ids.API, base), Name: "acme", Identifier: "https://acme.example.com", Scopes: []string{"read"}, KeyPrefix: "jtp", CreatedAt: base, UpdatedAt: base}
	if err := db.CreateAPI(ctx, api, store.AuditEvent{Time: base, Actor: "test", Action: "api.create"}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 80 {
		at := base.Add(time.Duration(i) * time.Millisecond)
		secret, _ := tokenfmt.Generate("jtp")
		tok := store.Token{ID: ids.New(ids.Token, at), APIID: api.ID, Name: "k", Subject: "s", Hint: tokenfmt.Hint(secret), CreatedAt: at, UpdatedAt: at}
		if err := db.CreateToken(ctx, tok, tokenfmt.HashOf(secret), store.AuditEvent{Time: at, Actor: "test", Action: "token.create"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordUsage(ctx, store.UsageFlush{ID: tok.ID, At: at, Usage: []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: at.Truncate(time.Hour), Allowed: 1}}, LastUsedAt: at}}}); err != nil {
			t.Fatal(err)
		}
		want = append([]string{tok.ID}, want...)
	}
	db.Close()

	db = openPostgresT(t, dsn)
	var got []string
	for after := ""; ; {
		page, next, err := db.ListTokens(ctx, store.TokenFilter{After: after, Limit: 9})
		if err != nil {
			t.Fatalf("ListTokens: %v", err)
		}
		for _, tok := range page {
			got = append(got, tok.ID)
		}
		if after = next; after == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("after the migration, tokens listed in another order than newest first:\n got %v\nwant %v", got, want)
	}
	if _, err := db.DeleteAPI(ctx, api.ID, true, base, store.AuditEvent{Time: base, Actor: "test", Action: "api.delete"}); err != nil {
		t.Fatalf("DeleteAPI after the migration: %v", err)
	}
}
