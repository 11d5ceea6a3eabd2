package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// clientTests cover OAuth clients and their secrets.
var clientTests = []storeTest{
	{"ClientRoundTrip", testClientRoundTrip},
	{"ClientUniqueness", testClientUniqueness},
	{"UpdateClientFailureChangesNothing", testUpdateClientFailure},
	{"ListClients", testListClients},
	{"RotateClientSecret", testRotateClientSecret},
	{"RevokeClientSecret", testRevokeClientSecret},
	{"DeleteClient", testDeleteClient},
	{"DeleteClientRacesGrants", testDeleteClientRacesGrants},
	{"ClientAssertions", testClientAssertions},
	{"ClientAssertionUsedOnce", testClientAssertionUsedOnce},
	{"PurgeClientAssertions", testPurgeClientAssertions},
}

// secretHash returns the hash of a fresh token with the given prefix.
func secretHash(t *testing.T, prefix string) tokenfmt.Hash {
	t.Helper()
	v, err := tokenfmt.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return tokenfmt.HashOf(v)
}

// clientFixture returns a confidential client created at base+offset with
// every field set.
func clientFixture(name, apiID string, offset time.Duration) store.Client {
	at := base.Add(offset)
	return store.Client{
		ID: ids.New(ids.Client, at), Name: name, Type: store.ClientConfidential,
		GrantTypes:             []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		RedirectURIs:           []string{"https://" + name + ".example.com/cb", "http://127.0.0.1/cb"},
		PostLogoutRedirectURIs: []string{"https://" + name + ".example.com/signed-out"},
		APIs:                   []string{apiID}, Scopes: []string{"repos:read", "repos:write"},
		TokenFormat: store.FormatOpaque, SigningAlg: "ES256", AccessTokenTTL: time.Hour, RefreshTokenTTL: 30 * 24 * time.Hour,
		AuthMethod: "private_key_jwt", JWKS: json.RawMessage(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`),
		JWKSURI: "https://" + name + ".example.com/jwks.json", SecretHint: "jts_…abcd",
		CreatedAt: at, UpdatedAt: at,
	}
}

// mustCreateClient stores clientFixture(name, apiID, 0) with secret (if not
// nil) and returns it.
func mustCreateClient(t *testing.T, s store.Store, name, apiID string, secret *tokenfmt.Hash) store.Client {
	t.Helper()
	c := clientFixture(name, apiID, 0)
	if err := s.CreateClient(ctx, c, secret, ev("client.create", c.ID)); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

func auditActions(t *testing.T, s store.Store) []string {
	t.Helper()
	var out []string
	for _, e := range audit(t, s) {
		out = append(out, e.Action)
	}
	return out
}

func testClientRoundTrip(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	b := mustCreateAPI(t, s, "beta")
	h := secretHash(t, tokenfmt.PrefixClientSecret)
	c := clientFixture("app", a.ID, 0)
	if err := s.CreateClient(ctx, c, &h, ev("client.create", c.ID)); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	got, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if diff := cmp.Diff(got, c); diff != "" {
		t.Errorf("GetClient (-got +want):\n%s", diff)
	}
	secrets, err := s.ClientSecrets(ctx, c.ID)
	if err != nil {
		t.Fatalf("ClientSecrets: %v", err)
	}
	if diff := cmp.Diff(secrets, []store.Secret{{Hash: h}}); diff != "" {
		t.Errorf("ClientSecrets (-got +want):\n%s", diff)
	}

	// Every mutable field changes, times in another zone: they come back
	// in UTC.
	later := base.Add(time.Minute)
	zone := time.FixedZone("UTC-7", -7*3600)
	change := func(x *store.Client) {
		x.Name, x.Type = "app2", store.ClientPublic
		x.GrantTypes, x.RedirectURIs = []string{"authorization_code"}, []string{"https://app2.example.com/cb"}
		x.PostLogoutRedirectURIs = []string{"https://app2.example.com/bye", "http://127.0.0.1/bye"}
		x.APIs, x.Scopes = []string{a.ID, b.ID}, []string{"repos:read"}
		x.TokenFormat, x.SigningAlg = store.FormatJWT, "EdDSA"
		x.AccessTokenTTL, x.RefreshTokenTTL = 5*time.Minute, 0
		x.AuthMethod, x.JWKS, x.JWKSURI, x.SecretHint = "none", nil, "", ""
		x.DisabledAt, x.UpdatedAt = later.In(zone), later.In(zone)
	}
	upd, err := s.UpdateClient(ctx, c.ID, func(x *store.Client) error { change(x); return nil }, ev("client.update", c.ID))
	if err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	want := c
	change(&want)
	if diff := cmp.Diff(upd, want); diff != "" {
		t.Errorf("UpdateClient result (-got +want):\n%s", diff)
	}
	stored, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if diff := cmp.Diff(stored, want); diff != "" {
		t.Errorf("stored update (-got +want):\n%s", diff)
	}
	if stored.DisabledAt.Location() != time.UTC || stored.UpdatedAt.Location() != time.UTC {
		t.Errorf("stored times not in UTC: %v %v", stored.DisabledAt, stored.UpdatedAt)
	}
	// Re-enabling stores a NULL disabled_at again.
	if _, err := s.UpdateClient(ctx, c.ID, func(x *store.Client) error { x.DisabledAt = time.Time{}; return nil }, ev("client.update", c.ID)); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if stored, _ := s.GetClient(ctx, c.ID); !stored.DisabledAt.IsZero() {
		t.Errorf("re-enabled client has DisabledAt %v", stored.DisabledAt)
	}

	if _, err := s.GetClient(ctx, "cli_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateClient(ctx, "cli_missing", func(*store.Client) error { return nil }, ev("client.update", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateClient(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.RotateClientSecret(ctx, "cli_missing", secretHash(t, tokenfmt.PrefixClientSecret), "h", base, base, ev("client.rotate", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateClientSecret(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteClient(ctx, "cli_missing", ev("client.delete", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteClient(missing) = %v, want ErrNotFound", err)
	}
	if secrets, err := s.ClientSecrets(ctx, "cli_missing"); err != nil || len(secrets) != 0 {
		t.Errorf("ClientSecrets(missing) = %v, %v; want none", secrets, err)
	}
	if diff := cmp.Diff(auditActions(t, s), []string{"api.create", "api.create", "client.create", "client.update", "client.update"}); diff != "" {
		t.Errorf("audit actions (-got +want):\n%s", diff)
	}
}

func testClientUniqueness(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	h := secretHash(t, tokenfmt.PrefixClientSecret)
	c := mustCreateClient(t, s, "app", a.ID, &h)
	n := len(audit(t, s))

	dupID := clientFixture("other", a.ID, time.Second)
	dupID.ID = c.ID
	if err := s.CreateClient(ctx, dupID, nil, ev("client.create", dupID.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateClient(dup id) = %v, want ErrAlreadyExists", err)
	}
	if got, _ := s.GetClient(ctx, c.ID); got.Name != c.Name {
		t.Errorf("refused create changed the client: name %q", got.Name)
	}
	// A taken secret is refused, and the client of the refused call is not
	// stored either.
	dupSecret := clientFixture("other", a.ID, time.Second)
	if err := s.CreateClient(ctx, dupSecret, &h, ev("client.create", dupSecret.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateClient(dup secret) = %v, want ErrAlreadyExists", err)
	}
	if _, err := s.GetClient(ctx, dupSecret.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("client of a refused create was stored: %v", err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("refused creates appended %d audit events", got-n)
	}
}

func testUpdateClientFailure(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateClient(t, s, "app", a.ID, nil)
	n := len(audit(t, s))
	boom := errors.New("boom")
	_, err := s.UpdateClient(ctx, c.ID, func(x *store.Client) error {
		x.Name, x.Scopes, x.DisabledAt = "changed", nil, base
		return boom
	}, ev("client.update", c.ID))
	if !errors.Is(err, boom) {
		t.Errorf("UpdateClient = %v, want the updater's error", err)
	}
	got, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, c); diff != "" {
		t.Errorf("failed update changed the client (-got +want):\n%s", diff)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed update appended %d audit events", got-n)
	}
}

func testListClients(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	var want []store.Client
	for i := range 5 {
		c := clientFixture(fmt.Sprintf("app%d", i), a.ID, time.Duration(i)*time.Second)
		if err := s.CreateClient(ctx, c, nil, ev("client.create", c.ID)); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		want = append([]store.Client{c}, want...) // newest first
	}
	var got []store.Client
	cursor := ""
	for range 10 {
		page, next, err := s.ListClients(ctx, cursor, 2)
		if err != nil {
			t.Fatalf("ListClients: %v", err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d clients, limit 2", len(page))
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("paged list (-got +want):\n%s", diff)
	}
	all, next, err := s.ListClients(ctx, "", 0)
	if err != nil || len(all) != 5 || next != "" {
		t.Errorf("ListClients(default limit): %d clients, next %q, err %v", len(all), next, err)
	}
}

func testRotateClientSecret(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	h1 := secretHash(t, tokenfmt.PrefixClientSecret)
	c := mustCreateClient(t, s, "app", a.ID, &h1)
	now := base.Add(time.Hour)
	grace := now.Add(10 * time.Minute)

	// With a grace period the previous secret stays, until grace.
	h2 := secretHash(t, tokenfmt.PrefixClientSecret)
	got, err := s.RotateClientSecret(ctx, c.ID, h2, "jts_…bcde", grace, now, ev("client.rotate", c.ID))
	if err != nil {
		t.Fatalf("RotateClientSecret: %v", err)
	}
	want := c
	want.SecretHint, want.UpdatedAt = "jts_…bcde", now
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("RotateClientSecret result (-got +want):\n%s", diff)
	}
	if stored, _ := s.GetClient(ctx, c.ID); !cmp.Equal(stored, want) {
		t.Errorf("stored client after rotation (-got +want):\n%s", cmp.Diff(stored, want))
	}
	secrets, err := s.ClientSecrets(ctx, c.ID)
	if err != nil {
		t.Fatalf("ClientSecrets: %v", err)
	}
	if diff := cmp.Diff(secrets, []store.Secret{{Hash: h2}, {Hash: h1, ExpiresAt: grace}}); diff != "" {
		t.Errorf("secrets after rotation with grace (-got +want):\n%s", diff)
	}

	// A second rotation drops the oldest secret; without grace (graceUntil
	// not after now) the previous one goes at once.
	h3 := secretHash(t, tokenfmt.PrefixClientSecret)
	if _, err := s.RotateClientSecret(ctx, c.ID, h3, "jts_…cdef", now, now, ev("client.rotate", c.ID)); err != nil {
		t.Fatalf("RotateClientSecret: %v", err)
	}
	secrets, _ = s.ClientSecrets(ctx, c.ID)
	if diff := cmp.Diff(secrets, []store.Secret{{Hash: h3}}); diff != "" {
		t.Errorf("secrets after rotation without grace (-got +want):\n%s", diff)
	}

	// Rotating onto a taken hash is refused and changes nothing.
	hOther := secretHash(t, tokenfmt.PrefixClientSecret)
	other := clientFixture("other", a.ID, time.Second)
	if err := s.CreateClient(ctx, other, &hOther, ev("client.create", other.ID)); err != nil {
		t.Fatal(err)
	}
	n := len(audit(t, s))
	if _, err := s.RotateClientSecret(ctx, c.ID, hOther, "x", grace, now, ev("client.rotate", c.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("RotateClientSecret onto a taken hash = %v, want ErrAlreadyExists", err)
	}
	secrets, _ = s.ClientSecrets(ctx, c.ID)
	if diff := cmp.Diff(secrets, []store.Secret{{Hash: h3}}); diff != "" {
		t.Errorf("refused rotation changed the secrets (-got +want):\n%s", diff)
	}
	if stored, _ := s.GetClient(ctx, c.ID); stored.SecretHint != "jts_…cdef" {
		t.Errorf("refused rotation changed the hint to %q", stored.SecretHint)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("refused rotation appended %d audit events", got-n)
	}

	// A client without a secret gets its first one.
	pub := clientFixture("pub", a.ID, 2*time.Second)
	if err := s.CreateClient(ctx, pub, nil, ev("client.create", pub.ID)); err != nil {
		t.Fatal(err)
	}
	h4 := secretHash(t, tokenfmt.PrefixClientSecret)
	if _, err := s.RotateClientSecret(ctx, pub.ID, h4, "jts_…defg", grace, now, ev("client.rotate", pub.ID)); err != nil {
		t.Fatalf("RotateClientSecret(no secret yet): %v", err)
	}
	secrets, _ = s.ClientSecrets(ctx, pub.ID)
	if diff := cmp.Diff(secrets, []store.Secret{{Hash: h4}}); diff != "" {
		t.Errorf("first secret (-got +want):\n%s", diff)
	}
}

func testDeleteClient(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	secret := secretHash(t, tokenfmt.PrefixClientSecret)
	c := mustCreateClient(t, s, "app", a.ID, &secret)
	kept := clientFixture("kept", a.ID, time.Second)
	if err := s.CreateClient(ctx, kept, nil, ev("client.create", kept.ID)); err != nil {
		t.Fatal(err)
	}
	u := mustCreateGrantUser(t, s, "alice")

	// The client's grant with an access and a refresh token, an
	// unredeemed code, a device code, a consent, and a client-credentials
	// access token (no grant).
	g := mustGrant(t, s, c, u.ID, 0)
	code := authCodeFixture(t, c, u.ID, time.Second)
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	dc := deviceCodeFixture(t, c, "WDJBMJHT")
	if err := s.CreateDeviceCode(ctx, dc); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConsent(ctx, store.Consent{UserID: u.ID, ClientID: c.ID, APIID: a.ID, Scopes: []string{"repos:read"}, CreatedAt: base, UpdatedAt: base}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	cc, ccHash := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ClientID, tok.Subject = c.ID, c.ID })
	// What another client holds stays.
	keptGrant := mustGrant(t, s, kept, u.ID, 2*time.Second)
	keptTok, keptHash := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ClientID = kept.ID })

	hashes, err := s.DeleteClient(ctx, c.ID, ev("client.delete", c.ID))
	if err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	byBytes := cmpopts.SortSlices(func(x, y tokenfmt.Hash) bool { return string(x[:]) < string(y[:]) })
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{g.accessHash, ccHash}, byBytes); diff != "" {
		t.Errorf("DeleteClient hashes (-got +want):\n%s", diff)
	}
	if _, err := s.GetClient(ctx, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted client still found: %v", err)
	}
	if secrets, err := s.ClientSecrets(ctx, c.ID); err != nil || len(secrets) != 0 {
		t.Errorf("secrets of deleted client: %v, %v", secrets, err)
	}
	for _, h := range []tokenfmt.Hash{g.accessHash, ccHash} {
		if _, _, err := s.LookupToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupToken(access token of deleted client) = %v, want ErrNotFound", err)
		}
	}
	for _, id := range []string{g.access.ID, cc.ID} {
		if _, err := s.GetToken(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetToken(access token of deleted client) = %v, want ErrNotFound", err)
		}
	}
	if _, err := s.GetGrant(ctx, g.grant.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of deleted client: %v, want ErrNotFound", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, g.refresh.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of deleted client: %v, want ErrNotFound", err)
	}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, grantFixture(c, base), base, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode(code of deleted client) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetDeviceCodeByUserCode(ctx, dc.UserCode); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device code of deleted client: %v, want ErrNotFound", err)
	}
	if _, err := s.GetConsent(ctx, u.ID, c.ID, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("consent for deleted client: %v, want ErrNotFound", err)
	}

	if _, err := s.GetClient(ctx, kept.ID); err != nil {
		t.Errorf("other client: %v", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, keptGrant.refresh.Hash); err != nil {
		t.Errorf("other client's refresh token: %v", err)
	}
	for _, h := range []tokenfmt.Hash{keptGrant.accessHash, keptHash} {
		if tok, _, err := s.LookupToken(ctx, h); err != nil || !tok.RevokedAt.IsZero() {
			t.Errorf("other client's access token: revoked %v, %v", tok.RevokedAt, err)
		}
	}
	if _, err := s.GetToken(ctx, keptTok.ID); err != nil {
		t.Errorf("other client's token: %v", err)
	}
	evs := audit(t, s)
	if last := evs[len(evs)-1]; last.Action != "client.delete" || last.Target != c.ID {
		t.Errorf("last audit event %q %q, want client.delete of %s", last.Action, last.Target, c.ID)
	}
	n := len(evs)
	if _, err := s.DeleteClient(ctx, c.ID, ev("client.delete", c.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteClient = %v, want ErrNotFound", err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("refused delete appended %d audit events", got-n)
	}
}

// testDeleteClientRacesGrants deletes a client while its codes are redeemed,
// its device codes redeemed, and tokens issued and refreshed from its
// grants: the delete succeeds (no deadlock), and nothing issued to the
// client outlives it or escapes the hashes it returns.
func testDeleteClientRacesGrants(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateClient(t, s, "app", a.ID, nil)
	u := mustCreateGrantUser(t, s, "alice")
	const n = 12
	now := base.Add(time.Second)
	codes := make([]store.AuthCode, n)
	devices := make([]store.DeviceCode, n)
	grants := make([]issued, n)
	for i := range n {
		codes[i] = authCodeFixture(t, c, u.ID, 0)
		if err := s.CreateAuthCode(ctx, codes[i]); err != nil {
			t.Fatal(err)
		}
		devices[i] = deviceCodeFixture(t, c, fmt.Sprintf("RACE%04d", i))
		devices[i].Status, devices[i].UserID, devices[i].AuthTime = store.DeviceApproved, u.ID, base
		if err := s.CreateDeviceCode(ctx, devices[i]); err != nil {
			t.Fatal(err)
		}
		grants[i] = mustGrant(t, s, c, u.ID, 0)
	}
	var mu sync.Mutex
	var stored []tokenfmt.Hash // access tokens whose issue succeeded
	var grantIDs []string      // grants whose creation succeeded
	record := func(g string, h *tokenfmt.Hash) {
		mu.Lock()
		defer mu.Unlock()
		if g != "" {
			grantIDs = append(grantIDs, g)
		}
		if h != nil {
			stored = append(stored, *h)
		}
	}
	check := func(what string, err error) bool {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s racing DeleteClient: %v, want nil or ErrNotFound", what, err)
		}
		return err == nil
	}
	issue := func(g store.Grant) {
		access, h := accessFixture(t, g, now)
		refresh := refreshFixture(t, g.ID, now)
		if check("IssueGrantTokens", s.IssueGrantTokens(ctx, g.ID, &access, h, &refresh)) {
			record("", &h)
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			g := grantFixture(c, now)
			ac, err := s.RedeemAuthCode(ctx, codes[i].Hash, g, now, store.AuditEvent{})
			if check("RedeemAuthCode", err) {
				record(g.ID, nil)
				g.UserID, g.Subject, g.APIID, g.Scopes, g.AuthTime = ac.UserID, ac.UserID, ac.APIID, ac.Scopes, ac.AuthTime
				issue(g)
			}
		})
		wg.Go(func() {
			<-start
			g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: c.ID, UserID: u.ID, Subject: u.ID, APIID: a.ID,
				Scopes: devices[i].Scopes, AuthTime: base, CreatedAt: now}
			_, err := s.UpdateDeviceCode(ctx, devices[i].Hash, "", func(d *store.DeviceCode) (*store.Grant, error) {
				d.Status, d.GrantID = store.DeviceRedeemed, g.ID
				return &g, nil
			}, store.AuditEvent{})
			if check("UpdateDeviceCode", err) {
				record(g.ID, nil)
				issue(g)
			}
		})
		wg.Go(func() {
			<-start
			access, h := accessFixture(t, grants[i].grant, now)
			next := refreshFixture(t, grants[i].grant.ID, now)
			if _, err := s.RotateRefreshToken(ctx, grants[i].refresh.Hash, next, &access, h, nil, time.Time{}, now); check("RotateRefreshToken", err) {
				record("", &h)
			}
		})
	}
	var hashes []tokenfmt.Hash
	var deleteErr error
	wg.Go(func() {
		<-start
		hashes, deleteErr = s.DeleteClient(ctx, c.ID, ev("client.delete", c.ID))
	})
	close(start)
	wg.Wait()
	if deleteErr != nil {
		t.Fatalf("DeleteClient: %v", deleteErr)
	}
	evicted := map[tokenfmt.Hash]bool{}
	for _, h := range hashes {
		evicted[h] = true
	}
	for _, g := range grants {
		stored = append(stored, g.accessHash)
		grantIDs = append(grantIDs, g.grant.ID)
	}
	for _, h := range stored {
		if _, _, err := s.LookupToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("access token issued to the deleted client survived: %v", err)
		}
		if !evicted[h] {
			t.Errorf("access token issued to the deleted client is not among the hashes DeleteClient returned")
		}
	}
	for _, id := range grantIDs {
		if _, err := s.GetGrant(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("grant %s of the deleted client survived: %v", id, err)
		}
	}
}

func testRevokeClientSecret(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	h1 := secretHash(t, tokenfmt.PrefixClientSecret)
	c := mustCreateClient(t, s, "app", a.ID, &h1)
	other := secretHash(t, tokenfmt.PrefixClientSecret)
	o := mustCreateClient(t, s, "other", a.ID, &other)
	now := base.Add(time.Hour)
	grace := now.Add(10 * time.Minute)
	h2 := secretHash(t, tokenfmt.PrefixClientSecret)
	if _, err := s.RotateClientSecret(ctx, c.ID, h2, "jts_…bcde", grace, now, ev("client.rotate", c.ID)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []tokenfmt.Hash{h1, h2} {
		if id, err := s.ClientOfSecret(ctx, h); err != nil || id != c.ID {
			t.Errorf("ClientOfSecret = %q, %v; want %s", id, err, c.ID)
		}
	}
	if _, err := s.ClientOfSecret(ctx, tokenfmt.Hash{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientOfSecret(unknown) = %v, want ErrNotFound", err)
	}
	n := len(audit(t, s))
	// Refused, changing nothing: an unknown hash, another client's secret,
	// an unknown client.
	for name, x := range map[string]struct {
		id string
		h  tokenfmt.Hash
	}{"unknown secret": {c.ID, tokenfmt.Hash{1}}, "other's secret": {c.ID, other}, "unknown client": {"cli_nope", h1}} {
		if _, _, err := s.RevokeClientSecret(ctx, x.id, x.h, now, ev("leak.report", x.id)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeClientSecret(%s) = %v, want ErrNotFound", name, err)
		}
	}
	if secrets, _ := s.ClientSecrets(ctx, o.ID); !cmp.Equal(secrets, []store.Secret{{Hash: other}}) {
		t.Errorf("other client's secrets: %v", secrets)
	}

	// The previous secret, in its grace period: it goes, the hint stays.
	at := now.Add(time.Minute)
	got, changed, err := s.RevokeClientSecret(ctx, c.ID, h1, at, ev("leak.report", c.ID))
	if err != nil || !changed || got.ID != c.ID || got.SecretHint != "jts_…bcde" {
		t.Fatalf("RevokeClientSecret(previous) = %s %q, %v, %v", got.ID, got.SecretHint, changed, err)
	}
	if secrets, _ := s.ClientSecrets(ctx, c.ID); !cmp.Equal(secrets, []store.Secret{{Hash: h2}}) {
		t.Errorf("secrets after revoking the previous one (-got +want):\n%s", cmp.Diff(secrets, []store.Secret{{Hash: h2}}))
	}

	// The current secret: it goes and the hint with it.
	got, changed, err = s.RevokeClientSecret(ctx, c.ID, h2, at, ev("leak.report", c.ID))
	if err != nil || !changed || got.SecretHint != "" || !got.UpdatedAt.Equal(at) {
		t.Fatalf("RevokeClientSecret(current) = hint %q updated %v, %v, %v", got.SecretHint, got.UpdatedAt, changed, err)
	}
	if stored, _ := s.GetClient(ctx, c.ID); stored.SecretHint != "" || !stored.UpdatedAt.Equal(at) {
		t.Errorf("stored client: hint %q updated %v", stored.SecretHint, stored.UpdatedAt)
	}
	if secrets, _ := s.ClientSecrets(ctx, c.ID); len(secrets) != 0 {
		t.Errorf("secrets after revoking both: %v", secrets)
	}
	if _, _, err := s.RevokeClientSecret(ctx, c.ID, h2, at, ev("leak.report", c.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeClientSecret again = %v, want ErrNotFound", err)
	}
	if got := len(audit(t, s)); got != n+2 {
		t.Errorf("%d audit events for two revocations", got-n)
	}

	// A previous secret whose grace is over changes nothing.
	h3 := secretHash(t, tokenfmt.PrefixClientSecret)
	if _, err := s.RotateClientSecret(ctx, o.ID, h3, "jts_…cdef", grace, now, ev("client.rotate", o.ID)); err != nil {
		t.Fatal(err)
	}
	n = len(audit(t, s))
	if got, changed, err := s.RevokeClientSecret(ctx, o.ID, other, grace, ev("leak.report", o.ID)); err != nil || changed || got.SecretHint != "jts_…cdef" {
		t.Errorf("RevokeClientSecret(grace over) = %q, %v, %v; want no change", got.SecretHint, changed, err)
	}
	if secrets, _ := s.ClientSecrets(ctx, o.ID); len(secrets) != 2 {
		t.Errorf("secrets after a change of nothing: %v", secrets)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("a change of nothing appended %d audit events", got-n)
	}
}

// assertionID is the id of a client assertion, as the OAuth server makes
// it: the hash of its client and jti.
func assertionID(clientID, jti string) tokenfmt.Hash {
	return tokenfmt.Hash(sha256.Sum256([]byte(clientID + "\x00" + jti)))
}

// testClientAssertions: an assertion id is used once while it lives, in
// any time zone, is forgotten no earlier than its expiry (kept rounded up
// to the millisecond), and may be used anew after it.
func testClientAssertions(t *testing.T, s store.Store) {
	a, b := assertionID("cli_a", "jti-1"), assertionID("cli_b", "jti-1")
	exp := base.Add(10*time.Minute + 500*time.Microsecond)
	east, west := time.FixedZone("UTC+9", 9*3600), time.FixedZone("UTC-7", -7*3600)
	steps := []struct {
		name    string
		id      tokenfmt.Hash
		exp     time.Time
		now     time.Time
		wantErr error
	}{
		{"first use", a, exp, base, nil},
		{"replay", a, exp, base.Add(time.Second), store.ErrUsed},
		{"replay, now in another zone", a, exp, base.Add(time.Minute).In(east), store.ErrUsed},
		{"replay with a later expiry", a, exp.Add(time.Hour), base.Add(time.Minute), store.ErrUsed},
		{"another client's jti", b, exp.In(west), base, nil},
		{"replay at the millisecond of expiry", a, exp, exp.Truncate(time.Millisecond), store.ErrUsed},
		{"replay half a millisecond after expiry, rounded up", a, exp, exp.Truncate(time.Millisecond).Add(999 * time.Microsecond), store.ErrUsed},
		{"used anew once its time ended", a, exp.Add(time.Hour), exp.Truncate(time.Millisecond).Add(time.Millisecond), nil},
		{"and then held until the new expiry", a, exp.Add(time.Hour), exp.Add(30 * time.Minute).In(west), store.ErrUsed},
		{"the other id expires in its own zone", b, exp, exp.Add(time.Millisecond).In(east), nil},
	}
	for _, st := range steps {
		if err := s.UseClientAssertion(ctx, st.id, st.exp, st.now); !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Errorf("%s: UseClientAssertion = %v, want %v", st.name, err, st.wantErr)
		}
	}
}

// testClientAssertionUsedOnce: of 100 concurrent uses of one assertion id,
// exactly one is accepted.
func testClientAssertionUsedOnce(t *testing.T, s store.Store) {
	id := assertionID("cli_race", "jti-race")
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- s.UseClientAssertion(ctx, id, base.Add(time.Minute), base) })
	}
	wg.Wait()
	close(errs)
	accepted := 0
	for err := range errs {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, store.ErrUsed):
			t.Errorf("UseClientAssertion: %v, want nil or ErrUsed", err)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %d concurrent uses of one assertion accepted, want 1", accepted, n)
	}
}

// testPurgeClientAssertions: the purge deletes only ids whose time ended,
// at most limit at a time, and a purged id can be used again.
func testPurgeClientAssertions(t *testing.T, s store.Store) {
	ids := make([]tokenfmt.Hash, 5)
	for i := range ids {
		ids[i] = assertionID("cli_p", fmt.Sprint("jti-", i))
		// ids 0..2 end at base+1m, 3..4 at base+2m.
		exp := base.Add(time.Minute)
		if i >= 3 {
			exp = base.Add(2 * time.Minute)
		}
		if err := s.UseClientAssertion(ctx, ids[i], exp, base); err != nil {
			t.Fatal(err)
		}
	}
	purge := func(now time.Time, limit, want int) {
		t.Helper()
		if n, err := s.PurgeClientAssertions(ctx, now, limit); err != nil || n != want {
			t.Fatalf("PurgeClientAssertions(%v, %d) = %d, %v; want %d", now.Sub(base), limit, n, err, want)
		}
	}
	purge(base.Add(time.Minute-time.Millisecond), 100, 0)
	purge(base.Add(time.Minute), 2, 2)
	purge(base.Add(time.Minute), 100, 1)
	purge(base.Add(time.Minute), 100, 0)
	// The live ones were kept: still used.
	for _, id := range ids[3:] {
		if err := s.UseClientAssertion(ctx, id, base.Add(time.Hour), base.Add(time.Minute)); !errors.Is(err, store.ErrUsed) {
			t.Errorf("a live id after the purge: %v, want ErrUsed", err)
		}
	}
	if err := s.UseClientAssertion(ctx, ids[0], base.Add(time.Hour), base.Add(time.Minute)); err != nil {
		t.Errorf("a purged id used again: %v", err)
	}
	purge(base.Add(2*time.Minute), 100, 2)
}
