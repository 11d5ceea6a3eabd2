package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
)

// keyTests cover signing keys.
var keyTests = []storeTest{
	{"SigningKeyRoundTrip", testSigningKeyRoundTrip},
	{"SigningKeyPutReplaceDelete", testSigningKeyPutReplaceDelete},
	{"SigningKeyUpdateFailureChangesNothing", testSigningKeyUpdateFailure},
	{"SigningKeyConcurrentUpdates", testSigningKeyConcurrentUpdates},
}

func newSigningKey(alg string, created time.Time) store.SigningKey {
	id := ids.New(ids.Key, created)
	return store.SigningKey{
		ID:        id,
		Alg:       alg,
		PublicJWK: json.RawMessage(`{"kty":"EC","kid":"` + id + `","crv":"P-256","x":"eA","y":"eQ"}`),
		Private:   []byte{0x01, 0x00, 0xff, 0x7f, 0x80},
		CreatedAt: created,
		ActiveAt:  created,
	}
}

// putKeys stores keys in one UpdateSigningKeys call.
func putKeys(t *testing.T, s store.Store, keys ...store.SigningKey) {
	t.Helper()
	err := s.UpdateSigningKeys(ctx, func([]store.SigningKey) ([]store.SigningKey, []string, error) {
		return keys, nil, nil
	}, ev("signing_key.create", keys[0].ID))
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
}

func listKeys(t *testing.T, s store.Store) []store.SigningKey {
	t.Helper()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	return keys
}

func testSigningKeyRoundTrip(t *testing.T, s store.Store) {
	if got := listKeys(t, s); len(got) != 0 {
		t.Fatalf("new store has %d signing keys", len(got))
	}
	a := newSigningKey("ES256", base)
	b := newSigningKey("RS256", base.Add(time.Second))
	b.ActiveAt = base.Add(10 * time.Minute)
	b.RetiredAt = base.Add(time.Hour)
	b.ExpiresAt = base.Add(25 * time.Hour)
	putKeys(t, s, b, a)
	// Listed in ID (creation) order, every field intact, zero times zero.
	if diff := cmp.Diff(listKeys(t, s), []store.SigningKey{a, b}); diff != "" {
		t.Errorf("ListSigningKeys (-got +want):\n%s", diff)
	}
	// The updater sees the same keys.
	err := s.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
		if diff := cmp.Diff(keys, []store.SigningKey{a, b}); diff != "" {
			t.Errorf("keys passed to update (-got +want):\n%s", diff)
		}
		return nil, nil, nil
	}, ev("signing_key.rotate", ""))
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	// The empty update changed nothing and was not audited.
	evs := audit(t, s)
	if len(evs) != 1 || evs[0].Action != "signing_key.create" {
		t.Errorf("audit = %+v, want one signing_key.create event", evs)
	}
}

func testSigningKeyPutReplaceDelete(t *testing.T, s store.Store) {
	a := newSigningKey("ES256", base)
	b := newSigningKey("EdDSA", base.Add(time.Millisecond))
	putKeys(t, s, a, b)
	later := base.Add(time.Hour)
	c := newSigningKey("ES256", later)
	c.ActiveAt = later.Add(10 * time.Minute)
	err := s.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
		if len(keys) != 2 {
			return nil, nil, fmt.Errorf("update got %d keys, want 2", len(keys))
		}
		retired := keys[0]
		retired.RetiredAt = c.ActiveAt
		retired.ExpiresAt = c.ActiveAt.Add(24 * time.Hour)
		return []store.SigningKey{retired, c}, []string{b.ID, "key_missing"}, nil
	}, ev("signing_key.rotate", ""))
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	wantA := a
	wantA.RetiredAt = c.ActiveAt
	wantA.ExpiresAt = c.ActiveAt.Add(24 * time.Hour)
	if diff := cmp.Diff(listKeys(t, s), []store.SigningKey{wantA, c}); diff != "" {
		t.Errorf("after replace and delete (-got +want):\n%s", diff)
	}
	var actions []string
	for _, e := range audit(t, s) {
		actions = append(actions, e.Action)
	}
	if diff := cmp.Diff(actions, []string{"signing_key.create", "signing_key.rotate"}); diff != "" {
		t.Errorf("audit actions (-got +want):\n%s", diff)
	}
}

func testSigningKeyUpdateFailure(t *testing.T, s store.Store) {
	a := newSigningKey("ES256", base)
	putKeys(t, s, a)
	n := len(audit(t, s))
	next := newSigningKey("ES256", base.Add(time.Minute))
	boom := errors.New("boom")
	err := s.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
		return []store.SigningKey{next}, []string{a.ID}, boom
	}, ev("signing_key.rotate", ""))
	if !errors.Is(err, boom) {
		t.Errorf("UpdateSigningKeys = %v, want the updater's error", err)
	}
	// A key the database refuses (no private part) fails the whole call:
	// the valid key put and the deletion in the same call are undone.
	broken := newSigningKey("ES256", base.Add(2*time.Minute))
	broken.Private = nil
	err = s.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
		return []store.SigningKey{next, broken}, []string{a.ID}, nil
	}, ev("signing_key.rotate", ""))
	if err == nil {
		t.Errorf("UpdateSigningKeys with a key without private part succeeded")
	}
	if diff := cmp.Diff(listKeys(t, s), []store.SigningKey{a}); diff != "" {
		t.Errorf("failed updates changed the keys (-got +want):\n%s", diff)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed updates appended %d audit events", got-n)
	}
}

func testSigningKeyConcurrentUpdates(t *testing.T, s store.Store) {
	// Each call appends a key whose ID is derived from what it read: two
	// calls that read the same keys would write the same ID, and one key
	// would be lost.
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- s.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
				k := newSigningKey("ES256", base)
				k.ID = fmt.Sprintf("key_%03d", len(keys))
				return []store.SigningKey{k}, nil, nil
			}, ev("signing_key.create", ""))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("UpdateSigningKeys: %v", err)
		}
	}
	keys := listKeys(t, s)
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("key_%03d", i))
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("keys after %d concurrent appends (-got +want):\n%s", n, diff)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("%d audit events, want %d", got, n)
	}
}
