package server

import (
	"bytes"
	"testing"
)

// TestEventMemo: one frame shared by many streams is encoded once; any other data,
// even of the same length, gets its own encoding.
func TestEventMemo(t *testing.T) {
	var m eventMemo
	a, b := []byte(`{"n":1}`), []byte(`{"n":2}`)
	first := m.encode(a)
	if again := m.encode(a); &again[0] != &first[0] {
		t.Fatal("the same frame was encoded twice")
	}
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{b, "data: {\"n\":2}\n\n"},
		{a, "data: {\"n\":1}\n\n"},
		{[]byte("x\ny"), "data: x\ndata: y\n\n"},
		{nil, "data: \n\n"},
	} {
		if got := m.encode(tc.data); !bytes.Equal(got, []byte(tc.want)) {
			t.Fatalf("encode(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}
