// Package users manages local accounts: creation and changes by the admin
// API, and password login (for the login page) with argon2id hashes and
// in-memory throttling of failed attempts per username and per client
// address.
package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/password"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/throttle"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Errors of Authenticate.
var (
	// ErrBadCredentials is returned for a wrong password, and also for an
	// unknown or disabled user, so that a caller cannot tell them apart.
	ErrBadCredentials = errors.New("users: wrong username or password")
	// ErrThrottled is returned, without checking the password, while the
	// username or the client address has too many recent failed logins.
	ErrThrottled = errors.New("users: too many failed logins; try again later")
)

// Limits on what a user record may hold.
const (
	MaxUsernameLen = 64
	MaxEmailLen    = 254
	MinPasswordLen = 8
	MaxPasswordLen = password.MaxLen
)

// Reasons recorded in "user.login_failure" audit events.
const (
	ReasonUnknownUser   = "unknown_user"
	ReasonWrongPassword = "wrong_password"
	ReasonDisabled      = "disabled"
	ReasonThrottled     = "throttled"
)

// Throttled attempts are audited at most perAddressAudits times per address
// and globalAudits times in all per auditPeriod.
const (
	auditPeriod      = time.Minute
	perAddressAudits = 10
	globalAudits     = 600
)

// Revoke reasons of the grants revoked when a user is disabled or their
// password is reset.
const (
	RevokeUserDisabled  = "user_disabled"
	RevokePasswordReset = "password_reset"
)

// Config configures a Service. Zero values are replaced by the documented
// defaults.
type Config struct {
	Store  store.Store      // required
	Hasher *password.Hasher // default: password.NewHasher(password.DefaultParams, 0)
	// Evict drops cached verification results on this node
	// (tokens.Service.Evict); may be nil.
	Evict  func(hashes ...tokenfmt.Hash)
	Now    func() time.Time // default: time.Now
	Logger *slog.Logger     // default: slog.Default()

	UserFailures    int           // failed logins per username per window before throttling; default 5
	AddressFailures int           // failed logins per client address (IPv6: per /64) per window; default 20
	FailureWindow   time.Duration // default 15m
}

func (c Config) withDefaults() Config {
	if c.Hasher == nil {
		c.Hasher = password.NewHasher(password.DefaultParams, 0)
	}
	if c.Evict == nil {
		c.Evict = func(...tokenfmt.Hash) {}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.UserFailures <= 0 {
		c.UserFailures = 5
	}
	if c.AddressFailures <= 0 {
		c.AddressFailures = 20
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = 15 * time.Minute
	}
	return c
}

// Service creates, changes and authenticates users. It is safe for
// concurrent use. The users it returns never carry PasswordHash.
type Service struct {
	cfg      Config
	store    store.Store
	throttle *throttle.Throttle
	audits   *throttle.AuditBudget
}

// New returns a Service. Failure counters live in memory, per node.
func New(cfg Config) *Service {
	cfg = cfg.withDefaults()
	return &Service{
		cfg:      cfg,
		store:    cfg.Store,
		throttle: throttle.New(cfg.UserFailures, cfg.AddressFailures, cfg.FailureWindow),
		audits:   throttle.NewAuditBudget(perAddressAudits, globalAudits, auditPeriod),
	}
}

func invalid(code, format string, args ...any) error {
	return &tokens.InvalidError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// normalizeUsername returns the stored form of a username: lower-case.
// It reports whether the username is valid: 1-64 letters, digits, '.',
// '_', '-' or '@', and not shaped like a user id.
func normalizeUsername(s string) (string, bool) {
	if s == "" || len(s) > MaxUsernameLen {
		return "", false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return "", false
		}
	}
	s = strings.ToLower(s)
	if ids.Valid(ids.User, s) {
		return "", false
	}
	return s, true
}

func validUsername(s string) (string, error) {
	name, ok := normalizeUsername(s)
	if !ok {
		return "", invalid("invalid_request", "username must be 1-%d letters, digits, '.', '_', '-' or '@', and not look like a user id", MaxUsernameLen)
	}
	return name, nil
}

func validEmail(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxEmailLen {
		return invalid("invalid_request", "email must be at most %d characters", MaxEmailLen)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return invalid("invalid_request", "email must be a plain address such as alice@example.com")
	}
	return nil
}

func validPassword(s string) error {
	if len(s) < MinPasswordLen || len(s) > MaxPasswordLen {
		return invalid("invalid_password", "password must be %d-%d bytes", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// event builds an audit event. Details never hold a password or its hash.
func (s *Service) event(actor, remoteAddr, action, target string, details any) store.AuditEvent {
	if actor == "" {
		actor = "anonymous"
	}
	ev := store.AuditEvent{Time: s.cfg.Now(), Actor: actor, Action: action, Target: target, RemoteAddr: remoteAddr}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			ev.Details = b
		}
	}
	return ev
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Millisecond) }

// public strips what must never leave the service.
func public(u store.User) store.User {
	u.PasswordHash = ""
	return u
}

// CreateParams are the properties of a new user.
type CreateParams struct {
	Username string // stored lower-case
	Email    string // optional
	Password string
}

// Create validates and stores a new user. A taken username is
// store.ErrAlreadyExists.
func (s *Service) Create(ctx context.Context, p CreateParams, by tokens.Actor) (store.User, error) {
	name, err := validUsername(p.Username)
	if err != nil {
		return store.User{}, err
	}
	if err := validEmail(p.Email); err != nil {
		return store.User{}, err
	}
	if err := validPassword(p.Password); err != nil {
		return store.User{}, err
	}
	hash, err := s.cfg.Hasher.Hash(ctx, p.Password)
	if err != nil {
		return store.User{}, fmt.Errorf("users: create: %w", err)
	}
	now := s.now()
	u := store.User{ID: ids.New(ids.User, now), Username: name, Email: p.Email, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	ev := s.event(by.ID, by.RemoteAddr, "user.create", u.ID, map[string]any{"username": u.Username, "email": u.Email})
	if err := s.store.CreateUser(ctx, u, ev); err != nil {
		return store.User{}, err
	}
	return public(u), nil
}

// Get returns a user by id.
func (s *Service) Get(ctx context.Context, id string) (store.User, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return store.User{}, err
	}
	return public(u), nil
}

// List returns one page of users, newest first, and the cursor of the next
// page ("" on the last page).
func (s *Service) List(ctx context.Context, after string, limit int) ([]store.User, string, error) {
	list, next, err := s.store.ListUsers(ctx, after, limit)
	if err != nil {
		return nil, "", err
	}
	for i := range list {
		list[i] = public(list[i])
	}
	return list, next, nil
}

// UpdateParams are the optional changes to a user; nil fields stay as they
// are.
type UpdateParams struct {
	Email    *string
	Disabled *bool
	Password *string // a password reset
}

// Update applies p to the user with the given id. Disabling the user or
// resetting their password also ends every session the user has (see
// [Service.EndSessions]) and revokes every grant the user gave (and the
// access tokens issued from them), so that no browser and no client keeps
// acting for them.
func (s *Service) Update(ctx context.Context, id string, p UpdateParams, by tokens.Actor) (store.User, error) {
	if p.Email == nil && p.Disabled == nil && p.Password == nil {
		return s.Get(ctx, id)
	}
	details := map[string]any{}
	if p.Email != nil {
		if err := validEmail(*p.Email); err != nil {
			return store.User{}, err
		}
		details["email"] = *p.Email
	}
	if p.Disabled != nil {
		details["disabled"] = *p.Disabled
	}
	var hash string
	if p.Password != nil {
		if err := validPassword(*p.Password); err != nil {
			return store.User{}, err
		}
		// Hash before the transaction: it must not hold a write lock for
		// the time of a hash.
		var err error
		if hash, err = s.cfg.Hasher.Hash(ctx, *p.Password); err != nil {
			return store.User{}, fmt.Errorf("users: update: %w", err)
		}
		details["password_reset"] = true
	}
	now := s.now()
	change := func(u *store.User) error {
		if p.Email != nil {
			u.Email = *p.Email
		}
		if p.Disabled != nil {
			switch {
			case !*p.Disabled:
				u.DisabledAt = time.Time{}
			case u.DisabledAt.IsZero():
				u.DisabledAt = now
			}
		}
		if p.Password != nil {
			u.PasswordHash = hash
		}
		if p.Password != nil || (p.Disabled != nil && *p.Disabled) {
			endSessions(u, now)
		}
		u.UpdatedAt = now
		return nil
	}
	ev := s.event(by.ID, by.RemoteAddr, "user.update", id, details)
	reason := ""
	switch {
	case p.Disabled != nil && *p.Disabled:
		reason = RevokeUserDisabled
	case p.Password != nil:
		reason = RevokePasswordReset
	}
	if reason == "" {
		u, err := s.store.UpdateUser(ctx, id, change, ev)
		if err != nil {
			return store.User{}, err
		}
		return public(u), nil
	}
	// The grants go in the same transaction: a user stored as disabled,
	// or with a new password, never keeps a grant that still refreshes.
	u, hashes, err := s.store.UpdateUserRevokingGrants(ctx, id, change, ev, reason, func(g store.Grant) store.AuditEvent {
		return s.event(by.ID, by.RemoteAddr, "grant.revoke", g.ID, map[string]any{"reason": reason, "user_id": id, "client_id": g.ClientID})
	})
	if err != nil {
		return store.User{}, err
	}
	s.cfg.Evict(hashes...)
	return public(u), nil
}

// EndSessions signs the user out of every browser ("sign out everywhere"):
// each session begun up to now is no longer valid, and the user must sign
// in again to authorize a client, with prompt=none or not. Grants given
// before, and the tokens issued from them, are not affected.
func (s *Service) EndSessions(ctx context.Context, id string, by tokens.Actor) error {
	now := s.now()
	_, err := s.store.UpdateUser(ctx, id, func(u *store.User) error {
		endSessions(u, now)
		u.UpdatedAt = now
		return nil
	}, s.event(by.ID, by.RemoteAddr, "user.end_sessions", id, nil))
	return err
}

// SessionValid reports whether a browser session of u begun at start (the
// time its user began to sign in) is still valid: u is enabled, and no
// password reset, disable or [Service.EndSessions] came at or after start.
func SessionValid(u store.User, start time.Time) bool {
	return u.DisabledAt.IsZero() && start.After(u.SessionsEndedAt)
}

// SessionGeneration is the generation of u's browser sessions
// (web.Session.Generation): a session is valid only while it is the one
// it began in. Every password reset, disable and [Service.EndSessions]
// moves it on, since each moves SessionsEndedAt forward. This closes what
// SessionValid's time check cannot: a sign-in that read the user, and
// checked the old password, while a reset was being written began after
// the reset's SessionsEndedAt, which is stamped before the reset commits,
// but it carries the generation it read.
func SessionGeneration(u store.User) uint64 {
	return uint64(u.SessionsEndedAt.UnixMilli())
}

// endSessions ends every session of u begun at or before now, and moves
// the session generation on even when the last end was in the same
// millisecond.
func endSessions(u *store.User, now time.Time) {
	if !now.After(u.SessionsEndedAt) {
		now = u.SessionsEndedAt.Add(time.Millisecond)
	}
	u.SessionsEndedAt = now
}

// Delete deletes a user with their consents, grants and the access tokens
// issued from those grants.
func (s *Service) Delete(ctx context.Context, id string, by tokens.Actor) error {
	hashes, err := s.store.DeleteUser(ctx, id, s.event(by.ID, by.RemoteAddr, "user.delete", id, nil))
	if err != nil {
		return err
	}
	s.cfg.Evict(hashes...)
	return nil
}

// Consents returns what the user allowed clients, by client and API.
func (s *Service) Consents(ctx context.Context, userID string) ([]store.Consent, error) {
	if _, err := s.store.GetUser(ctx, userID); err != nil {
		return nil, err
	}
	return s.store.ListConsents(ctx, userID)
}

// RevokeConsent forgets what the user allowed a client, for every API, and
// revokes every grant the user gave it. It is store.ErrNotFound when there
// is nothing to revoke.
func (s *Service) RevokeConsent(ctx context.Context, userID, clientID string, by tokens.Actor) error {
	ev := s.event(by.ID, by.RemoteAddr, "consent.revoke", userID, map[string]any{"client_id": clientID})
	hashes, err := s.store.DeleteConsent(ctx, userID, clientID, s.cfg.Now(), ev)
	if err != nil {
		return err
	}
	s.cfg.Evict(hashes...)
	return nil
}

// Authenticate checks a username and password presented from client
// address ip (the zero Addr if unknown). It returns the user (without
// PasswordHash) on success, ErrBadCredentials for a wrong password or an
// unknown or disabled user, and ErrThrottled, without checking anything,
// while the username or the address has too many recent failures. Every
// outcome is audited, throttled attempts only up to a bound per minute.
//
// Unknown usernames cost one hash too, so that the time of a failure does
// not reveal whether the username exists. A hash made with other parameters
// than the Hasher's is replaced on success.
func (s *Service) Authenticate(ctx context.Context, username, pw string, ip netip.Addr) (store.User, error) {
	now := s.cfg.Now()
	typed := tokens.TruncateUTF8(username, MaxUsernameLen)
	key := strings.ToLower(tokens.TruncateUTF8(username, MaxUsernameLen+1))
	remote := ""
	if ip.IsValid() {
		remote = ip.String()
	}
	attempt, ok := s.throttle.Begin(key, ip, now)
	if !ok {
		if suppressed, ok := s.audits.Take(ip, now); ok {
			details := map[string]any{"username": typed, "reason": ReasonThrottled}
			if suppressed > 0 {
				details["suppressed"] = suppressed // throttled attempts not audited before this one
			}
			s.appendAudit(ctx, s.event("anonymous", remote, "user.login_failure", "", details))
		}
		return store.User{}, ErrThrottled
	}
	u, reason, rehash, err := s.check(ctx, key, pw)
	if err != nil {
		s.throttle.Undo(attempt)
		return store.User{}, err
	}
	if reason != "" {
		s.appendAudit(ctx, s.event("anonymous", remote, "user.login_failure", u.ID, map[string]any{"username": typed, "reason": reason}))
		return store.User{}, ErrBadCredentials
	}
	s.throttle.Succeed(attempt)
	details := map[string]any{"username": u.Username}
	if rehash && s.rehash(ctx, u, pw) {
		details["rehashed"] = true
	}
	if err := s.store.AppendAudit(ctx, s.event(u.ID, remote, "user.login", u.ID, details)); err != nil {
		return store.User{}, fmt.Errorf("users: audit login: %w", err)
	}
	return public(u), nil
}

// check looks the user up and verifies the password. A failure has a
// reason (and, if the user exists, the user); err is only for failures to
// decide (store unreachable, ctx done).
func (s *Service) check(ctx context.Context, key, pw string) (u store.User, reason string, rehash bool, err error) {
	name, valid := normalizeUsername(key)
	if valid {
		u, err = s.store.GetUserByUsername(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			valid, err = false, nil
		}
		if err != nil {
			return store.User{}, "", false, fmt.Errorf("users: authenticate: %w", err)
		}
	}
	if len(pw) > MaxPasswordLen {
		// Refused without hashing, whether or not the user exists.
		if !valid {
			return store.User{}, ReasonUnknownUser, false, nil
		}
		return u, ReasonWrongPassword, false, nil
	}
	if !valid {
		s.cfg.Hasher.Dummy(ctx, pw)
		if err := ctx.Err(); err != nil {
			return store.User{}, "", false, fmt.Errorf("users: authenticate: %w", err)
		}
		return store.User{}, ReasonUnknownUser, false, nil
	}
	ok, rehash, err := s.cfg.Hasher.Verify(ctx, u.PasswordHash, pw)
	if errors.Is(err, password.ErrMalformed) {
		s.cfg.Logger.Error("users: stored password hash is malformed; reset the password", "user_id", u.ID)
		return u, ReasonWrongPassword, false, nil
	}
	if err != nil {
		return store.User{}, "", false, fmt.Errorf("users: authenticate: %w", err)
	}
	switch {
	case !ok:
		return u, ReasonWrongPassword, false, nil
	case !u.DisabledAt.IsZero():
		return u, ReasonDisabled, false, nil
	}
	return u, "", rehash, nil
}

// rehash replaces the stored hash of u with one made with the Hasher's
// parameters, unless the password changed meanwhile. It reports whether it
// did; a failure is logged, not returned: the login itself succeeded.
func (s *Service) rehash(ctx context.Context, u store.User, pw string) bool {
	hash, err := s.cfg.Hasher.Hash(ctx, pw)
	if err != nil {
		s.cfg.Logger.Warn("users: rehash password", "user_id", u.ID, "err", err)
		return false
	}
	done := false
	_, err = s.store.UpdateUser(ctx, u.ID, func(cur *store.User) error {
		if cur.PasswordHash == u.PasswordHash {
			cur.PasswordHash, done = hash, true
		}
		return nil
	}, store.AuditEvent{}) // recorded in the login's event
	if err != nil {
		s.cfg.Logger.Warn("users: rehash password", "user_id", u.ID, "err", err)
		return false
	}
	return done
}

// appendAudit records an event of a failed login. A failure to record it is
// logged: the caller's answer (a refusal) does not depend on it.
func (s *Service) appendAudit(ctx context.Context, ev store.AuditEvent) {
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		s.cfg.Logger.Error("users: audit failed login", "action", ev.Action, "err", err)
	}
}
