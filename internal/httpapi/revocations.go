package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

// The revocation feed tells resource servers which tokens and grants were
// revoked, so that they reject JWT access tokens they would otherwise
// accept offline and drop cached answers. GET /v1/revocations answers one
// page; GET /v1/revocations/stream pushes the entries as server-sent events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html) within
// milliseconds of the revoking commit. docs/admin-api.md is the contract.

const (
	revocationPageDefault = 500
	revocationPageMax     = 1000 // also the store's largest page
	// maxRevocationStreams bounds the streams one node holds open; beyond
	// it a resource server is told to poll or come back later.
	maxRevocationStreams = 1000
	// maxStreamsPerCaller bounds the streams of one caller's token, a
	// tenth of the node's: a resource server of many replicas sharing a
	// key gets a hundred, and no one key can take every place.
	maxStreamsPerCaller = maxRevocationStreams / 10
	// streamKeepalive is how often an idle stream sends a comment, so that
	// proxies and clients can tell a quiet stream from a dead one.
	streamKeepalive = 15 * time.Second
	// streamPoll is how often a stream reads the store even without a
	// wake-up: the fallback when a notification is lost.
	streamPoll = time.Second
)

// revocationJSON is one entry of the feed.
type revocationJSON struct {
	Seq       int64     `json:"seq"`
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	API       string    `json:"api"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func toRevocationJSON(r *store.Revocation) revocationJSON {
	return revocationJSON{Seq: r.Seq, Kind: r.Kind, ID: r.Ref, API: r.APIID, RevokedAt: r.RevokedAt, ExpiresAt: r.ExpiresAt}
}

// revocationFeed serves the feed's two endpoints.
type revocationFeed struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	// recheck reports whether the caller of an open stream may still
	// read it, with the same APIs: a stream ends when its token is
	// revoked, expires or loses its scope.
	recheck func(r *http.Request, c *caller) bool

	keepalive  time.Duration
	poll       time.Duration
	maxStreams int64
	streams    atomic.Int64 // open streams
	// maxPerCaller bounds the open streams of one caller's token.
	maxPerCaller int

	mu sync.Mutex
	// down holds, per http.Server that served a stream, a channel closed
	// when that server shuts down.
	down map[*http.Server]chan struct{}
	// byCaller counts the open streams of each caller's token.
	byCaller map[string]int
}

// takeCallerStream counts a stream of the token id, if it has a place.
func (f *revocationFeed) takeCallerStream(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byCaller[id] >= f.maxPerCaller {
		return false
	}
	f.byCaller[id]++
	return true
}

// releaseCallerStream uncounts a stream of the token id.
func (f *revocationFeed) releaseCallerStream(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byCaller[id]--; f.byCaller[id] <= 0 {
		delete(f.byCaller, id)
	}
}

func (a *API) newRevocationFeed() *revocationFeed {
	recheck := func(r *http.Request, c *caller) bool {
		now, err := a.authorize(r, needVerify)
		return err == nil && slices.Equal(now.apis, c.apis) && (now.apis == nil) == (c.apis == nil)
	}
	return &revocationFeed{store: a.store, log: a.log, now: a.cfg.Now, recheck: recheck, keepalive: streamKeepalive, poll: streamPoll,
		maxStreams: maxRevocationStreams, maxPerCaller: maxStreamsPerCaller, down: map[*http.Server]chan struct{}{}, byCaller: map[string]int{}}
}

// cursor parses a sequence number given by the client.
func cursor(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "invalid_request", "%s must be a non-negative integer (a seq of the feed)", name)
	}
	return n, nil
}

// list serves GET /v1/revocations?after=<seq>&limit=<n>: the entries after
// the cursor that have not expired, oldest first, and the cursor of the
// next call. A verify:<api> caller sees only its APIs' entries.
func (f *revocationFeed) list(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		var err error
		if after, err = cursor("after", v); err != nil {
			return err
		}
	}
	limit := revocationPageDefault
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > revocationPageMax {
			return errorf(http.StatusBadRequest, "invalid_request", "limit must be a number from 1 to %d", revocationPageMax)
		}
		limit = n
	}
	revs, err := f.store.ListRevocations(r.Context(), after, c.apis, f.now(), limit)
	if err != nil {
		return err
	}
	out := make([]revocationJSON, 0, len(revs))
	next := after
	for i := range revs {
		out = append(out, toRevocationJSON(&revs[i]))
		next = revs[i].Seq
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revocations": out, "next": next})
}

// stream serves GET /v1/revocations/stream: every live entry after the
// cursor (the Last-Event-ID header when reconnecting, else ?after=, else 0:
// a full replay), then each new one as it commits, as server-sent events
// with the seq as event id. It runs until the client goes away or the
// server shuts down.
func (f *revocationFeed) stream(w http.ResponseWriter, r *http.Request, c *caller) error {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		var err error
		if after, err = cursor("after", v); err != nil {
			return err
		}
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		var err error
		if after, err = cursor("Last-Event-ID", v); err != nil {
			return err
		}
	}
	if n := f.streams.Add(1); n > f.maxStreams {
		f.streams.Add(-1)
		w.Header().Set("Retry-After", "10")
		return errorf(http.StatusServiceUnavailable, "too_many_streams",
			"this server holds its maximum of %d revocation streams; retry later or poll GET /v1/revocations", f.maxStreams)
	}
	defer f.streams.Add(-1)
	if !f.takeCallerStream(c.token.ID) {
		w.Header().Set("Retry-After", "10")
		return errorf(http.StatusServiceUnavailable, "too_many_streams",
			"this token holds its maximum of %d revocation streams on this server; retry later or poll GET /v1/revocations", f.maxPerCaller)
	}
	defer f.releaseCallerStream(c.token.ID)

	ctx := r.Context()
	// Wake-ups are taken before each read of the store, so a commit
	// between the read and the wait closes the channel already held.
	changed := f.store.RevocationsChanged()
	// The first page is read before answering, so that a store failure is
	// still a proper 500.
	revs, err := f.store.ListRevocations(ctx, after, c.apis, f.now(), revocationPageMax)
	if err != nil {
		return err
	}

	srv, _ := ctx.Value(http.ServerContextKey).(*http.Server)
	down := f.shutdownSignal(srv)
	rc := http.NewResponseController(w)
	// A stream outlives the server's ReadTimeout. Go's HTTP/1 server already
	// lifts the read deadline once the request is read (the client sends
	// nothing more, and its leaving is seen as EOF); this covers HTTP/2,
	// where the timeout is per stream. ErrNotSupported means no deadline.
	_ = rc.SetReadDeadline(time.Time{})
	// And its WriteTimeout: each write gets that long from its start.
	extend := func() {
		if srv != nil && srv.WriteTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(srv.WriteTimeout))
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// A comment at once, flushed with the headers or the first events: a
	// verifier counts the stream as up only once it delivers something
	// (a stream that never does, behind a buffering proxy, must not keep
	// it from polling), and it need not wait for the first keepalive.
	if _, err := w.Write([]byte(": open\n\n")); err != nil {
		return nil
	}

	keepalive := time.NewTicker(f.keepalive)
	defer keepalive.Stop()
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	var buf []byte
	for {
		// Send every page there is, flushing after each.
		for len(revs) > 0 {
			buf = buf[:0]
			for i := range revs {
				buf = appendEvent(buf, &revs[i])
				after = revs[i].Seq
			}
			extend()
			if _, err := w.Write(buf); err != nil {
				return nil // the client went away
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
			if len(revs) < revocationPageMax {
				revs = nil
				break
			}
			changed = f.store.RevocationsChanged()
			if revs, err = f.store.ListRevocations(ctx, after, c.apis, f.now(), revocationPageMax); err != nil {
				return f.streamFailed(r, err)
			}
		}
		extend()
		if err := rc.Flush(); err != nil { // the headers, on the first round
			return nil
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-keepalive.C:
			if !f.recheck(r, c) {
				return nil // the token was revoked, expired or lost its scope
			}
			extend()
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return nil
			}
			continue // flushed at the top of the loop
		case <-ctx.Done():
			return nil
		case <-down:
			return nil // the client reconnects, to another node if there is one
		}
		changed = f.store.RevocationsChanged()
		if revs, err = f.store.ListRevocations(ctx, after, c.apis, f.now(), revocationPageMax); err != nil {
			return f.streamFailed(r, err)
		}
	}
}

// streamFailed ends a stream whose store read failed. The answer has begun,
// so the error cannot be sent: it is logged, and the client reconnects
// with its Last-Event-ID.
func (f *revocationFeed) streamFailed(r *http.Request, err error) error {
	if r.Context().Err() == nil {
		f.log.Warn("revocation stream: read feed", "err", err)
	}
	return nil
}

// appendEvent appends one server-sent event: the seq as id, so that a
// reconnecting client resumes with Last-Event-ID; the entry as JSON data
// (one line: encoding/json never writes a raw newline).
func appendEvent(b []byte, r *store.Revocation) []byte {
	data, _ := json.Marshal(toRevocationJSON(r)) // strings and times always marshal
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, "\nevent: revocation\ndata: "...)
	b = append(b, data...)
	return append(b, '\n', '\n')
}

// shutdownSignal returns a channel closed when srv shuts down (nil if srv
// is nil). http.Server.Shutdown waits for active requests but does not
// cancel them, and a stream never ends by itself: without this, shutdown
// would wait for its timeout whenever a resource server is subscribed.
func (f *revocationFeed) shutdownSignal(srv *http.Server) <-chan struct{} {
	if srv == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.down[srv]; ok {
		return ch
	}
	ch := make(chan struct{})
	f.down[srv] = ch
	srv.RegisterOnShutdown(func() { close(ch) })
	return ch
}
