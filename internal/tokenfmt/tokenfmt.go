// Package tokenfmt defines the Jeton token string: how a token is generated,
// parsed, checksummed, hashed for storage and recognised by leak scanners.
//
// A token is <prefix>_<body>. The body is 43 base62 characters encoding 32
// random bytes followed by 6 base62 characters encoding the CRC-32 (IEEE) of
// everything before them. The checksum lets a verifier reject typos and
// garbage without touching the store, and lets scanners find leaked tokens
// with almost no false positives.
package tokenfmt

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
)

// Default prefixes for the kinds of token Jeton issues.
const (
	PrefixPersonal     = "jtp" // personal access token / API key
	PrefixAccess       = "jta" // opaque OAuth access token
	PrefixRefresh      = "jtr" // OAuth refresh token
	PrefixClientSecret = "jts" // OAuth client secret
	PrefixAuthCode     = "jtc" // OAuth authorization code
	PrefixDeviceCode   = "jtd" // OAuth device code (RFC 8628)
)

const (
	secretLen   = 43 // base62 characters for 32 random bytes
	checksumLen = 6  // base62 characters for a CRC-32
	bodyLen     = secretLen + checksumLen

	// MinPrefixLen and MaxPrefixLen bound the length of a token prefix.
	MinPrefixLen = 2
	MaxPrefixLen = 20

	// MaxLen is the length of the longest well-formed token. Anything longer
	// is rejected before any other work is done.
	MaxLen = MaxPrefixLen + 1 + bodyLen
)

// Errors returned by Parse. Callers branch on ErrMalformed; ErrChecksum wraps it.
var (
	ErrMalformed = errors.New("tokenfmt: malformed token")
	ErrChecksum  = fmt.Errorf("%w: checksum mismatch", ErrMalformed)
)

// ErrInvalidPrefix reports a prefix that is not 2–20 letters, digits or '_'.
var ErrInvalidPrefix = errors.New("tokenfmt: prefix must be 2-20 letters, digits or '_', starting with a letter")

// Hash is the SHA-256 of a token string: the only form in which Jeton stores it.
type Hash [sha256.Size]byte

// HashOf returns the storage hash of token. Tokens no longer than MaxLen are
// hashed without allocating.
func HashOf(token string) Hash {
	var buf [MaxLen]byte
	if len(token) > len(buf) {
		return sha256.Sum256([]byte(token))
	}
	n := copy(buf[:], token)
	return sha256.Sum256(buf[:n])
}

// Reserved reports whether p is one of the prefixes Jeton keeps for its own
// OAuth tokens and client secrets, which an API may not use for its keys.
func Reserved(p string) bool {
	switch p {
	case PrefixAccess, PrefixRefresh, PrefixClientSecret, PrefixAuthCode, PrefixDeviceCode:
		return true
	}
	return false
}

// ValidPrefix reports whether p can be used as a token prefix: 2–20 ASCII
// letters, digits or underscores, starting with a letter and not ending with
// an underscore (so that the prefix/body boundary stays unambiguous to a reader).
func ValidPrefix(p string) bool {
	if len(p) < MinPrefixLen || len(p) > MaxPrefixLen {
		return false
	}
	if !isLetter(p[0]) || p[len(p)-1] == '_' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !isLetter(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// Generate returns a new token with the given prefix, made from 32 bytes of
// crypto/rand.
func Generate(prefix string) (string, error) {
	if !ValidPrefix(prefix) {
		return "", ErrInvalidPrefix
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("tokenfmt: read random: %w", err)
	}
	return format(prefix, secret), nil
}

func format(prefix string, secret [32]byte) string {
	buf := make([]byte, 0, len(prefix)+1+bodyLen)
	buf = append(buf, prefix...)
	buf = append(buf, '_')
	buf = appendBase62(buf, secret[:], secretLen)
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE(buf))
	buf = append(buf, sum[:]...)
	return string(buf)
}

// Parse checks that s is a well-formed token with a valid checksum and
// returns its prefix. It does no allocation and never touches a store, so it
// is safe to run on every untrusted input before anything else.
func Parse(s string) (prefix string, err error) {
	if len(s) > MaxLen || len(s) < MinPrefixLen+1+bodyLen {
		return "", ErrMalformed
	}
	sep := len(s) - bodyLen - 1
	if s[sep] != '_' {
		return "", ErrMalformed
	}
	prefix = s[:sep]
	if !ValidPrefix(prefix) {
		return "", ErrMalformed
	}
	body := s[sep+1:]
	for i := 0; i < len(body); i++ {
		if decodeDigit(body[i]) < 0 {
			return "", ErrMalformed
		}
	}
	// The secret part must fit in 256 bits: base62 with 43 digits can hold
	// slightly more, and a value that Generate could never produce is garbage.
	if body[:secretLen] > maxSecret {
		return "", ErrMalformed
	}
	var want [checksumLen]byte
	encodeChecksum(&want, crc32String(s[:len(s)-checksumLen]))
	if string(want[:]) != body[secretLen:] {
		return "", ErrChecksum
	}
	return prefix, nil
}

// Hint returns the display form of a token: its prefix and last four
// characters, e.g. "jtp_…a1B2". It is safe to show and to log.
func Hint(token string) string {
	prefix, _, ok := cutLast(token)
	if !ok || len(token) < 4 {
		return "…"
	}
	return prefix + "_…" + token[len(token)-4:]
}

func cutLast(token string) (prefix, body string, ok bool) {
	if len(token) < bodyLen+1 {
		return "", "", false
	}
	sep := len(token) - bodyLen - 1
	if token[sep] != '_' {
		return "", "", false
	}
	return token[:sep], token[sep+1:], true
}

// LeakPattern matches candidate Jeton tokens in arbitrary text (source files,
// logs, paste sites). Each match must still pass Parse: the checksum is what
// removes false positives.
var LeakPattern = regexp.MustCompile(`\b[A-Za-z][A-Za-z0-9_]{0,18}[A-Za-z0-9]_[0-9A-Za-z]{49}\b`)

// Scan returns every valid token found in text, in order of appearance.
func Scan(text []byte) []string {
	var found []string
	for _, m := range ScanIndex(text) {
		found = append(found, string(text[m[0]:m[1]]))
	}
	return found
}

// ScanIndex returns the start and end offsets in text of every valid
// token, in order of appearance. A candidate that fails its checksum is
// tried again from after each '_' of its prefix, so that a token glued to
// the end of a name ("API_KEY_jtp_…", where the pattern takes the whole
// run as the prefix) is still found.
func ScanIndex(text []byte) [][2]int {
	var found [][2]int
	for _, m := range LeakPattern.FindAllIndex(text, -1) {
		start, end := m[0], m[1]
		sep := end - bodyLen - 1 // the '_' between prefix and body
		for start < sep {
			if _, err := Parse(string(text[start:end])); err == nil {
				found = append(found, [2]int{start, end})
				break
			}
			i := bytes.IndexByte(text[start:sep], '_')
			if i < 0 {
				break
			}
			start += i + 1
		}
	}
	return found
}

var crcTable = crc32.MakeTable(crc32.IEEE)

// crc32String is crc32.ChecksumIEEE over a string, without converting it to
// a byte slice (which would allocate on the verify path).
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crcTable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
