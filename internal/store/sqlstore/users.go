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

const userColumns = "id, username, email, password_hash, disabled_at, created_at, updated_at, sessions_ended_at"

func scanUser(row rowScanner) (store.User, error) {
	var u store.User
	var disabled, sessionsEnded sql.NullInt64
	var created, updated int64
	if err := row.Scan(&u.ID, &u.Username, &u.Email, &u.PasswordHash, &disabled, &created, &updated, &sessionsEnded); err != nil {
		return u, err
	}
	u.DisabledAt, u.SessionsEndedAt = fromNullMS(disabled), fromNullMS(sessionsEnded)
	u.CreatedAt, u.UpdatedAt = fromMS(created), fromMS(updated)
	return u, nil
}

// CreateUser implements store.UserStore.
func (db *DB) CreateUser(ctx context.Context, u store.User, ev store.AuditEvent) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.txExec(ctx, tx, "INSERT INTO users ("+userColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			u.ID, u.Username, u.Email, u.PasswordHash, nullMS(u.DisabledAt), ms(u.CreatedAt), ms(u.UpdatedAt), nullMS(u.SessionsEndedAt))
		if err != nil {
			return db.wrapUnique(err, "create user")
		}
		return db.appendAudit(ctx, tx, ev)
	})
}

// GetUser implements store.UserStore.
func (db *DB) GetUser(ctx context.Context, id string) (store.User, error) {
	return getOne(ctx, db, scanUser, "get user", id, "SELECT "+userColumns+" FROM users WHERE id = $1", id)
}

// GetUserByUsername implements store.UserStore. The match is exact: callers
// pass the lower-case form.
func (db *DB) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	// The username is not repeated in an error: it is untrusted input.
	return getOne(ctx, db, scanUser, "get user by username", "", "SELECT "+userColumns+" FROM users WHERE username = $1", username)
}

// ListUsers implements store.UserStore.
func (db *DB) ListUsers(ctx context.Context, after string, limit int) ([]store.User, string, error) {
	where, args := afterID("id", after)
	return listPage(ctx, db, "users", "SELECT "+userColumns+" FROM users"+where, "id", args, limit,
		scanUser, func(u *store.User) string { return u.ID })
}

// UpdateUser implements store.UserStore.
func (db *DB) UpdateUser(ctx context.Context, id string, update func(*store.User) error, ev store.AuditEvent) (store.User, error) {
	u, _, err := db.updateUser(ctx, id, update, ev, "", nil)
	return u, err
}

// UpdateUserRevokingGrants implements store.UserStore.
func (db *DB) UpdateUserRevokingGrants(ctx context.Context, id string, update func(*store.User) error, ev store.AuditEvent,
	reason string, grantEvent func(store.Grant) store.AuditEvent) (store.User, []tokenfmt.Hash, error) {
	if reason == "" || grantEvent == nil {
		return store.User{}, nil, errors.New("sqlstore: update user revoking grants: no reason or no grant event")
	}
	return db.updateUser(ctx, id, update, ev, reason, grantEvent)
}

// userLiveTokensSQL selects the live opaque access tokens issued from the
// grants of user $1.
const userLiveTokensSQL = `SELECT id FROM tokens WHERE grant_id <> '' AND revoked_at IS NULL
	AND grant_id IN (SELECT id FROM grants WHERE user_id = $1)`

// updateUser is UpdateUser and, when reason is not "", also revokes in
// the same transaction every live grant of the user and the opaque access
// tokens issued from them, appending grantEvent(g) for each grant after
// ev.
//
// On PostgreSQL the user's row is locked first and their grants second.
// A redemption storing a grant for the user takes a key share lock on the
// user's row first (insertGrant), and so either commits before, and its
// grant is revoked here, or after this commits, and the token endpoint,
// reading the user, sees the change (oauth's issueForGrant). A refresh
// locks its refresh token and then the grant, never the user, so it
// cannot deadlock with this.
func (db *DB) updateUser(ctx context.Context, id string, update func(*store.User) error, ev store.AuditEvent,
	reason string, grantEvent func(store.Grant) store.AuditEvent) (store.User, []tokenfmt.Hash, error) {
	var out store.User
	var hashes []tokenfmt.Hash
	var recorded bool
	now := fromMS(ms(eventTime(ev)))
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		hashes, recorded = nil, false
		u, err := scanUser(db.txQueryRow(ctx, tx, "SELECT "+userColumns+" FROM users WHERE id = $1"+db.d.forUpdate, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: update user %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update user: %w", err)
		}
		if err := update(&u); err != nil {
			return err
		}
		u.ID = id
		_, err = db.txExec(ctx, tx, `UPDATE users SET username = $2, email = $3, password_hash = $4, disabled_at = $5,
			created_at = $6, updated_at = $7, sessions_ended_at = $8 WHERE id = $1`,
			u.ID, u.Username, u.Email, u.PasswordHash, nullMS(u.DisabledAt), ms(u.CreatedAt), ms(u.UpdatedAt), nullMS(u.SessionsEndedAt))
		if err != nil {
			return db.wrapUnique(err, "update user")
		}
		out = u
		if err := db.appendAudit(ctx, tx, ev); err != nil {
			return err
		}
		if reason == "" {
			return nil
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+grantColumns+" FROM grants g WHERE g.user_id = $1 AND g.revoked_at IS NULL ORDER BY g.id"+db.d.forUpdate, id)
		if err != nil {
			return fmt.Errorf("sqlstore: update user: lock grants: %w", err)
		}
		var grants []store.Grant
		for rows.Next() {
			g, err := scanGrant(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: update user: lock grants: %w", err)
			}
			grants = append(grants, g)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("sqlstore: update user: lock grants: %w", err)
		}
		if len(grants) == 0 {
			return nil
		}
		secrets, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id IN ("+userLiveTokensSQL+") ORDER BY hash", id)
		if err != nil {
			return fmt.Errorf("sqlstore: update user: list secrets: %w", err)
		}
		if hashes, err = scanHashes(secrets); err != nil {
			return fmt.Errorf("sqlstore: update user: list secrets: %w", err)
		}
		toks, err := tokenRevocations(ctx, tx, now, false, "UPDATE tokens SET revoked_at = $2, revoke_reason = $3, updated_at = $2 WHERE id IN ("+userLiveTokensSQL+") RETURNING id, api_id, expires_at",
			id, ms(now), reason)
		if err != nil {
			return fmt.Errorf("sqlstore: update user: revoke tokens: %w", err)
		}
		if _, err := db.txExec(ctx, tx, "UPDATE grants SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL",
			id, ms(now), reason); err != nil {
			return fmt.Errorf("sqlstore: update user: revoke grants: %w", err)
		}
		revs := make([]store.Revocation, 0, len(grants)+len(toks))
		for _, g := range grants {
			revs = append(revs, grantRevocation(g.ID, g.APIID, now))
		}
		revs = append(revs, toks...)
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		if err := db.recordRevocations(ctx, tx, revs); err != nil {
			return err
		}
		recorded = true
		for _, g := range grants {
			if err := db.appendAudit(ctx, tx, grantEvent(g)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return store.User{}, nil, err
	}
	if recorded {
		db.revocationsRecorded()
	}
	return out, hashes, nil
}

// userTokensSQL selects the opaque access tokens issued from the grants of
// user $1. The test for a non-empty grant_id lets both engines use the partial
// index tokens_grant_idx.
const userTokensSQL = "SELECT id FROM tokens WHERE grant_id <> '' AND grant_id IN (SELECT id FROM grants WHERE user_id = $1)"

// DeleteUser implements store.UserStore. It also deletes the device codes
// the user approved, so that no grant can be created for a deleted user.
//
// The order of the statements matters on PostgreSQL, where other
// transactions run concurrently, and follows the order in which the token
// endpoint locks rows:
//
//   - codes go first: a redemption in flight holds its code's row lock,
//     and then takes a share lock on the user's row for the grant's
//     foreign key, so the user's row must not be locked before the codes
//     are (that deadlocked); its grant becomes visible once it commits;
//   - then the refresh tokens: a refresh in flight holds its refresh
//     token's row lock and then locks the grant (locking the grants first
//     deadlocked with it);
//   - then the user's row, and the grants (an issuance in flight holds the
//     grant's lock, and its token becomes visible once it commits);
//   - only then are the tokens collected and deleted.
func (db *DB) DeleteUser(ctx context.Context, id string, ev store.AuditEvent) ([]tokenfmt.Hash, error) {
	var hashes []tokenfmt.Hash
	var recorded bool
	now := fromMS(ms(eventTime(ev)))
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		for _, q := range []string{
			"DELETE FROM auth_codes WHERE user_id = $1",
			"DELETE FROM device_codes WHERE user_id = $1",
			"DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = $1)",
		} {
			if _, err := db.txExec(ctx, tx, q, id); err != nil {
				return fmt.Errorf("sqlstore: delete user: %w", err)
			}
		}
		var found string
		err := db.txQueryRow(ctx, tx, "SELECT id FROM users WHERE id = $1"+db.d.forUpdate, id).Scan(&found)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: delete user %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: delete user: %w", err)
		}
		if err := db.lockGrants(ctx, tx, "user_id = $1", id); err != nil {
			return fmt.Errorf("sqlstore: delete user: %w", err)
		}
		rows, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id IN ("+userTokensSQL+") ORDER BY hash", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete user: list secrets: %w", err)
		}
		if hashes, err = scanHashes(rows); err != nil {
			return fmt.Errorf("sqlstore: delete user: list secrets: %w", err)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		// Child rows go explicitly rather than by cascade, so that the
		// outcome does not depend on SQLite's foreign_keys pragma. Live
		// tokens and grants deleted here are published as revoked.
		exec := func(qs ...string) error {
			for _, q := range qs {
				if _, err := db.txExec(ctx, tx, q, id); err != nil {
					return fmt.Errorf("sqlstore: delete user: %w", err)
				}
			}
			return nil
		}
		if err := exec(
			"DELETE FROM token_usage WHERE token_id IN ("+userTokensSQL+")",
			"DELETE FROM token_secrets WHERE token_id IN ("+userTokensSQL+")",
		); err != nil {
			return err
		}
		revs, err := tokenRevocations(ctx, tx, now, true, "DELETE FROM tokens WHERE id IN ("+userTokensSQL+") RETURNING id, api_id, expires_at, revoked_at", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete user: %w", err)
		}
		// A refresh token stored by a refresh that committed after the
		// deletion above goes with its grant (ON DELETE CASCADE; on SQLite
		// nothing commits in between).
		grants, err := grantRevocations(ctx, tx, now, true, "DELETE FROM grants WHERE user_id = $1 RETURNING id, api_id, revoked_at", id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete user: %w", err)
		}
		revs = append(grants, revs...)
		if err := exec("DELETE FROM consents WHERE user_id = $1", "DELETE FROM users WHERE id = $1"); err != nil {
			return err
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

// lockGrants locks the grants matching where (on PostgreSQL; SQLite's
// single writer already excludes every other write).
func (db *DB) lockGrants(ctx context.Context, tx *sql.Tx, where string, args ...any) error {
	if db.d.forUpdate == "" {
		return nil
	}
	rows, err := tx.QueryContext(ctx, "SELECT id FROM grants WHERE "+where+db.d.forUpdate, args...)
	if err != nil {
		return fmt.Errorf("lock grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock grants: %w", err)
	}
	return nil
}

const consentColumns = "user_id, client_id, api_id, scopes, created_at, updated_at"

func scanConsent(row rowScanner) (store.Consent, error) {
	var c store.Consent
	var scopes string
	var created, updated int64
	if err := row.Scan(&c.UserID, &c.ClientID, &c.APIID, &scopes, &created, &updated); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(scopes), &c.Scopes); err != nil {
		return c, fmt.Errorf("decode scopes of consent: %w", err)
	}
	c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
	return c, nil
}

// GetConsent implements store.UserStore.
func (db *DB) GetConsent(ctx context.Context, userID, clientID, apiID string) (store.Consent, error) {
	return getOne(ctx, db, scanConsent, "get consent", "of "+userID+" for "+clientID,
		"SELECT "+consentColumns+" FROM consents WHERE user_id = $1 AND client_id = $2 AND api_id = $3", userID, clientID, apiID)
}

// PutConsent implements store.UserStore. Replacing a consent keeps its
// CreatedAt and takes the new Scopes and UpdatedAt. A missing user or client
// is ErrNotFound.
func (db *DB) PutConsent(ctx context.Context, c store.Consent, ev store.AuditEvent) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range []struct{ what, sql, id string }{
			{"user", "SELECT id FROM users WHERE id = $1", c.UserID},
			{"client", "SELECT id FROM clients WHERE id = $1", c.ClientID},
		} {
			var found string
			err := db.txQueryRow(ctx, tx, q.sql, q.id).Scan(&found)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlstore: put consent: %s %s: %w", q.what, q.id, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("sqlstore: put consent: %w", err)
			}
		}
		_, err := db.txExec(ctx, tx, "INSERT INTO consents ("+consentColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id, client_id, api_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at`,
			c.UserID, c.ClientID, c.APIID, jsonList(c.Scopes), ms(c.CreatedAt), ms(c.UpdatedAt))
		if err != nil {
			return fmt.Errorf("sqlstore: put consent: %w", err)
		}
		return db.appendAudit(ctx, tx, ev)
	})
}

// ListConsents implements store.UserStore. Consents are ordered by client
// and API.
func (db *DB) ListConsents(ctx context.Context, userID string) ([]store.Consent, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT "+consentColumns+" FROM consents WHERE user_id = $1 ORDER BY client_id, api_id", userID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list consents: %w", err)
	}
	defer rows.Close()
	var out []store.Consent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list consents: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list consents: %w", err)
	}
	return out, nil
}

// consentRevokedReason is the revoke reason of the grants and access tokens
// DeleteConsent revokes.
const consentRevokedReason = "consent_revoked"

// consentTokensSQL selects the unrevoked access tokens of the grants user $1
// gave client $2.
const consentTokensSQL = `SELECT id FROM tokens WHERE grant_id <> '' AND revoked_at IS NULL
	AND grant_id IN (SELECT id FROM grants WHERE user_id = $1 AND client_id = $2)`

// DeleteConsent implements store.UserStore. It also deletes the user's
// unused authorization codes and unredeemed approved device codes for the
// client: they are grants in waiting. It is ErrNotFound when there was
// neither a consent to delete nor a live grant to revoke.
//
// The grants are revoked before their tokens are collected: on PostgreSQL
// that waits for any issuance in flight (which holds the grant's lock), so
// its token is seen and revoked too, and later issuances find the grant
// revoked.
func (db *DB) DeleteConsent(ctx context.Context, userID, clientID string, now time.Time, ev store.AuditEvent) ([]tokenfmt.Hash, error) {
	var hashes []tokenfmt.Hash
	var recorded bool
	now = fromMS(ms(now))
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		var codes int64 // approvals not yet redeemed: they count as something revoked
		for _, q := range []string{
			"DELETE FROM auth_codes WHERE user_id = $1 AND client_id = $2 AND used_at IS NULL",
			"DELETE FROM device_codes WHERE user_id = $1 AND client_id = $2 AND status = '" + store.DeviceApproved + "'",
		} {
			res, err := db.txExec(ctx, tx, q, userID, clientID)
			if err != nil {
				return fmt.Errorf("sqlstore: delete consent: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("sqlstore: delete consent: %w", err)
			}
			codes += n
		}
		revs, err := grantRevocations(ctx, tx, now, false, `UPDATE grants SET revoked_at = $3, revoke_reason = $4
			WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING id, api_id`,
			userID, clientID, ms(now), consentRevokedReason)
		if err != nil {
			return fmt.Errorf("sqlstore: delete consent: revoke grants: %w", err)
		}
		grants := len(revs)
		rows, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id IN ("+consentTokensSQL+") ORDER BY hash", userID, clientID)
		if err != nil {
			return fmt.Errorf("sqlstore: delete consent: list secrets: %w", err)
		}
		if hashes, err = scanHashes(rows); err != nil {
			return fmt.Errorf("sqlstore: delete consent: list secrets: %w", err)
		}
		toks, err := tokenRevocations(ctx, tx, now, false, "UPDATE tokens SET revoked_at = $3, revoke_reason = $4, updated_at = $3 WHERE id IN ("+consentTokensSQL+") RETURNING id, api_id, expires_at",
			userID, clientID, ms(now), consentRevokedReason)
		if err != nil {
			return fmt.Errorf("sqlstore: delete consent: revoke tokens: %w", err)
		}
		revs = append(revs, toks...)
		res, err := db.txExec(ctx, tx, "DELETE FROM consents WHERE user_id = $1 AND client_id = $2", userID, clientID)
		if err != nil {
			return fmt.Errorf("sqlstore: delete consent: %w", err)
		}
		consents, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: delete consent: %w", err)
		}
		if grants == 0 && consents == 0 && codes == 0 {
			return fmt.Errorf("sqlstore: delete consent of %s for %s: %w", userID, clientID, store.ErrNotFound)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
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
