package signing_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/internal/signing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	k := mustMasterKey(t, testMasterKey)
	other := mustMasterKey(t, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	plain, aad := []byte("PKCS#8 DER of a private key"), []byte("key_1")
	sealed := k.Seal(plain, aad)
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed data contains the plaintext")
	}
	got, err := k.Open(sealed, aad)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v; want the plaintext", got, err)
	}
	if again := k.Seal(plain, aad); bytes.Equal(again, sealed) {
		t.Error("two seals of the same plaintext are equal: nonce reused")
	}
	if got, err := k.Open(k.Seal(nil, nil), nil); err != nil || len(got) != 0 {
		t.Errorf("empty round trip: %q, %v", got, err)
	}

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		key    *signing.MasterKey
		sealed []byte
		aad    []byte
	}{
		{"wrong key", other, sealed, aad},
		{"wrong aad", k, sealed, []byte("key_2")},
		{"missing aad", k, sealed, nil},
		{"version byte", k, flip(0), aad},
		{"nonce", k, flip(1), aad},
		{"ciphertext", k, flip(15), aad},
		{"tag", k, flip(len(sealed) - 1), aad},
		{"truncated", k, sealed[:len(sealed)-1], aad},
		{"header only", k, sealed[:13], aad},
		{"extended", k, append(bytes.Clone(sealed), 0), aad},
		{"empty", k, nil, aad},
	}
	for _, tt := range tests {
		got, err := tt.key.Open(tt.sealed, tt.aad)
		if !errors.Is(err, signing.ErrSealed) || got != nil {
			t.Errorf("%s: Open = %q, %v; want ErrSealed", tt.name, got, err)
		}
	}
}

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32] // encodes with '+' and '/'
	std := base64.StdEncoding.EncodeToString(raw)
	if !strings.ContainsAny(std, "+/") {
		t.Fatalf("test key %q does not exercise the standard alphabet", std)
	}
	for _, s := range []string{std, std + "\n", " " + std + "\r\n"} {
		if _, err := signing.ParseMasterKey(s); err != nil {
			t.Errorf("ParseMasterKey(%q): %v", s, err)
		}
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"blank", " \n"},
		{"not base64", "this is not base64 at all!!!!!!!!!!!!!!!!!!!!"},
		{"url alphabet", base64.URLEncoding.EncodeToString(raw)},
		{"unpadded", base64.RawStdEncoding.EncodeToString(raw)},
		{"16 bytes", base64.StdEncoding.EncodeToString(raw[:16])},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(raw, 1))},
		{"huge", strings.Repeat("QUFB", 1000)},
	}
	for _, tt := range bad {
		_, err := signing.ParseMasterKey(tt.in)
		if err == nil {
			t.Errorf("%s: ParseMasterKey succeeded", tt.name)
			continue
		}
		if s := strings.TrimSpace(tt.in); len(s) > 4 && strings.Contains(err.Error(), s[:5]) {
			t.Errorf("%s: error %q repeats the input", tt.name, err)
		}
	}
}

func TestDerive(t *testing.T) {
	t.Parallel()
	k := mustMasterKey(t, testMasterKey)
	again := mustMasterKey(t, testMasterKey)
	other := mustMasterKey(t, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	a, b := k.Derive("web session"), k.Derive("oauth refresh retry")
	if a == b {
		t.Error("two purposes derive the same key")
	}
	if again.Derive("web session") != a {
		t.Error("the same master key and purpose derive different keys")
	}
	if other.Derive("web session") == a {
		t.Error("two master keys derive the same key")
	}
	if a == [32]byte{} || bytes.Equal(a[:], []byte("0123456789abcdef0123456789abcdef")) {
		t.Error("Derive returned the zero key or the master key itself")
	}
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "jeton.db.master-key")
	if _, err := signing.LoadMasterKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadMasterKeyFile(missing) = %v, want fs.ErrNotExist", err)
	}
	created, err := signing.CreateMasterKeyFile(path)
	if err != nil {
		t.Fatalf("CreateMasterKeyFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	text, _ := os.ReadFile(path)
	if len(text) != 45 || text[44] != '\n' {
		t.Errorf("key file holds %d bytes, want 44 base64 characters and a newline", len(text))
	}
	loaded, err := signing.LoadMasterKeyFile(path)
	if err != nil {
		t.Fatalf("LoadMasterKeyFile: %v", err)
	}
	if got, err := loaded.Open(created.Seal([]byte("x"), nil), nil); err != nil || string(got) != "x" {
		t.Errorf("the reloaded key does not open what the created one sealed: %v", err)
	}
	if _, err := signing.CreateMasterKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateMasterKeyFile over an existing file = %v, want fs.ErrExist", err)
	}
	if again, _ := signing.LoadMasterKeyFile(path); again == nil || again.Derive("p") != created.Derive("p") {
		t.Error("a refused create changed the key file")
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.LoadMasterKeyFile(path); err == nil || !strings.Contains(err.Error(), "0640") {
		t.Errorf("LoadMasterKeyFile(mode 0640) = %v, want an error naming the mode", err)
	}

	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.LoadMasterKeyFile(garbage); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("LoadMasterKeyFile(garbage) = %v, want an error without the content", err)
	}
	if _, err := signing.LoadMasterKeyFile(dir); err == nil {
		t.Error("LoadMasterKeyFile(a directory) succeeded")
	}
}
