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

const clientColumns = `id, name, type, grant_types, redirect_uris, apis, scopes, token_format, signing_alg,
	access_token_ttl_ms, refresh_token_ttl_ms, auth_method, jwks, jwks_uri, secret_hint, disabled_at, created_at, updated_at,
	post_logout_redirect_uris`

var insertClientSQL = "INSERT INTO clients (" + clientColumns + ") VALUES (" + placeholders(1, 19) + ")"

const (
	updateClientSQL = `UPDATE clients SET name = $2, type = $3, grant_types = $4, redirect_uris = $5, apis = $6, scopes = $7,
	token_format = $8, signing_alg = $9, access_token_ttl_ms = $10, refresh_token_ttl_ms = $11, auth_method = $12, jwks = $13,
	jwks_uri = $14, secret_hint = $15, disabled_at = $16, created_at = $17, updated_at = $18, post_logout_redirect_uris = $19
	WHERE id = $1`
	insertClientSecretSQL = "INSERT INTO client_secrets (hash, client_id, expires_at) VALUES ($1, $2, NULL)"
)

func scanClient(row rowScanner) (store.Client, error) {
	var c store.Client
	var grantTypes, redirectURIs, apis, scopes, jwks, postLogout string
	var accessTTL, refreshTTL, created, updated int64
	var disabled sql.NullInt64
	if err := row.Scan(&c.ID, &c.Name, &c.Type, &grantTypes, &redirectURIs, &apis, &scopes, &c.TokenFormat, &c.SigningAlg,
		&accessTTL, &refreshTTL, &c.AuthMethod, &jwks, &c.JWKSURI, &c.SecretHint, &disabled, &created, &updated, &postLogout); err != nil {
		return c, err
	}
	for _, l := range []struct {
		name string
		src  string
		dst  *[]string
	}{
		{"grant_types", grantTypes, &c.GrantTypes},
		{"redirect_uris", redirectURIs, &c.RedirectURIs},
		{"apis", apis, &c.APIs},
		{"scopes", scopes, &c.Scopes},
		{"post_logout_redirect_uris", postLogout, &c.PostLogoutRedirectURIs},
	} {
		if err := json.Unmarshal([]byte(l.src), l.dst); err != nil {
			return c, fmt.Errorf("decode %s of client %s: %w", l.name, c.ID, err)
		}
	}
	if jwks != "" {
		c.JWKS = json.RawMessage(jwks)
	}
	c.AccessTokenTTL = time.Duration(accessTTL) * time.Millisecond
	c.RefreshTokenTTL = time.Duration(refreshTTL) * time.Millisecond
	c.DisabledAt = fromNullMS(disabled)
	c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
	return c, nil
}

// clientArgs returns the values of every column, in clientColumns order.
func clientArgs(c *store.Client) []any {
	return []any{c.ID, c.Name, c.Type, jsonList(c.GrantTypes), jsonList(c.RedirectURIs), jsonList(c.APIs), jsonList(c.Scopes),
		c.TokenFormat, c.SigningAlg, c.AccessTokenTTL.Milliseconds(), c.RefreshTokenTTL.Milliseconds(), c.AuthMethod,
		string(c.JWKS), c.JWKSURI, c.SecretHint, nullMS(c.DisabledAt), ms(c.CreatedAt), ms(c.UpdatedAt), jsonList(c.PostLogoutRedirectURIs)}
}

// CreateClient implements store.ClientStore.
func (db *DB) CreateClient(ctx context.Context, c store.Client, secret *tokenfmt.Hash, ev store.AuditEvent) error {
	return db.announcing(ctx, changeClients, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := db.txExec(ctx, tx, insertClientSQL, clientArgs(&c)...); err != nil {
			return db.wrapUnique(err, "create client")
		}
		if secret != nil {
			if _, err := db.txExec(ctx, tx, insertClientSecretSQL, secret[:], c.ID); err != nil {
				return db.wrapUnique(err, "create client secret")
			}
		}
		return db.appendAudit(ctx, tx, ev)
	})
}

// GetClient implements store.ClientStore.
func (db *DB) GetClient(ctx context.Context, id string) (store.Client, error) {
	return getOne(ctx, db, scanClient, "get client", id, "SELECT "+clientColumns+" FROM clients WHERE id = $1", id)
}

// ListClients implements store.ClientStore. IDs sort by creation time, so
// the cursor is the ID of the last client of a page.
func (db *DB) ListClients(ctx context.Context, after string, limit int) ([]store.Client, string, error) {
	where, args := afterID("id", after)
	return listPage(ctx, db, "clients", "SELECT "+clientColumns+" FROM clients"+where, "id", args, limit,
		scanClient, func(c *store.Client) string { return c.ID })
}

// lockClient reads a client for update inside tx.
func (db *DB) lockClient(ctx context.Context, tx *sql.Tx, id string) (store.Client, error) {
	c, err := scanClient(db.txQueryRow(ctx, tx, "SELECT "+clientColumns+" FROM clients WHERE id = $1"+db.d.forUpdate, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("sqlstore: client %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("sqlstore: read client: %w", err)
	}
	return c, nil
}

// UpdateClient implements store.ClientStore.
func (db *DB) UpdateClient(ctx context.Context, id string, update func(*store.Client) error, ev store.AuditEvent) (store.Client, error) {
	var out store.Client
	err := db.announcing(ctx, changeClients, func(ctx context.Context, tx *sql.Tx) error {
		c, err := db.lockClient(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := update(&c); err != nil {
			return err
		}
		c.ID = id
		if _, err := db.txExec(ctx, tx, updateClientSQL, clientArgs(&c)...); err != nil {
			return db.wrapUnique(err, "update client")
		}
		out = c
		return db.appendAudit(ctx, tx, ev)
	})
	return out, err
}

// clientTokensSQL selects the opaque access tokens issued to client $1. The
// client_id <> ” condition lets both engines use the partial index
// tokens_client_idx.
const clientTokensSQL = "SELECT id FROM tokens WHERE client_id <> '' AND client_id = $1"

// DeleteClient implements store.ClientStore.
//
// On PostgreSQL the rows go in the order the token endpoint locks them:
// refresh tokens, grants, codes, then the client row, whose deletion
// cascades to any grant a concurrent redemption committed meanwhile and
// makes later ones fail; the access tokens go last, so that those issued by
// a concurrent call that committed first are deleted (and published) too.
// The client row is not locked up front: storing a grant takes a key share
// lock on it while holding the code or device code, and waiting for that
// lock here while deleting the codes would deadlock.
func (db *DB) DeleteClient(ctx context.Context, id string, ev store.AuditEvent) ([]tokenfmt.Hash, error) {
	var hashes []tokenfmt.Hash
	var recorded bool
	now := fromMS(ms(eventTime(ev)))
	err := db.announcing(ctx, changeClients, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		var apis string
		err := db.txQueryRow(ctx, tx, "SELECT apis FROM clients WHERE id = $1", id).Scan(&apis)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: delete client %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		apiIDs, err := decodeList("apis of client "+id, apis)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		// Child rows go explicitly rather than by cascade, so that the
		// outcome does not depend on SQLite's foreign_keys pragma.
		if _, err := db.txExec(ctx, tx, "DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE client_id = $1)", id); err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		// Live grants deleted here are published as revoked, for the JWT
		// access tokens issued from them.
		revs, err := grantRevocations(ctx, tx, now, true, "DELETE FROM grants WHERE client_id = $1 RETURNING id, api_id, revoked_at", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		for _, q := range []string{
			"DELETE FROM auth_codes WHERE client_id = $1",
			"DELETE FROM device_codes WHERE client_id = $1",
			"DELETE FROM consents WHERE client_id = $1",
			"DELETE FROM client_secrets WHERE client_id = $1",
		} {
			if _, err := db.txExec(ctx, tx, q, id); err != nil {
				return fmt.Errorf("sqlstore: delete client: %w", err)
			}
		}
		res, err := db.txExec(ctx, tx, "DELETE FROM clients WHERE id = $1", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		} else if n == 0 {
			// A concurrent call deleted it meanwhile.
			return fmt.Errorf("sqlstore: delete client %s: %w", id, store.ErrNotFound)
		}
		rows, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id IN ("+clientTokensSQL+") ORDER BY hash", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: list secrets: %w", err)
		}
		if hashes, err = scanHashes(rows); err != nil {
			return fmt.Errorf("sqlstore: delete client: list secrets: %w", err)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		for _, q := range []string{
			"DELETE FROM token_usage WHERE token_id IN (" + clientTokensSQL + ")",
			"DELETE FROM token_secrets WHERE token_id IN (" + clientTokensSQL + ")",
		} {
			if _, err := db.txExec(ctx, tx, q, id); err != nil {
				return fmt.Errorf("sqlstore: delete client: %w", err)
			}
		}
		toks, err := tokenRevocations(ctx, tx, now, true, "DELETE FROM tokens WHERE id IN ("+clientTokensSQL+") RETURNING id, api_id, expires_at, revoked_at", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		revs = append(revs, toks...)
		// And the client itself, for its JWT access tokens of no grant.
		for _, api := range apiIDs {
			revs = append(revs, store.Revocation{Kind: store.RevocationClient, Ref: id, APIID: api, RevokedAt: now, ExpiresAt: now.Add(store.RevocationTTL)})
		}
		if err := db.recordRevocations(ctx, tx, revs); err != nil {
			return err
		}
		recorded = len(revs) > 0
		return db.appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return nil, err
	}
	if recorded {
		db.revocationsRecorded()
	}
	return hashes, nil
}

// ClientSecrets implements store.ClientStore. The current secret comes
// first; an unknown client has no secrets.
func (db *DB) ClientSecrets(ctx context.Context, clientID string) ([]store.Secret, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT hash, expires_at FROM client_secrets WHERE client_id = $1 ORDER BY COALESCE(expires_at, 0), hash", clientID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: client secrets: %w", err)
	}
	defer rows.Close()
	var out []store.Secret
	for rows.Next() {
		var b []byte
		var expires sql.NullInt64
		if err := rows.Scan(&b, &expires); err != nil {
			return nil, fmt.Errorf("sqlstore: client secrets: %w", err)
		}
		var s store.Secret
		if len(b) != len(s.Hash) {
			return nil, fmt.Errorf("sqlstore: client secrets: stored hash has %d bytes", len(b))
		}
		copy(s.Hash[:], b)
		s.ExpiresAt = fromNullMS(expires)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: client secrets: %w", err)
	}
	return out, nil
}

// RotateClientSecret implements store.ClientStore.
func (db *DB) RotateClientSecret(ctx context.Context, id string, next tokenfmt.Hash, hint string, graceUntil, now time.Time, ev store.AuditEvent) (store.Client, error) {
	var out store.Client
	err := db.announcing(ctx, changeClients, func(ctx context.Context, tx *sql.Tx) error {
		c, err := db.lockClient(ctx, tx, id)
		if err != nil {
			return err
		}
		// Older rotated-out secrets go; the current one becomes the
		// previous one, valid until graceUntil (or dropped if no grace).
		if _, err := db.txExec(ctx, tx, "DELETE FROM client_secrets WHERE client_id = $1 AND expires_at IS NOT NULL", id); err != nil {
			return fmt.Errorf("sqlstore: rotate client secret: %w", err)
		}
		if graceUntil.After(now) {
			_, err = db.txExec(ctx, tx, "UPDATE client_secrets SET expires_at = $2 WHERE client_id = $1 AND expires_at IS NULL", id, ms(graceUntil))
		} else {
			_, err = db.txExec(ctx, tx, "DELETE FROM client_secrets WHERE client_id = $1", id)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: rotate client secret: %w", err)
		}
		if _, err := db.txExec(ctx, tx, insertClientSecretSQL, next[:], id); err != nil {
			return db.wrapUnique(err, "rotate client secret")
		}
		c.SecretHint, c.UpdatedAt = hint, fromMS(ms(now))
		if _, err := db.txExec(ctx, tx, "UPDATE clients SET secret_hint = $2, updated_at = $3 WHERE id = $1", id, hint, ms(now)); err != nil {
			return fmt.Errorf("sqlstore: rotate client secret: %w", err)
		}
		out = c
		return db.appendAudit(ctx, tx, ev)
	})
	return out, err
}

// ClientOfSecret implements store.ClientStore.
func (db *DB) ClientOfSecret(ctx context.Context, h tokenfmt.Hash) (string, error) {
	var id string
	err := db.queryRow(ctx, "SELECT client_id FROM client_secrets WHERE hash = $1", h[:]).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlstore: client of secret: %w", store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: client of secret: %w", err)
	}
	return id, nil
}

// RevokeClientSecret implements store.ClientStore.
func (db *DB) RevokeClientSecret(ctx context.Context, id string, h tokenfmt.Hash, now time.Time, ev store.AuditEvent) (store.Client, bool, error) {
	var out store.Client
	var changed bool
	now = fromMS(ms(now))
	err := db.announcing(ctx, changeClients, func(ctx context.Context, tx *sql.Tx) error {
		changed = false
		// The client row is locked before its secrets change, as in
		// RotateClientSecret.
		c, err := db.lockClient(ctx, tx, id)
		if err != nil {
			return err
		}
		out = c
		var expires sql.NullInt64
		err = db.txQueryRow(ctx, tx, "SELECT expires_at FROM client_secrets WHERE hash = $1 AND client_id = $2", h[:], id).Scan(&expires)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: revoke client secret: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: revoke client secret: %w", err)
		}
		if expires.Valid && expires.Int64 <= ms(now) {
			return nil // its grace is over: nothing to do
		}
		if _, err := db.txExec(ctx, tx, "DELETE FROM client_secrets WHERE hash = $1", h[:]); err != nil {
			return fmt.Errorf("sqlstore: revoke client secret: %w", err)
		}
		if !expires.Valid { // the current secret: the hint named it
			if _, err := db.txExec(ctx, tx, "UPDATE clients SET secret_hint = '', updated_at = $2 WHERE id = $1", id, ms(now)); err != nil {
				return fmt.Errorf("sqlstore: revoke client secret: %w", err)
			}
			out.SecretHint, out.UpdatedAt = "", now
		}
		changed = true
		return db.appendAudit(ctx, tx, ev)
	})
	return out, changed, err
}

// useAssertionSQL records an assertion id, or records it anew over an id
// whose time ended at or before $3; a live id is left as it is, and no row
// changes.
const useAssertionSQL = `INSERT INTO client_assertions (id, expires_at) VALUES ($1, $2)
	ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at WHERE client_assertions.expires_at <= $3`

// UseClientAssertion implements store.ClientStore. One conditional upsert:
// of concurrent uses of one id, on any number of nodes, one changes a row.
// expiresAt is kept rounded up to the millisecond, so that an id is never
// forgotten before it.
func (db *DB) UseClientAssertion(ctx context.Context, id tokenfmt.Hash, expiresAt, now time.Time) error {
	until := expiresAt.UnixMilli()
	if expiresAt.After(time.UnixMilli(until)) {
		until++
	}
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, useAssertionSQL, id[:], until, ms(now))
		if err != nil {
			return fmt.Errorf("sqlstore: use client assertion: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: use client assertion: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("sqlstore: use client assertion: %w", store.ErrUsed)
		}
		return nil
	})
}

// PurgeClientAssertions implements store.ClientStore.
func (db *DB) PurgeClientAssertions(ctx context.Context, now time.Time, limit int) (int, error) {
	return db.purge(ctx, "client assertions", "DELETE FROM client_assertions WHERE id IN (SELECT id FROM client_assertions WHERE expires_at <= $1 LIMIT $2)", ms(now), limit)
}
