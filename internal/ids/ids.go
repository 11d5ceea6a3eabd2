// Package ids makes Jeton's object identifiers: a type prefix and 22 base62
// characters holding a 48-bit millisecond timestamp and 80 random bits, so
// that IDs sort by creation time (e.g. "tok_0Q7bW0cKq2m4m9R1r8pZxy").
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Prefixes of the kinds of object Jeton names.
const (
	Token  = "tok"
	API    = "api"
	Client = "cli"
	User   = "usr"
	Key    = "key"
	Event  = "evt"
	Grant  = "grt"
)

const bodyLen = 22 // base62 digits for 128 bits

// New returns a fresh ID with the given prefix, stamped with now.
func New(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // crypto/rand.Read never returns an error since Go 1.24
	out := make([]byte, 0, len(prefix)+1+bodyLen)
	out = append(out, prefix...)
	out = append(out, '_')
	return string(tokenfmt.AppendBase62(out, b[:], bodyLen))
}

// Valid reports whether s looks like an ID with the given prefix. It is a
// cheap syntactic check for untrusted input, not a lookup.
func Valid(prefix, s string) bool {
	if len(s) != len(prefix)+1+bodyLen || s[:len(prefix)] != prefix || s[len(prefix)] != '_' {
		return false
	}
	for _, c := range []byte(s[len(prefix)+1:]) {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
