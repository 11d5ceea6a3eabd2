package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

func readEvents(t testing.TB, stream string) ([]sseEvent, string, time.Duration, error) {
	t.Helper()
	p := newSSEReader(strings.NewReader(stream))
	var out []sseEvent
	for {
		ev, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, p.lastID, p.retry, err
		}
		ev.Data = bytes.Clone(ev.Data)
		out = append(out, ev)
	}
}

func TestSSEParser(t *testing.T) {
	t.Parallel()
	ev := func(id, typ, data string) sseEvent { return sseEvent{ID: id, Type: typ, Data: []byte(data)} }
	tests := []struct {
		name   string
		stream string
		want   []sseEvent
		lastID string
		retry  time.Duration
		err    error
	}{
		{"basic", "id: 1\nevent: revocation\ndata: {}\n\n", []sseEvent{ev("1", "revocation", "{}")}, "1", 0, nil},
		{"CRLF", "id: 1\r\nevent: revocation\r\ndata: x\r\n\r\n", []sseEvent{ev("1", "revocation", "x")}, "1", 0, nil},
		{"CR", "id: 1\revent: revocation\rdata: x\r\r", []sseEvent{ev("1", "revocation", "x")}, "1", 0, nil},
		{"BOM", "\xef\xbb\xbfdata: x\n\n", []sseEvent{ev("", "message", "x")}, "", 0, nil},
		{"BOM only at start", "data: x\n\n\xef\xbb\xbfdata: y\n\n", []sseEvent{ev("", "message", "x")}, "", 0, nil},
		{"comments and keepalive", ": keepalive\n\n: hi\ndata: x\n\n", []sseEvent{ev("", "message", "x")}, "", 0, nil},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []sseEvent{ev("", "message", "a\nb\n c")}, "", 0, nil},
		{"empty data is dispatched", "data\n\n", []sseEvent{ev("", "message", "")}, "", 0, nil},
		{"no data, no dispatch", "id: 5\nevent: revocation\n\ndata: x\n\n", []sseEvent{ev("5", "message", "x")}, "5", 0, nil},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []sseEvent{ev("7", "message", "a"), ev("7", "message", "b")}, "7", 0, nil},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []sseEvent{ev("1", "message", "a"), ev("1", "message", "b")}, "1", 0, nil},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []sseEvent{ev("1", "message", "a"), ev("", "message", "b")}, "", 0, nil},
		{"retry", "retry: 1500\nretry: x\nretry: 1e3\n", nil, "", 1500 * time.Millisecond, nil},
		{"unknown field", "foo: bar\ndata: x\n\n", []sseEvent{ev("", "message", "x")}, "", 0, nil},
		{"incomplete last event", "data: x\n\ndata: partial", []sseEvent{ev("", "message", "x")}, "", 0, nil},
		{"colon in value", "data: a:b\n\n", []sseEvent{ev("", "message", "a:b")}, "", 0, nil},
		{"line too long", "data: " + strings.Repeat("x", maxSSELine) + "\n\n", nil, "", 0, errSSELineTooLong},
		{"data too long", strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", 70) + "\n", nil, "", 0, errSSELineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, lastID, retry, err := readEvents(t, tt.stream)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
			if lastID != tt.lastID || retry != tt.retry {
				t.Errorf("last id %q retry %v, want %q %v", lastID, retry, tt.lastID, tt.retry)
			}
		})
	}
}

// FuzzSSE checks that the event-stream parser never panics, respects its
// bounds, and splits lines the same way whichever line ending is used.
func FuzzSSE(f *testing.F) {
	for _, s := range []string{
		"id: 1\nevent: revocation\ndata: {\"seq\":1}\n\n",
		"\xef\xbb\xbfdata: x\r\n\r\n: keepalive\r\rdata:y\r\r",
		"data\n\nid\x00\nretry: 10\nevent\n\n",
		"id: 42\nevent: revocation\ndata: {\"seq\":42,\"kind\":\"token\",\"id\":\"tok_1\",\"expires_at\":\"2026-11-23T11:00:00Z\"}\n\n",
		": only a comment",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, _, _, err := readEvents(t, string(b))
		if err != nil && !errors.Is(err, errSSELineTooLong) {
			t.Fatalf("unexpected error %v", err)
		}
		for _, ev := range events {
			if len(ev.Data) > maxSSEData || ev.Type == "" || strings.ContainsRune(ev.ID, 0) {
				t.Fatalf("bad event %+v", ev)
			}
		}
		// LF and CRLF line endings parse alike.
		if !strings.Contains(string(b), "\r") {
			crlf, _, _, err2 := readEvents(t, strings.ReplaceAll(string(b), "\n", "\r\n"))
			if (err == nil) == (err2 == nil) && err == nil && !reflect.DeepEqual(events, crlf) {
				t.Fatalf("LF %v vs CRLF %v", events, crlf)
			}
		}
	})
}

// FuzzClaims checks the fast claims decoder against encoding/json: when
// the fast path accepts a payload, it must decode it exactly as
// encoding/json does.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://a","sub":"u","aud":"x","exp":1700000000,"iat":1.5,"jti":"tok_1","scope":"a b","sid":"grt_1","client_id":"c"}`,
		`{"aud":["x","y"],"exp":1e9,"nbf":null,"extra":true,"n":-0.5e-3}`,
		` { "ISS" : "x" } `,
		`{"iss":"a\u0041","aud":[]}`,
		`{"iss":"a","iss":"b"}`,
		`{}`, `[]`, `{"exp":"1"}`, `{"exp":01}`, `{"aud":null}`, `{"sub":null}`, `{"x":{"y":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast jwtClaims
		if !decodeClaimsFast(b, &fast) {
			return
		}
		var slow jwtClaims
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json says %v", b, err)
		}
		if diff := cmp.Diff(fast, slow, cmp.AllowUnexported(numericDate{})); diff != "" {
			t.Fatalf("%q: fast vs encoding/json (-fast +slow):\n%s", b, diff)
		}
	})
}

func TestDecodeClaimsFallback(t *testing.T) {
	t.Parallel()
	for _, s := range []string{`{"iss":"a\u0041"}`, ` {"ISS":"aA"}`, `{"iss":"aA","x":{"y":[1]}}`} {
		var jc jwtClaims
		if err := decodeClaims([]byte(s), &jc); err != nil || jc.Issuer != "aA" {
			t.Errorf("%s: %v %q", s, err, jc.Issuer)
		}
	}
	for _, s := range []string{`[]`, `"x"`, `{"exp":"1"}`, `{"exp":-1}`, `{"aud":5}`, `{} x`, ``} {
		var jc jwtClaims
		if err := decodeClaims([]byte(s), &jc); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

func TestDenylist(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	d := newDenylist(3)
	d.add(denyToken, "a", now.Add(3*time.Hour), now)
	d.add(denyToken, "b", now.Add(1*time.Hour), now)
	d.add(denyGrant, "c", now.Add(2*time.Hour), now)
	d.add(denyToken, "past", now.Add(-time.Second), now) // already expired: ignored
	if d.len() != 3 {
		t.Fatalf("len %d", d.len())
	}
	d.add(denyToken, "d", now.Add(4*time.Hour), now) // full: b (soonest) goes
	if d.revoked("b", "", "", now) || !d.revoked("a", "", "", now) || !d.revoked("", "c", "", now) || !d.revoked("d", "", "", now) {
		t.Errorf("after eviction: want a, c (grant) and d")
	}
	if d.revoked("c", "", "", now) || d.revoked("", "", "c", now) {
		t.Error("a grant id matched a token or client id")
	}
	// Expired entries go first.
	later := now.Add(2*time.Hour + time.Second)
	d.add(denyClient, "e", now.Add(5*time.Hour), later)
	if !d.revoked("a", "", "", later) || !d.revoked("d", "", "", later) || !d.revoked("", "", "e", later) || d.revoked("", "c", "", later) {
		t.Error("expired c should have made room for e (client)")
	}
	if d.revoked("e", "e", "", later) {
		t.Error("a client id matched a token or grant id")
	}
	// Idempotent, extends expiry.
	d.add(denyToken, "a", now.Add(6*time.Hour), later)
	if d.len() != 3 || !d.revoked("a", "", "", now.Add(5*time.Hour)) {
		t.Error("re-adding a")
	}
}

// TestDenylistNoAllocs runs alone: AllocsPerRun refuses parallel tests.
func TestDenylistNoAllocs(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := newDenylist(10)
	d.add(denyToken, "tok_0123456789", now.Add(time.Hour), now)
	if n := testing.AllocsPerRun(100, func() { d.revoked("tok_0123456789", "grt_0123456789", "cli_0123456789", now) }); n != 0 {
		t.Errorf("revoked allocates %v times", n)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c := newCache(cacheShards * 4)
	now := time.Now().UnixNano()
	for i := range 10_000 {
		k := tokenfmt.HashOf(strings.Repeat("x", i%50) + string(rune(i)))
		c.put(k, &entry{claims: &Claims{TokenID: "tok_" + string(rune(i))}, expires: now + int64(time.Minute)}, now)
	}
	if n := c.len(); n > cacheShards*4 {
		t.Errorf("cache holds %d entries, bound %d", n, cacheShards*4)
	}
	c.idxMu.Lock()
	idx := 0
	for _, keys := range c.idx {
		idx += len(keys)
	}
	c.idxMu.Unlock()
	if idx != c.len() {
		t.Errorf("index holds %d keys for %d entries", idx, c.len())
	}
}

func TestMaxAge(t *testing.T) {
	t.Parallel()
	for cc, want := range map[string]time.Duration{
		"":                          5 * time.Minute,
		"public, max-age=300":       5 * time.Minute,
		"max-age=10":                time.Minute,
		"MAX-AGE=7200, public":      time.Hour,
		"no-cache":                  5 * time.Minute,
		"max-age=abc":               5 * time.Minute,
		`max-age="120"`:             2 * time.Minute,
		"max-age=99999999999999999": time.Hour,
	} {
		if got := maxAge(cc); got != want {
			t.Errorf("maxAge(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for s, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "0": 0, "-1": 0, "x": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := retryAfter(s, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", s, got, want)
		}
	}
}
