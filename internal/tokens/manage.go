package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// The built-in API that guards Jeton itself, and its scopes.
const (
	BuiltinAPIName       = "jeton"
	BuiltinAPIIdentifier = "jeton"
	ScopeAdmin           = "admin"
	ScopeVerify          = "verify"
	// ScopeVerifyAPIPrefix followed by an API id grants verification of
	// that API's tokens only.
	ScopeVerifyAPIPrefix = "verify:"
)

// Limits on what a caller may store.
const (
	MaxMetadataBytes = 4 << 10
	MaxNameLen       = 200
	MaxScopes        = 100
	MaxScopeLen      = 100
	MaxCIDRs         = 100
	MaxGracePeriod   = 7 * 24 * time.Hour
	maxLimit         = 1_000_000_000
	maxWindow        = 31 * 24 * time.Hour
	maxTTL           = 100 * 365 * 24 * time.Hour
)

// InvalidError reports input that breaks a rule. Code is a stable,
// machine-readable name (e.g. "invalid_scope"); Message says what to fix.
type InvalidError struct {
	Code    string
	Message string
}

func (e *InvalidError) Error() string { return "tokens: " + e.Message }

func invalid(code, format string, args ...any) error {
	return &InvalidError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Actor is who asks for a change, for the audit log.
type Actor struct {
	ID         string // token ID of the caller, or "system"/"cli"
	RemoteAddr string
}

func (s *Service) event(a Actor, action, target string, details any) store.AuditEvent {
	ev := store.AuditEvent{Time: s.cfg.Now(), Actor: a.ID, Action: action, Target: target, RemoteAddr: a.RemoteAddr}
	if details != nil {
		b, err := json.Marshal(details)
		if err == nil {
			ev.Details = b
		}
	}
	return ev
}

// apiIndex is an in-memory copy of every API, for lookups by id, name or
// identifier on the hot path. Local changes reload it at once; a periodic
// reload (Config.APIReloadInterval) picks up other nodes' changes, and a
// miss reloads it before failing (see ResolveAPI and apiOf).
type apiIndex struct {
	cur      atomic.Pointer[apiMaps]
	mu       sync.Mutex
	loadedAt atomic.Int64
}

type apiMaps struct {
	byID  map[string]*store.API
	byKey map[string]*store.API // name and identifier
}

func (x *apiIndex) reload(ctx context.Context, st store.Store) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	list, err := st.ListAPIs(ctx)
	if err != nil {
		return fmt.Errorf("tokens: load apis: %w", err)
	}
	m := &apiMaps{byID: make(map[string]*store.API, len(list)), byKey: make(map[string]*store.API, 2*len(list))}
	for i := range list {
		a := &list[i]
		m.byID[a.ID] = a
		m.byKey[a.Name] = a
		m.byKey[a.Identifier] = a
	}
	x.cur.Store(m)
	x.loadedAt.Store(time.Now().UnixNano())
	return nil
}

func (x *apiIndex) find(ref string) *store.API {
	m := x.cur.Load()
	if a := m.byID[ref]; a != nil {
		return a
	}
	return m.byKey[ref]
}

// apiReloadLoop reloads the API index every APIReloadInterval until Close,
// and at once when the store says the APIs changed, on this node or
// (PostgreSQL) another: first when changed, taken before the index was
// first loaded, is closed.
func (s *Service) apiReloadLoop(changed <-chan struct{}) {
	var wake func() <-chan struct{}
	if w, ok := s.store.(apisWatcher); ok {
		wake = w.APIsChanged
	}
	s.everyOrWhen(s.cfg.APIReloadInterval, 30*time.Second, "reload_apis", wake, changed, func(ctx context.Context) error {
		return s.apis.reload(ctx, s.store)
	})
}

// apisChanged returns the store's APIs change signal, or nil if it has
// none.
func (s *Service) apisChanged() <-chan struct{} {
	if w, ok := s.store.(apisWatcher); ok {
		return w.APIsChanged()
	}
	return nil
}

// apisWatcher is implemented by stores that say when the APIs changed.
type apisWatcher interface {
	APIsChanged() <-chan struct{}
}

// apiOf returns the API with the given id, which a stored token names. An
// id this node does not know is of an API another node created since the
// last reload: the index is reloaded once before the API is declared
// missing. (A token's API exists while the token does, so misses are
// rare, and not for callers to provoke at will.)
func (s *Service) apiOf(ctx context.Context, id string) (*store.API, error) {
	if a := s.apis.cur.Load().byID[id]; a != nil {
		return a, nil
	}
	if err := s.apis.reload(ctx, s.store); err != nil {
		return nil, err
	}
	if a := s.apis.cur.Load().byID[id]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("tokens: api %s: %w", id, store.ErrNotFound)
}

// knowScopeAPIs reloads the API index once if scopes name, in a
// verify:<id> scope, an API this node does not know, so that
// allowedScope, which only reads the index, sees APIs created on other
// nodes.
func (s *Service) knowScopeAPIs(ctx context.Context, scopes []string) error {
	m := s.apis.cur.Load()
	for _, sc := range scopes {
		if id, ok := strings.CutPrefix(sc, ScopeVerifyAPIPrefix); ok && m.byID[id] == nil {
			return s.apis.reload(ctx, s.store)
		}
	}
	return nil
}

// ResolveAPI returns the API whose id, name or identifier is ref.
func (s *Service) ResolveAPI(ctx context.Context, ref string) (*store.API, error) {
	if a := s.apis.find(ref); a != nil {
		return a, nil
	}
	// Unknown here: another node may have created it. Reload at most once
	// a second so that floods of unknown names cannot hammer the store.
	if time.Now().UnixNano()-s.apis.loadedAt.Load() > int64(time.Second) {
		if err := s.apis.reload(ctx, s.store); err != nil {
			return nil, err
		}
		if a := s.apis.find(ref); a != nil {
			return a, nil
		}
	}
	return nil, fmt.Errorf("tokens: api %q: %w", ref, store.ErrNotFound)
}

// ListAPIs returns every API.
func (s *Service) ListAPIs(ctx context.Context) ([]store.API, error) { return s.store.ListAPIs(ctx) }

// APIParams are the settable fields of an API.
type APIParams struct {
	Name       string
	Identifier string
	Scopes     []string
	// ScopeDescriptions says in words what scopes allow, for the consent
	// and device pages; each key must be one of Scopes.
	ScopeDescriptions map[string]string
	KeyPrefix         string
	DefaultTTL        time.Duration
	MaxTTL            time.Duration
}

// ValidateName checks a display name field (at most MaxNameLen printable
// characters; required means not blank) the way every Jeton object does.
func ValidateName(field, v string, required bool) error { return validName(field, v, required) }

// ValidateScopes checks a list of scope strings the way every Jeton object
// does: at most MaxScopes, each printable ASCII without spaces, no repeats.
func ValidateScopes(scopes []string) error { return validScopes(scopes) }

func validName(field, v string, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalid("invalid_request", "%s is required", field)
	}
	if len(v) > MaxNameLen || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid("invalid_request", "%s must be at most %d printable characters", field, MaxNameLen)
	}
	return nil
}

// validScopeDescriptions checks descriptions of the scopes scopes: each of
// a defined scope, at most MaxNameLen printable characters. An empty
// description is allowed only when allowEmpty (an update removing one).
func validScopeDescriptions(scopes []string, descs map[string]string, allowEmpty bool) error {
	if len(descs) > MaxScopes {
		return invalid("invalid_scope", "at most %d scope descriptions", MaxScopes)
	}
	for sc, d := range descs {
		if !contains(scopes, sc) {
			return invalid("invalid_scope", "scope_descriptions names %q, which the API does not define", TruncateUTF8(sc, 40))
		}
		if err := validName("the description of scope "+sc, d, !allowEmpty); err != nil {
			return err
		}
	}
	return nil
}

// TruncateUTF8 shortens s to at most n bytes without splitting a
// character, for untrusted input echoed in a message or a log.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func validScopes(scopes []string) error {
	if len(scopes) > MaxScopes {
		return invalid("invalid_scope", "at most %d scopes", MaxScopes)
	}
	seen := map[string]bool{}
	for _, sc := range scopes {
		if sc == "" || len(sc) > MaxScopeLen || strings.ContainsFunc(sc, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) {
			return invalid("invalid_scope", "scope %q must be 1-%d printable ASCII characters without spaces, quotes or backslashes", sc, MaxScopeLen)
		}
		if seen[sc] {
			return invalid("invalid_scope", "scope %q is listed twice", sc)
		}
		seen[sc] = true
	}
	return nil
}

func validTTLs(def, maxT time.Duration) error {
	if def < 0 || maxT < 0 || def > maxTTL || maxT > maxTTL {
		return invalid("invalid_expiry", "default_ttl and max_ttl must be between 0 and 100 years")
	}
	if maxT > 0 && def > maxT {
		return invalid("invalid_expiry", "default_ttl exceeds max_ttl")
	}
	return nil
}

// CreateAPI validates and stores a new API.
func (s *Service) CreateAPI(ctx context.Context, p APIParams, by Actor) (store.API, error) {
	if err := validName("name", p.Name, true); err != nil {
		return store.API{}, err
	}
	if err := validName("identifier", p.Identifier, true); err != nil {
		return store.API{}, err
	}
	if p.Name == BuiltinAPIName || p.Identifier == BuiltinAPIIdentifier {
		return store.API{}, fmt.Errorf("tokens: create api: name %q: %w", p.Name, store.ErrAlreadyExists)
	}
	if ids.Valid(ids.API, p.Name) || ids.Valid(ids.API, p.Identifier) {
		return store.API{}, invalid("invalid_request", "name and identifier must not look like an API id")
	}
	if err := validScopes(p.Scopes); err != nil {
		return store.API{}, err
	}
	if err := validScopeDescriptions(p.Scopes, p.ScopeDescriptions, false); err != nil {
		return store.API{}, err
	}
	if p.KeyPrefix == "" {
		p.KeyPrefix = tokenfmt.PrefixPersonal
	}
	if !tokenfmt.ValidPrefix(p.KeyPrefix) {
		return store.API{}, invalid("invalid_prefix", "key_prefix must be 2-20 letters, digits or '_', starting with a letter and not ending with '_'")
	}
	if tokenfmt.Reserved(p.KeyPrefix) {
		return store.API{}, invalid("invalid_prefix", "key_prefix %q is reserved for OAuth tokens and client secrets", p.KeyPrefix)
	}
	if err := validTTLs(p.DefaultTTL, p.MaxTTL); err != nil {
		return store.API{}, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	a := store.API{ID: ids.New(ids.API, now), Name: p.Name, Identifier: p.Identifier, Scopes: append([]string{}, p.Scopes...),
		ScopeDescriptions: maps.Clone(p.ScopeDescriptions), KeyPrefix: p.KeyPrefix, DefaultTTL: p.DefaultTTL, MaxTTL: p.MaxTTL,
		CreatedAt: now, UpdatedAt: now}
	if len(a.ScopeDescriptions) == 0 {
		a.ScopeDescriptions = nil
	}
	ev := s.event(by, "api.create", a.ID, map[string]any{"name": a.Name, "identifier": a.Identifier, "scopes": a.Scopes})
	if err := s.store.CreateAPI(ctx, a, ev); err != nil {
		return store.API{}, err
	}
	return a, s.apis.reload(ctx, s.store)
}

// EnsureBuiltinAPI creates the built-in jeton API if it does not exist and
// reports whether it did.
func (s *Service) EnsureBuiltinAPI(ctx context.Context) (store.API, bool, error) {
	if a, err := s.ResolveAPI(ctx, BuiltinAPIName); err == nil {
		return *a, false, nil
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	a := store.API{ID: ids.New(ids.API, now), Name: BuiltinAPIName, Identifier: BuiltinAPIIdentifier,
		Scopes: []string{ScopeAdmin, ScopeVerify}, KeyPrefix: tokenfmt.PrefixPersonal, Builtin: true, CreatedAt: now, UpdatedAt: now}
	err := s.store.CreateAPI(ctx, a, s.event(Actor{ID: "system"}, "api.create", a.ID, map[string]any{"name": a.Name, "builtin": true}))
	if errors.Is(err, store.ErrAlreadyExists) {
		// Another node won the race.
		if err := s.apis.reload(ctx, s.store); err != nil {
			return store.API{}, false, err
		}
		b, err := s.ResolveAPI(ctx, BuiltinAPIName)
		if err != nil {
			return store.API{}, false, err
		}
		return *b, false, nil
	}
	if err != nil {
		return store.API{}, false, err
	}
	return a, true, s.apis.reload(ctx, s.store)
}

// APIUpdate holds the optional changes to an API.
type APIUpdate struct {
	Name      *string
	AddScopes []string
	// ScopeDescriptions sets the descriptions of the scopes it names
	// (among the API's scopes, AddScopes included); an empty one removes
	// that scope's description. Scopes it does not name keep theirs.
	ScopeDescriptions map[string]string
	DefaultTTL        *time.Duration
	MaxTTL            *time.Duration
}

// UpdateAPI applies u to the API with the given id.
func (s *Service) UpdateAPI(ctx context.Context, id string, u APIUpdate, by Actor) (store.API, error) {
	if u.Name != nil {
		if err := validName("name", *u.Name, true); err != nil {
			return store.API{}, err
		}
	}
	if err := validScopes(u.AddScopes); err != nil {
		return store.API{}, err
	}
	details := map[string]any{"name": u.Name, "add_scopes": u.AddScopes, "default_ttl": u.DefaultTTL, "max_ttl": u.MaxTTL}
	if len(u.ScopeDescriptions) > 0 {
		details["scope_descriptions"] = slices.Sorted(maps.Keys(u.ScopeDescriptions))
	}
	ev := s.event(by, "api.update", id, details)
	a, err := s.store.UpdateAPI(ctx, id, func(a *store.API) error {
		if a.Builtin && (u.Name != nil || len(u.AddScopes) > 0 || len(u.ScopeDescriptions) > 0) {
			return fmt.Errorf("tokens: rename, add scopes to or describe scopes of %s: %w", a.Name, store.ErrBuiltin)
		}
		if u.Name != nil {
			if *u.Name == BuiltinAPIName {
				return fmt.Errorf("tokens: rename api to %q: %w", *u.Name, store.ErrAlreadyExists)
			}
			a.Name = *u.Name
		}
		for _, sc := range u.AddScopes {
			if !contains(a.Scopes, sc) {
				a.Scopes = append(a.Scopes, sc)
			}
		}
		if len(a.Scopes) > MaxScopes {
			return invalid("invalid_scope", "at most %d scopes", MaxScopes)
		}
		if err := validScopeDescriptions(a.Scopes, u.ScopeDescriptions, true); err != nil {
			return err
		}
		for sc, d := range u.ScopeDescriptions {
			if a.ScopeDescriptions == nil {
				a.ScopeDescriptions = map[string]string{}
			}
			if d == "" {
				delete(a.ScopeDescriptions, sc)
			} else {
				a.ScopeDescriptions[sc] = d
			}
		}
		if len(a.ScopeDescriptions) == 0 {
			a.ScopeDescriptions = nil
		}
		if u.DefaultTTL != nil {
			a.DefaultTTL = *u.DefaultTTL
		}
		if u.MaxTTL != nil {
			a.MaxTTL = *u.MaxTTL
		}
		if err := validTTLs(a.DefaultTTL, a.MaxTTL); err != nil {
			return err
		}
		a.UpdatedAt = s.cfg.Now().UTC().Truncate(time.Millisecond)
		return nil
	}, ev)
	if err != nil {
		return store.API{}, err
	}
	return a, s.apis.reload(ctx, s.store)
}

// DeleteAPI deletes an API; with force, also its live tokens.
func (s *Service) DeleteAPI(ctx context.Context, id string, force bool, by Actor) error {
	hashes, err := s.store.DeleteAPI(ctx, id, force, s.cfg.Now(), s.event(by, "api.delete", id, map[string]any{"force": force}))
	if err != nil {
		return err
	}
	s.cache.invalidate(hashes...)
	s.cache.invalidateAPI(id)
	return s.apis.reload(ctx, s.store)
}

// Settings are the adjustable properties of a token, shared by create and
// update.
type Settings struct {
	Name         *string
	Subject      *string
	Scopes       []string // nil: unchanged (update) or none (create)
	Metadata     json.RawMessage
	AllowedCIDRs []string
	RateLimit    **store.RateLimit // pointer to nil: remove the limit
	Quota        **store.Quota
}

// CreateParams describe a new token.
type CreateParams struct {
	API       string // id, name or identifier
	Settings  Settings
	ExpiresIn time.Duration // one of ExpiresIn and ExpiresAt, or neither
	ExpiresAt time.Time
}

// Created is a new or rotated token and its secret, which is never
// available again.
type Created struct {
	Token  store.Token
	Secret string
	// PreviousExpiresAt is when the replaced secret stops working (rotation).
	PreviousExpiresAt time.Time
}

// allowedScope reports whether api defines scope. The jeton API also
// accepts verify:<api id> for an existing API.
func (s *Service) allowedScope(api *store.API, scope string) bool {
	if contains(api.Scopes, scope) {
		return true
	}
	if api.Builtin {
		if id, ok := strings.CutPrefix(scope, ScopeVerifyAPIPrefix); ok {
			return s.apis.cur.Load().byID[id] != nil
		}
	}
	return false
}

func (s *Service) applySettings(api *store.API, t *store.Token, set Settings, now time.Time) error {
	if set.Name != nil {
		if err := validName("name", *set.Name, false); err != nil {
			return err
		}
		t.Name = *set.Name
	}
	if set.Subject != nil {
		if err := validName("subject", *set.Subject, false); err != nil {
			return err
		}
		t.Subject = *set.Subject
	}
	if set.Scopes != nil {
		if err := validScopes(set.Scopes); err != nil {
			return err
		}
		for _, sc := range set.Scopes {
			if !s.allowedScope(api, sc) {
				return invalid("invalid_scope", "scope %q is not defined by api %s", sc, api.Name)
			}
		}
		t.Scopes = append([]string{}, set.Scopes...)
	}
	if set.Metadata != nil {
		if len(set.Metadata) > MaxMetadataBytes {
			return invalid("invalid_metadata", "metadata must be at most %d bytes", MaxMetadataBytes)
		}
		if !utf8.Valid(set.Metadata) {
			return invalid("invalid_metadata", "metadata must be UTF-8 JSON")
		}
		trimmed := strings.TrimSpace(string(set.Metadata))
		if trimmed == "null" {
			t.Metadata = nil
		} else {
			var obj map[string]json.RawMessage
			if !strings.HasPrefix(trimmed, "{") || json.Unmarshal(set.Metadata, &obj) != nil {
				return invalid("invalid_metadata", "metadata must be a JSON object")
			}
			// Canonical key order, no whitespace, and no \u003c for '<':
			// what is stored (and sent with every verification) is never
			// more than what was given.
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(obj); err != nil {
				return invalid("invalid_metadata", "metadata must be a JSON object")
			}
			if b.Len()-1 > MaxMetadataBytes {
				return invalid("invalid_metadata", "metadata must be at most %d bytes", MaxMetadataBytes)
			}
			t.Metadata = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		}
	}
	if set.AllowedCIDRs != nil {
		if len(set.AllowedCIDRs) > MaxCIDRs {
			return invalid("invalid_cidr", "at most %d allowed_cidrs", MaxCIDRs)
		}
		var out []string
		for _, c := range set.AllowedCIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				addr, aerr := netip.ParseAddr(c)
				if aerr != nil {
					return invalid("invalid_cidr", "allowed_cidrs: %q is not an address or CIDR", c)
				}
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
			if p.Addr().Is4In6() {
				// Clients' addresses are compared unmapped, as IPv4: an
				// IPv4-mapped prefix is stored as the IPv4 one it means,
				// and one wider than the mapped range means nothing clear.
				if p.Bits() < 96 {
					return invalid("invalid_cidr", "allowed_cidrs: %q mixes IPv4-mapped and other IPv6 addresses; give the IPv4 prefix", c)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked().String())
		}
		t.AllowedCIDRs = out
	}
	if set.RateLimit != nil {
		rl := *set.RateLimit
		if rl != nil && (rl.Limit <= 0 || rl.Limit > maxLimit || rl.Window < time.Second || rl.Window > maxWindow) {
			return invalid("invalid_limit", "rate_limit needs 1 <= limit <= %d and a window of 1 second to 31 days", maxLimit)
		}
		t.RateLimit = rl
	}
	if set.Quota != nil {
		q := *set.Quota
		if q != nil {
			if q.Remaining < 0 || q.Remaining > 1<<53 || q.RefillAmount < 0 || q.RefillAmount > 1<<53 {
				return invalid("invalid_limit", "quota remaining and refill amount must be between 0 and 2^53")
			}
			switch q.RefillInterval {
			case "":
				if q.RefillAmount != 0 {
					return invalid("invalid_limit", "quota refill needs an interval: daily or monthly")
				}
			case store.RefillDaily, store.RefillMonthly:
				if q.RefillAmount == 0 {
					return invalid("invalid_limit", "quota refill amount must be positive")
				}
			default:
				return invalid("invalid_limit", "quota refill interval must be daily or monthly")
			}
			// A new version, later than any before: the time of the
			// change, unless a clock behind the last one's says otherwise.
			version := max(now.UnixMilli(), t.LastQuotaVersion+1)
			if t.Quota != nil {
				version = max(version, t.Quota.Version+1)
			}
			q = &store.Quota{Remaining: q.Remaining, RefillAmount: q.RefillAmount, RefillInterval: q.RefillInterval,
				PeriodStart: periodStart(q.RefillInterval, now), Version: version}
		} else if t.Quota != nil {
			t.LastQuotaVersion = t.Quota.Version // for the next quota's
		}
		t.Quota = q
	}
	return nil
}

// CreateToken issues a new token for an API. The secret in the result is
// the only copy that will ever exist.
func (s *Service) CreateToken(ctx context.Context, p CreateParams, by Actor) (Created, error) {
	api, err := s.ResolveAPI(ctx, p.API)
	if err != nil {
		return Created{}, err
	}
	if api.Builtin {
		if err := s.knowScopeAPIs(ctx, p.Settings.Scopes); err != nil {
			return Created{}, err
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	t := store.Token{ID: ids.New(ids.Token, now), APIID: api.ID, Scopes: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := s.applySettings(api, &t, p.Settings, now); err != nil {
		return Created{}, err
	}
	switch {
	case p.ExpiresIn != 0 && !p.ExpiresAt.IsZero():
		return Created{}, invalid("invalid_expiry", "give expires_in or expires_at, not both")
	case p.ExpiresIn < 0:
		return Created{}, invalid("invalid_expiry", "expires_in must be positive")
	case p.ExpiresIn > 0:
		if p.ExpiresIn > maxTTL {
			return Created{}, invalid("invalid_expiry", "expires_in is over 100 years")
		}
		t.ExpiresAt = now.Add(p.ExpiresIn)
	case !p.ExpiresAt.IsZero():
		if !p.ExpiresAt.After(now) {
			return Created{}, invalid("invalid_expiry", "expires_at is in the past")
		}
		t.ExpiresAt = p.ExpiresAt.UTC().Truncate(time.Millisecond)
	case api.DefaultTTL > 0:
		t.ExpiresAt = now.Add(api.DefaultTTL)
	case api.MaxTTL > 0:
		t.ExpiresAt = now.Add(api.MaxTTL)
	}
	if api.MaxTTL > 0 && t.ExpiresAt.After(now.Add(api.MaxTTL)) {
		return Created{}, invalid("invalid_expiry", "expiry is beyond the api's max_ttl of %s", api.MaxTTL)
	}
	secret, err := tokenfmt.Generate(api.KeyPrefix)
	if err != nil {
		return Created{}, err
	}
	t.Hint = tokenfmt.Hint(secret)
	action := "token.create"
	if by.ID == "bootstrap" {
		action = "bootstrap"
	}
	ev := s.event(by, action, t.ID, map[string]any{"api": api.ID, "name": t.Name, "subject": t.Subject, "scopes": t.Scopes, "hint": t.Hint})
	if err := s.store.CreateToken(ctx, t, tokenfmt.HashOf(secret), ev); err != nil {
		return Created{}, err
	}
	return Created{Token: t, Secret: secret}, nil
}

// GetToken returns a token by id.
func (s *Service) GetToken(ctx context.Context, id string) (store.Token, error) {
	return s.store.GetToken(ctx, id)
}

// ListTokens returns one page of tokens.
func (s *Service) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.Token, string, error) {
	return s.store.ListTokens(ctx, f)
}

// UpdateToken changes a token's settings. The change applies to the next
// verification on this node.
func (s *Service) UpdateToken(ctx context.Context, id string, set Settings, by Actor) (store.Token, error) {
	details := map[string]any{}
	if set.Name != nil {
		details["name"] = *set.Name
	}
	if set.Scopes != nil {
		details["scopes"] = set.Scopes
	}
	if set.Metadata != nil {
		details["metadata_changed"] = true
	}
	if set.AllowedCIDRs != nil {
		details["allowed_cidrs"] = set.AllowedCIDRs
	}
	if set.RateLimit != nil {
		details["rate_limit"] = *set.RateLimit
	}
	if set.Quota != nil {
		details["quota"] = *set.Quota
	}
	if err := s.knowScopeAPIs(ctx, set.Scopes); err != nil {
		return store.Token{}, err
	}
	ev := s.event(by, "token.update", id, details)
	update := func(t *store.Token) error {
		api := s.apis.cur.Load().byID[t.APIID]
		if api == nil {
			return &unknownAPIError{id: t.APIID}
		}
		now := s.cfg.Now().UTC().Truncate(time.Millisecond)
		if err := s.applySettings(api, t, set, now); err != nil {
			return err
		}
		t.UpdatedAt = now
		return nil
	}
	tok, hashes, err := s.store.UpdateToken(ctx, id, update, ev)
	if u, ok := errors.AsType[*unknownAPIError](err); ok {
		// The API was created on another node since the last reload. The
		// index is not reloaded inside the store's transaction.
		if _, err := s.apiOf(ctx, u.id); err != nil {
			return store.Token{}, fmt.Errorf("tokens: api of token %s: %w", id, err)
		}
		tok, hashes, err = s.store.UpdateToken(ctx, id, update, ev)
	}
	if _, ok := errors.AsType[*unknownAPIError](err); ok {
		return store.Token{}, fmt.Errorf("tokens: api of token %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, err
	}
	s.cache.invalidate(hashes...)
	if set.Quota != nil {
		var version int64
		if tok.Quota != nil {
			version = tok.Quota.Version
		}
		s.usage.forget(id, version)
	}
	if set.RateLimit != nil {
		if m, ok := s.cfg.Limiter.(interface{ Forget(string) }); ok {
			m.Forget(id)
		}
	}
	return tok, nil
}

// unknownAPIError is an update of a token whose API this node's index
// does not have.
type unknownAPIError struct{ id string }

func (e *unknownAPIError) Error() string { return "tokens: unknown api " + e.id }

// RevokeToken revokes a token; it stops verifying on this node at once.
func (s *Service) RevokeToken(ctx context.Context, id, reason string, by Actor) (store.Token, error) {
	if err := validName("reason", reason, false); err != nil {
		return store.Token{}, err
	}
	tok, hashes, err := s.store.RevokeToken(ctx, id, reason, s.cfg.Now(), s.event(by, "token.revoke", id, map[string]any{"reason": reason}))
	if err != nil {
		return store.Token{}, err
	}
	s.cache.invalidate(hashes...)
	return tok, nil
}

// Evict drops the cached verification results of the given secret hashes
// on this node. Writers outside this package that change or delete tokens
// (grant revocation, client or user deletion) call it with the hashes the
// store returned; on PostgreSQL the store also tells the other nodes.
func (s *Service) Evict(hashes ...tokenfmt.Hash) { s.cache.invalidate(hashes...) }

// RevokeSecret ends the secret presented, if its token belongs to one of
// allowedAPIs (nil: any), and reports whether a token was found. It is
// RFC 7009 revocation: an unknown or foreign token is not an error.
//
// A token's current secret revokes the token. A secret a rotation replaced
// ends only its own grace period, as a leak report of it does: the token,
// and the secret the rotation was made for, keep working. One whose grace
// has already ended is no longer a valid token, and revoking it changes
// nothing (RFC 7009 §2.2); anyone who kept an old key could otherwise
// revoke the new one.
func (s *Service) RevokeSecret(ctx context.Context, secret string, allowedAPIs []string, reason string, by Actor) (bool, error) {
	if _, err := tokenfmt.Parse(secret); err != nil {
		return false, nil
	}
	h := tokenfmt.HashOf(secret)
	now := s.cfg.Now()
	rec, err := s.lookup(ctx, &h, now)
	if err != nil || rec == nil {
		return false, err
	}
	if allowedAPIs != nil && !contains(allowedAPIs, rec.tok.APIID) {
		return false, nil
	}
	switch {
	case !rec.secretExpires.IsZero() && !now.Before(rec.secretExpires):
		return true, nil
	case !rec.secretExpires.IsZero():
		_, _, err := s.store.ExpireTokenSecret(ctx, h, now, s.event(by, "token.revoke", rec.tok.ID,
			map[string]any{"reason": reason, "secret": "previous", "grace_ended": true}))
		if errors.Is(err, store.ErrNotFound) {
			return true, nil // rotated away meanwhile
		}
		if err != nil {
			return true, err
		}
		s.cache.invalidate(h)
		return true, nil
	}
	_, err = s.RevokeToken(ctx, rec.tok.ID, reason, by)
	return err == nil, err
}

// RotateToken gives a token a new secret with the same settings. The old
// secret keeps working for grace (at most MaxGracePeriod).
func (s *Service) RotateToken(ctx context.Context, id string, grace time.Duration, by Actor) (Created, error) {
	if grace < 0 || grace > MaxGracePeriod {
		return Created{}, invalid("invalid_request", "grace_period must be between 0 and %d seconds", int(MaxGracePeriod.Seconds()))
	}
	cur, err := s.store.GetToken(ctx, id)
	if err != nil {
		return Created{}, err
	}
	if !cur.Live(s.cfg.Now()) {
		return Created{}, invalid("invalid_request", "token %s is revoked or expired and cannot be rotated", id)
	}
	api, err := s.apiOf(ctx, cur.APIID)
	if err != nil {
		return Created{}, fmt.Errorf("tokens: api of token %s: %w", id, err)
	}
	secret, err := tokenfmt.Generate(api.KeyPrefix)
	if err != nil {
		return Created{}, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	graceUntil := now.Add(grace)
	hint := tokenfmt.Hint(secret)
	tok, changed, err := s.store.RotateToken(ctx, id, tokenfmt.HashOf(secret), hint, graceUntil, now,
		s.event(by, "token.rotate", id, map[string]any{"grace_period_seconds": int64(grace.Seconds()), "hint": hint}))
	if err != nil {
		return Created{}, err
	}
	s.cache.invalidate(changed...)
	out := Created{Token: tok, Secret: secret}
	if grace > 0 {
		out.PreviousExpiresAt = graceUntil
	}
	return out, nil
}

// Usage returns a token's hourly usage in [from, to), including what this
// node has counted but not yet flushed.
func (s *Service) Usage(ctx context.Context, id string, from, to time.Time) ([]store.UsageHour, error) {
	if err := s.FlushUsage(ctx); err != nil {
		return nil, err
	}
	return s.store.Usage(ctx, id, from, to)
}

// IssueAdminToken creates a token with the admin scope on the built-in API
// (used by first start and by "jeton admin bootstrap").
func (s *Service) IssueAdminToken(ctx context.Context, name string) (Created, error) {
	if _, _, err := s.EnsureBuiltinAPI(ctx); err != nil {
		return Created{}, err
	}
	scopes := []string{ScopeAdmin}
	return s.CreateToken(ctx, CreateParams{API: BuiltinAPIName, Settings: Settings{Name: &name, Scopes: scopes}}, Actor{ID: "bootstrap"})
}

// CallerAPIs returns the APIs whose tokens a caller with scopes may verify:
// nil for all (admin or verify), the listed ones for verify:<id> scopes, and
// ok=false if the caller may verify nothing.
func CallerAPIs(scopes []string) (apis []string, ok bool) {
	for _, sc := range scopes {
		if sc == ScopeAdmin || sc == ScopeVerify {
			return nil, true
		}
	}
	for _, sc := range scopes {
		if id, found := strings.CutPrefix(sc, ScopeVerifyAPIPrefix); found {
			apis = append(apis, id)
		}
	}
	return apis, len(apis) > 0
}

// ContainsAPI reports whether apis lists id.
func ContainsAPI(apis []string, id string) bool { return contains(apis, id) }
