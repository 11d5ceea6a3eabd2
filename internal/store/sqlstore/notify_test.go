package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
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
// connection, three times: each time the subscriber must report the lost
// connection (onError), connect again, say that it may have missed
// notifications (onReset, so that the caller drops its cache), and deliver
// the notifications sent after.
func TestPostgresInvalidationsSurviveALostConnection(t *testing.T) {
	t.Parallel()
	dsn, app := taggedPostgresDSN(t) // to find this node's LISTEN connection
	db := openPostgresT(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	resets := make(chan struct{}, 16)
	failures := make(chan error, 16)
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
		}, func() { resets <- struct{}{} }, func(err error) { failures <- err })
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
	select {
	case err := <-failures:
		t.Fatalf("a failure reported before any: %v", err)
	default:
	}
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
		select {
		case err := <-failures:
			if err == nil {
				t.Fatalf("round %d: the lost connection was reported as a nil error", i+1)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: the lost connection was never reported", i+1)
		}
		awaitReset(fmt.Sprintf("after the connection was lost (round %d)", i+1))
		awaitHash(notify())
	}
}

// changeSignals are the store's change signals, each with a write that
// must close it and a write of the same kind that fails and must not.
var changeSignals = []struct {
	name          string
	signal        func(db *DB) <-chan struct{}
	change, fails func(t *testing.T, db *DB) error
}{
	{"APIs", (*DB).APIsChanged,
		func(t *testing.T, db *DB) error {
			now := time.Now()
			a := store.API{ID: ids.New(ids.API, now), Name: "api" + ids.New("", now), Identifier: "https://" + ids.New("x", now) + ".example.com",
				KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
			return db.CreateAPI(context.Background(), a, store.AuditEvent{Action: "api.create"})
		},
		func(t *testing.T, db *DB) error {
			_, err := db.UpdateAPI(context.Background(), "api_nope", func(*store.API) error { return nil }, store.AuditEvent{})
			return err
		}},
	{"clients", (*DB).ClientsChanged,
		func(t *testing.T, db *DB) error {
			now := time.Now()
			c := store.Client{ID: ids.New(ids.Client, now), Name: "app", Type: store.ClientPublic, GrantTypes: []string{"authorization_code"},
				RedirectURIs: []string{"https://app.example.com/cb"}, TokenFormat: store.FormatOpaque, SigningAlg: "ES256", AuthMethod: "none",
				AccessTokenTTL: time.Hour, RefreshTokenTTL: time.Hour, CreatedAt: now, UpdatedAt: now}
			return db.CreateClient(context.Background(), c, nil, store.AuditEvent{Action: "client.create"})
		},
		func(t *testing.T, db *DB) error {
			_, err := db.DeleteClient(context.Background(), "cli_nope", store.AuditEvent{})
			return err
		}},
	{"keys", (*DB).KeysChanged,
		func(t *testing.T, db *DB) error {
			now := time.Now()
			k := store.SigningKey{ID: ids.New(ids.Key, now), Alg: "ES256", PublicJWK: json.RawMessage(`{}`), Private: []byte{1}, CreatedAt: now, ActiveAt: now}
			return db.UpdateSigningKeys(context.Background(), func([]store.SigningKey) ([]store.SigningKey, []string, error) {
				return []store.SigningKey{k}, nil, nil
			}, store.AuditEvent{Action: "key.create"})
		},
		func(t *testing.T, db *DB) error {
			return db.UpdateSigningKeys(context.Background(), func([]store.SigningKey) ([]store.SigningKey, []string, error) {
				return nil, nil, errors.New("refused")
			}, store.AuditEvent{})
		}},
}

// TestChangeSignals checks that a committed change of the APIs, clients or
// signing keys closes its signal on the store that made it (both
// engines), that a failed one does not, and that on PostgreSQL another
// node's store, listening, hears of it.
func TestChangeSignals(t *testing.T) {
	t.Parallel()
	closed := func(ch <-chan struct{}, within time.Duration) bool {
		select {
		case <-ch:
			return true
		default:
		}
		select {
		case <-ch:
			return true
		case <-time.After(within):
			return false
		}
	}
	engines := map[string]func(t *testing.T) (node, other *DB){
		"sqlite": func(t *testing.T) (*DB, *DB) {
			db := openSQLiteT(t, filepath.Join(t.TempDir(), "jeton.db"))
			t.Cleanup(func() { db.Close() })
			return db, nil
		},
		"postgres": func(t *testing.T) (*DB, *DB) {
			dsn := storetest.PostgresDSN(t)
			node, other := openPostgresT(t, dsn), openPostgresT(t, dsn)
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			reset := make(chan struct{}, 1)
			go other.SubscribeInvalidations(ctx, func(tokenfmt.Hash) {}, func() {
				select {
				case reset <- struct{}{}:
				default:
				}
			}, func(error) {})
			if !closed(reset, 10*time.Second) {
				t.Fatal("the other node never listened")
			}
			return node, other
		},
	}
	for engine, open := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			node, other := open(t)
			for _, s := range changeSignals {
				mine := s.signal(node)
				if err := s.fails(t, node); err == nil {
					t.Fatalf("%s: the failing write did not fail", s.name)
				}
				if closed(mine, 50*time.Millisecond) {
					t.Errorf("%s: a failed write closed the signal", s.name)
				}
				var theirs <-chan struct{}
				if other != nil {
					theirs = s.signal(other)
				}
				if err := s.change(t, node); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if !closed(mine, 0) {
					t.Errorf("%s: a committed change did not close this store's signal", s.name)
				}
				if theirs != nil && !closed(theirs, 10*time.Second) {
					t.Errorf("%s: another node's store did not hear of the change", s.name)
				}
			}
		})
	}
}
