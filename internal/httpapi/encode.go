package httpapi

import (
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// The verify and introspection answers are written by hand: they are the
// hot path, and encoding/json's reflection and map sorting cost more than
// the verification itself. TestHandEncodingMatchesEncodingJSON proves the
// output equal to encoding/json's.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// (including <, > and & for HTML safety, and invalid UTF-8 as U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the inside of a JSON string holding s.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendVerifyResponse(b []byte, res *tokens.Result) []byte {
	b = append(b, `{"valid":`...)
	b = strconv.AppendBool(b, res.Code == tokens.Valid)
	b = append(b, `,"code":`...)
	b = appendString(b, res.Code.String())
	if t := res.Token; t != nil {
		b = append(b, `,"token":{"id":`...)
		b = appendString(b, t.ID)
		b = append(b, `,"api":`...)
		b = appendString(b, t.APIID)
		b = append(b, `,"subject":`...)
		b = appendString(b, t.Subject)
		b = append(b, `,"scopes":`...)
		b = appendStrings(b, t.Scopes)
		// The answer's end, not the token's: a secret a rotation replaced
		// stops at its grace end, and verifiers cache until expires_at.
		b = append(b, `,"expires_at":`...)
		if res.ExpiresAt.IsZero() {
			b = append(b, "null"...)
		} else {
			b = appendTime(b, res.ExpiresAt)
		}
		b = append(b, `,"metadata":`...)
		if t.Metadata == nil {
			b = append(b, "{}"...)
		} else {
			b = append(b, t.Metadata...) // stored compact and validated
		}
		b = append(b, '}')
	}
	if d := res.RateLimit; d != nil {
		b = append(b, `,"rate_limit":{"limit":`...)
		b = strconv.AppendInt(b, d.Limit, 10)
		b = append(b, `,"remaining":`...)
		b = strconv.AppendInt(b, d.Remaining, 10)
		b = append(b, `,"reset":`...)
		b = strconv.AppendInt(b, ceilSeconds(d.Reset), 10)
		b = append(b, '}')
	}
	if res.HasQuota {
		b = append(b, `,"quota":{"remaining":`...)
		b = strconv.AppendInt(b, res.Quota, 10)
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// appendIntrospection writes an active RFC 7662 response, members in
// alphabetical order as encoding/json writes a map. exp is when the
// presented secret stops working (tokens.Result.ExpiresAt: for a secret a
// rotation replaced, the end of its grace), zero for never.
func appendIntrospection(b []byte, t *store.Token, exp time.Time, aud string) []byte {
	b = append(b, `{"active":true`...)
	if aud != "" {
		b = append(b, `,"aud":`...)
		b = appendString(b, aud)
	}
	if t.ClientID != "" {
		b = append(b, `,"client_id":`...)
		b = appendString(b, t.ClientID)
	}
	if !exp.IsZero() {
		b = append(b, `,"exp":`...)
		b = strconv.AppendInt(b, exp.Unix(), 10)
	}
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, t.CreatedAt.Unix(), 10)
	b = append(b, `,"jti":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"scope":"`...)
	for i, s := range t.Scopes {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendEscaped(b, s)
	}
	b = append(b, `","sub":`...)
	b = appendString(b, t.Subject)
	if t.ClientID != "" {
		b = append(b, `,"token_type":"Bearer"}`...) // an OAuth access token
	} else {
		b = append(b, `,"token_type":"api_key"}`...)
	}
	return append(b, '\n')
}

// writeRaw writes a pre-encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) error {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)
