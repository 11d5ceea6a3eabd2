package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
)

// TestGrantStatementsPrepared checks that the statements of the token
// endpoint's writes, as the methods issue them on SQLite (with the
// dialect's empty row-lock suffix), are the ones prepared on the writer.
func TestGrantStatementsPrepared(t *testing.T) {
	t.Parallel()
	db := openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db"))
	defer db.Close()
	for _, q := range []string{
		insertGrantSQL, insertRefreshSQL, redeemAuthCodeSQL, getAuthCodeSQL, rotateRefreshSQL, getRefreshSQL,
		lockGrantSQL + db.d.forUpdate, deviceByHashSQL + db.d.forUpdate, deviceByUserCodeSQL + db.d.forUpdate,
		updateDeviceSQL, insertTokenSQL, insertSecretSQL,
	} {
		if db.prepared(context.Background(), q) == nil {
			t.Errorf("not prepared: %s", q)
		}
	}
}
