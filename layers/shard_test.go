package layers

import (
	"fmt"
	"hash/crc32"
	"testing"
)

func TestShardIndex(t *testing.T) {
	t.Parallel()
	// The spec's vectors (channels-redis-wire.md): crc32 & 0xFFF, then the index for
	// 2, 3 and 5 hosts.
	tests := []struct {
		name  string
		crc   uint32
		index [3]int
	}{
		{"room", 411, [3]int{0, 0, 0}},
		{"chat_lobby", 2156, [3]int{1, 1, 2}},
		{"specific.abc!", 3651, [3]int{1, 2, 4}},
		{"asgi__group__room", 3257, [3]int{1, 2, 3}},
		{"é", 3390, [3]int{1, 2, 4}},
	}
	for _, tt := range tests {
		if crc := crc32.ChecksumIEEE([]byte(tt.name)) & 0xFFF; crc != tt.crc {
			t.Errorf("crc32(%q) & 0xFFF = %d; want %d", tt.name, crc, tt.crc)
		}
		for i, n := range []int{2, 3, 5} {
			if got := shardIndex(tt.name, n); got != tt.index[i] {
				t.Errorf("shardIndex(%q, %d) = %d; want %d", tt.name, n, got, tt.index[i])
			}
		}
		for _, n := range []int{0, 1} {
			if got := shardIndex(tt.name, n); got != 0 {
				t.Errorf("shardIndex(%q, %d) = %d; want 0", tt.name, n, got)
			}
		}
	}
	// Every index is in range, for many host counts and names.
	for n := 1; n <= 64; n++ {
		for i := range 2000 {
			name := fmt.Sprintf("name.%d", i)
			if got := shardIndex(name, n); got < 0 || got >= n {
				t.Fatalf("shardIndex(%q, %d) = %d", name, n, got)
			}
		}
	}
}
