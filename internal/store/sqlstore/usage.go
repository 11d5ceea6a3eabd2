package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

const (
	usageUpsertSQL = `INSERT INTO token_usage (token_id, hour, allowed, denied)
		SELECT $1, CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT) WHERE EXISTS (SELECT 1 FROM tokens WHERE id = $1)
		ON CONFLICT (token_id, hour) DO UPDATE SET allowed = token_usage.allowed + excluded.allowed,
			denied = token_usage.denied + excluded.denied`
	lastUseSQL = `UPDATE tokens SET use_count = use_count + $2,
		last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= $3 THEN $4 ELSE last_used_ip END,
		last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $3 ELSE last_used_at END
		WHERE id = $1`
)

// recordFlushSQL records a flush's id; it changes no row for an id
// recorded before.
const recordFlushSQL = "INSERT INTO usage_flushes (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"

// RecordUsage implements store.Store. All deltas are written in one
// transaction with the flush's id, so that the flush is applied once
// however often it is sent, and the ids the node says it will not send
// again are deleted in it; rows for tokens that were deleted meanwhile are
// skipped.
func (db *DB) RecordUsage(ctx context.Context, f store.UsageFlush) error {
	if f.ID == "" {
		return errors.New("sqlstore: record usage: a flush needs an id")
	}
	if len(f.Usage) == 0 && len(f.Quota) == 0 && len(f.Written) == 0 {
		return nil
	}
	usage := make([]store.UsageDelta, len(f.Usage))
	for i, u := range f.Usage {
		u.LastUsedIP = storedIP(u.LastUsedIP)
		usage[i] = u
	}
	// Rows are locked in token id order, whatever order the node's meter
	// gave: two nodes flushing the same tokens at once on PostgreSQL would
	// otherwise deadlock, and one flush would be refused. The sort is
	// stable: a token's deltas keep their order.
	slices.SortStableFunc(usage, func(a, b store.UsageDelta) int { return strings.Compare(a.TokenID, b.TokenID) })
	quota := slices.Clone(f.Quota)
	slices.SortStableFunc(quota, func(a, b store.QuotaDelta) int { return strings.Compare(a.TokenID, b.TokenID) })
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if len(f.Written) > 0 {
			written := make([]any, len(f.Written))
			for i, id := range f.Written {
				written[i] = id
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM usage_flushes WHERE id IN ("+placeholders(1, len(written))+")", written...); err != nil {
				return fmt.Errorf("sqlstore: forget usage flushes: %w", err)
			}
		}
		if len(usage) == 0 && len(quota) == 0 {
			return nil // nothing to count twice: its id is not kept
		}
		res, err := db.txExec(ctx, tx, recordFlushSQL, f.ID, ms(f.At))
		if err != nil {
			return fmt.Errorf("sqlstore: record usage flush: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlstore: record usage flush: %w", err)
		} else if n == 0 {
			return nil // written before: its reply was lost
		}
		if db.d.name == "postgres" {
			if err := recordUsageBulk(ctx, tx, usage); err != nil {
				return err
			}
			usage = nil
		}
		for _, u := range usage {
			var allowed int64
			for _, h := range u.Hours {
				allowed += h.Allowed
				if _, err := db.txExec(ctx, tx, usageUpsertSQL,
					u.TokenID, ms(h.Hour), h.Allowed, h.Denied); err != nil {
					return fmt.Errorf("sqlstore: record usage: %w", err)
				}
			}
			if u.LastUsedAt.IsZero() && allowed == 0 {
				continue
			}
			if _, err := db.txExec(ctx, tx, lastUseSQL, u.TokenID, allowed, ms(u.LastUsedAt), u.LastUsedIP); err != nil {
				return fmt.Errorf("sqlstore: record last use: %w", err)
			}
		}
		for _, q := range quota {
			// A delta for a newer period than the stored one starts from the
			// refill amount; one for the stored period subtracts from it. A
			// delta for an older period is stale and dropped, and so is one
			// counted against another quota version: the quota was set since
			// (the usage before a PATCH must not reset the quota it set to the
			// replaced quota's refill, nor be taken from it).
			period := int64(0)
			if !q.PeriodStart.IsZero() {
				period = ms(q.PeriodStart)
			}
			if _, err := db.txExec(ctx, tx, `UPDATE tokens SET
				quota_remaining = CASE WHEN quota_period_start < $2 THEN CAST($3 AS BIGINT) - CAST($4 AS BIGINT) ELSE quota_remaining - CAST($4 AS BIGINT) END,
				quota_period_start = $2
				WHERE id = $1 AND quota_remaining IS NOT NULL AND quota_period_start <= $2 AND quota_version = $5`,
				q.TokenID, period, q.RefillAmount, q.Consumed, q.Version); err != nil {
				return fmt.Errorf("sqlstore: record quota: %w", err)
			}
			if _, err := db.txExec(ctx, tx, "UPDATE tokens SET quota_remaining = 0 WHERE id = $1 AND quota_remaining < 0", q.TokenID); err != nil {
				return fmt.Errorf("sqlstore: record quota: %w", err)
			}
		}
		return nil
	})
	if err != nil && db.d.answered(err) {
		return fmt.Errorf("%w: %w", store.ErrRefused, err)
	}
	return err
}

// storedIP is the last-use address as stored: an IP address without its
// zone (which names an interface of another host, in any bytes), or "".
// What a flush carries must never make its write fail: the write would be
// sent again, unchanged, for ever.
func storedIP(s string) string {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return ip.WithZone("").String()
}

// PurgeUsageFlushes implements store.Store.
func (db *DB) PurgeUsageFlushes(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.purge(ctx, "usage flushes", "DELETE FROM usage_flushes WHERE id IN (SELECT id FROM usage_flushes WHERE at < $1 LIMIT $2)", ms(cutoff), limit)
}

// PostgreSQL writes a flush's usage in two statements, whatever its size:
// one round trip per row made a node flush about 5,000 tokens a second
// against a local server (two statements each), fewer against a remote one,
// and a node whose keys in use outgrew that would fall further behind at
// every flush. (SQLite runs in the process: a statement per row costs it no
// round trip.)
const (
	pgUsageUpsertSQL = `INSERT INTO token_usage (token_id, hour, allowed, denied)
		SELECT u.token_id, u.hour, u.allowed, u.denied
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u (token_id, hour, allowed, denied)
		WHERE EXISTS (SELECT 1 FROM tokens WHERE id = u.token_id)
		ON CONFLICT (token_id, hour) DO UPDATE SET allowed = token_usage.allowed + excluded.allowed,
			denied = token_usage.denied + excluded.denied`
	pgLastUseSQL = `UPDATE tokens SET use_count = tokens.use_count + u.allowed,
		last_used_ip = CASE WHEN tokens.last_used_at IS NULL OR tokens.last_used_at <= u.at THEN u.ip ELSE tokens.last_used_ip END,
		last_used_at = CASE WHEN tokens.last_used_at IS NULL OR tokens.last_used_at < u.at THEN u.at ELSE tokens.last_used_at END
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS u (id, allowed, at, ip)
		WHERE tokens.id = u.id`
)

// recordUsageBulk writes usage on PostgreSQL inside tx, as RecordUsage does
// on SQLite row by row. Deltas are first merged per token and hour: one
// statement may not change a row twice.
func recordUsageBulk(ctx context.Context, tx *sql.Tx, usage []store.UsageDelta) error {
	type hourKey struct {
		id   string
		hour int64
	}
	type lastUse struct {
		allowed int64
		at      time.Time
		ip      string
	}
	hours := map[hourKey]*store.UsageHour{}
	var hourKeys []hourKey
	uses := map[string]*lastUse{}
	var useIDs []string
	for _, u := range usage {
		var allowed int64
		for _, h := range u.Hours {
			allowed += h.Allowed
			k := hourKey{u.TokenID, ms(h.Hour)}
			if sum := hours[k]; sum != nil {
				sum.Allowed += h.Allowed
				sum.Denied += h.Denied
			} else {
				hours[k] = &store.UsageHour{Allowed: h.Allowed, Denied: h.Denied}
				hourKeys = append(hourKeys, k)
			}
		}
		if u.LastUsedAt.IsZero() && allowed == 0 {
			continue
		}
		l := uses[u.TokenID]
		if l == nil {
			l = &lastUse{at: u.LastUsedAt, ip: u.LastUsedIP}
			uses[u.TokenID] = l
			useIDs = append(useIDs, u.TokenID)
		} else if !u.LastUsedAt.Before(l.at) {
			l.at, l.ip = u.LastUsedAt, u.LastUsedIP // the latest, as row by row
		}
		l.allowed += allowed
	}
	if len(hourKeys) > 0 {
		ids, hs, allowed, denied := make([]string, len(hourKeys)), make([]int64, len(hourKeys)), make([]int64, len(hourKeys)), make([]int64, len(hourKeys))
		for i, k := range hourKeys {
			ids[i], hs[i], allowed[i], denied[i] = k.id, k.hour, hours[k].Allowed, hours[k].Denied
		}
		if _, err := tx.ExecContext(ctx, pgUsageUpsertSQL, ids, hs, allowed, denied); err != nil {
			return fmt.Errorf("sqlstore: record usage: %w", err)
		}
	}
	if len(useIDs) > 0 {
		allowed, at, ips := make([]int64, len(useIDs)), make([]int64, len(useIDs)), make([]string, len(useIDs))
		for i, id := range useIDs {
			l := uses[id]
			allowed[i], at[i], ips[i] = l.allowed, ms(l.at), l.ip
		}
		if _, err := tx.ExecContext(ctx, pgLastUseSQL, useIDs, allowed, at, ips); err != nil {
			return fmt.Errorf("sqlstore: record last use: %w", err)
		}
	}
	return nil
}

// Usage implements store.Store.
func (db *DB) Usage(ctx context.Context, tokenID string, from, to time.Time) ([]store.UsageHour, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT hour, allowed, denied FROM token_usage
		WHERE token_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour`, tokenID, ms(from), ms(to))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: usage: %w", err)
	}
	defer rows.Close()
	var out []store.UsageHour
	for rows.Next() {
		var h store.UsageHour
		var hour int64
		if err := rows.Scan(&hour, &h.Allowed, &h.Denied); err != nil {
			return nil, fmt.Errorf("sqlstore: usage: %w", err)
		}
		h.Hour = fromMS(hour)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: usage: %w", err)
	}
	return out, nil
}
