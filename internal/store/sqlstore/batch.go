package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// batcher owns SQLite's single writer connection. It takes every pending
// write, runs each in its own savepoint of one IMMEDIATE transaction, commits
// once, and only then acknowledges the callers. A write that fails rolls back
// to its savepoint and fails alone; a failed commit fails the whole batch.
type batcher struct {
	db       *sql.DB
	maxBatch int
	reqs     chan *writeReq
	quit     chan struct{}
	done     chan struct{}
	once     sync.Once
	// prepared returns the statement prepared for query on the writer, or nil.
	prepared func(query string) *sql.Stmt
	// afterCommit, if set, runs on the writer connection after each batch
	// has been acknowledged, before the next one begins.
	afterCommit func()
}

type writeReq struct {
	ctx  context.Context
	fn   writeFunc
	done chan error
}

// writeFunc is one caller's write. The context it is given carries the
// caller's values but can never be cancelled: see runSavepoint.
type writeFunc func(context.Context, *sql.Tx) error

func newBatcher(db *sql.DB, maxBatch int, prepared func(string) *sql.Stmt) *batcher {
	b := &batcher{
		prepared: prepared,
		db:       db,
		maxBatch: maxBatch,
		reqs:     make(chan *writeReq, maxBatch),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go b.run()
	return b
}

var reqPool = sync.Pool{New: func() any { return &writeReq{done: make(chan error, 1)} }}

// do submits fn and waits until the transaction holding it has committed.
func (b *batcher) do(ctx context.Context, fn writeFunc) error {
	select {
	case <-b.quit:
		return ErrClosed
	default:
	}
	r := reqPool.Get().(*writeReq)
	r.ctx, r.fn = ctx, fn
	select {
	case b.reqs <- r:
	case <-b.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the write may
	// already be committed, and the caller must not be told otherwise.
	var err error
	select {
	case err = <-r.done:
	case <-b.done:
		// The writer has stopped; it answered every request it drained
		// before stopping, so an empty done means this one was never run.
		select {
		case err = <-r.done:
		default:
			return ErrClosed
		}
	}
	r.ctx, r.fn = nil, nil
	reqPool.Put(r)
	return err
}

func (b *batcher) close() {
	b.once.Do(func() { close(b.quit) })
	<-b.done
}

func (b *batcher) run() {
	defer close(b.done)
	batch := make([]*writeReq, 0, b.maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-b.reqs:
			batch = append(batch, r)
		case <-b.quit:
			// Commit whatever was queued before the close.
			for {
				select {
				case r := <-b.reqs:
					b.commit(append(batch[:0], r))
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < b.maxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		b.commit(batch)
		if b.afterCommit != nil {
			b.afterCommit()
		}
	}
}

func (b *batcher) commit(batch []*writeReq) {
	errs := make([]error, len(batch))
	tx, err := b.db.BeginTx(context.Background(), nil)
	if err != nil {
		err = busy(fmt.Errorf("sqlstore: begin: %w", err))
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err // the caller gave up before its write started
			continue
		}
		errs[i] = b.runSavepoint(tx, r)
	}
	if err := tx.Commit(); err != nil {
		err = busy(fmt.Errorf("sqlstore: commit: %w", err))
		for i := range errs {
			errs[i] = err
		}
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

func (b *batcher) exec(tx *sql.Tx, query string) error {
	var err error
	if st := b.prepared(query); st != nil {
		_, err = tx.Stmt(st).Exec()
	} else {
		_, err = tx.Exec(query)
	}
	return err
}

const (
	savepointSQL  = "SAVEPOINT w"
	rollbackToSQL = "ROLLBACK TO w"
	releaseSQL    = "RELEASE w"
)

func (b *batcher) runSavepoint(tx *sql.Tx, r *writeReq) (err error) {
	if err := b.exec(tx, savepointSQL); err != nil {
		return fmt.Errorf("sqlstore: savepoint: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlstore: write panicked: %v", p)
		}
		if err != nil {
			if rbErr := b.exec(tx, rollbackToSQL); rbErr != nil {
				err = fmt.Errorf("%w (rollback to savepoint: %v)", err, rbErr)
			}
		}
		if relErr := b.exec(tx, releaseSQL); relErr != nil && err == nil {
			err = fmt.Errorf("sqlstore: release savepoint: %w", relErr)
		}
	}()
	// The statements run under a context that is never cancelled. The
	// driver interrupts a statement whose context ends, and SQLite answers
	// an interrupted write inside a transaction by rolling the whole
	// transaction back: the batch's other writes would be lost with it, and
	// the statements after it would run outside any transaction, each
	// committing on its own while its caller is told the batch failed. A
	// caller that gave up before its write started is skipped in commit;
	// once started, a write runs to completion. (This also spares the
	// driver a watcher goroutine per statement.)
	return r.fn(context.WithoutCancel(r.ctx), tx)
}
