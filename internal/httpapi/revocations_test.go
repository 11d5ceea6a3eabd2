package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/store"
)

// feedPage is the answer of GET /v1/revocations.
type feedPage struct {
	Revocations []revocationJSON `json:"revocations"`
	Next        int64            `json:"next"`
}

// revokeKey creates a key of api (a name) and revokes it, returning its id.
func (e *env) revokeKey(t *testing.T, api string) string {
	t.Helper()
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"`+api+`","name":"victim"}`, 201, &k)
	e.mustDo(t, "DELETE", "/v1/tokens/"+k.ID, e.admin, ``, 200, nil)
	return k.ID
}

// verifierFor returns a jeton token with the verify:<apiID> scope.
func (e *env) verifierFor(t *testing.T, apiID string) string {
	t.Helper()
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","name":"rs","scopes":["verify:`+apiID+`"]}`, 201, &k)
	return k.Token
}

func TestRevocationsPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var beta apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"beta","identifier":"https://api.beta.test","scopes":["read"]}`, 201, &beta)
	start := time.Now().Truncate(time.Millisecond)
	e.mustDo(t, "DELETE", "/v1/tokens/"+e.keyID, e.admin, ``, 200, nil)
	second := e.revokeKey(t, "acme")
	betaKey := e.revokeKey(t, "beta")

	var all feedPage
	e.mustDo(t, "GET", "/v1/revocations", e.verify, ``, 200, &all)
	if len(all.Revocations) != 3 || all.Next != all.Revocations[2].Seq {
		t.Fatalf("feed: %+v", all)
	}
	first := all.Revocations[0]
	if first.Kind != store.RevocationToken || first.ID != e.keyID || first.API != e.apiID || first.RevokedAt.Before(start) ||
		!first.ExpiresAt.Equal(first.RevokedAt.Add(store.RevocationTTL)) {
		t.Errorf("entry of the revoked key: %+v", first)
	}
	// The wire names are the contract's.
	_, raw := e.do(t, "GET", "/v1/revocations?limit=1", e.verify, ``)
	var shape struct {
		Revocations []map[string]any `json:"revocations"`
	}
	if err := json.Unmarshal(raw, &shape); err != nil || len(shape.Revocations) != 1 {
		t.Fatalf("decode %s: %v", raw, err)
	}
	keys := slices.Sorted(maps.Keys(shape.Revocations[0]))
	if diff := cmp.Diff(keys, []string{"api", "expires_at", "id", "kind", "revoked_at", "seq"}); diff != "" {
		t.Errorf("entry fields (-got +want):\n%s", diff)
	}

	// Paging: next is the cursor of the following call, and after the
	// last entry it stays where it was.
	var ids []string
	var after int64
	for range 5 {
		var p feedPage
		e.mustDo(t, "GET", "/v1/revocations?limit=2&after="+strconv.FormatInt(after, 10), e.verify, ``, 200, &p)
		for _, r := range p.Revocations {
			ids = append(ids, r.ID)
		}
		if len(p.Revocations) == 0 {
			if p.Next != after {
				t.Errorf("empty page: next %d, want %d", p.Next, after)
			}
			break
		}
		after = p.Next
	}
	if diff := cmp.Diff(ids, []string{e.keyID, second, betaKey}); diff != "" {
		t.Errorf("paged ids (-got +want):\n%s", diff)
	}

	// A verify:<api> caller sees only its API's entries.
	for _, tt := range []struct {
		api  string
		want []string
	}{{e.apiID, []string{e.keyID, second}}, {beta.ID, []string{betaKey}}} {
		var p feedPage
		e.mustDo(t, "GET", "/v1/revocations", e.verifierFor(t, tt.api), ``, 200, &p)
		var got []string
		for _, r := range p.Revocations {
			got = append(got, r.ID)
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("feed of verify:%s (-got +want):\n%s", tt.api, diff)
		}
	}
}

func TestRevocationsBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tests := []struct {
		name, path, token string
		hdr               []string
		status            int
		code              string
	}{
		{"negative after", "/v1/revocations?after=-1", e.verify, nil, 400, "invalid_request"},
		{"non-integer after", "/v1/revocations?after=1.5", e.verify, nil, 400, "invalid_request"},
		{"garbage after", "/v1/revocations?after=x", e.verify, nil, 400, "invalid_request"},
		{"zero limit", "/v1/revocations?limit=0", e.verify, nil, 400, "invalid_request"},
		{"limit over max", "/v1/revocations?limit=1001", e.verify, nil, 400, "invalid_request"},
		{"garbage limit", "/v1/revocations?limit=all", e.verify, nil, 400, "invalid_request"},
		{"no token", "/v1/revocations", "", nil, 401, "unauthorized"},
		{"key of another api", "/v1/revocations", e.key, nil, 401, "unauthorized"},
		{"stream: negative after", "/v1/revocations/stream?after=-5", e.verify, nil, 400, "invalid_request"},
		{"stream: garbage after", "/v1/revocations/stream?after=x", e.verify, nil, 400, "invalid_request"},
		{"stream: garbage Last-Event-ID", "/v1/revocations/stream", e.verify, []string{"Last-Event-ID", "abc"}, 400, "invalid_request"},
		{"stream: negative Last-Event-ID", "/v1/revocations/stream", e.verify, []string{"Last-Event-ID", "-1"}, 400, "invalid_request"},
		{"stream: bad after with good Last-Event-ID", "/v1/revocations/stream?after=x", e.verify, []string{"Last-Event-ID", "3"}, 400, "invalid_request"},
		{"stream: no token", "/v1/revocations/stream", "", nil, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := e.do(t, "GET", tt.path, tt.token, ``, tt.hdr...)
			var got struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &got)
			if resp.StatusCode != tt.status || got.Error.Code != tt.code {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, got.Error.Code, b, tt.status, tt.code)
			}
		})
	}
}

// stream is a client of the event stream.
type stream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
	stop context.CancelFunc
}

// sseEvent is one block of the stream: an event, or a comment.
type sseEvent struct {
	id, event, data, comment string
}

// openStream connects to the stream at url with token; the test fails if
// the answer is not a 200 event stream. The connection is closed when the
// test ends, or by close.
func openStream(t *testing.T, url, token string, hdr ...string) *stream {
	t.Helper()
	resp, stop := connectStream(t, url, token, hdr...)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		stop()
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	s := &stream{t: t, resp: resp, r: bufio.NewReader(resp.Body), stop: stop}
	// Every stream opens with a comment, before any event, so that a
	// verifier knows at once that it is up.
	if ev, err := s.next(); err != nil || ev.comment != "open" || ev.event != "" {
		stop()
		t.Fatalf("stream opened with %+v, %v; want the comment open", ev, err)
	}
	return s
}

func connectStream(t *testing.T, url, token string, hdr ...string) (*http.Response, context.CancelFunc) {
	t.Helper()
	// A deadline on the whole stream: a test waiting for an event that
	// never comes fails instead of hanging.
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); resp.Body.Close() })
	return resp, func() { stop(); resp.Body.Close() }
}

func (s *stream) close() { s.stop() }

// next reads the next block: an event, or a comment.
func (s *stream) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if ev != (sseEvent{}) {
				return ev, nil
			}
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev.comment = strings.TrimSpace(c)
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			ev.data = value
		default:
			s.t.Errorf("unexpected stream field %q", line)
		}
	}
}

// nextRevocation skips comments and returns the next event's entry.
func (s *stream) nextRevocation() revocationJSON {
	s.t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			s.t.Fatalf("stream ended: %v", err)
		}
		if ev.comment != "" && ev.event == "" {
			continue
		}
		var r revocationJSON
		if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
			s.t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.event != "revocation" || ev.id != strconv.FormatInt(r.Seq, 10) {
			s.t.Errorf("event %q with id %q for seq %d", ev.event, ev.id, r.Seq)
		}
		return r
	}
}

func TestRevocationStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	url := e.srv.URL + "/v1/revocations/stream"
	var beta apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"beta","identifier":"https://api.beta.test","scopes":["read"]}`, 201, &beta)

	// A stream opened after a revocation replays it first.
	e.mustDo(t, "DELETE", "/v1/tokens/"+e.keyID, e.admin, ``, 200, nil)
	s := openStream(t, url, e.verify)
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	first := s.nextRevocation()
	if first.ID != e.keyID || first.API != e.apiID || first.Kind != store.RevocationToken {
		t.Errorf("replayed entry: %+v", first)
	}
	// A revocation committed while the stream is open is pushed.
	second := e.revokeKey(t, "acme")
	if got := s.nextRevocation(); got.ID != second || got.Seq <= first.Seq {
		t.Errorf("pushed entry: %+v, want %s after seq %d", got, second, first.Seq)
	}
	s.close()

	// Resuming: Last-Event-ID wins over ?after=; ?after= alone works too.
	third := e.revokeKey(t, "acme")
	for _, tt := range []struct {
		name string
		url  string
		hdr  []string
	}{
		{"Last-Event-ID", url + "?after=0", []string{"Last-Event-ID", strconv.FormatInt(first.Seq, 10)}},
		{"after", url + "?after=" + strconv.FormatInt(first.Seq, 10), nil},
	} {
		s := openStream(t, tt.url, e.verify, tt.hdr...)
		if a, b := s.nextRevocation(), s.nextRevocation(); a.ID != second || b.ID != third {
			t.Errorf("%s: resumed with %s, %s; want %s, %s", tt.name, a.ID, b.ID, second, third)
		}
		s.close()
	}

	// A verify:<api> caller's stream carries only its API's entries: the
	// acme entry, committed first, is not the first it gets.
	bs := openStream(t, url+"?after="+strconv.FormatInt(first.Seq, 10), e.verifierFor(t, beta.ID))
	e.revokeKey(t, "acme")
	betaKey := e.revokeKey(t, "beta")
	if got := bs.nextRevocation(); got.ID != betaKey || got.API != beta.ID {
		t.Errorf("beta's stream got %+v, want only %s", got, betaKey)
	}
}

// TestRevocationStreamTimeoutsAndShutdown runs a stream on an http.Server
// with short read and write timeouts, as `jeton serve` has long ones: the
// stream outlives them, is woken by the store alone (its poll is off), and
// ends at once when the server shuts down.
func TestRevocationStreamTimeoutsAndShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	api := e.srv.Config.Handler.(*API)
	f := api.newRevocationFeed()
	f.keepalive, f.poll = 20*time.Millisecond, time.Hour
	mux := http.NewServeMux()
	mux.Handle("GET /stream", api.adapt.wrap(api.authenticate(needVerify, f.stream)))
	const timeout = 100 * time.Millisecond
	srv := &http.Server{Handler: mux, ReadTimeout: timeout, WriteTimeout: timeout}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	s := openStream(t, "http://"+ln.Addr().String()+"/stream", e.verify)
	start := time.Now()
	keepalives := 0
	for time.Since(start) < 5*timeout {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("stream ended after %v (%d keepalives): %v", time.Since(start), keepalives, err)
		}
		if ev.comment != "keepalive" || ev.event != "" {
			t.Fatalf("idle stream sent %+v", ev)
		}
		keepalives++
	}
	id := e.revokeKey(t, "acme")
	if got := s.nextRevocation(); got.ID != id {
		t.Errorf("entry after the timeouts: %+v, want %s", got, id)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	for {
		ev, err := s.next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream at shutdown: %v", err)
		}
		if ev.comment != "keepalive" {
			t.Fatalf("stream at shutdown sent %+v", ev)
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if n := f.streams.Load(); n != 0 {
		t.Errorf("%d streams counted after shutdown", n)
	}
}

func TestRevocationStreamLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	api := e.srv.Config.Handler.(*API)
	f := api.newRevocationFeed()
	f.maxStreams = 1
	mux := http.NewServeMux()
	mux.Handle("GET /stream", api.adapt.wrap(api.authenticate(needVerify, f.stream)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	first := openStream(t, srv.URL+"/stream", e.verify)
	resp, stop := connectStream(t, srv.URL+"/stream", e.verify)
	b, _ := io.ReadAll(resp.Body)
	stop()
	var got struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(b, &got)
	if resp.StatusCode != http.StatusServiceUnavailable || got.Error.Code != "too_many_streams" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("stream over the limit: %d %s (Retry-After %q)", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	// A client that goes away frees its place.
	first.close()
	deadline := time.Now().Add(10 * time.Second)
	for f.streams.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream of a client that went away is still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	again := openStream(t, srv.URL+"/stream", e.verify)
	again.close()
}

// TestRevocationStreamsOfOneCaller checks that one caller's token cannot
// take every stream a node holds, leaving other resource servers none.
func TestRevocationStreamsOfOneCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	api := e.srv.Config.Handler.(*API)
	f := api.newRevocationFeed()
	f.maxStreams, f.maxPerCaller = 4, 2
	mux := http.NewServeMux()
	mux.Handle("GET /stream", api.adapt.wrap(api.authenticate(needVerify, f.stream)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var narrow tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","scopes":["verify:`+e.apiID+`"]}`, 201, &narrow)
	for range 2 {
		defer openStream(t, srv.URL+"/stream", narrow.Token).close()
	}
	resp, stop := connectStream(t, srv.URL+"/stream", narrow.Token)
	b, _ := io.ReadAll(resp.Body)
	stop()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "too_many_streams") {
		t.Errorf("a third stream of one token: %d %s, want 503 too_many_streams", resp.StatusCode, b)
	}
	// Another resource server still gets its place.
	other := openStream(t, srv.URL+"/stream", e.verify)
	other.close()
}

// TestRevocationStreamEndsWithItsToken shows that an open stream does not
// outlive its caller's token: once the resource server's own token is
// revoked, the stream ends at the next keepalive.
func TestRevocationStreamEndsWithItsToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	api := e.srv.Config.Handler.(*API)
	f := api.newRevocationFeed()
	f.keepalive = 20 * time.Millisecond
	mux := http.NewServeMux()
	mux.Handle("GET /stream", api.adapt.wrap(api.authenticate(needVerify, f.stream)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","name":"rs","scopes":["verify"]}`, 201, &k)
	s := openStream(t, srv.URL+"/stream", k.Token)
	for range 3 { // alive while the token is
		if ev, err := s.next(); err != nil || ev.comment != "keepalive" {
			t.Fatalf("live stream: %+v %v", ev, err)
		}
	}
	e.mustDo(t, "DELETE", "/v1/tokens/"+k.ID, e.admin, "", 200, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev, err := s.next()
		if err != nil {
			break // ended
		}
		if ev.event == "revocation" {
			continue // its own revocation may still be sent
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream of a revoked token is still open")
		}
	}
}
