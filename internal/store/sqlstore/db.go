// Package sqlstore implements store.Store on SQLite (modernc.org/sqlite, the
// embedded default) and PostgreSQL (pgx). Both engines run the same SQL text;
// the differences live in one small dialect value.
//
// On SQLite every write goes through a single writer goroutine that
// group-commits whatever is pending into one transaction (each caller's work
// in its own savepoint) and acknowledges callers only after the commit, so
// durability stays synchronous=FULL without one fsync per write.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/jetonhq/jeton/internal/store"
)

var _ store.Store = (*DB)(nil)

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = errors.New("sqlstore: closed")

// dialect is everything that differs between the two engines.
type dialect struct {
	name      string
	bytesType string
	forUpdate string // row-lock suffix for read-modify-write selects
	// skipLocked is the row-lock suffix of a select that takes what it
	// can and skips rows another transaction holds: the janitor's, which
	// must never wait, so that it can never be part of a deadlock.
	skipLocked string
	lockTable  string // fmt pattern of a statement locking a table against concurrent writers ("" on SQLite: one writer)
	isUnique   func(error) bool
	// answered reports whether err is the database's answer to a
	// statement (on PostgreSQL, the server's), not a broken connection:
	// the transaction it ended did not commit.
	answered func(error) bool
}

var sqliteDialect = dialect{
	name:       "sqlite",
	bytesType:  "BLOB",
	forUpdate:  "", // one writer: transactions are already serialised
	skipLocked: "",
	isUnique: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	answered: func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se)
	},
}

var postgresDialect = dialect{
	name:       "postgres",
	bytesType:  "BYTEA",
	forUpdate:  " FOR UPDATE",
	skipLocked: " FOR UPDATE SKIP LOCKED",
	lockTable:  "LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
	isUnique: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
	answered: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe)
	},
}

// DB is a store.Store on SQLite or PostgreSQL.
type DB struct {
	d      dialect
	read   *sql.DB // queries
	write  *sql.DB // writes; on SQLite, one connection owned by the batcher
	batch  *batcher
	closed chan struct{}
	stmts  sync.Map // SQL text -> *sql.Stmt prepared on the SQLite writer
	// readStmts holds the SQLite read pool's prepared single-row queries.
	readStmts sync.Map // SQL text -> *sql.Stmt
	dsn       string   // PostgreSQL: for the LISTEN connection
	// revoked wakes revocation feed readers after a commit that recorded
	// revocations (and, on PostgreSQL, when another node's did).
	revoked signal
	// keys, apis and clients wake the readers of KeysChanged, APIsChanged
	// and ClientsChanged.
	keys, apis, clients signal

	head auditHead // SQLite: the writer's copy of the audit head

	ckpt      *sql.DB // SQLite: the connection that checkpoints the WAL
	ckptDone  chan struct{}
	walPath   string        // SQLite: the WAL file
	walLimit  int64         // SQLite: see Options.WALLimit
	ckptEvery time.Duration // SQLite: see Options.CheckpointInterval
	// ckptCaughtUp is set when a background checkpoint has copied the
	// whole WAL; see limitWAL.
	ckptCaughtUp atomic.Bool
	walRestarts  atomic.Int64 // SQLite: checkpoints limitWAL ran

	chainDone   chan struct{} // PostgreSQL: closed when auditChainLoop ends
	chainErrors atomic.Int64  // PostgreSQL: failed rounds of auditChainLoop
}

// Options tune a DB. The zero value is the production default.
type Options struct {
	// SQLiteSynchronous is SQLite's synchronous pragma: "FULL" (default)
	// makes every acknowledged write survive power loss.
	SQLiteSynchronous string
	// MaxBatch caps how many writes are group-committed together (default 512).
	MaxBatch int
	// WALLimit is the size in bytes that SQLite's WAL is kept near under
	// sustained writes (default 256 MiB); see checkpoint.go.
	WALLimit int64
	// CheckpointInterval is how often SQLite's WAL is checkpointed in the
	// background (default 200ms).
	CheckpointInterval time.Duration
	// LockTimeout bounds how long a PostgreSQL write waits for a lock that
	// another transaction holds (the audit log's head, a row being changed)
	// before it fails, having changed nothing (default 10s; a lock_timeout
	// in the DSN takes precedence). A started write cannot be cancelled by
	// its caller (see update), so this is what keeps one stuck transaction
	// from holding every writer of every node.
	LockTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.SQLiteSynchronous == "" {
		o.SQLiteSynchronous = "FULL"
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.WALLimit <= 0 {
		o.WALLimit = 256 << 20
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 200 * time.Millisecond
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 10 * time.Second
	}
	return o
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to the database named by dsn (a file path, "sqlite:PATH" or
// a postgres:// URL), applies pending migrations, and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	var db *DB
	var err error
	if IsPostgres(dsn) {
		db, err = openPostgres(ctx, dsn, opts)
	} else {
		db, err = openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), opts)
	}
	if err != nil {
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.d.name == "postgres" {
		db.chainDone = make(chan struct{})
		go db.auditChainLoop()
	}
	if db.batch != nil {
		// The batcher owns the writer connection once it runs a batch, so
		// prepare through it, on the writer, before any batch.
		if err := db.prepareHot(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// pgPoolSize is the size of each of a node's two PostgreSQL pools, per
// GOMAXPROCS.
const pgPoolSize = 4

// openPostgres opens two pools on dsn: one for writes and one for reads.
// Writes can queue on row locks (a revocation holds revocation_head until
// it commits; a rotation holds its token's row), each waiter holding a
// connection. With one pool, such a queue also held up every read behind it
// (cache misses of verify, authorization codes, readiness probes: 20-300 ms
// on the benchmark machine during a burst of creates, when every audited
// write still took turns on the audit head). Reads get their own pool, so
// they never wait for a write.
func openPostgres(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open postgres: %w", err)
	}
	readCfg := cfg.Copy()
	if cfg.RuntimeParams["lock_timeout"] == "" {
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(opts.LockTimeout.Milliseconds(), 10)
	}
	open := func(what string, cfg *pgx.ConnConfig) (*sql.DB, error) {
		pool := stdlib.OpenDB(*cfg)
		n := pgPoolSize * runtime.GOMAXPROCS(0)
		pool.SetMaxOpenConns(n)
		pool.SetMaxIdleConns(n)
		pool.SetConnMaxIdleTime(5 * time.Minute)
		if err := pool.PingContext(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("sqlstore: connect to postgres (%s pool): %w", what, err)
		}
		return pool, nil
	}
	write, err := open("write", cfg)
	if err != nil {
		return nil, err
	}
	read, err := open("read", readCfg)
	if err != nil {
		write.Close()
		return nil, err
	}
	return &DB{d: postgresDialect, read: read, write: write, dsn: dsn, closed: make(chan struct{})}, nil
}

// busyTimeout is how long a SQLite statement waits for a lock another
// connection holds.
const busyTimeout = 5 * time.Second

func openSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlstore: empty sqlite path")
	}
	pragmas := url.Values{}
	// temp_store(MEMORY) keeps savepoint sub-journals in RAM: group commit
	// uses one savepoint per write, and on disk they cost a write syscall per
	// page. Durability is unaffected; the WAL commit is still fsynced.
	for _, p := range []string{fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()), "journal_mode(WAL)", "foreign_keys(1)", "temp_store(MEMORY)", "synchronous(" + opts.SQLiteSynchronous + ")"} {
		pragmas.Add("_pragma", p)
	}
	checkpointDSN := "file:" + path + "?" + pragmas.Encode()
	// The writer does not checkpoint inside its commits (that stalls every
	// caller of the batch); a background connection does, and the writer
	// only finishes when the WAL grows too long: see checkpoint.go.
	writeDSN := "file:" + path + "?" + pragmas.Encode() + "&_txlock=immediate" +
		"&_pragma=wal_autocheckpoint(0)" + fmt.Sprintf("&_pragma=journal_size_limit(%d)", opts.WALLimit)
	pragmas.Add("_pragma", "query_only(1)")
	readDSN := "file:" + path + "?" + pragmas.Encode()

	write, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", readDSN)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	ckpt, err := sql.Open("sqlite", checkpointDSN)
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	ckpt.SetMaxOpenConns(1)
	db := &DB{d: sqliteDialect, read: read, write: write, ckpt: ckpt, closed: make(chan struct{}), ckptDone: make(chan struct{}),
		walPath: path + "-wal", walLimit: opts.WALLimit, ckptEvery: opts.CheckpointInterval}
	go db.checkpointLoop()
	db.batch = newBatcher(write, opts.MaxBatch, func(q string) *sql.Stmt { return db.prepared(context.Background(), q) })
	db.batch.afterCommit = db.limitWAL
	return db, nil
}

// Dialect returns "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.d.name }

// Close stops the writer after it has committed everything already
// submitted, and closes the connections.
func (db *DB) Close() error {
	select {
	case <-db.closed:
		return nil
	default:
	}
	close(db.closed)
	if db.batch != nil {
		db.batch.close()
	}
	if db.chainDone != nil {
		<-db.chainDone
	}
	db.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
	db.readStmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
	if db.ckpt != nil {
		<-db.ckptDone
		db.ckpt.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		db.ckpt.Close()
	}
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	var one int
	if err := db.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	return nil
}

// queryRow runs a single-row query on the read pool. On SQLite the
// statement is prepared once and reused, as the writer's are: modernc
// parses the SQL text of an unprepared query on every call, which costs
// more than the lookup itself. Only constant query texts come here, so the
// set of statements is bounded. PostgreSQL's driver caches by itself.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if db.batch == nil {
		return db.read.QueryRowContext(ctx, query, args...)
	}
	if st, ok := db.readStmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := db.read.PrepareContext(ctx, query)
	if err != nil {
		return db.read.QueryRowContext(ctx, query, args...)
	}
	if prev, loaded := db.readStmts.LoadOrStore(query, st); loaded {
		st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

// getOne runs a single-row query on the read pool and scans its row. No
// row is store.ErrNotFound. Errors say what was asked; a not-found one also
// names shown (the key), unless it is "" because the key is untrusted input.
func getOne[T any](ctx context.Context, db *DB, scan func(rowScanner) (T, error), what, shown, query string, args ...any) (T, error) {
	v, err := scan(db.queryRow(ctx, query, args...))
	switch {
	case errors.Is(err, sql.ErrNoRows) && shown != "":
		return v, fmt.Errorf("sqlstore: %s %s: %w", what, shown, store.ErrNotFound)
	case errors.Is(err, sql.ErrNoRows):
		return v, fmt.Errorf("sqlstore: %s: %w", what, store.ErrNotFound)
	case err != nil:
		return v, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return v, nil
}

// update runs fn once in a write transaction and returns once it has
// committed. fn must use the context it is given, not ctx: that one carries
// ctx's values but is never cancelled. It must not keep tx after returning.
//
// ctx can stop a write only before it starts (while it waits for SQLite's
// writer or for a PostgreSQL connection), and the write then fails with
// ctx's error having changed nothing. Once started, a write runs to the end
// and update reports what happened. Were the caller's cancellation to reach
// the transaction, a write cancelled during its COMMIT could be stored and
// still be reported as failed: the driver stops waiting for the server's
// answer, not the server. A refresh token rotated that way would be spent
// without its client knowing, and its next use would revoke the family.
func (db *DB) update(ctx context.Context, fn writeFunc) error {
	if db.batch != nil {
		return db.batch.do(ctx, fn)
	}
	select {
	case <-db.closed:
		return ErrClosed
	default:
	}
	return db.pgUpdate(ctx, fn)
}

// pgUpdate is update on PostgreSQL, open or closing.
func (db *DB) pgUpdate(ctx context.Context, fn writeFunc) error {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	defer conn.Close()
	wctx := context.WithoutCancel(ctx)
	tx, err := conn.BeginTx(wctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	if err := runWrite(wctx, tx, fn); err != nil {
		tx.Rollback()
		return busy(err)
	}
	if err := tx.Commit(); err != nil {
		return busy(fmt.Errorf("sqlstore: commit: %w", err))
	}
	return nil
}

// runWrite runs fn in tx and turns a panic in it into an error, as
// SQLite's writer does (runSavepoint). A panic left to unwind would leave
// tx open for good, and with it its row locks and its connection: the
// deferred Conn.Close waits for a transaction that nothing ends.
func runWrite(ctx context.Context, tx *sql.Tx, fn writeFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlstore: write panicked: %v", p)
		}
	}()
	return fn(ctx, tx)
}

// busy marks a lock wait that timed out as store.ErrBusy: PostgreSQL's
// lock timeout (Options.LockTimeout), or SQLite's busy timeout (another
// process holds the write lock).
func busy(err error) error {
	var pe *pgconn.PgError
	var se *sqlite.Error
	switch {
	case errors.As(err, &pe) && pe.Code == "55P03", // lock_not_available
		errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED):
		return fmt.Errorf("%w (%w)", err, store.ErrBusy)
	}
	return err
}

// wrapUnique turns a unique-constraint violation into store.ErrAlreadyExists.
func (db *DB) wrapUnique(err error, what string) error {
	if err == nil {
		return nil
	}
	if db.d.isUnique(err) {
		return fmt.Errorf("sqlstore: %s: %w", what, store.ErrAlreadyExists)
	}
	return fmt.Errorf("sqlstore: %s: %w", what, err)
}

// Time helpers: every time is BIGINT Unix milliseconds, NULL for zero.

func ms(t time.Time) int64 { return t.UnixMilli() }

func nullMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// txExec and txQueryRow run a statement inside a write transaction. On
// SQLite the statement is prepared once on the single writer connection and
// reused: modernc would otherwise parse the SQL text on every call, which
// dominates the cost of a write. PostgreSQL's driver caches prepared
// statements per connection by itself.
// purge runs one DELETE of the janitor, which deletes at most a batch of
// rows, as a write of its own, and returns how many rows it deleted; what
// names the rows in an error.
func (db *DB) purge(ctx context.Context, what, query string, args ...any) (int, error) {
	var n int
	err := db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("sqlstore: purge %s: %w", what, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: purge %s: %w", what, err)
		}
		n = int(k)
		return nil
	})
	return n, err
}

func (db *DB) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := db.prepared(ctx, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

func (db *DB) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := db.prepared(ctx, query); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

func (db *DB) prepared(_ context.Context, query string) *sql.Stmt {
	if st, ok := db.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	return nil
}

// hotStatements are the statements of the frequent writes (token create,
// audit append, usage flush), prepared once on SQLite's writer connection.
// Preparing cannot happen lazily: inside a batch the transaction holds the
// only writer connection.
var hotStatements = []string{
	insertTokenSQL, insertSecretSQL, readAuditHeadSQL, moveAuditHeadSQL, insertAuditSQL,
	usageUpsertSQL, lastUseSQL, recordFlushSQL, savepointSQL, rollbackToSQL, releaseSQL,
}

func (db *DB) prepareHot(ctx context.Context) error {
	for _, q := range hotStatements {
		st, err := db.write.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlstore: prepare: %w", err)
		}
		db.stmts.Store(q, st)
	}
	return nil
}
