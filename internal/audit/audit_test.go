package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
)

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		tamper  string // SQL run directly against the database file
		wantSeq int64
	}{
		{"edited details", `UPDATE audit_events SET details = '{"name":"innocent"}' WHERE seq = 3`, 3},
		{"deleted entry", `DELETE FROM audit_events WHERE seq = 4`, 5},
		{"rewritten hash", `UPDATE audit_events SET hash = 'x' WHERE seq = 2`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jeton.db")
			db, err := sqlstore.Open(ctx, path, sqlstore.Options{})
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

			raw, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(tt.tamper); err != nil {
				t.Fatal(err)
			}
			raw.Close()

			db, err = sqlstore.Open(ctx, path, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = Verify(ctx, db)
			var broken *BrokenError
			if !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Errorf("Verify after tampering = %v, want the chain broken at entry %d", err, tt.wantSeq)
			}
		})
	}
}
