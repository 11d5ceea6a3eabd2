package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// tamperTests are ways of tampering with a log of six entries, each with
// the entry Verify must name.
var tamperTests = []struct {
	name    string
	tamper  string // SQL run directly against the database
	wantSeq int64
}{
	{"edited details", `UPDATE audit_events SET details = '{"name":"innocent"}' WHERE seq = 3`, 3},
	{"deleted entry", `DELETE FROM audit_events WHERE seq = 4`, 5},
	{"rewritten hash", `UPDATE audit_events SET hash = 'x' WHERE seq = 2`, 2},
	// The newest entries removed, what an intruder who just acted does
	// first: the chain that is left still links, but the head says the
	// log has six entries.
	{"deleted tail", `DELETE FROM audit_events WHERE seq >= 5`, 5},
	{"deleted everything", `DELETE FROM audit_events`, 1},
	{"rewritten head", `UPDATE audit_head SET hash = 'x'`, 6},
	{"rewound head", `UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_events WHERE seq = 4)`, 5},
	// Entries numbered outside 1..head, which a scan from entry 1 would
	// never see while GET /v1/audit lists them.
	{"inserted entry with seq 0", `INSERT INTO audit_events (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash)
		VALUES (0, 'evt_forged', 0, 'tok_admin', 'token.create', 'tok_forged', '10.0.0.1', '{}', '', 'x')`, 0},
	{"inserted entry with negative seq", `INSERT INTO audit_events (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash)
		VALUES (-1, 'evt_forged', 0, 'tok_admin', 'token.create', 'tok_forged', '10.0.0.1', '{}', '', 'x')`, -1},
}

// tamperLog appends six events to a fresh store at dsn, proves the log
// intact, runs tamper straight against the database (opened with driver at
// rawDSN), and returns what Verify says then.
func tamperLog(t *testing.T, dsn, driver, rawDSN, tamper string) (int64, error) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		ev := store.AuditEvent{Actor: "test", Action: "token.create", Target: fmt.Sprintf("tok_%d", i), Details: []byte(`{"name":"ci"}`)}
		if err := db.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := Verify(ctx, db); err != nil || n != 6 {
		t.Fatalf("intact log: %d entries, %v", n, err)
	}
	db.Close()

	raw, err := sql.Open(driver, rawDSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(tamper); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db, err = sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return Verify(ctx, db)
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	for _, tt := range tamperTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jeton.db")
			n, err := tamperLog(t, path, "sqlite", path, tt.tamper)
			var broken *BrokenError
			if !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Errorf("Verify after tampering = %d entries, %v; want the chain broken at entry %d", n, err, tt.wantSeq)
			}
		})
	}
}

func TestPostgresVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	for _, tt := range tamperTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dsn := storetest.PostgresDSN(t)
			n, err := tamperLog(t, dsn, "pgx", dsn, tt.tamper)
			var broken *BrokenError
			if !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Errorf("Verify after tampering = %d entries, %v; want the chain broken at entry %d", n, err, tt.wantSeq)
			}
		})
	}
}

// appendingStore appends an event whenever Verify reads the head: before
// it reads it when before is set, after it otherwise.
type appendingStore struct {
	store.Store
	before bool
}

func (s appendingStore) AuditHead(ctx context.Context) (int64, string, error) {
	appendOne := func() error {
		return s.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.create"})
	}
	if s.before {
		if err := appendOne(); err != nil {
			return 0, "", err
		}
	}
	seq, hash, err := s.Store.AuditHead(ctx)
	if err == nil && !s.before {
		err = appendOne()
	}
	return seq, hash, err
}

// TestVerifyAppendedAroundHead proves that an entry appended after Verify
// walked the log is checked up to the head it reads then, and one
// appended after that is left for the next run.
func TestVerifyAppendedAroundHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before bool
		want   int64
	}{
		{"before the head is read", true, 7},
		{"after the head is read", false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for range 6 {
				if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.create"}); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := Verify(ctx, appendingStore{db, tt.before}); err != nil || n != tt.want {
				t.Errorf("Verify = %d entries, %v; want %d, nil", n, err, tt.want)
			}
		})
	}
}

// TestVerifyWhileAppending proves that entries appended while Verify runs,
// after it walked the log and before or after it read the head, are not
// taken for a broken chain.
func TestVerifyWhileAppending(t *testing.T) {
	t.Parallel()
	engines := []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"SQLite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "jeton.db") }},
		{"PostgreSQL", storetest.PostgresDSN},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, e.dsn(t), sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if n, err := Verify(ctx, db); err != nil || n != 0 {
				t.Fatalf("empty log: %d entries, %v", n, err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "test", Action: "token.create"}); err != nil {
							t.Errorf("AppendAudit: %v", err)
							return
						}
					}
				})
			}
			for range 10 {
				if _, err := Verify(ctx, db); err != nil {
					t.Errorf("Verify while appending: %v", err)
				}
			}
			close(stop)
			wg.Wait()
			if _, err := Verify(ctx, db); err != nil {
				t.Errorf("Verify after appending: %v", err)
			}
		})
	}
}
