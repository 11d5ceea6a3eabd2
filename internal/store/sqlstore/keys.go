package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/jetonhq/jeton/internal/store"
)

const keyColumns = "id, alg, public_jwk, private_key, created_at, active_at, retired_at, expires_at"

const upsertKeySQL = "INSERT INTO signing_keys (" + keyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
	ON CONFLICT (id) DO UPDATE SET alg = excluded.alg, public_jwk = excluded.public_jwk,
	private_key = excluded.private_key, created_at = excluded.created_at, active_at = excluded.active_at,
	retired_at = excluded.retired_at, expires_at = excluded.expires_at`

func scanKeys(rows *sql.Rows) ([]store.SigningKey, error) {
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var jwk string
		var created, active int64
		var retired, expires sql.NullInt64
		if err := rows.Scan(&k.ID, &k.Alg, &jwk, &k.Private, &created, &active, &retired, &expires); err != nil {
			return nil, err
		}
		if jwk != "" {
			k.PublicJWK = json.RawMessage(jwk)
		}
		k.CreatedAt, k.ActiveAt = fromMS(created), fromMS(active)
		k.RetiredAt, k.ExpiresAt = fromNullMS(retired), fromNullMS(expires)
		out = append(out, k)
	}
	return out, rows.Err()
}

// ListSigningKeys implements store.KeyStore. Keys come in ID order, which
// is creation order.
func (db *DB) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT "+keyColumns+" FROM signing_keys ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list signing keys: %w", err)
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list signing keys: %w", err)
	}
	return keys, nil
}

// UpdateSigningKeys implements store.KeyStore. On PostgreSQL the
// transaction first locks the signing_keys table in SHARE ROW EXCLUSIVE
// mode, which conflicts with itself but not with plain reads: concurrent
// calls on every node run one after the other, each seeing what the
// previous one committed. On SQLite the single writer already serialises
// them. An update that returns nothing to put or delete changes nothing and
// records no audit event; one that fails rolls back and records none.
func (db *DB) UpdateSigningKeys(ctx context.Context, update func(keys []store.SigningKey) (put []store.SigningKey, del []string, err error), ev store.AuditEvent) error {
	return db.announcing(ctx, changeKeys, func(ctx context.Context, tx *sql.Tx) error {
		if db.d.lockTable != "" {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(db.d.lockTable, "signing_keys")); err != nil {
				return fmt.Errorf("sqlstore: update signing keys: lock: %w", err)
			}
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+keyColumns+" FROM signing_keys ORDER BY id")
		if err != nil {
			return fmt.Errorf("sqlstore: update signing keys: %w", err)
		}
		keys, err := scanKeys(rows)
		if err != nil {
			return fmt.Errorf("sqlstore: update signing keys: %w", err)
		}
		put, del, err := update(keys)
		if err != nil {
			return err
		}
		if len(put) == 0 && len(del) == 0 {
			return nil
		}
		for _, k := range put {
			if _, err := tx.ExecContext(ctx, upsertKeySQL, k.ID, k.Alg, string(k.PublicJWK), k.Private,
				ms(k.CreatedAt), ms(k.ActiveAt), nullMS(k.RetiredAt), nullMS(k.ExpiresAt)); err != nil {
				return fmt.Errorf("sqlstore: put signing key %s: %w", k.ID, err)
			}
		}
		for _, id := range del {
			if _, err := tx.ExecContext(ctx, "DELETE FROM signing_keys WHERE id = $1", id); err != nil {
				return fmt.Errorf("sqlstore: delete signing key %s: %w", id, err)
			}
		}
		return db.appendAudit(ctx, tx, ev)
	})
}
