package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/internal/tokens"
)

// badRequests runs bodies that must each be refused with a 4xx and the
// given code (any code when ""), and checks that none of them changed the
// store.
// badRequest is a request that must be refused with status and code.
type badRequest struct {
	name, method, path, body string
	status                   int
	code                     string
}

func badRequests(t *testing.T, e *env, tests []badRequest) {
	t.Helper()
	before := e.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := strings.ReplaceAll(tt.path, "KEYID", e.keyID)
			body := strings.ReplaceAll(tt.body, "KEY", e.key)
			token := e.admin
			if tt.path == "/v1/verify" {
				token = e.verify
			}
			resp, b := e.do(t, tt.method, path, token, body)
			var got struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &got)
			if resp.StatusCode != tt.status || (tt.code != "" && got.Error.Code != tt.code) || got.Error.Code == "" || got.Error.Message == "" {
				t.Errorf("%s: status %d code %q (%.200s), want %d %q", tt.body, resp.StatusCode, got.Error.Code, b, tt.status, tt.code)
			}
		})
	}
	if after := e.snapshot(t); after != before {
		t.Errorf("bad requests changed the store")
	}
}

// TestNestedUnknownFieldsAreRejected: unknown fields are refused inside
// rate_limit and quota too. A misspelt "refil" made a quota that never
// refills, answered 201 as if all was well.
func TestNestedUnknownFieldsAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	badRequests(t, e, []badRequest{
		{"misspelt refill on create", "POST", "/v1/tokens", `{"api":"acme","quota":{"remaining":5,"refil":{"amount":100,"interval":"daily"}}}`, 400, "unknown_field"},
		{"unknown rate_limit member on create", "POST", "/v1/tokens", `{"api":"acme","rate_limit":{"limit":5,"window":60,"burst":10}}`, 400, "unknown_field"},
		{"unknown refill member on update", "PATCH", "/v1/tokens/KEYID", `{"quota":{"remaining":5,"refill":{"amount":100,"interval":"daily","every":2}}}`, 400, "unknown_field"},
		{"unknown rate_limit member on update", "PATCH", "/v1/tokens/KEYID", `{"rate_limit":{"limit":5,"window":60,"windows":3600}}`, 400, "unknown_field"},
	})
}

// TestDuplicateAndCaseFoldedKeysAreRejected: a key given twice (or in
// another case, which encoding/json folds onto the field) is ambiguous
// input: it must be a 400, not silently "the last one wins".
func TestDuplicateAndCaseFoldedKeysAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	badRequests(t, e, []badRequest{
		{"duplicate name", "POST", "/v1/tokens", `{"api":"acme","name":"a","name":"b"}`, 400, ""},
		{"duplicate scopes on update", "PATCH", "/v1/tokens/KEYID", `{"scopes":["repos:read"],"scopes":["repos:read","repos:write"]}`, 400, ""},
		{"duplicate rate limit member", "POST", "/v1/tokens", `{"api":"acme","rate_limit":{"limit":5,"window":60,"limit":1000}}`, 400, ""},
		{"duplicate api in verify", "POST", "/v1/verify", `{"token":"KEY","api":"acme","api":"jeton"}`, 400, ""},
		{"token in another case in verify", "POST", "/v1/verify", `{"token":"KEY","TOKEN":"jtp_other"}`, 400, ""},
		{"api in another case", "POST", "/v1/tokens", `{"API":"acme","NAME":"b"}`, 400, "unknown_field"},
		{"duplicate key in metadata", "POST", "/v1/tokens", `{"api":"acme","metadata":{"plan":"free","plan":"pro"}}`, 400, "invalid_request"},
		{"nested too deep", "POST", "/v1/tokens", `{"api":"acme","metadata":{"a":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}}`, 400, "malformed_json"},
		{"integer out of range", "POST", "/v1/tokens", `{"api":"acme","expires_in":99999999999999999999}`, 400, "invalid_request"},
		{"fraction for an integer", "POST", "/v1/tokens", `{"api":"acme","rate_limit":{"limit":1.5,"window":60}}`, 400, "invalid_request"},
	})
}

// TestTypeErrorNamesTheJSONField: a wrong type is reported under the name
// the client sent, not a Go struct path.
func TestTypeErrorNamesTheJSONField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for body, field := range map[string]string{
		`{"api":"acme","name":5}`:                               `"name"`,
		`{"api":"acme","scopes":"repos:read"}`:                  `"scopes"`,
		`{"api":"acme","rate_limit":{"limit":"x","window":60}}`: `"rate_limit.limit"`,
	} {
		resp, b := e.do(t, "POST", "/v1/tokens", e.admin, body)
		var got struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(b, &got)
		if resp.StatusCode != 400 || !strings.Contains(got.Error.Message, "field "+field) || strings.Contains(got.Error.Message, "settingsJSON") {
			t.Errorf("%s: %d %s; want a 400 naming field %s", body, resp.StatusCode, b, field)
		}
	}
}

// TestMetadataLimitHoldsForWhatIsStored: metadata is at most 4 KiB, but the
// limit was checked before the object was re-encoded, and encoding/json
// escapes <, > and & as \u003c...: 4 KiB of input became 24 KiB stored and
// sent in every verify answer.
func TestMetadataLimitHoldsForWhatIsStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	body := `{"api":"acme","metadata":{"a":"` + strings.Repeat("<", 4000) + `"}}`
	resp, b := e.do(t, "POST", "/v1/tokens", e.admin, body)
	if resp.StatusCode == 400 {
		return // refused: fine
	}
	var k tokenJSON
	if err := json.Unmarshal(b, &k); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %d %.200s", resp.StatusCode, b)
	}
	stored, err := e.db.GetToken(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Metadata) > tokens.MaxMetadataBytes {
		t.Errorf("stored metadata is %d bytes, over the %d-byte limit", len(stored.Metadata), tokens.MaxMetadataBytes)
	}
	var r verifyResponse
	e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+k.Token+`"}`, 200, &r)
	if r.Token == nil {
		t.Fatalf("verify: %+v", r)
	}
	if len(r.Token.Metadata) > tokens.MaxMetadataBytes {
		t.Errorf("verify answer carries %d bytes of metadata", len(r.Token.Metadata))
	}
}

// TestBadTimeIsNamed: a bad RFC 3339 expires_at is valid JSON; the answer
// must say which field is wrong, not that the body is not JSON.
func TestBadTimeIsNamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for _, v := range []string{"tomorrow", "2030-01-01 00:00:00Z", "2030-01-01"} {
		resp, b := e.do(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","expires_at":"`+v+`"}`)
		var got struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(b, &got)
		if resp.StatusCode != 400 || got.Error.Code == "malformed_json" || !strings.Contains(got.Error.Message, "expires_at") {
			t.Errorf("expires_at %q: %d %s; want a 400 that names expires_at (the body is valid JSON)", v, resp.StatusCode, b)
		}
	}
}

// TestBadTokenCursorIsRefused: a cursor that is no token id is a 400,
// as for the audit log, not an empty last page (a client with a corrupted
// cursor would believe the listing complete).
func TestBadTokenCursorIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for _, c := range []string{"garbage", strings.Repeat("z", 5000)} {
		resp, b := e.do(t, "GET", "/v1/tokens?cursor="+c, e.admin, ``)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "invalid_request") {
			t.Errorf("cursor %.20q...: %d %.200s; want 400 invalid_request", c, resp.StatusCode, b)
		}
	}
}
