package httpapi

import (
	"reflect"
	"testing"
)

func TestVerifyFastDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		ok   bool
		want VerifyRequest
	}{
		{`{"token":"jtp_x","api":"acme","scopes":["a","b"]}`, true, VerifyRequest{Token: "jtp_x", API: "acme", Scopes: []string{"a", "b"}}},
		{" {\n\t\"scopes\" : [ ] , \"token\":\"t\" }\r\n", true, VerifyRequest{Token: "t", Scopes: []string{}}},
		{`{}`, true, VerifyRequest{}},
		{`{"token":"t","client_ip":"203.0.113.9"}`, true, VerifyRequest{Token: "t", ClientIP: "203.0.113.9"}},
		{`{"client_ip":"a","client_ip":"b"}`, false, VerifyRequest{}}, // repeated: slow path
		{`{"token":"a\"b"}`, false, VerifyRequest{}},                  // escape: slow path
		{`{"TOKEN":"x"}`, false, VerifyRequest{}},                     // case-folded key: slow path
		{`{"token":"x","token":"y"}`, false, VerifyRequest{}},         // duplicate: slow path
		{`{"token":"x"} {}`, false, VerifyRequest{}},                  // trailing data
		{`{"token":null}`, false, VerifyRequest{}},                    // null: slow path
		{`{"token":"é"}`, false, VerifyRequest{}},                     // non-ASCII: slow path
		{`{"token":"x",}`, false, VerifyRequest{}},                    // trailing comma
		{`{"scopes":["a",]}`, false, VerifyRequest{}},                 // trailing comma
		{`{"token":"x"`, false, VerifyRequest{}},                      // truncated
	}
	for _, tt := range tests {
		var got VerifyRequest
		ok := decodeVerifyFast([]byte(tt.in), &got)
		if ok != tt.ok || (ok && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("decodeVerifyFast(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzVerifyFastDecode proves the fast path never disagrees with the
// strict decoder: whatever it accepts, DecodeStrict accepts identically.
func FuzzVerifyFastDecode(f *testing.F) {
	for _, s := range []string{`{"token":"jtp_x","api":"acme","scopes":["a","b"]}`, `{}`, `{"scopes":[]}`, `{"token":"x","token":"y"}`, " {\"api\" :\"a\"}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast VerifyRequest
		if !decodeVerifyFast(body, &fast) {
			return
		}
		var strict VerifyRequest
		if err := DecodeStrict(body, &strict); err != nil {
			t.Fatalf("fast path accepted %q, strict decoder refused: %v", body, err)
		}
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("decoders disagree on %q: fast %+v, strict %+v", body, fast, strict)
		}
	})
}

func TestHasNULEscape(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]bool{
		`{"a":"x\u0000"}`:   true,
		`{"a\u0000":1}`:     true,
		`{"a":"\\u0000"}`:   false, // a backslash, then text
		`{"a":"\\\u0000"}`:  true,  // a backslash, then a NUL
		`{"a":"\u00000"}`:   true,
		`{"a":"\u0001"}`:    false,
		`{"a":"\u000"}`:     false,
		`{"a":"x"}`:         false,
		`\`:                 false,
		`{"a":"\"\u0000"}`:  true,
		`{"a":"\\\\u0000"}`: false,
	} {
		if got := hasNULEscape([]byte(body)); got != want {
			t.Errorf("hasNULEscape(%s) = %v, want %v", body, got, want)
		}
	}
}
