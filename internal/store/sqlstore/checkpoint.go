package sqlstore

import (
	"fmt"
	"os"
	"time"
)

// Checkpoints on SQLite.
//
// Every commit appends its pages to the WAL. A checkpoint copies them back
// into the database file, and the WAL starts again from its beginning only
// when a write transaction begins at a moment when every frame has been
// copied and no reader still uses one. A checkpoint that runs beside a busy
// writer never sees that moment: it copies what the WAL held when it
// started, and meanwhile the writer, which commits every few milliseconds,
// has appended more. Left to the background checkpoints alone, the WAL grew
// for as long as the load lasted (to 700 MB in a minute of creates on the
// benchmark machine), and with it the disk space used, the shared-memory
// index every reader searches, and the time recovery spends reading the WAL
// after a crash.
//
// So a background connection copies the bulk, every CheckpointInterval,
// without ever blocking the writer or a reader, and the writer finishes the
// job once the WAL file has outgrown WALLimit: between two batches, after
// acknowledging the first, it checkpoints on its own connection. Nothing is
// appended while it does, so it copies what the background checkpoint has
// not, waits (briefly) for the readers still on the WAL, and its next
// transaction starts the WAL again; journal_size_limit (WALLimit on the
// writer) then truncates the file back to that size. It steps in right
// after a background checkpoint has caught up, when its own share is
// smallest, or at twice the limit if none has. On the benchmark machine
// this costs the writer 20-50 ms per restart, which at the default limit
// comes every few seconds of the heaviest write load.

// checkpointLoop copies the WAL back into the database file in the
// background. PASSIVE checkpoints never block the writer or readers; they
// copy what they can and the next round continues.
func (db *DB) checkpointLoop() {
	defer close(db.ckptDone)
	t := time.NewTicker(db.ckptEvery)
	defer t.Stop()
	for {
		select {
		case <-db.closed:
			return
		case <-t.C:
			var busy, log, done int
			err := db.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
			if err == nil && busy == 0 && done == log {
				db.ckptCaughtUp.Store(true)
			}
		}
	}
}

// restartWait caps how long the writer's checkpoint waits for the readers
// still on the WAL.
const restartWait = 20 * time.Millisecond

// limitWAL runs on the writer between batches. When the WAL file is
// longer than db.walLimit, it checkpoints on the writer connection, so that
// the next write transaction starts the WAL again: as soon as a background
// checkpoint has caught up (then the writer's share is what was committed
// while that one ran), or, if none has by then, once the file is twice the
// limit.
func (db *DB) limitWAL() {
	caughtUp := db.ckptCaughtUp.Load()
	fi, err := os.Stat(db.walPath)
	if err != nil || fi.Size() <= db.walLimit || !caughtUp && fi.Size() <= 2*db.walLimit {
		return
	}
	db.ckptCaughtUp.Store(false)
	db.walRestarts.Add(1)
	// RESTART copies the rest of the WAL, then waits until no reader still
	// uses it, so that the next write transaction starts it again. Readers
	// that begin meanwhile read the database file and do not hold it up; the
	// wait is for those already running, which are short, so it is capped
	// well below the busy timeout a write would wait.
	db.write.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", restartWait.Milliseconds()))
	db.write.Exec("PRAGMA wal_checkpoint(RESTART)")
	db.write.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
}

// WALSize returns the size in bytes of SQLite's WAL file, or 0 on
// PostgreSQL or when there is none.
func (db *DB) WALSize() int64 {
	if db.walPath == "" {
		return 0
	}
	fi, err := os.Stat(db.walPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WALRestarts returns how many times the SQLite writer has checkpointed the
// WAL itself because it had outgrown its limit (see limitWAL).
func (db *DB) WALRestarts() int64 { return db.walRestarts.Load() }
