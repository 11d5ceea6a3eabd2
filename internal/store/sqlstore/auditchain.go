package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

// The audit log on PostgreSQL.
//
// The chain needs one order: each event carries the hash of the one before.
// Appending inside each write's transaction (claim the head, insert, move
// the head) made every audited write of the cluster take turns on the
// audit_head row from its claim to its COMMIT, WAL flush included: about
// 750 audited writes a second on the benchmark machine, whatever the number
// of nodes, and every waiter held a connection.
//
// So on PostgreSQL a write records its event in audit_pending, in its own
// transaction and sharing no lock with other writes: the event commits if
// and only if the change does. A chainer then moves committed pending
// events into audit_events, in the order of their pending number, under the
// audit_head lock: many events per transaction, and no request waits for it.
// Every node runs one every auditChainEvery, and every read of the log
// chains first, so a reader sees every event committed before it asked.
// Chainers of several nodes take turns on the head lock; one that waited
// then reads the pending events anew and finds what the other left.
//
// SQLite keeps appending inside the transaction: its single writer already
// serialises every write, so the head costs no waiting there.

// auditChainEvery is how often each node chains pending audit events.
const auditChainEvery = 100 * time.Millisecond

// auditChainBatch is how many pending events one chaining transaction
// takes (10 parameters each: far below PostgreSQL's 65535).
const auditChainBatch = 500

// appendAuditPending records ev, to be chained, inside tx.
func (db *DB) appendAuditPending(ctx context.Context, tx *sql.Tx, ev store.AuditEvent) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_pending (id, time, actor, action, target, remote_addr, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		ev.ID, ms(ev.Time), ev.Actor, ev.Action, ev.Target, ev.RemoteAddr, string(ev.Details)); err != nil {
		return fmt.Errorf("sqlstore: audit: record: %w", err)
	}
	return nil
}

// chainAudit appends every pending audit event committed so far to the
// chain. It does nothing on SQLite.
func (db *DB) chainAudit(ctx context.Context) error {
	if db.d.name != "postgres" {
		return nil
	}
	return db.chainPending(ctx, db.update)
}

// chainPending chains pending events with update (DB.update, or pgUpdate
// once the store is closing) until none is left.
func (db *DB) chainPending(ctx context.Context, update func(context.Context, writeFunc) error) error {
	// Taking the head lock costs a transaction; look first.
	var one int
	switch err := db.read.QueryRowContext(ctx, "SELECT 1 FROM audit_pending LIMIT 1").Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("sqlstore: chain audit events: %w", err)
	}
	for {
		var n int
		err := update(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			n, err = db.chainBatch(ctx, tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlstore: chain audit events: %w", err)
		}
		if n < auditChainBatch {
			return nil
		}
	}
}

// chainBatch chains up to auditChainBatch pending events inside tx and
// returns how many it chained.
func (db *DB) chainBatch(ctx context.Context, tx *sql.Tx) (int, error) {
	var seq int64
	var hash string
	// The lock comes first: the pending events are read after it, so
	// that a chainer that waited for another sees what that one left.
	if err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").Scan(&seq, &hash); err != nil {
		return 0, fmt.Errorf("lock head: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT n, id, time, actor, action, target, remote_addr, details
		FROM audit_pending ORDER BY n LIMIT `+strconv.Itoa(auditChainBatch))
	if err != nil {
		return 0, fmt.Errorf("read pending: %w", err)
	}
	var evs []store.AuditEvent
	var ns []int64
	for rows.Next() {
		var e store.AuditEvent
		var n, t int64
		var details string
		if err := rows.Scan(&n, &e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.RemoteAddr, &details); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read pending: %w", err)
		}
		e.Time = fromMS(t)
		if details != "" {
			e.Details = []byte(details)
		}
		evs = append(evs, e)
		ns = append(ns, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read pending: %w", err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	var q strings.Builder
	q.WriteString("INSERT INTO audit_events (" + auditColumns + ") VALUES ")
	args := make([]any, 0, 10*len(evs))
	for i := range evs {
		e := &evs[i]
		e.Seq, e.PrevHash = seq+1, hash
		e.Hash = e.ChainHash(e.PrevHash)
		seq, hash = e.Seq, e.Hash
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + placeholders(len(args)+1, len(args)+10) + ")")
		args = append(args, e.Seq, e.ID, ms(e.Time), e.Actor, e.Action, e.Target, e.RemoteAddr, string(e.Details), e.PrevHash, e.Hash)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return 0, fmt.Errorf("insert: %w", err)
	}
	// Exactly the rows read: a pending event with a smaller number whose
	// transaction commits only now is chained next time.
	if _, err := tx.ExecContext(ctx, "DELETE FROM audit_pending WHERE n = ANY($1)", ns); err != nil {
		return 0, fmt.Errorf("delete pending: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", seq, hash); err != nil {
		return 0, fmt.Errorf("move head: %w", err)
	}
	return len(evs), nil
}

// auditChainLoop chains pending audit events every auditChainEvery until
// the store closes, and once more then. A failure leaves the events
// pending, where they are safe: the next round, another node, or the next
// read of the log (which reports the error) chains them.
func (db *DB) auditChainLoop() {
	defer close(db.chainDone)
	t := time.NewTicker(auditChainEvery)
	defer t.Stop()
	chain := func(update func(context.Context, writeFunc) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if db.chainPending(ctx, update) != nil {
			db.chainErrors.Add(1)
		}
	}
	for {
		select {
		case <-db.closed:
			chain(db.pgUpdate) // update refuses writes once closed
			return
		case <-t.C:
			chain(db.update)
		}
	}
}

// AuditChainErrors reports how many background rounds of chaining audit
// events failed (PostgreSQL; always 0 on SQLite). Events of a failed round
// stay pending and are chained by a later one.
func (db *DB) AuditChainErrors() int64 { return db.chainErrors.Load() }
