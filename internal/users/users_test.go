package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/password"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

var ctx = context.Background()

// cheap keeps tests fast; the production cost is password.DefaultParams.
var cheap = password.Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

var admin = tokens.Actor{ID: "tok_admin", RemoteAddr: "192.0.2.1"}

// clock is a fixed clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	svc     *Service
	st      *sqlstore.DB
	clock   *clock
	mu      sync.Mutex
	evicted []tokenfmt.Hash
}

func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{SQLiteSynchronous: "OFF"})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, clock: &clock{t: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)}}
	cfg := Config{
		Store:  st,
		Hasher: password.NewHasher(cheap, 0),
		Now:    e.clock.Now,
		Evict: func(hs ...tokenfmt.Hash) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.evicted = append(e.evicted, hs...)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	e.svc = New(cfg)
	return e
}

func (e *env) create(t *testing.T, username, pw string) store.User {
	t.Helper()
	u, err := e.svc.Create(ctx, CreateParams{Username: username, Email: username + "@example.com", Password: pw}, admin)
	if err != nil {
		t.Fatalf("Create(%s): %v", username, err)
	}
	return u
}

// audit returns the audit events with the given action, oldest first.
func (e *env) audit(t *testing.T, action string) []store.AuditEvent {
	t.Helper()
	evs, err := e.st.ScanAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	var out []store.AuditEvent
	for _, ev := range evs {
		if action == "" || ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

func details(t *testing.T, ev store.AuditEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if len(ev.Details) > 0 {
		if err := json.Unmarshal(ev.Details, &m); err != nil {
			t.Fatalf("details of %s: %v", ev.Action, err)
		}
	}
	return m
}

func invalidCode(err error) string {
	var ie *tokens.InvalidError
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

var ip1 = netip.MustParseAddr("198.51.100.7")

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("a", 64)
	for _, tt := range []struct {
		name     string
		p        CreateParams
		wantCode string // "" for success
		wantName string
	}{
		{"ok", CreateParams{Username: "alice", Email: "alice@example.com", Password: "correct horse"}, "", "alice"},
		{"lower-cased", CreateParams{Username: "Bob.Smith@Corp", Password: "correct horse"}, "", "bob.smith@corp"},
		{"64 chars", CreateParams{Username: long, Password: "correct horse"}, "", long},
		{"all allowed characters", CreateParams{Username: "a.b_c-d@e9", Password: "correct horse"}, "", "a.b_c-d@e9"},
		{"empty username", CreateParams{Username: "", Password: "correct horse"}, "invalid_request", ""},
		{"65 chars", CreateParams{Username: long + "a", Password: "correct horse"}, "invalid_request", ""},
		{"space", CreateParams{Username: "al ice", Password: "correct horse"}, "invalid_request", ""},
		{"non-ascii", CreateParams{Username: "alïce", Password: "correct horse"}, "invalid_request", ""},
		{"slash", CreateParams{Username: "a/b", Password: "correct horse"}, "invalid_request", ""},
		{"looks like a user id", CreateParams{Username: ids.New(ids.User, time.Now()), Password: "correct horse"}, "invalid_request", ""},
		{"bad email", CreateParams{Username: "carol", Email: "not an email", Password: "correct horse"}, "invalid_request", ""},
		{"email with name", CreateParams{Username: "carol", Email: "Carol <carol@example.com>", Password: "correct horse"}, "invalid_request", ""},
		{"email too long", CreateParams{Username: "carol", Email: strings.Repeat("c", 250) + "@e.co", Password: "correct horse"}, "invalid_request", ""},
		{"short password", CreateParams{Username: "carol", Password: "1234567"}, "invalid_password", ""},
		{"empty password", CreateParams{Username: "carol"}, "invalid_password", ""},
		{"long password", CreateParams{Username: "carol", Password: strings.Repeat("p", password.MaxLen+1)}, "invalid_password", ""},
		{"longest password", CreateParams{Username: "dave", Password: strings.Repeat("p", password.MaxLen)}, "", "dave"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := e.svc.Create(ctx, tt.p, admin)
			if got := invalidCode(err); got != tt.wantCode || (tt.wantCode == "" && err != nil) {
				t.Fatalf("Create = %v (code %q), want code %q", err, got, tt.wantCode)
			}
			if tt.wantCode != "" {
				return
			}
			if u.Username != tt.wantName || u.PasswordHash != "" || !ids.Valid(ids.User, u.ID) {
				t.Errorf("created user %+v, want username %q and no hash", u, tt.wantName)
			}
			stored, err := e.st.GetUser(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(stored.PasswordHash, "$argon2id$") {
				t.Errorf("stored hash %q", stored.PasswordHash)
			}
			stored.PasswordHash = ""
			if diff := cmp.Diff(stored, u); diff != "" {
				t.Errorf("stored user (-got +want):\n%s", diff)
			}
		})
	}
	// Only the successful creates were audited, by the admin.
	creates := e.audit(t, "user.create")
	if len(creates) != 5 {
		t.Errorf("%d user.create events, want 5", len(creates))
	}
	for _, ev := range creates {
		if ev.Actor != admin.ID || ev.RemoteAddr != admin.RemoteAddr {
			t.Errorf("user.create by %q from %q", ev.Actor, ev.RemoteAddr)
		}
	}
	if got := details(t, creates[0]); !cmp.Equal(got, map[string]any{"username": "alice", "email": "alice@example.com"}) {
		t.Errorf("user.create details %v", got)
	}
}

func TestDuplicateUsername(t *testing.T) {
	e := newEnv(t, nil)
	e.create(t, "alice", "correct horse")
	if _, err := e.svc.Create(ctx, CreateParams{Username: "ALICE", Password: "another one"}, admin); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("Create(ALICE) = %v, want ErrAlreadyExists", err)
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create(t, "alice", "correct horse")
	bob := e.create(t, "bob", "battery staple")
	if _, err := e.st.UpdateUser(ctx, bob.ID, func(u *store.User) error { u.DisabledAt = e.clock.Now(); return nil }, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, username, password string
		wantErr                  error
		wantReason               string
	}{
		{"ok", "alice", "correct horse", nil, ""},
		{"ok any case", "Alice", "correct horse", nil, ""},
		{"wrong password", "alice", "correct horse!", ErrBadCredentials, ReasonWrongPassword},
		{"unknown user", "mallory", "correct horse", ErrBadCredentials, ReasonUnknownUser},
		{"invalid username", "no such/user", "correct horse", ErrBadCredentials, ReasonUnknownUser},
		{"disabled", "bob", "battery staple", ErrBadCredentials, ReasonDisabled},
		{"disabled wrong password", "bob", "nope nope", ErrBadCredentials, ReasonWrongPassword},
		{"password too long", "alice", strings.Repeat("x", password.MaxLen+1), ErrBadCredentials, ReasonWrongPassword},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit(t, ""))
			u, err := e.svc.Authenticate(ctx, tt.username, tt.password, ip1)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Authenticate = %v, want %v", err, tt.wantErr)
			}
			evs := e.audit(t, "")[before:]
			if len(evs) != 1 {
				t.Fatalf("%d audit events, want 1", len(evs))
			}
			ev := evs[0]
			if ev.RemoteAddr != ip1.String() {
				t.Errorf("audit RemoteAddr %q", ev.RemoteAddr)
			}
			if tt.wantErr == nil {
				if u.ID != alice.ID || u.PasswordHash != "" {
					t.Errorf("Authenticate = %+v, want alice without hash", u)
				}
				if ev.Action != "user.login" || ev.Actor != alice.ID || ev.Target != alice.ID {
					t.Errorf("audit %s by %s on %s, want user.login by and on %s", ev.Action, ev.Actor, ev.Target, alice.ID)
				}
				return
			}
			want := map[string]any{"username": tt.username, "reason": tt.wantReason}
			if ev.Action != "user.login_failure" || ev.Actor != "anonymous" || !cmp.Equal(details(t, ev), want) {
				t.Errorf("audit %s by %s: %s, want user.login_failure by anonymous with %v", ev.Action, ev.Actor, ev.Details, want)
			}
		})
	}
}

func TestAuditNeverHoldsPasswords(t *testing.T) {
	e := newEnv(t, nil)
	const pw, pw2 = "correct horse", "new password 42"
	u := e.create(t, "alice", pw)
	e.svc.Authenticate(ctx, "alice", pw, ip1)
	e.svc.Authenticate(ctx, "alice", pw2, ip1)
	e.svc.Authenticate(ctx, "bob", pw, ip1)
	_, err := e.svc.Update(ctx, u.ID, UpdateParams{Password: new(pw2), Email: new("a@example.org")}, admin)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := e.st.GetUser(ctx, u.ID)
	// Enough failures to be throttled, so a throttled attempt is audited.
	for range 6 {
		e.svc.Authenticate(ctx, "alice", pw, ip1)
	}
	evs := e.audit(t, "")
	if len(e.audit(t, "user.login_failure")) < 4 {
		t.Fatalf("too few failures audited to check")
	}
	for _, ev := range evs {
		s := string(ev.Details)
		for _, secret := range []string{pw, pw2, "$argon2id", stored.PasswordHash[30:]} {
			if strings.Contains(s, secret) {
				t.Errorf("%s details %s contain %q", ev.Action, s, secret)
			}
		}
	}
	upd := e.audit(t, "user.update")
	if got := details(t, upd[len(upd)-1]); !cmp.Equal(got, map[string]any{"email": "a@example.org", "password_reset": true}) {
		t.Errorf("user.update details %v", got)
	}
}

func TestLoginFailureUsernameTruncated(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("é", 100) // 200 bytes
	if _, err := e.svc.Authenticate(ctx, long, "whatever pw", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("Authenticate = %v", err)
	}
	evs := e.audit(t, "user.login_failure")
	got, _ := details(t, evs[0])["username"].(string)
	if want := strings.Repeat("é", 32); got != want {
		t.Errorf("audited username %q (%d bytes), want the first 64 bytes", got, len(got))
	}
}

func TestThrottlePerUser(t *testing.T) {
	e := newEnv(t, nil)
	e.create(t, "alice", "correct horse")
	// Each failure from another address: only the username limit applies.
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	for i := range 5 {
		if _, err := e.svc.Authenticate(ctx, "alice", "wrong password", addr(i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v, want ErrBadCredentials", i+1, err)
		}
		e.clock.Advance(time.Minute)
	}
	// Throttled now, even with the right password, in any case.
	for _, name := range []string{"alice", "ALICE"} {
		if _, err := e.svc.Authenticate(ctx, name, "correct horse", addr(9)); !errors.Is(err, ErrThrottled) {
			t.Errorf("Authenticate(%s) after 5 failures = %v, want ErrThrottled", name, err)
		}
	}
	// Other users are not affected.
	if _, err := e.svc.Authenticate(ctx, "bob", "whatever pw", addr(9)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("other username = %v, want ErrBadCredentials", err)
	}
	throttled := e.audit(t, "user.login_failure")
	if got := details(t, throttled[len(throttled)-2])["reason"]; got != ReasonThrottled {
		t.Errorf("throttled attempt audited with reason %v", got)
	}
	// The first failure leaves the 15-minute window 15 minutes after it
	// happened: one more attempt is then allowed.
	e.clock.Advance(10 * time.Minute) // first failure at 0, now 15m
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", addr(9)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// Success forgot every failure of the username.
	for i := range 4 {
		if _, err := e.svc.Authenticate(ctx, "alice", "wrong password", addr(i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d after success: %v", i+1, err)
		}
	}
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", addr(9)); err != nil {
		t.Errorf("login after 4 failures: %v", err)
	}
}

func TestThrottlePerAddress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UserFailures = 100 })
	e.create(t, "alice", "correct horse")
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	for _, attacker := range []netip.Addr{ip1, v6} {
		for i := range 20 {
			if _, err := e.svc.Authenticate(ctx, fmt.Sprintf("user%d", i), "guess guess", attacker); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("failure %d from %s: %v", i+1, attacker, err)
			}
		}
	}
	for _, tt := range []struct {
		addr netip.Addr
		want error
	}{
		{ip1, ErrThrottled},
		{netip.MustParseAddr("::ffff:198.51.100.7"), ErrThrottled},  // the same IPv4 address
		{netip.MustParseAddr("2001:db8:1:2:ffff::9"), ErrThrottled}, // the same /64
		{netip.MustParseAddr("198.51.100.8"), nil},
		{netip.MustParseAddr("2001:db8:1:3::1"), nil},
		{netip.Addr{}, nil}, // unknown address: not limited per address
	} {
		_, err := e.svc.Authenticate(ctx, "alice", "correct horse", tt.addr)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("Authenticate from %v = %v, want %v", tt.addr, err, tt.want)
		}
	}
	// Successful logins do not clear an address's failures.
	e.clock.Advance(14 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", ip1); !errors.Is(err, ErrThrottled) {
		t.Errorf("inside the window: %v, want ErrThrottled", err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", ip1); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestThrottledAuditsBounded(t *testing.T) {
	e := newEnv(t, nil)
	for range 5 {
		e.svc.Authenticate(ctx, "alice", "wrong password", ip1)
	}
	count := func() int {
		n := 0
		for _, ev := range e.audit(t, "user.login_failure") {
			if details(t, ev)["reason"] == ReasonThrottled {
				n++
			}
		}
		return n
	}
	for range 50 {
		if _, err := e.svc.Authenticate(ctx, "alice", "wrong password", ip1); !errors.Is(err, ErrThrottled) {
			t.Fatalf("Authenticate = %v, want ErrThrottled", err)
		}
	}
	if got := count(); got != 10 {
		t.Errorf("%d throttled attempts audited in a minute, want 10", got)
	}
	e.clock.Advance(time.Minute)
	e.svc.Authenticate(ctx, "alice", "wrong password", ip1)
	if got := count(); got != 11 {
		t.Errorf("%d throttled attempts audited, want 11 after a minute", got)
	}
	evs := e.audit(t, "user.login_failure")
	if got := details(t, evs[len(evs)-1])["suppressed"]; got != float64(40) {
		t.Errorf("suppressed = %v, want 40", got)
	}
}

// Concurrent guesses cannot all pass the check before the first one fails.
func TestConcurrentGuessesThrottled(t *testing.T) {
	e := newEnv(t, nil)
	e.create(t, "alice", "correct horse")
	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := e.svc.Authenticate(ctx, "alice", "wrong password", ip1)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var bad, throttled int
	for err := range errs {
		switch {
		case errors.Is(err, ErrBadCredentials):
			bad++
		case errors.Is(err, ErrThrottled):
			throttled++
		default:
			t.Errorf("Authenticate = %v", err)
		}
	}
	if bad != 5 || throttled != n-5 {
		t.Errorf("%d wrong-password answers and %d throttled, want 5 and %d", bad, throttled, n-5)
	}
}

func TestRehashOnLogin(t *testing.T) {
	e := newEnv(t, nil)
	u := e.create(t, "alice", "correct horse")
	stronger := password.Params{Time: 2, MemoryKiB: 128, Threads: 1, SaltLen: 16, KeyLen: 32}
	svc := New(Config{Store: e.st, Hasher: password.NewHasher(stronger, 0), Now: e.clock.Now})
	if _, err := svc.Authenticate(ctx, "alice", "wrong password", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if got, _ := e.st.GetUser(ctx, u.ID); !strings.HasPrefix(got.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("failed login rehashed: %s", got.PasswordHash)
	}
	if _, err := svc.Authenticate(ctx, "alice", "correct horse", ip1); err != nil {
		t.Fatal(err)
	}
	got, _ := e.st.GetUser(ctx, u.ID)
	if !strings.HasPrefix(got.PasswordHash, "$argon2id$v=19$m=128,t=2,p=1$") {
		t.Errorf("hash after login with stronger params: %s", got.PasswordHash)
	}
	logins := e.audit(t, "user.login")
	if d := details(t, logins[len(logins)-1]); d["rehashed"] != true {
		t.Errorf("login details %v, want rehashed", d)
	}
	if _, err := svc.Authenticate(ctx, "alice", "correct horse", ip1); err != nil {
		t.Errorf("login after rehash: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, nil)
	u := e.create(t, "alice", "correct horse")
	e.clock.Advance(time.Minute)
	now := e.clock.Now()

	got, err := e.svc.Update(ctx, u.ID, UpdateParams{Email: new("alice@example.org")}, admin)
	if err != nil {
		t.Fatal(err)
	}
	want := u
	want.Email, want.UpdatedAt = "alice@example.org", now
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Update(email) (-got +want):\n%s", diff)
	}

	_, err = e.svc.Update(ctx, u.ID, UpdateParams{Disabled: new(true)}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("login of disabled user = %v", err)
	}
	got, err = e.svc.Update(ctx, u.ID, UpdateParams{Disabled: new(false), Password: new("new password")}, admin)
	if err != nil || !got.DisabledAt.IsZero() {
		t.Fatalf("re-enable: %v, DisabledAt %v", err, got.DisabledAt)
	}
	if _, err := e.svc.Authenticate(ctx, "alice", "correct horse", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("login with the old password = %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, "alice", "new password", ip1); err != nil {
		t.Errorf("login with the reset password = %v", err)
	}

	n := len(e.audit(t, "user.update"))
	for _, tt := range []struct {
		name string
		p    UpdateParams
		code string
	}{
		{"bad email", UpdateParams{Email: new("nope")}, "invalid_request"},
		{"short password", UpdateParams{Password: new("short")}, "invalid_password"},
	} {
		if _, err := e.svc.Update(ctx, u.ID, tt.p, admin); invalidCode(err) != tt.code {
			t.Errorf("Update(%s) = %v, want %s", tt.name, err, tt.code)
		}
	}
	if _, err := e.svc.Update(ctx, "usr_missing", UpdateParams{Email: new("")}, admin); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	if got := len(e.audit(t, "user.update")); got != n {
		t.Errorf("refused updates appended %d events", got-n)
	}
	if _, err := e.svc.Get(ctx, "usr_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if err := e.svc.Delete(ctx, u.ID, admin); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := e.svc.Get(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Authenticate(ctx, "alice", "new password", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("login of deleted user = %v", err)
	}
	if got := e.audit(t, "user.delete"); len(got) != 1 || got[0].Target != u.ID || got[0].Actor != admin.ID {
		t.Errorf("user.delete events %+v", got)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, nil)
	var want []string
	for i := range 3 {
		u := e.create(t, fmt.Sprintf("user%d", i), "correct horse")
		want = append([]string{u.ID}, want...)
		e.clock.Advance(time.Millisecond)
	}
	var got []string
	after := ""
	for {
		page, next, err := e.svc.List(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			if u.PasswordHash != "" {
				t.Errorf("List returned a password hash")
			}
			got = append(got, u.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("List (-got +want):\n%s", diff)
	}
}

// grantFor makes client c a grant of user for api through the store, with an
// opaque access token, and returns the grant and the token's hash.
func (e *env) grantFor(t *testing.T, userID string, c store.Client) (store.Grant, tokenfmt.Hash) {
	t.Helper()
	now := e.clock.Now()
	code := store.AuthCode{Hash: tokenfmt.HashOf(ids.New("code", now)), ClientID: c.ID, UserID: userID, RedirectURI: c.RedirectURIs[0],
		APIID: c.APIs[0], Scopes: []string{"read"}, Challenge: "x", ChallengeMethod: "S256", AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := e.st.CreateAuthCode(ctx, code); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: c.ID, CreatedAt: now}
	if _, err := e.st.RedeemAuthCode(ctx, code.Hash, g, now, store.AuditEvent{}); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	secret, err := tokenfmt.Generate(tokenfmt.PrefixAccess)
	if err != nil {
		t.Fatal(err)
	}
	h := tokenfmt.HashOf(secret)
	tok := store.Token{ID: ids.New(ids.Token, now), APIID: c.APIs[0], Name: c.Name, Subject: userID, Scopes: []string{"read"},
		Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour), ClientID: c.ID, GrantID: g.ID}
	if err := e.st.IssueGrantTokens(ctx, g.ID, &tok, h, nil); err != nil {
		t.Fatalf("IssueGrantTokens: %v", err)
	}
	return g, h
}

func (e *env) client(t *testing.T, name string) store.Client {
	t.Helper()
	now := e.clock.Now()
	a := store.API{ID: ids.New(ids.API, now), Name: name + "-api", Identifier: "https://" + name + ".example.com", Scopes: []string{"read"},
		KeyPrefix: "jtp", CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreateAPI(ctx, a, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	c := store.Client{ID: ids.New(ids.Client, now), Name: name, Type: store.ClientPublic, GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"https://" + name + ".example.com/cb"}, APIs: []string{a.ID}, Scopes: []string{"read"},
		TokenFormat: store.FormatOpaque, SigningAlg: "ES256", AccessTokenTTL: time.Hour, AuthMethod: "none", CreatedAt: now, UpdatedAt: now}
	err := e.st.CreateClient(ctx, c, nil, store.AuditEvent{})
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

func TestDisableRevokesGrants(t *testing.T) {
	for _, tt := range []struct {
		name   string
		p      UpdateParams
		reason string
	}{
		{"disable", UpdateParams{Disabled: new(true)}, RevokeUserDisabled},
		{"password reset", UpdateParams{Password: new("brand new password")}, RevokePasswordReset},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.client(t, "app")
			u := e.create(t, "alice", "correct horse")
			other := e.create(t, "bob", "correct horse")
			g1, h1 := e.grantFor(t, u.ID, c)
			g2, h2 := e.grantFor(t, u.ID, c)
			_, hOther := e.grantFor(t, other.ID, c)
			e.clock.Advance(time.Minute)
			if _, err := e.svc.Update(ctx, u.ID, tt.p, admin); err != nil {
				t.Fatalf("Update: %v", err)
			}
			for _, g := range []store.Grant{g1, g2} {
				got, err := e.st.GetGrant(ctx, g.ID)
				if err != nil || got.RevokedAt.IsZero() || got.RevokeReason != tt.reason {
					t.Errorf("grant after update: revoked %v %q, %v", got.RevokedAt, got.RevokeReason, err)
				}
			}
			for _, h := range []tokenfmt.Hash{h1, h2} {
				if tok, _, err := e.st.LookupToken(ctx, h); err != nil || tok.RevokedAt.IsZero() {
					t.Errorf("access token after update: revoked %v, %v", tok.RevokedAt, err)
				}
			}
			if tok, _, err := e.st.LookupToken(ctx, hOther); err != nil || !tok.RevokedAt.IsZero() {
				t.Errorf("other user's token: revoked %v, %v", tok.RevokedAt, err)
			}
			if diff := cmp.Diff(e.evicted, []tokenfmt.Hash{h1, h2}, sortHashes); diff != "" {
				t.Errorf("evicted (-got +want):\n%s", diff)
			}
			if got := e.audit(t, "grant.revoke"); len(got) != 2 || got[0].Actor != admin.ID {
				t.Errorf("%d grant.revoke events, want 2 by the admin", len(got))
			}
		})
	}
}

var sortHashes = cmp.Transformer("sort", func(in []tokenfmt.Hash) []string {
	out := make([]string, len(in))
	for i, h := range in {
		out[i] = fmt.Sprintf("%x", h[:])
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestConsentsAndDelete(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t, "app")
	u := e.create(t, "alice", "correct horse")
	now := e.clock.Now()
	consent := store.Consent{UserID: u.ID, ClientID: c.ID, APIID: c.APIs[0], Scopes: []string{"read"}, CreatedAt: now, UpdatedAt: now}
	if err := e.st.PutConsent(ctx, consent, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Consents(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, []store.Consent{consent}); diff != "" {
		t.Errorf("Consents (-got +want):\n%s", diff)
	}
	if _, err := e.svc.Consents(ctx, "usr_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Consents(missing user) = %v, want ErrNotFound", err)
	}
	_, h := e.grantFor(t, u.ID, c)
	if err := e.svc.RevokeConsent(ctx, u.ID, c.ID, admin); err != nil {
		t.Fatalf("RevokeConsent: %v", err)
	}
	if tok, _, err := e.st.LookupToken(ctx, h); err != nil || tok.RevokedAt.IsZero() {
		t.Errorf("token after RevokeConsent: revoked %v, %v", tok.RevokedAt, err)
	}
	if diff := cmp.Diff(e.evicted, []tokenfmt.Hash{h}); diff != "" {
		t.Errorf("evicted (-got +want):\n%s", diff)
	}
	if evs := e.audit(t, "consent.revoke"); len(evs) != 1 || details(t, evs[0])["client_id"] != c.ID {
		t.Errorf("consent.revoke events %+v", evs)
	}
	if err := e.svc.RevokeConsent(ctx, u.ID, c.ID, admin); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second RevokeConsent = %v, want ErrNotFound", err)
	}

	e.evicted = nil
	_, h2 := e.grantFor(t, u.ID, c)
	if err := e.svc.Delete(ctx, u.ID, admin); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if diff := cmp.Diff(e.evicted, []tokenfmt.Hash{h, h2}, sortHashes); diff != "" {
		t.Errorf("evicted by Delete (-got +want):\n%s", diff)
	}
	if _, _, err := e.st.LookupToken(ctx, h2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token of deleted user: %v", err)
	}
}

func TestSessionValid(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		user  store.User
		start time.Time
		want  bool
	}{
		{"nothing ended", store.User{}, t0, true},
		{"begun after the end", store.User{SessionsEndedAt: t0}, t0.Add(time.Millisecond), true},
		{"begun in the same millisecond", store.User{SessionsEndedAt: t0}, t0, false},
		{"begun before", store.User{SessionsEndedAt: t0}, t0.Add(-time.Hour), false},
		{"disabled", store.User{DisabledAt: t0}, t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := SessionValid(tt.user, tt.start); got != tt.want {
			t.Errorf("%s: SessionValid = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestEveryEndMovesTheSessionGeneration proves that a sign-in racing with
// a password reset, a disable or a sign-out-everywhere cannot outlive it.
// Such a sign-in read the user before the end committed and may begin
// after the end's SessionsEndedAt (stamped before the commit), so the time
// check alone would keep it; but it carries the generation it read, and
// every end moves the generation on, even two ends in one millisecond
// (the clock here stands still).
func TestEveryEndMovesTheSessionGeneration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	u := e.create(t, "alice", "old password 1")
	pw, yes, no := "new password 2", true, false
	ends := []struct {
		name string
		end  func() error
	}{
		{"password reset", func() error { _, err := e.svc.Update(ctx, u.ID, UpdateParams{Password: &pw}, admin); return err }},
		{"the same reset again", func() error { _, err := e.svc.Update(ctx, u.ID, UpdateParams{Password: &pw}, admin); return err }},
		{"sign out everywhere", func() error { return e.svc.EndSessions(ctx, u.ID, admin) }},
		{"sign out everywhere again", func() error { return e.svc.EndSessions(ctx, u.ID, admin) }},
		{"disable", func() error { _, err := e.svc.Update(ctx, u.ID, UpdateParams{Disabled: &yes}, admin); return err }},
	}
	for _, end := range ends {
		// What a sign-in under way reads, and the start it records, one
		// millisecond after the end's stamp will be.
		before, err := e.st.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := end.end(); err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		after, err := e.st.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if SessionGeneration(before) == SessionGeneration(after) {
			t.Errorf("%s did not move the session generation (%d)", end.name, SessionGeneration(after))
		}
	}
	// Enabling again ends nothing more, and starts nothing old again.
	before, _ := e.st.GetUser(ctx, u.ID)
	if _, err := e.svc.Update(ctx, u.ID, UpdateParams{Disabled: &no}, admin); err != nil {
		t.Fatal(err)
	}
	if after, _ := e.st.GetUser(ctx, u.ID); SessionGeneration(after) != SessionGeneration(before) {
		t.Errorf("enabling moved the session generation")
	}
}
