package server

import (
	"encoding/binary"
	"testing"
)

// TestFrameSniffer: the sniffer finds a 1-byte close body behind frames of every length
// encoding, whatever the read boundaries, and nothing else sets it.
func TestFrameSniffer(t *testing.T) {
	frame := func(op byte, n int) []byte {
		var h []byte
		switch {
		case n < 126:
			h = []byte{0x80 | op, 0x80 | byte(n)}
		case n <= 0xFFFF:
			h = binary.BigEndian.AppendUint16([]byte{0x80 | op, 0x80 | 126}, uint16(n))
		default:
			h = binary.BigEndian.AppendUint64([]byte{0x80 | op, 0x80 | 127}, uint64(n))
		}
		return append(append(h, 1, 2, 3, 4), make([]byte, n)...)
	}
	var stream []byte
	for _, n := range []int{0, 1, 125, 126, 300, 70000} {
		stream = append(stream, frame(0x2, n)...)
	}
	clean := stream
	bad := append(append([]byte(nil), stream...), frame(0x8, 1)...)
	good := append(append([]byte(nil), stream...), frame(0x8, 2)...)
	for _, chunk := range []int{1, 2, 3, 7, 64, 1 << 20} {
		for _, tc := range []struct {
			name string
			in   []byte
			want bool
		}{{"data only", clean, false}, {"1-byte close", bad, true}, {"2-byte close", good, false}} {
			var f frameSniffer
			for in := tc.in; len(in) > 0; {
				k := min(chunk, len(in))
				f.scan(in[:k])
				in = in[k:]
			}
			if f.shortClose != tc.want || f.n != 0 || f.skip != 0 {
				t.Fatalf("%s in chunks of %d: shortClose %v (want %v), %d header bytes and %d payload bytes pending",
					tc.name, chunk, f.shortClose, tc.want, f.n, f.skip)
			}
		}
	}
}
