package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Column lists carry a table alias for joins; bare strips it for INSERT
// and RETURNING.
const (
	grantColumns    = "g.id, g.client_id, g.user_id, g.subject, g.api_id, g.scopes, g.auth_time, g.created_at, g.revoked_at, g.revoke_reason"
	refreshColumns  = "r.hash, r.grant_id, r.created_at, r.expires_at, r.used_at, r.retry, r.retry_until"
	authCodeColumns = `c.hash, c.client_id, c.user_id, c.redirect_uri, c.api_id, c.scopes, c.challenge, c.challenge_method,
	c.nonce, c.auth_time, c.created_at, c.expires_at, c.used_at, c.grant_id`
	deviceCodeColumns = `d.hash, d.user_code, d.client_id, d.api_id, d.scopes, d.created_at, d.expires_at, d.interval_ms,
	d.last_polled_at, d.status, d.user_id, d.auth_time, d.grant_id`
)

func bare(columns, alias string) string { return strings.ReplaceAll(columns, alias+".", "") }

var (
	insertGrantSQL    = "INSERT INTO grants (" + bare(grantColumns, "g") + ") VALUES (" + placeholders(1, 10) + ")"
	lockGrantUserSQL  = "SELECT id FROM users WHERE id = $1 FOR KEY SHARE"
	insertRefreshSQL  = "INSERT INTO refresh_tokens (" + bare(refreshColumns, "r") + ") VALUES (" + placeholders(1, 7) + ")"
	insertAuthCodeSQL = "INSERT INTO auth_codes (" + bare(authCodeColumns, "c") + ") VALUES (" + placeholders(1, 14) + ")"
	insertDeviceSQL   = "INSERT INTO device_codes (" + bare(deviceCodeColumns, "d") + ") VALUES (" + placeholders(1, 13) + ")"

	// redeemAuthCodeSQL consumes an unused, unexpired code in one statement:
	// of concurrent redemptions exactly one updates the row.
	redeemAuthCodeSQL = "UPDATE auth_codes SET used_at = $2, grant_id = $3 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING " +
		bare(authCodeColumns, "c")
	getAuthCodeSQL = "SELECT " + authCodeColumns + " FROM auth_codes c WHERE c.hash = $1"

	// rotateRefreshSQL uses an unused, unexpired refresh token in one
	// statement: of concurrent uses exactly one updates the row.
	rotateRefreshSQL = "UPDATE refresh_tokens SET used_at = $2, retry = $3, retry_until = $4 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING " +
		bare(refreshColumns, "r")
	getRefreshSQL = "SELECT " + refreshColumns + " FROM refresh_tokens r WHERE r.hash = $1"

	// lockGrantSQL reads whether a grant is revoked; with the dialect's
	// forUpdate suffix it locks the grant row on PostgreSQL, so issuing
	// tokens from a grant and revoking it are serialised.
	lockGrantSQL = "SELECT revoked_at FROM grants WHERE id = $1"

	deviceByHashSQL     = "SELECT " + deviceCodeColumns + " FROM device_codes d WHERE d.hash = $1"
	deviceByUserCodeSQL = "SELECT " + deviceCodeColumns + " FROM device_codes d WHERE d.user_code = $1"
	updateDeviceSQL     = "UPDATE device_codes SET status = $2, user_id = $3, auth_time = $4, grant_id = $5, last_polled_at = $6, interval_ms = $7 WHERE hash = $1"
)

// The token endpoint runs these on every request of its grants (code
// redemption, device polling, refresh).
func init() {
	hotStatements = append(hotStatements, insertGrantSQL, insertRefreshSQL, redeemAuthCodeSQL, getAuthCodeSQL,
		rotateRefreshSQL, getRefreshSQL, lockGrantSQL, deviceByHashSQL, deviceByUserCodeSQL, updateDeviceSQL)
}

func hashFrom(b []byte) (tokenfmt.Hash, error) {
	var h tokenfmt.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("stored hash has %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

func decodeList(what, src string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(src), &out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return out, nil
}

// nullBytes stores an empty byte slice as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func scanGrant(row rowScanner) (store.Grant, error) {
	var g store.Grant
	var scopes string
	var authTime, created int64
	var revoked sql.NullInt64
	if err := row.Scan(&g.ID, &g.ClientID, &g.UserID, &g.Subject, &g.APIID, &scopes, &authTime, &created, &revoked, &g.RevokeReason); err != nil {
		return g, err
	}
	var err error
	if g.Scopes, err = decodeList("scopes of grant "+g.ID, scopes); err != nil {
		return g, err
	}
	g.AuthTime, g.CreatedAt, g.RevokedAt = fromMS(authTime), fromMS(created), fromNullMS(revoked)
	return g, nil
}

func grantArgs(g *store.Grant) []any {
	return []any{g.ID, g.ClientID, g.UserID, g.Subject, g.APIID, jsonList(g.Scopes), ms(g.AuthTime), ms(g.CreatedAt),
		nullMS(g.RevokedAt), g.RevokeReason}
}

func scanRefresh(row rowScanner, extra ...any) (store.RefreshToken, error) {
	var r store.RefreshToken
	var hash []byte
	var created, expires int64
	var used, retryUntil sql.NullInt64
	if err := row.Scan(append([]any{&hash, &r.GrantID, &created, &expires, &used, &r.Retry, &retryUntil}, extra...)...); err != nil {
		return r, err
	}
	var err error
	if r.Hash, err = hashFrom(hash); err != nil {
		return r, err
	}
	if len(r.Retry) == 0 {
		r.Retry = nil
	}
	r.CreatedAt, r.ExpiresAt = fromMS(created), fromMS(expires)
	r.UsedAt, r.RetryUntil = fromNullMS(used), fromNullMS(retryUntil)
	return r, nil
}

func refreshArgs(r *store.RefreshToken) []any {
	return []any{r.Hash[:], r.GrantID, ms(r.CreatedAt), ms(r.ExpiresAt), nullMS(r.UsedAt), nullBytes(r.Retry), nullMS(r.RetryUntil)}
}

func scanAuthCode(row rowScanner) (store.AuthCode, error) {
	var c store.AuthCode
	var hash []byte
	var scopes string
	var authTime, created, expires int64
	var used sql.NullInt64
	if err := row.Scan(&hash, &c.ClientID, &c.UserID, &c.RedirectURI, &c.APIID, &scopes, &c.Challenge, &c.ChallengeMethod,
		&c.Nonce, &authTime, &created, &expires, &used, &c.GrantID); err != nil {
		return c, err
	}
	var err error
	if c.Hash, err = hashFrom(hash); err != nil {
		return c, err
	}
	if c.Scopes, err = decodeList("scopes of authorization code", scopes); err != nil {
		return c, err
	}
	c.AuthTime, c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMS(authTime), fromMS(created), fromMS(expires), fromNullMS(used)
	return c, nil
}

func scanDeviceCode(row rowScanner) (store.DeviceCode, error) {
	var d store.DeviceCode
	var hash []byte
	var scopes string
	var created, expires, interval int64
	var polled, authTime sql.NullInt64
	if err := row.Scan(&hash, &d.UserCode, &d.ClientID, &d.APIID, &scopes, &created, &expires, &interval,
		&polled, &d.Status, &d.UserID, &authTime, &d.GrantID); err != nil {
		return d, err
	}
	var err error
	if d.Hash, err = hashFrom(hash); err != nil {
		return d, err
	}
	if d.Scopes, err = decodeList("scopes of device code", scopes); err != nil {
		return d, err
	}
	d.CreatedAt, d.ExpiresAt = fromMS(created), fromMS(expires)
	d.Interval = time.Duration(interval) * time.Millisecond
	d.LastPolledAt, d.AuthTime = fromNullMS(polled), fromNullMS(authTime)
	return d, nil
}

// CreateAuthCode implements store.GrantStore.
func (db *DB) CreateAuthCode(ctx context.Context, c store.AuthCode) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.txExec(ctx, tx, insertAuthCodeSQL, c.Hash[:], c.ClientID, c.UserID, c.RedirectURI, c.APIID, jsonList(c.Scopes),
			c.Challenge, c.ChallengeMethod, c.Nonce, ms(c.AuthTime), ms(c.CreatedAt), ms(c.ExpiresAt), nullMS(c.UsedAt), c.GrantID)
		return db.wrapUnique(err, "create authorization code")
	})
}

// RedeemAuthCode implements store.GrantStore. A code expires at its
// ExpiresAt: redeeming it at that instant is ErrNotFound. The grant keeps
// the ID, ClientID and CreatedAt of g.
func (db *DB) RedeemAuthCode(ctx context.Context, h tokenfmt.Hash, g store.Grant, now time.Time, ev store.AuditEvent) (store.AuthCode, error) {
	var out store.AuthCode
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		c, err := scanAuthCode(db.txQueryRow(ctx, tx, redeemAuthCodeSQL, h[:], ms(now), g.ID))
		if errors.Is(err, sql.ErrNoRows) {
			// Not consumed: find out why, changing nothing.
			c, err = scanAuthCode(db.txQueryRow(ctx, tx, getAuthCodeSQL, h[:]))
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("sqlstore: redeem authorization code: %w", store.ErrNotFound)
			case err != nil:
				return fmt.Errorf("sqlstore: redeem authorization code: %w", err)
			case !c.UsedAt.IsZero():
				out = c
				return fmt.Errorf("sqlstore: redeem authorization code: %w", store.ErrUsed)
			}
			return fmt.Errorf("sqlstore: redeem authorization code: expired: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: redeem authorization code: %w", err)
		}
		g.UserID, g.Subject, g.APIID, g.Scopes, g.AuthTime = c.UserID, c.UserID, c.APIID, c.Scopes, c.AuthTime
		if err := db.insertGrant(ctx, tx, &g); err != nil {
			return db.wrapUnique(err, "redeem authorization code: create grant")
		}
		out = c
		return db.appendAudit(ctx, tx, ev)
	})
	if err != nil && !errors.Is(err, store.ErrUsed) {
		return store.AuthCode{}, err
	}
	return out, err
}

// CreateDeviceCode implements store.GrantStore.
func (db *DB) CreateDeviceCode(ctx context.Context, d store.DeviceCode) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.txExec(ctx, tx, insertDeviceSQL, d.Hash[:], d.UserCode, d.ClientID, d.APIID, jsonList(d.Scopes),
			ms(d.CreatedAt), ms(d.ExpiresAt), d.Interval.Milliseconds(), nullMS(d.LastPolledAt), d.Status, d.UserID,
			nullMS(d.AuthTime), d.GrantID)
		return db.wrapUnique(err, "create device code")
	})
}

// GetDeviceCodeByUserCode implements store.GrantStore.
func (db *DB) GetDeviceCodeByUserCode(ctx context.Context, userCode string) (store.DeviceCode, error) {
	// The user code is not repeated in an error: it is untrusted input.
	return getOne(ctx, db, scanDeviceCode, "get device code", "", deviceByUserCodeSQL, userCode)
}

// UpdateDeviceCode implements store.GrantStore. Only the state of the
// authorization is written back: Status, UserID, AuthTime, GrantID,
// LastPolledAt and Interval. An error from update is returned unwrapped.
func (db *DB) UpdateDeviceCode(ctx context.Context, h tokenfmt.Hash, userCode string, update func(*store.DeviceCode) (*store.Grant, error), ev store.AuditEvent) (store.DeviceCode, error) {
	var out store.DeviceCode
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var row *sql.Row
		if h != (tokenfmt.Hash{}) {
			row = db.txQueryRow(ctx, tx, deviceByHashSQL+db.d.forUpdate, h[:])
		} else {
			row = db.txQueryRow(ctx, tx, deviceByUserCodeSQL+db.d.forUpdate, userCode)
		}
		d, err := scanDeviceCode(row)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: update device code: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update device code: %w", err)
		}
		key := d.Hash
		g, err := update(&d)
		if err != nil {
			return err
		}
		if _, err := db.txExec(ctx, tx, updateDeviceSQL, key[:], d.Status, d.UserID, nullMS(d.AuthTime), d.GrantID,
			nullMS(d.LastPolledAt), d.Interval.Milliseconds()); err != nil {
			return fmt.Errorf("sqlstore: update device code: %w", err)
		}
		if g != nil {
			if err := db.insertGrant(ctx, tx, g); err != nil {
				return db.wrapUnique(err, "update device code: create grant")
			}
		}
		out = d
		return db.appendAudit(ctx, tx, ev)
	})
	return out, err
}

// insertGrant stores a new grant inside tx. On PostgreSQL it first takes a
// key share lock on the grant's user, as a foreign key would, so that it
// waits for a change of that user in flight (UpdateUserRevokingGrants,
// which locks the user's row and then revokes the grants it sees): either
// this grant commits first and is revoked with the others, or the change
// does, and the caller, reading the user after this commits, sees it (as
// oauth's issueForGrant does). Without it a grant committed while a
// disable was between its revocations and its commit was seen by neither.
// The codes are locked before the user: DeleteUser deletes them before it
// locks the user.
func (db *DB) insertGrant(ctx context.Context, tx *sql.Tx, g *store.Grant) error {
	if db.d.name == "postgres" {
		var id string
		err := db.txQueryRow(ctx, tx, lockGrantUserSQL, g.UserID).Scan(&id)
		if err != nil && !errors.Is(err, sql.ErrNoRows) { // no user: issueForGrant refuses the grant
			return fmt.Errorf("lock the user of the grant: %w", err)
		}
	}
	_, err := db.txExec(ctx, tx, insertGrantSQL, grantArgs(g)...)
	return err
}

// GetGrant implements store.GrantStore.
func (db *DB) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return getOne(ctx, db, scanGrant, "get grant", id, "SELECT "+grantColumns+" FROM grants g WHERE g.id = $1", id)
}

// ListGrants implements store.GrantStore. Revoked grants are included.
func (db *DB) ListGrants(ctx context.Context, userID string) ([]store.Grant, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT "+grantColumns+" FROM grants g WHERE g.user_id = $1 ORDER BY g.id DESC", userID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list grants: %w", err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list grants: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list grants: %w", err)
	}
	return out, nil
}

// lockLiveGrant locks grant id inside tx (on PostgreSQL) and checks that
// it exists and is not revoked.
func (db *DB) lockLiveGrant(ctx context.Context, tx *sql.Tx, id string) error {
	var revoked sql.NullInt64
	err := db.txQueryRow(ctx, tx, lockGrantSQL+db.d.forUpdate, id).Scan(&revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlstore: grant %s: %w", id, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("sqlstore: read grant: %w", err)
	case revoked.Valid:
		return fmt.Errorf("sqlstore: grant %s: %w", id, store.ErrRevoked)
	}
	return nil
}

// insertGrantTokens stores an access token and/or a refresh token of
// grant grantID inside tx.
func (db *DB) insertGrantTokens(ctx context.Context, tx *sql.Tx, grantID string, access *store.Token, accessHash tokenfmt.Hash, refresh *store.RefreshToken) error {
	if access != nil {
		if access.GrantID != grantID {
			return fmt.Errorf("sqlstore: access token %s is not of grant %s", access.ID, grantID)
		}
		if _, err := db.txExec(ctx, tx, insertTokenSQL, tokenArgs(access)...); err != nil {
			return db.wrapUnique(err, "create access token")
		}
		if _, err := db.txExec(ctx, tx, insertSecretSQL, accessHash[:], access.ID); err != nil {
			return db.wrapUnique(err, "create access token secret")
		}
	}
	if refresh != nil {
		if refresh.GrantID != grantID {
			return fmt.Errorf("sqlstore: refresh token is not of grant %s", grantID)
		}
		if _, err := db.txExec(ctx, tx, insertRefreshSQL, refreshArgs(refresh)...); err != nil {
			return db.wrapUnique(err, "create refresh token")
		}
	}
	return nil
}

// IssueGrantTokens implements store.GrantStore. The tokens' GrantID must be
// grantID. A missing grant is ErrNotFound.
func (db *DB) IssueGrantTokens(ctx context.Context, grantID string, access *store.Token, accessHash tokenfmt.Hash, refresh *store.RefreshToken) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lockLiveGrant(ctx, tx, grantID); err != nil {
			return err
		}
		return db.insertGrantTokens(ctx, tx, grantID, access, accessHash, refresh)
	})
}

// GetRefreshToken implements store.GrantStore.
func (db *DB) GetRefreshToken(ctx context.Context, h tokenfmt.Hash) (store.RefreshToken, store.Grant, error) {
	var g store.Grant
	var scopes string
	var authTime, created int64
	var revoked sql.NullInt64
	r, err := scanRefresh(db.queryRow(ctx, "SELECT "+refreshColumns+", "+grantColumns+" FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.hash = $1", h[:]),
		&g.ID, &g.ClientID, &g.UserID, &g.Subject, &g.APIID, &scopes, &authTime, &created, &revoked, &g.RevokeReason)
	if errors.Is(err, sql.ErrNoRows) {
		return r, g, fmt.Errorf("sqlstore: get refresh token: %w", store.ErrNotFound)
	}
	if err != nil {
		return r, g, fmt.Errorf("sqlstore: get refresh token: %w", err)
	}
	if g.Scopes, err = decodeList("scopes of grant "+g.ID, scopes); err != nil {
		return r, g, fmt.Errorf("sqlstore: get refresh token: %w", err)
	}
	g.AuthTime, g.CreatedAt, g.RevokedAt = fromMS(authTime), fromMS(created), fromNullMS(revoked)
	return r, g, nil
}

// RotateRefreshToken implements store.GrantStore. A token expires at its
// ExpiresAt: using it at that instant is ErrNotFound. A used token is
// ErrUsed even after it expired, so that late reuse is still detected. The
// GrantID of next and access must be the grant of old.
func (db *DB) RotateRefreshToken(ctx context.Context, old tokenfmt.Hash, next store.RefreshToken, access *store.Token, accessHash tokenfmt.Hash, retry []byte, retryUntil, now time.Time) (store.RefreshToken, error) {
	var out store.RefreshToken
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := scanRefresh(db.txQueryRow(ctx, tx, rotateRefreshSQL, old[:], ms(now), nullBytes(retry), nullMS(retryUntil)))
		if errors.Is(err, sql.ErrNoRows) {
			// Not used now: find out why, changing nothing.
			r, err = scanRefresh(db.txQueryRow(ctx, tx, getRefreshSQL, old[:]))
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("sqlstore: rotate refresh token: %w", store.ErrNotFound)
			case err != nil:
				return fmt.Errorf("sqlstore: rotate refresh token: %w", err)
			case !r.UsedAt.IsZero():
				out = r
				return fmt.Errorf("sqlstore: rotate refresh token: %w", store.ErrUsed)
			}
			return fmt.Errorf("sqlstore: rotate refresh token: expired: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: rotate refresh token: %w", err)
		}
		// The refresh token row is locked first, then the grant row, as in
		// DeleteClient: no lock cycle with it.
		if err := db.lockLiveGrant(ctx, tx, r.GrantID); err != nil {
			return err
		}
		if err := db.insertGrantTokens(ctx, tx, r.GrantID, access, accessHash, &next); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrUsed) {
		return store.RefreshToken{}, err
	}
	return out, err
}

// liveGrantTokensSQL selects the unrevoked access tokens of grant $1. The
// grant_id <> ” condition lets both engines use the partial index
// tokens_grant_idx.
const liveGrantTokensSQL = "SELECT id FROM tokens WHERE grant_id <> '' AND grant_id = $1 AND revoked_at IS NULL"

// RevokeGrant implements store.GrantStore. Revoking a revoked grant changes
// nothing, returns no hashes and records no audit event.
func (db *DB) RevokeGrant(ctx context.Context, id, reason string, now time.Time, ev store.AuditEvent) ([]tokenfmt.Hash, error) {
	var hashes []tokenfmt.Hash
	var recorded bool
	now = fromMS(ms(now))
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		err := db.lockLiveGrant(ctx, tx, id)
		if errors.Is(err, store.ErrRevoked) {
			return nil // already revoked: nothing changes, nothing to audit
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id IN ("+liveGrantTokensSQL+") ORDER BY hash", id)
		if err != nil {
			return fmt.Errorf("sqlstore: revoke grant: list secrets: %w", err)
		}
		if hashes, err = scanHashes(rows); err != nil {
			return fmt.Errorf("sqlstore: revoke grant: list secrets: %w", err)
		}
		toks, err := tokenRevocations(ctx, tx, now, false, "UPDATE tokens SET revoked_at = $2, revoke_reason = $3, updated_at = $2 WHERE id IN ("+liveGrantTokensSQL+") RETURNING id, api_id, expires_at",
			id, ms(now), reason)
		if err != nil {
			return fmt.Errorf("sqlstore: revoke grant: revoke tokens: %w", err)
		}
		var apiID string
		if err := tx.QueryRowContext(ctx, "UPDATE grants SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 RETURNING api_id",
			id, ms(now), reason).Scan(&apiID); err != nil {
			return fmt.Errorf("sqlstore: revoke grant: %w", err)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		revs := append([]store.Revocation{grantRevocation(id, apiID, now)}, toks...)
		if err := db.recordRevocations(ctx, tx, revs); err != nil {
			return err
		}
		recorded = true
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

// purgeGrantsSQL are the steps of PurgeGrants, each deleting at most $2
// rows older than the cutoff $1. Refresh tokens of grants revoked before the
// cutoff go before their grants, and a grant goes only once it has none
// left, so a batch never deletes more rows than it counts. The steps of
// codes and refresh tokens return their grants (” for a code never
// redeemed), which may be spent without them: every grant comes from a
// code, so even one that never held a token (a JWT client's without
// refresh tokens) is looked at once.
var purgeGrantsSQL = []string{
	"DELETE FROM auth_codes WHERE hash IN (SELECT hash FROM auth_codes WHERE expires_at < $1 LIMIT $2) RETURNING grant_id",
	"DELETE FROM device_codes WHERE hash IN (SELECT hash FROM device_codes WHERE expires_at < $1 LIMIT $2) RETURNING grant_id",
	`DELETE FROM refresh_tokens WHERE hash IN (SELECT hash FROM refresh_tokens WHERE expires_at < $1 OR used_at < $1
		OR grant_id IN (SELECT id FROM grants WHERE revoked_at < $1) LIMIT $2) RETURNING grant_id`,
	`DELETE FROM grants WHERE id IN (SELECT g.id FROM grants g WHERE g.revoked_at < $1
		AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id) LIMIT $2)`,
}

// PurgeGrants implements store.GrantStore. Authorization and device codes go
// when expired before cutoff, refresh tokens when expired or used before
// cutoff or when their grant was revoked before cutoff, and grants when
// revoked before cutoff, or spent (purgeSpentGrants) once this purge of
// their codes or refresh tokens is done. Their opaque access tokens were
// revoked with them and are purged by PurgeTokens.
func (db *DB) PurgeGrants(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	var n int
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n = 0
		var candidates []any
		for _, q := range purgeGrantsSQL {
			if n >= limit {
				break
			}
			var k int
			if strings.HasSuffix(q, "RETURNING grant_id") {
				ids, err := queryStrings(ctx, tx, q, ms(cutoff), limit-n)
				if err != nil {
					return fmt.Errorf("sqlstore: purge grants: %w", err)
				}
				candidates = appendNew(candidates, ids...)
				k = len(ids)
			} else {
				res, err := db.txExec(ctx, tx, q, ms(cutoff), limit-n)
				if err != nil {
					return fmt.Errorf("sqlstore: purge grants: %w", err)
				}
				affected, err := res.RowsAffected()
				if err != nil {
					return fmt.Errorf("sqlstore: purge grants: %w", err)
				}
				k = int(affected)
			}
			n += k
		}
		k, err := db.purgeSpentGrants(ctx, tx, candidates)
		n += k
		return err
	})
	return n, err
}

// purgeSpentGrants deletes, among the grants candidates (whose tokens the
// caller has just purged), those left with nothing: not revoked, no refresh
// token, no opaque access token. Nothing can be issued from such a grant
// any more, so without this every sign-in would leave a row behind for
// ever; a JWT access token it issued is checked by its jti and sid,
// without the grant. Revoked grants go their own way, after the cutoff
// (purgeGrantsSQL).
//
// The caller holds the rows it purged, and the grant comes after them,
// where revocations and deletions lock a grant before its tokens: waiting
// for a grant here could close a cycle, so on PostgreSQL a grant another
// transaction holds is skipped. Whoever holds it is revoking or deleting
// it, or issuing from it, which a spent grant cannot do.
func (db *DB) purgeSpentGrants(ctx context.Context, tx *sql.Tx, candidates []any) (int, error) {
	if len(candidates) == 0 {
		return 0, nil
	}
	res, err := db.txExec(ctx, tx, `DELETE FROM grants WHERE id IN (SELECT g.id FROM grants g WHERE g.id IN (`+placeholders(1, len(candidates))+`)
		AND g.revoked_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id)
		AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.grant_id <> '' AND t.grant_id = g.id)`+db.d.skipLocked+`)`, candidates...)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge spent grants: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge spent grants: %w", err)
	}
	return int(n), nil
}

// queryStrings runs q in tx and returns the one text column of its rows.
func queryStrings(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// appendNew appends to list each of vs it does not hold yet.
func appendNew(list []any, vs ...string) []any {
	for _, v := range vs {
		if v != "" && !slices.Contains(list, any(v)) {
			list = append(list, v)
		}
	}
	return list
}
