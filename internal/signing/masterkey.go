package signing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// MasterKeySize is the size of a master key in bytes (AES-256).
const MasterKeySize = 32

// ErrSealed is the one error Open returns for data it cannot open: sealed
// under another key or another associated data, truncated, or tampered
// with. It says nothing more, by design.
var ErrSealed = errors.New("signing: cannot open sealed data (wrong master key or corrupt data)")

// sealVersion is the first byte of every sealed value, so the format can
// change later without guessing.
const sealVersion = 1

// MasterKey encrypts private signing keys at rest (AES-256-GCM, NIST SP
// 800-38D) and derives subkeys for other secrets (HKDF-SHA256, RFC 5869).
// It is safe for concurrent use.
type MasterKey struct {
	secret [MasterKeySize]byte
	aead   cipher.AEAD // AES-256-GCM under a subkey derived for sealing
}

func newMasterKey(secret []byte) *MasterKey {
	k := &MasterKey{}
	copy(k.secret[:], secret)
	// Sealing uses a derived subkey too, so no key is ever used for two
	// purposes; the info strings of Seal and Derive cannot collide.
	sub := k.derive("jeton seal v1")
	block, err := aes.NewCipher(sub[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	k.aead = aead
	return k
}

// ParseMasterKey parses a master key: the standard base64 encoding (RFC
// 4648 §4, padded) of exactly 32 bytes, e.g. the output of
// `openssl rand -base64 32`. Surrounding white space is ignored. Errors
// never repeat the input.
func ParseMasterKey(s string) (*MasterKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("signing: master key is empty")
	}
	if len(s) > 2*base64.StdEncoding.EncodedLen(MasterKeySize) {
		return nil, fmt.Errorf("signing: master key must be the base64 of %d bytes; it is %d characters long", MasterKeySize, len(s))
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("signing: master key is not standard base64")
	}
	if len(b) != MasterKeySize {
		return nil, fmt.Errorf("signing: master key must be %d bytes, it decodes to %d", MasterKeySize, len(b))
	}
	return newMasterKey(b), nil
}

// maxKeyFile bounds what LoadMasterKeyFile reads.
const maxKeyFile = 1024

// LoadMasterKeyFile reads a master key from a file holding its base64 text
// (a trailing newline is fine). It refuses a file that the group or others
// may read or write, naming its mode, as ssh does for private keys. A
// missing file is an error wrapping fs.ErrNotExist.
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing: open master key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("signing: master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing: master key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("signing: master key file %s has mode %04o: it must not be accessible to group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("signing: read master key file: %w", err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("signing: master key file %s is too large to hold a master key", path)
	}
	k, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return k, nil
}

// CreateMasterKeyFile generates a master key (crypto/rand) and writes its
// base64 text and a newline to a new file of mode 0600. It fails if the
// file exists (an error wrapping fs.ErrExist), so it never overwrites a key
// that sealed something.
func CreateMasterKeyFile(path string) (*MasterKey, error) {
	secret := make([]byte, MasterKeySize)
	rand.Read(secret) // never fails since Go 1.24
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("signing: create master key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("signing: write master key file: %w", err)
	}
	return newMasterKey(secret), nil
}

// Seal encrypts and authenticates plaintext, binding it to aad (associated
// data that must be presented again to Open, e.g. the ID of the object the
// plaintext belongs to). The result is a version byte, a random 96-bit
// nonce and the AES-256-GCM ciphertext with its tag.
func (k *MasterKey) Seal(plaintext, aad []byte) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return k.aead.Seal(out, out[1:], plaintext, aad)
}

// Open decrypts what Seal sealed with the same key and aad. Every failure
// is ErrSealed.
func (k *MasterKey) Open(sealed, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrSealed
	}
	out, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}

// Derive returns a 256-bit subkey for purpose (e.g. "web session"),
// derived with HKDF-SHA256 (RFC 5869). Different purposes give
// independent keys; the same purpose always gives the same key.
func (k *MasterKey) Derive(purpose string) [32]byte {
	return k.derive("jeton derive v1\x00" + purpose)
}

func (k *MasterKey) derive(info string) [32]byte {
	b, err := hkdf.Key(sha256.New, k.secret[:], nil, info, 32)
	if err != nil {
		panic(err) // only for lengths over 255*32 bytes
	}
	return [32]byte(b)
}
