package oauth

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/throttle"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/web"
)

// userCodeAlphabet has no vowels (no words) and no look-alike characters
// (RFC 8628 §6.1); 20^8 codes is about 34 bits.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

const userCodeLen = 8

// newUserCode returns a random user code, without its separator.
func newUserCode() string {
	var b [userCodeLen]byte
	var r [1]byte
	for i := 0; i < len(b); {
		rand.Read(r[:])
		if r[0] >= 240 { // 240 = 12*20: reject to keep the choice uniform
			continue
		}
		b[i] = userCodeAlphabet[r[0]%20]
		i++
	}
	return string(b[:])
}

// normalizeUserCode upper-cases a typed user code and drops separators and
// spaces; it reports false if what is left cannot be a user code.
func normalizeUserCode(s string) (string, bool) {
	if len(s) > 32 {
		return "", false
	}
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		if c == '-' || c == ' ' {
			continue
		}
		if !strings.ContainsRune(userCodeAlphabet, c) {
			return "", false
		}
		b.WriteRune(c)
	}
	return b.String(), b.Len() == userCodeLen
}

func formatUserCode(c string) string { return c[:4] + "-" + c[4:] }

// DeviceAuthorizationResponse is the answer of the device authorization
// endpoint (RFC 8628 §3.2).
type DeviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// DeviceAuthorization serves POST /oauth2/device_authorization (RFC 8628
// §3.1).
func (s *Server) DeviceAuthorization() http.Handler { return s.serve(s.deviceAuthorization) }

func (s *Server) deviceAuthorization(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	e, err := s.authenticateClient(ctx, r, f)
	if err != nil {
		return err
	}
	c := &e.client
	if !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		return oerr(http.StatusBadRequest, errUnauthorizedClient, "the client may not use the device flow")
	}
	api, err := s.selectAPI(ctx, c, f)
	if err != nil {
		return err
	}
	scopes, err := selectScopes(c, api, f.get("scope"), true)
	if err != nil {
		return err
	}
	deviceCode, err := tokenfmt.Generate(tokenfmt.PrefixDeviceCode)
	if err != nil {
		return err
	}
	now := s.now()
	d := store.DeviceCode{Hash: tokenfmt.HashOf(deviceCode), ClientID: c.ID, APIID: api.ID, Scopes: scopes,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.DeviceCodeTTL), Interval: s.cfg.DeviceInterval, Status: store.DevicePending}
	for attempt := 0; ; attempt++ {
		d.UserCode = newUserCode()
		err = s.store.CreateDeviceCode(ctx, d)
		if !errors.Is(err, store.ErrAlreadyExists) || attempt == 4 {
			break
		}
	}
	if err != nil {
		return err
	}
	uc := formatUserCode(d.UserCode)
	return writeJSON(w, http.StatusOK, DeviceAuthorizationResponse{
		DeviceCode: deviceCode, UserCode: uc, VerificationURI: s.endpoints.device,
		VerificationURIComplete: s.endpoints.device + "?user_code=" + url.QueryEscape(uc),
		ExpiresIn:               int64(s.cfg.DeviceCodeTTL / time.Second), Interval: int64(s.cfg.DeviceInterval / time.Second),
	})
}

// slowDownStep is how much the polling interval grows on each slow_down
// (RFC 8628 §3.5).
const slowDownStep = 5 * time.Second

// tooSoon reports whether a poll at now, after one at last, comes too soon
// for interval. A client that polls on time, waiting the interval between
// sends or ticking at it as golang.org/x/oauth2 does, still reaches the
// server a little sooner than the interval now and then (scheduling and
// network delays vary: 999 ms for 1 s was seen); answering slow_down to
// that would add 5 s to every later wait of a well-behaved device. So only
// a poll sooner than four fifths of the interval is too soon.
func tooSoon(last, now time.Time, interval time.Duration) bool {
	return !last.IsZero() && now.Sub(last) < interval-interval/5
}

var errWrongClient = errors.New("oauth: device code of another client")

// deviceToken implements the device access token request (RFC 8628 §3.4,
// §3.5).
func (s *Server) deviceToken(ctx context.Context, c *store.Client, f form) (*TokenResponse, error) {
	dc := f.get("device_code")
	if dc == "" {
		return nil, badRequest("device_code is required")
	}
	if p, err := tokenfmt.Parse(dc); err != nil || p != tokenfmt.PrefixDeviceCode {
		return nil, invalidGrant("the device code is invalid")
	}
	requested, err := s.requestedAPI(ctx, c, f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var outcome string
	var grant *store.Grant
	d, err := s.store.UpdateDeviceCode(ctx, tokenfmt.HashOf(dc), "", func(d *store.DeviceCode) (*store.Grant, error) {
		if d.ClientID != c.ID {
			return nil, errWrongClient
		}
		if err := ofGrant(requested, d.APIID); err != nil {
			return nil, err // changes nothing
		}
		if !now.Before(d.ExpiresAt) {
			outcome = errExpiredToken
			return nil, nil
		}
		switch d.Status {
		case store.DevicePending:
			outcome = errAuthorizationPending
			if tooSoon(d.LastPolledAt, now, d.Interval) {
				outcome = errSlowDown
				d.Interval += slowDownStep
			}
			d.LastPolledAt = now
		case store.DeviceDenied:
			outcome = errAccessDenied
		case store.DeviceRedeemed:
			outcome = "reused"
		case store.DeviceApproved:
			outcome = "ok"
			grant = &store.Grant{ID: ids.New(ids.Grant, now), ClientID: c.ID, UserID: d.UserID, Subject: d.UserID,
				APIID: d.APIID, Scopes: d.Scopes, AuthTime: d.AuthTime, CreatedAt: now}
			d.Status, d.GrantID = store.DeviceRedeemed, grant.ID
			return grant, nil
		}
		return nil, nil
	}, store.AuditEvent{})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, errWrongClient) {
		return nil, invalidGrant("the device code is invalid")
	}
	if err != nil {
		return nil, err
	}
	switch outcome {
	case "ok":
		s.audit(ctx, s.event(tokens.Actor{ID: c.ID}, "grant.create", grant.ID, map[string]any{"client_id": c.ID, "user_id": grant.UserID, "via": "device_code"}))
		return s.issueForGrant(ctx, c, grant, "")
	case "reused":
		s.revokeGrant(ctx, d.GrantID, "device_code_reuse", tokens.Actor{ID: c.ID})
		return nil, invalidGrant("the device code was already used")
	case errAuthorizationPending:
		return nil, oerr(http.StatusBadRequest, errAuthorizationPending, "the user has not answered yet")
	case errSlowDown:
		return nil, oerr(http.StatusBadRequest, errSlowDown, "poll at most every %d seconds", int64(d.Interval/time.Second))
	case errAccessDenied:
		return nil, oerr(http.StatusBadRequest, errAccessDenied, "the user denied the request")
	default:
		return nil, oerr(http.StatusBadRequest, errExpiredToken, "the device code has expired")
	}
}

// Device serves GET and POST /device: the page where a signed-in user
// enters the code shown on their device and approves or denies it (RFC
// 8628 §3.3).
func (s *Server) Device() http.Handler {
	return s.pages.Protect(http.HandlerFunc(s.device))
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	f, err := parseForm(w, r)
	if err != nil {
		s.showError(w, err)
		return
	}
	ctx := r.Context()
	user, sess, ok := s.sessionUser(ctx, r)
	if !ok {
		rt := "/device"
		if uc := f.get("user_code"); uc != "" {
			rt += "?user_code=" + url.QueryEscape(truncate(uc, 32))
		}
		s.showLogin(w, r, rt, "", "", "", http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		s.pages.DeviceEntry(w, http.StatusOK, web.DeviceEntryPage{UserCode: truncate(f.get("user_code"), 32), Username: user.Username, CSRF: s.pages.CSRFToken(w, r)})
		return
	}
	if err := s.pages.CheckCSRF(r); err != nil {
		s.refuseForm(w)
		return
	}
	entryError := func(status int, msg string) {
		s.pages.DeviceEntry(w, status, web.DeviceEntryPage{UserCode: truncate(f.get("user_code"), 32), Username: user.Username, Error: msg, CSRF: s.pages.CSRFToken(w, r)})
	}
	// The code is looked up first; then, in one step with counting it if it
	// is wrong, the limits decide whether the answer may say which it was.
	ip := s.clientIP(r)
	tooMany := func() {
		entryError(http.StatusTooManyRequests, "Too many wrong codes. Wait a few minutes and try again.")
	}
	if !s.codeGuesses.Allowed(user.ID, ip, s.cfg.Now()) {
		tooMany() // spare the lookup
		return
	}
	code, valid := normalizeUserCode(f.get("user_code"))
	var d store.DeviceCode
	if valid {
		d, err = s.store.GetDeviceCodeByUserCode(ctx, code)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.showError(w, err)
			return
		}
	}
	now := s.now()
	if !valid || err != nil || d.Status != store.DevicePending || !now.Before(d.ExpiresAt) {
		if !s.codeGuesses.Fail(user.ID, ip, s.cfg.Now()) {
			tooMany()
			return
		}
		entryError(http.StatusBadRequest, "That code is not valid or has expired. Check the code on your device.")
		return
	}
	if !s.codeGuesses.Allowed(user.ID, ip, s.cfg.Now()) {
		tooMany() // past the limit, a right code is not told from a wrong one
		return
	}
	// The device's client and API are as they are now, not as when the
	// device asked: an approval is never given to a client an
	// administrator has disabled (it would hold once the client is enabled
	// again), nor for an API that is gone.
	e, err := s.client(ctx, d.ClientID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !e.client.DisabledAt.IsZero() {
		s.message(w, http.StatusBadRequest, "Application disabled", "The application that asked for this code is disabled or no longer registered.")
		return
	}
	if err != nil {
		s.showError(w, err)
		return
	}
	api, err := s.tokens.ResolveAPI(ctx, d.APIID)
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusBadRequest, "Request unavailable", "The service this code asks access to no longer exists.")
		return
	}
	if err != nil {
		s.showError(w, err)
		return
	}
	decision := f.get("decision")
	if decision == "" {
		s.pages.DeviceConfirm(w, http.StatusOK, web.DeviceConfirmPage{ClientName: e.client.Name, APIName: api.Name, Scopes: d.Scopes, ScopeDescriptions: scopeDescriptions(api),
			UserCode: formatUserCode(code), Username: user.Username, Action: "/device",
			Hidden: []web.Field{{Name: "user_code", Value: formatUserCode(code)}}, CSRF: s.pages.CSRFToken(w, r)})
		return
	}
	if decision != "allow" && decision != "deny" {
		s.message(w, http.StatusBadRequest, "Invalid request", "The form was not understood.")
		return
	}
	action := "device.approve"
	if decision == "deny" {
		action = "device.deny"
	}
	_, err = s.store.UpdateDeviceCode(ctx, tokenfmt.Hash{}, code, func(d *store.DeviceCode) (*store.Grant, error) {
		if d.Status != store.DevicePending || !now.Before(d.ExpiresAt) {
			return nil, store.ErrNotFound
		}
		d.Status = store.DeviceApproved
		if decision == "deny" {
			d.Status = store.DeviceDenied
		}
		d.UserID, d.AuthTime = user.ID, sess.AuthTime.UTC().Truncate(time.Millisecond)
		return nil, nil
	}, s.event(tokens.Actor{ID: user.ID, RemoteAddr: ip.String()}, action, e.client.ID, map[string]any{"api": api.ID, "scopes": d.Scopes}))
	if errors.Is(err, store.ErrNotFound) {
		entryError(http.StatusBadRequest, "That code is not valid or has expired. Check the code on your device.")
		return
	}
	if err != nil {
		s.showError(w, err)
		return
	}
	if decision == "deny" {
		s.message(w, http.StatusOK, "Request denied", "The device was not given access. You can close this window.")
		return
	}
	if err := s.putConsent(ctx, tokens.Actor{ID: user.ID, RemoteAddr: ip.String()}, e.client.ID, api.ID, d.Scopes); err != nil {
		// The approval stands; withdrawing the consent still ends it.
		s.showError(w, err)
		return
	}
	s.message(w, http.StatusOK, "Device connected", "You can return to your device; it will continue in a few seconds.")
}

// Wrong user codes are limited per user and per client address (IPv6:
// per /64), so that the 34-bit user codes cannot be guessed (RFC 8628
// §5.1). A right code does not count, however many are entered at once;
// past a limit every code is refused, right or wrong, so concurrent
// guesses learn nothing more than the limit allows.
const (
	wrongUserCodesPerUser    = 10
	wrongUserCodesPerAddress = 20
	userCodeWindow           = 15 * time.Minute
)

func newCodeGuesses() *throttle.Throttle {
	return throttle.New(wrongUserCodesPerUser, wrongUserCodesPerAddress, userCodeWindow)
}
