// Package audit checks Jeton's append-only, hash-chained audit log. Events
// are appended by the store in the same transaction as the change they
// record; this package proves that the chain is intact.
package audit

import (
	"context"
	"fmt"

	"github.com/jetonhq/jeton/internal/store"
)

// BrokenError names the first entry at which the chain does not hold.
type BrokenError struct {
	Seq    int64
	ID     string
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit: chain broken at entry %d (%s): %s", e.Seq, e.ID, e.Reason)
}

// Verify walks the whole log in order and checks that sequence numbers have
// no gaps, each entry links to the hash of the one before, and each hash
// matches the entry's contents. It returns the number of entries checked,
// and a *BrokenError at the first entry that fails.
func Verify(ctx context.Context, st store.Store) (int64, error) {
	var n, after int64
	prev := ""
	for {
		evs, err := st.ScanAudit(ctx, after, 1000)
		if err != nil {
			return n, err
		}
		if len(evs) == 0 {
			return n, nil
		}
		for _, e := range evs {
			switch {
			case e.Seq != after+1:
				return n, &BrokenError{Seq: e.Seq, ID: e.ID, Reason: fmt.Sprintf("entry %d is missing", after+1)}
			case e.PrevHash != prev:
				return n, &BrokenError{Seq: e.Seq, ID: e.ID, Reason: "does not link to the previous entry"}
			case e.Hash != e.ChainHash(prev):
				return n, &BrokenError{Seq: e.Seq, ID: e.ID, Reason: "contents do not match the recorded hash"}
			}
			prev, after = e.Hash, e.Seq
			n++
		}
	}
}
