package tokenfmt

// The base62 alphabet is in ASCII order, so fixed-width encodings sort the
// same way as the numbers they encode (IDs rely on that).
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// AppendBase62 appends the big-endian number in src to dst as exactly width
// base62 digits, most significant first, padding with '0'. The caller chooses
// width large enough for len(src) bytes.
func AppendBase62(dst, src []byte, width int) []byte { return appendBase62(dst, src, width) }

func appendBase62(dst, src []byte, width int) []byte {
	var num [64]byte
	n := copy(num[:], src)
	digits := num[:n]
	start := len(dst)
	for range width {
		dst = append(dst, 0)
	}
	out := dst[start:]
	for i := width - 1; i >= 0; i-- {
		// Divide the big-endian number in digits by 62, keeping the remainder.
		var rem uint
		for j := range digits {
			cur := rem<<8 | uint(digits[j])
			digits[j] = byte(cur / 62)
			rem = cur % 62
		}
		out[i] = alphabet[rem]
	}
	return dst
}

func encodeChecksum(dst *[checksumLen]byte, v uint32) {
	for i := checksumLen - 1; i >= 0; i-- {
		dst[i] = alphabet[v%62]
		v /= 62
	}
}

func decodeDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}

// maxSecret is the base62 encoding of 2^256-1. Because encodings are fixed
// width and the alphabet is in ASCII order, a secret is in range exactly when
// it compares <= maxSecret as a string.
var maxSecret = func() string {
	var ff [32]byte
	for i := range ff {
		ff[i] = 0xff
	}
	return string(appendBase62(nil, ff[:], secretLen))
}()
