package tokens

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// TestRevocationReachesOtherNodes runs two nodes on one PostgreSQL
// database. Node B has a key cached for far longer than the test runs;
// revoking it on node A must reach B through LISTEN/NOTIFY.
func TestRevocationReachesOtherNodes(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	node := func() *Service {
		db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		svc, err := New(ctx, Config{Store: db, CacheTTL: time.Hour, NegativeTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close(ctx) })
		return svc
	}
	a, b := node(), node()
	api, err := a.CreateAPI(ctx, APIParams{Name: "acme", Identifier: "acme", Scopes: []string{"read"}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.CreateToken(ctx, CreateParams{API: api.ID}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	verifyOnB := func() Code {
		res, err := b.Verify(ctx, &Request{Token: c.Secret})
		if err != nil {
			t.Fatal(err)
		}
		return res.Code
	}
	// B's subscription is established asynchronously; until then B may
	// miss notifications, so wait until B has seen the key and then keep
	// re-checking that a revocation on A arrives.
	if got := verifyOnB(); got != Valid {
		t.Fatalf("before revocation: %v", got)
	}
	start := time.Now()
	if _, err := a.RevokeToken(ctx, c.Token.ID, "leaked", Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for verifyOnB() != Revoked {
		if time.Now().After(deadline) {
			t.Fatal("revocation on node A did not reach node B's cache within 10s (its cache bound is 1h)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation reached node B after %v", time.Since(start))
}

// postgresStores opens two stores on one fresh PostgreSQL schema, as two
// nodes have.
func postgresStores(t *testing.T) (store.Store, store.Store) {
	dsn := storetest.PostgresDSN(t)
	open := func() store.Store {
		db, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return open(), open()
}

func TestQuotaUpdateReachesOtherPostgresNode(t *testing.T) {
	t.Parallel()
	sa, sb := postgresStores(t)
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	a, b := twoNodes(t, sa, sb, clk, Config{})
	testQuotaUpdateReachesOtherNode(t, a, b, clk)
}

func TestAPIIndexMissReloadsOnPostgres(t *testing.T) {
	t.Parallel()
	sa, sb := postgresStores(t)
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	a, b := twoNodes(t, sa, sb, clk, Config{})
	testAPIIndexMissReloads(t, a, b)
}

func TestAPIIndexReloadsPeriodicallyOnPostgres(t *testing.T) {
	t.Parallel()
	sa, sb := postgresStores(t)
	testAPIIndexReloadsPeriodically(t, sa, sb)
}

// TestLostListenConnectionIsReported kills the LISTEN connection of a node
// on PostgreSQL: until it listens again the node is deaf to revocations
// made on other nodes, so it must say so in its log and count a store
// error, and then listen again.
func TestLostListenConnectionIsReported(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	app := "jeton-test-" + ids.New("", time.Now())
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	dsn := u.String()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var logged syncBuffer
	failed := make(chan string, 16)
	svc, err := New(ctx, Config{Store: db, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
		OnStoreError: func(op string) { failed <- op }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })

	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	terminate := func() int {
		t.Helper()
		var n int
		if err := admin.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%'`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for terminate() == 0 { // the node listens asynchronously
		if ctx.Err() != nil {
			t.Fatal("the node never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case op := <-failed:
		if op != "listen" {
			t.Errorf("store error op = %q, want listen", op)
		}
	case <-ctx.Done():
		t.Fatal("the lost LISTEN connection was not counted as a store error")
	}
	if got := logged.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "other nodes") {
		t.Errorf("log = %q, want a warning that the node does not hear the other nodes", got)
	}
	for terminate() == 0 { // and it listens again
		if ctx.Err() != nil {
			t.Fatal("the node never listened again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a logger may write from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
