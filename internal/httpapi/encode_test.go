package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ratelimit"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// reference encodes what the hand-written encoders must reproduce exactly.
func referenceVerify(res *tokens.Result) string {
	out := verifyResponse{Valid: res.Code == tokens.Valid, Code: res.Code.String()}
	if t := res.Token; t != nil {
		out.Token = &verifyTokenJSON{ID: t.ID, API: t.APIID, Subject: t.Subject, Scopes: t.Scopes, ExpiresAt: timePtr(res.ExpiresAt), Metadata: t.Metadata}
		if out.Token.Metadata == nil {
			out.Token.Metadata = json.RawMessage("{}")
		}
		if out.Token.Scopes == nil {
			out.Token.Scopes = []string{}
		}
	}
	if d := res.RateLimit; d != nil {
		out.RateLimit = &verifyRateJSON{Limit: d.Limit, Remaining: d.Remaining, Reset: ceilSeconds(d.Reset)}
	}
	if res.HasQuota {
		out.Quota = &verifyQuotaJSON{Remaining: res.Quota}
	}
	b, _ := json.Marshal(out)
	return string(b) + "\n"
}

func referenceIntrospection(t *store.Token, aud string) string {
	m := map[string]any{"active": true, "scope": strings.Join(t.Scopes, " "), "sub": t.Subject, "iat": t.CreatedAt.Unix(), "jti": t.ID, "token_type": "api_key"}
	if aud != "" {
		m["aud"] = aud
	}
	if !t.ExpiresAt.IsZero() {
		m["exp"] = t.ExpiresAt.Unix()
	}
	if t.ClientID != "" {
		m["client_id"], m["token_type"] = t.ClientID, "Bearer"
	}
	b, _ := json.Marshal(m)
	return string(b) + "\n"
}

func checkEncodings(t *testing.T, subject, scope string) {
	t.Helper()
	tok := &store.Token{ID: "tok_1", APIID: "api_1", Subject: subject, Scopes: []string{scope, "b"},
		CreatedAt: time.Unix(1700000000, 0).UTC(), ExpiresAt: time.Date(2027, 1, 2, 3, 4, 5, 6_000_000, time.UTC),
		Metadata: json.RawMessage(`{"a":[1,"x"]}`)}
	for _, res := range []tokens.Result{
		{Code: tokens.Valid, Token: tok, ExpiresAt: tok.ExpiresAt, RateLimit: &ratelimit.Decision{Allowed: true, Limit: 10, Remaining: 3, Reset: 1500 * time.Millisecond}, Quota: 7, HasQuota: true},
		{Code: tokens.Valid, Token: tok, ExpiresAt: tok.ExpiresAt.Add(-time.Hour)}, // a rotated-out secret's grace end
		{Code: tokens.Revoked},
		{Code: tokens.InsufficientScope, Token: &store.Token{ID: "tok_2", Subject: subject}},
	} {
		if got, want := string(appendVerifyResponse(nil, &res)), referenceVerify(&res); got != want {
			t.Fatalf("verify encoding\n got %s\nwant %s", got, want)
		}
	}
	if got, want := string(appendIntrospection(nil, tok, tok.ExpiresAt, subject)), referenceIntrospection(tok, subject); got != want {
		t.Fatalf("introspection encoding\n got %s\nwant %s", got, want)
	}
	access := *tok
	access.ClientID = subject + "cli"
	if got, want := string(appendIntrospection(nil, &access, access.ExpiresAt, subject)), referenceIntrospection(&access, subject); got != want {
		t.Fatalf("access token introspection encoding\n got %s\nwant %s", got, want)
	}
}

func TestHandEncodingMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `q"uo\te`, "<script>&", "tab\tnl\ncr\r\x00\x1f", "é中文🙂", "\xff\xfe bad utf8", "\u2028\u2029"} {
		checkEncodings(t, s, "repos:read")
	}
}

func FuzzHandEncoding(f *testing.F) {
	f.Add("cus_1", "read")
	f.Add("\x00<>&\"\\", "a")
	f.Fuzz(func(t *testing.T, subject, scope string) {
		checkEncodings(t, subject, scope)
	})
}
