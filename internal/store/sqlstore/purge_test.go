package sqlstore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestPurgeTokensUsesIndexes checks SQLite's plans for the janitor's token
// statements: each must find its rows through an index. A statement that
// scans a table reads every token (or secret) at every batch of the
// janitor, and on SQLite the single writer waits meanwhile: on a store of
// a million tokens, a pause of every write for each batch.
func TestPurgeTokensUsesIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db"))
	for _, q := range []string{purgeVictimsSQL, purgeRotatedSecretsSQL} {
		rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, 1, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN tokens") || strings.HasPrefix(step, "SCAN token_secrets") {
				t.Errorf("%s\nscans a table:\n%s", q, strings.Join(plan, "\n"))
				break
			}
		}
	}
}
