package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

// revocationChannel is the PostgreSQL NOTIFY channel on which every node
// learns that another node recorded revocations.
const revocationChannel = "jeton_revocations"

const (
	// claimRevocationsSQL claims the next $1 sequence numbers and returns
	// the last. Updating the single head row takes a row lock on PostgreSQL
	// that is held until commit: concurrent recording transactions queue
	// behind it and commit in the order of their numbers. Without it a
	// transaction holding seq 7 could commit after one holding seq 8, and a
	// reader that had already moved past 8 would never see 7.
	//
	// The numbers never fall behind the clock: the head first moves up to
	// $2, the time in microseconds, if it is behind. So a store restored
	// from a backup, whose head has gone back, hands out numbers above
	// every one it handed out before the restore (unless those ran ahead of
	// the clock, which takes more than a million revocations a second), and
	// a verifier resuming from a cursor it was given before the restore
	// still hears of every revocation made after it.
	claimRevocationsSQL = "UPDATE revocation_head SET seq = (CASE WHEN seq < $2 THEN $2 ELSE seq END) + $1 WHERE id = 1 RETURNING seq"
	// lockRevocationsSQL takes the same lock without claiming anything.
	lockRevocationsSQL = "SELECT seq FROM revocation_head WHERE id = 1"

	revocationColumns = "seq, kind, ref, api_id, revoked_at, expires_at"
	// revocationsPerInsert keeps a multi-row insert's parameters (6 per
	// row) far below either engine's limit.
	revocationsPerInsert = 100
)

// tokenRevocation is the entry for a token revoked at now that expires at
// expires (zero: never). ok is false when the token has already expired:
// no verifier needs to hear of it. (Stored tokens are opaque: unlike a JWT,
// no verifier accepts one for a leeway past its expiry, so RevocationGrace
// does not extend this.)
func tokenRevocation(id, apiID string, expires, now time.Time) (r store.Revocation, ok bool) {
	end := now.Add(store.RevocationTTL)
	if !expires.IsZero() && expires.Before(end) {
		end = expires
	}
	if !end.After(now) {
		return r, false
	}
	return store.Revocation{Kind: store.RevocationToken, Ref: id, APIID: apiID, RevokedAt: now, ExpiresAt: end}, true
}

// secretRevocation is the entry for a secret of token id that stopped
// working at now, before its time. Verifiers cache a positive answer for
// far less than RevocationTTL; ok is false when the token has expired.
func secretRevocation(id, apiID string, expires, now time.Time) (r store.Revocation, ok bool) {
	r, ok = tokenRevocation(id, apiID, expires, now)
	r.Kind = store.RevocationSecret
	return r, ok
}

// grantRevocation is the entry for a grant revoked at now.
func grantRevocation(id, apiID string, now time.Time) store.Revocation {
	return store.Revocation{Kind: store.RevocationGrant, Ref: id, APIID: apiID, RevokedAt: now, ExpiresAt: now.Add(store.RevocationTTL)}
}

// eventTime is the time of a change whose method takes no clock: the time
// of its audit event, or now.
func eventTime(ev store.AuditEvent) time.Time {
	if ev.Time.IsZero() {
		return time.Now()
	}
	return ev.Time
}

// recordRevocations appends revs to the feed inside tx, numbering them in
// order, and on PostgreSQL notifies the other nodes when tx commits. Call
// it after the transaction's other row locks are taken, so that
// revocation_head, which stays locked until commit, is held as briefly as
// possible and always last. (Writes never lock audit_head on PostgreSQL:
// only the audit chainer does, and it takes no other lock; see
// auditchain.go.)
func (db *DB) recordRevocations(ctx context.Context, tx *sql.Tx, revs []store.Revocation) error {
	if len(revs) == 0 {
		return nil
	}
	var last int64
	if err := db.txQueryRow(ctx, tx, claimRevocationsSQL, len(revs), time.Now().UnixMicro()).Scan(&last); err != nil {
		return fmt.Errorf("sqlstore: record revocations: claim sequence: %w", err)
	}
	seq := last - int64(len(revs))
	for chunk := range slices.Chunk(revs, revocationsPerInsert) {
		var q strings.Builder
		q.WriteString("INSERT INTO revocations (" + revocationColumns + ") VALUES ")
		args := make([]any, 0, 6*len(chunk))
		for i, r := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + placeholders(len(args)+1, len(args)+6) + ")")
			seq++
			args = append(args, seq, r.Kind, r.Ref, r.APIID, ms(r.RevokedAt), ms(r.ExpiresAt))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("sqlstore: record revocations: %w", err)
		}
	}
	if db.d.name == "postgres" {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", revocationChannel, strconv.FormatInt(last, 10)); err != nil {
			return fmt.Errorf("sqlstore: notify revocations: %w", err)
		}
	}
	return nil
}

// scanRevocations reads rows of revocationColumns.
func scanRevocations(rows *sql.Rows) ([]store.Revocation, error) {
	defer rows.Close()
	var out []store.Revocation
	for rows.Next() {
		var r store.Revocation
		var revoked, expires int64
		if err := rows.Scan(&r.Seq, &r.Kind, &r.Ref, &r.APIID, &revoked, &expires); err != nil {
			return nil, err
		}
		r.RevokedAt, r.ExpiresAt = fromMS(revoked), fromMS(expires)
		out = append(out, r)
	}
	return out, rows.Err()
}

// revokedTokens reads the entries of the tokens that rows describes: (id,
// api_id, expires_at), and revoked_at if withRevoked. Tokens revoked before
// now, or already expired at now, need no entry and are left out. The
// entries are sorted by token id, so that their order does not depend on
// the engine.
func revokedTokens(rows *sql.Rows, now time.Time, withRevoked bool) ([]store.Revocation, error) {
	defer rows.Close()
	var out []store.Revocation
	for rows.Next() {
		var id, apiID string
		var expires, revoked sql.NullInt64
		dest := []any{&id, &apiID, &expires}
		if withRevoked {
			dest = append(dest, &revoked)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if revoked.Valid {
			continue
		}
		if r, ok := tokenRevocation(id, apiID, fromNullMS(expires), now); ok {
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.Revocation) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// revokedGrants reads the entries of the grants that rows describes: (id,
// api_id), and revoked_at if withRevoked. Grants revoked before need no
// entry and are left out. The entries are sorted by grant id.
func revokedGrants(rows *sql.Rows, now time.Time, withRevoked bool) ([]store.Revocation, error) {
	defer rows.Close()
	var out []store.Revocation
	for rows.Next() {
		var id, apiID string
		var revoked sql.NullInt64
		dest := []any{&id, &apiID}
		if withRevoked {
			dest = append(dest, &revoked)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if !revoked.Valid {
			out = append(out, grantRevocation(id, apiID, now))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.Revocation) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// tokenRevocations runs query inside tx and returns the entries of the
// tokens it returns (see revokedTokens).
func tokenRevocations(ctx context.Context, tx *sql.Tx, now time.Time, withRevoked bool, query string, args ...any) ([]store.Revocation, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return revokedTokens(rows, now, withRevoked)
}

// grantRevocations runs query inside tx and returns the entries of the
// grants it returns (see revokedGrants).
func grantRevocations(ctx context.Context, tx *sql.Tx, now time.Time, withRevoked bool, query string, args ...any) ([]store.Revocation, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return revokedGrants(rows, now, withRevoked)
}

// ListRevocations implements store.RevocationStore.
func (db *DB) ListRevocations(ctx context.Context, after int64, apiIDs []string, now time.Time, limit int) ([]store.Revocation, error) {
	if apiIDs != nil && len(apiIDs) == 0 {
		return nil, nil
	}
	q := "SELECT " + revocationColumns + " FROM revocations WHERE seq > $1 AND expires_at > $2"
	args := []any{after, ms(now.Add(-store.RevocationGrace))}
	if apiIDs != nil {
		q += " AND api_id IN (" + placeholders(3, 2+len(apiIDs)) + ")"
		for _, id := range apiIDs {
			args = append(args, id)
		}
	}
	q += " ORDER BY seq LIMIT " + strconv.Itoa(clampLimit(limit))
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list revocations: %w", err)
	}
	out, err := scanRevocations(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list revocations: %w", err)
	}
	return out, nil
}

// RevokeAccessJWT implements store.RevocationStore.
func (db *DB) RevokeAccessJWT(ctx context.Context, jti, apiID string, expiresAt, now time.Time, ev store.AuditEvent) error {
	if jti == "" {
		return fmt.Errorf("sqlstore: revoke jwt: empty jti")
	}
	now = fromMS(ms(now))
	if !expiresAt.Add(store.RevocationGrace).After(now) {
		return nil // expired beyond any verifier's leeway: nothing left to reject
	}
	var recorded bool
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		recorded = false
		// Lock the head before looking: of two concurrent revocations of
		// one jti the second waits here, then sees the first's entry.
		var head int64
		if err := db.txQueryRow(ctx, tx, lockRevocationsSQL+db.d.forUpdate).Scan(&head); err != nil {
			return fmt.Errorf("sqlstore: revoke jwt: lock: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM revocations WHERE ref = $1 AND kind = $2", jti, store.RevocationToken).Scan(&n); err != nil {
			return fmt.Errorf("sqlstore: revoke jwt: %w", err)
		}
		if n > 0 {
			return nil // already revoked: nothing changes, nothing to audit
		}
		r := store.Revocation{Kind: store.RevocationToken, Ref: jti, APIID: apiID, RevokedAt: now, ExpiresAt: expiresAt}
		if err := db.recordRevocations(ctx, tx, []store.Revocation{r}); err != nil {
			return err
		}
		recorded = true
		return db.appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	if recorded {
		db.revocationsRecorded()
	}
	return nil
}

// IsRevoked implements store.RevocationStore.
func (db *DB) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	ids = nonEmpty(ids)
	if len(ids) == 0 {
		return false, nil
	}
	in := "(" + placeholders(1, len(ids)) + ")"
	q := "SELECT CASE WHEN EXISTS (SELECT 1 FROM revocations WHERE ref IN " + in + " AND kind <> '" + store.RevocationSecret + "'" +
		") OR EXISTS (SELECT 1 FROM grants WHERE id IN " + in + " AND revoked_at IS NOT NULL) THEN 1 ELSE 0 END"
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	var row *sql.Row
	if len(ids) <= 4 {
		row = db.queryRow(ctx, q, args...) // a bounded set of texts: prepare once
	} else {
		row = db.read.QueryRowContext(ctx, q, args...)
	}
	var revoked int
	if err := row.Scan(&revoked); err != nil {
		return false, fmt.Errorf("sqlstore: is revoked: %w", err)
	}
	return revoked != 0, nil
}

// nonEmpty returns ids without empty strings.
func nonEmpty(ids []string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}

// PurgeRevocations implements store.RevocationStore.
func (db *DB) PurgeRevocations(ctx context.Context, now time.Time, limit int) (int, error) {
	return db.purge(ctx, "revocations", "DELETE FROM revocations WHERE seq IN (SELECT seq FROM revocations WHERE expires_at <= $1 ORDER BY seq LIMIT $2)",
		ms(now.Add(-store.RevocationGrace)), limit)
}

// RevocationsChanged implements store.RevocationStore. The channel is
// closed after a local commit that recorded entries, and, on PostgreSQL,
// when the LISTEN connection that SubscribeInvalidations runs hears of
// another node's (or reconnects).
func (db *DB) RevocationsChanged() <-chan struct{} { return db.revocationSignal().wait() }

// revocationsRecorded wakes the readers waiting on RevocationsChanged.
func (db *DB) revocationsRecorded() { db.revocationSignal().broadcast() }

// signal is a broadcast by close-and-replace: wait returns the channel of
// the next broadcast, which closes it.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

func (db *DB) revocationSignal() *signal { return &db.revoked }
