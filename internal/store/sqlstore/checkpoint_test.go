package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWALStaysNearItsLimit checks that the WAL does not grow for as long as
// writes keep coming. The writes never pause and reads run beside them, so
// the background checkpoints alone would never let the WAL start again:
// the writer must finish a checkpoint itself, after which its next
// transaction starts the WAL again and journal_size_limit cuts the file
// back to WALLimit.
func TestWALStaysNearItsLimit(t *testing.T) {
	t.Parallel()
	const limit = 256 << 10
	path := filepath.Join(t.TempDir(), "jeton.db")
	db, err := Open(context.Background(), path, Options{WALLimit: limit, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// loop runs step on n goroutines until stop is closed or step fails.
	loop := func(n int, step func() error) {
		for range n {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := step(); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	var writes atomic.Int64
	var ids sync.Map // a few written ids, for the readers
	padding := strings.Repeat("x", 512)
	loop(32, func() error {
		id := hex.EncodeToString(randomBytes(t, 16)) // a random place in the b-tree
		err := db.update(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO apis (id, name, identifier, scopes, key_prefix, created_at, updated_at) VALUES ($1, $1, $1, $2, 'jtp', 0, 0)", id, padding)
			return err
		})
		if err == nil && writes.Add(1)%64 == 0 {
			ids.Store(id, true)
		}
		return err
	})
	loop(4, func() (err error) {
		ids.Range(func(k, _ any) bool {
			var name string
			err = db.read.QueryRow("SELECT name FROM apis WHERE id = $1", k).Scan(&name)
			return false
		})
		return err
	})

	// Watch the WAL file until it has been cut back three times, and for at
	// least 1,000 writes: enough to take a WAL that is never started again
	// well past the bound checked below.
	var largest, last int64
	shrinks := 0
	deadline := time.Now().Add(30 * time.Second)
	for (shrinks < 3 || writes.Load() < 1000) && time.Now().Before(deadline) && !t.Failed() {
		fi, err := os.Stat(path + "-wal")
		if err == nil {
			size := fi.Size()
			largest = max(largest, size)
			if size < last {
				shrinks++
			}
			last = size
		}
		time.Sleep(200 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	if shrinks < 3 {
		t.Errorf("after %d writes the WAL was cut back %d times, want 3; it reached %d bytes", writes.Load(), shrinks, largest)
	}
	// The writer steps in at twice the limit at the latest; a few batches
	// may go by before no reader holds the WAL up.
	if largest > 8*limit {
		t.Errorf("the WAL reached %d bytes, want at most %d", largest, 8*limit)
	}
	if db.WALRestarts() == 0 {
		t.Error("WALRestarts is 0: the writer never checkpointed")
	}
	t.Logf("%d writes, WAL cut back %d times, at most %d bytes", writes.Load(), shrinks, largest)
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Error(err)
	}
	return b
}
