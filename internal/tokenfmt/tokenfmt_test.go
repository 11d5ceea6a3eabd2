package tokenfmt

import (
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func TestGenerateParseRoundTrip(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{PrefixPersonal, PrefixAccess, PrefixRefresh, PrefixClientSecret, "acme_live", "A1", strings.Repeat("x", MaxPrefixLen)} {
		tok, err := Generate(prefix)
		if err != nil {
			t.Fatalf("Generate(%q): %v", prefix, err)
		}
		if want := len(prefix) + 1 + 49; len(tok) != want {
			t.Errorf("len(%q) = %d, want %d", tok, len(tok), want)
		}
		got, err := Parse(tok)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tok, err)
		}
		if got != prefix {
			t.Errorf("Parse(%q) prefix = %q, want %q", tok, got, prefix)
		}
		if !strings.HasPrefix(Hint(tok), prefix+"_…") || !strings.HasSuffix(Hint(tok), tok[len(tok)-4:]) {
			t.Errorf("Hint(%q) = %q", tok, Hint(tok))
		}
	}
}

func TestGenerateIsRandom(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		tok, err := Generate("jtp")
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
	}
}

func TestChecksumIsCRC32OfEverythingBefore(t *testing.T) {
	t.Parallel()
	var secret [32]byte
	for i := range secret {
		secret[i] = byte(i * 7)
	}
	tok := format("jtp", secret)
	var want [checksumLen]byte
	encodeChecksum(&want, crc32.ChecksumIEEE([]byte(tok[:len(tok)-checksumLen])))
	if got := tok[len(tok)-checksumLen:]; got != string(want[:]) {
		t.Errorf("checksum = %q, want %q", got, want)
	}
	// All-zero and all-0xff secrets encode to fixed width.
	if got := format("jtp", [32]byte{}); got[4:4+secretLen] != strings.Repeat("0", secretLen) {
		t.Errorf("zero secret encodes to %q", got)
	}
	var ff [32]byte
	for i := range ff {
		ff[i] = 0xff
	}
	if _, err := Parse(format("jtp", ff)); err != nil {
		t.Errorf("max secret does not parse: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	good, err := Generate("jtp")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"no separator", strings.Replace(good, "_", "x", 1), ErrMalformed},
		{"short body", good[:len(good)-1], ErrMalformed},
		{"long body", good + "a", ErrMalformed},
		{"typo in secret", flip(good, 10), ErrChecksum},
		{"typo in checksum", flip(good, len(good)-1), ErrChecksum},
		{"typo in prefix", "jtq" + good[3:], ErrChecksum},
		{"bad char", good[:10] + "-" + good[11:], ErrMalformed},
		{"non-ascii", good[:10] + "é" + good[12:], ErrMalformed},
		{"prefix one char", "j" + good[3:], ErrMalformed},
		{"prefix starts with digit", "1tp" + good[3:], ErrMalformed},
		{"prefix too long", strings.Repeat("a", 21) + good[3:], ErrMalformed},
		{"secret over 256 bits", "jtp_" + strings.Repeat("z", 49), ErrMalformed},
		{"whitespace", " " + good, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("Parse(%q) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestValidPrefix(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"jtp": true, "acme_live": true, "A1": true, "ab": true, strings.Repeat("a", 20): true,
		"": false, "a": false, strings.Repeat("a", 21): false, "1ab": false, "_ab": false,
		"ab_": false, "a-b": false, "a b": false, "ab\x00": false, "äb": false,
	}
	for p, want := range tests {
		if got := ValidPrefix(p); got != want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", p, got, want)
		}
	}
	if _, err := Generate("bad-prefix"); !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("Generate with bad prefix: %v", err)
	}
}

func TestScanFindsOnlyValidTokens(t *testing.T) {
	t.Parallel()
	a, _ := Generate("jtp")
	b, _ := Generate("acme_live")
	corrupt := a[:len(a)-1] + "0"
	if corrupt == a {
		corrupt = a[:len(a)-1] + "1"
	}
	text := "config:\n  key = \"" + a + "\"\n  other=" + corrupt + " and " + b + ".\nnoise jtp_short"
	got := Scan([]byte(text))
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Scan = %q, want [%q %q]", got, a, b)
	}
}

func TestScanFindsTokensGluedToNames(t *testing.T) {
	t.Parallel()
	a, _ := Generate("jtp")
	b, _ := Generate("acme_live")
	last := "Q"
	if strings.HasSuffix(a, last) {
		last = "R"
	}
	text := "API_KEY_" + a + "\nexport LIVE_" + b + "\nx_y_z_" + a[:len(a)-1] + last
	got := ScanIndex([]byte(text))
	want := [][2]int{{8, 8 + len(a)}, {8 + len(a) + 13, 8 + len(a) + 13 + len(b)}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ScanIndex = %v, want %v", got, want)
	}
	if s := Scan([]byte(text)); len(s) != 2 || s[0] != a || s[1] != b {
		t.Errorf("Scan = %q", s)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	tok, _ := Generate("jtp")
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Parse(tok); err != nil {
			t.Fatal(err)
		}
		_ = HashOf(tok)
	}); n != 0 {
		t.Errorf("Parse+HashOf allocate %v times per call, want 0", n)
	}
}

func TestAppendBase62Sorts(t *testing.T) {
	t.Parallel()
	prev := ""
	for i := range 300 {
		got := string(AppendBase62(nil, []byte{byte(i >> 8), byte(i)}, 3))
		if got <= prev {
			t.Fatalf("encoding of %d (%q) does not sort after %q", i, got, prev)
		}
		prev = got
	}
}

func FuzzParse(f *testing.F) {
	tok, _ := Generate("jtp")
	f.Add(tok)
	f.Add("acme_live_" + tok[4:])
	f.Add("")
	f.Add("jtp_" + strings.Repeat("z", 49))
	f.Fuzz(func(t *testing.T, s string) {
		prefix, err := Parse(s)
		if err != nil {
			return
		}
		if !ValidPrefix(prefix) || len(s) != len(prefix)+1+bodyLen {
			t.Fatalf("Parse(%q) accepted with prefix %q", s, prefix)
		}
		// Whatever parses must be exactly what format would produce.
		var secret [32]byte
		body := s[len(prefix)+1:]
		decodeBase62(body[:secretLen], secret[:])
		if again := format(prefix, secret); again != s {
			t.Fatalf("Parse accepted %q, which re-encodes as %q", s, again)
		}
	})
}

// FuzzScanIndex checks that whatever the scanner reports is a valid token
// at offsets inside the text, in order, never overlapping, and that a
// token placed in the text is found.
func FuzzScanIndex(f *testing.F) {
	tok, _ := Generate("jtp")
	f.Add([]byte("key="+tok+"\n"), []byte(""))
	f.Add([]byte("API_KEY_"), []byte(" tail"))
	f.Add([]byte("a_b_c_d_e_f_g_h_i_j_k_"), []byte("_"))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		text := append(append(append([]byte{}, before...), tok...), after...)
		prevEnd, found := 0, false
		for _, m := range ScanIndex(text) {
			if m[0] < prevEnd || m[1] > len(text) || m[0] >= m[1] {
				t.Fatalf("offsets %v out of order or bounds (previous end %d, len %d)", m, prevEnd, len(text))
			}
			if _, err := Parse(string(text[m[0]:m[1]])); err != nil {
				t.Fatalf("reported %q, which does not parse: %v", text[m[0]:m[1]], err)
			}
			prevEnd = m[1]
			found = found || string(text[m[0]:m[1]]) == tok
		}
		// The planted token is found when it stands apart: not inside a
		// longer run of word characters.
		word := func(b []byte, at int) bool {
			if at < 0 || at >= len(b) {
				return false
			}
			c := b[at]
			return c == '_' || isLetter(c) || isDigit(c)
		}
		if !word(before, len(before)-1) && !word(after, 0) && !found {
			t.Fatalf("the token between %q and %q was not found", before, after)
		}
	})
}

// decodeBase62 decodes s into the big-endian dst (test helper).
func decodeBase62(s string, dst []byte) {
	for i := 0; i < len(s); i++ {
		carry := uint(decodeDigit(s[i]))
		for j := len(dst) - 1; j >= 0; j-- {
			cur := uint(dst[j])*62 + carry
			dst[j] = byte(cur)
			carry = cur >> 8
		}
	}
}

func BenchmarkParseAndHash(b *testing.B) {
	tok, _ := Generate("jtp")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tok); err != nil {
			b.Fatal(err)
		}
		_ = HashOf(tok)
	}
}
