package verify

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Revocation feed timing.
const (
	feedBackoffMin = 100 * time.Millisecond
	feedBackoffMax = 5 * time.Second
	// feedIdleTimeout drops a stream that sent nothing (not even the 15 s
	// keepalive comment) for this long.
	feedIdleTimeout = 45 * time.Second
	// feedHealthy is how long a stream that delivered something must have
	// been up for the next reconnection to start from the shortest backoff
	// again. A stream that delivered nothing never resets it.
	feedHealthy = 10 * time.Second
	// feedPageSize is the limit of each poll.
	feedPageSize = 1000
)

// revocation is one event of Jeton's revocation feed.
type revocation struct {
	Seq       int64     `json:"seq"`
	Kind      string    `json:"kind"` // "token", "grant", "client" or "secret"
	ID        string    `json:"id"`
	API       string    `json:"api"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// denylist holds revoked token and grant ids until their expires_at plus
// the Verifier's Leeway (see feed.apply), bounded: when full, expired
// entries go first, then those that expire soonest.
type denylist struct {
	max  int
	size atomic.Int64 // len(m), read without the lock on the hot path
	mu   sync.RWMutex
	m    map[string]*denied
	heap denyHeap // by expiry
}

// denied is one denylist entry; token, grant and client ids share the map,
// each under a key of its kind (denyKey).
type denied struct {
	key     string
	expires time.Time
	index   int // in the heap
}

// Kinds of denylist entries: which claim of a token they match.
const (
	denyToken  byte = 't' // the token id (a JWT's jti)
	denyGrant  byte = 'g' // the grant id (a JWT's sid)
	denyClient byte = 'c' // the client id (a JWT's client_id)
)

func newDenylist(maxLen int) *denylist {
	return &denylist{max: maxLen, m: make(map[string]*denied)}
}

// denyKey keys each kind apart, so an id of one kind can never match a
// claim of another.
func denyKey(kind byte, id string) string {
	return string([]byte{kind, ':'}) + id
}

// add records a revocation of the given kind. It is idempotent.
func (d *denylist) add(kind byte, id string, expires, now time.Time) {
	if !expires.After(now) {
		return
	}
	k := denyKey(kind, id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[k]; ok {
		if expires.After(e.expires) {
			e.expires = expires
			heap.Fix(&d.heap, e.index)
		}
		return
	}
	for len(d.heap) > 0 && !d.heap[0].expires.After(now) {
		d.removeLocked(d.heap[0])
	}
	for len(d.m) >= d.max && len(d.heap) > 0 {
		d.removeLocked(d.heap[0])
	}
	e := &denied{key: k, expires: expires}
	d.m[k] = e
	heap.Push(&d.heap, e)
	d.size.Store(int64(len(d.m)))
}

func (d *denylist) removeLocked(e *denied) {
	heap.Remove(&d.heap, e.index)
	delete(d.m, e.key)
	d.size.Store(int64(len(d.m)))
}

// revoked reports whether token id tokenID, grant id grantID or client id
// clientID is denied at now. It does not allocate.
func (d *denylist) revoked(tokenID, grantID, clientID string, now time.Time) bool {
	if d.size.Load() == 0 {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.hasLocked(denyToken, tokenID, now) || d.hasLocked(denyGrant, grantID, now) || d.hasLocked(denyClient, clientID, now)
}

func (d *denylist) hasLocked(kind byte, id string, now time.Time) bool {
	if id == "" {
		return false
	}
	// Build the key on the stack: the compiler does not allocate for a
	// map index with a string converted from a byte slice.
	var buf [128]byte
	var b []byte
	if len(id)+2 <= len(buf) {
		b = buf[:0]
	}
	b = append(b, kind, ':')
	b = append(b, id...)
	e, ok := d.m[string(b)]
	return ok && now.Before(e.expires)
}

func (d *denylist) len() int { return int(d.size.Load()) }

// denyHeap is a min-heap of entries by expiry (container/heap).
type denyHeap []*denied

func (h denyHeap) Len() int           { return len(h) }
func (h denyHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h denyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *denyHeap) Push(x any) {
	e := x.(*denied)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *denyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// feed follows Jeton's revocation feed: GET /v1/revocations/stream
// (server-sent events), resumed after the last applied seq with
// Last-Event-ID and reconnected with backoff (100 ms doubling to 5 s);
// while the stream is down, GET /v1/revocations?after= is polled every
// PollInterval. A stream counts as up only once it has delivered a line
// (an event or a keepalive comment): one that answers 200 and then stays
// silent, as a buffering intermediary or a stalled server does, must not
// hold the poller off. Each event is applied once: both sources deliver
// events in seq order with no gaps, so an event at or below the last
// applied seq is a duplicate.
type feed struct {
	v       *Verifier
	onEvent func(seq int64)

	mu      sync.Mutex // serialises apply
	lastSeq int64

	// connected reports whether the current stream has delivered
	// something; the poller skips its ticks while it is set.
	connected atomic.Bool
	// dropped asks the poller for a catch-up poll at once (an open stream
	// ended); it holds at most one request.
	dropped chan struct{}
}

func newFeed(v *Verifier, onEvent func(int64)) *feed {
	return &feed{v: v, onEvent: onEvent, dropped: make(chan struct{}, 1)}
}

// start runs the stream and the fallback poller until ctx ends.
func (f *feed) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.streamLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		f.pollLoop(ctx)
	}()
}

// seq returns the last applied seq.
func (f *feed) seq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastSeq
}

// apply records one event unless it was already applied.
func (f *feed) apply(ev *revocation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ev.Seq <= f.lastSeq {
		return
	}
	f.lastSeq = ev.Seq
	v := f.v
	// A JWT is accepted until its exp plus the leeway (checkDynamic), and
	// Jeton publishes expires_at = exp: the entry must outlive it by as
	// much, or the revoked token would be accepted again in between.
	// Jeton keeps entries in the feed for MaxLeeway past expires_at, so a
	// Verifier that catches up late still hears of them.
	until := ev.ExpiresAt.Add(v.cfg.Leeway)
	switch ev.Kind {
	case "token":
		v.deny.add(denyToken, ev.ID, until, v.cfg.Now())
		v.cache.evictToken(ev.ID)
	case "grant":
		// Denies the grant's JWTs (their sid). Its opaque access tokens need
		// nothing here: Jeton records a token revocation for each live one
		// in the same commit as the grant's, so each arrives as its own
		// event and leaves the cache alone, not with every other grant's.
		v.deny.add(denyGrant, ev.ID, until, v.cfg.Now())
	case "client":
		// Denies every JWT issued to the client (its client_id): a deleted
		// client's client-credentials tokens belong to no grant. Its opaque
		// tokens arrive as token events, as a grant's do.
		v.deny.add(denyClient, ev.ID, until, v.cfg.Now())
	case "secret":
		// One of the token's secrets stopped working before its time (a
		// rotation without grace, a replaced secret's grace ended by a leak
		// report): the answers cached for the token go, and nothing is
		// denied, since its current secret still works.
		v.cache.evictToken(ev.ID)
	default:
		v.cfg.Logger.Debug("verify: revocation of an unknown kind ignored", "seq", ev.Seq, "kind", ev.Kind)
	}
	if f.onEvent != nil {
		f.onEvent(ev.Seq)
	}
}

// catchUp polls until every live revocation has been applied.
func (f *feed) catchUp(ctx context.Context) error {
	for {
		n, err := f.pollOnce(ctx)
		if err != nil {
			return err
		}
		if n < feedPageSize {
			return nil
		}
	}
}

// pollOnce fetches and applies one page after the last applied seq and
// returns the number of events it held.
func (f *feed) pollOnce(ctx context.Context) (int, error) {
	after := f.seq()
	u := f.v.base + "/v1/revocations?after=" + strconv.FormatInt(after, 10) + "&limit=" + strconv.Itoa(feedPageSize)
	var page struct {
		Revocations []revocation `json:"revocations"`
		Next        int64        `json:"next"`
	}
	if _, err := f.v.getJSON(ctx, u, f.v.cfg.Credential, maxPollSize, &page, nil); err != nil {
		return 0, err
	}
	for i := range page.Revocations {
		ev := &page.Revocations[i]
		if err := ev.validate(); err != nil {
			return 0, fmt.Errorf("GET /v1/revocations: %w", err)
		}
		f.apply(ev)
	}
	return len(page.Revocations), nil
}

// validate checks the fields every event must have.
func (ev *revocation) validate() error {
	if ev.Seq <= 0 || ev.ID == "" || ev.ExpiresAt.IsZero() {
		return fmt.Errorf("invalid revocation event (seq %d)", ev.Seq)
	}
	return nil
}

// pollLoop polls every PollInterval while the stream is down, and at once
// whenever an open stream ends (streamDropped): whatever was revoked
// between the stream's last delivery and its drop is learnt without
// waiting for a tick, however long the stream looked alive.
func (f *feed) pollLoop(ctx context.Context) {
	t := time.NewTicker(f.v.cfg.PollInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.dropped:
		case <-t.C:
			if f.connected.Load() {
				continue
			}
		}
		err := f.catchUp(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			f.v.cfg.Logger.Warn("verify: polling the revocation feed failed", "err", err)
			failing = true
		case err == nil && failing:
			f.v.cfg.Logger.Info("verify: polling the revocation feed works again")
			failing = false
		}
	}
}

// streamDropped asks the poller for a catch-up poll; a request already
// pending covers this one.
func (f *feed) streamDropped() {
	select {
	case f.dropped <- struct{}{}:
	default:
	}
}

// streamLoop keeps the stream connected until ctx ends.
func (f *feed) streamLoop(ctx context.Context) {
	log := f.v.cfg.Logger
	backoff := feedBackoffMin
	failing := false
	for {
		began := time.Now()
		st, err := f.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if st != streamRefused {
			f.streamDropped()
		}
		switch {
		case st == streamDelivered:
			log.Warn("verify: revocation stream dropped; reconnecting, polling meanwhile", "err", err)
			failing = false
			if time.Since(began) >= feedHealthy {
				backoff = feedBackoffMin
			}
		case failing:
		case st == streamSilent:
			log.Warn("verify: the revocation stream opened but delivered nothing; polling until it works", "err", err)
			failing = true
		default:
			log.Warn("verify: cannot connect to the revocation stream; polling until it is back", "err", err)
			failing = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, feedBackoffMax)
	}
}

// errStreamIdle reports a stream that went silent.
var errStreamIdle = errors.New("revocation stream idle")

// streamState is how far one connection of the stream got.
type streamState int

const (
	streamRefused   streamState = iota // no event stream: a network error, a status, a content type
	streamSilent                       // an event stream that delivered nothing before it ended
	streamDelivered                    // an event stream that delivered at least one line
)

// stream reads one connection of the event stream until it ends, and
// reports how far it got.
func (f *feed) stream(ctx context.Context) (streamState, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.v.base+"/v1/revocations/stream", nil)
	if err != nil {
		return streamRefused, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("Authorization", "Bearer "+f.v.cfg.Credential)
	if seq := f.seq(); seq > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(seq, 10))
	}
	// A silent connection (no bytes, not even headers) is dropped.
	idle := time.AfterFunc(feedIdleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()
	client := *f.v.cfg.HTTPClient
	client.Timeout = 0 // the stream is long-lived; idle bounds it instead
	resp, err := client.Do(req)
	if err != nil {
		return streamRefused, streamErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return streamRefused, statusError(req, resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return streamRefused, fmt.Errorf("GET /v1/revocations/stream: content type %q, want text/event-stream", mt)
	}
	idle.Reset(feedIdleTimeout)
	f.v.cfg.Logger.Debug("verify: revocation stream opened", "after", req.Header.Get("Last-Event-ID"))
	// Headers prove nothing (an intermediary may answer them and buffer
	// the rest): the stream is up from its first line on.
	st := streamSilent
	defer f.connected.Store(false)
	p := newSSEReader(resp.Body)
	p.onLine = func() {
		idle.Reset(feedIdleTimeout)
		if st == streamSilent {
			st = streamDelivered
			f.connected.Store(true)
			f.v.cfg.Logger.Debug("verify: revocation stream connected")
		}
	}
	for {
		ev, err := p.next()
		if err != nil {
			return st, streamErr(ctx, err)
		}
		if ev.Type != "revocation" {
			continue
		}
		var r revocation
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			return st, fmt.Errorf("revocation stream: bad event data: %w", err)
		}
		if err := r.validate(); err != nil {
			return st, fmt.Errorf("revocation stream: %w", err)
		}
		f.apply(&r)
	}
}

// streamErr prefers the cause of the stream's cancellation (idle) over the
// read error it caused.
func streamErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}
