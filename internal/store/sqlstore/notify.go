package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// invalidationChannel is the PostgreSQL NOTIFY channel on which every node
// learns which cached tokens changed on another node.
const invalidationChannel = "jeton_invalidate"

// changeChannel is the NOTIFY channel on which every node learns that
// another node changed the signing keys, the APIs or the OAuth clients
// (the payload names which: changeKeys, changeAPIs, changeClients), so
// that it reloads them at once instead of at its next periodic reload.
const changeChannel = "jeton_change"

// What a notice on changeChannel says changed.
const (
	changeKeys    = "keys"
	changeAPIs    = "apis"
	changeClients = "clients"
)

// notifyChange publishes inside tx that what changed, delivered only if,
// and when, tx commits. On SQLite it does nothing: there is one node.
func (db *DB) notifyChange(ctx context.Context, tx *sql.Tx, what string) error {
	if db.d.name != "postgres" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", changeChannel, what); err != nil {
		return fmt.Errorf("sqlstore: notify change of %s: %w", what, err)
	}
	return nil
}

// announcing runs fn in a write transaction, as update does, and when it
// commits wakes the readers of what's change signal on this node and, on
// PostgreSQL, on every node (notifyChange).
func (db *DB) announcing(ctx context.Context, what string, fn writeFunc) error {
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return db.notifyChange(ctx, tx, what)
	})
	if err == nil {
		db.changed(what)
	}
	return err
}

// changed wakes the readers of what's change signal.
func (db *DB) changed(what string) {
	switch what {
	case changeKeys:
		db.keys.broadcast()
	case changeAPIs:
		db.apis.broadcast()
	case changeClients:
		db.clients.broadcast()
	}
}

// KeysChanged returns a channel that is closed after a commit of this
// store that changed the signing keys and, on PostgreSQL, when another
// node's is heard, or when the LISTEN connection that
// SubscribeInvalidations runs (re)connects and may have missed one. The
// caller reloads the keys, then waits on a channel taken before the
// reload.
func (db *DB) KeysChanged() <-chan struct{} { return db.keys.wait() }

// APIsChanged is KeysChanged for the APIs.
func (db *DB) APIsChanged() <-chan struct{} { return db.apis.wait() }

// ClientsChanged is KeysChanged for the OAuth clients and their secrets.
func (db *DB) ClientsChanged() <-chan struct{} { return db.clients.wait() }

// hashesPerNotice keeps a notification payload far below PostgreSQL's
// 8000-byte limit (64 hex characters and a comma per hash).
const hashesPerNotice = 100

// notifyHashes publishes changed secret hashes inside tx, so that they are
// delivered only if, and when, tx commits. SQLite serves one node and needs
// no broadcast.
func (db *DB) notifyHashes(ctx context.Context, tx *sql.Tx, hashes []tokenfmt.Hash) error {
	if db.d.name != "postgres" {
		return nil
	}
	for len(hashes) > 0 {
		n := min(len(hashes), hashesPerNotice)
		parts := make([]string, n)
		for i := range n {
			parts[i] = hex.EncodeToString(hashes[i][:])
		}
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", invalidationChannel, "h:"+strings.Join(parts, ",")); err != nil {
			return fmt.Errorf("sqlstore: notify invalidation: %w", err)
		}
		hashes = hashes[n:]
	}
	return nil
}

// SubscribeInvalidations calls onHash for every secret hash another node
// changed, until ctx ends. Whenever it may have missed notifications (at
// start, after a lost connection) it calls onReset, and the caller drops
// its whole cache. Every attempt to listen that fails, and every lost
// connection, is passed to onError before the pause that precedes the
// next attempt, so that an operator learns that this node is, for now,
// deaf to the other nodes' changes. On SQLite it returns at once: there
// is one node.
//
// The same connection listens for revocations recorded by other nodes and
// wakes the readers of RevocationsChanged, and for changes of the signing
// keys, APIs and clients, waking the readers of KeysChanged, APIsChanged
// and ClientsChanged, also after every (re)connection: while it runs, this
// node hears of another node's change within milliseconds.
func (db *DB) SubscribeInvalidations(ctx context.Context, onHash func(tokenfmt.Hash), onReset func(), onError func(error)) {
	if db.d.name != "postgres" {
		return
	}
	var wait backoff
	for ctx.Err() == nil {
		listened, err := db.listen(ctx, onHash, onReset)
		if ctx.Err() != nil {
			return
		}
		onError(fmt.Errorf("sqlstore: listen for other nodes' changes: %w", err))
		if listened {
			wait.reset()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait.next()):
		}
	}
}

// backoff is the pause before the LISTEN connection is made again: it
// doubles after every attempt that could not listen, up to 5 s, and starts
// again from 100 ms once one could. (It did not start again: a node whose
// connection had failed a few times at start-up, and then lasted for days,
// waited 5 s after its next drop, with its cache unaware of other nodes'
// changes all that time.)
type backoff struct{ last time.Duration }

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// next returns the pause before the next attempt.
func (b *backoff) next() time.Duration {
	b.last = min(max(2*b.last, minBackoff), maxBackoff)
	return b.last
}

// reset records that an attempt got to listen.
func (b *backoff) reset() { b.last = 0 }

// listen listens on one connection until it fails; listened reports
// whether it got as far as listening.
func (db *DB) listen(ctx context.Context, onHash func(tokenfmt.Hash), onReset func()) (listened bool, err error) {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+invalidationChannel); err != nil {
		return false, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+revocationChannel); err != nil {
		return false, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return false, err
	}
	onReset() // anything before this point may have been missed
	db.revocationsRecorded()
	for _, what := range []string{changeKeys, changeAPIs, changeClients} {
		db.changed(what)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		switch n.Channel {
		case revocationChannel:
			db.revocationsRecorded()
			continue
		case changeChannel:
			db.changed(n.Payload)
			continue
		}
		payload, ok := strings.CutPrefix(n.Payload, "h:")
		if !ok {
			continue
		}
		for part := range strings.SplitSeq(payload, ",") {
			var h tokenfmt.Hash
			if b, err := hex.DecodeString(part); err == nil && len(b) == len(h) {
				copy(h[:], b)
				onHash(h)
			}
		}
	}
}
