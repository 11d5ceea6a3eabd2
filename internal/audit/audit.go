// Package audit checks Jeton's append-only, hash-chained audit log. Events
// are appended by the store in the same transaction as the change they
// record; this package proves that the chain is intact.
package audit

import (
	"context"
	"fmt"
	"math"

	"github.com/jetonhq/jeton/internal/store"
)

// BrokenError names the first entry at which the chain does not hold. ID is
// empty when the fault is not in one stored entry: entries are missing, or
// the log goes on past its head.
type BrokenError struct {
	Seq    int64
	ID     string
	Reason string
}

func (e *BrokenError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("audit: chain broken at entry %d: %s", e.Seq, e.Reason)
	}
	return fmt.Sprintf("audit: chain broken at entry %d (%s): %s", e.Seq, e.ID, e.Reason)
}

// scanPage is how many entries Verify reads at a time.
const scanPage = 1000

// Verify walks the whole log in order and checks that sequence numbers
// start at 1 and have no gaps, each entry links to the hash of the one
// before, each hash matches the entry's contents, and the log ends exactly
// at its head (store.Store.AuditHead), which the store records beside the
// entries: deleting the newest entries, or all of them, leaves a chain that
// still links, but not one that ends at the head. It returns the number of
// entries checked, and a *BrokenError at the first entry that fails.
//
// Entries appended while Verify runs are checked up to the head it reads
// once it has walked the log; later ones are left for the next run.
func Verify(ctx context.Context, st store.Store) (int64, error) {
	w := walker{st: st}
	// From the lowest number there is, not from 1: an entry numbered 0 or
	// less would be listed like any other, so it must not go unseen.
	// (No CHECK (seq > 0) stops such a row: SQLite cannot add one to the
	// existing table without rebuilding it.)
	if err := w.walk(ctx, math.MinInt64, math.MaxInt64); err != nil {
		return w.n, err
	}
	walked := w.last
	seq, hash, err := st.AuditHead(ctx)
	if err != nil {
		return w.n, fmt.Errorf("audit: verify: %w", err)
	}
	if seq < walked {
		// The head covers every entry appended before it was read, and
		// these were there before.
		return w.n, &BrokenError{Seq: seq + 1, Reason: fmt.Sprintf("the log's head says it ends at entry %d, but entries go on to %d", seq, walked)}
	}
	if seq > walked {
		// Appended since the walk ended, or deleted: every entry up to
		// the head is there to read now.
		if err := w.walk(ctx, walked, seq); err != nil {
			return w.n, err
		}
		if w.last < seq {
			return w.n, &BrokenError{Seq: w.last + 1, Reason: missing(w.last+1, seq) + fmt.Sprintf(": the log's head says it ends at entry %d", seq)}
		}
	}
	if w.prev != hash {
		return w.n, &BrokenError{Seq: w.last, ID: w.lastID, Reason: "does not match the log's head, which records another hash"}
	}
	return w.n, nil
}

// missing says that entries from to to are missing.
func missing(from, to int64) string {
	if from == to {
		return fmt.Sprintf("entry %d is missing", from)
	}
	return fmt.Sprintf("entries %d to %d are missing", from, to)
}

// walker checks the chain entry by entry, carrying what each entry must
// link to.
type walker struct {
	st     store.Store
	n      int64  // entries checked
	last   int64  // the number of the last entry checked (0: none)
	lastID string // and its ID
	prev   string // and its hash
}

// walk checks the entries numbered above after, up to and including until,
// continuing the chain from the last entry checked.
func (w *walker) walk(ctx context.Context, after, until int64) error {
	for {
		evs, err := w.st.ScanAudit(ctx, after, scanPage)
		if err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		for _, e := range evs {
			if e.Seq > until {
				return nil
			}
			switch {
			case e.Seq < 1:
				return &BrokenError{Seq: e.Seq, ID: e.ID, Reason: "is numbered outside the log, which starts at entry 1"}
			case e.Seq != w.last+1:
				return &BrokenError{Seq: e.Seq, ID: e.ID, Reason: missing(w.last+1, e.Seq-1)}
			case e.PrevHash != w.prev:
				return &BrokenError{Seq: e.Seq, ID: e.ID, Reason: "does not link to the previous entry"}
			case e.Hash != e.ChainHash(w.prev):
				return &BrokenError{Seq: e.Seq, ID: e.ID, Reason: "contents do not match the recorded hash"}
			}
			w.prev, w.last, w.lastID = e.Hash, e.Seq, e.ID
			w.n++
		}
		after = w.last
	}
}
