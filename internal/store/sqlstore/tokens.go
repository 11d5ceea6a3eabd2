package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

const tokenColumns = `t.id, t.api_id, t.name, t.subject, t.scopes, t.hint, t.metadata, t.allowed_cidrs,
	t.rate_limit, t.rate_window_ms, t.quota_remaining, t.quota_refill_amount, t.quota_refill_interval, t.quota_period_start,
	t.created_at, t.updated_at, t.expires_at, t.revoked_at, t.revoke_reason, t.rotated_at, t.last_used_at, t.last_used_ip, t.use_count, t.client_id, t.grant_id,
	t.quota_version`

func scanToken(row rowScanner, extra ...any) (store.Token, error) {
	var t store.Token
	var scopes, metadata, cidrs string
	var rateLimit, rateWindow, refillAmount, periodStart, created, updated, quotaVersion int64
	var quotaRemaining, expires, revoked, rotated, lastUsed sql.NullInt64
	var refillInterval string
	dest := []any{&t.ID, &t.APIID, &t.Name, &t.Subject, &scopes, &t.Hint, &metadata, &cidrs,
		&rateLimit, &rateWindow, &quotaRemaining, &refillAmount, &refillInterval, &periodStart,
		&created, &updated, &expires, &revoked, &t.RevokeReason, &rotated, &lastUsed, &t.LastUsedIP, &t.UseCount, &t.ClientID, &t.GrantID,
		&quotaVersion}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return t, err
	}
	if err := json.Unmarshal([]byte(scopes), &t.Scopes); err != nil {
		return t, fmt.Errorf("decode scopes of token %s: %w", t.ID, err)
	}
	if metadata != "" {
		t.Metadata = json.RawMessage(metadata)
	}
	if cidrs != "" {
		if err := json.Unmarshal([]byte(cidrs), &t.AllowedCIDRs); err != nil {
			return t, fmt.Errorf("decode allowed_cidrs of token %s: %w", t.ID, err)
		}
	}
	if rateLimit > 0 {
		t.RateLimit = &store.RateLimit{Limit: rateLimit, Window: time.Duration(rateWindow) * time.Millisecond}
	}
	if quotaRemaining.Valid {
		t.Quota = &store.Quota{Remaining: quotaRemaining.Int64, RefillAmount: refillAmount, RefillInterval: refillInterval, Version: quotaVersion}
		if periodStart != 0 {
			t.Quota.PeriodStart = fromMS(periodStart)
		}
	} else {
		t.LastQuotaVersion = quotaVersion
	}
	t.CreatedAt, t.UpdatedAt = fromMS(created), fromMS(updated)
	t.ExpiresAt, t.RevokedAt = fromNullMS(expires), fromNullMS(revoked)
	t.RotatedAt, t.LastUsedAt = fromNullMS(rotated), fromNullMS(lastUsed)
	return t, nil
}

// tokenArgs returns the values of every settable column, in tokenColumns order.
func tokenArgs(t *store.Token) []any {
	var metadata, cidrs string
	if len(t.Metadata) > 0 {
		metadata = string(t.Metadata)
	}
	if len(t.AllowedCIDRs) > 0 {
		cidrs = jsonList(t.AllowedCIDRs)
	}
	var rateLimit, rateWindow int64
	if t.RateLimit != nil {
		rateLimit, rateWindow = t.RateLimit.Limit, t.RateLimit.Window.Milliseconds()
	}
	var quotaRemaining sql.NullInt64
	var refillAmount, periodStart, quotaVersion int64
	var refillInterval string
	quotaVersion = t.LastQuotaVersion // kept while there is no quota
	if q := t.Quota; q != nil {
		quotaRemaining = sql.NullInt64{Int64: q.Remaining, Valid: true}
		refillAmount, refillInterval, quotaVersion = q.RefillAmount, q.RefillInterval, q.Version
		if !q.PeriodStart.IsZero() {
			periodStart = ms(q.PeriodStart)
		}
	}
	return []any{t.ID, t.APIID, t.Name, t.Subject, jsonList(t.Scopes), t.Hint, metadata, cidrs,
		rateLimit, rateWindow, quotaRemaining, refillAmount, refillInterval, periodStart,
		ms(t.CreatedAt), ms(t.UpdatedAt), nullMS(t.ExpiresAt), nullMS(t.RevokedAt), t.RevokeReason,
		nullMS(t.RotatedAt), nullMS(t.LastUsedAt), t.LastUsedIP, t.UseCount, t.ClientID, t.GrantID,
		quotaVersion}
}

const insertSecretSQL = "INSERT INTO token_secrets (hash, token_id, expires_at) VALUES ($1, $2, NULL)"

var (
	insertTokenSQL = "INSERT INTO tokens (" + strings.ReplaceAll(tokenColumns, "t.", "") + ") VALUES (" + placeholders(1, 26) + ")"
	updateTokenSQL = func() string {
		cols := strings.Split(strings.ReplaceAll(tokenColumns, "t.", ""), ",")
		var set []string
		for i, c := range cols[1:] {
			set = append(set, strings.TrimSpace(c)+" = $"+strconv.Itoa(i+2))
		}
		return "UPDATE tokens SET " + strings.Join(set, ", ") + " WHERE id = $1"
	}()
)

func placeholders(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		if i > from {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	return b.String()
}

// CreateToken implements store.Store.
func (db *DB) CreateToken(ctx context.Context, t store.Token, secret tokenfmt.Hash, ev store.AuditEvent) error {
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := db.txExec(ctx, tx, insertTokenSQL, tokenArgs(&t)...); err != nil {
			return db.wrapUnique(err, "create token")
		}
		if _, err := db.txExec(ctx, tx, insertSecretSQL, secret[:], t.ID); err != nil {
			return db.wrapUnique(err, "create token secret")
		}
		return db.appendAudit(ctx, tx, ev)
	})
}

// GetToken implements store.Store.
func (db *DB) GetToken(ctx context.Context, id string) (store.Token, error) {
	return getOne(ctx, db, func(r rowScanner) (store.Token, error) { return scanToken(r) }, "get token", id,
		"SELECT "+tokenColumns+" FROM tokens t WHERE t.id = $1", id)
}

// LookupToken implements store.Store.
func (db *DB) LookupToken(ctx context.Context, h tokenfmt.Hash) (store.Token, time.Time, error) {
	var secretExpires sql.NullInt64
	t, err := scanToken(db.queryRow(ctx, "SELECT "+tokenColumns+", s.expires_at FROM token_secrets s JOIN tokens t ON t.id = s.token_id WHERE s.hash = $1", h[:]), &secretExpires)
	if errors.Is(err, sql.ErrNoRows) {
		return t, time.Time{}, fmt.Errorf("sqlstore: lookup token: %w", store.ErrNotFound)
	}
	if err != nil {
		return t, time.Time{}, fmt.Errorf("sqlstore: lookup token: %w", err)
	}
	return t, fromNullMS(secretExpires), nil
}

// ListTokens implements store.Store.
func (db *DB) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.Token, string, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if f.APIID != "" {
		add("t.api_id =", f.APIID)
	}
	if f.Subject != "" {
		add("t.subject =", f.Subject)
	}
	if f.After != "" {
		add("t.id <", f.After)
	}
	q := "SELECT " + tokenColumns + " FROM tokens t"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return listPage(ctx, db, "tokens", q, "t.id", args, f.Limit,
		func(r rowScanner) (store.Token, error) { return scanToken(r) }, func(t *store.Token) string { return t.ID })
}

// lockToken reads a token for update inside tx.
func (db *DB) lockToken(ctx context.Context, tx *sql.Tx, id string) (store.Token, error) {
	t, err := scanToken(db.txQueryRow(ctx, tx, "SELECT "+tokenColumns+" FROM tokens t WHERE t.id = $1"+db.d.forUpdate, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("sqlstore: token %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("sqlstore: read token: %w", err)
	}
	return t, nil
}

func tokenHashes(ctx context.Context, tx *sql.Tx, id string) ([]tokenfmt.Hash, error) {
	rows, err := tx.QueryContext(ctx, "SELECT hash FROM token_secrets WHERE token_id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list token secrets: %w", err)
	}
	hs, err := scanHashes(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list token secrets: %w", err)
	}
	return hs, nil
}

// UpdateToken implements store.Store.
func (db *DB) UpdateToken(ctx context.Context, id string, update func(*store.Token) error, ev store.AuditEvent) (store.Token, []tokenfmt.Hash, error) {
	var out store.Token
	var hashes []tokenfmt.Hash
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := db.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := update(&t); err != nil {
			return err
		}
		t.ID = id
		if _, err := db.txExec(ctx, tx, updateTokenSQL, tokenArgs(&t)...); err != nil {
			return fmt.Errorf("sqlstore: update token: %w", err)
		}
		if hashes, err = tokenHashes(ctx, tx, id); err != nil {
			return err
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		out = t
		return db.appendAudit(ctx, tx, ev)
	})
	return out, hashes, err
}

// RotateToken implements store.Store.
func (db *DB) RotateToken(ctx context.Context, id string, next tokenfmt.Hash, hint string, graceUntil, now time.Time, ev store.AuditEvent) (store.Token, []tokenfmt.Hash, error) {
	var out store.Token
	var changed []tokenfmt.Hash
	var recorded bool
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		t, err := db.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if changed, err = tokenHashes(ctx, tx, id); err != nil {
			return err
		}
		// Rotated-out secrets whose grace has ended go; those still in
		// their grace keep it (a rotation must not cut short what an earlier
		// one promised). The current one becomes a previous one, valid until
		// graceUntil; without a grace period every earlier secret goes now.
		if graceUntil.After(now) {
			if _, err := db.txExec(ctx, tx, "DELETE FROM token_secrets WHERE token_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2", id, ms(now)); err != nil {
				return fmt.Errorf("sqlstore: rotate token: %w", err)
			}
			var inGrace int
			if err := db.txQueryRow(ctx, tx, "SELECT count(*) FROM token_secrets WHERE token_id = $1 AND expires_at IS NOT NULL", id).Scan(&inGrace); err != nil {
				return fmt.Errorf("sqlstore: rotate token: %w", err)
			}
			if inGrace >= store.MaxSecretsInGrace {
				return fmt.Errorf("sqlstore: rotate token %s: %d secrets in their grace period: %w", id, inGrace, store.ErrTooManySecrets)
			}
			_, err = db.txExec(ctx, tx, "UPDATE token_secrets SET expires_at = $2 WHERE token_id = $1 AND expires_at IS NULL", id, ms(graceUntil))
		} else {
			// The earlier secrets end now: verifiers that cached an answer
			// for one of them hear of it.
			if _, err := db.txExec(ctx, tx, "DELETE FROM token_secrets WHERE token_id = $1", id); err != nil {
				return fmt.Errorf("sqlstore: rotate token: %w", err)
			}
			if r, ok := secretRevocation(t.ID, t.APIID, t.ExpiresAt, fromMS(ms(now))); ok {
				if err := db.recordRevocations(ctx, tx, []store.Revocation{r}); err != nil {
					return err
				}
				recorded = true
			}
		}
		if err != nil {
			return fmt.Errorf("sqlstore: rotate token: %w", err)
		}
		if _, err := db.txExec(ctx, tx, insertSecretSQL, next[:], id); err != nil {
			return db.wrapUnique(err, "rotate token")
		}
		t.Hint, t.RotatedAt, t.UpdatedAt = hint, fromMS(ms(now)), fromMS(ms(now))
		if _, err := db.txExec(ctx, tx, "UPDATE tokens SET hint = $2, rotated_at = $3, updated_at = $3 WHERE id = $1", id, hint, ms(now)); err != nil {
			return fmt.Errorf("sqlstore: rotate token: %w", err)
		}
		out = t
		changed = append(changed, next)
		if err := db.notifyHashes(ctx, tx, changed); err != nil {
			return err
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if err == nil && recorded {
		db.revocationsRecorded()
	}
	return out, changed, err
}

// RevokeToken implements store.Store.
func (db *DB) RevokeToken(ctx context.Context, id, reason string, now time.Time, ev store.AuditEvent) (store.Token, []tokenfmt.Hash, error) {
	var out store.Token
	var hashes []tokenfmt.Hash
	var recorded bool
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		t, err := db.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if hashes, err = tokenHashes(ctx, tx, id); err != nil {
			return err
		}
		out = t
		if !t.RevokedAt.IsZero() {
			return nil // already revoked: nothing changes, nothing to audit
		}
		now := fromMS(ms(now))
		out.RevokedAt, out.RevokeReason, out.UpdatedAt = now, reason, now
		if _, err := db.txExec(ctx, tx, "UPDATE tokens SET revoked_at = $2, revoke_reason = $3, updated_at = $2 WHERE id = $1", id, ms(now), reason); err != nil {
			return fmt.Errorf("sqlstore: revoke token: %w", err)
		}
		if err := db.notifyHashes(ctx, tx, hashes); err != nil {
			return err
		}
		if r, ok := tokenRevocation(t.ID, t.APIID, t.ExpiresAt, now); ok {
			if err := db.recordRevocations(ctx, tx, []store.Revocation{r}); err != nil {
				return err
			}
			recorded = true
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if err == nil && recorded {
		db.revocationsRecorded()
	}
	return out, hashes, err
}

// ExpireTokenSecret implements store.Store.
func (db *DB) ExpireTokenSecret(ctx context.Context, h tokenfmt.Hash, now time.Time, ev store.AuditEvent) (store.Token, bool, error) {
	var out store.Token
	var changed, recorded bool
	now = fromMS(ms(now))
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		changed, recorded = false, false
		var id string
		err := db.txQueryRow(ctx, tx, "SELECT token_id FROM token_secrets WHERE hash = $1 AND expires_at IS NOT NULL", h[:]).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: expire token secret: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: expire token secret: %w", err)
		}
		// The token row is locked before its secrets change, as in
		// RotateToken; the secret is checked again under that lock.
		if out, err = db.lockToken(ctx, tx, id); err != nil {
			return err
		}
		res, err := db.txExec(ctx, tx, "UPDATE token_secrets SET expires_at = $3 WHERE hash = $1 AND token_id = $2 AND expires_at IS NOT NULL AND expires_at > $3", h[:], id, ms(now))
		if err != nil {
			return fmt.Errorf("sqlstore: expire token secret: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // gone or already expired meanwhile: nothing to do
		}
		changed = true
		if err := db.notifyHashes(ctx, tx, []tokenfmt.Hash{h}); err != nil {
			return err
		}
		if r, ok := secretRevocation(out.ID, out.APIID, out.ExpiresAt, now); ok {
			if err := db.recordRevocations(ctx, tx, []store.Revocation{r}); err != nil {
				return err
			}
			recorded = true
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if err == nil && recorded {
		db.revocationsRecorded()
	}
	return out, changed, err
}

// purgeVictimsSQL selects at most $2 tokens, in id order, that expired or
// were revoked before $1, or, OAuth access tokens (client_id set), before
// $3. Each way of being due is looked up in its own index, with its own
// limit: written as one WHERE with OR, both engines scanned the table in
// id order, past every live token older than the first one due (on a
// store of long-lived API keys, all of them) at every batch.
const purgeVictimsSQL = `SELECT id FROM (
	SELECT id FROM (SELECT id FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1 LIMIT $2) e
	UNION SELECT id FROM (SELECT id FROM tokens WHERE revoked_at IS NOT NULL AND revoked_at < $1 LIMIT $2) r
	UNION SELECT id FROM (SELECT id FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $3 AND client_id <> '' LIMIT $2) ae
	UNION SELECT id FROM (SELECT id FROM tokens WHERE revoked_at IS NOT NULL AND revoked_at < $3 AND client_id <> '' LIMIT $2) ar
) due ORDER BY id LIMIT $2`

// purgeRotatedSecretsSQL deletes the secrets that rotations left behind
// and whose grace period ended before $1 (token_secrets_expires_idx).
const purgeRotatedSecretsSQL = "DELETE FROM token_secrets WHERE expires_at IS NOT NULL AND expires_at < $1"

// PurgeTokens implements store.Store.
func (db *DB) PurgeTokens(ctx context.Context, cutoff, accessCutoff time.Time, limit int) (int, error) {
	var n int
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, purgeVictimsSQL, ms(cutoff), limit, ms(accessCutoff))
		if err != nil {
			return fmt.Errorf("sqlstore: purge tokens: %w", err)
		}
		var victims []any
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: purge tokens: %w", err)
			}
			victims = append(victims, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlstore: purge tokens: %w", err)
		}
		var grants []any
		if len(victims) > 0 {
			in := "(" + placeholders(1, len(victims)) + ")"
			// The grants of purged OAuth access tokens may be spent once
			// these are gone.
			ids, err := queryStrings(ctx, tx, "SELECT DISTINCT grant_id FROM tokens WHERE id IN "+in+" AND grant_id <> ''", victims...)
			if err != nil {
				return fmt.Errorf("sqlstore: purge tokens: grants: %w", err)
			}
			grants = appendNew(nil, ids...)
			for _, q := range []string{
				"DELETE FROM token_usage WHERE token_id IN " + in,
				"DELETE FROM token_secrets WHERE token_id IN " + in,
				"DELETE FROM tokens WHERE id IN " + in,
			} {
				if _, err := db.txExec(ctx, tx, q, victims...); err != nil {
					return fmt.Errorf("sqlstore: purge tokens: %w", err)
				}
			}
		}
		n = len(victims)
		if _, err := db.purgeSpentGrants(ctx, tx, grants); err != nil {
			return err
		}
		if _, err := db.txExec(ctx, tx, purgeRotatedSecretsSQL, ms(cutoff)); err != nil {
			return fmt.Errorf("sqlstore: purge rotated secrets: %w", err)
		}
		return nil
	})
	return n, err
}
