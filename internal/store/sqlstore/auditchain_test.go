package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// TestPostgresAuditedWritesDoNotWaitForTheHead: while another transaction
// holds the audit log's head, audited writes still commit at once; their
// events are chained, in order, once the head is free.
func TestPostgresAuditedWritesDoNotWaitForTheHead(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn, Options{LockTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()

	release := holdLock(t, dsn, "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
	targets := []string{"tok_a", "tok_b", "tok_c"}
	for _, target := range targets {
		// With the head held, an append that needed it would fail after
		// LockTimeout.
		if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.revoke", Target: target}); err != nil {
			t.Fatalf("AppendAudit while the head is held: %v", err)
		}
	}
	release()
	evs, err := db.ScanAudit(ctx, 0, 100)
	if err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	if len(evs) != len(targets) {
		t.Fatalf("%d events chained, want %d", len(evs), len(targets))
	}
	for i, e := range evs {
		if e.Target != targets[i] || e.Seq != int64(i+1) {
			t.Errorf("event %d: seq %d target %s, want seq %d target %s", i, e.Seq, e.Target, i+1, targets[i])
		}
	}
	if n := pendingEvents(t, db); n != 0 {
		t.Errorf("%d events still pending after a scan", n)
	}
}

// TestPostgresAuditChainAcrossNodes: two nodes append at once and both
// chain; every event is chained once, in one unbroken chain, and the
// background chainer gets there without a read.
func TestPostgresAuditChainAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := openPostgresT(t, dsn), openPostgresT(t, dsn)
	const perNode = 300 // more than one chaining batch from each
	var wg sync.WaitGroup
	for _, db := range []*DB{a, b} {
		for range 4 {
			wg.Go(func() {
				for range perNode / 4 {
					if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.create", Target: "tok_x"}); err != nil {
						t.Errorf("AppendAudit: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	// The background chainers empty audit_pending on their own.
	waitNonePending(ctx, t, a)
	var evs []store.AuditEvent
	for after := int64(0); ; {
		page, err := b.ScanAudit(ctx, after, 1000)
		if err != nil {
			t.Fatalf("ScanAudit: %v", err)
		}
		if len(page) == 0 {
			break
		}
		evs = append(evs, page...)
		after = page[len(page)-1].Seq
	}
	if len(evs) != 2*perNode {
		t.Fatalf("%d events chained, want %d", len(evs), 2*perNode)
	}
	prev, ids := "", map[string]bool{}
	for i, e := range evs {
		if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash != e.ChainHash(prev) {
			t.Fatalf("chain broken at event %d (seq %d)", i, e.Seq)
		}
		if ids[e.ID] {
			t.Fatalf("event %s chained twice", e.ID)
		}
		ids[e.ID] = true
		prev = e.Hash
	}
}

// TestPostgresCloseChainsPendingEvents: Close chains what is pending, so that
// a node that stops leaves nothing behind it.
func TestPostgresCloseChainsPendingEvents(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	db, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	const n = 50
	for range n {
		if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.create", Target: "tok_x"}); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var pending, chained int
	if err := raw.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM audit_pending), (SELECT count(*) FROM audit_events)").Scan(&pending, &chained); err != nil {
		t.Fatal(err)
	}
	if pending != 0 || chained != n {
		t.Errorf("after Close: %d events pending, %d chained; want 0 and %d", pending, chained, n)
	}
}

// TestPostgresFailedChainingKeepsEvents: while the head cannot be had, the
// background rounds fail and are counted, the events stay pending, and the
// first round after the head is free chains them.
func TestPostgresFailedChainingKeepsEvents(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn, Options{LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	release := holdLock(t, dsn, "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
	if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.revoke", Target: "tok_a"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	for db.AuditChainErrors() < 2 {
		if ctx.Err() != nil {
			t.Fatal("no failed round of chaining counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := db.ScanAudit(ctx, 0, 10); !errors.Is(err, store.ErrBusy) {
		t.Errorf("ScanAudit while the head is held = %v, want store.ErrBusy", err)
	}
	release()
	waitNonePending(ctx, t, db)
	evs, err := db.ScanAudit(ctx, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Target != "tok_a" {
		t.Errorf("ScanAudit = %v, %v; want the one event", evs, err)
	}
}

// pendingEvents counts the audit events of db waiting to be chained.
func pendingEvents(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.read.QueryRow("SELECT count(*) FROM audit_pending").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitNonePending waits until db's background chainer (or another node's)
// has chained every pending event, failing t when ctx ends first.
func waitNonePending(ctx context.Context, t *testing.T, db *DB) {
	t.Helper()
	for n := pendingEvents(t, db); n > 0; n = pendingEvents(t, db) {
		if ctx.Err() != nil {
			t.Fatalf("%d audit events still pending", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
