package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

const apiColumns = "id, name, identifier, scopes, key_prefix, default_ttl_ms, max_ttl_ms, builtin, created_at, updated_at, scope_descriptions"

type rowScanner interface{ Scan(dest ...any) error }

func scanAPI(row rowScanner) (store.API, error) {
	var a store.API
	var scopes, descs string
	var defTTL, maxTTL, created, updated int64
	var builtin int
	if err := row.Scan(&a.ID, &a.Name, &a.Identifier, &scopes, &a.KeyPrefix, &defTTL, &maxTTL, &builtin, &created, &updated, &descs); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(scopes), &a.Scopes); err != nil {
		return a, fmt.Errorf("decode scopes of api %s: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(descs), &a.ScopeDescriptions); err != nil {
		return a, fmt.Errorf("decode scope descriptions of api %s: %w", a.ID, err)
	}
	if len(a.ScopeDescriptions) == 0 {
		a.ScopeDescriptions = nil
	}
	a.DefaultTTL = time.Duration(defTTL) * time.Millisecond
	a.MaxTTL = time.Duration(maxTTL) * time.Millisecond
	a.Builtin = builtin != 0
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return a, nil
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v) // a []string always marshals
	return string(b)
}

// jsonMap encodes a string map as a JSON object, {} for nil.
func jsonMap(m map[string]string) string {
	if m == nil {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return string(b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lockAPIs locks the apis table against other writers on PostgreSQL, so
// that apiKeysFree's answer holds until the transaction commits: two nodes
// cannot each take one half of a name and identifier pair. (SQLite has one
// writer.)
func (db *DB) lockAPIs(ctx context.Context, tx *sql.Tx) error {
	if db.d.lockTable == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(db.d.lockTable, "apis")); err != nil {
		return fmt.Errorf("sqlstore: lock apis: %w", err)
	}
	return nil
}

// apiKeysFree fails with ErrAlreadyExists if another API than id has
// name or identifier as its name or its identifier: APIs are found by
// either (the token service's index, ResolveAPI), so one API's name must
// not be another's identifier. The unique indexes check each column
// alone. The caller holds lockAPIs.
func (db *DB) apiKeysFree(ctx context.Context, tx *sql.Tx, id, name, identifier string) error {
	var taken string
	err := tx.QueryRowContext(ctx, "SELECT id FROM apis WHERE id <> $1 AND (name IN ($2, $3) OR identifier IN ($2, $3)) LIMIT 1",
		id, name, identifier).Scan(&taken)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("sqlstore: check api names: %w", err)
	}
	return fmt.Errorf("sqlstore: api name %q or identifier %q is taken by %s: %w", name, identifier, taken, store.ErrAlreadyExists)
}

// CreateAPI implements store.Store.
func (db *DB) CreateAPI(ctx context.Context, a store.API, ev store.AuditEvent) error {
	return db.announcing(ctx, changeAPIs, func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lockAPIs(ctx, tx); err != nil {
			return err
		}
		if err := db.apiKeysFree(ctx, tx, a.ID, a.Name, a.Identifier); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO apis ("+apiColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			a.ID, a.Name, a.Identifier, jsonList(a.Scopes), a.KeyPrefix, a.DefaultTTL.Milliseconds(), a.MaxTTL.Milliseconds(),
			boolInt(a.Builtin), ms(a.CreatedAt), ms(a.UpdatedAt), jsonMap(a.ScopeDescriptions))
		if err != nil {
			return db.wrapUnique(err, "create api")
		}
		return db.appendAudit(ctx, tx, ev)
	})
}

// GetAPI implements store.Store.
func (db *DB) GetAPI(ctx context.Context, id string) (store.API, error) {
	return getOne(ctx, db, scanAPI, "get api", id, "SELECT "+apiColumns+" FROM apis WHERE id = $1", id)
}

// ListAPIs implements store.Store.
func (db *DB) ListAPIs(ctx context.Context) ([]store.API, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT "+apiColumns+" FROM apis ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list apis: %w", err)
	}
	defer rows.Close()
	var out []store.API
	for rows.Next() {
		a, err := scanAPI(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list apis: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list apis: %w", err)
	}
	return out, nil
}

// UpdateAPI implements store.Store.
func (db *DB) UpdateAPI(ctx context.Context, id string, update func(*store.API) error, ev store.AuditEvent) (store.API, error) {
	var out store.API
	err := db.announcing(ctx, changeAPIs, func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lockAPIs(ctx, tx); err != nil { // before the row's lock, as CreateAPI
			return err
		}
		a, err := scanAPI(tx.QueryRowContext(ctx, "SELECT "+apiColumns+" FROM apis WHERE id = $1"+db.d.forUpdate, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: update api %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update api: %w", err)
		}
		if err := update(&a); err != nil {
			return err
		}
		a.ID = id
		if err := db.apiKeysFree(ctx, tx, a.ID, a.Name, a.Identifier); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE apis SET name = $2, identifier = $3, scopes = $4, key_prefix = $5,
			default_ttl_ms = $6, max_ttl_ms = $7, updated_at = $8, scope_descriptions = $9 WHERE id = $1`,
			a.ID, a.Name, a.Identifier, jsonList(a.Scopes), a.KeyPrefix, a.DefaultTTL.Milliseconds(), a.MaxTTL.Milliseconds(), ms(a.UpdatedAt),
			jsonMap(a.ScopeDescriptions))
		if err != nil {
			return db.wrapUnique(err, "update api")
		}
		out = a
		return db.appendAudit(ctx, tx, ev)
	})
	return out, err
}

// DeleteAPI implements store.Store.
func (db *DB) DeleteAPI(ctx context.Context, id string, force bool, now time.Time, ev store.AuditEvent) ([]tokenfmt.Hash, error) {
	var hashes []tokenfmt.Hash
	var recorded bool
	now = fromMS(ms(now))
	err := db.announcing(ctx, changeAPIs, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		// The table before the row, as CreateAPI and UpdateAPI take them:
		// the DELETE FROM apis below needs a table lock theirs conflicts
		// with, and taking it last would deadlock with an update.
		if err := db.lockAPIs(ctx, tx); err != nil {
			return err
		}
		var builtin int
		err := tx.QueryRowContext(ctx, "SELECT builtin FROM apis WHERE id = $1"+db.d.forUpdate, id).Scan(&builtin)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: delete api %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: delete api: %w", err)
		}
		if builtin != 0 {
			return fmt.Errorf("sqlstore: delete api %s: %w", id, store.ErrBuiltin)
		}
		if !force {
			var live int64
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE api_id = $1 AND revoked_at IS NULL
				AND (expires_at IS NULL OR expires_at > $2)`, id, ms(now)).Scan(&live); err != nil {
				return fmt.Errorf("sqlstore: delete api: count live tokens: %w", err)
			}
			if live > 0 {
				return fmt.Errorf("sqlstore: delete api %s (%d live tokens): %w", id, live, store.ErrAPIInUse)
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT s.hash FROM token_secrets s JOIN tokens t ON t.id = s.token_id WHERE t.api_id = $1`, id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete api: list secrets: %w", err)
		}
		hashes, err = scanHashes(rows)
		if err != nil {
			return fmt.Errorf("sqlstore: delete api: list secrets: %w", err)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		// Child rows go explicitly rather than by cascade, so that the
		// outcome does not depend on SQLite's foreign_keys pragma. Live
		// tokens deleted here (a forced deletion) are published as revoked.
		for _, q := range []string{
			"DELETE FROM token_usage WHERE token_id IN (SELECT id FROM tokens WHERE api_id = $1)",
			"DELETE FROM token_secrets WHERE token_id IN (SELECT id FROM tokens WHERE api_id = $1)",
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("sqlstore: delete api: %w", err)
			}
		}
		revs, err := tokenRevocations(ctx, tx, now, true, "DELETE FROM tokens WHERE api_id = $1 RETURNING id, api_id, expires_at, revoked_at", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete api: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM apis WHERE id = $1", id); err != nil {
			return fmt.Errorf("sqlstore: delete api: %w", err)
		}
		if err := db.recordRevocations(ctx, tx, revs); err != nil {
			return err
		}
		recorded = len(revs) > 0
		return db.appendAudit(ctx, tx, ev)
	})
	if err == nil && recorded {
		db.revocationsRecorded()
	}
	return hashes, err
}

func scanHashes(rows *sql.Rows) ([]tokenfmt.Hash, error) {
	defer rows.Close()
	var out []tokenfmt.Hash
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var h tokenfmt.Hash
		if len(b) != len(h) {
			return nil, fmt.Errorf("stored hash has %d bytes", len(b))
		}
		copy(h[:], b)
		out = append(out, h)
	}
	return out, rows.Err()
}
