package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
)

const (
	insertAuditSQL = `INSERT INTO audit_events (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

	// SQLite's writer keeps its own copy of the head (see auditHead);
	// AuditHead reads the row.
	readAuditHeadSQL = "SELECT seq, hash FROM audit_head WHERE id = 1"
	moveAuditHeadSQL = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4"
)

// auditHead is the SQLite writer's copy of the audit_head row, which saves
// an append one statement. It is a guess, never trusted: an append moves
// the head with an UPDATE that only matches if the row is still what the
// copy says, and reads the row again when it does not (after a write that
// was rolled back, or another process's append). Only the writer goroutine,
// which runs every write on SQLite, touches it.
type auditHead struct {
	known bool
	seq   int64
	hash  string
}

// appendAudit appends ev to the audit log inside tx: to the hash chain
// itself on SQLite, to the events pending chaining on PostgreSQL (see
// auditchain.go). An event without an Action records nothing.
func (db *DB) appendAudit(ctx context.Context, tx *sql.Tx, ev store.AuditEvent) error {
	if ev.Action == "" {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = fromMS(ms(ev.Time))
	if ev.ID == "" {
		ev.ID = ids.New(ids.Event, ev.Time)
	}
	if db.batch == nil {
		return db.appendAuditPending(ctx, tx, ev)
	}
	return db.appendAuditSQLite(ctx, tx, ev)
}

// appendAuditSQLite is appendAudit on SQLite's writer: it moves the head
// from the writer's copy in one statement, instead of claiming a sequence
// number and advancing the hash in two.
func (db *DB) appendAuditSQLite(ctx context.Context, tx *sql.Tx, ev store.AuditEvent) error {
	h := &db.head
	for attempt := 0; ; attempt++ {
		if !h.known {
			if err := db.txQueryRow(ctx, tx, readAuditHeadSQL).Scan(&h.seq, &h.hash); err != nil {
				return fmt.Errorf("sqlstore: audit: read head: %w", err)
			}
			h.known = true
		}
		ev.Seq, ev.PrevHash = h.seq+1, h.hash
		ev.Hash = ev.ChainHash(ev.PrevHash)
		res, err := db.txExec(ctx, tx, moveAuditHeadSQL, ev.Seq, ev.Hash, h.seq, h.hash)
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		if err != nil {
			h.known = false
			return fmt.Errorf("sqlstore: audit: advance head: %w", err)
		}
		if n == 1 {
			break
		}
		// The copy was stale: read the row and try again. This transaction
		// holds the one write lock, so the row read now stays as it is.
		h.known = false
		if attempt > 0 {
			return fmt.Errorf("sqlstore: audit: advance head: the head moved under the write lock")
		}
	}
	if err := db.insertAudit(ctx, tx, &ev); err != nil {
		h.known = false
		return err
	}
	// If this write or its batch is rolled back later, the row goes back
	// and the next append finds the copy stale.
	h.seq, h.hash = ev.Seq, ev.Hash
	return nil
}

func (db *DB) insertAudit(ctx context.Context, tx *sql.Tx, ev *store.AuditEvent) error {
	if _, err := db.txExec(ctx, tx, insertAuditSQL,
		ev.Seq, ev.ID, ms(ev.Time), ev.Actor, ev.Action, ev.Target, ev.RemoteAddr, string(ev.Details), ev.PrevHash, ev.Hash); err != nil {
		return fmt.Errorf("sqlstore: audit: insert: %w", err)
	}
	return nil
}

// AppendAudit implements store.Store.
func (db *DB) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	if ev.Action == "" {
		return fmt.Errorf("sqlstore: append audit: empty action")
	}
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error { return db.appendAudit(ctx, tx, ev) })
}

const auditColumns = "seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash"

func scanAudit(rows *sql.Rows) ([]store.AuditEvent, error) {
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		var t int64
		var details string
		if err := rows.Scan(&e.Seq, &e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.RemoteAddr, &details, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.Time = fromMS(t)
		if details != "" {
			e.Details = []byte(details)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ListAudit implements store.Store.
func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, int64, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if !f.From.IsZero() {
		add("time >= ?", ms(f.From))
	}
	if !f.To.IsZero() {
		add("time < ?", ms(f.To))
	}
	if f.Before > 0 {
		add("seq < ?", f.Before)
	}
	limit := clampLimit(f.Limit)
	q := "SELECT " + auditColumns + " FROM audit_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC LIMIT " + strconv.Itoa(limit+1)
	if err := db.chainAudit(ctx); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	evs, err := scanAudit(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	var next int64
	if len(evs) > limit {
		evs = evs[:limit]
		next = evs[limit-1].Seq
	}
	return evs, next, nil
}

// ScanAudit implements store.Store.
func (db *DB) ScanAudit(ctx context.Context, after int64, limit int) ([]store.AuditEvent, error) {
	if err := db.chainAudit(ctx); err != nil {
		return nil, fmt.Errorf("sqlstore: scan audit: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, "SELECT "+auditColumns+" FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2", after, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: scan audit: %w", err)
	}
	evs, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: scan audit: %w", err)
	}
	return evs, nil
}

// AuditHead implements store.Store. On PostgreSQL it chains the pending
// events first, as every read of the log does: the head then covers every
// event committed before the call. The head and the events it covers are
// written in one transaction on both engines, so a ScanAudit after it finds
// every event up to the head.
func (db *DB) AuditHead(ctx context.Context) (int64, string, error) {
	if err := db.chainAudit(ctx); err != nil {
		return 0, "", fmt.Errorf("sqlstore: audit head: %w", err)
	}
	var seq int64
	var hash string
	if err := db.read.QueryRowContext(ctx, readAuditHeadSQL).Scan(&seq, &hash); err != nil {
		return 0, "", fmt.Errorf("sqlstore: audit head: %w", err)
	}
	return seq, hash, nil
}

// MaxPage is the largest page any list returns.
const MaxPage = 1000

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > MaxPage:
		return MaxPage
	}
	return n
}
