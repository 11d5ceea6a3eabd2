// Package signing holds Jeton's JWT signing keys: it encrypts their private
// parts at rest under a master key, signs and verifies JWTs (RFC 7519,
// compact JWS, RFC 7515) such as JWT access tokens (RFC 9068) and OpenID
// Connect ID tokens (OIDC Core §2), publishes the public keys as a JWK Set
// (RFC 7517 §5), and rotates keys through the store so every node agrees.
//
// A key's life: it is published in the JWKS from creation; it signs from
// ActiveAt (a pre-publication delay after creation on rotation, so that
// verifiers that cache the JWKS learn it before they meet a token it
// signed) until RetiredAt (its successor's ActiveAt); it stays published
// until ExpiresAt, when every token it signed has expired; a later rotation
// deletes it.
package signing

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/store"
)

// Config configures a Ring. Zero values are replaced by the documented
// defaults.
type Config struct {
	Store     store.KeyStore   // required
	MasterKey *MasterKey       // required: seals the private keys in Store
	Logger    *slog.Logger     // nil: slog.Default()
	Now       func() time.Time // nil: time.Now

	// PrePublish is how long a key created by Rotate is published before it
	// signs. Zero means the default, 10 minutes; a negative value means no
	// delay (the new key signs at once, e.g. in tests). It should exceed
	// how long verifiers cache the JWKS.
	PrePublish time.Duration
	// Retain is how long a retired key stays published: at least the
	// longest lifetime of a token it signed. Zero means 24 hours.
	Retain time.Duration
	// Reload is how often the keys are re-read from the store, to learn of
	// rotations made by other nodes. Zero means 30 seconds (or half of
	// PrePublish if that is shorter); a negative value disables the
	// periodic reload (one node, or tests that call Reload). When
	// PrePublish is positive Reload must be shorter, so every node knows a
	// key before it signs. A store that says when the keys changed
	// (KeysChanged) is reloaded then as well, whatever Reload says.
	Reload time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, errors.New("signing: no key store")
	}
	if c.MasterKey == nil {
		return c, errors.New("signing: no master key")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.PrePublish == 0:
		c.PrePublish = 10 * time.Minute
	case c.PrePublish < 0:
		c.PrePublish = 0
	}
	switch {
	case c.Retain == 0:
		c.Retain = 24 * time.Hour
	case c.Retain < 0:
		return c, fmt.Errorf("signing: negative key retention %v", c.Retain)
	}
	if c.Reload == 0 {
		c.Reload = 30 * time.Second
		if c.PrePublish > 0 && c.Reload >= c.PrePublish {
			c.Reload = c.PrePublish / 2
		}
	}
	if c.PrePublish > 0 && c.Reload >= c.PrePublish {
		return c, fmt.Errorf("signing: key reload interval %v must be shorter than the pre-publication delay %v, or other nodes may meet tokens signed by keys they have not loaded", c.Reload, c.PrePublish)
	}
	return c, nil
}

// Ring is the set of signing keys one node signs and verifies with. Sign,
// Verify, JWKS and Keys read an immutable snapshot and never touch the
// store; Rotate, Reload and the creation of a missing key replace the
// snapshot. A Ring is safe for concurrent use.
type Ring struct {
	cfg   Config
	mu    sync.Mutex // serialises replacements of state
	state atomic.Pointer[ringState]
	jwks  atomic.Pointer[jwksDoc]
	gen   atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// ringState is one immutable view of the keys.
type ringState struct {
	keys []*key // in ID (creation) order
	byID map[string]*key
	gen  uint64 // identifies this view in the JWKS cache
}

// jwksDoc is the serialised JWKS of one view at some instants.
type jwksDoc struct {
	gen   uint64
	from  time.Time // built at this instant
	until time.Time // stale from this instant (the next expiry); zero: never
	body  []byte
	etag  string
}

// NewRing loads the signing keys from cfg.Store and starts reloading them
// in the background. If no ES256 key signs now, it creates one that signs
// at once; it does so inside UpdateSigningKeys, so nodes starting together
// on an empty store create exactly one. It fails if a stored key cannot be
// opened with cfg.MasterKey rather than create keys beside it.
func NewRing(ctx context.Context, cfg Config) (*Ring, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Ring{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	// The change signal is taken before the first load: a change after
	// it, even before the loop starts, closes this channel.
	w, watched := cfg.Store.(keysWatcher)
	var changed <-chan struct{}
	if watched {
		changed = w.KeysChanged()
	}
	recs, err := cfg.Store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signing: load keys: %w", err)
	}
	st, err := r.build(recs, nil, true)
	if err != nil {
		return nil, err
	}
	r.state.Store(st)
	if st.signing("ES256", r.now()) == nil {
		r.mu.Lock()
		err := r.create(ctx, "ES256", true)
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if cfg.Reload > 0 || watched {
		go r.loop(w, changed)
	} else {
		close(r.done)
	}
	return r, nil
}

// keysWatcher is implemented by stores that say when the signing keys
// changed, on this node or (PostgreSQL) another: the ring reloads at once,
// so that a key another node created is published here, and its tokens
// verify here, within milliseconds rather than at the next periodic
// reload. (A key made on first use of an algorithm signs at once.)
type keysWatcher interface {
	KeysChanged() <-chan struct{}
}

// Close stops the background reload. The ring keeps working on the keys it
// holds.
func (r *Ring) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
}

// loop reloads the keys every Config.Reload (if positive) and whenever w
// (if not nil) says they changed, starting with changed, taken from w
// before the keys were first loaded.
func (r *Ring) loop(w keysWatcher, changed <-chan struct{}) {
	defer close(r.done)
	var tick <-chan time.Time
	if r.cfg.Reload > 0 {
		t := time.NewTicker(r.cfg.Reload)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.stop:
			return
		case <-tick:
		case <-changed:
			// Taken before the reload: a change during it closes this one.
			changed = w.KeysChanged()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := r.Reload(ctx); err != nil {
			r.cfg.Logger.Error("signing: reload keys", "err", err)
		}
		cancel()
	}
}

// now returns the current time at the store's resolution (milliseconds),
// so the keys a ring creates look the same before and after a reload.
func (r *Ring) now() time.Time {
	return time.UnixMilli(r.cfg.Now().UnixMilli()).UTC()
}

// Reload re-reads the keys from the store: rotations made by other nodes
// take effect here. The background loop calls it every Config.Reload.
func (r *Ring) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs, err := r.cfg.Store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("signing: reload keys: %w", err)
	}
	return r.apply(recs, false)
}

// apply replaces the view with recs. r.mu must be held.
func (r *Ring) apply(recs []store.SigningKey, strict bool) error {
	st, err := r.build(recs, r.state.Load(), strict)
	if err != nil {
		return err
	}
	r.state.Store(st)
	return nil
}

// errWrongMasterKey is what NewRing says when the keys do not open.
const errWrongMasterKey = "the master key does not match the one the signing keys were sealed with"

// build makes a view of recs, reusing the key material of prev where a key
// is unchanged. Private parts are opened for the keys that can still sign.
// When strict (at start-up), every key must open, and a key that does not
// is an error; otherwise it is logged and the key only verifies.
func (r *Ring) build(recs []store.SigningKey, prev *ringState, strict bool) (*ringState, error) {
	now := r.now()
	st := &ringState{byID: make(map[string]*key, len(recs)), gen: r.gen.Add(1)}
	for _, rec := range recs {
		if old := prev.get(rec.ID); old != nil && old.rec.Alg == rec.Alg && string(old.sealed) == string(rec.Private) && string(old.pubJWK) == string(rec.PublicJWK) {
			k := &key{rec: rec, material: old.material}
			k.rec.Private = nil
			if strict && k.priv == nil {
				if _, err := k.openPrivate(r.cfg.MasterKey, rec.ID); err != nil {
					return nil, openError(rec.ID, err)
				}
			}
			st.add(k)
			continue
		}
		k, err := parsePublic(rec)
		if err != nil {
			if strict {
				return nil, fmt.Errorf("signing: key %s: %w", rec.ID, err)
			}
			r.cfg.Logger.Error("signing: ignoring a stored signing key", "kid", rec.ID, "err", err)
			continue
		}
		if strict || !k.retiredAt(now) {
			priv, err := k.openPrivate(r.cfg.MasterKey, rec.ID)
			switch {
			case err != nil && strict:
				return nil, openError(rec.ID, err)
			case err != nil:
				r.cfg.Logger.Error("signing: a stored signing key cannot be opened with this node's master key; it will not sign here", "kid", rec.ID, "err", err)
			case !k.retiredAt(now):
				k.priv = priv
			}
		}
		st.add(k)
	}
	slices.SortFunc(st.keys, func(a, b *key) int { return strings.Compare(a.rec.ID, b.rec.ID) })
	return st, nil
}

func openError(id string, err error) error {
	if errors.Is(err, ErrSealed) {
		return fmt.Errorf("signing: key %s: %s", id, errWrongMasterKey)
	}
	return fmt.Errorf("signing: key %s: %w", id, err)
}

func (st *ringState) add(k *key) {
	st.keys = append(st.keys, k)
	st.byID[k.rec.ID] = k
}

func (st *ringState) get(id string) *key {
	if st == nil {
		return nil
	}
	return st.byID[id]
}

// signing returns the key that signs for alg at now: the one with the
// latest ActiveAt (then ID) among those active at now that this node can
// use, or nil.
func (st *ringState) signing(alg string, now time.Time) *key {
	var best *key
	for _, k := range st.keys {
		if k.rec.Alg != alg || k.priv == nil || !k.activeAt(now) {
			continue
		}
		if best == nil || !k.rec.ActiveAt.Before(best.rec.ActiveAt) {
			best = k
		}
	}
	return best
}

// create makes a key for alg that signs at once, unless the store already
// holds one that does. r.mu must be held.
func (r *Ring) create(ctx context.Context, alg string, strict bool) error {
	now := r.now()
	// Generate outside the transaction: an RSA key takes long enough to
	// hold up every other write on SQLite's single writer.
	fresh, err := generate(r.cfg.MasterKey, alg, now)
	if err != nil {
		return err
	}
	details, _ := json.Marshal(map[string]string{"kid": fresh.ID, "alg": alg})
	ev := store.AuditEvent{Time: now, Actor: "system", Action: "signing_key.create", Target: fresh.ID, Details: details}
	var view []store.SigningKey
	err = r.cfg.Store.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
		view = keys
		for _, k := range keys {
			if k.Alg == alg && !now.Before(k.ActiveAt) && (k.RetiredAt.IsZero() || now.Before(k.RetiredAt)) {
				return nil, nil, nil // another node was first
			}
		}
		view = append(slices.Clip(keys), fresh)
		return []store.SigningKey{fresh}, nil, nil
	}, ev)
	if err != nil {
		return fmt.Errorf("signing: create %s key: %w", alg, err)
	}
	return r.apply(view, strict)
}

// Keys returns the current view of the keys, in creation order, without
// their private parts, for the admin API.
func (r *Ring) Keys() []store.SigningKey {
	st := r.state.Load()
	out := make([]store.SigningKey, len(st.keys))
	for i, k := range st.keys {
		out[i] = k.rec
	}
	return out
}

// JWKS returns the JWK Set (RFC 7517 §5) of every published key (not past
// its ExpiresAt), each with "kid", "alg" and "use": "sig" (RFC 7517 §4),
// and a strong entity tag of it (a quoted string, for the ETag header). The
// document is rebuilt only when the keys change or one expires.
func (r *Ring) JWKS() (body []byte, etag string) {
	st := r.state.Load()
	now := r.cfg.Now()
	if d := r.jwks.Load(); d != nil && d.gen == st.gen && !now.Before(d.from) && (d.until.IsZero() || now.Before(d.until)) {
		return d.body, d.etag
	}
	d := &jwksDoc{gen: st.gen, from: now}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range st.keys {
		if !k.publishedAt(now) {
			continue
		}
		set.Keys = append(set.Keys, k.jwk)
		if e := k.rec.ExpiresAt; !e.IsZero() && (d.until.IsZero() || e.Before(d.until)) {
			d.until = e
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		// Public keys that parsed always marshal; never serve a partial set.
		panic(fmt.Sprintf("signing: encode JWKS: %v", err))
	}
	sum := sha256.Sum256(b)
	d.body, d.etag = b, `"`+base64.RawURLEncoding.EncodeToString(sum[:16])+`"`
	r.jwks.Store(d)
	return d.body, d.etag
}
