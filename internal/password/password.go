// Package password hashes and verifies human passwords with argon2id
// (RFC 9106), encoded as PHC strings:
//
//	$argon2id$v=19$m=32768,t=2,p=1$<salt>$<hash>
//
// with the salt and hash in unpadded standard base64. It is for user
// passwords only: Jeton's own tokens carry 256 random bits and are stored as
// SHA-256 hashes.
//
// A Hasher bounds how many hashes run at once, so that a flood of logins
// queues instead of exhausting memory (each hash holds MemoryKiB).
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// MaxLen is the longest password, in bytes, that callers accept. Hashing
// itself does not need the bound; it keeps request handling predictable.
const MaxLen = 1024

// ErrMalformed is returned for an encoded hash that is not a well-formed
// argon2id PHC string with sane parameters.
var ErrMalformed = errors.New("password: malformed hash")

// Params are argon2id's cost parameters and the sizes of salt and key.
type Params struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32
	Threads   uint8
	SaltLen   uint32 // bytes
	KeyLen    uint32 // bytes
}

// DefaultParams cost about 45 ms (38-50 ms measured by BenchmarkHash on the
// shared 2-core reference machine, Go 1.26) and 32 MiB per hash. One thread
// per hash: concurrent logins use the other cores, and the default
// concurrency bound (2*GOMAXPROCS) caps hashing memory at 128 MiB there. The
// cost exceeds OWASP's argon2id minimum (m=19 MiB, t=2, p=1).
var DefaultParams = Params{Time: 2, MemoryKiB: 32 << 10, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read from an encoded hash, so that a tampered stored
// hash cannot make a verification allocate or spin without limit.
const (
	maxMemoryKiB = 1 << 18 // 256 MiB
	maxTime      = 64
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 64
	maxEncoded   = 256
)

func (p Params) withDefaults() Params {
	d := DefaultParams
	if p.Time == 0 {
		p.Time = d.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = d.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = d.Threads
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	return p
}

// valid reports whether p is within the bounds Decode accepts.
func (p Params) valid() bool {
	return p.Time >= 1 && p.Time <= maxTime &&
		p.Threads >= 1 && p.MemoryKiB >= 8*uint32(p.Threads) && p.MemoryKiB <= maxMemoryKiB &&
		p.SaltLen >= minSaltLen && p.SaltLen <= maxSaltLen &&
		p.KeyLen >= minKeyLen && p.KeyLen <= maxKeyLen
}

// Hasher hashes and verifies passwords with fixed parameters, at most a
// bounded number at a time. It is safe for concurrent use.
type Hasher struct {
	p   Params
	sem chan struct{}
}

// NewHasher returns a Hasher that hashes with p (zero fields take the
// DefaultParams value) and runs at most maxConcurrent hashes at once (0 or
// less: 2*GOMAXPROCS). It panics if p is out of the bounds a hash can be
// decoded with: that is a programming error.
func NewHasher(p Params, maxConcurrent int) *Hasher {
	p = p.withDefaults()
	if !p.valid() {
		panic(fmt.Sprintf("password: parameters out of bounds: %+v", p))
	}
	if maxConcurrent <= 0 {
		maxConcurrent = 2 * runtime.GOMAXPROCS(0)
	}
	return &Hasher{p: p, sem: make(chan struct{}, maxConcurrent)}
}

// Params returns the parameters h hashes with.
func (h *Hasher) Params() Params { return h.p }

// acquire waits for a hashing slot or the end of ctx.
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("password: wait for a hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

func key(p Params, password string, salt []byte) []byte {
	return argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
}

// Hash returns the PHC encoding of password hashed under a fresh random
// salt. It fails only if ctx ends while waiting for a hashing slot.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.p.SaltLen)
	rand.Read(salt) // crypto/rand.Read never returns an error since Go 1.24
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return encode(h.p, salt, key(h.p, password, salt)), nil
}

// Verify reports whether password matches the encoded hash, comparing in
// constant time, and whether the hash should be replaced because it was made
// with other parameters than h's (needsRehash is only meaningful when ok).
// A malformed encoding is ErrMalformed.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (ok, needsRehash bool, err error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	got := key(p, password, salt)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, false, nil
	}
	return true, p != h.p, nil
}

// Dummy hashes password with h's parameters and discards the result. Call it
// for an unknown username, so that a failed login takes as long whether or
// not the user exists.
func (h *Hasher) Dummy(ctx context.Context, password string) {
	var salt [maxSaltLen]byte
	if h.acquire(ctx) != nil {
		return
	}
	defer h.release()
	key(h.p, password, salt[:h.p.SaltLen])
}

var b64 = base64.RawStdEncoding.Strict()

func encode(p Params, salt, hash []byte) string {
	return "$argon2id$v=" + strconv.Itoa(argon2.Version) +
		"$m=" + strconv.FormatUint(uint64(p.MemoryKiB), 10) +
		",t=" + strconv.FormatUint(uint64(p.Time), 10) +
		",p=" + strconv.FormatUint(uint64(p.Threads), 10) +
		"$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(hash)
}

// decode parses a PHC string produced by encode. Only the canonical form is
// accepted: fixed parameter order, no leading zeros, no padding.
func decode(s string) (p Params, salt, hash []byte, err error) {
	if len(s) > maxEncoded {
		return p, nil, nil, ErrMalformed
	}
	rest, ok := strings.CutPrefix(s, "$argon2id$v="+strconv.Itoa(argon2.Version)+"$m=")
	if !ok {
		return p, nil, nil, ErrMalformed
	}
	m, rest, ok1 := cutNumber(rest, ",t=")
	t, rest, ok2 := cutNumber(rest, ",p=")
	threads, rest, ok3 := cutNumber(rest, "$")
	saltPart, hashPart, ok4 := strings.Cut(rest, "$")
	if !ok1 || !ok2 || !ok3 || !ok4 || m > maxMemoryKiB || t > maxTime || threads > 255 {
		return p, nil, nil, ErrMalformed
	}
	salt, err1 := b64.DecodeString(saltPart)
	hash, err2 := b64.DecodeString(hashPart)
	// The decoder skips newlines: only the canonical text is accepted.
	if err1 != nil || err2 != nil || b64.EncodeToString(salt) != saltPart || b64.EncodeToString(hash) != hashPart {
		return p, nil, nil, ErrMalformed
	}
	p = Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(threads), SaltLen: uint32(len(salt)), KeyLen: uint32(len(hash))}
	if !p.valid() {
		return Params{}, nil, nil, ErrMalformed
	}
	return p, salt, hash, nil
}

// cutNumber parses the decimal number before sep in s and returns it with
// what follows sep.
func cutNumber(s, sep string) (n uint64, rest string, ok bool) {
	digits, rest, ok := strings.Cut(s, sep)
	if !ok || digits == "" || len(digits) > 10 || (len(digits) > 1 && digits[0] == '0') {
		return 0, "", false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, rest, err == nil
}
