package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// jwtClaims is the claims set of a JWT access token (RFC 9068 §2.2).
type jwtClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  audience     `json:"aud"`
	Expiry    *numericDate `json:"exp"`
	NotBefore *numericDate `json:"nbf"`
	IssuedAt  *numericDate `json:"iat"`
	ID        string       `json:"jti"`
	ClientID  string       `json:"client_id"`
	Scope     string       `json:"scope"`
	GrantID   string       `json:"sid"`
}

// claimNames are the JSON names of jwtClaims' fields.
var claimNames = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid"}

// audience is the "aud" claim: a string or an array of strings (RFC 7519
// §4.1.3).
type audience []string

// UnmarshalJSON implements json.Unmarshaler.
func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

func (a audience) contains(s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}

// numericDate is a JSON number of seconds since the epoch (RFC 7519 §2).
type numericDate struct{ t time.Time }

// UnmarshalJSON implements json.Unmarshaler. Only a JSON number is a
// NumericDate; a string is not.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || !(b[0] == '-' || ('0' <= b[0] && b[0] <= '9')) {
		return errors.New("NumericDate is not a number")
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	return d.set(f)
}

func (d *numericDate) set(f float64) error {
	if math.IsNaN(f) || f < 0 || f > 1e11 {
		return errors.New("NumericDate out of range")
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	return nil
}

// decodeClaims decodes a verified JWT payload. The common case, a flat
// object of plain strings, numbers and string arrays, takes a fast path
// that does what encoding/json would; anything else (escapes, non-ASCII,
// nested objects, keys that differ from ours only in case) goes to
// encoding/json, whose answer is then final.
func decodeClaims(payload []byte, jc *jwtClaims) error {
	if decodeClaimsFast(payload, jc) {
		return nil
	}
	*jc = jwtClaims{}
	p := payload
	for len(p) > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n') {
		p = p[1:]
	}
	if len(p) == 0 || p[0] != '{' {
		return errors.New("claims are not a JSON object")
	}
	return json.Unmarshal(payload, jc)
}

// claimScanner walks a JSON text for decodeClaimsFast.
type claimScanner struct {
	b []byte
	i int
}

func (s *claimScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// str reads a string without escapes, control or non-ASCII characters.
func (s *claimScanner) str() (string, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return string(s.b[start:j]), true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", false
		}
	}
	return "", false
}

// num reads a JSON number (RFC 8259 §6) and returns its text.
func (s *claimScanner) num() ([]byte, bool) {
	b, j := s.b, s.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && '1' <= b[j] && b[j] <= '9':
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
	default:
		return nil, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	out := b[s.i:j]
	s.i = j
	return out, true
}

// lit reads true, false or null.
func (s *claimScanner) lit() (string, bool) {
	for _, l := range [...]string{"true", "false", "null"} {
		if bytes.HasPrefix(s.b[s.i:], []byte(l)) {
			s.i += len(l)
			return l, true
		}
	}
	return "", false
}

// date reads a NumericDate.
func (s *claimScanner) date(dst **numericDate) bool {
	n, ok := s.num()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	d := new(numericDate)
	if err != nil || d.set(f) != nil {
		return false
	}
	*dst = d
	return true
}

// decodeClaimsFast decodes the common shape of claims, and reports false
// (leaving jc in any state) for anything it does not handle exactly as
// encoding/json would.
func decodeClaimsFast(b []byte, jc *jwtClaims) bool {
	s := claimScanner{b: b}
	s.ws()
	if s.i >= len(b) || b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(b) && b[s.i] == '}' {
		s.i++
		s.ws()
		return s.i == len(b)
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(b) || b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if s.i >= len(b) {
			return false
		}
		var (
			str  *string
			date **numericDate
		)
		switch key {
		case "iss":
			str = &jc.Issuer
		case "sub":
			str = &jc.Subject
		case "jti":
			str = &jc.ID
		case "client_id":
			str = &jc.ClientID
		case "scope":
			str = &jc.Scope
		case "sid":
			str = &jc.GrantID
		case "exp":
			date = &jc.Expiry
		case "nbf":
			date = &jc.NotBefore
		case "iat":
			date = &jc.IssuedAt
		case "aud":
			if !s.audience(jc) {
				return false
			}
		default:
			for _, n := range claimNames {
				if strings.EqualFold(key, n) {
					return false // encoding/json matches names case-insensitively
				}
			}
			if !s.skip() {
				return false
			}
		}
		switch {
		case str != nil:
			if l, ok := s.lit(); ok {
				if l != "null" {
					return false
				}
				// null leaves a string unchanged, as encoding/json does.
			} else if *str, ok = s.str(); !ok {
				return false
			}
		case date != nil:
			if l, ok := s.lit(); ok {
				if l != "null" {
					return false
				}
				*date = nil
			} else if !s.date(date) {
				return false
			}
		}
		s.ws()
		if s.i >= len(b) {
			return false
		}
		switch b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.ws()
			return s.i == len(b)
		default:
			return false
		}
	}
}

// audience reads the "aud" value: a string, an array of strings, or null.
func (s *claimScanner) audience(jc *jwtClaims) bool {
	switch s.b[s.i] {
	case '"':
		v, ok := s.str()
		if !ok {
			return false
		}
		jc.Audience = audience{v}
		return true
	case '[':
		s.i++
		list := audience{}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			jc.Audience = list
			return true
		}
		for {
			s.ws()
			v, ok := s.str()
			if !ok {
				return false
			}
			list = append(list, v)
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				jc.Audience = list
				return true
			default:
				return false
			}
		}
	}
	return false // null and anything else: let encoding/json decide
}

// skip passes over a value of a claim we do not use: a plain string, a
// number or a literal. Arrays and objects are left to encoding/json.
func (s *claimScanner) skip() bool {
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || ('0' <= c && c <= '9'):
		_, ok := s.num()
		return ok
	default:
		_, ok := s.lit()
		return ok
	}
}
