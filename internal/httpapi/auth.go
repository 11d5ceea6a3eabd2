package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"strings"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// caller is an authenticated client of the API.
type caller struct {
	token *store.Token
	ip    netip.Addr // the client's address, resolved once per request
	admin bool
	// apis whose tokens the caller may verify; nil means all.
	apis []string
}

// authedFunc is a handler that runs for an authenticated caller.
type authedFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

func (c *caller) actor() tokens.Actor {
	return tokens.Actor{ID: c.token.ID, RemoteAddr: c.ip.String()}
}

// bearer extracts the token from an RFC 6750 §2.1 Authorization header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > 4096 || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// need selects which callers a route admits.
type need int

const (
	needAdmin  need = iota // admin scope
	needVerify             // admin, verify or verify:<api id>
)

// authenticate is the one authentication check of the API: it verifies the
// bearer token as a token of the built-in jeton API, audits failures, and
// puts the caller in the request context.
func (a *API) authenticate(n need, next authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.authorize(r, n)
		if err != nil {
			return err
		}
		return next(w, r, c)
	}
}

// authorize checks r's bearer token for a route that needs n and returns
// the caller, or the error to answer with.
func (a *API) authorize(r *http.Request, n need) (*caller, error) {
	h := r.Header.Get("Authorization")
	tok, ok := bearer(h)
	if !ok {
		a.auditAuthFailure(r, "", "missing or malformed Authorization header")
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "send a Jeton admin token as 'Authorization: Bearer <token>'")
	}
	ip := a.clientIP(r)
	res, err := a.tokens.Verify(r.Context(), &tokens.Request{Token: tok, APIID: a.builtin, ClientIP: ip})
	if err != nil {
		return nil, err
	}
	switch res.Code {
	case tokens.Valid, tokens.InsufficientScope:
	case tokens.RateLimited, tokens.QuotaExceeded:
		e := errorf(http.StatusTooManyRequests, "rate_limited", "this admin token is over its rate limit or quota")
		if d := res.RateLimit; d != nil && !d.Allowed {
			// A spent quota waits for its refill, which is not known here.
			e.RetryAfter = d.RetryAfter
		}
		return nil, e
	default:
		var id string
		if res.Token != nil {
			id = res.Token.ID
		}
		a.auditAuthFailure(r, id, res.Code.String())
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "the token is not a valid Jeton admin token")
	}
	c := &caller{token: res.Token, ip: ip}
	for _, sc := range res.Token.Scopes {
		if sc == tokens.ScopeAdmin {
			c.admin = true
		}
	}
	apis, canVerify := tokens.CallerAPIs(res.Token.Scopes)
	c.apis = apis
	if (n == needAdmin && !c.admin) || (n == needVerify && !canVerify) {
		a.auditAuthFailure(r, res.Token.ID, "insufficient_scope")
		return nil, errorf(http.StatusForbidden, "forbidden", "this token lacks the scope for %s %s", r.Method, r.URL.Path)
	}
	return c, nil
}

// Failed authentications are audited at most authFailuresPerMinute times
// per address (IPv6: per /64) and authFailuresPerMinuteInAll times in all
// a minute; each entry says how many were not audited before it.
const (
	authFailuresPerMinute      = 10
	authFailuresPerMinuteInAll = 600
	// maxAuditedPath bounds the path recorded with a failure, in bytes.
	maxAuditedPath = 256
)

func (a *API) auditAuthFailure(r *http.Request, tokenID, reason string) {
	ip := a.clientIP(r)
	suppressed, ok := a.authLog.Take(ip, a.cfg.Now())
	if !ok {
		return
	}
	addr := ip.String()
	// The path is the client's to choose, up to the header limit: the
	// budget bounds how many entries there are, this how big each is.
	details := map[string]any{"reason": reason, "method": tokens.TruncateUTF8(r.Method, 16), "path": tokens.TruncateUTF8(r.URL.Path, maxAuditedPath)}
	if suppressed > 0 {
		details["suppressed"] = suppressed // failures not audited before this one
	}
	ev := store.AuditEvent{Time: a.cfg.Now(), Actor: "anonymous", Action: "auth.failure", Target: tokenID, RemoteAddr: addr}
	if tokenID != "" {
		ev.Actor = tokenID
	}
	ev.Details, _ = jsonMarshal(details)
	// Auditing must not block the answer; it has its own short deadline,
	// and Wait waits for it.
	a.background.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10_000_000_000)
		defer cancel()
		if err := a.store.AppendAudit(ctx, ev); err != nil {
			a.log.Error("audit auth failure", "err", err)
		}
	})
}
