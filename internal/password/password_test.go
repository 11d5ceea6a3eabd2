package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cheap keeps tests fast; the production cost is measured by BenchmarkHash.
var cheap = Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

var ctx = context.Background()

func TestRoundTrip(t *testing.T) {
	h := NewHasher(cheap, 0)
	for _, pw := range []string{"correct horse battery staple", "", "ünïcødé pässwörd", strings.Repeat("x", MaxLen)} {
		enc, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("encoding %q lacks the PHC header", enc)
		}
		ok, rehash, err := h.Verify(ctx, enc, pw)
		if err != nil || !ok || rehash {
			t.Errorf("Verify(right password) = %v, %v, %v; want true, false, nil", ok, rehash, err)
		}
		ok, _, err = h.Verify(ctx, enc, pw+"!")
		if err != nil || ok {
			t.Errorf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
		}
	}
}

func TestSaltsDiffer(t *testing.T) {
	h := NewHasher(cheap, 0)
	a, _ := h.Hash(ctx, "password")
	b, _ := h.Hash(ctx, "password")
	if a == b {
		t.Errorf("two hashes of one password are equal: %s", a)
	}
}

func TestNeedsRehash(t *testing.T) {
	old := NewHasher(cheap, 0)
	enc, err := old.Hash(ctx, "password")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		p    Params
		want bool
	}{
		{"same", cheap, false},
		{"more time", Params{Time: 2, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}, true},
		{"more memory", Params{Time: 1, MemoryKiB: 128, Threads: 1, SaltLen: 16, KeyLen: 32}, true},
		{"threads", Params{Time: 1, MemoryKiB: 64, Threads: 2, SaltLen: 16, KeyLen: 32}, true},
		{"salt length", Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 32, KeyLen: 32}, true},
		{"key length", Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 64}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := NewHasher(tt.p, 0).Verify(ctx, enc, "password")
			if err != nil || !ok || rehash != tt.want {
				t.Errorf("Verify = %v, %v, %v; want true, %v, nil", ok, rehash, err, tt.want)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	h := NewHasher(cheap, 0)
	good, err := h.Hash(ctx, "password")
	if err != nil {
		t.Fatal(err)
	}
	_, _, salt, hash := splitPHC(t, good)
	for _, tt := range []struct{ name, enc string }{
		{"empty", ""},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", strings.Replace(good, "argon2id", "argon2i", 1)},
		{"version 16", strings.Replace(good, "v=19", "v=16", 1)},
		{"no version", strings.Replace(good, "$v=19", "", 1)},
		{"param order", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + hash},
		{"leading zero", "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + hash},
		{"sign", "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + hash},
		{"zero time", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + hash},
		{"zero threads", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + hash},
		{"threads overflow", "$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + hash},
		{"memory below 8p", "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + hash},
		{"huge memory", "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + hash},
		{"huge time", "$argon2id$v=19$m=64,t=1000000,p=1$" + salt + "$" + hash},
		{"number overflow", "$argon2id$v=19$m=99999999999999999999,t=1,p=1$" + salt + "$" + hash},
		{"missing hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt},
		{"empty hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$"},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + hash},
		{"short hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$aGFzaA"},
		{"padding", good + "=="},
		{"bad base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + hash[:len(hash)-1] + "*"},
		{"trailing field", good + "$x"},
		{"newline in hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$\n" + hash},
		{"too long", good + strings.Repeat("A", maxEncoded)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := h.Verify(ctx, tt.enc, "password")
			if !errors.Is(err, ErrMalformed) || ok || rehash {
				t.Errorf("Verify(%q) = %v, %v, %v; want ErrMalformed", tt.enc, ok, rehash, err)
			}
		})
	}
	// A well-formed hash whose key was altered verifies as a wrong password.
	flipped := []byte(good)
	i := len(flipped) - 2
	if flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	if ok, _, err := h.Verify(ctx, string(flipped), "password"); ok || err != nil {
		t.Errorf("Verify(tampered key) = %v, %v; want false, nil", ok, err)
	}
}

// splitPHC returns the fields of an encoded hash.
func splitPHC(t *testing.T, enc string) (alg, params, salt, hash string) {
	t.Helper()
	f := strings.Split(enc, "$")
	if len(f) != 6 {
		t.Fatalf("encoding %q has %d fields", enc, len(f))
	}
	return f[1], f[3], f[4], f[5]
}

func TestEncodeDecode(t *testing.T) {
	p := Params{Time: 3, MemoryKiB: 65536, Threads: 4, SaltLen: 16, KeyLen: 32}
	salt := []byte("0123456789abcdef")
	hash := []byte("0123456789abcdef0123456789abcdef")
	enc := encode(p, salt, hash)
	if want := "$argon2id$v=19$m=65536,t=3,p=4$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"; enc != want {
		t.Errorf("encode = %s, want %s", enc, want)
	}
	gp, gs, gh, err := decode(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(gp, p); diff != "" {
		t.Errorf("params (-got +want):\n%s", diff)
	}
	if string(gs) != string(salt) || string(gh) != string(hash) {
		t.Errorf("decode salt %q hash %q", gs, gh)
	}
}

// TestKnownAnswer checks hashing and the encoding against the argon2id
// vectors of the reference implementation's test suite
// (P-H-C/phc-winner-argon2, src/test.c; password "password", salt "somesalt").
func TestKnownAnswer(t *testing.T) {
	for _, enc := range []string{
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
		"$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
	} {
		p, _, _, err := decode(enc)
		if err != nil {
			t.Fatalf("decode(%s): %v", enc, err)
		}
		h := NewHasher(p, 0)
		ok, rehash, err := h.Verify(ctx, enc, "password")
		if err != nil || !ok || rehash {
			t.Errorf("Verify(%s) = %v, %v, %v; want true, false, nil", enc, ok, rehash, err)
		}
	}
}

func TestConcurrencyBound(t *testing.T) {
	h := NewHasher(cheap, 1)
	h.sem <- struct{}{} // occupy the only slot
	c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(c, "password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Hash with no free slot = %v, want DeadlineExceeded", err)
	}
	if _, _, err := h.Verify(c, encode(cheap, make([]byte, 16), make([]byte, 32)), "password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify with no free slot = %v, want DeadlineExceeded", err)
	}
	h.Dummy(c, "password") // returns rather than blocking
	h.release()
	if _, err := h.Hash(ctx, "password"); err != nil {
		t.Errorf("Hash after release: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	if diff := cmp.Diff(NewHasher(Params{}, 0).Params(), DefaultParams); diff != "" {
		t.Errorf("zero Params (-got +want):\n%s", diff)
	}
	if !DefaultParams.valid() {
		t.Errorf("DefaultParams out of the decodable bounds")
	}
	defer func() {
		if recover() == nil {
			t.Errorf("NewHasher with out-of-bounds params did not panic")
		}
	}()
	NewHasher(Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 4, KeyLen: 32}, 0)
}

func FuzzDecode(f *testing.F) {
	f.Add("$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY")
	f.Add("$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, hash, err := decode(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error %v is not ErrMalformed", err)
			}
			return
		}
		if !p.valid() {
			t.Fatalf("decode accepted out-of-bounds params %+v", p)
		}
		// Only canonical encodings are accepted.
		if again := encode(p, salt, hash); again != s {
			t.Fatalf("decode(%q) re-encodes as %q", s, again)
		}
	})
}

// BenchmarkHash measures one hash with DefaultParams: the cost of a login.
func BenchmarkHash(b *testing.B) {
	h := NewHasher(DefaultParams, 0)
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
