package verify

import (
	"net/http"
	"strings"
)

// MaxTokenLen bounds the length of a bearer token BearerToken accepts.
const MaxTokenLen = 8 << 10

// BearerToken returns the access token of r's Authorization request header
// field (RFC 6750 §2.1):
//
//	Authorization: Bearer <b64token>
//
// The scheme is matched case-insensitively (RFC 9110 §11.1) and the token
// must have the b64token syntax (RFC 6750 §2.1; token68, RFC 9110 §11.2)
// and be at most MaxTokenLen bytes. It returns an *Error wrapping
// ErrNoToken if r has no Authorization header or one with another scheme,
// and one wrapping ErrMalformed with the invalid_request code (status 400,
// RFC 6750 §3.1) if the header is repeated or malformed. Tokens in the
// query string or a form body (RFC 6750 §2.2, §2.3) are not accepted.
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", errNoToken
	case 1:
	default:
		return "", errRequestInvalid
	}
	return parseBearer(values[0])
}

// parseBearer parses one Authorization header value.
func parseBearer(h string) (string, error) {
	h = strings.TrimLeft(h, " \t")
	if h == "" {
		return "", errNoToken
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, DPoP...) carries no bearer token.
		return "", errNoToken
	}
	tok := strings.TrimLeft(rest, " ")
	tok = strings.TrimRight(tok, " \t")
	if tok == "" || len(tok) > MaxTokenLen || !isToken68(tok) {
		return "", errRequestInvalid
	}
	return tok, nil
}

// isToken68 reports whether s matches RFC 9110 §11.2 token68 (the same
// characters as RFC 6750 §2.1 b64token): 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
