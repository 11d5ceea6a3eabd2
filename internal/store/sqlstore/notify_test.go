package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	var b backoff
	var got []time.Duration
	for range 8 {
		got = append(got, b.next())
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses after failed attempts: %v, want %v ms", got, want)
		}
	}
	b.reset()
	if d := b.next(); d != minBackoff {
		t.Errorf("pause after a connection that listened: %v, want %v", d, minBackoff)
	}
}

// TestPostgresInvalidationsSurviveALostConnection kills the LISTEN
// connection, three times: each time the subscriber must connect again,
// say that it may have missed notifications (onReset, so that the caller
// drops its cache), and deliver the notifications sent after.
func TestPostgresInvalidationsSurviveALostConnection(t *testing.T) {
	t.Parallel()
	dsn, app := taggedPostgresDSN(t) // to find this node's LISTEN connection
	db := openPostgresT(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	resets := make(chan struct{}, 16)
	hashes := make(chan tokenfmt.Hash, 1024) // NOTIFY is database-wide: other tests' hashes arrive too
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.SubscribeInvalidations(subCtx, func(h tokenfmt.Hash) {
			select {
			case hashes <- h:
			default:
			}
		}, func() { resets <- struct{}{} })
	}()
	defer func() { stop(); <-done }()

	awaitReset := func(what string) {
		t.Helper()
		select {
		case <-resets:
		case <-ctx.Done():
			t.Fatalf("no reset %s", what)
		}
	}
	awaitHash := func(want tokenfmt.Hash) {
		t.Helper()
		for {
			select {
			case h := <-hashes:
				if h == want {
					return
				}
			case <-ctx.Done():
				t.Fatal("the notification never arrived")
			}
		}
	}
	notify := func() tokenfmt.Hash {
		t.Helper()
		var h tokenfmt.Hash
		rand.Read(h[:])
		if _, err := db.write.ExecContext(ctx, "SELECT pg_notify($1, $2)", invalidationChannel, "h:"+hex.EncodeToString(h[:])); err != nil {
			t.Fatal(err)
		}
		return h
	}

	awaitReset("at start")
	awaitHash(notify())
	for i := range 3 {
		var killed int
		if err := db.read.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%'`, app).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed < 1 { // more if the one killed before has not quite gone yet
			t.Fatalf("round %d: no LISTEN connection to terminate", i+1)
		}
		awaitReset(fmt.Sprintf("after the connection was lost (round %d)", i+1))
		awaitHash(notify())
	}
}
