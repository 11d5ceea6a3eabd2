package signing_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
)

// auditActions returns the actions of the audit log of s, oldest first.
func auditActions(t *testing.T, s store.Store) []string {
	t.Helper()
	evs, err := s.ScanAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Action)
	}
	return out
}

func TestNewRingCreatesOneKey(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	r := newRing(t, db, clk, nil)
	keys := r.Keys()
	if len(keys) != 1 {
		t.Fatalf("%d keys, want one", len(keys))
	}
	k := keys[0]
	if k.Alg != "ES256" || !k.ActiveAt.Equal(base) || !k.CreatedAt.Equal(base) || !k.RetiredAt.IsZero() || !k.ExpiresAt.IsZero() || k.Private != nil {
		t.Errorf("created key %+v, want ES256 active at %v without its private part", k, base)
	}
	stored, err := db.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != k.ID || len(stored[0].Private) == 0 {
		t.Fatalf("stored keys %+v", stored)
	}
	if bytes.Contains(stored[0].Private, []byte("PRIVATE")) || stored[0].Private[0] != 1 {
		t.Error("the stored private key is not sealed")
	}
	// A second node (or a restart) reuses the key.
	clk.Advance(time.Hour)
	r2 := newRing(t, db, clk, nil)
	if diff := cmp.Diff(r2.Keys(), keys); diff != "" {
		t.Errorf("second ring's keys (-got +want):\n%s", diff)
	}
	if kid := kidOf(t, mustSign(t, r2, "ES256", "at+jwt")); kid != k.ID {
		t.Errorf("second ring signs with %s, want %s", kid, k.ID)
	}
	if diff := cmp.Diff(auditActions(t, db), []string{"signing_key.create"}); diff != "" {
		t.Errorf("audit (-got +want):\n%s", diff)
	}
}

func TestConcurrentFirstStartsCreateOneKey(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	var wg sync.WaitGroup
	rings := make([]*signing.Ring, 4)
	for i := range rings {
		wg.Go(func() { rings[i] = newRing(t, db, clk, nil) })
	}
	wg.Wait()
	stored, err := db.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 {
		t.Fatalf("%d keys after concurrent starts, want one", len(stored))
	}
	for i, r := range rings {
		if r == nil {
			continue // newRing failed the test already
		}
		if kid := kidOf(t, mustSign(t, r, "ES256", "at+jwt")); kid != stored[0].ID {
			t.Errorf("ring %d signs with %s, want %s", i, kid, stored[0].ID)
		}
	}
}

func TestWrongMasterKey(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	newRing(t, db, clk, nil)
	other := mustMasterKey(t, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	_, err := signing.NewRing(ctx, signing.Config{Store: db, MasterKey: other, Logger: discard, Now: clk.Now, Reload: -1})
	if err == nil || !strings.Contains(err.Error(), "the master key does not match the one the signing keys were sealed with") {
		t.Fatalf("NewRing with another master key = %v", err)
	}
	if stored, _ := db.ListSigningKeys(ctx); len(stored) != 1 {
		t.Errorf("NewRing with another master key left %d keys, want the one", len(stored))
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	mk := mustMasterKey(t, testMasterKey)
	bad := []struct {
		name string
		cfg  signing.Config
	}{
		{"no store", signing.Config{MasterKey: mk}},
		{"no master key", signing.Config{Store: db}},
		{"reload not before pre-publication", signing.Config{Store: db, MasterKey: mk, PrePublish: time.Minute, Reload: time.Minute}},
		{"negative retention", signing.Config{Store: db, MasterKey: mk, Retain: -time.Hour}},
	}
	for _, tt := range bad {
		if r, err := signing.NewRing(ctx, tt.cfg); err == nil {
			r.Close()
			t.Errorf("%s: NewRing succeeded", tt.name)
		}
	}
	// The default reload adapts to a short pre-publication delay.
	r, err := signing.NewRing(ctx, signing.Config{Store: db, MasterKey: mk, Logger: discard, PrePublish: 20 * time.Second})
	if err != nil {
		t.Fatalf("NewRing with a short pre-publication delay: %v", err)
	}
	r.Close()
	r.Close() // idempotent
}

func TestSignVerifyEachAlgorithm(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	r := newRing(t, db, clk, nil)
	want, _ := json.Marshal(testClaims)
	for i, alg := range signing.Algorithms {
		tok := mustSign(t, r, alg, "at+jwt")
		h := header(t, tok)
		kid, _ := h["kid"].(string)
		if h["alg"] != alg || h["typ"] != "at+jwt" || kid == "" || len(h) != 3 {
			t.Errorf("%s: header %v, want alg, kid and typ", alg, h)
		}
		got, err := r.Verify(tok, "at+jwt")
		if err != nil {
			t.Fatalf("%s: Verify: %v", alg, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: payload %s, want %s", alg, got, want)
		}
		jwks, _ := r.JWKS()
		if got, err := verifyWithJWKS(jwks, tok); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: independent verification against the JWKS: %s, %v", alg, got, err)
		}
		// The first use of an algorithm created its key, which now signs.
		if n := len(r.Keys()); n != i+1 {
			t.Errorf("%s: %d keys, want %d", alg, n, i+1)
		}
		if again := kidOf(t, mustSign(t, r, alg, "JWT")); again != kid {
			t.Errorf("%s: second token signed by %s, first by %s", alg, again, kid)
		}
	}
	if diff := cmp.Diff(auditActions(t, db), []string{"signing_key.create", "signing_key.create", "signing_key.create"}); diff != "" {
		t.Errorf("audit (-got +want):\n%s", diff)
	}
	if _, err := r.Sign(ctx, "HS256", "at+jwt", testClaims); err == nil {
		t.Error("Sign(HS256) succeeded")
	}
	if _, err := r.Sign(ctx, "ES256", "at+jwt", "a string"); err == nil {
		t.Error("Sign of claims that are not an object succeeded")
	}
	// typ compares case-insensitively, with or without "application/".
	tok := mustSign(t, r, "ES256", "at+jwt")
	for _, typ := range []string{"AT+JWT", "application/at+jwt", "Application/At+JWT"} {
		if _, err := r.Verify(tok, typ); err != nil {
			t.Errorf("Verify(typ %q) = %v", typ, err)
		}
	}
	if _, err := r.Verify(mustSign(t, r, "ES256", "application/at+jwt"), "at+jwt"); err != nil {
		t.Errorf("Verify of a token typed application/at+jwt = %v", err)
	}
	if _, err := r.Verify(mustSign(t, r, "ES256", ""), ""); err != nil {
		t.Errorf("Verify of an untyped token, expecting none = %v", err)
	}
}

func TestConcurrentSignVerify(t *testing.T) {
	t.Parallel()
	r := newRing(t, openStore(t), newClock(), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				tok, err := r.Sign(ctx, "ES256", "at+jwt", testClaims)
				if err != nil {
					t.Errorf("Sign: %v", err)
					return
				}
				if _, err := r.Verify(tok, "at+jwt"); err != nil {
					t.Errorf("Verify: %v", err)
					return
				}
				r.JWKS()
			}
		})
	}
	wg.Wait()
}

func TestRotation(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	r := newRing(t, db, clk, nil) // PrePublish 10m, Retain 1h
	// A second node, reloaded by hand: its store does not say when the
	// keys change (a third, below, does).
	r2 := newRing(t, struct{ store.KeyStore }{db}, clk, nil)
	r3 := newRing(t, db, clk, nil)
	old := r.Keys()[0]
	before := mustSign(t, r, "ES256", "at+jwt")
	_, etag0 := r.JWKS()

	clk.Advance(time.Minute)
	rotatedAt := clk.Now()
	activeAt := rotatedAt.Add(10 * time.Minute)
	fresh, err := r.Rotate(ctx, "tok_admin", "192.0.2.1")
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if len(fresh) != 1 || fresh[0].Alg != "ES256" || !fresh[0].ActiveAt.Equal(activeAt) || !fresh[0].CreatedAt.Equal(rotatedAt) || fresh[0].Private != nil {
		t.Fatalf("Rotate returned %+v", fresh)
	}
	next := fresh[0]
	// The new key is published at once; the old one still signs.
	if diff := cmp.Diff(jwksKids(t, r), []string{old.ID, next.ID}); diff != "" {
		t.Errorf("JWKS after rotate (-got +want):\n%s", diff)
	}
	if _, etag := r.JWKS(); etag == etag0 {
		t.Error("the JWKS entity tag did not change with the keys")
	}
	if kid := kidOf(t, mustSign(t, r, "ES256", "at+jwt")); kid != old.ID {
		t.Errorf("during pre-publication %s signs, want the old key %s", kid, old.ID)
	}
	wantOld := old
	wantOld.RetiredAt, wantOld.ExpiresAt = activeAt, activeAt.Add(time.Hour)
	if diff := cmp.Diff(r.Keys(), []store.SigningKey{wantOld, next}); diff != "" {
		t.Errorf("keys after rotate (-got +want):\n%s", diff)
	}

	// The second node learns of the rotation when it reloads.
	if diff := cmp.Diff(jwksKids(t, r2), []string{old.ID}); diff != "" {
		t.Errorf("second node's JWKS before reload (-got +want):\n%s", diff)
	}
	if err := r2.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if diff := cmp.Diff(r2.Keys(), r.Keys()); diff != "" {
		t.Errorf("second node's keys after reload (-got +want):\n%s", diff)
	}
	// A node whose store says the keys changed reloads by itself.
	for start := time.Now(); !cmp.Equal(r3.Keys(), r.Keys()); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("a node told of the rotation has not reloaded:\n%s", cmp.Diff(r3.Keys(), r.Keys()))
		}
	}

	clk.Set(activeAt.Add(-time.Millisecond))
	for _, rr := range []*signing.Ring{r, r2} {
		if kid := kidOf(t, mustSign(t, rr, "ES256", "at+jwt")); kid != old.ID {
			t.Errorf("just before ActiveAt %s signs, want the old key", kid)
		}
	}
	clk.Set(activeAt)
	var after string
	for _, rr := range []*signing.Ring{r, r2} {
		after = mustSign(t, rr, "ES256", "at+jwt")
		if kid := kidOf(t, after); kid != next.ID {
			t.Errorf("at ActiveAt %s signs, want the new key %s", kid, next.ID)
		}
	}
	for _, tok := range []string{before, after} {
		for _, rr := range []*signing.Ring{r, r2} {
			if _, err := rr.Verify(tok, "at+jwt"); err != nil {
				t.Errorf("Verify after the switch: %v", err)
			}
		}
	}

	// The old key stays published until Retain has passed.
	clk.Set(wantOld.ExpiresAt.Add(-time.Millisecond))
	if diff := cmp.Diff(jwksKids(t, r), []string{old.ID, next.ID}); diff != "" {
		t.Errorf("JWKS just before the old key expires (-got +want):\n%s", diff)
	}
	if _, err := r.Verify(before, "at+jwt"); err != nil {
		t.Errorf("token of the old key before it expires: %v", err)
	}
	clk.Set(wantOld.ExpiresAt)
	if diff := cmp.Diff(jwksKids(t, r), []string{next.ID}); diff != "" {
		t.Errorf("JWKS once the old key expired (-got +want):\n%s", diff)
	}
	if _, err := r.Verify(before, "at+jwt"); !errors.Is(err, signing.ErrInvalid) {
		t.Errorf("token of an expired key: %v, want ErrInvalid", err)
	}

	// The next rotation deletes the expired key.
	third, err := r.Rotate(ctx, "tok_admin", "")
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := db.ListSigningKeys(ctx)
	var ids []string
	for _, k := range stored {
		ids = append(ids, k.ID)
	}
	if diff := cmp.Diff(ids, []string{next.ID, third[0].ID}); diff != "" {
		t.Errorf("stored keys after the second rotation (-got +want):\n%s", diff)
	}

	// Audited with the new key IDs and nothing of the keys.
	evs, _ := db.ScanAudit(ctx, 0, 100)
	var rot []store.AuditEvent
	for _, e := range evs {
		if e.Action == "signing_key.rotate" {
			rot = append(rot, e)
		}
	}
	if len(rot) != 2 {
		t.Fatalf("%d rotate events, want 2", len(rot))
	}
	if got, want := string(rot[0].Details), `{"keys":["`+next.ID+`"]}`; got != want || rot[0].Actor != "tok_admin" || rot[0].RemoteAddr != "192.0.2.1" {
		t.Errorf("rotate event %+v, details %s, want %s", rot[0], got, want)
	}
}

func TestRotateEveryAlgorithm(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	clk := newClock()
	r := newRing(t, db, clk, func(c *signing.Config) { c.PrePublish = -1 }) // no delay
	mustSign(t, r, "EdDSA", "at+jwt")
	fresh, err := r.Rotate(ctx, "cli", "")
	if err != nil {
		t.Fatal(err)
	}
	var algs []string
	for _, k := range fresh {
		algs = append(algs, k.Alg)
		if !k.ActiveAt.Equal(base) {
			t.Errorf("%s key active at %v, want now", k.Alg, k.ActiveAt)
		}
	}
	if diff := cmp.Diff(algs, []string{"ES256", "EdDSA"}); diff != "" {
		t.Errorf("rotated algorithms (-got +want):\n%s", diff)
	}
	// Without a delay the new keys sign at once.
	for _, k := range fresh {
		if kid := kidOf(t, mustSign(t, r, k.Alg, "at+jwt")); kid != k.ID {
			t.Errorf("%s: %s signs, want the new key %s", k.Alg, kid, k.ID)
		}
	}
}

func TestJWKSCache(t *testing.T) {
	t.Parallel()
	r := newRing(t, openStore(t), newClock(), nil)
	b1, e1 := r.JWKS()
	b2, e2 := r.JWKS()
	if &b1[0] != &b2[0] || e1 != e2 {
		t.Error("JWKS was rebuilt although nothing changed")
	}
	if len(e1) < 3 || e1[0] != '"' || e1[len(e1)-1] != '"' {
		t.Errorf("entity tag %s is not a quoted string", e1)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b1, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", b1, err)
	}
	k := set.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] != r.Keys()[0].ID || k["d"] != nil {
		t.Errorf("published JWK %v", k)
	}
}

// TestReloadLoop runs two rings in a synctest bubble: the second learns of
// the first's rotation from its background reload, before the new key
// signs.
func TestReloadLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ks := &memKeys{}
		mk := mustMasterKey(t, testMasterKey)
		cfg := signing.Config{Store: ks, MasterKey: mk, Logger: discard, PrePublish: 10 * time.Minute, Reload: 30 * time.Second}
		r1, err := signing.NewRing(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r1.Close()
		r2, err := signing.NewRing(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		fresh, err := r1.Rotate(ctx, "test", "")
		if err != nil {
			t.Fatal(err)
		}
		kid := fresh[0].ID
		published := func() bool {
			body, _ := r2.JWKS()
			return bytes.Contains(body, []byte(kid))
		}
		if published() {
			t.Fatal("the second ring knew of the rotation before reloading")
		}
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if published() {
			t.Fatal("the second ring reloaded early")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !published() {
			t.Fatal("the second ring did not pick up the rotation after Reload")
		}
		time.Sleep(10 * time.Minute)
		tok, err := r2.Sign(ctx, "ES256", "at+jwt", testClaims)
		if err != nil {
			t.Fatal(err)
		}
		if got := kidOf(t, tok); got != kid {
			t.Errorf("after the pre-publication delay the second ring signs with %s, want %s", got, kid)
		}
	})
}
