package verify_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/verify"
)

// seqRecorder records the seq of every applied revocation event.
type seqRecorder struct {
	mu   sync.Mutex
	seqs []int64
}

func (r *seqRecorder) add(seq int64) {
	r.mu.Lock()
	r.seqs = append(r.seqs, seq)
	r.mu.Unlock()
}

func (r *seqRecorder) get() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs)
}

func (r *seqRecorder) has(seq int64) bool { return slices.Contains(r.get(), seq) }

func newSubscribed(t *testing.T, f *fakeJeton, rec *seqRecorder, edit func(*verify.Config)) *verify.Verifier {
	t.Helper()
	cfg := f.config(func(c *verify.Config) {
		c.Revocations = true
		c.PollInterval = 20 * time.Millisecond
		if edit != nil {
			edit(c)
		}
	})
	v, err := verify.NewWithEventHook(context.Background(), cfg, rec.add)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestRevocationJWT: a revoked jti, or a revoked grant (sid), makes the
// JWT fail with ErrRevoked, pushed through the stream.
func TestRevocationJWT(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	var rec seqRecorder
	v := newSubscribed(t, f, &rec, nil)
	ctx := context.Background()
	waitFor(t, "the stream", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.streamsUp == 1 })
	exp := f.clock.Now().Add(time.Hour)
	byJTI := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_a" })
	bySID := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_b"; m["sid"] = "grt_b" })
	byClient := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_c"; m["client_id"] = "cli_c" })
	other := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "grt_b"; m["sid"] = "cli_c"; m["client_id"] = "tok_a" }) // ids of the other kinds
	for _, tok := range []string{byJTI, bySID, byClient, other} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	s1 := f.publish("token", "tok_a", exp)
	s2 := f.publish("grant", "grt_b", exp)
	s3 := f.publish("client", "cli_c", exp)
	waitFor(t, "the events", func() bool { return rec.has(s1) && rec.has(s2) && rec.has(s3) })
	if f.pollCalls.Load() != 1 {
		t.Errorf("%d polls; the events should have come through the stream after the start-up poll", f.pollCalls.Load())
	}
	for _, tok := range []string{byJTI, bySID, byClient} {
		if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("revoked token: %v", err)
		}
	}
	if _, err := v.Verify(ctx, other); err != nil {
		t.Errorf("an id of one kind matched a claim of another: %v", err)
	}
	// An entry is kept until its expires_at plus the leeway, then dropped.
	f.clock.Set(exp.Add(verify.DefaultLeeway - time.Second))
	fresh := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_a" })
	if _, err := v.Verify(ctx, fresh); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("within the leeway after the entry's expiry: %v, want ErrRevoked", err)
	}
	f.clock.Set(exp.Add(verify.DefaultLeeway))
	fresh = f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_a" })
	if _, err := v.Verify(ctx, fresh); err != nil {
		t.Errorf("after the entry's expiry plus the leeway: %v", err)
	}
}

// TestRevocationWithinLeeway: a JWT revoked with expires_at = its exp (as
// Jeton publishes it) stays revoked while Verify would still accept it
// for the leeway past exp, whether revoked by jti or by grant.
func TestRevocationWithinLeeway(t *testing.T) {
	t.Parallel()
	const leeway = 5 * time.Minute
	tests := []struct {
		name  string
		after time.Duration // past exp
		want  error
	}{
		{"before exp", -time.Second, verify.ErrRevoked},
		{"at exp", 0, verify.ErrRevoked},
		{"just past exp", time.Second, verify.ErrRevoked},
		{"end of the leeway", leeway - time.Second, verify.ErrRevoked},
		{"past the leeway", leeway, verify.ErrExpired},
	}
	for _, kind := range []string{"token", "grant"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f, es := newFake(t)
			var rec seqRecorder
			v := newSubscribed(t, f, &rec, func(c *verify.Config) { c.Leeway = leeway })
			ctx := context.Background()
			exp := f.clock.Now().Add(10 * time.Minute)
			tok := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_r"; m["sid"] = "grt_r"; m["exp"] = exp.Unix() })
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
			id := map[string]string{"token": "tok_r", "grant": "grt_r"}[kind]
			seq := f.publish(kind, id, exp)
			waitFor(t, "the event", func() bool { return rec.has(seq) })
			for _, tt := range tests {
				f.clock.Set(exp.Add(tt.after))
				if _, err := v.Verify(ctx, tok); !errors.Is(err, tt.want) {
					t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
				}
			}
		})
	}
}

// TestRevocationGraceIsMaxLeeway: Jeton keeps an entry in the feed for
// store.RevocationGrace past its expires_at, and a Verifier keeps it for
// its Leeway: a Leeway the feed does not cover would let a Verifier that
// catches up late miss a revocation it still needs.
func TestRevocationGraceIsMaxLeeway(t *testing.T) {
	t.Parallel()
	if store.RevocationGrace != verify.MaxLeeway {
		t.Errorf("store.RevocationGrace = %v, verify.MaxLeeway = %v; they must be equal", store.RevocationGrace, verify.MaxLeeway)
	}
}

// TestRevocationCatchUpAtStart: revocations that exist before New are
// applied before New returns.
func TestRevocationCatchUpAtStart(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	exp := f.clock.Now().Add(time.Hour)
	for i := range 2500 { // several pages
		f.publish("token", "tok_"+strconv.Itoa(i), exp)
	}
	var rec seqRecorder
	v := newSubscribed(t, f, &rec, nil)
	if got := verify.DenylistLen(v); got != 2500 {
		t.Errorf("denylist has %d entries after New, want 2500", got)
	}
	tok := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_2499" })
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("revoked before start: %v", err)
	}
}

// TestRevocationEvictsCache: a revocation drops the cached positive answer
// of an opaque token at once, and only that one.
func TestRevocationEvictsCache(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	var rec seqRecorder
	v := newSubscribed(t, f, &rec, nil)
	ctx := context.Background()
	key := newToken(t, "jtp")
	at := newToken(t, "jta")
	other := newToken(t, "jta") // an access token of another grant
	f.addToken(key, opaque{ID: "tok_key"})
	f.addToken(at, opaque{ID: "tok_at"})
	f.addToken(other, opaque{ID: "tok_other"})
	for range 2 {
		for _, tok := range []string{key, at, other} {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	if f.calls(key) != 1 || f.calls(at) != 1 || f.calls(other) != 1 {
		t.Fatalf("not cached: %d %d %d calls", f.calls(key), f.calls(at), f.calls(other))
	}
	seq := f.publish("token", "tok_key", f.clock.Now().Add(time.Hour))
	waitFor(t, "the event", func() bool { return rec.has(seq) })
	if _, err := v.Verify(ctx, key); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("revoked API key: %v", err)
	}
	// A grant revocation, as Jeton records it: the grant, and each of its
	// live opaque access tokens.
	f.addToken(at, opaque{Code: "revoked"})
	f.publish("grant", "grt_1", f.clock.Now().Add(time.Hour))
	seq = f.publish("token", "tok_at", f.clock.Now().Add(time.Hour))
	waitFor(t, "the events", func() bool { return rec.has(seq) })
	if _, err := v.Verify(ctx, at); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("access token of a revoked grant: %v", err)
	}
	// The other grant's access token is still answered from the cache.
	if _, err := v.Verify(ctx, other); err != nil {
		t.Errorf("access token of another grant: %v", err)
	}
	if f.calls(other) != 1 {
		t.Errorf("access token of another grant: %d calls, want 1 (a grant revocation must not drop other grants' entries)", f.calls(other))
	}
}

// TestRevocationStreamDropAndResume: the stream drops mid-event, stays
// down while more revocations happen (the poller picks them up), and
// resumes with Last-Event-ID; every event is applied exactly once, in
// order.
func TestRevocationStreamDropAndResume(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	var rec seqRecorder
	var logs logBuffer
	v := newSubscribed(t, f, &rec, func(c *verify.Config) { c.Logger = debugLogger(&logs) })
	_ = v
	exp := f.clock.Now().Add(time.Hour)
	streamUp := func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.streamsUp == 1 }
	waitFor(t, "the stream", streamUp)
	var last int64
	for i := range 5 {
		last = f.publish("token", "tok_s"+strconv.Itoa(i), exp)
	}
	waitFor(t, "events 1-5", func() bool { return rec.has(last) })
	polls := f.pollCalls.Load()

	f.set(func(f *fakeJeton) { f.streamDown = true })
	f.dropStreams()
	waitFor(t, "the stream to drop", func() bool { return !streamUp() })
	for i := range 5 {
		last = f.publish("token", "tok_d"+strconv.Itoa(i), exp)
	}
	waitFor(t, "events 6-10 by polling", func() bool { return rec.has(last) })
	if f.pollCalls.Load() == polls {
		t.Error("no poll while the stream was down")
	}

	f.set(func(f *fakeJeton) { f.streamDown = false })
	waitFor(t, "the stream to resume", streamUp)
	for i := range 5 {
		last = f.publish("token", "tok_r"+strconv.Itoa(i), exp)
	}
	waitFor(t, "events 11-15", func() bool { return rec.has(last) })

	want := make([]int64, 15)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("applied seqs %v, want each of 1..15 once, in order", got)
	}
	f.mu.Lock()
	ids := slices.Clone(f.lastIDs)
	f.mu.Unlock()
	if ids[0] != "" || ids[len(ids)-1] == "" {
		t.Errorf("Last-Event-ID of the stream requests: %q; want none first, then the last seq", ids)
	}
	if got := verify.DenylistLen(v); got != 15 {
		t.Errorf("denylist has %d entries, want 15", got)
	}
}

// TestCloseStopsFeed: Close ends the stream and is idempotent.
func TestCloseStopsFeed(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	var rec seqRecorder
	v := newSubscribed(t, f, &rec, nil)
	streamUp := func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.streamsUp == 1 }
	waitFor(t, "the stream", streamUp)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to close", func() bool { return !streamUp() })
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), f.mint(t, es, nil, nil)); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

// stalledStream answers GET /v1/revocations/stream with 200 and the event
// stream content type, sends greeting (possibly nothing), then nothing
// more, as a buffering intermediary or a stalled server does; every other
// request goes to the fake, in memory (handlerTransport). It records when
// each stream request arrived.
type stalledStream struct {
	h        http.Handler
	greeting string

	mu     sync.Mutex
	starts []time.Time
}

// stalledBody returns its greeting, then blocks until its request ends.
type stalledBody struct {
	ctx      context.Context
	greeting *strings.Reader
}

func (b stalledBody) Read(p []byte) (int, error) {
	if b.greeting.Len() > 0 {
		return b.greeting.Read(p)
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b stalledBody) Close() error { return nil }

func (s *stalledStream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path != "/v1/revocations/stream" {
		return handlerTransport{s.h}.RoundTrip(r)
	}
	s.mu.Lock()
	s.starts = append(s.starts, time.Now())
	s.mu.Unlock()
	h := http.Header{}
	h.Set("Content-Type", "text/event-stream")
	return &http.Response{StatusCode: 200, Header: h, Request: r,
		Body: stalledBody{ctx: r.Context(), greeting: strings.NewReader(s.greeting)}}, nil
}

// gaps returns the time between consecutive stream requests.
func (s *stalledStream) gaps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(s.starts); i++ {
		out = append(out, s.starts[i].Sub(s.starts[i-1]))
	}
	return out
}

// TestRevocationSilentStream: a stream that opens (200, headers) but
// never delivers a line, not even Jeton's 15 s keepalive, is not up: the
// poller keeps polling every PollInterval, so a revocation is learnt at
// the next tick; and each idle drop of such a stream backs off further
// instead of counting as a healthy connection.
func TestRevocationSilentStream(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f, s := newFakeHandler(t, "https://jeton.test")
		tr := &stalledStream{h: f}
		v, jwt := revokedBehind(t, f, s, tr)
		defer v.Close()
		ctx := context.Background()
		time.Sleep(7 * time.Second) // past the first tick
		synctest.Wait()
		if _, err := v.Verify(ctx, jwt); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("a poll tick after the revocation, with the stream open but silent: %v, want ErrRevoked (polls made: %d)",
				err, f.pollCalls.Load())
		}
		// Each silent stream ends at the idle timeout (45 s); the time to
		// the next attempt grows with the backoff (100 ms doubling).
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		gaps := tr.gaps()
		if len(gaps) < 5 {
			t.Fatalf("%d reconnections in 5 minutes, want at least 5", len(gaps))
		}
		for i := 1; i < len(gaps); i++ {
			if gaps[i] <= gaps[i-1] {
				t.Errorf("times between stream requests %v: the backoff was reset by a stream that delivered nothing", gaps)
				break
			}
		}
	})
}

// revokedBehind starts a subscribed Verifier whose stream goes through
// tr, polling every 7 s, has it accept a JWT of f, and a second later
// publishes that JWT's revocation (as tok_1). Run inside a synctest bubble.
func revokedBehind(t *testing.T, f *fakeJeton, s *signer, tr http.RoundTripper) (*verify.Verifier, string) {
	t.Helper()
	v, err := verify.New(context.Background(), verify.Config{Issuer: f.URL, Audience: testAudience,
		Credential: testCredential, Revocations: true, PollInterval: 7 * time.Second, Now: f.clock.Now,
		HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	jwt := f.mint(t, s, nil, nil)
	if _, err := v.Verify(context.Background(), jwt); err != nil {
		v.Close()
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	f.publish("token", "tok_1", f.clock.Now().Add(time.Hour))
	return v, jwt
}

// TestRevocationPollAfterDrop: while a stream that delivered something is
// up the poller skips its ticks; when the stream drops (here at the idle
// timeout, 45 s after it fell silent) a catch-up poll runs at once, so
// what the stream failed to deliver is learnt before it reconnects.
func TestRevocationPollAfterDrop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f, s := newFakeHandler(t, "https://jeton.test")
		tr := &stalledStream{h: f, greeting: ": hello\n\n"}
		v, jwt := revokedBehind(t, f, s, tr)
		defer v.Close()
		ctx := context.Background()
		time.Sleep(43 * time.Second)
		synctest.Wait()
		if n := f.pollCalls.Load(); n != 1 {
			t.Errorf("%d polls while the stream was up, want only the one at start-up", n)
		}
		time.Sleep(time.Second + time.Millisecond) // the idle drop, not yet the reconnection
		synctest.Wait()
		if _, err := v.Verify(ctx, jwt); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("just after the stream dropped: %v, want ErrRevoked (polls made: %d)", err, f.pollCalls.Load())
		}
	})
}
