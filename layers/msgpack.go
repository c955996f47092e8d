package layers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"reflect"
	"unicode/utf8"

	"github.com/canal-rt/canal"
)

// This file is a small MessagePack codec for channel-layer messages, with the
// semantics of Python's msgpack 1.x as channels_redis uses it (packb with
// use_bin_type=True, unpackb with raw=False and strict_map_key=True):
//
//	Go                                      msgpack               Python
//	nil                                     nil                   None
//	bool                                    bool                  bool
//	string (valid UTF-8)                    str                   str
//	[]byte                                  bin                   bytes
//	int, int8…int64, uint, uint8…uint64     smallest int form     int
//	float64, float32                        float 64              float
//	[]any and other slices/arrays           array                 list
//	map[string]any, canal.Message, maps     map (str keys)        dict
//	  with string keys
//
// Decoding gives the canonical Go types: string, []byte, int64 (uint64 only above
// math.MaxInt64), float64 (float 32 is widened), bool, nil, []any and map[string]any.
// Ext types (msgpack.Timestamp and others), non-string map keys, invalid UTF-8 in a
// str and trailing bytes are errors, as they are (or would make trouble) in Python.
// Hostile input cannot make the decoder allocate much more than its own size: lengths
// are checked against the remaining input before use, preallocation is capped and
// nesting is limited to msgpackMaxDepth.

// msgpackMaxDepth bounds the nesting of arrays and maps, both ways: a deeper value is
// refused rather than risking the stack (Go maps can even contain themselves).
const msgpackMaxDepth = 200

// msgpackMaxPrealloc caps the elements preallocated for an array or map from its
// declared length; longer ones grow as their elements are actually decoded.
const msgpackMaxPrealloc = 256

// errMsgpack is wrapped by every codec error.
var errMsgpack = errors.New("msgpack")

func msgpackErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMsgpack}, args...)...)
}

// appendMsgpack appends the encoding of v to b.
func appendMsgpack(b []byte, v any) ([]byte, error) {
	return appendValue(b, v, 0)
}

// appendMessage appends the encoding of m as a map; when extraKey is not empty the
// pair extraKey: extraVal is added to it (m itself is left alone). m must not contain
// extraKey.
func appendMessage(b []byte, m canal.Message, extraKey string, extraVal any) ([]byte, error) {
	n := len(m)
	if extraKey != "" {
		n++
	}
	b = appendMapHeader(b, n)
	var err error
	for k, v := range m {
		if b, err = appendString(b, k); err != nil {
			return b, err
		}
		if b, err = appendValue(b, v, 1); err != nil {
			return b, fmt.Errorf("%w (key %q)", err, k)
		}
	}
	if extraKey != "" {
		b, _ = appendString(b, extraKey)
		if b, err = appendValue(b, extraVal, 1); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		if v {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case string:
		return appendString(b, v)
	case []byte:
		return appendBin(b, v), nil
	case int:
		return appendInt(b, int64(v)), nil
	case int64:
		return appendInt(b, v), nil
	case int32:
		return appendInt(b, int64(v)), nil
	case int16:
		return appendInt(b, int64(v)), nil
	case int8:
		return appendInt(b, int64(v)), nil
	case uint:
		return appendUint(b, uint64(v)), nil
	case uint64:
		return appendUint(b, v), nil
	case uint32:
		return appendUint(b, uint64(v)), nil
	case uint16:
		return appendUint(b, uint64(v)), nil
	case uint8:
		return appendUint(b, uint64(v)), nil
	case float64:
		return appendFloat(b, v), nil
	case float32:
		return appendFloat(b, float64(v)), nil
	case []any:
		if depth >= msgpackMaxDepth {
			return b, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
		}
		b = appendArrayHeader(b, len(v))
		var err error
		for _, e := range v {
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		return appendStringMap(b, v, depth)
	case canal.Message:
		return appendStringMap(b, v, depth)
	case []string:
		b = appendArrayHeader(b, len(v))
		var err error
		for _, s := range v {
			if b, err = appendString(b, s); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

func appendStringMap(b []byte, m map[string]any, depth int) ([]byte, error) {
	if depth >= msgpackMaxDepth {
		return b, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
	}
	b = appendMapHeader(b, len(m))
	var err error
	for k, v := range m {
		if b, err = appendString(b, k); err != nil {
			return b, err
		}
		if b, err = appendValue(b, v, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendReflect encodes the kinds the type switch does not name: named types over
// basic kinds, other slices and arrays, maps with string keys.
func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return appendValue(b, rv.Bool(), depth)
	case reflect.String:
		return appendString(b, rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(b, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return appendUint(b, rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return appendFloat(b, rv.Float()), nil
	case reflect.Interface, reflect.Pointer:
		if rv.IsNil() {
			return append(b, 0xc0), nil
		}
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return appendBin(b, rv.Bytes()), nil
		}
		if depth >= msgpackMaxDepth {
			return b, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
		}
		n := rv.Len()
		b = appendArrayHeader(b, n)
		var err error
		for i := range n {
			if b, err = appendValue(b, rv.Index(i).Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return b, msgpackErrorf("map key type %s: keys must be strings", rv.Type().Key())
		}
		if depth >= msgpackMaxDepth {
			return b, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
		}
		b = appendMapHeader(b, rv.Len())
		var err error
		for it := rv.MapRange(); it.Next(); {
			if b, err = appendString(b, it.Key().String()); err != nil {
				return b, err
			}
			if b, err = appendValue(b, it.Value().Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	if !rv.IsValid() {
		return append(b, 0xc0), nil
	}
	return b, msgpackErrorf("cannot encode a value of type %s (only nil, bool, string, []byte, integers, floats, slices and maps with string keys)", rv.Type())
}

func appendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		// Python would refuse to decode it (raw=False): refuse it here instead.
		return b, msgpackErrorf("string is not valid UTF-8 (send bytes as []byte)")
	}
	n := len(s)
	switch {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	case uint64(n) <= math.MaxUint32:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	default:
		return b, msgpackErrorf("string of %d bytes is too long", n)
	}
	return append(b, s...), nil
}

func appendBin(b []byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default: // a []byte over 4 GiB cannot be sent to Redis anyway (512 MB limit)
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(v)) // negative fixint
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

// appendUint uses the unsigned forms for every non-negative integer, as Python does.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v)) // positive fixint
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

// decodeMsgpack decodes exactly one value filling data.
func decodeMsgpack(data []byte) (any, error) {
	d := msgpackDecoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.data) {
		return nil, msgpackErrorf("%d bytes of extra data after the value", len(d.data)-d.pos)
	}
	return v, nil
}

// decodeMessage decodes a message: a map with string keys filling data.
func decodeMessage(data []byte) (canal.Message, error) {
	if len(data) == 0 {
		return nil, msgpackErrorf("empty input")
	}
	if c := data[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return nil, msgpackErrorf("message is not a map (first byte 0x%02x)", c)
	}
	v, err := decodeMsgpack(data)
	if err != nil {
		return nil, err
	}
	return canal.Message(v.(map[string]any)), nil
}

type msgpackDecoder struct {
	data []byte
	pos  int

	// names, when set, takes a top-level __asgi_channel__ array of strings out of
	// the message (decodeRouted).
	names *nameList
}

// nameList is a msgpack array of strings left encoded: n names in raw, each a str
// header and its validated UTF-8 bytes.
type nameList struct {
	raw []byte
	n   int
}

// all yields each name's bytes, which alias the decoded input: they are only to be
// read, and not kept.
func (l nameList) all() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		d := msgpackDecoder{data: l.raw}
		for range l.n {
			n, _ := d.strHeader() // validated by decodeRouted
			b, _ := d.take(n)
			if !yield(b) {
				return
			}
		}
	}
}

// decodeRouted decodes a message popped from a process queue. A group copy lists
// every local member under __asgi_channel__, thousands of names that the router only
// looks up: when that is an array of strings, it is validated and returned as a
// nameList aliasing data, not decoded into the message. Any other __asgi_channel__
// (a single channel's name) stays in the message.
func decodeRouted(data []byte) (canal.Message, nameList, error) {
	var names nameList
	if len(data) == 0 {
		return nil, names, msgpackErrorf("empty input")
	}
	if c := data[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return nil, names, msgpackErrorf("message is not a map (first byte 0x%02x)", c)
	}
	d := msgpackDecoder{data: data, names: &names}
	v, err := d.value(0)
	if err != nil {
		return nil, names, err
	}
	if d.pos != len(d.data) {
		return nil, names, msgpackErrorf("%d bytes of extra data after the value", len(d.data)-d.pos)
	}
	return canal.Message(v.(map[string]any)), names, nil
}

// strHeader reads a str header and returns its length.
func (d *msgpackDecoder) strHeader() (int, error) {
	p, err := d.take(1)
	if err != nil {
		return 0, err
	}
	switch c := p[0]; {
	case c&0xe0 == 0xa0:
		return int(c & 0x1f), nil
	case c >= 0xd9 && c <= 0xdb:
		return d.length(1 << (c - 0xd9))
	default:
		return 0, msgpackErrorf("type byte 0x%02x at offset %d is not a str", c, d.pos-1)
	}
}

// nameArray reads an array of valid strings into a nameList when the next value is
// one. Otherwise it reads nothing and reports false: the value is decoded as any
// other, with its errors, and the router reports what is wrong with it.
func (d *msgpackDecoder) nameArray() (nameList, bool) {
	start := d.pos
	l, ok := d.scanNames()
	if !ok {
		d.pos = start
	}
	return l, ok
}

func (d *msgpackDecoder) scanNames() (nameList, bool) {
	if d.pos >= len(d.data) {
		return nameList{}, false
	}
	var n int
	switch c := d.data[d.pos]; {
	case c&0xf0 == 0x90:
		n, d.pos = int(c&0x0f), d.pos+1
	case c == 0xdc || c == 0xdd:
		d.pos++
		var err error
		if n, err = d.length(2 << (c - 0xdc)); err != nil {
			return nameList{}, false
		}
	default:
		return nameList{}, false
	}
	if n > len(d.data)-d.pos {
		return nameList{}, false
	}
	body := d.pos
	for range n {
		sn, err := d.strHeader()
		if err != nil {
			return nameList{}, false
		}
		b, err := d.take(sn)
		if err != nil || !utf8.Valid(b) {
			return nameList{}, false
		}
	}
	return nameList{raw: d.data[body:d.pos], n: n}, true
}

// take returns the next n bytes, or an error when fewer remain.
func (d *msgpackDecoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.data)-d.pos {
		return nil, msgpackErrorf("truncated input: %d bytes needed at offset %d, %d left", n, d.pos, len(d.data)-d.pos)
	}
	p := d.data[d.pos : d.pos+n]
	d.pos += n
	return p, nil
}

// length reads a big-endian length of size bytes.
func (d *msgpackDecoder) length(size int) (int, error) {
	p, err := d.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	default:
		return int(binary.BigEndian.Uint32(p)), nil // fits: int is 64-bit on supported targets
	}
}

func (d *msgpackDecoder) value(depth int) (any, error) {
	p, err := d.take(1)
	if err != nil {
		return nil, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xe0 == 0xa0:
		return d.str(int(c & 0x1f))
	case c&0xf0 == 0x90:
		return d.array(int(c&0x0f), depth)
	case c&0xf0 == 0x80:
		return d.mapping(int(c&0x0f), depth)
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.length(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(n)
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil // never alias the caller's buffer
	case 0xd9, 0xda, 0xdb:
		n, err := d.length(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case 0xca:
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 0xcb:
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		b, err := d.take(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		var u uint64
		for _, x := range b {
			u = u<<8 | uint64(x)
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0:
		b, err := d.take(1)
		if err != nil {
			return nil, err
		}
		return int64(int8(b[0])), nil
	case 0xd1:
		b, err := d.take(2)
		if err != nil {
			return nil, err
		}
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 0xd2:
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 0xd3:
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return int64(binary.BigEndian.Uint64(b)), nil
	case 0xdc, 0xdd:
		n, err := d.length(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.array(n, depth)
	case 0xde, 0xdf:
		n, err := d.length(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapping(n, depth)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xc7, 0xc8, 0xc9:
		return nil, d.ext(c)
	}
	return nil, msgpackErrorf("invalid type byte 0xc1 at offset %d", d.pos-1)
}

// ext reports an extension value (type byte c just read) as an error, naming its type.
func (d *msgpackDecoder) ext(c byte) error {
	at := d.pos - 1
	if c >= 0xc7 && c <= 0xc9 { // ext 8/16/32: a length comes first
		if _, err := d.length(1 << (c - 0xc7)); err != nil {
			return err
		}
	}
	t, err := d.take(1)
	if err != nil {
		return err
	}
	if int8(t[0]) == -1 {
		return msgpackErrorf("timestamp (ext type -1) at offset %d is not supported: send times as numbers or strings", at)
	}
	return msgpackErrorf("ext type %d at offset %d is not supported", int8(t[0]), at)
}

func (d *msgpackDecoder) str(n int) (any, error) {
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, msgpackErrorf("str at offset %d is not valid UTF-8", d.pos-n)
	}
	return string(b), nil
}

func (d *msgpackDecoder) array(n, depth int) (any, error) {
	if depth >= msgpackMaxDepth {
		return nil, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
	}
	if n > len(d.data)-d.pos { // every element takes at least one byte
		return nil, msgpackErrorf("array of %d elements in %d bytes", n, len(d.data)-d.pos)
	}
	a := make([]any, 0, min(n, msgpackMaxPrealloc))
	for range n {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
	return a, nil
}

func (d *msgpackDecoder) mapping(n, depth int) (any, error) {
	if depth >= msgpackMaxDepth {
		return nil, msgpackErrorf("nesting deeper than %d", msgpackMaxDepth)
	}
	if n > (len(d.data)-d.pos)/2 { // every pair takes at least two bytes
		return nil, msgpackErrorf("map of %d pairs in %d bytes", n, len(d.data)-d.pos)
	}
	m := make(map[string]any, min(n, msgpackMaxPrealloc))
	for range n {
		// Check the key's type byte first, so a non-string key is refused before
		// any of it is decoded.
		at := d.pos
		if at >= len(d.data) {
			return nil, msgpackErrorf("truncated input: map key expected at offset %d", at)
		}
		if c := d.data[at]; c&0xe0 != 0xa0 && (c < 0xd9 || c > 0xdb) {
			return nil, msgpackErrorf("map key at offset %d is not a string (type byte 0x%02x)", at, c)
		}
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		ks := k.(string)
		if depth == 0 && d.names != nil && ks == asgiChannelKey {
			// The last of duplicate keys wins, as in decodeMessage.
			if l, ok := d.nameArray(); ok {
				*d.names = l
				delete(m, ks)
				continue
			}
			*d.names = nameList{}
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[ks] = v
	}
	return m, nil
}
