package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/audit"
	"github.com/jetonhq/jeton/internal/store"
)

// TestBatchWriteOutlivesItsCaller checks that a caller giving up while its
// write runs neither interrupts that write nor touches the other writes of
// its batch: once started, a write runs to completion and commits with the
// batch. (The driver interrupts a statement whose context ends, and SQLite
// may answer an interrupted write by rolling back the whole transaction.)
func TestBatchWriteOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	insert := func(ctx context.Context, tx *sql.Tx, name string) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO apis (id, name, identifier, scopes, key_prefix, created_at, updated_at) VALUES ($1, $1, $1, '[]', 'jtp', 0, 0)", name)
		return err
	}

	// Hold the writer so that the next two writes queue and share a batch.
	started, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- db.update(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			close(started)
			<-release
			return insert(ctx, tx, "held")
		})
	}()
	<-started

	quitter, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		who string
		err error
	}
	results := make(chan result, 2)
	go func() {
		err := db.update(quitter, func(ctx context.Context, tx *sql.Tx) error {
			if err := insert(ctx, tx, "quitter-1"); err != nil {
				return err
			}
			cancel() // the caller gives up halfway through its write
			return insert(ctx, tx, "quitter-2")
		})
		results <- result{"quitter", err}
	}()
	go func() {
		err := db.update(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			return insert(ctx, tx, "bystander")
		})
		results <- result{"bystander", err}
	}()
	for deadline := time.Now().Add(10 * time.Second); len(db.batch.reqs) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two writes never queued")
		}
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := <-results; r.err != nil {
			t.Errorf("%s: %v", r.who, r.err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openSQLiteT(t, path)
	defer db.Close()
	for _, name := range []string{"held", "quitter-1", "quitter-2", "bystander"} {
		var n int
		if err := db.read.QueryRow("SELECT count(*) FROM apis WHERE name = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("row %q: %d after reopening, want 1", name, n)
		}
	}
}

// TestAuditHeadCopyGoesStale checks that the SQLite writer's copy of the
// audit head never breaks the chain when it is wrong: after an append that
// was rolled back, and after an append by another handle on the same file.
func TestAuditHeadCopyGoesStale(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	defer db.Close()
	ctx := context.Background()
	appendAs := func(db *DB, action string) {
		t.Helper()
		if err := db.AppendAudit(ctx, store.AuditEvent{Action: action, Actor: "test"}); err != nil {
			t.Fatalf("append %s: %v", action, err)
		}
	}
	appendAs(db, "first")
	rolledBack := errors.New("rolled back")
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := db.appendAudit(ctx, tx, store.AuditEvent{Action: "rolled-back", Actor: "test"}); err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatalf("update: %v", err)
	}
	appendAs(db, "after-rollback")
	other := openSQLiteT(t, path)
	appendAs(other, "other-handle")
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	appendAs(db, "after-other-handle")

	n, err := audit.Verify(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := db.ScanAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Action)
	}
	want := []string{"first", "after-rollback", "other-handle", "after-other-handle"}
	if n != int64(len(want)) || !slices.Equal(got, want) {
		t.Errorf("chain of %d: %v, want %v", n, got, want)
	}
}
