package layers

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
)

// unhex decodes hex written with optional spaces; it panics on bad test data.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func rep(prefix string, c byte, n int) []byte {
	return append(unhex(prefix), bytes.Repeat([]byte{c}, n)...)
}

// Encodings written by Python's msgpack 1.0.3: msgpack.packb(v, use_bin_type=True).
var pythonEncodings = []struct {
	v    any
	want []byte
}{
	{nil, unhex("c0")},
	{true, unhex("c3")},
	{false, unhex("c2")},
	{0, unhex("00")},
	{1, unhex("01")},
	{127, unhex("7f")},
	{128, unhex("cc80")},
	{255, unhex("ccff")},
	{256, unhex("cd0100")},
	{65535, unhex("cdffff")},
	{65536, unhex("ce00010000")},
	{int64(math.MaxUint32), unhex("ceffffffff")},
	{int64(1 << 32), unhex("cf0000000100000000")},
	{int64(1 << 40), unhex("cf0000010000000000")},
	{int64(math.MaxInt64), unhex("cf7fffffffffffffff")},
	{uint64(math.MaxUint64), unhex("cfffffffffffffffff")},
	{-1, unhex("ff")},
	{-32, unhex("e0")},
	{-33, unhex("d0df")},
	{-128, unhex("d080")},
	{-129, unhex("d1ff7f")},
	{-32768, unhex("d18000")},
	{-32769, unhex("d2ffff7fff")},
	{int64(math.MinInt32), unhex("d280000000")},
	{int64(math.MinInt32 - 1), unhex("d3ffffffff7fffffff")},
	{int64(-1 << 40), unhex("d3ffffff0000000000")},
	{int64(math.MinInt64), unhex("d38000000000000000")},
	{0.0, unhex("cb0000000000000000")},
	{1.5, unhex("cb3ff8000000000000")},
	{-2.25, unhex("cbc002000000000000")},
	{1e300, unhex("cb7e37e43c8800759c")},
	{"", unhex("a0")},
	{"a", unhex("a161")},
	{"é", unhex("a2c3a9")},
	{strings.Repeat("x", 31), rep("bf", 'x', 31)},
	{strings.Repeat("x", 32), rep("d920", 'x', 32)},
	{strings.Repeat("x", 255), rep("d9ff", 'x', 255)},
	{strings.Repeat("x", 256), rep("da0100", 'x', 256)},
	{strings.Repeat("x", 65535), rep("daffff", 'x', 65535)},
	{strings.Repeat("x", 65536), rep("db00010000", 'x', 65536)},
	{[]byte{}, unhex("c400")},
	{[]byte{0, 0xff}, unhex("c40200ff")},
	{bytes.Repeat([]byte("y"), 255), rep("c4ff", 'y', 255)},
	{bytes.Repeat([]byte("y"), 256), rep("c50100", 'y', 256)},
	{bytes.Repeat([]byte("y"), 65536), rep("c600010000", 'y', 65536)},
	{[]any{}, unhex("90")},
	{[]any{1, "a"}, unhex("9201a161")},
	{[]any{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, unhex("9f000102030405060708090a0b0c0d0e")},
	{[]any{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, unhex("dc0010000102030405060708090a0b0c0d0e0f")},
	{map[string]any{}, unhex("80")},
	{map[string]any{"type": "chat.message"}, unhex("81a474797065ac636861742e6d657373616765")},
	{map[string]any{"k": []any{nil, map[string]any{"n": -5}}}, unhex("81a16b92c081a16efb")},
}

func TestMsgpackEncodeMatchesPython(t *testing.T) {
	t.Parallel()
	for _, tt := range pythonEncodings {
		got, err := appendMsgpack(nil, tt.v)
		if err != nil {
			t.Errorf("encode %.40v: %v", tt.v, err)
			continue
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("encode %.40v (%T) = %.40x; Python writes %.40x", tt.v, tt.v, got, tt.want)
		}
	}
}

func TestMsgpackDecodePython(t *testing.T) {
	t.Parallel()
	for _, tt := range pythonEncodings {
		got, err := decodeMsgpack(tt.want)
		if err != nil {
			t.Errorf("decode %.40x: %v", tt.want, err)
			continue
		}
		if want := canonical(tt.v); !msgpackEqual(got, want) {
			t.Errorf("decode %.40x = %.40v (%T); want %.40v (%T)", tt.want, got, got, want, want)
		}
	}
	// Encodings the encoder never writes but Python (or others) may.
	others := []struct {
		in   string
		want any
	}{
		{"ca3fc00000", 1.5},                               // float 32 (use_single_float)
		{"d000", int64(0)},                                // int 8 for a positive value
		{"d3000000000000002a", int64(42)},                 // int 64 for a small value
		{"cf0000000000000005", int64(5)},                  // uint 64 for a small value
		{"cf8000000000000000", uint64(math.MaxInt64) + 1}, // only above MaxInt64 is uint64
		{"dd00000001c0", []any{nil}},                      // array 32
		{"df00000001a161c3", map[string]any{"a": true}},   // map 32
		{"da0002c3a9", "é"},                               // str 16 for a short string
		{"82a16101a16202", map[string]any{"a": int64(1), "b": int64(2)}},
		{"82a16101a16103", map[string]any{"a": int64(3)}}, // duplicate key: the last wins, as in Python
	}
	for _, tt := range others {
		got, err := decodeMsgpack(unhex(tt.in))
		if err != nil || !msgpackEqual(got, tt.want) {
			t.Errorf("decode %s = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

// canonical converts a value to the types the decoder returns.
func canonical(v any) any {
	switch v := v.(type) {
	case int:
		return int64(v)
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case uint:
		return canonical(uint64(v))
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		if v > math.MaxInt64 {
			return v
		}
		return int64(v)
	case float32:
		return float64(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = canonical(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	case canal.Message:
		return canonical(map[string]any(v))
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = canonical(e)
		}
		return out
	}
	return v
}

// msgpackEqual compares decoded values, floats by their bits (so NaN equals NaN) and
// []byte{} with nil.
func msgpackEqual(a, b any) bool {
	switch a := a.(type) {
	case float64:
		bf, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(bf)
	case []byte:
		bb, ok := b.([]byte)
		return ok && bytes.Equal(a, bb)
	case []any:
		bb, ok := b.([]any)
		if !ok || len(a) != len(bb) {
			return false
		}
		for i := range a {
			if !msgpackEqual(a[i], bb[i]) {
				return false
			}
		}
		return true
	case canal.Message:
		return msgpackEqual(map[string]any(a), b)
	case map[string]any:
		bm, ok := b.(map[string]any)
		if m, isMsg := b.(canal.Message); isMsg {
			bm, ok = m, true
		}
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			w, ok := bm[k]
			if !ok || !msgpackEqual(v, w) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestMsgpackEncodeTypes(t *testing.T) {
	t.Parallel()
	type myString string
	type myInt int16
	tests := []struct {
		in   any
		want any
	}{
		{int8(-5), int64(-5)},
		{int16(300), int64(300)},
		{int32(-70000), int64(-70000)},
		{uint(7), int64(7)},
		{uint8(200), int64(200)},
		{uint16(60000), int64(60000)},
		{uint32(1 << 31), int64(1 << 31)},
		{float32(0.5), 0.5},
		{[]string{"a", "b"}, []any{"a", "b"}},
		{[]int{1, -2}, []any{int64(1), int64(-2)}},
		{[2]bool{true, false}, []any{true, false}},
		{map[string]string{"k": "v"}, map[string]any{"k": "v"}},
		{map[string]int{"k": 1}, map[string]any{"k": int64(1)}},
		{canal.Message{"type": "x"}, map[string]any{"type": "x"}},
		{[]map[string]any{{"a": nil}}, []any{map[string]any{"a": nil}}},
		{myString("s"), "s"},
		{myInt(-3), int64(-3)},
		{time.Second, int64(time.Second)}, // a named int64, sent as its number
		{[]any(nil), []any{}},
		{map[string]any(nil), map[string]any{}},
		{(*int)(nil), nil},
		{math.Inf(1), math.Inf(1)},
		{math.NaN(), math.NaN()},
	}
	for _, tt := range tests {
		b, err := appendMsgpack(nil, tt.in)
		if err != nil {
			t.Errorf("encode %#v: %v", tt.in, err)
			continue
		}
		got, err := decodeMsgpack(b)
		if err != nil || !msgpackEqual(got, tt.want) {
			t.Errorf("%#v: round trip = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestMsgpackEncodeErrors(t *testing.T) {
	t.Parallel()
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	cyclicSlice := []any{nil}
	cyclicSlice[0] = cyclicSlice
	deep := any("leaf")
	for range msgpackMaxDepth + 1 {
		deep = []any{deep}
	}
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"struct", struct{ A int }{1}, "cannot encode"},
		{"time", time.Now(), "cannot encode"},
		{"chan", make(chan int), "cannot encode"},
		{"func", func() {}, "cannot encode"},
		{"int keys", map[int]any{1: "a"}, "keys must be strings"},
		{"pointer", new(int), "cannot encode"},
		{"invalid utf-8", "\xff", "UTF-8"},
		{"invalid utf-8 key", map[string]any{"\xfe": 1}, "UTF-8"},
		{"nested invalid", []any{map[string]any{"a": []any{"ok", "\xc3"}}}, "UTF-8"},
		{"cyclic map", cyclic, "nesting"},
		{"cyclic slice", cyclicSlice, "nesting"},
		{"too deep", deep, "nesting"},
	}
	for _, tt := range tests {
		_, err := appendMsgpack(nil, tt.in)
		if !errors.Is(err, errMsgpack) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v; want a msgpack error mentioning %q", tt.name, err, tt.want)
		}
	}
	// At the maximum depth it still works.
	ok := any("leaf")
	for range msgpackMaxDepth - 1 {
		ok = []any{ok}
	}
	if _, err := appendMsgpack(nil, ok); err != nil {
		t.Errorf("depth %d: %v", msgpackMaxDepth, err)
	}
}

func TestMsgpackAppendMessage(t *testing.T) {
	t.Parallel()
	m := canal.Message{"type": "chat.message", "text": "hi"}
	b, err := appendMessage([]byte("prefix"), m, "__asgi_channel__", []string{"a!b"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatal("prefix lost")
	}
	got, err := decodeMessage(b[6:])
	if err != nil {
		t.Fatal(err)
	}
	want := canal.Message{"type": "chat.message", "text": "hi", "__asgi_channel__": []any{"a!b"}}
	if !msgpackEqual(got, map[string]any(want)) {
		t.Fatalf("got %v", got)
	}
	if len(m) != 2 {
		t.Fatal("appendMessage modified its message")
	}
	if _, err := appendMessage(nil, canal.Message{"type": "x", "bad": struct{}{}}, "", nil); err == nil ||
		!strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("err = %v; want it to name the key", err)
	}
	// Without the extra key: a plain map.
	b, _ = appendMessage(nil, canal.Message{"type": "x"}, "", nil)
	if !bytes.Equal(b, unhex("81a474797065a178")) {
		t.Fatalf("got %x", b)
	}
}

func TestMsgpackDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "truncated"},
		{"unused byte", "c1", "0xc1"},
		{"int key", "810102", "not a string"},
		{"bin key", "81c4016102", "not a string"},
		{"nil key", "81c002", "not a string"},
		{"array key", "8190c0", "not a string"},
		{"map key first element", "8281a16101", "not a string"},
		{"invalid utf-8", "a2fffe", "UTF-8"},
		{"invalid utf-8 key", "81a1ff01", "UTF-8"},
		{"timestamp 32", "d6ff00000001", "timestamp"},
		{"timestamp 96", "c70cff000000000000000000000001", "timestamp"},
		{"fixext 1", "d40501", "ext type 5"},
		{"fixext 16", "d8fe" + strings.Repeat("00", 16), "ext type -2"},
		{"ext 8", "c7020561 62", "ext type 5"},
		{"ext 16", "c800010561", "ext type 5"},
		{"ext 32", "c90000000105 61", "ext type 5"},
		{"truncated ext", "c7", "truncated"},
		{"trailing data", "c0c0", "extra data"},
		{"truncated str", "a3 6161", "truncated"},
		{"truncated str8 length", "d9", "truncated"},
		{"str32 longer than input", "dbffffffff61", "truncated"},
		{"bin32 longer than input", "c6ffffffff00", "truncated"},
		{"array32 longer than input", "ddffffffff", "array of"},
		{"map32 longer than input", "dfffffffff", "map of"},
		{"array16 longer than input", "dc0003c0c0", "array of"},
		{"map pairs run out", "82a161dc0002c0c0", "truncated"},
		{"truncated float", "cb000000", "truncated"},
		{"truncated uint64", "cf00", "truncated"},
		{"truncated int16", "d1", "truncated"},
		{"deep arrays", strings.Repeat("91", msgpackMaxDepth+1) + "c0", "nesting"},
		{"deep maps", strings.Repeat("81a0", msgpackMaxDepth+1) + "c0", "nesting"},
	}
	for _, tt := range tests {
		_, err := decodeMsgpack(unhex(tt.in))
		if !errors.Is(err, errMsgpack) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v; want a msgpack error mentioning %q", tt.name, err, tt.want)
		}
	}
	// Depth at the limit decodes.
	if _, err := decodeMsgpack(unhex(strings.Repeat("91", msgpackMaxDepth) + "c0")); err != nil {
		t.Errorf("depth %d: %v", msgpackMaxDepth, err)
	}
	// decodeMessage insists on a map.
	for _, in := range []string{"", "c0", "90", "a174", "dd00000000"} {
		if _, err := decodeMessage(unhex(in)); !errors.Is(err, errMsgpack) {
			t.Errorf("decodeMessage(%s): err = %v", in, err)
		}
	}
	for _, in := range []string{"80", "de0000", "df00000000"} {
		if m, err := decodeMessage(unhex(in)); err != nil || m == nil || len(m) != 0 {
			t.Errorf("decodeMessage(%s) = %v, %v", in, m, err)
		}
	}
}

// TestMsgpackDecodeTruncations decodes every prefix of valid encodings: all must fail
// cleanly (no panic), and the whole must succeed.
func TestMsgpackDecodeTruncations(t *testing.T) {
	t.Parallel()
	for _, tt := range pythonEncodings {
		if len(tt.want) > 1000 {
			continue
		}
		for n := range len(tt.want) {
			if _, err := decodeMsgpack(tt.want[:n]); err == nil {
				t.Errorf("prefix %x of %x decoded", tt.want[:n], tt.want)
			}
		}
	}
}

// TestMsgpackDecodeDoesNotAlias checks that decoded bytes and strings do not share
// memory with the input, which is reused by the receive loop.
func TestMsgpackDecodeDoesNotAlias(t *testing.T) {
	t.Parallel()
	in := unhex("82a162c40278 79a173a27a7a")
	v, err := decodeMsgpack(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0
	}
	m := v.(map[string]any)
	if !bytes.Equal(m["b"].([]byte), []byte("xy")) || m["s"] != "zz" {
		t.Fatalf("decoded values changed with the input: %v", m)
	}
}

// TestMsgpackHostileLengthsStaySmall checks that declared lengths do not turn into
// allocations: nested containers each claiming a huge size cost little.
func TestMsgpackHostileLengthsStaySmall(t *testing.T) {
	// Not parallel: it measures allocations.
	var in []byte
	for range msgpackMaxDepth - 1 {
		in = append(in, 0xdd, 0x00, 0x10, 0x00, 0x00) // array 32 of 1 Mi elements, nested
	}
	in = append(in, bytes.Repeat([]byte{0xc0}, 1<<20)...)
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := decodeMsgpack(in); err == nil {
			t.Fatal("decoded")
		}
	})
	if allocs > 10*msgpackMaxDepth {
		t.Errorf("%v allocations", allocs)
	}
	allocated := func(in []byte) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		decodeMsgpack(in)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	// The innermost array is real (1 Mi nils); without the preallocation cap every
	// level would reserve 16 MiB as well, 3 GiB in all.
	flat := append([]byte{0xdd, 0x00, 0x10, 0x00, 0x00}, bytes.Repeat([]byte{0xc0}, 1<<20)...)
	if hostile, base := allocated(in), allocated(flat); hostile > base+base/2 {
		t.Errorf("decoding %d hostile bytes allocated %d MiB; one flat array of the same nils takes %d MiB",
			len(in), hostile>>20, base>>20)
	}
}

// randomValue makes a random message value of the supported types.
func randomValue(r *rand.Rand, depth int) any {
	n := 9
	if depth < 4 {
		n = 11
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int64(r.Uint64())
	case 3:
		return int64(r.IntN(300)) - 150
	case 4:
		return r.Uint64() | 1<<63
	case 5:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
	case 6:
		const alphabet = "aé€😀 \x00\n\"'\\z"
		rs := []rune(alphabet)
		b := make([]rune, r.IntN(40))
		for i := range b {
			b[i] = rs[r.IntN(len(rs))]
		}
		return string(b)
	case 7, 8:
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case 9:
		a := make([]any, r.IntN(20))
		for i := range a {
			a[i] = randomValue(r, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(20) {
			m[fmt.Sprint(r.IntN(1000))] = randomValue(r, depth+1)
		}
		return m
	}
}

func TestMsgpackRoundTripRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		v := randomValue(r, 0)
		b, err := appendMsgpack(nil, v)
		if err != nil {
			t.Fatalf("encode %v: %v", v, err)
		}
		got, err := decodeMsgpack(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if !msgpackEqual(got, canonical(v)) {
			t.Fatalf("round trip of %#v gave %#v", v, got)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, and whatever
// it accepts must encode and decode back to the same value.
func FuzzDecode(f *testing.F) {
	for _, tt := range pythonEncodings {
		if len(tt.want) < 512 {
			f.Add(tt.want)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeMsgpack(data)
		if err != nil {
			if !errors.Is(err, errMsgpack) {
				t.Fatalf("error %v does not wrap errMsgpack", err)
			}
			return
		}
		b, err := appendMsgpack(nil, v)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
		}
		again, err := decodeMsgpack(b)
		if err != nil {
			t.Fatalf("cannot decode the re-encoding %x of %x: %v", b, data, err)
		}
		if !msgpackEqual(v, again) {
			t.Fatalf("round trip changed %#v into %#v", v, again)
		}
		// A canonical encoding is a fixed point.
		b2, err := appendMsgpack(nil, again)
		if err != nil || (len(b) == len(b2) && !bytes.Equal(b, b2) && !hasMultiKeyMap(v)) {
			t.Fatalf("re-encoding not stable: %x then %x (%v)", b, b2, err)
		}
	})
}

// hasMultiKeyMap reports whether v contains a map of two or more keys, whose
// encoding depends on Go's map order.
func hasMultiKeyMap(v any) bool {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if hasMultiKeyMap(e) {
				return true
			}
		}
	case map[string]any:
		if len(v) > 1 {
			return true
		}
		for _, e := range v {
			if hasMultiKeyMap(e) {
				return true
			}
		}
	}
	return false
}

// routedEqualsDecoded checks decodeRouted against decodeMessage on data: the same
// error or none, and the same message once the names it left encoded are put back.
func routedEqualsDecoded(t *testing.T, data []byte) (canal.Message, nameList) {
	t.Helper()
	want, werr := decodeMessage(data)
	got, names, err := decodeRouted(data)
	if (err == nil) != (werr == nil) {
		t.Fatalf("decodeRouted error %v, decodeMessage error %v", err, werr)
	}
	if err != nil {
		if !errors.Is(err, errMsgpack) {
			t.Fatalf("error %v does not wrap errMsgpack", err)
		}
		return nil, names
	}
	whole := maps.Clone(got)
	if names.raw != nil {
		if _, dup := got[asgiChannelKey]; dup {
			t.Fatalf("names left encoded and %s in the message too: %#v", asgiChannelKey, got)
		}
		list := []any{}
		for b := range names.all() {
			list = append(list, string(b))
		}
		if len(list) != names.n {
			t.Fatalf("%d names listed, %d counted", len(list), names.n)
		}
		whole[asgiChannelKey] = list
	}
	if !msgpackEqual(map[string]any(whole), map[string]any(want)) {
		t.Fatalf("decodeRouted gave %#v + names, decodeMessage %#v", got, want)
	}
	return got, names
}

func TestDecodeRouted(t *testing.T) {
	enc := func(m map[string]any) []byte {
		b, err := appendMsgpack(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	long := make([]any, 40) // array 16, str 8 headers
	for i := range long {
		long[i] = "specific.abc!" + strings.Repeat("x", i)
	}
	tests := []struct {
		name  string
		data  []byte
		names int // -1: none left encoded
	}{
		{"group copy", enc(map[string]any{"type": "a.b", asgiChannelKey: []any{"specific.p!1", "specific.p!2"}}), 2},
		{"long list", enc(map[string]any{"type": "a.b", asgiChannelKey: long}), 40},
		{"empty list", enc(map[string]any{"type": "a.b", asgiChannelKey: []any{}}), 0},
		{"one channel", enc(map[string]any{"type": "a.b", asgiChannelKey: "specific.p!1"}), -1},
		{"a non-string listed", enc(map[string]any{"type": "a.b", asgiChannelKey: []any{"specific.p!1", int64(3)}}), -1},
		{"nested, not top level", enc(map[string]any{"type": "a.b", "x": map[string]any{asgiChannelKey: []any{"c"}}}), -1},
		{"invalid UTF-8 name", nil, -2}, // below
	}
	// The last case: a map of one pair made a map of two whose second pair is
	// __asgi_channel__ = ["\xff"].
	bad := enc(map[string]any{"type": "a.b"})
	bad[0]++
	bad = append(bad, 0xb0|byte(len(asgiChannelKey)))
	bad = append(bad, asgiChannelKey...)
	bad = append(bad, 0x91, 0xa1, 0xff)
	tests[len(tests)-1].data = bad
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, names := routedEqualsDecoded(t, tt.data)
			switch {
			case tt.names == -2:
				if _, _, err := decodeRouted(tt.data); err == nil {
					t.Fatal("accepted invalid UTF-8")
				}
			case tt.names == -1 && names.raw != nil:
				t.Fatalf("%d names left encoded, want none", names.n)
			case tt.names >= 0 && (names.raw == nil || names.n != tt.names):
				t.Fatalf("names %+v, want %d", names, tt.names)
			}
		})
	}
}

// FuzzDecodeRouted: on any input, decodeRouted agrees with decodeMessage.
func FuzzDecodeRouted(f *testing.F) {
	for _, tt := range pythonEncodings {
		if len(tt.want) < 512 {
			f.Add(tt.want)
		}
	}
	for _, m := range []map[string]any{
		{"type": "a.b", asgiChannelKey: []any{"specific.p!1", "specific.p!2"}},
		{"type": "a.b", asgiChannelKey: "specific.p!1"},
		{"type": "a.b", asgiChannelKey: []any{"x", []byte("y")}},
	} {
		b, err := appendMsgpack(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { routedEqualsDecoded(t, data) })
}

// BenchmarkDecodeGroupCopy: a group copy for 19,000 local members, decoded with its
// names as strings (decodeMessage) or left encoded and looked up (decodeRouted, the
// router's path).
func BenchmarkDecodeGroupCopy(b *testing.B) {
	names := make([]any, 19000)
	set := make(map[string]bool, len(names))
	for i := range names {
		n := fmt.Sprintf("specific.cc2a4c5505c4c293c6cbb4df2afba276!%020d", i)
		names[i], set[n] = n, true
	}
	data, err := appendMsgpack(nil, map[string]any{"type": "bench.message", "text": strings.Repeat("x", 100), asgiChannelKey: names})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decodeMessage", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			m, err := decodeMessage(data)
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range m[asgiChannelKey].([]any) {
				if !set[n.(string)] {
					b.Fatal("lost a name")
				}
			}
		}
	})
	b.Run("decodeRouted", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			_, l, err := decodeRouted(data)
			if err != nil {
				b.Fatal(err)
			}
			for n := range l.all() {
				if !set[string(n)] {
					b.Fatal("lost a name")
				}
			}
		}
	})
}
