package layers

import (
	"encoding/binary"
	"encoding/hex"
)

// Tagged names: 16 random lowercase hex digits followed by the 16 hex digits of a hash
// of them. Process ids and Attach channels use them, so that the layer recognises its
// own names without remembering them all (a random name passes with odds of 2^-64).

// tagHex formats a tag as 16 lowercase hex digits.
func tagHex(tag uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], tag)
	return hex.EncodeToString(b[:])
}

// isTagged reports whether s is 32 lowercase hex digits whose second half is the
// tagHex of tag(first half). It parses rather than formats, so it does not allocate.
func isTagged(s string, tag func(random string) uint64) bool {
	if len(s) != 32 {
		return false
	}
	var v uint64
	for i := 0; i < 32; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return false
		}
		if i >= 16 {
			v = v<<4 | uint64(c)
		}
	}
	return v == tag(s[:16])
}
