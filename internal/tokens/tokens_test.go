package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/ratelimit"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// clock is a settable fake time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countingStore counts LookupToken and RecordUsage calls to prove what
// reaches the store, and can fail one RecordUsage call, before or after
// its write.
type countingStore struct {
	store.Store
	lookups     atomic.Int64
	usageWrites atomic.Int64
	// failUsageWrite is the RecordUsage call (counting from 1) that fails
	// without writing; 0 fails none.
	failUsageWrite atomic.Int64
	// loseUsageReply is the RecordUsage call that writes and then fails,
	// as a commit whose reply was lost does; 0 none.
	loseUsageReply atomic.Int64
	// refuseUsageWrites refuses every RecordUsage call, as the database
	// answering with an error does (store.ErrRefused), without writing.
	refuseUsageWrites atomic.Bool
	// flushIDs are the ids of every RecordUsage call, in order.
	mu       sync.Mutex
	flushIDs []string
}

var errInjected = errors.New("injected store failure")

func (c *countingStore) RecordUsage(ctx context.Context, f store.UsageFlush) error {
	c.mu.Lock()
	c.flushIDs = append(c.flushIDs, f.ID)
	c.mu.Unlock()
	n := c.usageWrites.Add(1)
	if n == c.failUsageWrite.Load() {
		return errInjected
	}
	if c.refuseUsageWrites.Load() {
		return fmt.Errorf("%w: %w", store.ErrRefused, errInjected)
	}
	if err := c.Store.RecordUsage(ctx, f); err != nil || n != c.loseUsageReply.Load() {
		return err
	}
	return errInjected
}

// ids returns the ids of the RecordUsage calls so far, in order.
func (c *countingStore) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.flushIDs)
}

func (c *countingStore) LookupToken(ctx context.Context, h tokenfmt.Hash) (store.Token, time.Time, error) {
	c.lookups.Add(1)
	return c.Store.LookupToken(ctx, h)
}

type fixture struct {
	svc   *Service
	st    *countingStore
	clock *clock
	api   store.API
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	cs := &countingStore{Store: db}
	svc, err := New(context.Background(), Config{Store: cs, Now: clk.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	api, err := svc.CreateAPI(context.Background(), APIParams{Name: "acme", Identifier: "https://acme.test", Scopes: []string{"read", "write"}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, st: cs, clock: clk, api: api}
}

func (f *fixture) create(t testing.TB, set Settings, expiresIn time.Duration) Created {
	t.Helper()
	c, err := f.svc.CreateToken(context.Background(), CreateParams{API: f.api.ID, Settings: set, ExpiresIn: expiresIn}, Actor{ID: "test"})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return c
}

func (f *fixture) verify(t testing.TB, req Request) Result {
	t.Helper()
	res, err := f.svc.Verify(context.Background(), &req)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

// use verifies secret n times, each of which must be valid.
func (f *fixture) use(t testing.TB, secret string, n int) {
	t.Helper()
	for range n {
		if res := f.verify(t, Request{Token: secret}); res.Code != Valid {
			t.Fatalf("verify: %v", res.Code)
		}
	}
}

// quotaToken creates a token with remaining units of quota and scopes.
func (f *fixture) quotaToken(t testing.TB, remaining int64, scopes ...string) Created {
	t.Helper()
	q := &store.Quota{Remaining: remaining}
	return f.create(t, Settings{Scopes: scopes, Quota: &q}, 0)
}

// flushWant runs svc's FlushUsage, which must fail with want (nil: must
// succeed); what names the flush in the failure message.
func flushWant(t testing.TB, svc *Service, want error, what string) {
	t.Helper()
	err := svc.FlushUsage(context.Background())
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: FlushUsage = %v, want %v", what, err, want)
	}
}

// wantCounted checks the use count and the remaining quota the store has
// for token id.
func (f *fixture) wantCounted(t testing.TB, id string, uses, remaining int64) {
	t.Helper()
	tok, err := f.svc.GetToken(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if tok.UseCount != uses || tok.Quota == nil || tok.Quota.Remaining != remaining {
		t.Errorf("use count %d, quota %+v; want %d uses and %d remaining", tok.UseCount, tok.Quota, uses, remaining)
	}
}

var ip = netip.MustParseAddr("10.1.2.3")

func TestVerifyCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other, err := f.svc.CreateAPI(context.Background(), APIParams{Name: "other", Identifier: "other", Scopes: []string{"read"}}, Actor{})
	if err != nil {
		t.Fatal(err)
	}
	plain := f.create(t, Settings{Scopes: []string{"read"}}, time.Hour)
	cidr := f.create(t, Settings{AllowedCIDRs: []string{"192.0.2.0/24", "2001:db8::1"}}, 0)
	// IPv4-mapped entries mean the IPv4 addresses they map, and are stored
	// so: client addresses are compared unmapped.
	mapped := f.create(t, Settings{AllowedCIDRs: []string{"::ffff:198.51.100.7", "::ffff:203.0.113.0/120"}}, 0)
	if want := []string{"198.51.100.7/32", "203.0.113.0/24"}; !slices.Equal(mapped.Token.AllowedCIDRs, want) {
		t.Errorf("IPv4-mapped allowed_cidrs stored as %v, want %v", mapped.Token.AllowedCIDRs, want)
	}
	good, _ := tokenfmt.Generate("jtp")
	tests := []struct {
		name string
		req  Request
		want Code
	}{
		{"valid", Request{Token: plain.Secret, APIID: f.api.ID, Scopes: []string{"read"}}, Valid},
		{"valid without api", Request{Token: plain.Secret}, Valid},
		{"malformed", Request{Token: "jtp_nope"}, Malformed},
		{"checksum typo", Request{Token: plain.Secret[:10] + flip(plain.Secret[10]) + plain.Secret[11:]}, Malformed},
		{"unknown", Request{Token: good}, NotFound},
		{"insufficient scope", Request{Token: plain.Secret, Scopes: []string{"write"}}, InsufficientScope},
		{"wrong api", Request{Token: plain.Secret, APIID: other.ID}, WrongAPI},
		{"caller restricted to other api", Request{Token: plain.Secret, AllowedAPIs: []string{other.ID}}, WrongAPI},
		{"forbidden ip", Request{Token: cidr.Secret, ClientIP: ip}, ForbiddenIP},
		{"allowed ip", Request{Token: cidr.Secret, ClientIP: netip.MustParseAddr("192.0.2.77")}, Valid},
		{"allowed ipv6", Request{Token: cidr.Secret, ClientIP: netip.MustParseAddr("2001:db8::1")}, Valid},
		{"v4-mapped address", Request{Token: cidr.Secret, ClientIP: netip.MustParseAddr("::ffff:192.0.2.1")}, Valid},
		{"v4-mapped entry, ipv4 client", Request{Token: mapped.Secret, ClientIP: netip.MustParseAddr("198.51.100.7")}, Valid},
		{"v4-mapped prefix, ipv4 client", Request{Token: mapped.Secret, ClientIP: netip.MustParseAddr("203.0.113.9")}, Valid},
		{"v4-mapped entry, another client", Request{Token: mapped.Secret, ClientIP: netip.MustParseAddr("198.51.100.8")}, ForbiddenIP},
	}
	for _, tt := range tests {
		if got := f.verify(t, tt.req).Code; got != tt.want {
			t.Errorf("%s: code %v, want %v", tt.name, got, tt.want)
		}
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestExpiryBoundary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t, Settings{}, time.Hour)
	f.clock.Add(time.Hour - time.Millisecond)
	if got := f.verify(t, Request{Token: c.Secret}).Code; got != Valid {
		t.Fatalf("1ms before expiry: %v", got)
	}
	f.clock.Add(time.Millisecond)
	if got := f.verify(t, Request{Token: c.Secret}).Code; got != Expired {
		t.Fatalf("at expiry: %v", got)
	}
}

func TestCacheKeepsStoreOffTheHotPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t, Settings{}, 0)
	unknown, _ := tokenfmt.Generate("jtp")
	for range 100 {
		f.verify(t, Request{Token: c.Secret})
		f.verify(t, Request{Token: unknown})
		f.verify(t, Request{Token: "garbage"})
	}
	if n := f.st.lookups.Load(); n != 2 {
		t.Errorf("%d store lookups for 300 verifications of 2 distinct well-formed tokens, want 2", n)
	}
	// Entries expire, so a missed invalidation heals.
	f.clock.Add(time.Minute)
	f.verify(t, Request{Token: c.Secret})
	if n := f.st.lookups.Load(); n != 3 {
		t.Errorf("stale entry was not reloaded: %d lookups", n)
	}
}

func TestSingleFlight(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t, Settings{}, 0)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { f.verify(t, Request{Token: c.Secret}) })
	}
	wg.Wait()
	if n := f.st.lookups.Load(); n > 2 {
		t.Errorf("%d store lookups for 50 concurrent verifications of one token", n)
	}
}

// blockingStore holds LookupToken until released, honouring the context
// it is given as the drivers do.
type blockingStore struct {
	store.Store
	entered chan context.Context // the context of each lookup, as it starts
	release chan struct{}
}

func (b *blockingStore) LookupToken(ctx context.Context, h tokenfmt.Hash) (store.Token, time.Time, error) {
	b.entered <- ctx
	select {
	case <-b.release:
	case <-ctx.Done():
		return store.Token{}, time.Time{}, ctx.Err()
	}
	return b.Store.LookupToken(ctx, h)
}

// TestLookupSurvivesTheRequestThatStartedIt checks that when the request
// whose store lookup concurrent verifications of one token share goes
// away, the others are not failed with its cancellation: they get the
// answer.
func TestLookupSurvivesTheRequestThatStartedIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t, Settings{}, 0)
	bs := &blockingStore{Store: f.st.Store, entered: make(chan context.Context, 1), release: make(chan struct{})}
	defer close(bs.entered) // after every verification below has returned
	svc, err := New(context.Background(), Config{Store: bs, Now: f.clock.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(context.Background())

	first, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, err := svc.Verify(first, &Request{Token: c.Secret})
		firstDone <- err
	}()
	<-bs.entered
	type outcome struct {
		res Result
		err error
	}
	second := make(chan outcome, 1)
	go func() {
		res, err := svc.Verify(context.Background(), &Request{Token: c.Secret})
		second <- outcome{res, err}
	}()
	// A third request that gives up while waiting stops waiting.
	third, cancelThird := context.WithCancel(context.Background())
	thirdDone := make(chan error, 1)
	go func() {
		_, err := svc.Verify(third, &Request{Token: c.Secret})
		thirdDone <- err
	}()
	for svc.flight.joined.Load() < 2 { // both wait for the first one's lookup
		runtime.Gosched()
	}
	cancel() // the first client goes away, and with it its lookup
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("the request that went away: %v, want context.Canceled", err)
	}
	cancelThird()
	close(bs.release)
	go func() { // a lookup started by a late request goes through at once
		for range bs.entered {
		}
	}()
	if o := <-second; o.err != nil || o.res.Code != Valid {
		t.Errorf("a request waiting for the shared lookup: %v, %v; want valid", o.res.Code, o.err)
	}
	if err := <-thirdDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("a request that gave up while waiting: %v, want nil or context.Canceled", err)
	}
}

// stallAfterRead holds the first LookupToken until released, after it
// has read the store: a load that read a token before a change to it.
type stallAfterRead struct {
	store.Store
	first   atomic.Bool
	read    chan struct{} // closed once the first lookup has read
	release chan struct{}
}

func (s *stallAfterRead) LookupToken(ctx context.Context, h tokenfmt.Hash) (store.Token, time.Time, error) {
	tok, exp, err := s.Store.LookupToken(ctx, h)
	if s.first.CompareAndSwap(false, true) {
		close(s.read)
		<-s.release
	}
	return tok, exp, err
}

// TestVerifyAfterRevokeIgnoresAnEarlierLoad checks that a verification
// that starts after RevokeToken returned does not share a store load that
// read the token before the revocation (and would answer valid): it loads
// the token again.
func TestVerifyAfterRevokeIgnoresAnEarlierLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.create(t, Settings{}, 0)
	ss := &stallAfterRead{Store: f.st.Store, read: make(chan struct{}), release: make(chan struct{})}
	svc, err := New(ctx, Config{Store: ss, Now: f.clock.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	early := make(chan Code, 1)
	go func() { // concurrent with the revocation: either answer is right
		res, _ := svc.Verify(ctx, &Request{Token: c.Secret})
		early <- res.Code
	}()
	<-ss.read
	if _, err := svc.RevokeToken(ctx, c.Token.ID, "leaked", Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	late := make(chan Code, 1)
	go func() {
		res, _ := svc.Verify(ctx, &Request{Token: c.Secret})
		late <- res.Code
	}()
	// The late verification answers on its own, or joins the early load,
	// which can only answer once released.
	released := false
	got := codeUnset
	for got == codeUnset {
		select {
		case got = <-late:
		default:
			if !released && svc.flight.joined.Load() > 0 {
				close(ss.release)
				released = true
			}
			runtime.Gosched()
		}
	}
	if !released {
		close(ss.release)
	}
	<-early
	if got != Revoked {
		t.Errorf("verification started after RevokeToken returned: %v, want revoked", got)
	}
	if n := svc.flight.joined.Load(); n != 0 {
		t.Errorf("%d verifications joined a load that predates the revocation", n)
	}
}

func TestRevokeIsImmediate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t, Settings{}, 0)
	f.verify(t, Request{Token: c.Secret}) // cached
	if _, err := f.svc.RevokeToken(context.Background(), c.Token.ID, "leaked", Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if got := f.verify(t, Request{Token: c.Secret}).Code; got != Revoked {
		t.Errorf("after revoke: %v", got)
	}
}

func TestRotateGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old := f.create(t, Settings{}, 0)
	f.verify(t, Request{Token: old.Secret})
	rot, err := f.svc.RotateToken(context.Background(), old.Token.ID, time.Hour, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Secret == old.Secret || rot.Token.ID != old.Token.ID || !rot.PreviousExpiresAt.Equal(f.clock.Now().Truncate(time.Millisecond).Add(time.Hour)) {
		t.Fatalf("rotation result: %+v", rot.Token)
	}
	// A verify answer holds until the presented secret stops working: the
	// old secret's grace end, the token's expiry (never) for the new one.
	for _, tt := range []struct {
		secret      string
		wantExpires time.Time
	}{{old.Secret, rot.PreviousExpiresAt}, {rot.Secret, time.Time{}}} {
		if got := f.verify(t, Request{Token: tt.secret}); got.Code != Valid || !got.ExpiresAt.Equal(tt.wantExpires) {
			t.Errorf("during grace: %v, answer expires %v; want valid, %v", got.Code, got.ExpiresAt, tt.wantExpires)
		}
	}
	f.clock.Add(time.Hour)
	if got := f.verify(t, Request{Token: old.Secret}).Code; got != Expired {
		t.Errorf("old secret after grace: %v", got)
	}
	if got := f.verify(t, Request{Token: rot.Secret}).Code; got != Valid {
		t.Errorf("new secret after grace: %v", got)
	}
	if _, err := f.svc.RotateToken(context.Background(), old.Token.ID, 8*24*time.Hour, Actor{}); err == nil {
		t.Errorf("grace over 7 days accepted")
	}
}

func TestRateLimitAndQuota(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rl := &store.RateLimit{Limit: 2, Window: time.Minute}
	q := &store.Quota{Remaining: 3, RefillAmount: 3, RefillInterval: store.RefillDaily}
	c := f.create(t, Settings{RateLimit: &rl, Quota: &q}, 0)
	want := []Code{Valid, Valid, RateLimited}
	for i, w := range want {
		if got := f.verify(t, Request{Token: c.Secret}); got.Code != w {
			t.Fatalf("request %d: %v, want %v", i, got.Code, w)
		}
	}
	f.clock.Add(time.Minute)
	if got := f.verify(t, Request{Token: c.Secret}); got.Code != Valid || got.Quota != 0 {
		t.Fatalf("third use: %v, quota %d", got.Code, got.Quota)
	}
	f.clock.Add(time.Minute)
	if got := f.verify(t, Request{Token: c.Secret}).Code; got != QuotaExceeded {
		t.Fatalf("over quota: %v", got)
	}
	// The clock started at 23:00 UTC: an hour later a new day refills.
	f.clock.Add(time.Hour)
	if got := f.verify(t, Request{Token: c.Secret}); got.Code != Valid || got.Quota != 2 {
		t.Fatalf("after daily refill: %v, quota %d", got.Code, got.Quota)
	}
	if err := f.svc.FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored, _ := f.svc.GetToken(context.Background(), c.Token.ID)
	if stored.Quota.Remaining != 2 || stored.UseCount != 4 {
		t.Errorf("flushed quota %d, uses %d; want 2 and 4", stored.Quota.Remaining, stored.UseCount)
	}
	hours, err := f.svc.Usage(context.Background(), c.Token.ID, f.clock.Now().Add(-24*time.Hour), f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var allowed, denied int64
	for _, h := range hours {
		allowed += h.Allowed
		denied += h.Denied
	}
	if allowed != 4 || denied != 2 || len(hours) != 2 {
		t.Errorf("usage: %d hours, %d allowed, %d denied; want 2, 4, 2", len(hours), allowed, denied)
	}
}

// TestQuotaUpdateDropsUsageOfTheReplacedQuota checks that consumption
// counted before a quota is set (PATCH) but flushed after is not applied
// to the new quota: not taken from it, and not resetting it to the
// replaced quota's refill.
func TestQuotaUpdateDropsUsageOfTheReplacedQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		from    *store.Quota
		to      *store.Quota
		want    store.Quota // stored after the flush, but PeriodStart and Version
		wantUse int64       // quota remaining after one more verification on a fresh node
	}{
		{"daily refill to none", &store.Quota{Remaining: 100, RefillAmount: 100, RefillInterval: store.RefillDaily},
			&store.Quota{Remaining: 5000}, store.Quota{Remaining: 5000}, 4999},
		{"none to daily refill", &store.Quota{Remaining: 100},
			&store.Quota{Remaining: 10, RefillAmount: 10, RefillInterval: store.RefillDaily}, store.Quota{Remaining: 10, RefillAmount: 10, RefillInterval: store.RefillDaily}, 9},
		{"same quota set again", &store.Quota{Remaining: 100}, &store.Quota{Remaining: 100}, store.Quota{Remaining: 100}, 99},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c := f.create(t, Settings{Quota: &tt.from}, 0)
			for range 3 {
				if got := f.verify(t, Request{Token: c.Secret}).Code; got != Valid {
					t.Fatal(got)
				}
			}
			if _, err := f.svc.UpdateToken(ctx, c.Token.ID, Settings{Quota: &tt.to}, Actor{ID: "test"}); err != nil {
				t.Fatal(err)
			}
			f.clock.Add(2 * time.Hour) // a new day: a delta of the replaced daily quota would refill
			if err := f.svc.FlushUsage(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := f.svc.GetToken(ctx, c.Token.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*got.Quota, tt.want, cmpopts.IgnoreFields(store.Quota{}, "PeriodStart", "Version")); diff != "" {
				t.Errorf("stored quota after the update and a flush (-got +want):\n%s", diff)
			}
			// Another node (or this one restarted) starts from the store.
			svc2, err := New(ctx, Config{Store: f.st.Store, Now: f.clock.Now, UsageFlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer svc2.Close(ctx)
			if res, _ := svc2.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid || res.Quota != tt.wantUse {
				t.Errorf("on a fresh node: %v, quota remaining %d; want valid, %d", res.Code, res.Quota, tt.wantUse)
			}
		})
	}
}

// blockFirstAllow holds the first rate-limit check until released. It
// sits between the cache lookup and the quota in Verify.
type blockFirstAllow struct {
	ratelimit.Limiter
	first            atomic.Bool
	entered, release chan struct{}
}

func (b *blockFirstAllow) Allow(ctx context.Context, key string, l ratelimit.Limit, now time.Time) (ratelimit.Decision, error) {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
	}
	return b.Limiter.Allow(ctx, key, l, now)
}

// TestQuotaUpdateDuringVerify checks that a verification holding the
// token as it was before its quota was set does not leave the node
// counting against the replaced quota.
func TestQuotaUpdateDuringVerify(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	bl := &blockFirstAllow{Limiter: ratelimit.NewMemory(), entered: make(chan struct{}), release: make(chan struct{})}
	svc, err := New(ctx, Config{Store: f.st.Store, Now: f.clock.Now, UsageFlushInterval: time.Hour, Limiter: bl})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	rl := &store.RateLimit{Limit: 1000, Window: time.Second}
	q := &store.Quota{Remaining: 1000}
	c, err := svc.CreateToken(ctx, CreateParams{API: f.api.ID, Settings: Settings{RateLimit: &rl, Quota: &q}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan Code, 1)
	go func() {
		res, _ := svc.Verify(ctx, &Request{Token: c.Secret})
		inFlight <- res.Code
	}()
	<-bl.entered
	zero := &store.Quota{Remaining: 0} // cut the customer off
	if _, err := svc.UpdateToken(ctx, c.Token.ID, Settings{Quota: &zero}, Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	close(bl.release)
	<-inFlight // concurrent with the update: either answer is right
	for i := range 3 {
		if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != QuotaExceeded {
			t.Errorf("verification %d after the quota was set to 0: %v (quota remaining %d), want quota_exceeded", i, res.Code, res.Quota)
		}
	}
}

// testQuotaUpdateReachesOtherNode checks that a quota set on node a
// applies on node b, which counted against the replaced quota, once b
// reads the token again (here: its cache entry aged out on clk).
func testQuotaUpdateReachesOtherNode(t *testing.T, a, b *Service, clk *clock) {
	ctx := context.Background()
	api, err := a.CreateAPI(ctx, APIParams{Name: "quota", Identifier: "quota"}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	q := &store.Quota{Remaining: 1000}
	c, err := a.CreateToken(ctx, CreateParams{API: api.ID, Settings: Settings{Quota: &q}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := b.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid {
		t.Fatalf("on node b before the update: %v", res.Code)
	}
	zero := &store.Quota{Remaining: 0}
	if _, err := a.UpdateToken(ctx, c.Token.ID, Settings{Quota: &zero}, Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(b.cfg.CacheTTL)
	if res, _ := b.Verify(ctx, &Request{Token: c.Secret}); res.Code != QuotaExceeded {
		t.Errorf("on node b after the quota was set to 0 on node a: %v (quota remaining %d), want quota_exceeded", res.Code, res.Quota)
	}
	if err := b.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.GetToken(ctx, c.Token.ID); got.Quota.Remaining != 0 {
		t.Errorf("stored quota after node b's flush: %d, want 0", got.Quota.Remaining)
	}
}

// sqliteNodes returns two services on one SQLite database: nodes that
// share a store but nothing in memory, as PostgreSQL nodes do (without
// LISTEN/NOTIFY).
func sqliteNodes(t *testing.T, clk *clock, bcfg Config) (a, b *Service) {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return twoNodes(t, db, db, clk, bcfg)
}

// twoNodes starts a service on each store; b's configuration is bcfg with
// sa or sb filled in.
func twoNodes(t *testing.T, sa, sb store.Store, clk *clock, bcfg Config) (a, b *Service) {
	t.Helper()
	ctx := context.Background()
	a, err := New(ctx, Config{Store: sa, Now: clk.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(ctx) })
	if bcfg.Store == nil {
		bcfg.Store = sb
	}
	bcfg.Now, bcfg.UsageFlushInterval = clk.Now, time.Hour
	b, err = New(ctx, bcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(ctx) })
	return a, b
}

func TestQuotaUpdateReachesOtherNode(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	a, b := sqliteNodes(t, clk, Config{})
	testQuotaUpdateReachesOtherNode(t, a, b, clk)
}

// quotaStates counts the quota counters m holds.
func (m *meter) quotaStates() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.quota)
		s.mu.Unlock()
	}
	return n
}

// TestIdleQuotaStatesAreDropped checks that a flush drops the quota
// counter of a token no longer used once it has nothing left to flush and
// has been idle for longer than the cache TTL, and not before.
func TestIdleQuotaStatesAreDropped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.quotaToken(t, 100)
	ttl := f.svc.cfg.CacheTTL
	steps := []struct {
		name       string
		verify     bool
		advance    time.Duration // before the flush
		failFlush  bool
		wantStates int
	}{
		{"used: its consumption is flushed", true, 0, false, 1},
		{"idle for the cache TTL", false, ttl, false, 1},
		{"idle for longer", false, time.Millisecond, false, 0},
		{"used again", true, 0, false, 1},
		{"used, then idle, but its flush fails", true, ttl + time.Millisecond, true, 1},
		{"idle, with its failed delta written only now", false, ttl + time.Millisecond, false, 1},
		{"idle for less than the cache TTL since", false, ttl, false, 1},
		{"idle for longer", false, time.Millisecond, false, 0},
	}
	remaining := int64(100)
	for _, st := range steps {
		if st.verify {
			remaining--
			if res := f.verify(t, Request{Token: c.Secret}); res.Code != Valid || res.Quota != remaining {
				t.Fatalf("%s: %v, quota remaining %d; want valid, %d", st.name, res.Code, res.Quota, remaining)
			}
		}
		f.clock.Add(st.advance)
		if st.failFlush {
			f.st.failUsageWrite.Store(f.st.usageWrites.Load() + 1)
			if err := f.svc.FlushUsage(ctx); !errors.Is(err, errInjected) {
				t.Fatalf("%s: flush: %v, want the injected failure", st.name, err)
			}
		} else if err := f.svc.FlushUsage(ctx); err != nil {
			t.Fatalf("%s: flush: %v", st.name, err)
		}
		if got := f.svc.usage.quotaStates(); got != st.wantStates {
			t.Errorf("%s: %d quota counters, want %d", st.name, got, st.wantStates)
		}
	}
	// Rebuilt from the store, the counter goes on where it stopped.
	f.clock.Add(ttl)
	if res := f.verify(t, Request{Token: c.Secret}); res.Quota != remaining-1 {
		t.Errorf("after the counter was dropped: quota remaining %d, want %d", res.Quota, remaining-1)
	}
}

// testAPIIndexMissReloads checks that node b, whose API index predates an
// API created on node a, reloads it rather than fail when a token names
// that API: rotation, update, and a verify:<id> scope.
func testAPIIndexMissReloads(t *testing.T, a, b *Service) {
	ctx := context.Background()
	api, err := a.CreateAPI(ctx, APIParams{Name: "late", Identifier: "late", Scopes: []string{"read"}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.CreateToken(ctx, CreateParams{API: api.ID}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RotateToken(ctx, c.Token.ID, 0, Actor{ID: "test"}); err != nil {
		t.Errorf("rotate on node b: %v", err)
	}
	name := "renamed"
	if _, err := b.UpdateToken(ctx, c.Token.ID, Settings{Name: &name, Scopes: []string{"read"}}, Actor{ID: "test"}); err != nil {
		t.Errorf("update on node b: %v", err)
	}
	builtin, _, err := a.EnsureBuiltinAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.CreateAPI(ctx, APIParams{Name: "later", Identifier: "later"}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := a.CreateToken(ctx, CreateParams{API: builtin.ID, Settings: Settings{Scopes: []string{ScopeVerify}}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateToken(ctx, rs.Token.ID, Settings{Scopes: []string{ScopeVerifyAPIPrefix + other.ID}}, Actor{ID: "test"}); err != nil {
		t.Errorf("update to a verify scope of an api created on node a: %v", err)
	}
	third, err := a.CreateAPI(ctx, APIParams{Name: "latest", Identifier: "latest"}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateToken(ctx, CreateParams{API: builtin.ID, Settings: Settings{Scopes: []string{ScopeVerifyAPIPrefix + third.ID}}}, Actor{ID: "test"}); err != nil {
		t.Errorf("create with a verify scope of an api created on node a: %v", err)
	}
	if _, err := b.UpdateToken(ctx, rs.Token.ID, Settings{Scopes: []string{ScopeVerifyAPIPrefix + "api_nope"}}, Actor{ID: "test"}); err == nil {
		t.Errorf("update to a verify scope of no api succeeded")
	}
}

func TestAPIIndexMissReloads(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	a, b := sqliteNodes(t, clk, Config{})
	testAPIIndexMissReloads(t, a, b)
}

// gatedAPIs holds every ListAPIs, once gated, until the test lets one
// through.
type gatedAPIs struct {
	store.Store
	gated atomic.Bool
	pass  chan struct{}
}

func (g *gatedAPIs) ListAPIs(ctx context.Context) ([]store.API, error) {
	if g.gated.Load() {
		select {
		case <-g.pass:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.ListAPIs(ctx)
}

// testAPIIndexReloadsPeriodically checks that node b picks up a change
// node a made to an API it knows (a lowered max_ttl) by itself, without a
// miss: b's periodic reload (every millisecond here) is let through twice
// after the change, so that the first reload that began after it has
// completed.
func testAPIIndexReloadsPeriodically(t *testing.T, sa, sb store.Store) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	a, err := New(ctx, Config{Store: sa, Now: clk.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(ctx) })
	api, err := a.CreateAPI(ctx, APIParams{Name: "ttl", Identifier: "ttl"}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedAPIs{Store: sb, pass: make(chan struct{})}
	_, b := twoNodes(t, sa, g, clk, Config{APIReloadInterval: time.Millisecond})
	g.gated.Store(true)
	hour := time.Hour
	if _, err := a.UpdateAPI(ctx, api.ID, APIUpdate{MaxTTL: &hour}, Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case g.pass <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("node b did not reload its API index within 10s (every 1ms configured)")
		}
	}
	g.gated.Store(false)
	close(g.pass)
	if got, err := b.ResolveAPI(ctx, api.ID); err != nil || got.MaxTTL != time.Hour {
		t.Fatalf("api on node b: %+v, %v; want max_ttl 1h", got, err)
	}
	if c, err := b.CreateToken(ctx, CreateParams{API: api.ID, ExpiresIn: 30 * 24 * time.Hour}, Actor{ID: "test"}); err == nil {
		t.Errorf("node b issued a token expiring %v, beyond the max_ttl of 1h set on node a", c.Token.ExpiresAt)
	}
}

func TestAPIIndexReloadsPeriodically(t *testing.T) {
	t.Parallel()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testAPIIndexReloadsPeriodically(t, db, db)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	neg := &store.RateLimit{Limit: -1, Window: time.Second}
	badQuota := &store.Quota{Remaining: 1, RefillAmount: 5, RefillInterval: "hourly"}
	name := string(make([]byte, 300))
	tests := []struct {
		name string
		p    CreateParams
		code string
	}{
		{"undefined scope", CreateParams{API: f.api.ID, Settings: Settings{Scopes: []string{"admin"}}}, "invalid_scope"},
		{"duplicate scope", CreateParams{API: f.api.ID, Settings: Settings{Scopes: []string{"read", "read"}}}, "invalid_scope"},
		{"past expiry", CreateParams{API: f.api.ID, ExpiresAt: f.clock.Now().Add(-time.Second)}, "invalid_expiry"},
		{"both expiries", CreateParams{API: f.api.ID, ExpiresIn: time.Hour, ExpiresAt: f.clock.Now().Add(time.Hour)}, "invalid_expiry"},
		{"negative limit", CreateParams{API: f.api.ID, Settings: Settings{RateLimit: &neg}}, "invalid_limit"},
		{"bad refill", CreateParams{API: f.api.ID, Settings: Settings{Quota: &badQuota}}, "invalid_limit"},
		{"metadata array", CreateParams{API: f.api.ID, Settings: Settings{Metadata: []byte(`[1]`)}}, "invalid_metadata"},
		{"metadata too big", CreateParams{API: f.api.ID, Settings: Settings{Metadata: []byte(`{"a":"` + string(make([]byte, 5000)) + `"}`)}}, "invalid_metadata"},
		{"bad cidr", CreateParams{API: f.api.ID, Settings: Settings{AllowedCIDRs: []string{"10.0.0.0/33"}}}, "invalid_cidr"},
		{"long name", CreateParams{API: f.api.ID, Settings: Settings{Name: &name}}, "invalid_request"},
	}
	for _, tt := range tests {
		_, err := f.svc.CreateToken(ctx, tt.p, Actor{})
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Code != tt.code {
			t.Errorf("%s: err %v, want code %s", tt.name, err, tt.code)
		}
	}
	if _, err := f.svc.CreateToken(ctx, CreateParams{API: "nope"}, Actor{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown api: %v", err)
	}
	list, _, _ := f.svc.ListTokens(ctx, store.TokenFilter{})
	if len(list) != 0 {
		t.Errorf("%d tokens stored by refused creates", len(list))
	}
	// The API's max lifetime applies when no expiry is asked for, and caps one that is.
	maxTTL := 24 * time.Hour
	capped, err := f.svc.CreateAPI(ctx, APIParams{Name: "capped", Identifier: "capped", MaxTTL: maxTTL}, Actor{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.svc.CreateToken(ctx, CreateParams{API: capped.Name}, Actor{})
	if err != nil || !c.Token.ExpiresAt.Equal(f.clock.Now().Add(maxTTL).Truncate(time.Millisecond)) {
		t.Errorf("default expiry under max_ttl: %v %v", c.Token.ExpiresAt, err)
	}
	if _, err := f.svc.CreateToken(ctx, CreateParams{API: capped.Name, ExpiresIn: 48 * time.Hour}, Actor{}); err == nil {
		t.Errorf("expiry beyond max_ttl accepted")
	}
}

func TestVerifyScopesForBuiltinAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin, err := f.svc.IssueAdminToken(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if admin.Token.Scopes[0] != ScopeAdmin {
		t.Fatalf("admin token scopes %v", admin.Token.Scopes)
	}
	ok := []string{"verify:" + f.api.ID}
	if _, err := f.svc.CreateToken(ctx, CreateParams{API: BuiltinAPIName, Settings: Settings{Scopes: ok}}, Actor{}); err != nil {
		t.Errorf("verify:<existing api>: %v", err)
	}
	if _, err := f.svc.CreateToken(ctx, CreateParams{API: BuiltinAPIName, Settings: Settings{Scopes: []string{"verify:api_nope"}}}, Actor{}); err == nil {
		t.Errorf("verify:<missing api> accepted")
	}
	apis, can := CallerAPIs(ok)
	if !can || len(apis) != 1 || apis[0] != f.api.ID {
		t.Errorf("CallerAPIs(%v) = %v %v", ok, apis, can)
	}
	if apis, can := CallerAPIs([]string{"verify"}); !can || apis != nil {
		t.Errorf("CallerAPIs(verify) = %v %v", apis, can)
	}
	if _, can := CallerAPIs(nil); can {
		t.Errorf("no scopes may verify")
	}
}

func BenchmarkVerifyCacheHit(b *testing.B) {
	f := newFixture(b)
	c := f.create(b, Settings{Scopes: []string{"read"}}, 0)
	req := Request{Token: c.Secret, APIID: f.api.ID, Scopes: []string{"read"}, ClientIP: ip}
	f.verify(b, req)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res, _ := f.svc.Verify(ctx, &req); res.Code != Valid {
			b.Fatal(res.Code)
		}
	}
}

func BenchmarkVerifyCacheHitRateLimited(b *testing.B) {
	f := newFixture(b)
	rl := &store.RateLimit{Limit: 1_000_000_000, Window: time.Second}
	q := &store.Quota{Remaining: 1 << 50}
	c := f.create(b, Settings{Scopes: []string{"read"}, RateLimit: &rl, Quota: &q}, 0)
	req := Request{Token: c.Secret, Scopes: []string{"read"}, ClientIP: ip}
	f.verify(b, req)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := f.svc.Verify(ctx, &req); res.Code != Valid {
			b.Fatal(res.Code)
		}
	}
}

// BenchmarkVerifyCacheMiss measures a store lookup on SQLite: every
// iteration verifies a different one of 10,000 keys with the cache cleared.
func BenchmarkVerifyCacheMiss(b *testing.B) {
	f := newFixture(b)
	secrets := make([]string, 2000)
	for i := range secrets {
		secrets[i] = f.create(b, Settings{}, 0).Secret
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := secrets[i%len(secrets)]
		h := tokenfmt.HashOf(s)
		f.svc.cache.invalidate(h)
		if res, _ := f.svc.Verify(ctx, &Request{Token: s}); res.Code != Valid {
			b.Fatal(res.Code)
		}
		i++
	}
}

func TestJanitorPurgesAfterRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	expiring := f.create(t, Settings{}, time.Hour)
	revoked := f.create(t, Settings{}, 0)
	live := f.create(t, Settings{}, 0)
	if _, err := f.svc.RevokeToken(ctx, revoked.Token.ID, "", Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	// Within the retention period nothing goes.
	f.clock.Add(29 * 24 * time.Hour)
	if n, err := f.svc.PurgeExpired(ctx); err != nil || n != 0 {
		t.Fatalf("purge within retention: %d, %v", n, err)
	}
	f.clock.Add(2 * 24 * time.Hour)
	if n, err := f.svc.PurgeExpired(ctx); err != nil || n != 2 {
		t.Fatalf("purge after retention: %d, %v; want 2", n, err)
	}
	for _, c := range []Created{expiring, revoked} {
		if _, err := f.svc.GetToken(ctx, c.Token.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s survived the janitor: %v", c.Token.ID, err)
		}
	}
	if got := f.verify(t, Request{Token: live.Secret}).Code; got != Valid {
		t.Errorf("live token after janitor: %v", got)
	}
}

// TestJanitorHasNoBatchCap checks that one run deletes everything due,
// however many batches that takes: more than the 1,000 batches a run was
// once capped at, past which short-lived access tokens issued at a few
// hundred a second piled up for good.
func TestJanitorHasNoBatchCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{SQLiteSynchronous: "OFF"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := &clock{now: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)}
	svc, err := New(ctx, Config{Store: db, Now: clk.Now, UsageFlushInterval: time.Hour, JanitorBatch: 1, JanitorPause: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	api, err := svc.CreateAPI(ctx, APIParams{Name: "acme", Identifier: "https://acme.test", Scopes: []string{"read"}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 32 {
		wg.Go(func() {
			for range n / 32 {
				_, err := svc.CreateToken(ctx, CreateParams{API: api.ID, ExpiresIn: time.Hour}, Actor{ID: "test"})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(31 * 24 * time.Hour)
	if got, err := svc.PurgeExpired(ctx); err != nil || got != n/32*32 {
		t.Fatalf("PurgeExpired = %d, %v; want %d deleted one per batch", got, err, n/32*32)
	}
}

// TestUsageFlushWithALostReply checks that a flush whose write was
// committed but reported failed (its reply was lost) is sent again as it
// was, under the same id, before anything newer, and counted once: usage,
// use count and quota.
func TestUsageFlushWithALostReply(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.quotaToken(t, 100)
	f.use(t, c.Secret, 3)
	f.st.loseUsageReply.Store(f.st.usageWrites.Load() + 1)
	flushWant(t, f.svc, errInjected, "flush with a lost reply")
	f.use(t, c.Secret, 2) // counted meanwhile, flushed after the lost one
	flushWant(t, f.svc, nil, "flush after the lost reply")
	ids := f.st.ids()
	if len(ids) != 3 || ids[0] != ids[1] || ids[2] == ids[0] {
		t.Errorf("flush ids %q: want the lost one twice, then a new one", ids)
	}
	f.wantCounted(t, c.Token.ID, 5, 95)
	hours, err := f.svc.store.Usage(ctx, c.Token.ID, f.clock.Now().Add(-time.Hour), f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var allowed int64
	for _, h := range hours {
		allowed += h.Allowed
	}
	if allowed != 5 {
		t.Errorf("usage: %d allowed, want 5", allowed)
	}
}

// TestUsageFlushWrittenLateIsRemembered checks that a flush first sent
// while the store was down for more than a day, then written with a lost
// reply, is counted once although the janitor runs before it is sent
// again: the store keeps its id from the try that wrote it, not from the
// first try.
func TestUsageFlushWrittenLateIsRemembered(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.quotaToken(t, 100)
	f.use(t, c.Secret, 3)
	f.st.failUsageWrite.Store(f.st.usageWrites.Load() + 1)
	flushWant(t, f.svc, errInjected, "flush with the store down")
	f.clock.Add(usageFlushMemory + time.Hour) // the store stays down that long
	f.st.loseUsageReply.Store(f.st.usageWrites.Load() + 1)
	flushWant(t, f.svc, errInjected, "flush with a lost reply")
	if _, err := f.svc.PurgeUsageFlushes(ctx); err != nil { // the janitor's run
		t.Fatal(err)
	}
	flushWant(t, f.svc, nil, "flush after the lost reply")
	f.wantCounted(t, c.Token.ID, 3, 97)
}

// TestUsageFlushRefusedIsMergedBack checks that the counts of a write the
// store refused (it wrote nothing) go back into memory and out with the
// newer ones under a new id, rather than being sent again unchanged: a
// write refused every time would hold up every newer one.
func TestUsageFlushRefusedIsMergedBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.quotaToken(t, 100)
	f.use(t, c.Secret, 3)
	f.st.refuseUsageWrites.Store(true)
	flushWant(t, f.svc, store.ErrRefused, "flush")
	f.use(t, c.Secret, 2)
	f.st.refuseUsageWrites.Store(false)
	flushWant(t, f.svc, nil, "flush once the store takes the write")
	ids := f.st.ids()
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("flush ids %q: want the refused one, then one new write for all five uses", ids)
	}
	f.wantCounted(t, c.Token.ID, 5, 95)
}

// TestUsageFlushIDsAreForgotten checks that the store keeps the id of a
// node's flush only until the node's next flush says it saw it written,
// and the id of its last one until an idle flush says so: the janitor
// finds nothing left to purge.
func TestUsageFlushIDsAreForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.create(t, Settings{}, 0)
	for range 3 {
		if res := f.verify(t, Request{Token: c.Secret}); res.Code != Valid {
			t.Fatalf("verify: %v", res.Code)
		}
		if err := f.svc.FlushUsage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	flushWant(t, f.svc, nil, "nothing new: forgets the last id")
	writes := f.st.usageWrites.Load()
	flushWant(t, f.svc, nil, "nothing at all: no write")
	if got := f.st.usageWrites.Load(); got != writes {
		t.Errorf("an idle flush with nothing to forget wrote %d times", got-writes)
	}
	f.clock.Add(usageFlushMemory + time.Hour)
	if n, err := f.svc.PurgeUsageFlushes(ctx); err != nil || n != 0 {
		t.Errorf("PurgeUsageFlushes = %d, %v; want 0: every id was forgotten already", n, err)
	}
	tok, err := f.svc.GetToken(ctx, c.Token.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.UseCount != 3 {
		t.Errorf("use count %d, want 3", tok.UseCount)
	}
}

// TestUsageFlushLostReplyThenRefusedCountsOnce checks that a flush whose
// first try was committed with a lost reply, and whose next try the store
// refuses, is not merged back into memory and sent under a new id: its
// first try is already in the store, so that would count it twice.
func TestUsageFlushLostReplyThenRefusedCountsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.quotaToken(t, 100)
	f.use(t, c.Secret, 3)
	f.st.loseUsageReply.Store(f.st.usageWrites.Load() + 1)
	flushWant(t, f.svc, errInjected, "flush with a lost reply")
	f.st.refuseUsageWrites.Store(true)
	flushWant(t, f.svc, store.ErrRefused, "flush refused")
	f.st.refuseUsageWrites.Store(false)
	flushWant(t, f.svc, nil, "flush once the store takes the write")
	f.wantCounted(t, c.Token.ID, 3, 97)
}

// TestQuotaRefusedFlushKeepsStateUntilCacheCatchesUp checks that the quota
// counter of a token whose consumption was refused by the store, and
// written only by a later flush, is kept for the cache TTL after that
// write, as it is after a write whose reply was lost: a record read from
// the store before the write may be cached that long, without the
// consumption, and a counter rebuilt from it would spend the quota again.
func TestQuotaRefusedFlushKeepsStateUntilCacheCatchesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ttl := f.svc.cfg.CacheTTL
	c := f.quotaToken(t, 100, "read")
	f.use(t, c.Secret, 5) // 95 left
	f.st.refuseUsageWrites.Store(true)
	flushWant(t, f.svc, store.ErrRefused, "flush")
	f.st.refuseUsageWrites.Store(false)
	f.clock.Add(ttl + time.Millisecond)
	// A request that spends no quota reads the token again from the store,
	// which does not have the 5 uses yet.
	if res := f.verify(t, Request{Token: c.Secret, Scopes: []string{"write"}}); res.Code != InsufficientScope {
		t.Fatalf("verify for a scope it lacks: %v", res.Code)
	}
	flushWant(t, f.svc, nil, "flush writing the refused counts")
	f.clock.Add(time.Millisecond)
	flushWant(t, f.svc, nil, "flush")
	if res := f.verify(t, Request{Token: c.Secret}); res.Code != Valid || res.Quota != 94 {
		t.Errorf("verify: %v, quota remaining %d; want valid, 94", res.Code, res.Quota)
	}
}

// duringUsageWrite runs during, once, inside the next RecordUsage call,
// before the write reaches the store: the write takes that long.
type duringUsageWrite struct {
	store.Store
	during func()
}

func (d *duringUsageWrite) RecordUsage(ctx context.Context, f store.UsageFlush) error {
	if fn := d.during; fn != nil {
		d.during = nil
		fn()
	}
	return d.Store.RecordUsage(ctx, f)
}

// TestQuotaStateOutlivesARecordReadDuringItsWrite checks that a quota
// counter is kept for the cache TTL after its consumption was written,
// not after it was drained: a record read from the store while the write
// was under way, without the consumption, stays cached for the TTL from
// its read, and a counter rebuilt from it would spend the quota again.
func TestQuotaStateOutlivesARecordReadDuringItsWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	w := &duringUsageWrite{Store: f.st.Store}
	svc, err := New(ctx, Config{Store: w, Now: f.clock.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	ttl := svc.cfg.CacheTTL
	q := &store.Quota{Remaining: 100}
	c, err := svc.CreateToken(ctx, CreateParams{API: f.api.ID, Settings: Settings{Scopes: []string{"read"}, Quota: &q}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid {
			t.Fatalf("verify: %v", res.Code)
		}
	}
	f.clock.Add(ttl - time.Second) // the cached record is about to age out
	w.during = func() {
		f.clock.Add(2 * time.Second) // the write takes 2s
		// Meanwhile a request that spends no quota reads the token again.
		if res, _ := svc.Verify(ctx, &Request{Token: c.Secret, Scopes: []string{"write"}}); res.Code != InsufficientScope {
			t.Errorf("verify during the write: %v", res.Code)
		}
	}
	flushWant(t, svc, nil, "flush")
	f.clock.Add(ttl - 2*time.Second + time.Millisecond) // TTL after the drain, less than TTL after the read
	flushWant(t, svc, nil, "flush")
	if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid || res.Quota != 94 {
		t.Errorf("verify: %v, quota remaining %d; want valid, 94", res.Code, res.Quota)
	}
}

// afterTokenUpdate runs after, once, when the next UpdateToken has
// committed and before it returns: a request served meanwhile.
type afterTokenUpdate struct {
	store.Store
	after func()
}

func (a *afterTokenUpdate) UpdateToken(ctx context.Context, id string, update func(*store.Token) error, ev store.AuditEvent) (store.Token, []tokenfmt.Hash, error) {
	tok, hashes, err := a.Store.UpdateToken(ctx, id, update, ev)
	if fn := a.after; fn != nil && err == nil {
		a.after = nil
		fn()
	}
	return tok, hashes, err
}

// TestQuotaSetKeepsConsumptionOfTheNewQuota checks that a verification
// served between the commit of a quota update and the end of UpdateToken,
// which already counts against the new quota (it read the token after
// the commit), is not forgotten with the replaced quota's counter: the
// node would hand out that unit of the new quota again.
func TestQuotaSetKeepsConsumptionOfTheNewQuota(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	w := &afterTokenUpdate{Store: f.st.Store}
	svc, err := New(ctx, Config{Store: w, Now: f.clock.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	q := &store.Quota{Remaining: 1000}
	c, err := svc.CreateToken(ctx, CreateParams{API: f.api.ID, Settings: Settings{Quota: &q}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid || res.Quota != 999 {
		t.Fatalf("verify: %v, quota %d", res.Code, res.Quota)
	}
	w.after = func() {
		// The cached record aged out: this request reads the updated token.
		f.clock.Add(svc.cfg.CacheTTL)
		if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid || res.Quota != 9 {
			t.Errorf("verify right after the commit: %v, quota %d; want valid, 9", res.Code, res.Quota)
		}
	}
	ten := &store.Quota{Remaining: 10}
	if _, err := svc.UpdateToken(ctx, c.Token.ID, Settings{Quota: &ten}, Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if res, _ := svc.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid || res.Quota != 8 {
		t.Errorf("verify after the update: %v, quota remaining %d; want valid, 8", res.Code, res.Quota)
	}
	flushWant(t, svc, nil, "flush")
	if got, _ := svc.GetToken(ctx, c.Token.ID); got.Quota.Remaining != 8 {
		t.Errorf("stored quota after the flush: %d, want 8", got.Quota.Remaining)
	}
}

// TestFlushUsageInChunks checks that a flush writes the usage of many
// tokens in several bounded writes, and that when one of them fails the
// counts it and the later ones carried are kept for the next flush, while
// those already written are not written again.
func TestFlushUsageInChunks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const n = 2*usageChunk + 10
	secrets := make([]string, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := f.svc.CreateToken(ctx, CreateParams{API: f.api.ID}, Actor{ID: "test"})
			if err != nil {
				errs <- err
				return
			}
			secrets[i], ids[i] = c.Secret, c.Token.ID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if got := f.verify(t, Request{Token: s}).Code; got != Valid {
			t.Fatalf("verify: %v", got)
		}
	}

	f.st.failUsageWrite.Store(2)
	flushWant(t, f.svc, errInjected, "first flush")
	if got := f.st.usageWrites.Load(); got != 2 {
		t.Errorf("first flush: %d writes, want 2 (one written, one failed)", got)
	}
	flushWant(t, f.svc, nil, "second flush")
	if got := f.st.usageWrites.Load(); got != 5 {
		t.Errorf("after the second flush: %d writes, want 5 (the other %d tokens in two, then one telling the store to forget the three ids)", got, n-usageChunk)
	}
	for _, id := range ids {
		tok, err := f.svc.GetToken(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tok.UseCount != 1 {
			t.Fatalf("token %s: %d uses recorded, want 1", id, tok.UseCount)
		}
	}
}

// TestZeroResultIsNotValid checks that a Result nobody set reads as not
// valid, and that the zero Code is no outcome a metric counts.
func TestZeroResultIsNotValid(t *testing.T) {
	t.Parallel()
	var r Result
	if r.Valid() || r.Code == Valid {
		t.Error("the zero Result is valid")
	}
	for _, c := range Codes() {
		if c == 0 {
			t.Error("Codes lists the zero Code")
		}
	}
	if got := len(Codes()); got != 10 {
		t.Errorf("Codes lists %d outcomes, want 10", got)
	}
}
