package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// secondsField converts the duration field, given in seconds, to a
// time.Duration. A value beyond ±maxTTLSeconds (100 years) is
// invalid_request: converted as it is, a huge value overflowed and wrapped
// around to a small or negative duration (an expires_in of 584 billion
// years made a key that expired in 0.3 s). The service checks each
// field's real bounds.
func secondsField(field string, n int64) (time.Duration, error) {
	if n > maxTTLSeconds || n < -maxTTLSeconds {
		return 0, errorf(http.StatusBadRequest, "invalid_request", "%s must be at most %d seconds (100 years)", field, maxTTLSeconds)
	}
	return seconds(n), nil
}

// optional distinguishes an absent JSON field from an explicit null.
type optional[T any] struct {
	Set   bool
	Value *T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		return nil
	}
	o.Value = new(T)
	return decodeElem(b, o.Value)
}

// jsonElem tells checkJSON that the JSON of an optional[T] is that of T.
func (*optional[T]) jsonElem() reflect.Type { return reflect.TypeFor[T]() }

func (a *API) createAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Name       string   `json:"name"`
		Identifier string   `json:"identifier"`
		Scopes     []string `json:"scopes"`
		// ScopeDescriptions: scope → what it allows, in words.
		ScopeDescriptions map[string]string `json:"scope_descriptions"`
		KeyPrefix         string            `json:"key_prefix"`
		DefaultTTL        int64             `json:"default_ttl"`
		MaxTTL            int64             `json:"max_ttl"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	defTTL, err := secondsField("default_ttl", req.DefaultTTL)
	if err != nil {
		return err
	}
	maxTTL, err := secondsField("max_ttl", req.MaxTTL)
	if err != nil {
		return err
	}
	api, err := a.tokens.CreateAPI(r.Context(), tokens.APIParams{Name: req.Name, Identifier: req.Identifier, Scopes: req.Scopes,
		ScopeDescriptions: req.ScopeDescriptions, KeyPrefix: req.KeyPrefix, DefaultTTL: defTTL, MaxTTL: maxTTL}, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPIJSON(&api))
}

func (a *API) listAPIs(w http.ResponseWriter, r *http.Request, c *caller) error {
	list, err := a.tokens.ListAPIs(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiJSON, 0, len(list))
	for i := range list {
		out = append(out, toAPIJSON(&list[i]))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"apis": out})
}

func (a *API) getAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	api, err := a.tokens.ResolveAPI(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIJSON(api))
}

func (a *API) updateAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Name      *string  `json:"name"`
		AddScopes []string `json:"add_scopes"`
		// ScopeDescriptions sets the descriptions it names; "" removes one.
		ScopeDescriptions map[string]string `json:"scope_descriptions"`
		DefaultTTL        *int64            `json:"default_ttl"`
		MaxTTL            *int64            `json:"max_ttl"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	u := tokens.APIUpdate{Name: req.Name, AddScopes: req.AddScopes, ScopeDescriptions: req.ScopeDescriptions}
	if req.DefaultTTL != nil {
		d, err := secondsField("default_ttl", *req.DefaultTTL)
		if err != nil {
			return err
		}
		u.DefaultTTL = &d
	}
	if req.MaxTTL != nil {
		d, err := secondsField("max_ttl", *req.MaxTTL)
		if err != nil {
			return err
		}
		u.MaxTTL = &d
	}
	api, err := a.tokens.ResolveAPI(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	upd, err := a.tokens.UpdateAPI(r.Context(), api.ID, u, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIJSON(&upd))
}

func (a *API) deleteAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	api, err := a.tokens.ResolveAPI(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.tokens.DeleteAPI(r.Context(), api.ID, force, c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "invalid_request", "query parameter %s must be true or false", name)
	}
	return b, nil
}

// settingsJSON is the body shared by token create and update.
type settingsJSON struct {
	Name         *string                 `json:"name"`
	Subject      *string                 `json:"subject"`
	Scopes       []string                `json:"scopes"`
	Metadata     json.RawMessage         `json:"metadata"`
	AllowedCIDRs []string                `json:"allowed_cidrs"`
	RateLimit    optional[rateLimitJSON] `json:"rate_limit"`
	Quota        optional[quotaJSON]     `json:"quota"`
}

func (s *settingsJSON) settings() (tokens.Settings, error) {
	out := tokens.Settings{Name: s.Name, Subject: s.Subject, Scopes: s.Scopes, Metadata: s.Metadata, AllowedCIDRs: s.AllowedCIDRs}
	if s.RateLimit.Set {
		var rl *store.RateLimit
		if v := s.RateLimit.Value; v != nil {
			if v.Limit <= 0 || v.Window <= 0 {
				return out, errorf(http.StatusBadRequest, "invalid_limit", "rate_limit needs a positive limit and window (seconds)")
			}
			w, err := secondsField("rate_limit.window", v.Window)
			if err != nil {
				return out, err
			}
			rl = &store.RateLimit{Limit: v.Limit, Window: w}
		}
		out.RateLimit = &rl
	}
	if s.Quota.Set {
		var q *store.Quota
		if v := s.Quota.Value; v != nil {
			q = &store.Quota{Remaining: v.Remaining}
			if v.Refill != nil {
				q.RefillAmount, q.RefillInterval = v.Refill.Amount, v.Refill.Interval
				if q.RefillInterval == "" {
					return out, errorf(http.StatusBadRequest, "invalid_limit", "quota refill interval must be daily or monthly")
				}
			}
		}
		out.Quota = &q
	}
	return out, nil
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		API       string     `json:"api"`
		ExpiresIn int64      `json:"expires_in"`
		ExpiresAt *time.Time `json:"expires_at"`
		settingsJSON
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.API == "" {
		return errorf(http.StatusBadRequest, "invalid_request", "api is required")
	}
	set, err := req.settings()
	if err != nil {
		return err
	}
	expiresIn, err := secondsField("expires_in", req.ExpiresIn)
	if err != nil {
		return err
	}
	p := tokens.CreateParams{API: req.API, Settings: set, ExpiresIn: expiresIn}
	if req.ExpiresIn < 0 {
		p.ExpiresIn = -1
	}
	if req.ExpiresAt != nil {
		if req.ExpiresAt.IsZero() {
			// The zero time would read as "no expires_at" below.
			return errorf(http.StatusBadRequest, "invalid_expiry", "expires_at is in the past")
		}
		p.ExpiresAt = *req.ExpiresAt
	}
	created, err := a.tokens.CreateToken(r.Context(), p, c.actor())
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusBadRequest, "invalid_request", "api %q does not exist", req.API)
	}
	if err != nil {
		return err
	}
	out := toTokenJSON(&created.Token)
	out.Token = created.Secret
	return writeJSON(w, http.StatusCreated, out)
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	after, limit, err := pageQuery(r, ids.Token)
	if err != nil {
		return err
	}
	f := store.TokenFilter{Subject: q.Get("subject"), After: after, Limit: limit}
	if ref := q.Get("api"); ref != "" {
		api, err := a.tokens.ResolveAPI(r.Context(), ref)
		if err != nil {
			return err
		}
		f.APIID = api.ID
	}
	list, next, err := a.tokens.ListTokens(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]tokenJSON, 0, len(list))
	for i := range list {
		out = append(out, toTokenJSON(&list[i]))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"tokens": out, "next_cursor": next})
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	t, err := a.tokens.GetToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toTokenJSON(&t))
}

func (a *API) updateToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req settingsJSON
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	set, err := req.settings()
	if err != nil {
		return err
	}
	t, err := a.tokens.UpdateToken(r.Context(), r.PathValue("id"), set, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toTokenJSON(&t))
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Reason == "" {
		req.Reason = r.URL.Query().Get("reason")
	}
	t, err := a.tokens.RevokeToken(r.Context(), r.PathValue("id"), req.Reason, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toTokenJSON(&t))
}

func (a *API) rotateToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		GracePeriod int64 `json:"grace_period"`
	}
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	grace, err := secondsField("grace_period", req.GracePeriod)
	if err != nil {
		return err
	}
	if req.GracePeriod < 0 || req.GracePeriod > int64(tokens.MaxGracePeriod/time.Second) {
		grace = -1
	}
	rotated, err := a.tokens.RotateToken(r.Context(), r.PathValue("id"), grace, c.actor())
	if err != nil {
		return err
	}
	out := toTokenJSON(&rotated.Token)
	out.Token = rotated.Secret
	out.PreviousExpiresAt = timePtr(rotated.PreviousExpiresAt)
	return writeJSON(w, http.StatusOK, out)
}

func timeQuery(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "invalid_request", "query parameter %s must be an RFC 3339 time", name)
	}
	return t, nil
}

func (a *API) tokenUsage(w http.ResponseWriter, r *http.Request, c *caller) error {
	now := a.cfg.Now()
	to, err := timeQuery(r, "to", now)
	if err != nil {
		return err
	}
	from, err := timeQuery(r, "from", to.Add(-24*time.Hour))
	if err != nil {
		return err
	}
	if !from.Before(to) || to.Sub(from) > 92*24*time.Hour {
		return errorf(http.StatusBadRequest, "invalid_request", "from must be before to, at most 92 days apart")
	}
	t, err := a.tokens.GetToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	hours, err := a.tokens.Usage(r.Context(), t.ID, from, to)
	if err != nil {
		return err
	}
	t, err = a.tokens.GetToken(r.Context(), t.ID) // after the flush: fresh totals
	if err != nil {
		return err
	}
	type hourJSON struct {
		Hour    time.Time `json:"hour"`
		Allowed int64     `json:"allowed"`
		Denied  int64     `json:"denied"`
	}
	out := make([]hourJSON, 0, len(hours))
	for _, h := range hours {
		out = append(out, hourJSON{h.Hour, h.Allowed, h.Denied})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"token_id": t.ID, "total_uses": t.UseCount,
		"last_used_at": timePtr(t.LastUsedAt), "last_used_ip": t.LastUsedIP, "hours": out})
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	f := store.AuditFilter{Action: q.Get("action"), Actor: q.Get("actor"), Target: q.Get("target")}
	var err error
	if f.From, err = timeQuery(r, "from", time.Time{}); err != nil {
		return err
	}
	if f.To, err = timeQuery(r, "to", time.Time{}); err != nil {
		return err
	}
	for name, dst := range map[string]*int64{"cursor": &f.Before} {
		if v := q.Get(name); v != "" {
			if *dst, err = strconv.ParseInt(v, 10, 64); err != nil || *dst < 0 {
				return errorf(http.StatusBadRequest, "invalid_request", "%s must be a non-negative number", name)
			}
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, "invalid_request", "limit must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	evs, next, err := a.store.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]auditJSON, 0, len(evs))
	for _, e := range evs {
		d := e.Details
		if d == nil {
			d = json.RawMessage("{}")
		}
		out = append(out, auditJSON{e.Seq, e.ID, e.Time, e.Actor, e.Action, e.Target, e.RemoteAddr, d, e.PrevHash, e.Hash})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": out, "next_cursor": next})
}

// resolveVerifyAPI turns the api named in a verify request into an id the
// caller may verify.
func (a *API) resolveVerifyAPI(r *http.Request, c *caller, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	api, err := a.tokens.ResolveAPI(r.Context(), ref)
	if errors.Is(err, store.ErrNotFound) {
		return "", errorf(http.StatusBadRequest, "invalid_request", "api %q does not exist", ref)
	}
	if err != nil {
		return "", err
	}
	if c.apis != nil && !tokens.ContainsAPI(c.apis, api.ID) {
		return "", errorf(http.StatusForbidden, "forbidden", "this token may not verify tokens of api %q", ref)
	}
	return api.ID, nil
}

func (a *API) verify(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req VerifyRequest
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuf(buf)
	body, err := readBody(w, r, buf)
	if err != nil {
		return err
	}
	if !decodeVerifyFast(body, &req) {
		if err := decodeBody(body, &req, false); err != nil {
			return err
		}
	}
	if req.Token == "" {
		return errorf(http.StatusBadRequest, "invalid_request", "token is required")
	}
	apiID, err := a.resolveVerifyAPI(r, c, req.API)
	if err != nil {
		return err
	}
	ip := c.ip
	switch req.ClientIP {
	case "":
	case ClientIPUnknown:
		// The resource server cannot tell (a Unix socket): no address
		// satisfies a token's allowed_cidrs, rather than the caller's.
		ip = netip.Addr{}
	default:
		// The resource server says who presented the token: a caller
		// with the verify scope is trusted to, as it is to enforce the
		// answer. Its own credential was checked against its own address.
		addr, err := netip.ParseAddr(req.ClientIP)
		if err != nil || addr.Zone() != "" {
			return errorf(http.StatusBadRequest, "invalid_request", "client_ip must be an IPv4 or IPv6 address, or %q", ClientIPUnknown)
		}
		ip = addr.Unmap()
	}
	res, err := a.tokens.Verify(r.Context(), &tokens.Request{Token: req.Token, APIID: apiID, Scopes: req.Scopes,
		ClientIP: ip, AllowedAPIs: c.apis})
	if err != nil {
		return err
	}
	if d := res.RateLimit; d != nil && !d.Allowed {
		w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(d.RetryAfter), 10))
	}
	var out [1024]byte // most answers fit; large metadata grows onto the heap
	return writeRaw(w, http.StatusOK, appendVerifyResponse(out[:0], &res))
}
